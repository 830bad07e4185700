"""Zero-initialized residual gammas: what starting the last norm of each residual block at
gamma = 0 costs plain BN at this scale. Study: zero_init.

Goyal et al. 2017 (Sec. 5.1, "zero gamma") start each residual block's last BN gamma at 0, so
every block begins as the identity, to ease the first steps of large-batch training; Wu & He
2018 and He et al. 2019 ("Bag of Tricks", Sec. 3.1) do the same. norm_batch and
batch_size_sweep follow them, lr_sweep does not, and plain BN at rate 0.05 reaches 51.9% in
lr_sweep but 37.0% in norm_batch's ghost batch of 128 (nn.BatchNorm2d's own forward): the same
net, schedule, steps and data. This pair tests whether the init alone makes that difference.

Protocol (written 2026-12-07, before any run of it): lr_sweep's at scale=cpu (ResNet-20, norm=bn,
PyTorch's default init, 10,000 images, 4 epochs = 312 steps at batch 128, SGD momentum 0.9,
weight decay 5e-4, linear warmup over 10% then linear decay to zero), with
init.zero_init_residual false and true at peak rates 0.05 and 0.1, seeds 5-9. The rate is not
the arms' own best: the question is what the init costs at the rates those studies used (0.05
in both, 0.1 norm_batch's best), so both arms run at each.

Seen before the rule: lr_sweep's BN cells at 0.05 and 0.1 (default init) and norm_batch's ghost
batch of 128 (zero init; nn.BatchNorm2d's forward, precise BN read beside) ran these very
settings on seeds 0-4, and their published accuracies were the reason for this study (paired by
seed they differ by ~15 points at 0.05 and ~6 at 0.1). So the rule is decided on fresh seeds
5-9 (amended on review the day it was written, before any run); runs of seeds 0-4 of this study,
if any, block it ("seen before the rule") where they are all there is, and are left out beside
fresh ones.

Pairing: by seed, decided before the runs. Zeroing a gamma draws no random number, so the same
seed gives both arms the same weights otherwise, the same data order and augmentation draws;
the paired difference removes that shared variance (a one-sample t over the per-seed
differences). A seed whose partner did not finish is left out and named."""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from ..analysis import style as S
from ..analysis.cells import fresh, matching, study_runs
from ..analysis.results import chance
from ..analysis.rules import (DISAGREE, INCONCLUSIVE, WHY_ORDER, Effect, Note, Verdict, acc_cell, decision,
                              decision_text, effect_line, has_norms, missing, points, untrained)
from ..analysis.stats import mean_ci, one_sample

KEY, STUDY, TITLE = "zero_init", "zero_init", "Zero-initialized residual gammas"
ORDER = 65  # after norm_batch, whose handicap it measures
STATEMENT = ("At this scale, starting the gamma of each residual block's last BN at 0 (Goyal et al. 2017, Sec. 5.1) "
             "costs plain BN accuracy against PyTorch's default init, at the same peak rate: the handicap of the "
             "norm_batch and batch_size_sweep studies, which use it.")
FLAG = "init.zero_init_residual"
RATE = "optim.lr"
# 2 points: the smallest accuracy difference this harness treats as an effect (fixed 2026-11-25)
EFFECT = Effect("default init's minus zero-init's final test accuracy, same peak rate (paired by seed)", "points", 2.0)
# the settings lr_sweep and norm_batch ran on seeds 0-4, seen before this rule: they never decide it
SEEN_RUNS = {"scale.name": "cpu", "data.name": "cifar10_folder", "seed": (0, 1, 2, 3, 4)}
UNPAIRED = "seed without its partner"  # Note.kind; data: {"rate": r, "seeds": [...]}
RULE = ("At each peak rate of the sweep (cpu: 0.05 and 0.1), the cost of zero-init = a seed's final test accuracy "
        "with PyTorch's default init minus the same seed's with the residual gammas zero-initialized (paired by "
        "seed: zeroing a gamma draws no random number, so both runs share every other weight, the data order and "
        "the augmentation; a one-sample t over the per-seed differences; a diverged run counts as chance; a seed "
        "whose partner did not finish is left out and named), on fresh seeds: the runs of seeds 0-4 at scale=cpu on "
        "cifar10_folder, whose settings lr_sweep and norm_batch had run and shown before this rule, never decide it (alone they block it, beside fresh runs they are left out). Judged at each rate: " + decision_text(EFFECT)
        + " The verdict is the rates' common one, else inconclusive. The default-init arm must have trained at each rate "
        "(mean accuracy 5 points above chance); the zero-init arm may sit at chance (that is the cost).")


def _per_seed(cell: pd.DataFrame) -> pd.Series:
    """Final accuracy (points; a diverged run counts as chance) by seed, completed or diverged runs only."""
    done = cell[cell.status.isin(["completed", "diverged"])]
    return points(done.final_acc).set_axis(done.seed.astype(int)).groupby(level=0).mean()


def check(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    title = "Zero-initialized residual gammas cost plain BN accuracy at this scale"
    sel, notes = study_runs(runs, STUDY)
    flag = sel[FLAG].astype(str).str.lower() == "true" if FLAG in sel else None
    if not has_norms(sel, ("bn",)) or flag is None or flag.nunique() < 2:
        return missing(KEY, title, RULE, "finished zero_init runs with norm=bn and init.zero_init_residual false and "
                       "true", STUDY, notes)
    sel = sel.assign(zero=flag)[lambda d: d["norm.name"] == "bn"]
    sel, seen, seen_notes = fresh(sel, matching(sel, SEEN_RUNS), "scale=cpu, data=cifar10_folder, seeds 0-4")
    notes += seen_notes
    blockers = list(seen)
    ch = float(chance(sel).iloc[0])
    by_rate, rows, estimates, reasons = {}, [], [], []
    for rate, g in sel.groupby(RATE):
        default, zero = _per_seed(g[~g.zero]), _per_seed(g[g.zero])
        both = default.index.intersection(zero.index)
        lone = sorted(int(s) for s in set(default.index) ^ set(zero.index))
        if lone:
            notes.append(Note(f"rate {rate:g}: seed(s) {', '.join(map(str, lone))} without a finished partner, left out",
                              UNPAIRED, subject=f"rate {rate:g}", data={"rate": float(rate), "seeds": lone}))
        est = one_sample(default[both] - zero[both])
        part_blockers = untrained({f"default init at rate {rate:g}": default[both] / 100}, ch)
        v, why, reason = decision(est, EFFECT, seen + part_blockers)
        by_rate[float(rate)] = (v, why)
        blockers += part_blockers
        reasons += [f"at rate {rate:g}: {reason}"] if reason else []
        estimates.append((f"rate {rate:g}", EFFECT, est))
        rows.append({"peak rate": f"{rate:g}", "default init (%)": acc_cell(*mean_ci(default[both] / 100)),
                     "zero-init (%)": acc_cell(*mean_ci(zero[both] / 100)), "cost (points)": EFFECT.fmt_pm(est),
                     "seeds": len(both), "verdict at this rate": v})
    verdicts = {v for v, _ in by_rate.values()}
    common = verdicts.pop() if len(verdicts) == 1 else INCONCLUSIVE
    why = ""
    if common == INCONCLUSIVE:
        part_whys = [w for _, w in by_rate.values() if w]
        why = next((w for w in WHY_ORDER if w in part_whys), DISAGREE)
        reasons = reasons or ["the rates disagree"]
    finding = " ".join(f"At {label}: {effect_line(EFFECT, e)} ({by_rate[r][0]})."
                       for (label, _, e), r in zip(estimates, by_rate))
    return Verdict(KEY, title, common, RULE, finding=finding, numbers=pd.DataFrame(rows), notes=notes, effect=EFFECT,
                   reason="; ".join(reasons) if common == INCONCLUSIVE else "", why=why, blockers=blockers,
                   estimates=estimates, facts={"by_rate": by_rate})


@S.figure
def cost_by_seed(runs: pd.DataFrame) -> Figure:
    """Final test accuracy of each seed with the default init and with zero-init, joined per seed, at each rate."""
    sel, _ = study_runs(runs, STUDY)
    S.need(sel, ["final_acc", FLAG, RATE, "seed"], "zero-init pairs")
    sel = sel.assign(zero=sel[FLAG].astype(str).str.lower() == "true")
    rates = sorted(sel[RATE].dropna().unique())
    fig = Figure(figsize=(2.6 * len(rates) + 0.6, 3.4), layout="constrained")
    axes = fig.subplots(1, len(rates), squeeze=False, sharey=True)[0]
    for ax, rate in zip(axes, rates):
        g = sel[sel[RATE] == rate]
        default, zero = _per_seed(g[~g.zero]), _per_seed(g[g.zero])
        for i, seed in enumerate(default.index.intersection(zero.index)):
            ax.plot([0, 1], [default[seed], zero[seed]], color=S.color("bn"), marker="o", alpha=0.7,
                    label="one seed's pair" if i == 0 else None)
        S.chance_line(ax, g)
        ax.set_xticks([0, 1], ["default init", "zero-init"])
        ax.set_xlim(-0.3, 1.3)
        ax.set_xlabel("residual blocks' last gamma")
        ax.set_title(f"peak rate {rate:g}", fontsize=9)
    axes[0].set_ylabel("final test accuracy (%)")
    axes[0].legend(loc="best")
    fig.suptitle(f"Plain BN, default vs zero-initialized residual gammas, per seed\n{S.caption_n(sel)}", fontsize=9)
    return fig


CHECKS = [check]
FIGURES = {
    "cost_by_seed": (lambda runs, curves, v: cost_by_seed(runs),
                     "Final test accuracy of plain BN per seed, default init vs zero-initialized residual gammas, "
                     "at each peak rate (a line joins one seed's pair)."),
}
