"""End to end through the command line, as a user runs it."""
import json
from pathlib import Path

import pytest

from conftest import EXPERIMENTS, run_cli


def summaries(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("summary.json"))]


@pytest.mark.slow
def test_default_run(tmp_path):
    r = run_cli(["run", f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (s,) = summaries(tmp_path)
    assert s["status"] == "completed" and s["final_test_acc"] > 0.1


@pytest.mark.slow
def test_overrides_reach_the_run(tmp_path):
    r = run_cli(["run", "norm=none", "optim.lr=0.05", "seed=1", "trainer.max_steps=4",
                 f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "run" / "config.yaml").read_text()
    assert "name: none" in text and "lr: 0.05" in text and "seed: 1" in text
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 4


@pytest.mark.slow
def test_every_study_runs_and_reports_at_smoke_scale(tmp_path):
    """One multirun of every study at smoke scale, as `reproduce` runs them (each study's sweep,
    then its report), in one process; tests/test_config.py checks every job's config in-process."""
    r = run_cli(["reproduce", "--scale", "smoke", "--runs", "runs", "--out", "out", "--studies", ",".join(EXPERIMENTS)],
                cwd=tmp_path, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    for exp in EXPERIMENTS:
        runs = summaries(tmp_path / "runs" / f"{exp}-smoke-synthetic")
        assert len(runs) >= 2, exp
        assert {s["status"] for s in runs} <= {"completed", "diverged"}, (exp, [s.get("error") for s in runs])
        for cfg_file in (tmp_path / "runs" / f"{exp}-smoke-synthetic").glob("*/config.yaml"):
            assert f"study: {exp}" in cfg_file.read_text()
        assert (tmp_path / "out" / exp / "report.md").exists() and (tmp_path / "out" / exp / "runs.csv").exists(), exp


@pytest.mark.slow
def test_lr_sweep_covers_the_grid(tmp_path):
    r = run_cli(["run", "+exp=lr_sweep", "scale=smoke", "trainer.max_steps=2",
                 f"hydra.sweep.dir={tmp_path}/sweep"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    import yaml
    cfgs = [yaml.safe_load(p.read_text()) for p in (tmp_path / "sweep").glob("*/config.yaml")]
    # norm=skipinit records norm.name none and model.skipinit: an arm of its own
    grid = {(c["norm"]["name"], c["model"]["skipinit"], c["optim"]["lr"]) for c in cfgs}
    lrs = sorted({lr for *_, lr in grid})
    assert {(n, skip) for n, skip, _ in grid} == {("bn", False), ("none", False), ("none", True)}
    assert lrs == [0.1, 3.2] and len(grid) == len(cfgs) == 3 * len(lrs)


@pytest.mark.slow
def test_missing_data_folder_is_one_line(tmp_path):
    r = run_cli(["run", "data=cifar10_folder", f"data.root={tmp_path}/nope", f"hydra.run.dir={tmp_path}/r"], cwd=tmp_path)
    assert r.returncode == 3
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("bnstudy: error: data.root=") and "Traceback" not in r.stderr


def test_run_help_lists_the_groups_a_user_picks_from(capsys):
    from bnstudy.cli import main
    main(["run", "--help"])
    groups = {line.split(":")[0].strip(): line.split(":", 1)[1].split(", ")
              for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    assert {"norm", "scale", "exp", "data"} <= set(groups)
    assert "medium" in [o.strip() for o in groups["scale"]]
    assert not any(o.strip().startswith("base_") for opts in groups.values() for o in opts)
