"""trainer.precision: what auto resolves to, and that a run records what it trained in."""
import json

import torch

from bnstudy import precision
from conftest import run_cli


def test_auto_is_bf16_only_where_the_device_computes_it_natively(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert precision.resolve("auto", None, cpu) == precision.Precision("fp32", False, "auto", False)
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert precision.resolve("auto", None, cpu) == precision.Precision("bf16", True, "auto", True)
    assert precision.resolve("fp32", None, cpu).name == "fp32"  # a forced choice stands
    assert precision.resolve("bf16", False, cpu) == precision.Precision("bf16", False, "bf16", True)
    assert precision.resolve("fp32", True, cpu).channels_last


def test_a_run_records_its_precision(tmp_path, tiny_overrides):
    r = run_cli(["run", *tiny_overrides, "trainer.precision=auto", "trainer.max_steps=2",
                 f"hydra.run.dir={tmp_path}/r"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    native = precision.native_bf16(torch.device("cpu"))
    assert s["precision_requested"] == "auto" and s["native_bf16"] == native
    assert s["precision"] == ("bf16" if native else "fp32") and s["channels_last"] == native
    bad = run_cli(["run", "trainer.precision=fp16", f"hydra.run.dir={tmp_path}/b"], cwd=tmp_path)
    assert bad.returncode == 2 and "trainer.precision" in bad.stderr
