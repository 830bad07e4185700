"""The batch-noise rule (BN without batch noise overfits more than BN) on hand-made run tables:
two phases as the study runs (rates chosen on seed 100, measured on seeds 0-4) and one phase as
at scale=smoke; each verdict, an edge of a compared arm's grid, an arm that did not train or fit."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from bnstudy.analysis.cells import EDGE_RULE
from bnstudy.analysis.rules import (BLOCKED, EDGE, HOLDS_MINIMUM, INCONCLUSIVE, MISSING, NOT_REPRODUCED, REPRODUCED,
                                    UNTRAINED)
from bnstudy.claims import batch_noise as B

from conftest import blockers_of, estimate_of, untrained_arms
from test_claims import NO_CURVES, noise, row

NORM = {"running_bn": ("running_bn", 32), "bn": ("bn", 32), "ghost16": ("ghost_bn", 16), "gn": ("gn", 32)}
BEST = {"running_bn": 0.2, "bn": 0.2, "ghost16": 0.2, "gn": 0.2}  # each inside the grid 0.1-0.4
GAP = {"running_bn": 0.35, "bn": 0.30, "ghost16": 0.27, "gn": 0.33}
TEST = {"running_bn": 0.62, "bn": 0.65, "ghost16": 0.66, "gn": 0.60}
LRS = (0.1, 0.2, 0.4)


def runs_noise(gap=None, test=None, best=None, fit=None, lrs=LRS, two_phase=True, seeds=range(5), sd=0.004,
               diverged=(), arms=tuple(NORM)):
    """Each arm's test accuracy at its best rate is test[arm], 3 points less at any other rate;
    its eval-mode train-slice accuracy is its test accuracy plus gap[arm] (fit[arm] instead where
    given). Two phases: every rate on seed 100, then `seeds` at the best rate; one phase: every
    rate on `seeds`. `diverged`: (arm, seed) pairs whose run diverged."""
    gap, test, best, fit = {**GAP, **(gap or {})}, {**TEST, **(test or {})}, {**BEST, **(best or {})}, fit or {}
    rng, rows = np.random.default_rng(5), []
    plan = ([(a, lr, 100) for a, lr in itertools.product(arms, lrs)] + [(a, best[a], s) for a in arms for s in seeds]
            if two_phase else [(a, lr, s) for a, lr, s in itertools.product(arms, lrs, seeds)])
    for arm, lr, s in plan:
        norm, ghost = NORM[arm]
        acc = test[arm] - (0.0 if lr == best[arm] else 0.03) + noise(rng, sd)
        train = fit.get(arm, min(1.0, acc + gap[arm] + noise(rng, sd)))
        status = "diverged" if (arm, s) in diverged else "completed"
        rows.append(row("batch_noise", norm, s, acc, status, **{
            "optim.lr": lr, "norm.ghost_batch_size": ghost, "norm.burn_in": 50, "data.batch_size": 128,
            "scale.name": "cpu", "scale.selection_seeds": "100" if two_phase else None,
            "final.train_eval/acc": train}))
    return pd.DataFrame(rows)


def test_reproduced_when_running_statistics_widen_the_gap_by_more_than_the_minimum():
    v = B.check(runs_noise(), NO_CURVES)
    assert v.verdict == REPRODUCED, v.finding
    assert 4.0 < v.estimate.value < 6.0 and v.estimate.n == 5 and v.estimate.method == "Welch t"
    assert v.effect.minimum == 2.0 and v.effect.claimed == 1
    assert v.facts["rates"] == BEST  # read on the measuring seeds at the chosen rates
    assert v.facts["gap"]["running_bn"] == pytest.approx(35.0, abs=0.6)
    # beside the rule, not decided: test accuracy, the dose (more noise) and GroupNorm
    assert estimate_of(v, "running_bn minus bn", B.TEST).value == pytest.approx(-3.0, abs=0.6)
    assert estimate_of(v, "bn minus ghost16", B.DOSE).value == pytest.approx(3.0, abs=0.8)
    assert estimate_of(v, "gn minus bn", B.GN_REF).value == pytest.approx(3.0, abs=0.8)
    assert list(v.numbers.arm) == ["running_bn", "bn", "ghost16", "gn"]
    assert list(v.numbers["normalizes by"])[1:3] == ["a batch of 128", "a batch of 16"]


def test_not_reproduced_when_the_gaps_match():
    v = B.check(runs_noise(gap={"running_bn": 0.30}, test={"running_bn": 0.65}), NO_CURVES)  # both fit 95%
    assert v.verdict == NOT_REPRODUCED and v.estimate.hi < 2.0, v.finding


def test_running_statistics_that_fit_less_than_bn_block_a_smaller_gap():
    """running_bn fits its slice 3 points less than bn (92% against 95%) with the same gap: the
    gap would compare an underfitted net with a fitted one, so no verdict; 1.5 points less is fine."""
    v = B.check(runs_noise(gap={"running_bn": 0.30}), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == BLOCKED, v.finding
    (b,) = blockers_of(v, B.UNDERFITS)
    assert b.subject == "running_bn" and b.data["shortfall"] == pytest.approx(3.0, abs=0.6)
    v = B.check(runs_noise(gap={"running_bn": 0.30}, test={"running_bn": 0.635}), NO_CURVES)
    assert v.verdict == NOT_REPRODUCED and not blockers_of(v, B.UNDERFITS), v.finding


def test_a_run_that_diverged_late_has_no_gap():
    """A run that diverged after its mid-run evaluation keeps that evaluation's accuracies: its
    gap is left out (its fit counts as chance, as the rule says)."""
    runs = runs_noise(seeds=range(10), diverged={("running_bn", 9)})
    late = (runs.seed == 9) & (runs["norm.name"] == "running_bn")
    runs.loc[late, ["final.train_eval/acc", "final_test_acc"]] = [0.0, 0.62]  # a mid-run reading: a gap of -62
    v = B.check(runs, NO_CURVES)
    assert v.facts["gap"]["running_bn"] == pytest.approx(35.0, abs=0.6) and v.estimate.n == 9, v.finding


def test_not_reproduced_when_running_statistics_overfit_less():
    v = B.check(runs_noise(gap={"running_bn": 0.25}, test={"running_bn": 0.70}), NO_CURVES)  # fitted at 95%
    assert v.verdict == NOT_REPRODUCED and v.estimate.value < 0, v.finding


def test_inconclusive_when_the_interval_holds_the_minimum_and_it_says_how_many_seeds():
    v = B.check(runs_noise(gap={"running_bn": 0.32}, sd=0.01), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == HOLDS_MINIMUM, v.finding
    assert v.estimate.lo < 2.0 < v.estimate.hi


def test_a_compared_arm_chosen_at_its_grids_edge_blocks_until_the_grid_grows():
    """running_bn does best at 0.4, the top of its selection grid: its measuring runs are not read
    and the verdict is blocked by that edge, naming the rate past it; once 0.8 (worse) is run on
    the selection seed, the same measuring runs decide."""
    runs = runs_noise(best={"running_bn": 0.4})
    v = B.check(runs, NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == BLOCKED and EDGE_RULE in v.rule, v.finding
    (b,) = blockers_of(v, EDGE)
    assert b.subject == "running_bn" and (b.data["best"], b.data["side"], b.data["beyond"]) == (0.4, "highest", 0.8)
    extended = runs_noise(best={"running_bn": 0.4}, lrs=(0.1, 0.2, 0.4, 0.8))
    assert B.check(extended, NO_CURVES).verdict == REPRODUCED


def test_an_arm_beside_the_rule_at_an_edge_does_not_block_in_one_phase():
    """One phase (as at scale=smoke): bn best at 0.1, the bottom, blocks; ghost16 at its bottom does not
    (it is shown beside the rule)."""
    edge_bn = B.check(runs_noise(best={"bn": 0.1}, two_phase=False), NO_CURVES)
    assert edge_bn.verdict == INCONCLUSIVE and [b.subject for b in blockers_of(edge_bn, EDGE)] == ["bn"]
    assert blockers_of(edge_bn, EDGE)[0].data["beyond"] == 0.05
    edge_ghost = B.check(runs_noise(best={"ghost16": 0.1}, two_phase=False), NO_CURVES)
    assert edge_ghost.verdict == REPRODUCED and not edge_ghost.blockers, edge_ghost.finding


def test_an_arm_that_did_not_train_blocks():
    diverged = {("running_bn", s) for s in range(5)}
    v = B.check(runs_noise(diverged=diverged), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == BLOCKED, v.finding
    assert untrained_arms(v) == {"running_bn (rate 0.2)"}
    (nf,) = blockers_of(v, B.NOT_FITTED)
    assert nf.subject == "running_bn" and nf.data["diverged"] == 5


def test_an_arm_that_did_not_fit_its_training_set_blocks_whatever_the_interval():
    """bn at 85% on its training slice: its gap is small because it has not fitted, which would
    read as a large effect; the rule gives no verdict."""
    v = B.check(runs_noise(fit={"bn": 0.85}), NO_CURVES)
    assert v.estimate.lo > 2.0 and v.verdict == INCONCLUSIVE and v.why == BLOCKED, v.finding
    (nf,) = blockers_of(v, B.NOT_FITTED)
    assert nf.subject == "bn" and nf.data["fit"] == pytest.approx(0.85) and not blockers_of(v, UNTRAINED)
    # GroupNorm, beside the rule, may fail to fit without blocking
    assert B.check(runs_noise(fit={"gn": 0.5}), NO_CURVES).verdict == REPRODUCED


def test_missing_runs_say_so_and_name_the_study():
    runs = runs_noise()
    v = B.check(runs[runs["norm.name"] != "running_bn"], NO_CURVES)
    assert v.verdict == MISSING and "+exp=batch_noise" in v.missing
    selection_only = runs[runs.seed == 100]  # the measuring phase has not run yet
    assert B.check(selection_only, NO_CURVES).verdict == MISSING


def test_figure_draws_every_arm_at_its_rate():
    fig = B.gap_by_noise(runs_noise())
    gaps = [c.lines[0].get_ydata()[0] for c in fig.axes[0].containers]  # one error bar an arm
    # running_bn first, at its chosen rate on the measuring seeds (the selection seed's 0.1 and 0.4 left out)
    assert len(gaps) == 4 and gaps[0] == pytest.approx(35.0, abs=0.6), gaps
