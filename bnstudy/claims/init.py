"""Less dependence on initialization, at one peak rate: BN makes training less sensitive to the
initial weights' scale and scheme (Ioffe & Szegedy 2015, Sec. 3.3). Study: init_sweep (init scheme
x scale x bn / none / none + SkipInit, at one peak rate): sensitivity at that rate. The same cells,
each at its own best rate, are init_rates (bnstudy/claims/init_rates.py).

Protocol (bnstudy/conf/exp/init_sweep.yaml; rule written 2026-11-29, before any run of this
protocol: results/HISTORY.md): init {kaiming (He et al. 2015, fan_out), normal (a fixed std
0.01, whatever the fan)} x init.scale {0.1, 1, 4} (every conv and hidden linear weight
multiplied after init; the classifier keeps its constructor's init under every cell, bnstudy >=
0.2.0) x norm {bn, none, skipinit}. Relative to kaiming, normal(0.01) is ~0.1-0.2x for these
layers, so the 6 cpu cells span ~0.01x to 4x of the He-init scale. The control, none + SkipInit
(De & Smith 2020: a zero-initialized scalar gain on every residual branch), trains without
normalization, so that BN is not credited for what an identity-biased init does. ResNet-20, SGD
momentum 0.9, weight decay 5e-4, batch 128, one peak rate 0.1 for every arm and cell; linear
warmup over the first 10% of the steps, then linear decay to zero at the end (accuracy read at
the end). cpu: 10,000-image class-balanced subset, 5,000 test images, 200 steps (2.6 epochs),
test accuracy once, at the end. A seed missing a finished run in some of its arm's cells (a
crash, an unfinished run; a diverged run counts, as chance) is left out of its arm's spreads,
named in a note, rather than spread over fewer cells. Beside the verdict: each arm's best and
worst cell, and the accuracy of every cell.

Rate: one peak rate, 0.1 (He et al. 2016's rate for these nets, and the claim's own setting:
resilience to the init at a given rate). A deviation from "each arm at its own best rate": a
per-cell grid would multiply the cost by its size. What a fixed rate does, stated before the
runs: an unnormalized net that needs a smaller rate diverges in more cells at 0.1, which widens
none's spread (toward the claim); BN's scale-a cells train as scale 1 at rate 0.1/a^2 (its
output ignores the weights' scale, its gradient shrinks by 1/a), so in 200 steps BN's x4 cells
train as at 0.006 and may lag, which widens BN's spread (against the claim).

Limits (stated before the runs): the spread is in accuracy points, so an arm whose best cell
trains little has little room to spread; the finding gives each arm's best cell beside its
spread. Per seed, a best minus a worst over 6 cells is biased upward by the seed noise (more for
noisier arms); not corrected.

Deviations: Ioffe & Szegedy argue from BN's scale invariance and Inception on ImageNet; here
ResNet-20 on a 10,000-image CIFAR-10 subset, 200 steps, one peak rate for every arm, 6 init
cells at cpu (2 schemes x 3 scales; full has 15)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..analysis import style as S
from ..analysis.cells import study_runs
from ..analysis.results import SKIPINIT, chance, variant_names
from ..analysis.rules import (Blocker, Effect, Note, Verdict, acc_col, decision_text, has_norms, missing, pct,
                              untrained, verdict)
from ..analysis.stats import aggregate, difference, one_sample

KEY, STUDY, TITLE = "init", "init_sweep", "Less dependence on initialization, at one peak rate"
ORDER = 90  # its place in the report (claims are read in this order)
STATEMENT = ("BatchNorm makes training less sensitive to the initial weights' scale and scheme (Ioffe & Szegedy "
             "2015, Sec. 3.3).")
# fixed 2026-11-25 (when every rule was rewritten), after the old cpu init_sweep, kept 2026-11-29
# for the redesigned protocol before any run of it: 5 points of spread (a spread is a max minus a
# min over many cells, so it is larger and noisier than one cell's difference)
EFFECT = Effect("none's accuracy spread over the init cells minus BN's (per seed: best minus worst cell)", "points", 5.0)
# each arm's own spread, shown beside (one-sample t over seeds): no minimum
SPREAD = Effect("an arm's accuracy spread over the init cells (per seed: best minus worst cell)", "points", math.nan)
FIXED_IN = "0.2.0"  # the bnstudy version whose init schemes leave the classifier alone
REINIT = "re-initialized the classifier"  # Blocker.kind of runs older than FIXED_IN; data: {"versions": theirs}
ONE_RATE = "one peak rate"  # Note.kind where runs used several rates; data: {"rates": those, "using": the one read}
# Note.kind of the seeds left out of the spreads; data: {variant: {seed: (its cells, the arm's cells)}}
SEEDS_LEFT_OUT = "seeds left out of the spreads"
RATE = "optim.lr"
RULE = ("Cells: the init settings (scheme x scale, and zero_init_residual where swept) both compared arms ran, at "
        "one peak learning rate (where runs used several, the most common one, noted). Per seed, an arm's spread "
        "= its best minus its worst cell's final test accuracy (diverged = chance), in points. Effect = none's "
        "spread minus BN's (Welch t over seeds). BN and none are compared without SkipInit (model.skipinit=false) "
        "when both ran so; none + SkipInit (norm=skipinit) is an arm of its own, never pooled with none: BN's "
        "spread against its spread is shown beside, with its interval, not decided. Each compared arm's best cell "
        "must have trained (an arm that trains nowhere has no spread to show), and the runs must leave the "
        f"classifier's init alone (bnstudy >= {FIXED_IN}). An arm's worst cell may sit at chance: that is the "
        "init dependence the claim is about. " + decision_text(EFFECT))


def _older(version: str, than: str) -> bool:
    as_tuple = lambda v: tuple(int(x) for x in str(v).split(".")[:3] if x.isdigit())
    return as_tuple(version) < as_tuple(than)


def spreads(sel: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, seed): best minus worst cell's accuracy, in points, and the cells it saw."""
    g = sel.groupby(["variant", "seed"])
    return pd.DataFrame({"spread": g.final_acc.max() - g.final_acc.min(), "cells": g.size()}).reset_index().assign(
        spread=lambda d: 100 * d.spread)


def whole_seeds(sp: pd.DataFrame, ran: dict, notes: list) -> pd.DataFrame:
    """The spreads (spreads()) of the seeds with a finished run in every cell their arm ran (`ran`:
    variant -> its cells); the others are left out, named in a SEEDS_LEFT_OUT note: a seed missing
    a run (failed, unfinished) would spread over fewer cells than its arm ran."""
    ran = sp.variant.map(ran)
    short = sp.assign(ran=ran)[sp.cells < ran]
    if len(short):
        left = {}
        for r in short.itertuples():
            left.setdefault(r.variant, {})[int(r.seed)] = (int(r.cells), int(r.ran))
        notes.append(Note("left out of the spreads, missing a finished run in some of their arm's cells: "
                          + ", ".join(f"{r.variant} seed {r.seed} ({r.cells} of {r.ran} cells)"
                                      for r in short.itertuples()), SEEDS_LEFT_OUT, data=left))
    return sp[~(sp.cells < ran)]


def _one_rate(sel: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """The runs at one peak rate: a spread over init cells must not also span rates."""
    if RATE not in sel or sel[RATE].nunique() <= 1:
        return sel
    keep = sel[RATE].value_counts().sort_index().sort_values(ascending=False, kind="stable").index[0]
    rates = sorted(sel[RATE].unique())
    notes.append(Note(f"runs at peak rates {rates}: using {keep:g} only", ONE_RATE,
                      data={"rates": [float(r) for r in rates], "using": float(keep)}))
    return sel[sel[RATE] == keep]


def check(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    title = "BN makes training less dependent on initialization"
    sel, notes = study_runs(runs, STUDY)
    sel = _one_rate(sel, notes)
    keys = [k for k in ("init.name", "init.scale", "init.zero_init_residual") if k in sel and sel[k].nunique() > 1]
    if not has_norms(sel, ("bn", "none")) or not keys:
        return missing(KEY, title, RULE, "finished init_sweep runs with norm=bn and norm=none over >= 2 init "
                       "settings", STUDY, notes)
    sel = sel.assign(variant=variant_names(sel))
    cells = {v: set(map(tuple, g[keys].to_numpy())) for v, g in sel.groupby("variant")}
    pairs = [(f"bn{x}", f"none{x}") for x in ("", SKIPINIT) if {f"bn{x}", f"none{x}"} <= set(cells)]
    pairs = [(b, n) for b, n in pairs if len(cells[b] & cells[n]) >= 2]
    if not pairs:
        return missing(KEY, title, RULE, ">= 2 init settings run with both bn and none", STUDY, notes)
    bn_v, none_v = pairs[0]  # without SkipInit where both ran so
    shared = cells[bn_v] & cells[none_v]
    sel = sel[[tuple(r) in shared for r in sel[keys].to_numpy()]]
    sp = whole_seeds(spreads(sel), {v: len(c & shared) for v, c in cells.items()}, notes)
    spread = lambda v: sp.loc[sp.variant == v, "spread"]
    agg = aggregate(sel, ["variant"] + keys, "final_acc")
    best = agg.groupby("variant")["mean"].max()
    worst = agg.groupby("variant")["mean"].min()
    arm_spread = {v: one_sample(spread(v)) for v in [bn_v, none_v] + [v for v in sorted(best.index)
                                                                      if v not in (bn_v, none_v)]}
    estimates = [(f"arm={v}", SPREAD, e) for v, e in arm_spread.items()]
    c = float(chance(sel).iloc[0])
    blockers = untrained({f"{v} (its best cell)": [best[v]] for v in (bn_v, none_v)}, c)
    est = difference(spread(none_v), spread(bn_v))
    old = sorted({str(v) for v in sel.get("bnstudy_version", pd.Series(dtype=str)).dropna() if _older(v, FIXED_IN)})
    if old:
        blockers.append(Blocker(f"these runs were made with bnstudy {', '.join(old)}, whose init schemes and scales "
                                f"also re-initialized the classifier (no norm follows it: logits of std ~4.6 under "
                                f"kaiming), which BN cannot absorb; fixed in {FIXED_IN}: rerun", REINIT,
                                data={"versions": old}))
    peak = float(sel[RATE].iloc[0]) if RATE in sel and sel[RATE].notna().any() else None
    rate = f" at peak rate {peak:g}" if peak is not None else ""
    finding = (f"Over {len(shared)} init cells{rate}. Mean spread: {bn_v} {arm_spread[bn_v].value:.1f}, {none_v} "
               f"{arm_spread[none_v].value:.1f} points; best cell: {bn_v} {pct(best[bn_v])}, {none_v} "
               f"{pct(best[none_v])}; worst cell: {bn_v} {pct(worst[bn_v])}, {none_v} {pct(worst[none_v])}.")
    skip, s_block = "none" + SKIPINIT, []
    if skip != none_v and skip in cells and len(cells[skip] & shared) == len(shared):
        est_s = difference(spread(skip), spread(bn_v))
        estimates.append((f"{skip}'s spread minus {bn_v}'s (information, not the rule)", EFFECT, est_s))
        s_block = untrained({f"{skip} (its best cell)": [best[skip]]}, c)
        finding += (f" Beside the rule, against the unnormalized net with SkipInit: {skip}'s spread minus "
                    f"{bn_v}'s {EFFECT.fmt_pm(est_s)}" + (" (± its 95% Welch half-width)" if est_s.has_interval
                                                           else "")
                    + (f", but {'; '.join(s_block)}" if s_block else "")
                    + f"; {skip} best cell {pct(best[skip])}, worst {pct(worst[skip])}.")
    others = [v for v in sorted(best.index) if v not in (bn_v, none_v, skip)
              or (v == skip and len(cells[skip] & shared) < len(shared))]
    if others:
        finding += " Also beside (not in the verdict): " + "; ".join(
            f"{v} spread {arm_spread[v].value:.1f} points, worst {pct(worst[v])}" for v in others) + "."
    numbers = agg.assign(acc=acc_col(agg)).pivot_table(index=keys, columns="variant", values="acc",
                                                        aggfunc="first").reset_index()
    numbers.columns.name = None
    return verdict(KEY, title, RULE, EFFECT, est, blockers, finding, numbers=numbers, notes=notes,
                   estimates=estimates, facts={"best_cell": {v: float(x) for v, x in best.items()},
                                               "worst_cell": {v: float(x) for v, x in worst.items()},
                                               "cells": len(shared), "peak_rate": peak,
                                               # arms beside the rule that did not train (their best cell)
                                               "untrained_beside": [b.subject for b in s_block]})


@S.figure
def init_heatmap(runs: pd.DataFrame) -> Figure:
    """Final test accuracy over init scheme x init scale, one panel per norm (and per SkipInit
    variant where model.skipinit was swept: never pooled with the plain network)."""
    S.need(runs, ["norm.name", "init.name", "init.scale", "final_acc"], "accuracy over initializations")
    if runs.groupby(["init.name", "init.scale"]).ngroups < 2:
        raise S.NotDrawn("accuracy over initializations: fewer than 2 (scheme, scale) cells")
    runs = runs.assign(variant=variant_names(runs))
    norms = S.norms_of(runs, "variant")
    names = sorted(runs["init.name"].dropna().unique())
    scales = sorted(runs["init.scale"].dropna().unique())
    fig = Figure(figsize=(1.0 + (0.9 * len(scales) + 1.0) * len(norms), 0.5 * len(names) + 1.6), layout="constrained")
    axes = fig.subplots(1, len(norms), squeeze=False, sharey=True)[0]
    chance = 100.0 / float(runs.get("model.num_classes", pd.Series([10])).dropna().iloc[0])
    im = None
    for ax, norm in zip(axes, norms):
        sub = runs[runs.variant == norm]
        agg = aggregate(sub, ["init.name", "init.scale"], "final_acc")
        grid = agg.pivot(index="init.name", columns="init.scale", values="mean").reindex(index=names, columns=scales) * S.PCT
        div = sub[sub.status == "diverged"].groupby(["init.name", "init.scale"]).size()
        im = ax.imshow(grid.to_numpy(float), cmap="magma", vmin=chance, vmax=max(chance + 1, runs.final_acc.max() * S.PCT),
                       aspect="auto")
        for (i, n), (j, s) in ((a, b) for a in enumerate(names) for b in enumerate(scales)):
            v = grid.iloc[i, j]
            if np.isfinite(v):
                mark = "†" if div.get((n, s), 0) else ""
                ax.text(j, i, f"{v:.0f}{mark}", ha="center", va="center", fontsize=7,
                        color="white" if v < (chance + grid.max().max()) / 2 else "black")
        ax.set_xticks(range(len(scales)), [f"{s:g}" for s in scales])
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("init scale (× weights after init)")
        ax.set_title(S.label(norm))
        ax.grid(False)
    axes[0].set_ylabel("init scheme")
    if im is not None:
        fig.colorbar(im, ax=list(axes), label="final test accuracy (%)")
    fig.suptitle(f"Final test accuracy (%) over initializations ({S.caption_n(runs, ci=False)}; "
                 "†: a seed diverged, counted as chance)", fontsize=9)
    return fig


CHECKS = [check]
FIGURES = {"init_heatmap": (lambda runs, curves, v: init_heatmap(runs), "Final test accuracy over init scheme x scale.")}
