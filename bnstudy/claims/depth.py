"""Trainability of deep networks: BN makes deep networks trainable that do not train without
it, above all plain networks without shortcuts (He et al. 2016, Sec. 4.2 and Fig. 6; Bjorck et
al. 2018). Study: depth_sweep (depth x plain/residual x bn/none x peak rate).

Protocol (bnstudy/conf/exp/depth_sweep.yaml; rule written 2026-11-29 and protocol redesigned
2026-12-06, each before its runs: results/HISTORY.md): init=kaiming for every arm (He et al.
2016, Sec. 4.2, initialize as He et al. 2015, whose init trained a 30-layer plain net without BN
where Xavier's stalled; so none is not handicapped by PyTorch's default init, under which a
conv+ReLU layer shrinks its signal's second moment ~6x). SGD momentum 0.9, weight decay 5e-4,
batch 128; linear warmup over the first 20% of the steps (full: 5%), then linear decay to zero
at the end (accuracy read at the end). cpu: plain nets only, depth {20, 44}, 450 steps (5.8
epochs of the subset) on a 10,000-image class-balanced subset, 5,000 test images, test
accuracy once, at the end (trainer.eval_every=450; train loss logged every 20 steps); gradient
probes every 50 steps. Seeds are the slowest key of the sweep, so a sweep cut short leaves every
cell with the seeds it finished, not some cells with none. The deep depth is 44 at cpu, 110 at
full; the shallow one 20. Beside the verdict, a table of each cell's best rate and accuracy.

Rate grid: 0.1 is He et al.'s rate for these nets (with BN); an unnormalized deep net may need a
smaller one, so 0.02 (1/5 of it, near He et al.'s 0.01 warmup rate for ResNet-110, but high
enough that a short run whose rate decays to zero still moves). Each (network, depth, norm) cell
runs both; the rule reads each at its own best. Two points, not more, for the cost (each rate
adds 12 runs at cpu).

Confirmation on fresh seeds (written 2026-12-07, before any of its runs; the rule below
unchanged): the protocol above on seeds 3-7, into a run folder of its own, with grids that
bracket both deep arms' best rates: the first runs left BN's plain-44 best at 0.1, the top of
{0.02, 0.1}, and none's at 0.02, the bottom, and a follow-up found none's plain-44 better at
0.004 (between 0.001, at chance, and 0.02). BN at {0.05, 0.1, 0.2}, none at {0.0025, 0.005,
0.01, 0.02}, both depths (70 runs; estimated from the first runs' medians, ~6.4 h of runs, ~3.2
h of sweep wall on 2 cores). If a deep arm's best rate is at an edge of its grid, the next x2
rate past it runs on the same seeds before the verdict is read, until a rate past the best does
worse. Two commands into one folder, then the report (published as
results/depth_sweep/confirmation/, beside the first runs):

    python -m bnstudy run +exp=depth_sweep scale=cpu data=cifar10_folder data.root=DATA seed=3,4,5,6,7 norm=bn optim.lr=0.05,0.1,0.2 hydra.sweep.dir=DIR hydra/launcher=joblib hydra.launcher.n_jobs=2
    python -m bnstudy run +exp=depth_sweep scale=cpu data=cifar10_folder data.root=DATA seed=3,4,5,6,7 norm=none optim.lr=0.0025,0.005,0.01,0.02 hydra.sweep.dir=DIR hydra/launcher=joblib hydra.launcher.n_jobs=2
    python -m bnstudy report DIR --out results/depth_sweep/confirmation

Which network decides is read from the runs that ran, whatever their status: where plain nets
ran with both norms but lack finished runs at 2 shared depths (failed, unfinished), there is no
verdict (runs missing) rather than a verdict on the residual nets; a deeper depth that ran with
both norms without finished runs of both is named in a note.

Limits: at a per-arm sd of ~3-5 points (the runs of 2026-12-06: BN plain-56 2.6, none 4.9), 3
seeds an arm detect ~9-15 points beyond the 5-point minimum (80% power, Welch dof ~2-4): this
design resolves "trains vs does not" (tens of points), not a few points. Residual nets without
BN under He init double their signal's variance at every block (De & Smith 2020), so a residual
none arm that fails may fail for its init; that is why residual is not the rule (init_sweep
compares BN with SkipInit).

Deviations: He et al. train on all of CIFAR-10 for 64k steps (lr 0.1 stepped at 32k and 48k;
ResNet-110 warmed up at 0.01 for ~400 iterations) with weight decay 1e-4, BN only; here a
10,000-image subset, 450 steps, linear warmup then decay (no separate warm-up rate), weight
decay 5e-4, a 2-point rate grid; at cpu plain nets only and depth 44 the deepest (He et al.'s
Fig. 6 trains plain-20/32/44/56), depth 56 and 110 and the residual nets only at scale=full
(cpu budget: BN's plain-56 needs more steps than the cpu runs can hold, 600 steps x 24 runs:
~110 min wall; the 2026-12-06 redesign in results/HISTORY.md); 3 seeds, not 5: the runs are
long (plain-44 ~10 min a run here)."""
from __future__ import annotations

import math
from typing import Optional

import pandas as pd
from matplotlib.figure import Figure

from ..analysis import style as S
from ..analysis.cells import (EDGE_RULE, SELECTION_BIAS, at_best_rate, edge_blockers, edge_rates, incomplete_cells,
                              study_runs, value_text)
from ..analysis.results import chance
from ..analysis.rules import (UNPAIRED, Effect, Note, Verdict, acc_cell, decision_text, has_norms, missing, points, untrained,
                              verdict)
from ..analysis.stats import aggregate, difference, mean_ci

KEY, STUDY, TITLE = "depth", "depth_sweep", "Trainability of deep networks"
ORDER = 100  # its place in the report (claims are read in this order)
STATEMENT = ("BatchNorm makes deep networks trainable that do not train without it, above all plain networks "
             "without shortcuts (He et al. 2016, Fig. 1; Bjorck et al. 2018).")
# fixed 2026-11-25 (when every rule was rewritten), after the old cpu depth_sweep, kept 2026-11-29
# for the redesigned protocol before any run of it: "trainable where the other is not" is a large
# gap; 5 points is the least that could mean it
EFFECT = Effect("BN's minus none's final accuracy at the deep depth", "points", 5.0)
# shown beside, not decided: no minimum
LOSS = Effect("a norm's final accuracy lost from the shallow depth to the deep one", "points", math.nan)
RATE = "optim.lr"
# Note.kind of a depth deeper than the deep one that ran with both norms but has no finished runs of both;
# data: {"depth": that depth, "deep_depth": the one read}
UNFINISHED_DEPTH = "deeper depth unfinished"
RULE = ("Plain networks (no shortcuts; residual networks only where no plain ones ran with both norms). Each "
        "(network, depth, norm) cell at its own best peak learning rate: the rate of the grid with the highest "
        "mean final test accuracy over seeds (a diverged run counts as chance; a tie goes to the lower rate). The "
        "deep depth is the deepest both norms ran, the shallow depth the shallowest. Effect = BN's minus none's "
        "mean final test accuracy at the deep depth, in points (Welch t over seeds). BN's deep arm must have "
        "trained (else the setup failed, not the unnormalized net: too few steps, no warmup), and none's "
        "shallow arm must have trained (else nothing shows that the unnormalized net trains at all in this "
        "setup). None's deep arm may sit at chance: that is the claimed outcome, not a failed arm. Shown beside, "
        "not decided: the same effect for the residual networks, and each norm's accuracy lost from the shallow "
        "depth to the deep one. " + SELECTION_BIAS + " " + decision_text(EFFECT) + " " + EDGE_RULE + " " + UNPAIRED)


def _with_kind(runs: pd.DataFrame) -> pd.DataFrame:
    plain = runs["model.plain"].fillna(False).astype(bool) if "model.plain" in runs else False
    return runs.assign(plain=plain)


def best_rate_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of each (network, depth, norm) cell at that cell's own best peak rate."""
    if RATE not in runs:  # one unnamed rate
        return runs.copy()
    return at_best_rate(runs, ["plain", "model.depth", "norm.name"], RATE)


class _Kind:
    """One network kind (plain or residual) at its best rates: its shared depths and arms."""

    def __init__(self, best: pd.DataFrame, plain: bool):
        self.name = "plain" if plain else "residual"
        self.sub = best[best.plain == plain]
        depths = [set(self.sub.loc[self.sub["norm.name"] == n, "model.depth"]) for n in ("bn", "none")]
        self.depths = sorted(depths[0] & depths[1])

    @property
    def ok(self) -> bool:
        return len(self.depths) >= 2

    def acc(self, norm: str, depth) -> pd.Series:
        return self.sub.loc[(self.sub["norm.name"] == norm) & (self.sub["model.depth"] == depth), "final_acc"]

    def best_rate(self, norm: str, depth) -> Optional[float]:
        """The cell's best rate (None where the runs name no rate)."""
        r = self.sub.loc[(self.sub["norm.name"] == norm) & (self.sub["model.depth"] == depth)]
        return float(r[RATE].iloc[0]) if RATE in r and len(r) else None

    def rate(self, norm: str, depth) -> str:
        """', its best rate 0.1' (empty where the runs name no rate)."""
        r = self.best_rate(norm, depth)
        return f", its best rate {r:g}" if r is not None else ""

    def arm(self, norm: str, depth) -> str:
        return f"{norm} ({self.name}, depth {depth:g}{self.rate(norm, depth)})"

    def effect(self):
        deep = self.depths[-1]
        return difference(points(self.acc("bn", deep)), points(self.acc("none", deep)))

    def blockers(self, chance_: float, notes: list[str]) -> list[str]:
        """Its arms that did not train, and the deep arms (the effect's) at an edge of their grid
        (EDGE_RULE; cells named as check's edge_rates names them)."""
        shallow, deep = self.depths[0], self.depths[-1]
        edge = edge_blockers(notes, [f"{self.name} depth {value_text(deep)} {n}" for n in ("bn", "none")])
        return untrained({self.arm("bn", deep): self.acc("bn", deep),
                          self.arm("none", shallow): self.acc("none", shallow)}, chance_) + edge

    def loss_estimates(self) -> dict:
        """Each norm's accuracy at the shallow depth minus at the deep one, in points (Welch t)."""
        shallow, deep = self.depths[0], self.depths[-1]
        return {n: difference(points(self.acc(n, shallow)), points(self.acc(n, deep))) for n in ("bn", "none")}

    def losses(self, loss: dict) -> str:
        shallow, deep = self.depths[0], self.depths[-1]
        return (f"accuracy lost from depth {shallow:g} to {deep:g} ({self.name}): bn {loss['bn'].value:.1f}, "
                f"none {loss['none'].value:.1f} points")

    def loss_rows(self, loss: dict) -> list:
        """(label, LOSS, estimate) per norm, for Verdict.estimates."""
        shallow, deep = self.depths[0], self.depths[-1]
        return [(f"network={self.name}; norm={n}; from depth {shallow:g} to {deep:g}", LOSS, loss[n])
                for n in ("bn", "none")]


def check(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    title = "BN makes deep networks trainable"
    sel, notes = study_runs(runs, STUDY)
    if not has_norms(sel, ("bn", "none")) or sel["model.depth"].nunique() < 2:
        return missing(KEY, title, RULE, "finished depth_sweep runs with norm=bn and norm=none at >= 2 depths",
                       STUDY, notes)
    best = best_rate_cells(_with_kind(sel))
    if RATE in sel:
        net = lambda d: d.assign(net=d.plain.map({True: "plain", False: "residual"}))  # noqa: E731
        notes += edge_rates(net(_with_kind(sel)), net(best), ["net", "model.depth", "norm.name"], RATE,
                            prefixes=("", "depth ", ""))
        notes += incomplete_cells(net(_with_kind(sel)), ["net", "model.depth", "norm.name"], RATE,
                                  within=["norm.name"], prefixes=("", "depth ", ""))  # each norm its own grid
    kinds = {p: _Kind(best, p) for p in (True, False)}
    # the network is chosen on what ran (any status), so that failed or unfinished plain runs do not
    # hand the verdict to the residual nets
    ran = _with_kind(study_runs(runs, STUDY, finished=False)[0])
    plain_ran = {"bn", "none"} <= set(ran.loc[ran.plain, "norm.name"])
    main = kinds[plain_ran]
    if not main.ok:
        return missing(KEY, title, RULE, f"{main.name} bn and none runs finished at >= 2 shared depths"
                       + (" (plain nets ran with both norms, so residual ones do not stand in)" if plain_ran else ""),
                       STUDY, notes)
    ran_main = ran[ran.plain == plain_ran]
    both = set(ran_main.loc[ran_main["norm.name"] == "bn", "model.depth"]) \
        & set(ran_main.loc[ran_main["norm.name"] == "none", "model.depth"])
    if both and max(both) > main.depths[-1]:
        notes.append(Note(f"depth {max(both):g} ran with both norms but has no finished runs of both: the deep depth "
                          f"is {main.depths[-1]:g}", UNFINISHED_DEPTH,
                          data={"depth": int(max(both)), "deep_depth": int(main.depths[-1])}))
    c = float(chance(sel).iloc[0])
    deep = main.depths[-1]
    est = main.effect()
    blockers = main.blockers(c, notes)
    loss = main.loss_estimates()
    estimates = main.loss_rows(loss)
    finding = (f"Final test accuracy (%) at depth {deep:g}: {main.arm('bn', deep)} "
               f"{acc_cell(*mean_ci(main.acc('bn', deep)))}, {main.arm('none', deep)} "
               f"{acc_cell(*mean_ci(main.acc('none', deep)))}. Beside the rule: {main.losses(loss)}.")
    other = kinds[main.name == "residual"]  # the kind not decided on
    if other is not main and other.ok:
        o_est, o_deep = other.effect(), other.depths[-1]
        if math.isfinite(o_est.value):
            o_block = other.blockers(c, notes)
            o_loss = other.loss_estimates()
            estimates += [(f"network={other.name}; depth {o_deep:g} (information, not the rule)", EFFECT, o_est)]
            estimates += other.loss_rows(o_loss)
            finding += (f" {other.name.capitalize()} nets, depth {o_deep:g} (information, not the rule): BN minus "
                        f"none {EFFECT.fmt_pm(o_est)}" + (" (± its 95% Welch half-width)" if o_est.has_interval
                                                           else "")
                        + (f", but {'; '.join(o_block)}" if o_block else "") + f"; {other.losses(o_loss)}.")
    facts = {"network": main.name, "shallow_depth": int(main.depths[0]), "deep_depth": int(deep),
             "deep_rates": {n: main.best_rate(n, deep) for n in ("bn", "none")}}  # each norm's best rate there
    return verdict(KEY, title, RULE, EFFECT, est, blockers, finding, numbers=_table(best), notes=notes,
                   estimates=estimates, facts=facts)


def _table(best: pd.DataFrame) -> pd.DataFrame:
    """One row per (network, depth): each norm's best rate and its accuracy there."""
    rows = []
    groups = sorted(best.groupby(["plain", "model.depth"]), key=lambda kv: (not kv[0][0], kv[0][1]))  # plain first
    for (plain, depth), g in groups:
        row = {"network": "plain" if plain else "residual", "depth": f"{depth:g}"}
        for n in ("bn", "none"):
            a = g[g["norm.name"] == n]
            if RATE in g:
                row[f"{n} best rate"] = f"{float(a[RATE].iloc[0]):g}" if len(a) else "—"
            row[f"{n} (%)"] = acc_cell(*mean_ci(a.final_acc)) if len(a) else "—"
        rows.append(row)
    return pd.DataFrame(rows)


@S.figure
def accuracy_vs_depth(runs: pd.DataFrame) -> Figure:
    """Final test accuracy vs depth per norm, plain (no shortcuts) and residual, each cell at
    its own best peak rate."""
    S.need(runs, ["norm.name", "model.depth", "final_acc"], "accuracy vs depth")
    if runs["model.depth"].nunique() < 2:
        raise S.NotDrawn("accuracy vs depth: fewer than 2 depths")
    r = best_rate_cells(_with_kind(runs))
    fig = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = fig.subplots()
    S.chance_line(ax, r)
    for norm in S.norms_of(r):
        for plain, style in ((False, "-"), (True, "--")):
            sub = r[(r["norm.name"] == norm) & (r.plain == plain)]
            if len(sub):
                S.line_ci(ax, aggregate(sub, ["model.depth"], "final_acc"), "model.depth", S.color(norm),
                          f"{S.label(norm)}, {'plain' if plain else 'residual'}", scale=S.PCT, errorbars=True,
                          linestyle=style)
    ax.set_xticks(sorted(r["model.depth"].dropna().unique()))
    ax.set_xlabel("depth (weighted layers)")
    ax.set_ylabel("final test accuracy (%)")
    rates = ", each cell at its best rate" if RATE in r and runs[RATE].nunique() > 1 else ""
    ax.set_title(f"Trainability vs depth{rates}\n{S.caption_n(r)}", fontsize=9)
    ax.legend(loc="best")
    return fig


CHECKS = [check]
FIGURES = {"accuracy_vs_depth": (lambda runs, curves, v: accuracy_vs_depth(runs),
                                 "Final test accuracy vs depth, plain and residual, each cell at its own best "
                                 "peak rate.")}
