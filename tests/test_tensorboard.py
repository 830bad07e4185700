"""TensorBoard: live event files (trainer.tensorboard=true), the export of finished runs and of a
published study (`python -m bnstudy tensorboard`), read back with TensorBoard's own reader."""
from __future__ import annotations

import importlib.util

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from bnstudy.cli import main
from bnstudy.validation import ConfigError
from bnstudy.run import run
from conftest import REPO, compose_config


def events(logdir) -> EventAccumulator:
    ea = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    ea.Reload()
    return ea


def hparams(ea: EventAccumulator) -> dict:
    """The HParams plugin's session start: hparam name -> value."""
    content = ea.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in data.session_start_info.hparams.items()}


def read_csv(folder, name):
    return pd.read_csv(folder / name)


def test_live_event_files_hold_the_runs_scalars_histograms_and_hparams_and_change_nothing(tmp_path, tiny_overrides):
    on, off = tmp_path / "on", tmp_path / "off"
    summary = run(compose_config(tiny_overrides + ["trainer.tensorboard=true"]), on)
    run(compose_config(tiny_overrides), off)
    for name in ("metrics.csv", "probes.csv"):  # the switch changes nothing the run computes
        assert read_csv(on, name).equals(read_csv(off, name)), name
    assert not (off / "tensorboard").exists()
    ea = events(on / "tensorboard")
    tags = ea.Tags()
    metrics = read_csv(on, "metrics.csv")
    assert set(metrics.metric) <= set(tags["scalars"])
    loss = [e.value for e in ea.Scalars("train/loss")]
    assert loss == pytest.approx(metrics[metrics.metric == "train/loss"].value.tolist(), rel=1e-6)
    probes = read_csv(on, "probes.csv")
    positions = {m.split("/", 1)[1].rsplit(".bin", 1)[0] for m in probes.metric if m.startswith("hist/")}
    assert positions and {f"activations/{p}" for p in positions} == set(tags["histograms"])
    h = ea.Histograms(f"activations/{sorted(positions)[0]}")[0]
    assert h.histogram_value.num == pytest.approx(1.0, abs=1e-4)  # fractions of the elements: each sums to 1
    hp = hparams(ea)
    assert hp["norm.name"] == "bn" and hp["optim.lr"] == pytest.approx(summary["peak_lr"]) and hp["status"] == "completed"
    final = ea.Scalars("hparams/final_test_acc")[0].value
    assert final == pytest.approx(summary["final_test_acc"])


def test_export_writes_the_same_event_files_from_finished_run_folders(tmp_path, tiny_overrides, capsys):
    for seed in (0, 1):
        run(compose_config(tiny_overrides + [f"seed={seed}"]), tmp_path / "sweep" / f"seed={seed}")
    main(["tensorboard", str(tmp_path / "sweep"), "--out", str(tmp_path / "tb")])
    out = capsys.readouterr().out
    assert f"tensorboard --logdir {tmp_path / 'tb'}" in out
    for seed in (0, 1):
        ea = events(tmp_path / "tb" / f"seed={seed}")
        assert "train/loss" in ea.Tags()["scalars"] and ea.Tags()["histograms"]
        assert hparams(ea)["seed"] == seed


def test_export_of_a_published_study_reads_its_tables(tmp_path, capsys):
    """results/lr_range: runs.csv and curves.csv.gz, no run folders."""
    study = REPO / "results" / "lr_range"
    main(["tensorboard", str(study), "--out", str(tmp_path / "tb")])
    runs = pd.read_csv(study / "runs.csv")
    written = sorted(p.name for p in (tmp_path / "tb").iterdir())
    assert len(written) == len(runs)
    ea = events(tmp_path / "tb" / written[0])
    assert "train/loss" in ea.Tags()["scalars"] and hparams(ea)["study"] == "lr_range"
    assert "may be cut" in capsys.readouterr().out


def test_the_switch_without_tensorboard_installed_stops_naming_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ConfigError) as e:
        compose_config(["trainer.tensorboard=true"])
    assert e.value.key == "trainer.tensorboard" and ".[tb]" in str(e.value)
