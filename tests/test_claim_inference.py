"""The inference claim (running vs batch statistics at inference, asked at every normalization
batch, precise BN beside) on hand-made run tables, and the study file's protocol."""
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
                   ema_error=None, untrained_at=None):
    """inference: ghost BN at each normalization batch; running statistics 80% (minus
    `ema_error[momentum]`), precise 80.5%; the test batch's own statistics 80% - penalty[nb]/sqrt(B)
    (penalty 0.5: -50 points at test batch 1). Momentum copies of a seed share their weights, so
    batch and precise accuracy are the same for both momenta of a seed (one net read twice)."""
    penalty = {16: 0.5, 128: 0.5} if penalty is None else penalty
    ema_error = ema_error or {}
    rng, rows = np.random.default_rng(11), []
    for g, s in itertools.product(sizes, range(seeds)):
        nb = min(g, batch)
        net = {b: 0.8 - penalty.get(nb, 0.5) / np.sqrt(b) + noise(rng, sd) for b in TEST_BATCHES}
        precise = 0.805 + noise(rng, sd)
        for m in momenta:
            acc = 0.1 if untrained_at == nb else 0.8 - ema_error.get(m, 0.0) + noise(rng, sd)
            r = row("inference", "ghost_bn", s, acc, **{"norm.ghost_batch_size": g, "data.batch_size": batch,
                                                         "norm.momentum": m, "final.infer/acc_precise": precise})
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
