"""trainer.precision: what auto resolves to, that a run records what it trained in, that bf16 pinned
where it is only emulated is refused before training, and that `report` keeps a study to one precision."""
import json

import pytest
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


@pytest.mark.slow
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


# ---------------------------------------------------------------- bf16 pinned where it is only emulated

EMULATED = ("bnstudy: error: trainer.precision='bf16' is not allowed: this CPU does not compute bf16 natively "
            "(no AVX512-BF16 or AMX; emulated bf16 is ~10x slower than fp32); use trainer.precision=fp32 or auto "
            "on this machine")


def _hydra_config(overrides):
    """The config a Hydra callback sees (its hydra node included), composed in-process."""
    from hydra import compose, initialize_config_dir

    from bnstudy.config import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def _refused(capsys, call) -> str:
    with pytest.raises(SystemExit) as e:
        call()
    assert e.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_bf16_is_refused_where_only_emulated_and_auto_falls_back(monkeypatch):
    from bnstudy.validation import ConfigError

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    with pytest.raises(ConfigError) as e:
        precision.require_native("bf16", cpu, "lr_sweep")
    assert f"bnstudy: error: {e.value}" == EMULATED
    for requested in ("auto", "fp32"):
        precision.require_native(requested, cpu, "lr_sweep")
    precision.require_native("bf16", cpu, "precision")  # measures bf16's numbers, not its speed
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    precision.require_native("bf16", cpu, "lr_sweep")


def test_a_bf16_study_refuses_before_its_first_job(tmp_path, monkeypatch, capsys):
    from bnstudy.preflight import Preflight

    overrides = ["+exp=lr_sweep", "scale=medium", "device=cpu", f"hydra.sweep.dir={tmp_path}/sweep"]
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert _refused(capsys, lambda: Preflight().on_multirun_start(_hydra_config(overrides))) == EMULATED
    assert not (tmp_path / "sweep").exists()
    # a job of a swept group (scale=cpu,medium) is checked as it starts, with its whole config
    assert _refused(capsys, lambda: Preflight().on_job_start(_hydra_config(overrides))) == EMULATED
    # the precision study sweeps bf16 against fp32 on purpose, wherever it runs
    Preflight().on_multirun_start(_hydra_config(["+exp=precision", "scale=smoke", "device=cpu",
                                                 f"hydra.sweep.dir={tmp_path}/precision"]))
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    Preflight().on_multirun_start(_hydra_config(overrides))
    assert (tmp_path / "sweep").is_dir()  # the writable check, after the precision passed


def test_a_swept_bf16_value_and_a_single_bf16_run_refuse(tmp_path, monkeypatch, capsys):
    from bnstudy.preflight import Preflight, check_sweep_values

    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    base = _hydra_config(["+exp=lr_sweep", "scale=cpu", "device=cpu", f"hydra.sweep.dir={tmp_path}/sweep"])
    assert _refused(capsys, lambda: check_sweep_values(base, {"trainer.precision": "fp32,bf16"})) == EMULATED
    check_sweep_values(base, {"trainer.precision": "fp32,bf16"}, here=False)  # jobs on other machines check there
    single = _hydra_config(["trainer.precision=bf16", "device=cpu", f"hydra.run.dir={tmp_path}/r"])
    assert _refused(capsys, lambda: Preflight().on_run_start(single)) == EMULATED
    assert not (tmp_path / "r").exists()


def test_run_refuses_bf16_before_touching_its_folder(tmp_path, monkeypatch, tiny_overrides):
    from bnstudy.validation import ConfigError
    from bnstudy.run import run
    from conftest import compose_config

    cfg = compose_config([*tiny_overrides, "trainer.precision=bf16", "device=cpu"])
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    with pytest.raises(ConfigError, match="does not compute bf16 natively"):
        run(cfg, tmp_path / "r")
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- report: one precision a study

def _runs_in(precisions, study="lr_sweep"):
    import pandas as pd

    return pd.DataFrame([{"study": study, "scale.name": "medium", "data.name": "cifar10_folder", "precision": p,
                          "seed": s} for s, p in enumerate(precisions)])


def test_mixed_precisions_within_a_study_are_named_with_counts():
    import pandas as pd

    from bnstudy.analysis.cells import mixed_precisions

    assert mixed_precisions(_runs_in(["bf16"] * 12 + ["fp32"] * 3)) == [
        "lr_sweep at scale=medium on data=cifar10_folder mixes precisions (bf16: 12 runs, fp32: 3 runs); "
        "report them separately (a study compares its arms in one precision)"]
    assert mixed_precisions(_runs_in(["bf16", "fp32"] * 3, study="precision")) == []  # compared on purpose
    assert mixed_precisions(_runs_in(["bf16"] * 4)) == []
    # runs from before the field: unknown, not a precision of their own
    assert mixed_precisions(_runs_in(["bf16", "bf16", None, float("nan")])) == []
    assert mixed_precisions(_runs_in(["fp32"] * 2).drop(columns="precision")) == []
    # one precision per scale is fine: the report compares within one scale and data set
    other_scale = _runs_in(["fp32"] * 2).assign(**{"scale.name": "cpu"})
    assert mixed_precisions(pd.concat([_runs_in(["bf16"] * 2), other_scale])) == []


def test_report_refuses_runs_in_two_precisions(tmp_path, capsys):
    from bnstudy.cli import main
    from test_claims import row
    from test_report import write_run

    for i, p in enumerate(("bf16", "bf16", "fp32")):
        folder = tmp_path / "sweep" / str(i)
        write_run(folder, row("lr_sweep", "bn", i, 0.7, **{"optim.lr": 0.1, "scale.name": "medium"}))
        summary = json.loads((folder / "summary.json").read_text())
        (folder / "summary.json").write_text(json.dumps({**summary, "precision": p}))
    with pytest.raises(SystemExit) as e:
        main(["report", str(tmp_path / "sweep"), "--out", str(tmp_path / "out")])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "bnstudy: error: lr_sweep at scale=medium on data=synthetic mixes precisions (bf16: 2 runs, fp32: 1 run); "
        "report them separately (a study compares its arms in one precision)"]
    assert not (tmp_path / "out").exists()
    summary = json.loads((tmp_path / "sweep" / "2" / "summary.json").read_text())
    (tmp_path / "sweep" / "2" / "summary.json").write_text(json.dumps({**summary, "precision": "bf16"}))
    main(["report", str(tmp_path / "sweep"), "--out", str(tmp_path / "out")])  # one precision: reported
    assert (tmp_path / "out" / "report.md").exists()
