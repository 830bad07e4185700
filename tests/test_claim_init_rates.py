"""The init claim with each init cell at its own best rate (bnstudy/claims/init_rates.py) on hand-made
run tables shaped like init_rates: bn / none / none + SkipInit x init scheme x scale, each cell a
sweeper arm chosen over a x2 grid on seed 100 and measured at its chosen rate on seeds 5-9."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from bnstudy.analysis import selection
from bnstudy.analysis.rules import BLOCKED, EDGE, HOLDS_MINIMUM, INCONCLUSIVE, MISSING, NOT_REPRODUCED, REPRODUCED
from bnstudy.claims import init_rates
from conftest import blockers_of, estimate_of, notes_of, untrained_arms

from test_claims import NO_CURVES, edges, noise, row

GRID = (0.0125, 0.025, 0.05, 0.1, 0.2, 0.4)
CELLS = list(itertools.product(("kaiming", "normal"), (0.1, 1.0, 4.0)))
# (best rate, accuracy there) per cell; None: trains at no rate (diverges at every one)
FLAT = {c: (0.1, 0.6) for c in CELLS}
FRAGILE = {("kaiming", 0.1): (0.05, 0.55), ("kaiming", 1.0): (0.025, 0.45), ("kaiming", 4.0): None,
           ("normal", 0.1): (0.1, 0.5), ("normal", 1.0): (0.05, 0.55), ("normal", 4.0): (0.025, 0.5)}
SKIP = {c: (0.2, 0.58) for c in CELLS}
ARMS = {("bn", False): "bn", ("none", False): "none", ("none", True): "skipinit"}


def acc_at(profile, lr):
    """A cell's accuracy at `lr`: its best, 5 points less per x2 away from its best rate, at least chance."""
    best, acc = profile
    return max(0.1, acc - 0.05 * abs(math.log2(lr / best)))


def runs_rates(bn=None, none=None, skip=None, grid=GRID, measure=range(5, 10), sd=0.005, selection_seeds="100",
               extra=None):
    """init_rates' runs: seed 100 over `grid` (`extra`: {(norm, skipinit, cell): more rates}, an
    extended grid), then `measure` seeds at each cell's chosen rate (selection.choose's)."""
    profiles = {("bn", False): bn or FLAT, ("none", False): none or FRAGILE, ("none", True): skip or SKIP}
    rng, rows = np.random.default_rng(7), []

    def add(norm, skipinit, cell, lr, seed, profile, sd):
        ok = profile is not None
        acc = max(0.1, acc_at(profile, lr) + noise(rng, sd)) if ok else None
        rows.append(row("init_rates", norm, seed, acc, "completed" if ok else "diverged",
                        **{"init.name": cell[0], "init.scale": cell[1], "model.skipinit": skipinit, "optim.lr": lr,
                           "scale.selection_seeds": selection_seeds, "bnstudy_version": "0.2.0"}))

    for (norm, skipinit), cells in profiles.items():
        for cell in CELLS:
            for lr in sorted(set(grid) | set((extra or {}).get((norm, skipinit, cell), ()))):
                add(norm, skipinit, cell, lr, 100, cells[cell], 0.0)
    sel = pd.DataFrame(rows)
    chosen = dict(zip(*selection.choose(sel)[["arm", "chosen"]].to_numpy().T))
    for (norm, skipinit), cells in profiles.items():
        for cell, s in itertools.product(CELLS, measure):
            arm = selection.arm_names(pd.DataFrame([{"norm.name": norm, "model.skipinit": skipinit,
                                                     "init.name": cell[0], "init.scale": cell[1]}])).iloc[0]
            add(norm, skipinit, cell, chosen[arm], s, cells[cell], sd)
    return pd.DataFrame(rows)


def test_reproduced_when_bn_is_flat_and_none_falls_to_chance_where_no_rate_trains_it():
    """none at 4x He diverges at every rate of its grid: measured at the grid's lowest rate, it
    counts as chance (the init dependence the claim is about), named; not an edge."""
    v = init_rates.check(runs_rates(), NO_CURVES)
    assert v.verdict == REPRODUCED and not v.blockers, v.finding
    assert 43 < v.estimate.value < 47 and v.estimate.n == 5, v.finding  # none 55 - 10, bn ~0 (+ noise)
    assert v.facts["cells"] == 6 and v.facts["trained_nowhere"] == ["none-kaiming-x4"], v.facts
    assert v.facts["at_chance"] == {"none": ["kaiming x4"]}, v.facts
    assert v.facts["worst_cell"]["none"] == pytest.approx(0.1), v.facts
    # each cell at its own rate, chosen on seed 100; the one that trained nowhere at its grid's lowest
    assert v.facts["chosen"]["none-kaiming-x1"] == 0.025 and v.facts["chosen"]["bn-normal-x4"] == 0.1
    assert v.facts["chosen"]["none-kaiming-x4"] == 0.0125
    (nowhere,) = notes_of(v, init_rates.TRAINED_NOWHERE)
    assert nowhere.data == {"none-kaiming-x4": (0.0125, 0.4)}, nowhere
    assert not notes_of(v, EDGE), v.notes
    # beside, over the 5 cells both arms trained: none 55 - 45 = 10 points
    assert 8 < estimate_of(v, init_rates.BESIDE).value < 12, v.estimates
    assert v.facts["trained_cells"] == 5
    assert {"bn", "none"} <= set(v.numbers.columns) and len(v.numbers) == 6


def test_not_reproduced_when_bn_depends_on_the_init_as_much():
    bn = {c: None if p is None else (p[0] * 2, p[1] + 0.05) for c, p in FRAGILE.items()}
    v = init_rates.check(runs_rates(bn=bn), NO_CURVES)
    assert v.verdict == NOT_REPRODUCED and v.estimate.hi < init_rates.EFFECT.minimum, v.finding
    assert v.facts["at_chance"] == {"bn": ["kaiming x4"], "none": ["kaiming x4"]}, v.facts


def test_inconclusive_when_the_interval_holds_the_minimum():
    """none 6 points lower in one cell, noisy seeds: the interval straddles the 5-point minimum."""
    none = {**FLAT, ("normal", 0.1): (0.1, 0.54)}
    v = init_rates.check(runs_rates(none=none, sd=0.02), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == HOLDS_MINIMUM, v.finding
    assert v.estimate.lo < init_rates.EFFECT.minimum < v.estimate.hi


def test_a_cell_whose_best_rate_is_at_an_edge_blocks_until_its_grid_is_extended_past_it():
    """BN at 4x He does best at 0.4, the top of its grid (it trains as at 0.4/16): `select` says
    extend it, so no measuring run is read and the verdict is blocked, naming that cell. With 0.8
    and 1.6 run for that arm alone (1.6 worse than 0.8), its choice lies inside and the verdict is given."""
    bn = {**FLAT, ("kaiming", 4.0): (0.8, 0.6)}
    v = init_rates.check(runs_rates(bn=bn), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == BLOCKED, v.finding
    assert edges(v) == {"bn-kaiming-x4": (0.4, "highest", 0.8)}, v.blockers
    assert any(n.startswith("not read: bn-kaiming-x4") for n in v.notes), v.notes
    extended = runs_rates(bn=bn, extra={("bn", False, ("kaiming", 4.0)): (0.8, 1.6)})
    w = init_rates.check(extended, NO_CURVES)
    assert w.verdict == REPRODUCED and not w.blockers and w.facts["chosen"]["bn-kaiming-x4"] == 0.8, w.finding


def test_an_edge_of_an_arm_another_check_compares_blocks_only_that_check():
    """SkipInit's 4x He cell at the top of its grid: no measuring run is read (selection backs none
    of them yet), but only the SkipInit check is blocked by the edge; BN vs none waits as missing."""
    skip = {**SKIP, ("kaiming", 4.0): (0.8, 0.58)}
    runs = runs_rates(skip=skip)
    s = init_rates.check_skipinit(runs, NO_CURVES)
    assert s.verdict == INCONCLUSIVE and set(edges(s)) == {"skipinit-kaiming-x4"}, s.blockers
    assert init_rates.check(runs, NO_CURVES).verdict == MISSING


def test_an_arm_that_trains_nowhere_blocks_the_verdict_rather_than_showing_no_spread():
    v = init_rates.check(runs_rates(none={c: None for c in CELLS}), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and untrained_arms(v) == {"none (its best cell)"}, v.reason
    assert len(v.facts["trained_nowhere"]) == 6 and not notes_of(v, EDGE)


def test_bn_against_skipinit_is_its_own_check_never_pooled_with_none():
    runs = runs_rates()
    s = init_rates.check_skipinit(runs, NO_CURVES)
    assert s.verdict == NOT_REPRODUCED, s.finding  # SkipInit as flat as BN
    assert {label for label, _, _ in s.estimates} >= {"arm=bn", "arm=none + SkipInit"}
    alone = init_rates.check(runs[~runs["model.skipinit"]], NO_CURVES)
    assert init_rates.check(runs, NO_CURVES).estimate.value == pytest.approx(alone.estimate.value)
    fragile = init_rates.check_skipinit(runs_rates(skip=FRAGILE), NO_CURVES)
    assert fragile.verdict == REPRODUCED, fragile.finding


def test_rates_not_chosen_on_selection_seeds_give_no_verdict():
    """The same grid on seeds 5-9 without a selection phase: each cell's best rate would be read on
    the seeds that measure it."""
    runs = runs_rates(selection_seeds="")
    runs = runs[runs.seed != 100]
    v = init_rates.check(runs.assign(**{"scale.selection_seeds": ""}), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and [b.kind for b in v.blockers] == [init_rates.NO_SELECTION], v.reason


def test_selection_alone_is_missing_and_an_unmeasured_cell_blocks():
    runs = runs_rates()
    v = init_rates.check(runs[runs.seed == 100], NO_CURVES)
    assert v.verdict == MISSING and "hydra.sweeper.phase=measure" in v.missing
    lost = (runs.seed != 100) & (selection.arm_names(runs) == "bn-normal-x4")
    w = init_rates.check(runs[~lost], NO_CURVES)
    assert w.verdict == INCONCLUSIVE and [b.data for b in blockers_of(w, init_rates.NOT_MEASURED)] == [
        {"arms": ["bn-normal-x4"]}], w.reason


def test_other_studies_runs_are_missing():
    v = init_rates.check(runs_rates().assign(study="init_sweep"), NO_CURVES)
    assert v.verdict == MISSING and "python -m bnstudy run +exp=init_rates" in v.missing


def test_select_copes_with_18_arms_each_at_its_own_rate_and_reports_an_edge(monkeypatch, capsys):
    """`python -m bnstudy select` on init_rates' selection runs: 18 arms, a chosen rate each (the
    one that trained nowhere at its grid's lowest), an arm at an edge named and left null."""
    from bnstudy import cli
    from bnstudy.analysis import results

    runs = runs_rates(bn={**FLAT, ("kaiming", 4.0): (0.8, 0.6)})
    runs = runs[runs.seed == 100]

    class Loaded:
        pass

    loaded = Loaded()
    loaded.runs = runs
    monkeypatch.setattr(results, "load", lambda paths: loaded)
    cli.select(["sweep"])
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if x.startswith("{")]
    chosen = dict(item.split(": ") for item in line.strip("{}").split(", "))
    assert len(chosen) == 18 and chosen["bn-kaiming-x4"] == "null", chosen
    assert (chosen["none-kaiming-x4"], chosen["none-kaiming-x1"], chosen["skipinit-normal-x1"]) == ("0.0125", "0.025", "0.2")
    assert "1 arm(s) not chosen inside their grid" in out and "unfinished or missing" not in out, out
    choices = selection.choose(runs).set_index("arm")
    assert choices.loc["none-kaiming-x4", "status"].startswith(selection.NOWHERE)
    assert (choices.status.map(selection.settled)).sum() == 17


def test_heatmap_has_a_panel_per_arm_and_the_beside_estimate_is_never_decided():
    draw, _ = init_rates.FIGURES["init_best_rates_heatmap"]
    runs = runs_rates()
    fig = draw(runs[runs.seed != 100], None, None)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["BatchNorm", "no normalization",
                                                                      "no normalization + SkipInit"]
    v = init_rates.check(runs, NO_CURVES)
    assert [e for label, e, _ in v.estimates if label == init_rates.BESIDE] == [init_rates.BESIDE_EFFECT]
    assert math.isnan(init_rates.BESIDE_EFFECT.minimum)
