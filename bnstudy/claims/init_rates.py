"""Less dependence on initialization, each init cell at its own best rate (Ioffe & Szegedy 2015,
Sec. 3.3: BN(aWu) = BN(Wu)). Study: init_rates, the cells of init_sweep (bnstudy/claims/init.py),
each trained at the peak rate chosen for it on a selection seed.

Why (written 2026-12-07, after init_sweep's runs at one rate had been read, before any run of this
study): init_sweep trains every cell at one peak rate, 0.1, so its spread measures sensitivity to
the rate as much as to the init. The unnormalized ResNet sits at chance at He init and diverges at
4x He at that rate, where a lower rate may train it; BN's scale-a cells train roughly as scale 1 at
rate 0.1/a^2. Here each (arm, init scheme, init scale) cell is its own sweeper arm with its own
rate, so a cell counts at chance only where no rate of its grid trains it, and init_sweep's verdict
stays what it is: sensitivity at one rate.

Protocol (bnstudy/conf/exp/init_rates.yaml): arms bn, none and none + SkipInit (norm=skipinit) x
init {kaiming (He et al. 2015, fan_out), normal (std 0.01)} x init.scale {0.1, 1, 4}: 18 sweeper
arms at cpu, named as bnstudy/analysis/selection.py's arm_names names them (bn-kaiming-x4). The
rest as init_sweep: ResNet-20, SGD momentum 0.9, weight decay 5e-4, batch 128, linear warmup over
the first 10% of the steps then linear decay to zero; cpu: 200 steps on a 10,000-image
class-balanced subset, test accuracy on 5,000 test images at the end. Two phases, by selection.py's
RULE and NOWHERE_RULE: (1) select: every arm over peak lr {0.0125, 0.025, 0.05, 0.1, 0.2, 0.4} (x2)
on seed 100; an arm whose best rate is at an edge of its grid runs the next x2 rate past it (that
arm alone: its norm, init and init.scale on the command line) until a rate past its best does
worse, before any measuring run (expected, before any run: BN's x4 cells, whose effective rate is
~1/16 of the nominal one, may do best above 0.4, and its x0.1 cells below 0.0125); (2) measure:
seeds 5-9 (seeds 0-4 trained init_sweep at rate 0.1 and were seen), each arm at its rate in
hydra.sweeper.chosen, committed from `python -m bnstudy select` before those runs. Only the
measuring runs enter the verdicts.

Pairing, decided before the runs: Welch t over seeds, not paired by seed. The compared arms are
different networks: a shared seed shares the data order and subset, not a trajectory, so nothing
leads us to expect their spreads to co-vary; a paired t on 5 seeds has 4 degrees of freedom where
Welch's has up to 8; a seed left out of one arm (a missing cell) then costs that arm alone; and it
is init_sweep's rule, so the two verdicts read alike.

Limits (stated before the runs): as init_sweep's: the spread is in accuracy points, so an arm
whose best cell trains little has little room to spread (each arm's best cell is given beside);
a best minus a worst over 6 cells per seed is biased upward by seed noise, more for noisier arms;
not corrected. In init_sweep's runs at one rate BN's cells were the noisier (seed sd 0.7-3.0 points
a cell, the unnormalized arms' 0-1.5): if that holds at the chosen rates, the bias inflates BN's
spread more, against the claim (stated on review 2026-12-07, before any run). A cell that trains at no rate of its grid (0.0125-0.4, 32x) is measured at 0.0125
and counts at what it scores, chance if it does not train: a net that would train only below
0.0125 is counted at chance (for the unnormalized arms that widens their spread, toward the
claim; the spread over the cells where both arms trained is shown beside, not decided). One
selection seed chooses each rate: a near tie may go either way, which can cost a cell accuracy on
the measuring seeds, but biases nothing toward an arm (the measuring seeds chose nothing).

Expected before any run, from the nets at initialization (measured in-process on review, the day
the rule was written): the unnormalized ResNet-20 at 4x He init has logits of std ~1e10 and a
loss of ~2e10 at its first step, above trainer.diverge_loss, so that cell diverges at step 0 at
every rate of any grid and counts at chance; none + SkipInit at 4x He starts with logits of std
~0.4. So the BN-against-none verdict is expected to be carried by that one cell (none's spread is
at least its best cell minus chance): its reading is "BN trains where the unnormalized net cannot
start", not a finer dependence on the init. The comparison that tests dependence beyond a
blow-up at the first step is BN against none + SkipInit, and beside both, the effect over the
cells where both arms trained.

Deviations: Ioffe & Szegedy argue from BN's scale invariance and Inception on ImageNet; here
ResNet-20 on a 10,000-image CIFAR-10 subset, 200 steps, 6 init cells at cpu, each at its own
rate from a 6-point grid chosen on one seed."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..analysis.cells import EDGE_RULE, at_best_rate, edge_blockers, edge_rates, study_runs, value_text
from ..analysis.results import SKIPINIT, chance, variant_names
from ..analysis.rules import (TRAINED_MARGIN, Blocker, Effect, Note, Verdict, acc_col, decision_text, has_norms,
                              missing, pct, untrained, verdict)
from ..analysis.selection import NOWHERE, NOWHERE_RULE, arm_names, choose, phases
from ..analysis.selection import RULE as SELECTION_RULE
from ..analysis.stats import aggregate, difference, one_sample
from . import init

KEY, STUDY, TITLE = "init_rates", "init_rates", "Less dependence on initialization, each cell at its best rate"
ORDER = 95  # its place in the report: beside init_sweep's one-rate verdict
STATEMENT = init.STATEMENT
# the minimum of init_sweep's rule (fixed 2026-11-25, kept 2026-11-29), kept 2026-12-07 before any run
EFFECT = Effect("the unnormalized arm's accuracy spread over the init cells minus BN's (per seed: best minus worst "
                "cell, each cell at its chosen rate)", "points", init.EFFECT.minimum)
SPREAD = init.SPREAD
CELL = ["init.name", "init.scale"]  # an init cell: scheme x scale
RATE = "optim.lr"
# Blocker.kind of this rule's conditions beyond rules' and cells'
NO_SELECTION = "rates not chosen on selection seeds"  # no subject
NOT_MEASURED = "cells not measured"  # data: {"arms": the sweeper arms (bn-kaiming-x4) without a measuring run}
# Note.kind of the cells that trained at no rate of their grid; data: {arm: (grid's lowest, highest rate)}
TRAINED_NOWHERE = "trained at no rate"
BESIDE = "over the cells where both arms trained (information, not the rule)"  # an estimate's label
BESIDE_EFFECT = Effect(EFFECT.name, "points", math.nan)  # no minimum: shown, never decided
RULE = ("Arms: bn, none (model.skipinit=false) and none + SkipInit (norm=skipinit, never pooled with none), each "
        "init cell (scheme x scale) of each arm an arm of the sweep with its own peak learning rate. "
        + SELECTION_RULE + " (The measuring seeds chose nothing, so the choice biases no arm upward.) " + NOWHERE_RULE
        + " Per measuring seed, an arm's spread = its best minus its worst "
        "cell's final test accuracy (a diverged run counts as chance), in points, over the init cells both compared "
        "arms ran; a seed missing a finished run in one of them is left out of its arm's spreads, named. Effect = "
        "the unnormalized arm's spread minus BN's, Welch t over seeds (not paired by seed: different networks share "
        "a seed's data order, not a trajectory). BN is compared with none, and separately with none + SkipInit, by "
        "the same rule and minimum. A cell may sit at chance at its chosen rate (the init dependence the claim is "
        "about): it is named. No verdict where a compared arm's best cell did not train (an arm that trains "
        "nowhere has no spread to show), where a cell a compared arm ran has no measuring run, or where the rates "
        "were not chosen on selection seeds. " + decision_text(EFFECT) + " " + EDGE_RULE + " Here each cell of a "
        "compared arm has its own grid: a cell whose best rate is at an edge of it blocks the verdict; a cell that "
        "trained at no rate of its grid is not at an edge.")


def cell_name(name, scale) -> str:
    """An init cell as the findings name it: 'kaiming x4'."""
    return f"{name} x{value_text(scale)}"


def _blocked(title: str, blockers: list, notes: list, facts: dict) -> Verdict:
    """No measuring run to read, but a reason that forbids a verdict already (an edge)."""
    est = difference(pd.Series(dtype=float), pd.Series(dtype=float))
    return verdict(KEY, title, RULE, EFFECT, est, blockers, "No measuring runs read.", notes=notes, facts=facts)


def compare(runs: pd.DataFrame, other: str, title: str) -> Verdict:
    """BN's spread over the init cells against the unnormalized arm `other` ('none' or 'none +
    SkipInit'), each cell at its chosen rate, on the measuring runs."""
    pair, norm = ("bn", other), "none" if other == "none" else "skipinit"  # norm: as the command line says it
    grid, _ = study_runs(runs, STUDY, phase="select")  # the selection runs (every run, if none were)
    sel, notes = study_runs(runs, STUDY)  # the measuring runs at the chosen rates
    needs = f"finished {STUDY} runs with norm=bn and norm={norm} over >= 2 init cells"
    if not len(grid) or not set(CELL) <= set(grid):
        return missing(KEY, title, RULE, needs, STUDY, notes)
    grid = grid.assign(variant=variant_names(grid), arm=arm_names(grid))
    cells = {v: set(map(tuple, g[CELL].to_numpy())) for v, g in grid.groupby("variant")}
    if not has_norms(grid, pair, "variant") or len(cells["bn"] & cells[other]) < 2:
        return missing(KEY, title, RULE, needs, STUDY, notes)
    shared = cells["bn"] & cells[other]
    in_shared = lambda d: d[d.variant.isin(pair).to_numpy()  # noqa: E731
                            & np.array([tuple(r) in shared for r in d[CELL].to_numpy()], dtype=bool)]
    grid = in_shared(grid)

    # the choice each cell's rate rests on: selection.choose's, read on the selection runs
    choices = choose(grid)
    nowhere = choices[choices.status.astype(str).str.startswith(NOWHERE)]
    blockers: list = []
    if len(nowhere):
        span = {a: (min(r), max(r)) for a, r in zip(nowhere.arm, nowhere.rates)}
        notes.append(Note("trained at no rate of their grid, measured at its lowest rate (counted at what they score, "
                          "chance if they do not train): " + ", ".join(f"{a} ({lo:g} to {hi:g})"
                                                                      for a, (lo, hi) in span.items()),
                          TRAINED_NOWHERE, data=span))
    rated = grid[~grid.arm.isin(nowhere.arm)]
    notes += edge_rates(rated, at_best_rate(rated, ["arm"]), ["arm"], RATE)
    blockers += edge_blockers(notes, set(grid.arm))
    if phases(grid)[0].empty:
        blockers.append(Blocker("the rates were not chosen on selection seeds (scale.selection_seeds): each cell's "
                                "best rate here is read on the seeds that measure it, which biases it upward",
                                NO_SELECTION))
    facts = {"cells": len(shared), "chosen": {a: float(r) for a, r in zip(choices.arm, choices.chosen)},
             "trained_nowhere": sorted(nowhere.arm)}

    has_cells = len(sel) > 0 and set(CELL) <= set(sel)
    sel = in_shared(sel.assign(variant=variant_names(sel), arm=arm_names(sel))) if has_cells else sel.iloc[0:0]
    if not has_norms(sel, pair, "variant"):
        if blockers:
            return _blocked(title, blockers, notes, facts)
        return missing(KEY, title, RULE, f"measuring runs of {STUDY} with norm=bn and norm={norm} "
                       "(hydra.sweeper.phase=measure, each arm at the rate `python -m bnstudy select` chose)", STUDY,
                       notes)
    unmeasured = sorted(set(grid.arm) - set(sel.arm))
    if unmeasured:
        blockers.append(Blocker(f"no measuring run of {', '.join(unmeasured)}: every cell the compared arms ran "
                                "enters the spread", NOT_MEASURED, data={"arms": unmeasured}))
    best = at_best_rate(sel, ["variant"] + CELL, RATE)  # at its chosen rate: one rate a cell where selected
    sp = init.whole_seeds(init.spreads(best), {v: len(shared) for v in pair}, notes)
    spread = lambda v, s=sp: s.loc[s.variant == v, "spread"]  # noqa: E731
    agg = aggregate(best, ["variant"] + CELL, "final_acc")
    c = float(chance(best).iloc[0])
    top, low = agg.groupby("variant")["mean"].max(), agg.groupby("variant")["mean"].min()
    blockers += untrained({f"{v} (its best cell)": [top.get(v, float("nan"))] for v in pair}, c)
    est = difference(spread(other), spread("bn"))
    estimates = [(f"arm={v}", SPREAD, one_sample(spread(v))) for v in pair]

    flat = agg[agg["mean"] < c + TRAINED_MARGIN]
    at_chance = {v: [cell_name(*k) for k in map(tuple, g[CELL].to_numpy())] for v, g in flat.groupby("variant")}
    both_trained = agg[agg["mean"] >= c + TRAINED_MARGIN].groupby(CELL).variant.nunique()
    trained = {k for k, n in both_trained.items() if n == len(pair)}
    if len(trained) >= 2:
        both = init.spreads(best[[tuple(r) in trained for r in best[CELL].to_numpy()]])
        both = both[both.cells >= len(trained)]
        estimates.append((BESIDE, BESIDE_EFFECT, difference(both.loc[both.variant == other, "spread"],
                                                      both.loc[both.variant == "bn", "spread"])))
    rates = best[RATE]
    finding = (f"Over {len(shared)} init cells, each at its chosen rate ({rates.min():g} to {rates.max():g}). Mean "
               f"spread: bn {estimates[0][2].value:.1f}, {other} {estimates[1][2].value:.1f} points; best cell: bn "
               f"{pct(top.get('bn'))}, {other} {pct(top.get(other))}; worst cell: bn {pct(low.get('bn'))}, {other} "
               f"{pct(low.get(other))}.")
    if at_chance:
        finding += " At chance at their chosen rate: " + "; ".join(f"{v} {', '.join(k)}"
                                                                   for v, k in at_chance.items()) + "."
    if len(trained) >= 2:
        finding += (f" Beside the rule, over the {len(trained)} cells where both arms trained: "
                    f"{EFFECT.fmt_pm(estimates[-1][2])}.")
    rate_of = best.groupby(["variant"] + CELL)[RATE].first()
    table = agg.assign(acc=[f"{a} at {rate_of[k]:g}" for a, k in
                            zip(acc_col(agg), map(tuple, agg[["variant"] + CELL].to_numpy()))])
    numbers = table.pivot_table(index=CELL, columns="variant", values="acc", aggfunc="first").reset_index()
    numbers.columns.name = None
    facts.update({"best_cell": {v: float(x) for v, x in top.items()},
                  "worst_cell": {v: float(x) for v, x in low.items()},
                  "at_chance": at_chance, "trained_cells": len(trained)})
    return verdict(KEY, title, RULE, EFFECT, est, blockers, finding, numbers=numbers, notes=notes,
                   estimates=estimates, facts=facts)


def check(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    return compare(runs, "none", "BN makes training less dependent on initialization, each init cell at its best rate")


def check_skipinit(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    return compare(runs, "none" + SKIPINIT, "BN makes training less dependent on initialization than an unnormalized "
                   "net with SkipInit, each init cell at its best rate")


CHECKS = [check, check_skipinit]
FIGURES = {"init_best_rates_heatmap": (
    lambda runs, curves, v: init.init_heatmap(at_best_rate(runs.assign(variant=variant_names(runs)),
                                                           ["variant"] + CELL, RATE)),
    "Final test accuracy over init scheme x scale, each cell at its chosen rate (measuring seeds).")}
