import json
import math

import pandas as pd
import pytest
import torch

from bnstudy.optim import build_optimizer, lr_at, peak_lr
from bnstudy.config import OptimConfig, ScheduleConfig
from bnstudy.validation import ConfigError
from bnstudy.nets.resnet import build_model
from bnstudy.config import ModelConfig, NormConfig
from bnstudy.run import RunFolderError, run

from conftest import compose_config


def test_schedules():
    c = ScheduleConfig(name="constant")
    assert lr_at(0, 100, 0.1, c) == lr_at(99, 100, 0.1, c) == 0.1
    s = ScheduleConfig(name="step", milestones=[0.5, 0.75], gamma=0.1)
    assert [lr_at(t, 100, 1.0, s) for t in (0, 49, 50, 74, 75, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    cos = ScheduleConfig(name="cosine")
    assert lr_at(0, 100, 1.0, cos) == 1.0 and lr_at(50, 100, 1.0, cos) == pytest.approx(0.5)
    assert lr_at(100, 100, 1.0, cos) == pytest.approx(0.0, abs=1e-12)
    w = ScheduleConfig(name="constant", warmup_steps=4)
    assert [lr_at(t, 100, 1.0, w) for t in range(5)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])


def test_annealed_and_range_schedules():
    # linear: warmup over 10% of 100 steps, then down to 0 at the end of the run
    lin = ScheduleConfig(name="linear", warmup_fraction=0.1)
    assert [lr_at(t, 100, 1.0, lin) for t in (0, 9, 10, 55, 99)] == pytest.approx([0.1, 1.0, 1.0, 0.5, 1 / 90])
    assert lr_at(100, 100, 1.0, lin) == 0.0
    # the fraction and the step count: the larger wins
    assert lr_at(4, 100, 1.0, ScheduleConfig(name="linear", warmup_steps=20, warmup_fraction=0.1)) == pytest.approx(0.25)
    # cosine warms up over a fraction too
    assert lr_at(4, 100, 1.0, ScheduleConfig(name="cosine", warmup_fraction=0.1)) == pytest.approx(0.5)
    # range: 10**-decades of the rate at step 0, the rate itself at the last step, geometric between
    r = ScheduleConfig(name="range", range_decades=4.0)
    lrs = [lr_at(t, 5, 10.0, r) for t in range(5)]
    assert lrs == pytest.approx([1e-3, 1e-2, 1e-1, 1.0, 10.0])


@pytest.mark.parametrize("override", ["schedule.warmup_fraction=1.0", "schedule.warmup_fraction=-0.1",
                                      "schedule.range_decades=0"])
def test_bad_schedule_values_refused(override):
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        compose_config([override])


def test_range_refuses_warmup():
    with pytest.raises(ConfigError, match="no warmup"):
        compose_config(["schedule=range", "schedule.warmup_steps=10"])


def test_linear_lr_scaling():
    assert peak_lr(OptimConfig(lr=0.1, lr_batch_size=128, scale_lr=True), 32) == pytest.approx(0.025)
    assert peak_lr(OptimConfig(lr=0.1, scale_lr=False), 32) == 0.1


def test_no_decay_on_norm_and_bias():
    model = build_model(ModelConfig(), NormConfig(name="bn"))
    opt = build_optimizer(model, OptimConfig(decay_norm_and_bias=False, weight_decay=5e-4), 0.1)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert len(no_decay["params"]) == 19 * 2 + 1  # gammas, betas, fc bias


def read(out):
    return (pd.read_csv(out / "metrics.csv"), json.loads((out / "summary.json").read_text()))


def test_run_writes_the_output_contract(tmp_path, tiny_overrides):
    out = tmp_path / "run"
    run(compose_config(tiny_overrides + ["trainer.acc_thresholds=[0.1,0.99]"]), out)
    metrics, summary = read(out)
    assert list(metrics.columns) == ["step", "epoch", "metric", "value"]
    assert {"train/loss", "train/acc", "train/lr", "test/loss", "test/acc"} <= set(metrics.metric)
    assert metrics[metrics.metric == "train/loss"].step.tolist() == [2, 4, 6]
    assert summary["status"] == "completed" and summary["steps"] == 6
    for key in ("epochs", "final_test_acc", "best_test_acc", "wall_time_s", "train_images_per_s",
                "bnstudy_version", "git_commit", "torch_version", "device_name", "seed"):
        assert key in summary, key
    assert summary["train_images_per_s"] > 0
    assert summary["steps_to_test_acc"] == {"0.1": 6, "0.99": None}
    assert "optim:" in (out / "config.yaml").read_text()
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["step"] == 6 and {"model", "optimizer", "schedule", "rng"} <= set(ckpt)
    model = build_model(ModelConfig(), NormConfig(name="bn"))
    model.load_state_dict(ckpt["model"])


def test_a_resumed_run_counts_the_wall_time_of_its_earlier_starts(tmp_path, tiny_overrides):
    """summary.json's wall_time_s is the run's, not its last start's: the checkpoint carries the
    seconds trained so far (TrainResult.train_wall_s), and a resume counts on from them."""
    out = tmp_path / "run"
    cfg = compose_config(tiny_overrides + ["trainer.checkpoint_every=2"])
    run(cfg, out)
    _, first = read(out)
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert 0 < ckpt["result"]["train_wall_s"] <= first["train_wall_s"] <= first["wall_time_s"]
    ckpt["result"]["train_wall_s"] = 1000.0  # as if the earlier start had trained for 1000 s
    torch.save(ckpt, out / "last.pt")
    (out / "summary.json").write_text(json.dumps({**first, "status": "running"}))  # killed before it ended
    run(cfg, out)
    _, resumed = read(out)
    assert resumed["status"] == "completed" and resumed["resumed_from_step"] == 6
    assert 1000 < resumed["train_wall_s"] <= resumed["wall_time_s"] < 1000 + 10 * first["wall_time_s"]


def test_train_eval_off_skips_the_training_slice_and_nothing_else(tmp_path, tiny_overrides):
    """trainer.train_eval=false: no train_eval/* rows; the test rows, and training, are the same."""
    on, off = tmp_path / "on", tmp_path / "off"
    run(compose_config(tiny_overrides), on)
    run(compose_config(tiny_overrides + ["trainer.train_eval=false"]), off)
    m_on, m_off = read(on)[0], read(off)[0]
    assert m_on.metric.str.startswith("train_eval/").any() and not m_off.metric.str.startswith("train_eval/").any()
    assert m_on[~m_on.metric.str.startswith("train_eval/")].reset_index(drop=True).equals(m_off.reset_index(drop=True))


def test_same_seed_same_metrics(tmp_path, tiny_overrides):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    run(compose_config(tiny_overrides), a)
    run(compose_config(tiny_overrides), b)
    run(compose_config(tiny_overrides + ["seed=1"]), c)
    ma, mb, mc = (read(p)[0] for p in (a, b, c))
    assert ma.equals(mb)
    assert not ma.value.equals(mc.value)


def test_diverging_run_is_recorded(tmp_path, tiny_overrides):
    out = tmp_path / "div"
    summary = run(compose_config(tiny_overrides + ["norm=none", "optim.lr=50", "trainer.diverge_loss=100"]), out)
    assert summary["status"] == "diverged" and summary["steps"] < 6
    assert "diverge_loss" in summary["message"]
    metrics, on_disk = read(out)
    assert on_disk["status"] == "diverged"
    last = metrics[metrics.metric == "train/loss"].iloc[-1]
    assert last.step == summary["steps"] and (not math.isfinite(last.value) or last.value > 100)


def test_divergence_read_every_few_steps_names_the_same_step(tmp_path, tiny_overrides):
    """The GPU setting (flag kept on the device, read every check_every steps) records the
    same first bad step and loss as reading it after every step."""
    div = tiny_overrides + ["norm=none", "optim.lr=50", "trainer.diverge_loss=100", "trainer.log_every=6"]
    every = run(compose_config(div + ["trainer.check_every=1"]), tmp_path / "a")
    late = run(compose_config(div + ["trainer.check_every=5"]), tmp_path / "b")
    assert every["status"] == late["status"] == "diverged"
    assert every["steps"] == late["steps"] and every["message"] == late["message"]
    rows = read(tmp_path / "b")[0]
    assert rows.step.max() == late["steps"]  # nothing logged past the divergence


@pytest.mark.slow  # torch.compile: ~10 s
def test_compiled_forward_trains_like_eager(tmp_path, tiny_overrides):
    over = tiny_overrides + ["trainer.max_steps=4", "trainer.log_every=1"]
    run(compose_config(over), tmp_path / "eager")
    compiled = run(compose_config(over + ["trainer.compile=true"]), tmp_path / "compiled")
    assert compiled["status"] == "completed", compiled.get("message")

    def losses(d):
        m = read(d)[0]
        return m[m.metric == "train/loss"].set_index("step").value

    e, c = losses(tmp_path / "eager"), losses(tmp_path / "compiled")
    assert c[1] == pytest.approx(e[1], rel=1e-5)  # the same weights, the same batch: the same loss
    assert c[4] == pytest.approx(e[4], rel=1e-2)  # fused kernels round differently; the run is the same


def test_failing_run_is_recorded_not_raised(tmp_path, tiny_overrides, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr("bnstudy.run.train", boom)
    summary = run(compose_config(tiny_overrides), tmp_path / "f")
    assert summary["status"] == "failed" and "simulated failure" in summary["error"]
    assert read(tmp_path / "f")[1]["status"] == "failed"


def test_finished_run_folder_is_skipped_not_overwritten(tmp_path, tiny_overrides):
    run(compose_config(tiny_overrides), tmp_path / "r")
    before = (tmp_path / "r" / "metrics.csv").read_bytes()
    again = run(compose_config(tiny_overrides), tmp_path / "r")
    assert again["skipped"] and again["status"] == "completed"
    assert (tmp_path / "r" / "metrics.csv").read_bytes() == before


def test_unwritable_run_folder_is_a_clear_error(tmp_path, tiny_overrides):
    (tmp_path / "file").write_text("")
    with pytest.raises(RunFolderError, match="cannot create the run folder"):
        run(compose_config(tiny_overrides), tmp_path / "file" / "r")


def test_max_steps_beyond_the_epochs_is_named(tmp_path, tiny_overrides, caplog):
    """256 images at batch 32 are 8 steps an epoch: max_steps=12 with one epoch stops at 8, and says so."""
    over = [o for o in tiny_overrides if not o.startswith("trainer.max_steps")]
    with caplog.at_level("WARNING"):
        summary = run(compose_config(over + ["trainer.epochs=1", "trainer.max_steps=12"]), tmp_path / "m")
    assert summary["steps"] == 8
    assert any("trainer.max_steps=12" in r.message and "stops at step 8" in r.message for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING"):
        run(compose_config(over + ["trainer.epochs=1", "trainer.max_steps=8"]), tmp_path / "n")
    assert not any("trainer.max_steps" in r.message for r in caplog.records)


def test_batch_larger_than_data_fails_cleanly(tmp_path, tiny_overrides):
    summary = run(compose_config(tiny_overrides + ["data.batch_size=1024"]), tmp_path / "b")
    assert summary["status"] == "failed" and "data.batch_size" in summary["error"]


def test_synthetic_data_is_learnable(tmp_path):
    # the README's default: accuracy well above chance (10%) within a few hundred steps
    out = tmp_path / "learn"
    summary = run(compose_config(["model.depth=8", "data.batch_size=32", "trainer.max_steps=150",
                                  "trainer.epochs=3", "trainer.log_every=50", "data.train_subset=null"]), out)
    assert summary["status"] == "completed" and summary["final_test_acc"] > 0.5


def test_a_run_resumed_mid_way_draws_the_same_noisy_bn_noise_as_one_that_was_not(tmp_path, tiny_overrides,
                                                                                  monkeypatch):
    """noisy_bn's per-example noise comes from generators inside its layers: the checkpoint holds
    their states, so a run resumed from step 2 trains and measures what the uninterrupted run did."""
    import shutil

    import bnstudy.train as train_mod

    cfg = compose_config(tiny_overrides + ["norm=noisy_bn_example", "trainer.checkpoint_every=2",
                                           "trainer.eval_every=2"])
    step_2 = tmp_path / "step-2.pt"  # written as it was then (state_dict tensors are the live weights)
    real = train_mod.atomic_torch_save

    def keep_step_2(state, path):
        if state["step"] == 2:
            torch.save(state, step_2)
        real(state, path)
    monkeypatch.setattr(train_mod, "atomic_torch_save", keep_step_2)
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    run(cfg, whole)
    assert torch.load(step_2, weights_only=True)["rng"]["modules"]  # the layers' generator states
    shutil.copytree(whole, resumed)
    shutil.copy(step_2, resumed / "last.pt")
    (resumed / "summary.json").write_text(json.dumps({**read(whole)[1], "status": "running"}))  # killed at step 2+
    run(cfg, resumed)
    (m_whole, s_whole), (m_resumed, s_resumed) = read(whole), read(resumed)
    assert s_resumed["resumed_from_step"] == 2 and s_resumed["status"] == "completed"
    assert m_resumed.equals(m_whole) and s_resumed["final_test_acc"] == s_whole["final_test_acc"]
