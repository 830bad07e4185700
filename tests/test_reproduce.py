"""`python -m bnstudy reproduce`: the plan it prints, one real smoke study end to end, and its failures."""
import os
import re
import shutil
import time

import pandas as pd
import pytest
import yaml

from bnstudy import provenance, reproduce
from bnstudy.claims import CLAIMS
from conftest import EXPERIMENTS, run_cli

REAL_DATA = ["data=cifar10_folder", "data.root=../shared/data/cifar10-jpeg"]


def dry_run(capsys, *args) -> list[str]:
    reproduce.main(["--scale", "cpu", "--runs", "/r", "--out", "res", "--dry-run", *args])
    return capsys.readouterr().out.splitlines()


def test_dry_run_lists_every_study_in_order_with_the_overrides(capsys):
    lines = dry_run(capsys, "--jobs", "2", *REAL_DATA)
    studies = [l[2:] for l in lines if l.startswith("# ")]
    # every study in the folder but precision; the claims' studies first, in the claims' order
    assert sorted(studies) == sorted(e for e in EXPERIMENTS if e != "precision")
    claimed = list(dict.fromkeys(c.STUDY for c in CLAIMS if c.STUDY in EXPERIMENTS))
    assert studies[:len(claimed)] == claimed and studies[len(claimed):] == sorted(studies[len(claimed):])
    assert len(lines) == 3 * len(studies)
    for i, s in enumerate(studies):
        run, report = lines[3 * i + 1], lines[3 * i + 2]
        assert run == (f"python -m bnstudy run +exp={s} scale=cpu hydra.sweep.dir=/r/{s}-cpu-cifar10_folder "
                       f"hydra/launcher=joblib hydra.launcher.n_jobs=2 {' '.join(REAL_DATA)}")
        assert report == f"python -m bnstudy report /r/{s}-cpu-cifar10_folder --out res/{s}"


def test_studies_named_run_in_the_order_given_precision_included(capsys):
    lines = dry_run(capsys, "--studies", "precision,inference")
    assert [l for l in lines if l.startswith("# ")] == ["# precision", "# inference"]
    assert "hydra.sweep.dir=/r/precision-cpu-synthetic" in lines[1]  # the default data


@pytest.mark.parametrize("args, message", [
    (["--studies", "inference,nope"], "--studies: no study 'nope'"),
    (["scale=full"], "scale=full: reproduce sets this itself"),
    (["--scale", "huge"], "--scale huge"),
])
def test_a_bad_command_line_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        reproduce.main(["--scale", "smoke", "--runs", str(tmp_path), "--out", str(tmp_path), *args])
    assert e.value.code == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(err) == 1 and err[0].startswith(f"bnstudy: error: {message}")
    assert not any(tmp_path.iterdir())


def test_a_failed_study_is_one_line_and_the_next_one_runs(tmp_path, capsys, monkeypatch):
    codes = {"regularization": 3, "inference": 0}
    ran, reported = [], []
    monkeypatch.setattr(reproduce, "run_sweep", lambda args, *_: ran.append(args[1]) or codes[args[1][5:]])
    monkeypatch.setattr(reproduce, "build_report", lambda sweep, out, *_: reported.append(out.name))
    monkeypatch.setattr(reproduce, "sweep_grid", lambda *_: None)
    monkeypatch.setattr(reproduce.provenance, "write_provenance", lambda *a: [])
    with pytest.raises(SystemExit) as e:
        reproduce.main(["--scale", "smoke", "--runs", str(tmp_path), "--out", str(tmp_path / "out"),
                        "--studies", "regularization,inference"])
    assert e.value.code == 1 and ran == ["+exp=regularization", "+exp=inference"] and reported == ["inference"]
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert err == [f"bnstudy: error: regularization failed: the sweep exited with code 3 (its error is above); "
                   f"{tmp_path / 'out' / 'regularization'} left as it was"]

    codes["regularization"] = 130  # interrupted: stop there
    ran.clear()
    with pytest.raises(SystemExit) as e:
        reproduce.main(["--scale", "smoke", "--runs", str(tmp_path), "--out", str(tmp_path / "out"),
                        "--studies", "regularization,inference"])
    assert e.value.code == 130 and ran == ["+exp=regularization"]


def test_the_grid_is_the_noted_folders_and_any_written_during_the_sweep(tmp_path, capsys):
    """A run folder noted by the sweep counts, and so does one written since the sweep started
    that did not note itself (with a warning); an older folder the sweep did not note does not."""
    from bnstudy.runfolder import note_in_sweep

    sweep = tmp_path / "sweep"
    for name in ("noted", "old", "unnoted_new"):
        (sweep / name).mkdir(parents=True)
        (sweep / name / "summary.json").write_text("{}")
    past = time.time() - 100
    os.utime(sweep / "noted" / "summary.json", (past, past))
    os.utime(sweep / "old" / "summary.json", (past, past))
    lists = sweep / "sweep-lists" / "1"
    note_in_sweep(sweep / "noted", lists)
    keep = reproduce.sweep_grid(lists, sweep, started=time.time() - 10)
    assert keep == {(sweep / "noted").resolve(), (sweep / "unnoted_new").resolve()}
    assert "unnoted_new was written by this sweep but not noted" in capsys.readouterr().err
    assert reproduce.sweep_grid(sweep / "sweep-lists" / "none", sweep, started=0.0) is None  # nothing noted
    assert "the report reads every folder" in capsys.readouterr().err


def test_provenance_counts_commits_statuses_and_wall_time(tmp_path):
    rows = [{"git_commit": "aaa", "bnstudy_version": "0.2.0", "status": "completed", "wall_time_s": 10.0,
             "data.name": "cifar10_folder", "data.train_subset": 10000, "hostname": "vm", "written": 5.0},
            {"git_commit": "aaa", "bnstudy_version": "0.2.0", "status": "completed", "wall_time_s": 20.0,
             "data.name": "cifar10_folder", "data.train_subset": 10000, "hostname": "vm", "written": 50.0},
            {"git_commit": "bbb-dirty", "bnstudy_version": "0.2.0", "status": "failed", "wall_time_s": 60.0,
             "data.name": "cifar10_folder", "data.train_subset": 10000, "hostname": "vm", "written": 60.0}]
    p = reproduce.plan("inference", "cpu", tmp_path / "runs", tmp_path / "out", REAL_DATA)
    md = provenance.provenance_md(rows, p, "python -m bnstudy reproduce ...", sweep_wall_s=75.0, started=40.0)
    assert "| aaa | 0.2.0 | 2 |" in md and "| bbb-dirty | 0.2.0 | 1 |" in md
    assert "| completed | 2 |" in md and "| failed | 1 |" in md
    assert "| cifar10_folder |  | 10000 |" in md
    assert "90.0 s in all, median 20.0 s a run" in md
    assert "sweep step: 75.0 s (2 runs written by it, 1 already finished before it)" in md
    assert f"hydra.sweep.dir={tmp_path}/runs/inference-cpu-cifar10_folder data=cifar10_folder" in md


def test_provenance_shows_the_sweep_as_status_does(tmp_path):
    """provenance.md's grid section is `status`'s table: the last command's runs by arm and state."""
    import json

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from bnstudy.config import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["+exp=lr_sweep", "scale=smoke"], return_hydra_config=True)
    (tmp_path / "multirun.yaml").write_text(OmegaConf.to_yaml(cfg))
    for name, status in (("norm=bn,optim.lr=0.1,seed=0", "completed"), ("norm=none,optim.lr=3.2,seed=0", "diverged")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({"status": status, "wall_time_s": 60.0}))
    md = provenance.sweep_status_md(tmp_path)
    rows = {tuple(c.strip() for c in line.strip("|").split("|")) for line in md.splitlines() if line.startswith("| norm")}
    assert rows == {("norm=bn", "completed", "1"), ("norm=bn", "not started", "1"), ("norm=none", "diverged", "1"),
                    ("norm=none", "not started", "1"), ("norm=skipinit", "not started", "2")}
    assert "    6 runs planned: 4 not started, 1 completed, 1 diverged" in md
    assert provenance.sweep_status_md(tmp_path / "nowhere") is None


# one run of ResNet-20, two steps, on a small synthetic set: ~15 s on 2 busy cores
TINY = ["norm=bn", "model.dropout=0.0", "trainer.max_steps=2", "data.synthetic_train_size=256",
        "data.synthetic_test_size=100", "data.train_subset=null", "data.test_subset=null", "data.batch_size=32"]


@pytest.mark.slow
def test_smoke_reproduce_writes_report_and_provenance_then_resumes(tmp_path):
    args = ["reproduce", "--scale", "smoke", "--runs", "runs", "--out", "out", "--studies", "regularization", *TINY]
    r = run_cli(args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "out" / "regularization"
    (summary,) = (tmp_path / "runs" / "regularization-smoke-synthetic").glob("*/summary.json")
    commit = re.search(r'"git_commit": "([^"]+)"', summary.read_text()).group(1)
    prov = (out / "provenance.md").read_text()
    assert (out / "report.md").exists() and (out / "runs.csv").exists()
    assert f"| {commit} | " in prov and "| completed | 1 |" in prov
    assert "(1 run written by it, 0 already finished before it)" in prov
    grid = prov.split("## The sweep's grid, by `status`")[1]  # the sweep as `status` shows it
    assert "| completed | 1 |" in grid and "1 runs planned: 1 completed" in grid
    assert "python -m bnstudy reproduce " + " ".join(args[1:]) in prov

    (out / "README.md").write_text("written by hand\n")
    # a finished run that the study's grid no longer holds (as if a rate had been dropped from it)
    stale = summary.parent.parent / "optim.lr=9.9,seed=0"
    shutil.copytree(summary.parent, stale)
    config = yaml.safe_load((stale / "config.yaml").read_text())
    config["optim"]["lr"] = 9.9  # a config of its own, not a repeat of the kept run
    (stale / "config.yaml").write_text(yaml.safe_dump(config))
    mtime = summary.stat().st_mtime
    t0 = time.perf_counter()
    r = run_cli(args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "skipped" in r.stdout + r.stderr and summary.stat().st_mtime == mtime
    assert time.perf_counter() - t0 < 30
    assert (out / "README.md").read_text() == "written by hand\n"
    prov = (out / "provenance.md").read_text()
    assert "(0 runs written by it, 1 already finished before it)" in prov
    assert "1 run folder under" in prov and "- `optim.lr=9.9,seed=0`" in prov, prov
    assert len(pd.read_csv(out / "runs.csv")) == 1  # the stale folder is not in the report's tables
    report = (out / "report.md").read_text()
    assert "optim.lr=9.9,seed=0" in report and "not in this sweep's grid" in report
    assert (stale / "summary.json").exists()  # and its files are kept
    # the report command provenance.md gives rebuilds the same tables, by hand
    report_cmd = re.search(r"python -m bnstudy (report .* --sweep-list \S+)", prov).group(1).split()
    r = run_cli([*report_cmd[:2], "--out", "by_hand", *report_cmd[4:]], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(pd.read_csv(tmp_path / "by_hand" / "runs.csv")) == 1
