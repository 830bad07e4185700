"""Batch noise: BN regularizes through the noise of its batch statistics (Luo et al. 2019, ICLR).
Study: batch_noise, arms that differ from BN in that noise alone. Rule written 2026-12-07, before
any run of this study (amendments: results/HISTORY.md, regularization).

What Luo et al. state: treating the batch mean and variance as random around the population's,
BN is population normalization (PN: normalizing by the population's statistics) plus an
explicit regularizer, a gamma decay (abstract; Sec. 2), whose strength falls as the batch size
M grows (their Fig. 1 sets BN at M = 32 beside weight normalization plus a gamma decay of
strength 1/(2M)); their CIFAR-10 experiments vary the batch with the rate scaled to it (Goyal
et al. 2017). Predicted: (1) the same normalization
without the batch noise (PN) loses that regularizer, so it overfits more: a larger gap between
training and test accuracy; (2) smaller normalization batches regularize more.

What this study tests: (1), at the usual batch (128), as the rule below; (2) beside it, not
decided. Neither the gamma decay's form (PN plus an explicit gamma decay matching BN) nor the
SGD batch's own noise is tested: the SGD batch, the data order and the gradient's batch are the
same in every arm.

Protocol (every scale but smoke; bnstudy/conf/exp/batch_noise.yaml): ResNet-20 on a 10,000-image
class-balanced CIFAR-10 subset, no augmentation, 18 epochs (1,404 steps) at SGD batch 128,
Nesterov momentum 0.9, weight decay 5e-4, 5% warmup then linear decay to zero, bf16 autocast +
channels_last, all 10,000 test images; test and train-slice accuracy at steps 702 and 1,404. The
train slice: the first 2,000 images of the (fixed, shuffled) training subset, in eval mode
(running statistics, no augmentation: bnstudy/train.py, `train_eval/*`). Arms, named as the
sweeper and bnstudy/analysis/selection.py name them:
- running_bn: BN whose training forward normalizes with its running statistics after a burn-in
  of 50 steps of plain BN (RunningBatchNorm2d, bnstudy/nets/norms.py: Batch Renormalization,
  Ioffe 2017, with r and d unbounded): no example's output depends on the rest of its batch;
  the statistics are a moving average (momentum 0.1) over ~19 batches of 128, so what noise
  they keep is that of ~2,400 images, and none from the example's own batch. The backward keeps
  BN's gradient through the batch's mean and variance, and with it a dependence on the batch
  (without that gradient the net blows up: Ioffe & Szegedy 2015, Sec. 2; Ioffe 2017, Sec. 3).
- bn: plain BN, statistics over the SGD batch of 128.
- ghost16: ghost BN (Hoffer et al. 2017) over 16 images inside the batch of 128: more noise.
- gn: GroupNorm, 8 groups, no batch dependence at all: a reference beside the rule, not a
  control (it normalizes other axes, and optimizes differently).
Two phases (selection.RULE; scale=cpu and full): each arm over peak lr {0.1, 0.2, 0.4} on seed
100, the grid extended by x2 past an edge holding the best rate; then scale.seeds (cpu: 0-4) at each arm's
chosen rate, committed in the YAML before those runs. Runs without a selection phase (smoke)
are read at each arm's best rate on the same seeds.

Limits: running_bn keeps some batch noise (the burn-in's, the moving average's, the backward's)
and its statistics lag the weights by a few steps (of unknown effect); by Luo et al.'s account
the noise left shrinks the effect, so "not reproduced" says less against them than "reproduced"
says for them. The train slice
is 2,000 of the 10,000 training images (train accuracy's binomial sd at most 1.1 points a run).

Deviations: Luo et al. derive for one BN layer and test on CIFAR-10 at full size with the SGD
batch changed (rate scaled with it); here ResNet-20 on 10,000 images without augmentation, so
that in ~7-8 min a run on a CPU the nets overfit (their gap is the object), the noise changed at
a fixed SGD batch and rate (ghost batches), PN stood in for by running statistics after a
burn-in with batch noise (50 of 1,404 steps, during the warmup: early noise may matter more
than late), and each arm at its own rate. bf16 autocast + channels_last in every arm: the cpu
precision study found bf16 not faithful to fp32 for BN's test accuracy (+0.8 points, paired over
10 seeds: results/bench/precision.md), and running_bn's path was not benched against fp32; the
rule compares gaps between arms in one precision (stated on review, before any run)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..analysis import style as S
from ..analysis.cells import (EDGE_RULE, SELECTION_BIAS, at_best_rate, edge_blockers, edge_rates, normalization_batch,
                              study_runs)
from ..analysis.results import chance
from ..analysis.rules import Blocker, Effect, Verdict, acc_cell, decision_text, missing, pct, points, untrained, verdict
from ..analysis.selection import arm_names, choose, phases
from ..analysis.stats import aggregate, difference, fmt_ci, mean_ci
from ..train import TRAIN_EVAL_IMAGES
from .regularization import NOT_FITTED, gap

KEY, STUDY, TITLE = "batch_noise", "batch_noise", "Regularization by batch noise"
ORDER = 85  # its place in the report (claims are read in this order)
STATEMENT = ("BatchNorm's regularization comes from the noise of its batch statistics, and grows as the batch that "
             "computes them shrinks (Luo et al. 2019, ICLR).")
RATE = "optim.lr"
NOISELESS, PLAIN, NOISIER, REFERENCE = "running_bn", "bn", "ghost16", "gn"  # arms (selection.arm_names)
ARMS = (NOISELESS, PLAIN, NOISIER, REFERENCE)  # least batch noise first; GroupNorm has none, of another kind
FIT_LEVEL = 0.90  # a compared arm's mean eval-mode train-slice accuracy must reach this (a diverged run: chance)
UNDERFITS = "fits less than bn"  # Blocker.kind: running_bn's mean fit more than EFFECT.minimum points below bn's
# fixed 2026-12-07, before any run of this study: 2 points, the harness's smallest accuracy effect (every
# accuracy rule here); also 2-4x the binomial sd of one run's gap at these sizes (at most 1.1 points on the
# 2,000-image train slice, 0.5 on the 10,000 test images)
EFFECT = Effect("running_bn's train-test gap minus BN's", "points", 2.0)
# shown beside the rule, not decided (Verdict.estimates; no minimum)
DOSE = Effect("BN's gap minus ghost BN's over 16 images (more noise; beside the rule)", "points", math.nan)
TEST = Effect("running_bn's test accuracy minus BN's (beside the rule)", "points", math.nan)
GN_REF = Effect("GroupNorm's gap minus BN's (a reference beside the rule)", "points", math.nan)
RULE = (f"Gap = final eval-mode accuracy on the fixed {TRAIN_EVAL_IMAGES:,}-image training slice (`train_eval/acc`: "
        "running statistics, no augmentation) minus final test accuracy, in points, per run. Arms: running_bn (BN that "
        "normalizes with its running statistics in training after a burn-in of plain BN: no batch noise in the "
        "forward), bn (plain BN over the SGD batch of 128), ghost16 (ghost BN over 16 images: more noise), gn "
        "(GroupNorm, a reference). Each arm at its own peak rate: the rate chosen on the selection seeds "
        "(`python -m bnstudy select`) and read on the fresh measuring seeds only. Runs without a selection phase "
        "(smoke): the rate of its grid with the highest mean final test accuracy (a diverged run counts as chance; a tie goes "
        "to the lower rate). In that phase: " + SELECTION_BIAS
        + " Effect = running_bn's mean gap minus bn's (Welch t over seeds, not paired: each arm runs at its own "
        "rate, so the runs of one seed share only their initial weights and batch order, and a seed missing in one "
        "arm costs the other nothing). Both compared arms must have trained and fitted: a mean eval-mode "
        f"train-slice accuracy of at least {FIT_LEVEL:.0%} (a diverged run counts as chance there), else the gap "
        "measures how far training got, not overfitting; and running_bn's completed runs must fit no more than the "
        f"minimum effect ({EFFECT.minimum:g} points) below bn's, else its smaller gap measures underfitting (one-sided: "
        "a noiseless arm that fits more is the overfitting the claim predicts; added on review 2026-12-07, before "
        "any run). A run that did not complete has no gap (its last accuracies are a mid-run evaluation's). " + decision_text(EFFECT)
        + " Beside it, not decided: running_bn's test accuracy minus bn's; bn's gap minus ghost16's (Luo et al.'s "
        "second prediction: more noise, smaller gap); gn's gap minus bn's. " + EDGE_RULE)


def _named(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs with their `arm`, `fit` (eval-mode train-slice accuracy; chance for a diverged run) and
    `gap` (none for a run that did not complete: its last accuracies are a mid-run evaluation's)."""
    fit = pd.to_numeric(runs["final.train_eval/acc"], errors="coerce")
    return runs.assign(arm=arm_names(runs).to_numpy(), gap=gap(runs).where(runs.status == "completed"),
                       fit=np.where(runs.status == "diverged", chance(runs), fit))


def _edges(runs: pd.DataFrame) -> list[str]:
    """The EDGE note on the grids the arms' rates were chosen from: where the study selected on
    selection seeds, the arms whose choice there sits at an edge (selection.choose); in one phase,
    the arms whose best rate is the lowest or highest they ran."""
    grid, _ = study_runs(runs, STUDY, phase="select")
    if not len(grid) or "final.train_eval/acc" not in grid:
        return []
    grid = _named(grid)
    if len(phases(grid)[0]):
        at_edge = [c.arm for c in choose(grid).itertuples() if "edge" in c.status]
        grid = grid[grid.arm.isin(at_edge)]
    return edge_rates(grid, at_best_rate(grid, ["arm"], RATE), ["arm"], RATE)


def best_arms(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """arm -> its runs at its best rate (the one rate it has where rates were selected)."""
    if not len(runs):
        return {}
    best = at_best_rate(_named(runs), ["arm"], RATE)
    return {a: best[best.arm == a] for a in ARMS if (best.arm == a).any()}


def _fit_blockers(arms: dict[str, pd.DataFrame]) -> list[Blocker]:
    """NOT_FITTED where a compared arm fits its training slice below FIT_LEVEL; UNDERFITS where
    running_bn fits it more than the minimum effect below bn."""
    out = []
    for a in (NOISELESS, PLAIN):
        fit = arms[a].fit.mean()
        if not fit >= FIT_LEVEL:
            diverged = int((arms[a].status == "diverged").sum())
            out.append(Blocker(f"{a} did not fit its training set (mean eval-mode train-slice accuracy {pct(fit)}"
                               + (f", {diverged} diverged run(s) counted as chance" if diverged else "")
                               + f"; the rule needs {FIT_LEVEL:.0%}): its gap would measure how far training got",
                               NOT_FITTED, a, {"fit": float(fit), "seeds": int(arms[a].seed.nunique()),
                                               "diverged": diverged}))
    done = {a: arms[a][arms[a].status == "completed"] for a in (NOISELESS, PLAIN)}  # a diverged run: NOT_FITTED's
    shortfall = 100 * (done[PLAIN].fit.mean() - done[NOISELESS].fit.mean())
    if shortfall > EFFECT.minimum:
        out.append(Blocker(f"running_bn fits its training slice {shortfall:.1f} points less than bn (more than the "
                           f"{EFFECT.minimum:g}-point minimum effect): its smaller gap would measure underfitting, "
                           "not the regularization the claim is about", UNDERFITS, NOISELESS,
                           {"shortfall": float(shortfall)}))
    return out


def _statistics(a: str, runs: pd.DataFrame) -> str:
    """What an arm normalizes by in training, from its runs' config."""
    if a == NOISELESS:
        burn = runs["norm.burn_in"].iloc[0] if "norm.burn_in" in runs else math.nan
        return "running averages" + (f" (after {burn:g} steps of BN)" if pd.notna(burn) else "")
    if a == REFERENCE:
        return "each example's channel groups"
    return f"a batch of {normalization_batch(runs).iloc[0]:g}"


def numbers(arms: dict[str, pd.DataFrame]) -> pd.DataFrame:
    rows = []
    for a, r in arms.items():
        rows.append({"arm": a, "normalizes by": _statistics(a, r), "peak rate": f"{r[RATE].iloc[0]:g}",
                     "seeds": f"{r.seed.nunique()}" + (f" ({(r.status == 'diverged').sum()} diverged)"
                                                       if (r.status == "diverged").any() else ""),
                     "train-slice accuracy (%)": acc_cell(*mean_ci(r.fit)),
                     "test accuracy (%)": acc_cell(*mean_ci(r.final_acc)),
                     "gap (points)": fmt_ci(*mean_ci(r.gap), digits=1)})
    return pd.DataFrame(rows)


def check(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    title = "BN without batch noise overfits more (running statistics in training vs BN)"
    sel, notes = study_runs(runs, STUDY)
    if len(sel) and "final.train_eval/acc" not in sel:
        sel = sel.iloc[0:0]
    notes += _edges(runs)
    arms = best_arms(sel)
    edges = edge_blockers(notes, [NOISELESS, PLAIN])
    if not all(a in arms for a in (NOISELESS, PLAIN)):
        if not edges:
            return missing(KEY, title, RULE, "batch_noise runs of the arms running_bn and bn (at scale=cpu, "
                           "measuring runs at the rates chosen on the selection seeds), logging `train_eval/acc`",
                           STUDY, notes)
        # the measuring runs wait for a grid that holds a compared arm's best rate inside it
        return verdict(KEY, title, RULE, EFFECT, difference([], []), edges, numbers=numbers(arms), notes=notes)
    c = float(chance(sel).iloc[0])
    g = lambda a: arms[a].gap  # noqa: E731
    rate = lambda a: float(arms[a][RATE].iloc[0])  # noqa: E731
    blockers = (untrained({f"{a} (rate {rate(a):g})": arms[a].final_acc for a in (NOISELESS, PLAIN)}, c)
                + _fit_blockers(arms) + edges)
    est = difference(g(NOISELESS), g(PLAIN))
    test = difference(points(arms[NOISELESS].final_acc), points(arms[PLAIN].final_acc))
    estimates = [("running_bn minus bn", TEST, test)]
    finding = (f"Gap (points): running_bn {fmt_ci(*mean_ci(g(NOISELESS)), digits=1)} at rate {rate(NOISELESS):g}, "
               f"bn {fmt_ci(*mean_ci(g(PLAIN)), digits=1)} at {rate(PLAIN):g}. Beside the rule: test accuracy, "
               f"running_bn minus bn, {TEST.fmt_pm(test)}")
    for a, effect, d in ((NOISIER, DOSE, lambda: difference(g(PLAIN), g(NOISIER))),
                         (REFERENCE, GN_REF, lambda: difference(g(REFERENCE), g(PLAIN)))):
        if a in arms:
            est_a = d()
            estimates.append((f"{PLAIN} minus {a}" if a == NOISIER else f"{a} minus {PLAIN}", effect, est_a))
            finding += f"; {effect.name} {effect.fmt_pm(est_a)}"
    facts = {"rates": {a: rate(a) for a in arms}, "fit": {a: float(r.fit.mean()) for a, r in arms.items()},
             "gap": {a: float(r.gap.mean()) for a, r in arms.items()},
             "test_acc": {a: float(r.final_acc.mean()) for a, r in arms.items()}}
    return verdict(KEY, title, RULE, EFFECT, est, blockers, finding + " (± 95% Welch half-widths).",
                   numbers=numbers(arms), notes=notes, estimates=estimates, facts=facts)


def _arm_label(a: str) -> str:
    return {NOISELESS: S.label("running_bn"), PLAIN: S.label("bn"), NOISIER: f"{S.label('ghost_bn')} (16)",
            REFERENCE: S.label("gn")}[a]


@S.figure
def gap_by_noise(runs: pd.DataFrame) -> Figure:
    """Train-slice minus test accuracy, and test accuracy, per arm at its rate, arms in order of
    batch noise (GroupNorm apart)."""
    S.need(runs, ["norm.name", "final_acc", "final_test_acc", "final.train_eval/acc", RATE], "gap by batch noise")
    arms = best_arms(study_runs(runs, STUDY)[0] if "study" in runs else runs)  # the measuring runs, where selected
    if not arms:
        raise S.NotDrawn("gap by batch noise: no runs of the study's arms")
    fig = Figure(figsize=(7.0, 3.4), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True)
    for x, (a, r) in enumerate(arms.items()):
        color = S.color({NOISELESS: "running_bn", PLAIN: "bn", NOISIER: "ghost_bn", REFERENCE: "gn"}[a])
        for ax, col, scale in ((axes[0], "gap", 1.0), (axes[1], "final_acc", S.PCT)):
            S.line_ci(ax, aggregate(r.assign(x=x), ["x"], col), "x", color, _arm_label(a), scale=scale,
                      errorbars=True)
    for ax in axes:
        ax.set_xticks(range(len(arms)))
        ax.set_xticklabels([a for a in arms], fontsize=8)
        ax.set_xlabel("arm, least batch noise first (gn apart)")
    axes[0].set_ylabel("gap (points)")
    axes[1].set_ylabel("final test accuracy (%)")
    axes[0].set_title("gap: eval-mode train-slice minus test accuracy", fontsize=9)
    axes[1].set_title("test accuracy", fontsize=9)
    S.legend_outside(fig, axes)
    fig.suptitle(f"Batch noise and overfitting, each arm at its rate ({S.caption_n(pd.concat(arms.values()))})")
    return fig


CHECKS = [check]
FIGURES = {
    "gap_by_noise": (lambda runs, curves, v: gap_by_noise(runs),
                     "Eval-mode train-slice minus test accuracy, and test accuracy, for BN without batch noise "
                     "(running statistics), BN, ghost BN over 16 images and GroupNorm, each at its rate."),
}
