"""The norm_batch claim (BN at small normalization batches, a fixed SGD batch) on hand-made run
tables, and the precise-BN evaluation its runs record, from a run to the runs table."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from bnstudy.analysis import style
from bnstudy.analysis.results import load
from bnstudy.analysis.cells import EDGE_RULE
from bnstudy.analysis.rules import (BLOCKED, EDGE, INCONCLUSIVE, MISSING, NOT_REPRODUCED, PRECISE_UNAUGMENTED,
                                   REPRODUCED)
from bnstudy.claims import norm_batch
from bnstudy.validation import ConfigError
from bnstudy.run import run

from conftest import compose_config, estimate_of, notes_of, untrained_arms
from test_claims import NO_CURVES, edges, noise, row


def runs_norm_batch(small=0.5, seeds=5, sd=0.004, sizes=(2, 4, 8, 16, 128), lrs=(0.025, 0.05, 0.1, 0.2), batch=128,
                    precise_gain=0.01):
    """norm_batch: at its best rate (0.1 at normalization batch >= 8, 0.05 below: inside the default
    grid) ghost BN's accuracy
    falls linearly in log2(normalization batch) from 80% at 128 to `small` at 2; each doubling of
    the rate away from the best costs 5 points; precise statistics add `precise_gain`."""
    rng, rows = np.random.default_rng(8), []
    for g, lr, s in itertools.product(sizes, lrs, range(seeds)):
        nb = min(g, batch)
        off = 0.05 * abs(np.log2(lr / (0.1 if nb >= 8 else 0.05)))
        acc = small + (0.8 - small) * np.log2(nb / 2) / 6 - off + noise(rng, sd)
        rows.append(row("norm_batch", "ghost_bn", s, acc, **{"norm.ghost_batch_size": g, "data.batch_size": batch,
                                                             "optim.lr": lr, "final_test_acc_precise": acc + precise_gain,
                                                             "final_acc_precise": acc + precise_gain}))
    return pd.DataFrame(rows)


def test_reproduced_with_each_normalization_batch_at_its_best_rate():
    v = norm_batch.check(runs_norm_batch(), NO_CURVES)
    assert v.verdict == REPRODUCED, v.finding
    assert 28 < v.estimate.value < 32 and v.estimate.has_interval and v.effect.minimum == 2.0
    assert v.finding.startswith(v.effect_line()), v.finding  # the effect, its interval and the minimum lead it
    table = v.numbers.set_index("normalization batch")
    assert list(table.index) == ["2", "4", "8", "16", "128"]
    assert table.loc["2", "best peak rate"] == "0.05" and table.loc["128", "best peak rate"] == "0.1"
    assert {"running statistics (%)", "precise statistics (%)"} <= set(v.numbers.columns)
    precise = estimate_of(v, "precise BN statistics (information, not the rule)")
    assert precise.value == pytest.approx(29.6, abs=0.05) and precise.has_interval, v.finding


@pytest.mark.parametrize("augment, flag, noted", [(True, None, True), (True, False, True), (True, True, False),
                                                   (False, None, False)])
def test_precise_statistics_over_unaugmented_images_of_augmented_nets_are_noted(augment, flag, noted):
    """Runs that trained on augmented crops but recomputed precise statistics over the images as
    they are (before evaluation.precise_bn_augment, or with it false) carry a note saying so."""
    runs = runs_norm_batch().assign(**{"data.augment": augment})
    if flag is not None:
        runs["evaluation.precise_bn_augment"] = flag
    v = norm_batch.check(runs, NO_CURVES)
    found = notes_of(v, PRECISE_UNAUGMENTED)
    assert len(found) == noted and (not noted or found[0].data["runs"] == 25), v.notes
    assert v.verdict == REPRODUCED  # information beside the rule: the verdict is the same


def test_a_compared_normalization_batch_best_at_its_grids_edge_blocks_the_verdict():
    """On a 0.05-0.2 grid, normalization batches 2 and 4 do best at its lowest rate. Batch 2 is the
    rule's small arm: blocked (cells.EDGE_RULE). Batch 4, shown beside the rule, is noted, not a
    blocker. With their runs at 0.025 (worse) the verdict is given."""
    v = norm_batch.check(runs_norm_batch(lrs=(0.05, 0.1, 0.2)), NO_CURVES)
    assert set(notes_of(v, EDGE)[0].data) == {"normalization batch 2", "normalization batch 4"}, v.notes
    assert v.verdict == INCONCLUSIVE and v.why == BLOCKED, v.finding
    assert edges(v) == {"normalization batch 2": (0.05, "lowest", 0.025)}, v.blockers
    assert EDGE_RULE in v.rule
    decided = norm_batch.check(runs_norm_batch(lrs=(0.025, 0.05, 0.1, 0.2)), NO_CURVES)
    assert decided.verdict == REPRODUCED and not decided.blockers and not notes_of(decided, EDGE), decided.finding


def test_not_reproduced_when_small_normalization_batches_cost_nothing():
    v = norm_batch.check(runs_norm_batch(small=0.8), NO_CURVES)
    assert v.verdict == NOT_REPRODUCED, v.finding


def test_an_untrained_reference_arm_blocks_the_verdict():
    runs = runs_norm_batch()
    runs.loc[runs["norm.ghost_batch_size"] == 128, "final_acc"] = 0.1
    v = norm_batch.check(runs, NO_CURVES)
    assert v.verdict == INCONCLUSIVE, v.finding
    assert untrained_arms(v) == {"normalization batch 128 (its best rate 0.025)"}, v.reason


def test_the_small_arm_at_chance_is_the_claimed_degradation_not_a_blocker():
    """The small arm within 5 points of chance (12% at 0.05, chance elsewhere) is the claimed
    degradation, not an arm that did not train. At chance at every rate of its grid (3 rates
    spanning x4) it trained nowhere: no best rate to bracket, so no edge blocks it either
    (cells.EDGE_RULE, amended 2026-12-07; before, its tie at the lowest rate blocked it)."""
    runs = runs_norm_batch()
    small = runs["norm.ghost_batch_size"] == 2
    runs.loc[small, "final_acc"] = np.where(runs.loc[small, "optim.lr"] == 0.05, 0.12, 0.1)
    v = norm_batch.check(runs, NO_CURVES)
    assert v.verdict == REPRODUCED and not v.reason, v.finding
    runs.loc[small, "final_acc"] = 0.1
    v = norm_batch.check(runs, NO_CURVES)
    assert v.verdict == REPRODUCED and not untrained_arms(v) and not edges(v), v.finding


def test_absent_sizes_fall_back_to_the_smallest_and_largest_present_and_say_so():
    """The smoke study: ghost 2 and 32 at batch 64 (no 128); ghost 256 at batch 64 is normalized as 64."""
    runs = runs_norm_batch(sizes=(4, 32, 256), batch=64, seeds=3)
    v = norm_batch.check(runs, NO_CURVES)
    assert list(v.numbers["normalization batch"]) == ["4", "32", "64"]
    assert {n.subject: n.data for n in notes_of(v, norm_batch.ABSENT)} == {
        "reference": {"absent": 128, "using": 64}, "small arm": {"absent": 2, "using": 4}}, v.notes
    assert v.verdict == REPRODUCED, v.finding


def test_other_norms_and_other_sgd_batches_are_left_out():
    runs = pd.concat([runs_norm_batch(seeds=3),
                      runs_norm_batch(small=0.8, seeds=3).assign(**{"norm.name": "bn"}),
                      runs_norm_batch(small=0.8, seeds=2, batch=32)], ignore_index=True)
    v = norm_batch.check(runs, NO_CURVES)
    assert v.verdict == REPRODUCED and v.estimate.n == 3, v.finding
    assert [n.data["using"] for n in notes_of(v, norm_batch.SGD_BATCHES)] == [128], v.notes


@pytest.mark.parametrize("runs", [runs_norm_batch().iloc[0:0], runs_norm_batch(sizes=(16,)),
                                  runs_norm_batch().assign(study="lr_sweep")], ids=["none", "one size", "other study"])
def test_missing_runs_say_so(runs):
    v = norm_batch.check(runs, NO_CURVES)
    assert v.verdict == MISSING and "python -m bnstudy run +exp=norm_batch" in v.missing


def test_figure_draws_running_and_precise_against_an_inverted_log2_axis():
    fig = norm_batch.accuracy_vs_norm_batch(runs_norm_batch())
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.xaxis_inverted()
    labels = ax.get_legend_handles_labels()[1]
    assert {"running statistics", "precise statistics"} <= set(labels)
    # every arm >= 50%, far above chance: the axis zooms in on them and the title says where chance is
    assert "chance" not in labels and "chance 10%, below the axis" in ax.get_title() and ax.get_ylim()[0] > 40
    near = norm_batch.accuracy_vs_norm_batch(runs_norm_batch(small=0.15)).axes[0]  # batch 2 near chance
    assert "chance" in near.get_legend_handles_labels()[1] and "below the axis" not in near.get_title()
    unaug = runs_norm_batch().assign(**{"data.augment": True})
    assert "precise statistics (unaugmented images)" in \
        norm_batch.accuracy_vs_norm_batch(unaug).axes[0].get_legend_handles_labels()[1]
    with pytest.raises(style.NotDrawn):
        norm_batch.accuracy_vs_norm_batch(runs_norm_batch(sizes=(16,)))


# ---------------------------------------------------------------- the precise-BN evaluation, end to end

@pytest.mark.parametrize("norm", ["ghost_bn", "gn"])
def test_precise_bn_accuracy_reaches_the_summary_and_the_runs_table(tmp_path, tiny_overrides, norm):
    out = tmp_path / norm
    run(compose_config(tiny_overrides + [f"norm={norm}", "norm.ghost_batch_size=8", "evaluation.precise_bn=true",
                                         "evaluation.precise_bn_images=64", "study=norm_batch"]), out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and 0 <= summary["final_test_acc_precise"] <= 1
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics[metrics.metric == "test/acc_precise"].step.tolist() == [summary["steps"]]
    if norm == "gn":  # no statistics to recompute
        assert summary["final_test_acc_precise"] == summary["final_test_acc"]
    runs = load([tmp_path]).runs
    assert runs.loc[0, "final_acc_precise"] == summary["final_test_acc_precise"]


def test_precise_bn_is_off_unless_asked(tmp_path, tiny_overrides):
    run(compose_config(tiny_overrides), tmp_path / "run")
    assert "final_test_acc_precise" not in json.loads((tmp_path / "run" / "summary.json").read_text())


def test_precise_bn_images_must_be_positive():
    with pytest.raises(ConfigError, match="evaluation.precise_bn_images"):
        compose_config(["evaluation.precise_bn_images=0"])


def runs_with_gn(gn_acc=0.7, seeds=5, sd=0.004, gn_lrs=(0.05, 0.1, 0.2), lrs=(0.025, 0.05, 0.1, 0.2)):
    """norm_batch at medium's shape: ghost BN over 2, 4, 16 and 128 images (80% at 128 down to 50%
    at 2, from runs_norm_batch, over `lrs`) and GroupNorm at `gn_acc`, best at rate 0.1 (of `gn_lrs`)."""
    rng = np.random.default_rng(3)
    gn = [row("norm_batch", "gn", s, gn_acc - 0.05 * abs(np.log2(lr / 0.1)) + noise(rng, sd),
              **{"optim.lr": lr, "data.batch_size": 128, "norm.ghost_batch_size": 32})
          for lr, s in itertools.product(gn_lrs, range(seeds))]
    return pd.concat([runs_norm_batch(sizes=(2, 4, 16, 128), seeds=seeds, sd=sd, lrs=lrs), pd.DataFrame(gn)],
                     ignore_index=True)


def test_groupnorm_above_bn_at_two_images_is_reproduced_and_the_crossing_named():
    v = norm_batch.check_gn(runs_with_gn(gn_acc=0.77), NO_CURVES)
    assert v.verdict == REPRODUCED, v.finding
    assert 26 < v.estimate.value < 28  # GN 77% minus BN's 50% at 2
    assert v.params["crossing"] == [(16, 128)]  # BN 70% at 16, 80% at 128
    assert 2 < v.params["gn_below_reference"] < 4


def test_a_groupnorm_far_below_bn_makes_the_gn_comparison_inconclusive():
    v = norm_batch.check_gn(runs_with_gn(gn_acc=0.6), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.params["gn_below_reference"] > norm_batch.GN_TRAINED, v.reason
    assert v.estimate.lo > 2  # GN's lead at 2 alone would have passed: the untrained GN is what blocks it


def test_groupnorm_no_better_than_bn_at_two_images_is_not_reproduced():
    runs = runs_with_gn(gn_acc=0.76)
    small = runs["norm.ghost_batch_size"] == 2
    runs.loc[small, "final_acc"] = runs.loc[small, "final_acc"] + 0.26  # BN at 2 at ~76%: no degradation
    v = norm_batch.check_gn(runs, NO_CURVES)
    assert v.verdict == NOT_REPRODUCED, v.finding


def test_groupnorm_or_bn_best_at_its_grids_edge_blocks_the_gn_comparison():
    """GroupNorm does best at 0.1, the lowest rate of its 0.1-0.2 grid: blocked, and so is BN at
    the small batch on a 0.05-0.2 grid (0.05 its lowest); batch 4, not compared, is no blocker.
    GroupNorm's runs at 0.05 and BN's at 0.025 (both worse) put every best rate inside its grid."""
    v = norm_batch.check_gn(runs_with_gn(gn_acc=0.77, gn_lrs=(0.1, 0.2), lrs=(0.05, 0.1, 0.2)), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == BLOCKED, v.finding
    assert edges(v) == {"gn": (0.1, "lowest", 0.05), "normalization batch 2": (0.05, "lowest", 0.025)}, v.blockers
    assert {c for n in notes_of(v, EDGE) for c in n.data} == {"gn", "normalization batch 2", "normalization batch 4"}
    assert EDGE_RULE in v.rule
    only_gn = norm_batch.check_gn(runs_with_gn(gn_acc=0.77, gn_lrs=(0.1, 0.2)), NO_CURVES)
    assert only_gn.verdict == INCONCLUSIVE and edges(only_gn) == {"gn": (0.1, "lowest", 0.05)}, only_gn.blockers
    decided = norm_batch.check_gn(runs_with_gn(gn_acc=0.77), NO_CURVES)
    assert decided.verdict == REPRODUCED and not decided.blockers and not notes_of(decided, EDGE), decided.finding


def test_without_groupnorm_runs_the_gn_check_asks_for_them():
    assert norm_batch.check_gn(runs_norm_batch(), NO_CURVES).verdict == MISSING


def test_numbers_name_groupnorm_cells_by_their_norm_not_by_a_ghost_size_they_ignore():
    """GroupNorm runs carry norm.ghost_batch_size's default (32), which alone would tell their cells
    apart from ghost BN's; numbers.md names the norm instead of leaving it out."""
    from bnstudy.analysis import numbers

    runs = runs_with_gn(gn_lrs=(0.1,), lrs=(0.1,))  # GroupNorm at the ghost size 32 no ghost BN arm has
    cols = numbers.cell_columns(runs)
    assert "norm.name" in cols and "norm.ghost_batch_size" in cols, cols
    names = {r["norm.name"]: numbers.cell_name({c: r[c] for c in cols}) for _, r in runs.iterrows()}
    assert "norm.name=gn" in names["gn"], names
