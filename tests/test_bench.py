"""The benchmark runs end to end (tiny sizes) and times the probes over their whole period.
Each run of the benchmark trains every variant: the slow tier."""
import json

import pytest

from bnstudy import bench, throughput


def test_probe_period_is_the_lcm_of_default_cadences():
    # activations/sigprop/batchnorm every 200, gradients every 50: the call pattern repeats every 200
    assert throughput.probe_period() == 200


@pytest.mark.slow
def test_bench_quick_writes_rates_and_ratios(tmp_path):
    out = tmp_path / "b.json"
    res = bench.main(["--quick", "--steps", "2", "--reps", "1", "--probe-steps", "2", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert set(saved["median_images_per_s"]) == {"bare", "harness", "probes", "classic"}
    assert all(v > 0 for v in saved["median_images_per_s"].values())
    assert saved["ratios"]["harness/bare"] == res["median_images_per_s"]["harness"] / res["median_images_per_s"]["bare"]
    assert saved["config"]["probe_period_steps"] == 2


@pytest.mark.slow
def test_bench_times_tensorboard_logging_beside_the_same_run_without_it():
    res = bench.main(["--quick", "--tensorboard", "--steps", "2", "--reps", "1", "--probe-steps", "2"])
    med = res["median_images_per_s"]
    assert med["tensorboard"] > 0 and res["ratios"]["tensorboard/probes"] == med["tensorboard"] / med["probes"]
    # the writer's share, timed inside the run: a repetition each, a positive fraction of the timed seconds
    assert len(res["tensorboard_writer_share"]) == 1 and 0 < res["median_tensorboard_writer_share"] < 1


@pytest.mark.slow
def test_bench_precision_variants_side_by_side(tmp_path):
    res = bench.main(["--quick", "--precisions", "--steps", "2", "--reps", "1", "--probe-steps", "2"])
    pv = res["precision_variants"]
    assert set(pv["median_images_per_s"]) == {f"{loop} {p}" for p in throughput.PRECISIONS for loop in ("bare", "harness")}
    assert pv["ratios"]["bare fp32 / bare fp32"] == 1.0 and pv["ratios"]["harness fast / harness fp32"] > 0
    assert throughput.SPEED == {"channels_last": False, "bf16": False, "compile": False}  # restored


def test_classic_loop_reads_past_an_epoch():
    """More steps than the data has batches: the loader starts a new epoch, as training does
    (it stopped the bench on a GPU at 50 steps of 512)."""
    data = bench.synthetic_cifar(48, 10)
    assert throughput.classic_loop(data, batch=16, steps=4, device=bench.torch.device("cpu"), workers=0) > 0
    assert throughput.classic_loader_only(data, batch=16, steps=4, workers=0) > 0


@pytest.mark.slow
def test_bench_norms_side_by_side(tmp_path, monkeypatch):
    monkeypatch.setattr(throughput, "SPEED", dict(throughput.SPEED))  # main sets bf16 + channels_last in it
    out = tmp_path / "n.json"
    res = bench.main(["--norms", "bn,ghost_bn:2,gn:4", "--steps", "1", "--reps", "1", "--batch", "8",
                      "--bf16", "--channels-last", "--out", str(out)])
    nv = json.loads(out.read_text())["norm_variants"]
    assert list(nv["median_images_per_s"]) == ["bn", "ghost_bn:2", "gn:4"] and "precision_variants" not in res
    assert nv["ratios"]["bn / bn"] == 1.0 and all(v > 0 for v in nv["median_images_per_s"].values())
    assert throughput.parse_norm("ghost_bn:2").ghost_batch_size == 2 and throughput.parse_norm("gn:4").groups == 4


def test_tensorboard_replay_times_a_runs_rows_against_its_wall_time(tmp_path, tiny_overrides):
    """`bench --tensorboard-replay RUN_DIR`: a finished run's rows written to event files, timed."""
    from bnstudy.run import run
    from conftest import compose_config

    summary = run(compose_config(tiny_overrides), tmp_path / "r")
    res = bench.main(["--tensorboard-replay", str(tmp_path / "r"), "--out", str(tmp_path / "replay.json")])
    assert res["rows"] > 0 and res["calls"] > 0 and res["event_bytes"] > 0
    assert res["run_wall_s"] == summary["wall_time_s"] and res["share_of_run_wall"] == res["writer_wall_s"] / res["run_wall_s"]
    assert json.loads((tmp_path / "replay.json").read_text())["rows"] == res["rows"]


def test_bench_eval_chunks_times_each_chunk_in_both_precisions_and_restores_the_cap(tmp_path):
    """`bench --eval-chunks`: eval-mode evaluation at each chunk size, fp32 and bf16, ratios to the
    largest chunk; evaluate's CPU cap is lifted for the timing and put back."""
    from bnstudy import evaluation

    cap = evaluation.CPU_EVAL_CHUNK
    out = tmp_path / "e.json"
    res = bench.main(["--eval-chunks", "16,8", "--test-images", "24", "--reps", "1", "--out", str(out)])
    ev = json.loads(out.read_text())["eval_chunk_variants"]
    assert ev["chunks"] == [8, 16] and ev["images"] == 24 and ev["cpu_eval_chunk"] == cap
    assert set(ev["median_images_per_s"]) == {f"{p} {c}" for p in ("fp32", "bf16+channels_last") for c in (8, 16)}
    assert ev["ratios"]["fp32 16 / fp32 16"] == 1.0 and all(v > 0 for v in ev["median_images_per_s"].values())
    assert evaluation.CPU_EVAL_CHUNK == cap and res["eval_chunk_variants"] == ev


def test_bench_eval_chunks_reaches_the_chunk_it_times(monkeypatch):
    """A chunk larger than evaluate's CPU cap is timed at its own size, not at the cap."""
    from bnstudy import evaluation

    seen, cap = [], evaluation.CPU_EVAL_CHUNK
    real = evaluation.evaluate

    def spy(model, x, y, batch_size, **kw):
        seen.append((batch_size, kw.get("cpu_chunk") or evaluation.CPU_EVAL_CHUNK))  # the cap it forwards at
        return real(model, x, y, batch_size, **kw)
    monkeypatch.setattr(evaluation, "evaluate", spy)
    throughput.eval_chunk_variants(bench.synthetic_cifar(8, 12), [4, 1000], 1, bench.torch.device("cpu"), print)
    assert (1000, 1000) in seen and (4, 4) in seen and evaluation.CPU_EVAL_CHUNK == cap
