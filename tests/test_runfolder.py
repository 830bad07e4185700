import json
import subprocess
import sys

import pytest
import torch

from bnstudy.outputs import count_rows, truncate_rows
from bnstudy.runfolder import RunBusy, RunLock, claim


def write_run(d, status, config="a: 1\n", ckpt_step=None):
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text(config)
    (d / "summary.json").write_text(json.dumps({"status": status}))
    (d / "metrics.csv").write_text("step,epoch,metric,value\n1,0.1,train/loss,2.0\n")
    if ckpt_step is not None:
        torch.save({"step": ckpt_step, "model": {}, "optimizer": {}, "rng": {}, "rows": {}, "result": {},
                    "accum": {}, "step_in_epoch": 0}, d / "last.pt")


def test_fresh_folder(tmp_path):
    assert claim(tmp_path / "r", "a: 1\n").action == "fresh"


@pytest.mark.parametrize("status", ["completed", "diverged"])
def test_finished_runs_are_skipped_untouched(tmp_path, status):
    write_run(tmp_path / "r", status)
    before = (tmp_path / "r" / "metrics.csv").read_text()
    c = claim(tmp_path / "r", "a: 1\n")
    assert c.action == "skip" and c.summary["status"] == status
    assert (tmp_path / "r" / "metrics.csv").read_text() == before


def test_interrupted_run_with_checkpoint_resumes(tmp_path):
    write_run(tmp_path / "r", "running", ckpt_step=7)
    c = claim(tmp_path / "r", "a: 1\n")
    assert c.action == "resume" and c.checkpoint["step"] == 7


def test_failed_run_starts_over_keeping_the_old_files(tmp_path):
    write_run(tmp_path / "r", "failed", ckpt_step=3)
    c = claim(tmp_path / "r", "a: 1\n")
    assert c.action == "fresh" and not (tmp_path / "r" / "summary.json").exists()
    (old,) = (tmp_path / "r" / "attempts").iterdir()
    assert old.name.startswith("1-failed") and (old / "metrics.csv").exists() and (old / "last.pt").exists()


def test_rerun_and_changed_config_set_aside(tmp_path):
    write_run(tmp_path / "r", "completed")
    assert claim(tmp_path / "r", "a: 1\n", rerun=True).action == "fresh"
    write_run(tmp_path / "r", "completed")
    assert claim(tmp_path / "r", "a: 2\n").action == "fresh"
    assert len(list((tmp_path / "r" / "attempts").iterdir())) == 2


def test_checkpoint_of_an_older_format_starts_over(tmp_path):
    write_run(tmp_path / "r", "running")
    torch.save({"step": 3}, tmp_path / "r" / "last.pt")
    c = claim(tmp_path / "r", "a: 1\n")
    assert c.action == "fresh" and "unreadable" in c.note


def test_corrupt_checkpoint_starts_over(tmp_path):
    write_run(tmp_path / "r", "running")
    (tmp_path / "r" / "last.pt").write_bytes(b"not a checkpoint")
    c = claim(tmp_path / "r", "a: 1\n")
    assert c.action == "fresh" and "unreadable" in c.note


def test_truncate_rows_drops_rows_after_the_checkpoint_and_half_lines(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("step,epoch,metric,value\n1,0,a,1\n2,0,a,2\n3,0,a,3\n4,0,a")
    assert count_rows(p) == 4
    truncate_rows(p, 2)
    assert p.read_text() == "step,epoch,metric,value\n1,0,a,1\n2,0,a,2\n"
    truncate_rows(p, 5)
    assert count_rows(p) == 2


def test_lock_excludes_a_second_process_and_dies_with_its_holder(tmp_path):
    run_dir = tmp_path / "r"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from bnstudy.runfolder import RunLock\n"
        f"l = RunLock(r'{run_dir}').__enter__(); print('locked', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(RunBusy):
        RunLock(run_dir).__enter__()
    holder.kill()
    holder.wait()
    with RunLock(run_dir):  # SIGKILL released it
        pass


def test_same_config_ignores_location_and_new_keys():
    from bnstudy.runfolder import same_config
    old = "data:\n  root: /a\n  batch_size: 128\nseed: 0\n"
    assert same_config(old, "data:\n  root: /b\n  batch_size: 128\nseed: 0\nrerun: false\n")
    assert not same_config(old, "data:\n  root: /a\n  batch_size: 64\nseed: 0\n")


def test_analysis_ignores_set_aside_attempts(tmp_path):
    from bnstudy.analysis.results import find_run_dirs
    write_run(tmp_path / "sweep" / "r", "failed")
    claim(tmp_path / "sweep" / "r", "a: 1\n")  # moves the failed attempt to attempts/
    write_run(tmp_path / "sweep" / "r", "completed")
    assert find_run_dirs([tmp_path / "sweep"]) == [tmp_path / "sweep" / "r"]
