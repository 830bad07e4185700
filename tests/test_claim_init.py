"""The init claim (BN makes training less dependent on the weight initialization) on hand-made
run tables shaped like the redesigned init_sweep: init scheme x scale x bn / none / none +
SkipInit (norm=skipinit: norm.name none, model.skipinit true), one peak rate, 5 seeds."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from bnstudy.analysis.rules import BLOCKED, INCONCLUSIVE, MISSING, NOT_REPRODUCED, REPRODUCED
from bnstudy.claims import init
from conftest import notes_of, untrained_arms

from test_claims import NO_CURVES, noise, row

CELLS = list(itertools.product(("kaiming", "normal"), (0.1, 1.0, 4.0)))
FLAT = {c: 0.6 for c in CELLS}
# none: trains at the down-scaled cells, less at He init, diverges at kaiming x 4
FRAGILE = {("kaiming", 0.1): 0.55, ("kaiming", 1.0): 0.35, ("kaiming", 4.0): None,
           ("normal", 0.1): 0.4, ("normal", 1.0): 0.55, ("normal", 4.0): 0.5}


def runs_init(bn=None, none=None, skip=None, seeds=5, lr=0.1, sd=0.005, version="0.2.0"):
    """init_sweep: each arm's accuracy per (scheme, scale) cell; None = diverged (chance)."""
    arms = {("bn", False): bn or FLAT, ("none", False): none or FRAGILE}
    if skip is not False:
        arms[("none", True)] = skip or {c: 0.58 for c in CELLS}
    rng, rows = np.random.default_rng(12), []
    for ((norm, skipinit), accs), (name, scale), s in itertools.product(arms.items(), CELLS, range(seeds)):
        a = accs[(name, scale)]
        status = "completed" if a is not None else "diverged"
        rows.append(row("init_sweep", norm, s, None if a is None else max(0.1, a + noise(rng, sd)), status,
                        **{"init.name": name, "init.scale": scale, "model.skipinit": skipinit, "optim.lr": lr,
                           "bnstudy_version": version}))
    return pd.DataFrame(rows)


def test_reproduced_when_bn_is_flat_and_none_falls_to_chance():
    v = init.check(runs_init(), NO_CURVES)
    assert v.verdict == REPRODUCED and not v.reason, v.finding  # none's diverged cell is the claim, not a blocker
    assert 43 < v.estimate.value < 47 and v.estimate.n == 5, v.finding  # none 55 - 10, bn ~0 (+ noise)
    assert (v.facts["cells"], v.facts["peak_rate"]) == (6, 0.1), v.facts
    worst = v.facts["worst_cell"]
    assert (worst["bn"], worst["none"]) == pytest.approx((0.598, 0.1), abs=0.0005), v.finding
    assert {"bn", "none", "none + SkipInit"} <= set(v.numbers.columns)


def test_not_reproduced_when_bn_depends_on_the_init_as_much():
    bn = {c: a - 0.05 if a is not None else 0.1 for c, a in FRAGILE.items()}
    v = init.check(runs_init(bn=bn), NO_CURVES)
    assert v.verdict == NOT_REPRODUCED, v.finding


def test_an_arm_that_trains_nowhere_blocks_the_verdict_rather_than_showing_no_spread():
    """none at chance in every cell has a spread of 0, so 'none's spread minus BN's' would lie
    far below the minimum; but an arm that never trained shows nothing about its init."""
    v = init.check(runs_init(none={c: None for c in CELLS}, bn={**FLAT, ("kaiming", 4.0): 0.4}), NO_CURVES)
    assert v.estimate.hi < 0, v.finding
    assert v.verdict == INCONCLUSIVE, v.finding
    assert untrained_arms(v) == {"none (its best cell)"}, v.reason


def test_bn_that_trains_nowhere_blocks_the_verdict():
    v = init.check(runs_init(bn={c: 0.1 for c in CELLS}), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and untrained_arms(v) == {"bn (its best cell)"}, v.reason


def test_skipinit_is_compared_beside_with_its_interval_and_never_pooled_with_none():
    """SkipInit flat over the cells: as init-robust as BN. Pooled with none, it would lift none's
    worst cells; as its own arm the decided comparison (BN vs none) is unchanged, and BN vs
    SkipInit is shown beside with its interval."""
    runs = runs_init()
    alone = init.check(runs[~runs["model.skipinit"]], NO_CURVES)
    v = init.check(runs, NO_CURVES)
    assert v.verdict == REPRODUCED and v.estimate.value == pytest.approx(alone.estimate.value), v.finding
    # numbers.csv gets each arm's spread and the SkipInit comparison, with their intervals
    est = {label: e for label, _, e in v.estimates}
    assert set(est) == {"arm=bn", "arm=none", "arm=none + SkipInit",
                        "none + SkipInit's spread minus bn's (information, not the rule)"}
    assert est["arm=none"].value - est["arm=bn"].value == pytest.approx(v.estimate.value)
    assert all(e.has_interval for e in est.values())
    assert [label for label, _, _ in alone.estimates] == ["arm=bn", "arm=none"]


def test_skipinit_that_did_not_train_is_said_beside():
    v = init.check(runs_init(skip={c: None for c in CELLS}), NO_CURVES)
    assert v.verdict == REPRODUCED, v.finding  # beside the rule: it does not block the decided comparison
    assert v.facts["untrained_beside"] == ["none + SkipInit (its best cell)"], v.finding


def test_a_spread_never_spans_rates():
    """Runs at a second rate (say, a pilot at 0.02 where none trains everywhere) are left out,
    with a note, rather than pooled into the cells."""
    pilot = runs_init(none={c: 0.6 for c in CELLS}, lr=0.02, seeds=2)
    v = init.check(pd.concat([runs_init(), pilot], ignore_index=True), NO_CURVES)
    assert v.verdict == REPRODUCED and v.estimate.n == 5, v.finding
    assert [n.data for n in notes_of(v, init.ONE_RATE)] == [{"rates": [0.02, 0.1], "using": 0.1}], v.notes


def test_runs_older_than_the_classifier_fix_give_no_verdict():
    v = init.check(runs_init(version="0.1.0"), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == BLOCKED, v.finding
    assert [b.kind for b in v.blockers] == [init.REINIT], v.reason


@pytest.mark.parametrize("runs", [runs_init().iloc[0:0], runs_init()[lambda r: r["norm.name"] == "bn"],
                                  runs_init()[lambda r: r["init.scale"] == 1.0][lambda r: r["init.name"] == "kaiming"],
                                  runs_init().assign(study="depth_sweep")],
                         ids=["none", "one norm", "one cell", "other study"])
def test_missing_runs_say_so(runs):
    v = init.check(runs, NO_CURVES)
    assert v.verdict == MISSING and "python -m bnstudy run +exp=init_sweep" in v.missing


def test_heatmap_has_a_panel_per_arm():
    fig = init.init_heatmap(runs_init())
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["BatchNorm", "no normalization",
                                                                      "no normalization + SkipInit"]


def test_a_seed_missing_a_cell_is_left_out_rather_than_spread_over_fewer_cells():
    """none's worst cell (kaiming x 4) failed for seeds 0-2 (a crash, not a divergence): their
    spread over the 5 cells left would drop the chance cell and shrink none's spread from ~45
    points to ~20, a different quantity; they are left out, named in a note."""
    runs = runs_init()
    lost = (runs["norm.name"] == "none") & ~runs["model.skipinit"] & (runs["init.name"] == "kaiming") \
        & (runs["init.scale"] == 4.0) & (runs.seed < 3)
    runs.loc[lost, ["status", "final_acc"]] = ["failed", None]
    v = init.check(runs, NO_CURVES)
    assert 43 < v.estimate.value < 47, v.finding  # seeds 3 and 4 of none, over all 6 cells
    assert v.verdict == REPRODUCED, v.finding
    (note,) = notes_of(v, init.SEEDS_LEFT_OUT)
    assert note.data == {"none": {0: (5, 6), 1: (5, 6), 2: (5, 6)}}, note
