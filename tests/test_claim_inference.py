"""The inference claim on hand-made run tables: decided at a realistic test batch (16) with
population (precise) statistics against a non-inferiority margin (check_realistic), and as
published, running vs batch statistics at the smallest test batch (check), each asked at every
normalization batch; and the study file's protocol."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from bnstudy.analysis import style
from bnstudy.analysis.rules import (BLOCKED, HOLDS_MINIMUM, INCONCLUSIVE, MISSING, NOT_REPRODUCED, REPRODUCED,
                                    TOO_FEW_SEEDS)
from bnstudy.claims import inference

from conftest import compose_config, estimate_of, notes_of, untrained_arms
from test_claims import NO_CURVES, noise, row

TEST_BATCHES = (1, 2, 4, 16, 128, 1000)


def runs_inference(penalty=None, seeds=5, sd=0.004, sizes=(16, 128), momenta=(0.01, 0.1), batch=128,
                   ema_error=None, untrained_at=None, precise=0.805):
    """inference: ghost BN at each normalization batch; running statistics 80% (minus
    `ema_error[momentum]`), precise 80.5% (or `precise`: one accuracy, or one per normalization
    batch); the test batch's own statistics 80% - penalty[nb]/sqrt(B) (penalty 0.5: -50 points at
    test batch 1, -12.5 at 16). Momentum copies of a seed share their weights, so batch and precise
    accuracy are the same for both momenta of a seed (one net read twice)."""
    penalty = {16: 0.5, 128: 0.5} if penalty is None else penalty
    ema_error = ema_error or {}
    rng, rows = np.random.default_rng(11), []
    for g, s in itertools.product(sizes, range(seeds)):
        nb = min(g, batch)
        net = {b: 0.8 - penalty.get(nb, 0.5) / np.sqrt(b) + noise(rng, sd) for b in TEST_BATCHES}
        p = (precise.get(nb, 0.805) if isinstance(precise, dict) else precise) + noise(rng, sd)
        for m in momenta:
            acc = 0.1 if untrained_at == nb else 0.8 - ema_error.get(m, 0.0) + noise(rng, sd)
            r = row("inference", "ghost_bn", s, acc, **{"norm.ghost_batch_size": g, "data.batch_size": batch,
                                                         "norm.momentum": m, "final.infer/acc_precise": p})
            for b in TEST_BATCHES:
                r[f"final.infer/acc_running.bs{b}"] = acc
                r[f"final.infer/acc_batch.bs{b}"] = net[b]
            rows.append(r)
    return pd.DataFrame(rows)


def test_reproduced_only_when_running_statistics_win_at_every_normalization_batch():
    v = inference.check(runs_inference(), NO_CURVES)
    assert v.verdict == REPRODUCED, v.finding
    assert v.estimate.n == 5, "momentum copies are averaged within a seed, not counted as seeds"
    assert 45 < v.estimate.value < 55 and v.effect.minimum == 2.0
    assert v.facts["smallest_test_batch"] == 1 and v.facts["by_norm_batch"] == {16: (REPRODUCED, ""),
                                                                               128: (REPRODUCED, "")}, v.facts
    for nb in (16, 128):
        assert estimate_of(v, f"normalization batch={nb}", inference.ARM).value > 0
    table = v.numbers.set_index(["normalization batch", "test batch"])
    assert set(table.index.get_level_values(0)) == {"16", "128"} and len(table) == 2 * len(TEST_BATCHES)
    assert {"running statistics (%)", "test batch's own statistics (%)", "precise statistics (%)"} <= set(table.columns)
    assert table.loc[("16", 1000), "precise statistics (%)"].startswith("80.5")


def test_not_reproduced_when_the_small_normalization_batch_fails_though_plain_bn_holds():
    """Batch statistics better than running ones at normalization batch 16 (the train/test mismatch
    Wu & Johnson describe): the claim fails there, whatever plain BN shows."""
    v = inference.check(runs_inference(penalty={16: -0.1, 128: 0.5}), NO_CURVES)
    assert v.verdict == NOT_REPRODUCED, v.finding
    assert v.facts["deciding_norm_batch"] == 16 and v.estimate.value < 0, v.facts


def test_inconclusive_when_one_normalization_batch_is_undecided():
    runs = runs_inference(penalty={16: 0.02, 128: 0.5}, sd=0.02)  # +2 points at test batch 1, noisy
    v = inference.check(runs, NO_CURVES)
    assert v.verdict == INCONCLUSIVE, v.finding
    assert v.facts["deciding_norm_batch"] == 16 and v.why == HOLDS_MINIMUM, v.facts
    assert v.facts["by_norm_batch"] == {16: (INCONCLUSIVE, HOLDS_MINIMUM), 128: (REPRODUCED, "")}, v.facts


def test_an_untrained_normalization_batch_blocks_reproduced_but_not_a_failure_elsewhere():
    v = inference.check(runs_inference(untrained_at=16), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and untrained_arms(v) == {"normalization batch 16"}, v.finding
    v = inference.check(runs_inference(untrained_at=16, penalty={16: 0.5, 128: -0.1}), NO_CURVES)
    assert v.verdict == NOT_REPRODUCED and v.facts["deciding_norm_batch"] == 128, v.finding


def test_one_seed_over_two_momenta_is_one_seed():
    v = inference.check(runs_inference(seeds=1), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == TOO_FEW_SEEDS, v.finding


def test_the_normalization_batch_is_the_ghost_batch_at_most_the_sgd_batch():
    runs = pd.concat([runs_inference(sizes=(16, 128), batch=64, seeds=3),
                      runs_inference(sizes=(16,), seeds=3).assign(**{"norm.name": "bn", "data.batch_size": 64})],
                     ignore_index=True)
    nb = inference.normalization_batch(runs)
    assert sorted(nb.unique()) == [16, 64]
    assert (nb[runs["norm.name"] == "bn"] == 64).all()
    v = inference.check(runs, NO_CURVES)
    assert list(v.numbers["normalization batch"].unique()) == ["16", "64"], v.numbers


def test_precise_bn_and_the_train_test_mismatch_are_shown_beside_not_decided():
    v = inference.check(runs_inference(ema_error={0.01: 0.03}, sd=0.0002), NO_CURVES)
    assert v.verdict == REPRODUCED
    for nb in (16, 128):
        at = f"normalization batch={nb}"
        lag = {m: estimate_of(v, f"{at}; momentum={m}", inference.LAG).value for m in ("0.01", "0.1")}
        assert lag == pytest.approx({"0.01": -3.5, "0.1": -0.5}, abs=0.05), lag
        assert estimate_of(v, at, inference.PRECISE).value > 0
    # penalty 0.5 at test batch 16: 80 - 12.5 = 67.5% vs precise 80.5%
    assert estimate_of(v, "normalization batch=16", inference.OWN).value == pytest.approx(-13.0, abs=0.05)


def test_other_sgd_batches_are_left_out_and_said():
    runs = pd.concat([runs_inference(seeds=3), runs_inference(seeds=2, batch=32)], ignore_index=True)
    v = inference.check(runs, NO_CURVES)
    assert v.estimate.n == 3, v.finding
    assert [n.data for n in notes_of(v, inference.ONE_BATCH)] == [{"batches": [32, 128], "using": 128}], v.notes


@pytest.mark.parametrize("runs", [runs_inference().iloc[0:0], runs_inference().assign(study="norm_batch"),
                                  runs_inference().assign(**{"norm.name": "gn"})], ids=["none", "other study", "no bn"])
def test_missing_runs_say_so(runs):
    v = inference.check(runs, NO_CURVES)
    assert v.verdict == MISSING and "python -m bnstudy run +exp=inference" in v.missing


def test_figure_draws_each_normalization_batch_with_precise_statistics():
    fig = inference.inference_modes(runs_inference())
    labels = fig.axes[0].get_legend_handles_labels()[1]
    for nb in ("16", "128"):
        assert f"norm. batch {nb}, running statistics" in labels and f"norm. batch {nb}, batch statistics" in labels
        assert any(lab.startswith(f"norm. batch {nb}, precise statistics") for lab in labels), labels
    with pytest.raises(style.NotDrawn):
        inference.inference_modes(runs_inference()[["run", "study", "status", "norm.name", "seed"]])


def test_study_file_sweeps_the_protocol_of_its_header():
    """The protocol the rule was written for: ghost BN at normalization batches 16 and 128, an
    annealed schedule, test batches 1-1000, precise BN; probes off (cost)."""
    text = (inference.__file__.replace("claims/inference.py", "conf/exp/inference.yaml"))
    yaml_text = open(text).read()
    assert "norm.ghost_batch_size: 16,128" in yaml_text and "norm: ghost_bn" in yaml_text
    assert "written 2026-11-29, before any run of it" in inference.__doc__
    cfg = compose_config(["+exp=inference", "scale=cpu", "norm=ghost_bn", "norm.ghost_batch_size=16"])
    assert cfg.schedule.name == "linear" and cfg.schedule.warmup_fraction == 0.1 and cfg.optim.lr == 0.1
    assert cfg.evaluation.inference_modes and min(cfg.evaluation.batch_sizes) == 1
    assert max(cfg.evaluation.batch_sizes) == 1000 and cfg.evaluation.precise_bn_images == 10000
    assert cfg.scale.seeds == "0,1,2,3,4" and cfg.data.batch_size == 128
    assert cfg.probes.activations.every is None and cfg.probes.bn.every is None


def test_a_normalization_batch_whose_runs_all_diverged_blocks_reproduced():
    """Every ghost-16 run diverged (no completed run to read): without a blocker, 'every
    normalization batch' would be decided on batch 128 alone (a review's finding, 2026-11-29)."""
    runs = runs_inference()
    runs.loc[runs["norm.ghost_batch_size"] == 16, "status"] = "diverged"
    v = inference.check(runs, NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == BLOCKED, v.finding
    assert untrained_arms(v) == {"normalization batch 16"} and v.facts["by_norm_batch"] == {128: (REPRODUCED, "")}


def test_a_failure_elsewhere_stands_when_a_normalization_batch_has_no_completed_run():
    runs = runs_inference(penalty={16: 0.5, 128: -0.1}, sizes=(16, 128))
    runs.loc[runs["norm.ghost_batch_size"] == 16, "status"] = "diverged"
    v = inference.check(runs, NO_CURVES)
    assert v.verdict == NOT_REPRODUCED, v.finding


# ---------------------------------------------------------------- check_realistic: test batch 16, precise statistics

def test_the_realistic_check_comes_first_and_the_published_one_stays_as_it_was():
    assert inference.CHECKS == [inference.check_realistic, inference.check]
    assert inference.DECIDING_TEST_BATCH == 16
    e = inference.REALISTIC
    assert (e.minimum, e.claimed, e.unit) == (-1.0, +1, "points"), "non-inferiority: the interval must lie above -1"
    v = inference.check(runs_inference(), NO_CURVES)
    assert v.title == "Inference with running statistics beats batch statistics at small batches"
    assert v.rule is inference.RULE and v.effect is inference.EFFECT and v.effect.minimum == 2.0


def test_realistic_reproduced_when_precise_statistics_lose_less_than_a_point_at_test_batch_16():
    """Precise statistics 0.3 points below the test batch's own at test batch 16 (batch statistics
    80% at every test batch): not a win, but within the margin, so reproduced."""
    v = inference.check_realistic(runs_inference(penalty={16: 0.0, 128: 0.0}, precise=0.797, sd=0.001), NO_CURVES)
    assert v.verdict == REPRODUCED and v.why == "", v.finding
    assert v.effect is inference.REALISTIC and v.estimate.n == 5, "momentum copies are one seed"
    assert v.estimate.value == pytest.approx(-0.3, abs=0.2) and v.estimate.lo > -1.0, v.estimate
    assert v.facts["deciding_test_batch"] == 16
    assert v.facts["by_norm_batch"] == {16: (REPRODUCED, ""), 128: (REPRODUCED, "")}, v.facts
    for nb in (16, 128):
        assert estimate_of(v, f"normalization batch={nb}", inference.REALISTIC_ARM).lo > -1.0


def test_realistic_reproduced_when_precise_statistics_win():
    v = inference.check_realistic(runs_inference(), NO_CURVES)  # 80.5% vs 80% - 12.5 points at test batch 16
    assert v.verdict == REPRODUCED, v.finding
    assert v.estimate.value == pytest.approx(13.0, abs=1.0) and v.estimate.lo > -1.0
    assert not v.blockers


def test_realistic_not_reproduced_when_precise_statistics_lose_5_points_at_one_normalization_batch():
    """Batch statistics 67.5% at test batch 16 (30% at test batch 1); precise statistics 62.5% at
    normalization batch 16: the published check, at test batch 1, still holds."""
    runs = runs_inference(precise={16: 0.625, 128: 0.805})
    v = inference.check_realistic(runs, NO_CURVES)
    assert v.verdict == NOT_REPRODUCED and v.why == "", v.finding
    assert v.facts["deciding_norm_batch"] == 16, v.facts
    assert v.facts["by_norm_batch"] == {16: (NOT_REPRODUCED, ""), 128: (REPRODUCED, "")}, v.facts
    assert v.estimate.value == pytest.approx(-5.0, abs=0.7) and v.estimate.hi < -1.0, v.estimate
    assert inference.check(runs, NO_CURVES).verdict == REPRODUCED  # running statistics at test batch 1


def test_realistic_inconclusive_when_the_interval_straddles_the_margin():
    runs = runs_inference(penalty={16: 0.0, 128: 0.0}, precise={16: 0.79, 128: 0.83}, sd=0.01)  # -1, +3 points
    v = inference.check_realistic(runs, NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == HOLDS_MINIMUM, v.finding
    assert v.estimate.lo < -1.0 < v.estimate.hi, v.estimate
    assert v.facts["deciding_norm_batch"] == 16, v.facts
    assert v.facts["by_norm_batch"] == {16: (INCONCLUSIVE, HOLDS_MINIMUM), 128: (REPRODUCED, "")}, v.facts


def test_realistic_shows_running_statistics_and_test_batch_1_beside_not_decided():
    """Running statistics at momentum 0.01 3 points off (80% - 3 vs 80% at test batch 16), at 0.1
    on it; precise minus batch statistics at test batch 1: 80.5% vs 80% - 50 points."""
    runs = runs_inference(penalty={16: 0.5, 128: 0.5}, ema_error={0.01: 0.03}, sd=0.0002)
    v = inference.check_realistic(runs, NO_CURVES)
    assert v.verdict == REPRODUCED, v.finding
    for nb in (16, 128):
        at = f"normalization batch={nb}"
        running = {m: estimate_of(v, f"{at}; momentum={m}", inference.RUNNING_AT).value for m in ("0.01", "0.1")}
        assert running == pytest.approx({"0.01": 12.5 - 3.0, "0.1": 12.5}, abs=0.05), running
        assert estimate_of(v, at, inference.PRECISE).value == pytest.approx(50.5, abs=0.05)
        assert estimate_of(v, at, inference.REALISTIC_ARM).value == pytest.approx(13.0, abs=0.05)
    table = v.numbers.set_index(["normalization batch", "test batch"])
    assert sorted(table.index) == [("128", 1), ("128", 16), ("16", 1), ("16", 16)], table


def test_realistic_shows_precise_statistics_over_unaugmented_images_beside_not_decided():
    """Runs that recorded precise statistics over the unaugmented images too (3 points lower here)
    show that reading beside; it decides nothing, and runs without it show none."""
    runs = runs_inference(sd=0.0002)
    assert not any(e is inference.UNAUGMENTED_AT for _, e, _ in inference.check_realistic(runs, NO_CURVES).estimates)
    runs["final.infer/acc_precise_unaugmented"] = runs["final.infer/acc_precise"] - 0.03
    v = inference.check_realistic(runs, NO_CURVES)
    assert v.verdict == REPRODUCED
    for nb in (16, 128):
        at = f"normalization batch={nb}"
        assert estimate_of(v, at, inference.UNAUGMENTED_AT).value == pytest.approx(
            estimate_of(v, at, inference.REALISTIC_ARM).value - 3.0, abs=0.05)


@pytest.mark.parametrize("drop", ["column", "values"])
def test_realistic_missing_without_precise_statistics(drop):
    runs = runs_inference()
    runs = runs.drop(columns="final.infer/acc_precise") if drop == "column" else \
        runs.assign(**{"final.infer/acc_precise": np.nan})
    v = inference.check_realistic(runs, NO_CURVES)
    assert v.verdict == MISSING and "infer/acc_precise" in v.missing, v.missing
    assert inference.check(runs, NO_CURVES).verdict == REPRODUCED  # the published check does not need them


def test_realistic_missing_without_test_batch_16():
    runs = runs_inference().drop(columns=["final.infer/acc_batch.bs16", "final.infer/acc_running.bs16"])
    v = inference.check_realistic(runs, NO_CURVES)
    assert v.verdict == MISSING and "infer/acc_batch.bs16" in v.missing, v.missing


def test_realistic_an_untrained_or_diverged_normalization_batch_blocks_reproduced():
    v = inference.check_realistic(runs_inference(untrained_at=16), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == BLOCKED and untrained_arms(v) == {"normalization batch 16"}, v.finding
    runs = runs_inference()
    runs.loc[runs["norm.ghost_batch_size"] == 16, "status"] = "diverged"
    v = inference.check_realistic(runs, NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == BLOCKED, v.finding
    assert untrained_arms(v) == {"normalization batch 16"} and v.facts["by_norm_batch"] == {128: (REPRODUCED, "")}
    # a failure elsewhere stands
    runs = runs_inference(penalty={16: 0.0, 128: 0.0}, precise={16: 0.805, 128: 0.75})
    runs.loc[runs["norm.ghost_batch_size"] == 16, "status"] = "diverged"
    v = inference.check_realistic(runs, NO_CURVES)
    assert v.verdict == NOT_REPRODUCED and v.facts["deciding_norm_batch"] == 128, v.finding


def test_realistic_one_seed_over_two_momenta_is_one_seed():
    v = inference.check_realistic(runs_inference(seeds=1), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == TOO_FEW_SEEDS, v.finding


@pytest.mark.parametrize("runs", [runs_inference().iloc[0:0], runs_inference().assign(study="norm_batch"),
                                  runs_inference().assign(**{"norm.name": "gn"})], ids=["none", "other study", "no bn"])
def test_realistic_missing_runs_say_so(runs):
    v = inference.check_realistic(runs, NO_CURVES)
    assert v.verdict == MISSING and "python -m bnstudy run +exp=inference" in v.missing


def test_realistic_never_decides_on_the_runs_it_was_written_after_seeing():
    """Seeds 0-4 at scale=cpu on the CIFAR-10 folder were seen before the realistic-batch rule
    was written: alone they block it; beside fresh seeds they are left out and the fresh ones decide."""
    seen = runs_inference().assign(**{"data.name": "cifar10_folder"})
    v = inference.check_realistic(seen, NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == BLOCKED
    assert [b.kind for b in v.blockers] == [inference.SEEN_KIND]
    assert inference.check(seen, NO_CURVES).verdict == REPRODUCED  # the older rule was written before them
    fresh = runs_inference().assign(**{"data.name": "cifar10_folder", "seed": lambda d: d.seed + 5})
    fresh["run"] = fresh["run"] + "-fresh"
    v = inference.check_realistic(pd.concat([seen, fresh], ignore_index=True), NO_CURVES)
    assert v.verdict == REPRODUCED and v.estimate.n == 5
    assert [n.data for n in notes_of(v, inference.SEEN_KIND)] == [{"runs": len(seen)}]
    on_synthetic = inference.check_realistic(runs_inference(), NO_CURVES)  # other data: not the runs seen
    assert on_synthetic.verdict == REPRODUCED


def test_a_normalization_batch_still_running_blocks_both_checks():
    """A confirmation sweep half done: normalization batch 16's runs still running (or failed) do
    not let normalization batch 128 decide alone."""
    runs = runs_inference()
    runs.loc[runs["norm.ghost_batch_size"] == 16, "status"] = "running"
    for check in (inference.check_realistic, inference.check):
        v = check(runs, NO_CURVES)
        assert v.verdict == INCONCLUSIVE and untrained_arms(v) == {"normalization batch 16"}, check.__name__
