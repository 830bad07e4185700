"""The depth claim (BN makes deep nets trainable, plain nets above all) on hand-made run tables:
each (network, depth, norm) cell at its own best peak rate, BN's deep arm required to have
trained, none's deep arm allowed to sit at chance (the claimed outcome)."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from bnstudy.analysis import style
from bnstudy.analysis.rules import BLOCKED, EDGE, INCOMPLETE, INCONCLUSIVE, MISSING, NOT_REPRODUCED, REPRODUCED
from bnstudy.claims import depth
from conftest import estimate_of, notes_of, untrained_arms

from test_claims import NO_CURVES, edges, noise, row

BEST = {"bn": 0.1, "none": 0.02}  # each norm's best rate; the other rates of the grid cost 5 points


def runs_depth(plain_deep=None, residual_deep=None, shallow=None, seeds=3, depths=(20, 56), lrs=(0.01, 0.02, 0.1, 0.2),
               none_diverges_at_high_rate=True, sd=0.004):
    """depth_sweep at its best rate: each (network, norm) trains to `shallow[norm]` at the
    shallowest depth and to `*_deep[norm]` at the deepest (linear in depth between); at the
    other rates 5 points less, except that none diverges (chance) above its best rate when
    `none_diverges_at_high_rate`. An accuracy at chance (0.1) stays at chance at every rate. The
    default grid holds each norm's best rate inside it; plain none ends at 12% deep (within 5
    points of chance: it did not train there) at its best rate, at chance at the others."""
    plain_deep = {"bn": 0.45, "none": 0.12, **(plain_deep or {})}
    residual_deep = {"bn": 0.55, "none": 0.1, **(residual_deep or {})}
    shallow = {"bn": 0.6, "none": 0.5, **(shallow or {})}
    rng, rows = np.random.default_rng(11), []
    lo, hi = min(depths), max(depths)
    for d, plain, norm, lr, s in itertools.product(depths, (False, True), ("bn", "none"), lrs, range(seeds)):
        deep = (plain_deep if plain else residual_deep)[norm]
        f = (d - lo) / (hi - lo) if hi > lo else 0.0
        acc = shallow[norm] + (deep - shallow[norm]) * f
        status = "completed"
        if acc > 0.1 + 1e-9 and lr != BEST[norm]:
            if norm == "none" and none_diverges_at_high_rate and lr > BEST[norm]:
                status = "diverged"
            acc -= 0.05
        acc = max(0.1, acc) + (noise(rng, sd) if acc > 0.1 + 1e-9 else 0.0)
        rows.append(row("depth_sweep", norm, s, acc, status, **{"model.depth": d, "model.plain": plain,
                                                                 "optim.lr": lr}))
    return pd.DataFrame(rows)


def test_reproduced_with_each_cell_at_its_own_best_rate():
    v = depth.check(runs_depth(), NO_CURVES)
    assert v.verdict == REPRODUCED and not v.reason, v.finding
    assert 32 < v.estimate.value < 34 and v.estimate.n == 3, v.finding  # bn 45% minus none's 12%
    assert v.estimate.has_interval and v.effect.minimum == 5.0
    table = v.numbers.set_index(["network", "depth"])
    assert table.loc[("plain", "56"), "bn best rate"] == "0.1" and table.loc[("plain", "20"), "none best rate"] == "0.02"
    assert table.loc[("plain", "56"), "none best rate"] == "0.02"  # 12% there, chance at the other rates
    # beside the rule: each norm's accuracy lost from depth 20 to 56, with its interval
    assert estimate_of(v, "network=plain; norm=bn; from depth 20 to 56").value == pytest.approx(15.0, abs=0.2)
    assert estimate_of(v, "network=plain; norm=none; from depth 20 to 56").value == pytest.approx(38.0, abs=0.5)


def test_not_reproduced_when_none_trains_deep_at_its_own_smaller_rate():
    """The unnormalized plain net diverges at BN's rate (0.1) but trains at 0.02 as well as BN: at
    one shared rate it would look untrainable (a spurious 'reproduced'); at its own best rate the
    gap is gone."""
    runs = runs_depth(plain_deep={"none": 0.45})
    at_bn_rate = runs[runs["optim.lr"] == 0.1]
    assert (at_bn_rate[(at_bn_rate["norm.name"] == "none") & at_bn_rate["model.plain"]].final_acc == 0.1).all()
    v = depth.check(runs, NO_CURVES)
    assert v.verdict == NOT_REPRODUCED, v.finding
    assert abs(v.estimate.value) < 1, v.finding
    assert (v.facts["network"], v.facts["deep_depth"], v.facts["deep_rates"]["none"]) == ("plain", 56, 0.02), v.facts


def test_bn_that_did_not_train_deep_is_inconclusive_never_negative():
    """BN at chance at plain depth 56 (the setup failed it: too few steps, no warmup) while none
    trains there: the effect (-35 points) lies far below the minimum, but the verdict must not
    be 'not reproduced'."""
    v = depth.check(runs_depth(plain_deep={"bn": 0.1, "none": 0.45}), NO_CURVES)
    assert v.estimate.hi < 0, v.finding
    assert v.verdict == INCONCLUSIVE, v.finding
    assert untrained_arms(v) == {"bn (plain, depth 56, its best rate 0.01)"}, v.reason


def test_none_untrained_at_the_shallow_depth_blocks_the_verdict():
    """none at chance at every depth: BN's large advantage at depth 56 says nothing about depth,
    since nothing shows the unnormalized net trains at all in this setup."""
    runs = runs_depth(shallow={"none": 0.1})
    v = depth.check(runs, NO_CURVES)
    assert v.estimate.lo > 5, v.finding  # the interval alone would say 'reproduced'
    assert v.verdict == INCONCLUSIVE, v.finding
    assert untrained_arms(v) == {"none (plain, depth 20, its best rate 0.01)"}, v.reason


def test_none_at_chance_at_the_deep_depth_is_the_claim_not_a_blocker():
    """none's deep arm within 5 points of chance (12%) is the claimed outcome, not an arm that did
    not train. Where every deep unnormalized run diverged (chance at every rate of a grid of 3
    rates spanning x20), the arm trained nowhere: it has no best rate to bracket, so no edge blocks
    it either (cells.EDGE_RULE, amended 2026-12-07; before, the tie going to the lowest rate put
    it at an edge for good). On a 2-point grid it stays at an edge (the next test)."""
    runs = runs_depth()
    assert depth.check(runs, NO_CURVES).verdict == REPRODUCED
    deep_none = (runs["model.depth"] == 56) & (runs["norm.name"] == "none")
    runs.loc[deep_none, ["status", "final_acc"]] = ["diverged", 0.1]  # counted as chance
    v = depth.check(runs, NO_CURVES)
    assert v.verdict == REPRODUCED and not untrained_arms(v) and not edges(v), v.finding
    assert not any("plain depth 56 none" in n.data for n in notes_of(v, EDGE)), v.notes


def test_a_deep_arm_best_at_its_grids_edge_blocks_the_verdict():
    """On a 2-point grid (0.02, 0.1) BN's best rate (0.1) is its highest and none's (0.02) its
    lowest: the deep arms, which the effect reads, block (cells.EDGE_RULE); none's shallow arm (a
    precondition) and the residual nets (beside the rule) are noted, not blockers. With the rates
    past the edges run (0.01 and 0.2, worse), the verdict is given."""
    v = depth.check(runs_depth(lrs=(0.02, 0.1)), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == BLOCKED, v.finding
    assert edges(v) == {"plain depth 56 bn": (0.1, "highest", 0.2), "plain depth 56 none": (0.02, "lowest", 0.01)}
    (note,) = notes_of(v, EDGE)
    assert {"plain depth 20 none", "residual depth 56 bn", "residual depth 56 none"} <= set(note.data), note
    assert depth.EDGE_RULE in v.rule
    decided = depth.check(runs_depth(), NO_CURVES)
    assert decided.verdict == REPRODUCED and not decided.blockers, decided.finding
    # residual none stays at chance at every rate of its 3-rate grid: trained nowhere, at no edge
    assert not notes_of(decided, EDGE), decided.notes


def test_residual_nets_are_shown_beside_not_decided():
    """Residual BN and none equal at depth 56: printed with its interval, the verdict stays the plain nets'."""
    v = depth.check(runs_depth(residual_deep={"none": 0.55}), NO_CURVES)
    assert v.verdict == REPRODUCED and v.facts["network"] == "plain", v.finding
    residual = estimate_of(v, "network=residual; depth 56 (information, not the rule)")
    assert residual.has_interval, v.finding  # ± its 95% Welch half-width
    assert (residual.value, residual.half) == pytest.approx((0.1, 1.0), abs=0.05), v.finding


def test_residual_nets_decide_only_where_no_plain_nets_ran_with_both_norms():
    runs = runs_depth(residual_deep={"none": 0.55})
    runs = runs[~(runs["model.plain"] & (runs["norm.name"] == "none"))]
    v = depth.check(runs, NO_CURVES)
    assert v.verdict == NOT_REPRODUCED, v.finding
    assert (v.facts["network"], v.facts["deep_depth"], v.facts["deep_rates"]["bn"]) == ("residual", 56, 0.1), v.facts
    assert all(lab.startswith("network=residual; norm=") for lab, _, _ in v.estimates), v.estimates  # none beside


def test_plain_runs_that_failed_do_not_hand_the_verdict_to_the_residual_nets():
    """Plain none at depth 56 trains as well as BN (not reproduced), but its runs there failed
    (crashed): the residual nets, where none is at chance, must not decide instead."""
    runs = runs_depth(plain_deep={"none": 0.45})
    assert depth.check(runs, NO_CURVES).verdict == NOT_REPRODUCED
    lost = runs["model.plain"] & (runs["norm.name"] == "none") & (runs["model.depth"] == 56)
    runs.loc[lost, ["status", "final_acc"]] = ["failed", None]
    v = depth.check(runs, NO_CURVES)
    assert v.verdict == MISSING and "plain bn and none runs finished at >= 2 shared depths" in v.missing, v


def test_a_deeper_depth_that_ran_but_did_not_finish_is_noted():
    runs = runs_depth(depths=(20, 56, 110))
    lost = (runs["model.depth"] == 110) & (runs["norm.name"] == "none")
    runs.loc[lost, ["status", "final_acc"]] = ["failed", None]
    v = depth.check(runs, NO_CURVES)
    assert v.facts["deep_depth"] == 56, v.facts
    assert [n.data for n in notes_of(v, depth.UNFINISHED_DEPTH)] == [{"depth": 110, "deep_depth": 56}], v.notes


def test_the_deep_depth_is_the_deepest_both_norms_ran():
    """At scale=full BN may have runs at 110 that none lacks: the comparison is at 56."""
    runs = runs_depth(depths=(20, 56, 110))
    runs = runs[~((runs["model.depth"] == 110) & (runs["norm.name"] == "none"))]
    v = depth.check(runs, NO_CURVES)
    assert v.facts["deep_depth"] == 56 and not notes_of(v, depth.UNFINISHED_DEPTH), v.facts
    assert "110" in set(v.numbers.depth)


@pytest.mark.parametrize("runs", [runs_depth().iloc[0:0], runs_depth()[lambda r: r["norm.name"] == "bn"],
                                  runs_depth(depths=(56,)), runs_depth().assign(study="lr_sweep")],
                         ids=["none", "one norm", "one depth", "other study"])
def test_missing_runs_say_so(runs):
    v = depth.check(runs, NO_CURVES)
    assert v.verdict == MISSING and "python -m bnstudy run +exp=depth_sweep" in v.missing


def test_figure_draws_each_cell_at_its_best_rate():
    fig = depth.accuracy_vs_depth(runs_depth())
    ax = fig.axes[0]
    assert "each cell at its best rate" in ax.get_title()
    handles, labels = ax.get_legend_handles_labels()
    assert {"BatchNorm, plain", "no normalization, plain", "BatchNorm, residual", "chance"} <= set(labels)
    bn_plain = handles[labels.index("BatchNorm, plain")]
    line = bn_plain.lines[0] if hasattr(bn_plain, "lines") else bn_plain  # an errorbar container or a line
    assert np.allclose(line.get_ydata(), [60, 45], atol=1)  # its best rate (0.1), not the mean over rates
    with pytest.raises(style.NotDrawn):
        depth.accuracy_vs_depth(runs_depth(depths=(56,)))


def test_a_sweep_cut_short_names_the_cells_that_lack_part_of_the_grid():
    """The residual runs come last in the sweep: where a session ended among them, the verdict (on
    the plain nets) stands, and the notes name each residual cell that lacks a rate, a seed or
    every run, since its best rate is then chosen from what it has."""
    full = runs_depth()
    assert not notes_of(depth.check(full, NO_CURVES), INCOMPLETE)
    res56 = (~full["model.plain"]) & (full["model.depth"] == 56)
    cut = full[~(res56 & (full["norm.name"] == "none"))  # never started
               & ~(res56 & (full["norm.name"] == "bn") & (full["optim.lr"] == 0.1) & (full.seed == 2))]
    v = depth.check(cut, NO_CURVES)
    assert v.verdict == REPRODUCED, v.finding  # plain nets decide
    (note,) = notes_of(v, INCOMPLETE)
    assert note.data == {"residual depth 56 none": ["no finished run"],
                         "residual depth 56 bn": ["2 of 3 seeds at 0.1"]}, note
    one_rate = full[~(res56 & (full["norm.name"] == "bn") & (full["optim.lr"] == 0.02))]
    (note,) = notes_of(depth.check(one_rate, NO_CURVES), INCOMPLETE)
    assert note.data == {"residual depth 56 bn": ["rate 0.02 missing"]}, note


def test_each_norm_with_a_grid_of_its_own_is_complete():
    """The confirmation runs BN over {0.05, 0.1, 0.2} and none over {0.0025, ..., 0.02}: neither
    lacks the other's rates."""
    own = runs_depth(lrs=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2))
    own = own[(own["norm.name"] == "bn") == own["optim.lr"].isin([0.05, 0.1, 0.2])]
    v = depth.check(own, NO_CURVES)
    assert not notes_of(v, INCOMPLETE) and v.verdict == REPRODUCED, (v.notes, v.finding)
