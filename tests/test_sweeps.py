"""Sweeps that survive: skip finished runs, resume killed ones exactly, parallel launchers,
and bad input handled without losing finished work."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli

TINY = ["model.depth=8", "data.batch_size=32", "data.synthetic_train_size=640", "data.synthetic_test_size=100",
        "data.train_subset=null", "data.test_subset=null", "trainer.log_every=2", "probes.activations.every=6",
        "probes.gradients.every=3"]


def sweep_args(sweep_dir, *extra):
    return ["run", "-m", "study=killtest", "optim.lr=0.02,0.05,0.1", "trainer.max_steps=30", "trainer.epochs=2",
            "trainer.checkpoint_every=5", *TINY, *extra, f"hydra.sweep.dir={sweep_dir}"]


def runs(sweep_dir: Path) -> dict[float, Path]:
    """The sweep's run folders by learning rate (long override lists make hashed folder names)."""
    import yaml
    return {yaml.safe_load((p.parent / "config.yaml").read_text())["optim"]["lr"]: p.parent
            for p in sweep_dir.glob("*/summary.json")}


def status(run_dir: Path) -> str:
    return json.loads((run_dir / "summary.json").read_text())["status"]


@pytest.mark.slow
def test_sigkilled_sweep_resumes_without_retraining_or_duplicating(tmp_path):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "bnstudy", *sweep_args(killed)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    try:  # kill -9 once the second run has a mid-run checkpoint and has gone past it
        while time.time() < deadline:
            second = runs(killed).get(0.05) if killed.exists() else None
            if second and (second / "last.pt").exists() and (second / "metrics.csv").exists():
                if pd.read_csv(second / "metrics.csv").step.max() >= 12:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the sweep never reached the second run")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    first = runs(killed)[0.02]
    assert status(first) == "completed" and status(second) == "running"
    first_bytes = (first / "metrics.csv").read_bytes()
    first_mtime = (first / "summary.json").stat().st_mtime_ns

    r = run_cli(sweep_args(killed), cwd=tmp_path)  # the same command again
    assert r.returncode == 0, r.stderr[-2000:]
    assert (first / "metrics.csv").read_bytes() == first_bytes  # not retrained
    assert (first / "summary.json").stat().st_mtime_ns == first_mtime
    assert all(status(d) == "completed" for d in runs(killed).values()) and len(runs(killed)) == 3
    assert json.loads((second / "summary.json").read_text())["resumed_from_step"] >= 5

    ref = tmp_path / "reference"  # the same sweep, never interrupted
    r = run_cli(sweep_args(ref), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    for name, d in runs(ref).items():
        for table in ("metrics.csv", "probes.csv"):
            a, b = pd.read_csv(runs(killed)[name] / table), pd.read_csv(d / table)
            assert not a.duplicated(["step", "metric"]).any(), (name, table)
            pd.testing.assert_frame_equal(a, b, check_exact=True, obj=f"{name}/{table}")


@pytest.mark.slow
def test_finished_runs_are_skipped_and_rerun_recomputes(tmp_path):
    args = ["run", "-m", "study=skiptest", "optim.lr=0.05,0.1", "trainer.max_steps=4", *TINY,
            f"hydra.sweep.dir={tmp_path}/s"]
    assert run_cli(args, cwd=tmp_path).returncode == 0
    before = {n: (d / "metrics.csv").read_bytes() for n, d in runs(tmp_path / "s").items()}
    r = run_cli(args, cwd=tmp_path)
    assert r.returncode == 0 and r.stderr.count("skipped") + r.stdout.count("skipped") >= 2
    assert {n: (d / "metrics.csv").read_bytes() for n, d in runs(tmp_path / "s").items()} == before
    r = run_cli(args + ["rerun=true"], cwd=tmp_path)
    assert r.returncode == 0
    for d in runs(tmp_path / "s").values():
        assert (d / "attempts").is_dir() and status(d) == "completed"


@pytest.mark.slow
def test_joblib_launcher_runs_two_jobs_with_their_share_of_threads(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    r = run_cli(["run", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "study=joblibtest",
                 "optim.lr=0.05,0.1", "trainer.max_steps=4", *TINY, f"hydra.sweep.dir={tmp_path}/s"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    found = runs(tmp_path / "s")
    assert len(found) == 2 and all(status(d) == "completed" for d in found.values())
    cores = os.cpu_count() or 1
    for d in found.values():
        name = json.loads((d / "summary.json").read_text())["device_name"]
        assert f"{max(1, cores // 2)} threads" in name, name


@pytest.mark.slow
def test_submitit_local_launcher(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    r = run_cli(["run", "-m", "hydra/launcher=local", "study=submitittest", "optim.lr=0.05,0.1",
                 "trainer.max_steps=4", *TINY, f"hydra.sweep.dir={tmp_path}/s"], cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    found = runs(tmp_path / "s")
    assert len(found) == 2 and all(status(d) == "completed" for d in found.values())
    for d in found.values():  # torch's threads follow the job's cpus_per_task (1 in the local preset)
        assert " 1 threads" in json.loads((d / "summary.json").read_text())["device_name"]


@pytest.mark.slow
def test_unwritable_output_folder_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("")
    r = run_cli(["run", f"hydra.run.dir={tmp_path}/afile/run"], cwd=tmp_path)
    assert r.returncode == 3 and "Traceback" not in r.stderr
    assert [l for l in r.stderr.splitlines() if l.strip()] == [
        f"bnstudy: error: cannot write the output folder {tmp_path}/afile/run: Not a directory"]


@pytest.mark.slow
def test_bad_sweep_value_fails_before_any_training(tmp_path):
    r = run_cli(["run", "-m", "optim.lr=0.1,0.05,-1", f"hydra.sweep.dir={tmp_path}/s"], cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == "bnstudy: error: optim.lr=-1.0 is not allowed: must be > 0"
    assert not list((tmp_path / "s").glob("*/metrics.csv"))


@pytest.mark.slow
@pytest.mark.parametrize("override, expected", [
    ("optim.lrr=3", "bnstudy: error: optim.lrr: no such key"),
    ("data.batch_size=abc", "bnstudy: error: data.batch_size=abc: Value 'abc'"),
    ("optim.lr=nan", "bnstudy: error: optim.lr=nan is not allowed: must be a finite number > 0"),
])
def test_wrong_overrides_are_one_line(tmp_path, override, expected):
    r = run_cli(["run", override], cwd=tmp_path)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith(expected), r.stderr


# The run as `python -m bnstudy`, except that at step 12 (after the checkpoint at step 10) it
# says so in a file and waits: the test's SIGINT is what ends the wait, however busy the machine.
PAUSED_RUN = """
import sys, time
from pathlib import Path
import bnstudy.train as train
marker, lr_at = Path(sys.argv[1]), train.lr_at
def paused(step, *a, **kw):
    if step == 12 and not marker.exists():
        marker.write_text("at step 12")
        time.sleep(600)
    return lr_at(step, *a, **kw)
train.lr_at = paused
from bnstudy.cli import main
main(sys.argv[2:])
"""


@pytest.mark.slow
def test_ctrl_c_keeps_finished_work_and_resumes(tmp_path):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    args = ["run", "trainer.max_steps=200", "trainer.epochs=10", "trainer.checkpoint_every=5", *TINY,
            f"hydra.run.dir={tmp_path}/r"]
    marker = tmp_path / "paused"
    # a shell without job control starts background jobs (`pytest ... &`) with SIGINT ignored, and a
    # child inherits that (Python then never raises KeyboardInterrupt): give the run Ctrl-C's default
    proc = subprocess.Popen([sys.executable, "-c", PAUSED_RUN, str(marker), *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)  # generous: the interrupted run only writes its status
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("bnstudy: error: interrupted")
    assert status(tmp_path / "r") == "interrupted"
    r = run_cli(args, cwd=tmp_path)
    assert r.returncode == 0 and status(tmp_path / "r") == "completed"
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["resumed_from_step"] == 10
    m = pd.read_csv(tmp_path / "r" / "metrics.csv")
    assert not m.duplicated(["step", "metric"]).any() and m.step.max() == 200


def test_a_full_disk_leaves_no_half_written_file(tmp_path, monkeypatch):
    import errno

    from bnstudy import outputs

    target = tmp_path / "summary.json"
    outputs.atomic_write_json(target, {"status": "completed"})

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs.os, "fsync", no_space)
    with pytest.raises(OSError):
        outputs.atomic_write_json(target, {"status": "running"})
    assert json.loads(target.read_text()) == {"status": "completed"}  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # no temporary left behind


def test_commit_is_dirty_only_when_the_package_differs(tmp_path):
    """A run records '-dirty' for changed or unknown files in the package it runs, not for a
    report that `reproduce` wrote into results/ of the same clean clone."""
    from bnstudy.outputs import git_commit

    git = lambda *a: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a],  # noqa: E731
                                    cwd=tmp_path, check=True, capture_output=True)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "results" / "report.md").write_text("old\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "c")
    sha = git("rev-parse", "HEAD").stdout.decode().strip()
    (tmp_path / "results" / "report.md").write_text("rebuilt\n")
    assert git_commit(tmp_path / "pkg") == sha
    (tmp_path / "pkg" / "b.yaml").write_text("new: 1\n")
    assert git_commit(tmp_path / "pkg") == sha + "-dirty"
    (tmp_path / "pkg" / "b.yaml").unlink()
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert git_commit(tmp_path / "pkg") == sha + "-dirty"


@pytest.mark.slow
def test_select_then_measure_runs_each_arm_at_its_chosen_rate_on_fresh_seeds(tmp_path):
    """The two phases of a medium study, on lr_sweep's smoke grid (0.1, 3.2): select on seed 100,
    `select` reads the choice, then phase=measure runs each arm at its chosen rate on seed 0."""
    sweep = tmp_path / "sweep"
    base = ["run", "+exp=lr_sweep", "scale=smoke", "scale.selection_seeds=100", *TINY, "trainer.max_steps=6",
            f"hydra.sweep.dir={sweep}"]
    r = run_cli([*base, "seed=100", "norm=bn,none"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli(["select", str(sweep)], cwd=tmp_path)
    assert r.returncode == 0 and "selection seeds 100" in r.stdout, r.stdout + r.stderr
    # two rates: the best is at an edge, so `select` asks for a wider grid before measuring
    assert "not chosen inside their grid" in r.stdout
    r = run_cli([*base, "hydra.sweeper.phase=measure", "hydra.sweeper.chosen={bn: 0.1, none: 3.2, skipinit: 0.1}",
                 "norm=bn,none"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    import yaml
    cfgs = [yaml.safe_load((p.parent / "config.yaml").read_text()) for p in sweep.glob("*/summary.json")]
    ran = {(c["norm"]["name"], c["optim"]["lr"], c["seed"]) for c in cfgs}
    assert ran == {("bn", 0.1, 100), ("bn", 3.2, 100), ("none", 0.1, 100), ("none", 3.2, 100),
                   ("bn", 0.1, 0), ("none", 3.2, 0)}
    r = run_cli(["run", "+exp=lr_sweep", "scale=smoke", *TINY, f"hydra.sweep.dir={sweep}", "hydra.sweeper.phase=measure"],
                cwd=tmp_path)
    assert r.returncode != 0 and "no chosen rate for arm(s) bn, none, skipinit" in r.stderr
