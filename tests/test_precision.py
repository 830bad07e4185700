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


def _precision_runs(bf16_acc, fp32_acc, diverged=None):
    """Runs of the precision study: one row per seed and precision at lr 0.1; `diverged` adds
    lr-10 rows, {precision: how many of 5 seeds diverged}."""
    import pandas as pd

    rows = [{"study": "precision", "norm.name": "bn", "optim.lr": 0.1, "trainer.precision": p, "seed": s,
             "status": "completed", "final_acc": a, "final_test_acc": a, "scale.name": "cpu", "data.name": "synthetic"}
            for p, accs in (("bf16", bf16_acc), ("fp32", fp32_acc)) for s, a in enumerate(accs)]
    for p, n in (diverged or {}).items():
        rows += [{"study": "precision", "norm.name": "bn", "optim.lr": 10.0, "trainer.precision": p, "seed": s,
                  "status": "diverged" if s < n else "completed", "final_acc": 0.1, "final_test_acc": None,
                  "scale.name": "cpu", "data.name": "synthetic"} for s in range(5)]
    return pd.DataFrame(rows)


def test_precision_check_has_three_outcomes():
    import sys

    import pandas as pd

    from conftest import REPO
    sys.path.insert(0, str(REPO / "scripts"))
    import precision_check as pc

    tight = [0.700, 0.702, 0.698, 0.701, 0.699]
    jitter = [0.002, -0.001, 0.0, -0.002, 0.001]
    same = pc.check(_precision_runs(tight, [a + j for a, j in zip(tight, jitter)], {"bf16": 5, "fp32": 5}))
    assert same[0] == pc.FAITHFUL, same[1]
    # 5 points lower in bf16, tightly: the interval excludes 0
    assert pc.check(_precision_runs([a - 0.05 + j for a, j in zip(tight, jitter)], tight))[0] == pc.NOT_FAITHFUL
    # seed to seed 3 points apart, but each seed's bf16 run within 0.2 of its fp32 run: the
    # paired rule (v2) sees it, Welch (v1) cannot: faithful, since v1 does not say otherwise
    spread = [0.40, 0.44, 0.37, 0.43, 0.41]
    paired = _precision_runs([a + j for a, j in zip(spread, jitter)], spread, {"bf16": 5, "fp32": 5})
    outcome, text = pc.check(paired)
    assert outcome == pc.FAITHFUL and "v1, Welch: inconclusive; v2, paired: faithful" in text
    # without runs at a higher rate, divergence is unchecked: not faithful yet
    assert pc.check(paired[paired["optim.lr"] == 0.1])[0] == pc.INCONCLUSIVE
    # a second sweep under another schedule is judged apart, never pooled; the annealed one decides
    annealed = _precision_runs(tight, [a + j for a, j in zip(tight, jitter)]).assign(**{"schedule.name": "linear"})
    outcome, text = pc.check(pd.concat([paired.assign(**{"schedule.name": "constant"}), annealed]))
    assert outcome == pc.FAITHFUL and "| linear | bn | 0.1 | v2: paired over 5 seeds" in text
    # divergence disagrees at the high rate: not faithful, whatever the accuracies say
    assert pc.check(_precision_runs(tight, tight, {"bf16": 0, "fp32": 5}))[0] == pc.NOT_FAITHFUL
    # seeds 3 points apart, and so are the pairs: the intervals hold 0 but are wider than +-2
    noisy = [0.40, 0.44, 0.37, 0.43, 0.41]
    outcome, text = pc.check(_precision_runs([0.44, 0.37, 0.43, 0.40, 0.41], noisy))
    assert outcome == pc.INCONCLUSIVE and "seeds per arm would settle it" in text
