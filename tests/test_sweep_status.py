"""`bnstudy status SWEEP_DIR`: the planned grid from the sweep's multirun.yaml, each run's state."""
import json

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bnstudy import sweep_status
from bnstudy.analysis import results
from bnstudy.config import CONF_DIR
from bnstudy.runfolder import RunLock


def test_status_counts_the_grid_by_state_and_times_what_is_left(tmp_path):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["+exp=lr_sweep", "scale=smoke"], return_hydra_config=True)
    (tmp_path / "multirun.yaml").write_text(OmegaConf.to_yaml(cfg))
    for name, status, wall in (("norm=bn,optim.lr=0.1,seed=0", "completed", 600),
                               ("norm=none,optim.lr=3.2,seed=0", "diverged", 60),
                               ("norm=none,optim.lr=0.1,seed=0", "running", None)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({"status": status, "wall_time_s": wall}))
    with RunLock(tmp_path / "norm=none,optim.lr=0.1,seed=0"):  # the running one's process: this one
        runs, n_jobs = sweep_status.table(tmp_path)
    assert len(runs) == 3 * 2 and n_jobs == 1  # bn, none, skipinit x lr 0.1, 3.2 at smoke
    assert runs.status.value_counts().to_dict() == {"not started": 3, "completed": 1, "diverged": 1, "running": 1}
    assert set(runs.arm) == {"norm=bn", "norm=none", "norm=skipinit"}
    text = sweep_status.summarize(runs, n_jobs)
    assert "norm=bn 10.0 min" in text and "4 runs" in text


def test_run_folders_of_an_earlier_command_are_listed_apart(tmp_path):
    """A study's measuring command after its selection one: the selection runs stay visible,
    outside the plan and the time left."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["+exp=lr_sweep", "scale=smoke"], return_hydra_config=True)
    (tmp_path / "multirun.yaml").write_text(OmegaConf.to_yaml(cfg))
    (tmp_path / "norm=bn,optim.lr=0.4,seed=100").mkdir()  # not in the smoke grid
    (tmp_path / "norm=bn,optim.lr=0.4,seed=100" / "summary.json").write_text(json.dumps({"status": "completed"}))
    runs, n_jobs = sweep_status.table(tmp_path)
    assert runs.command.value_counts().to_dict() == {"last command": 6, "earlier": 1}
    text = sweep_status.summarize(runs, n_jobs)
    assert text.splitlines()[0].startswith("6 runs planned") and "1 run folders from earlier commands: 1 completed" in text


def test_a_run_killed_before_it_could_say_so_shows_as_interrupted(tmp_path):
    """summary.json still says "running" after a SIGKILL; the lock's holder tells the truth."""
    import os
    import signal
    import subprocess
    import sys

    from bnstudy.runfolder import lock_holder_alive

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["+exp=lr_sweep", "scale=smoke"], return_hydra_config=True)
    (tmp_path / "multirun.yaml").write_text(OmegaConf.to_yaml(cfg))
    killed, live, copied = (tmp_path / n for n in ("norm=bn,optim.lr=0.1,seed=0", "norm=bn,optim.lr=3.2,seed=0",
                                                   "norm=none,optim.lr=0.1,seed=0"))
    for folder in (killed, live, copied):
        folder.mkdir()
        (folder / "summary.json").write_text(json.dumps({"status": "running"}))
        name, lr, seed = (kv.split("=")[1] for kv in folder.name.split(","))  # distinct runs to `report`
        (folder / "config.yaml").write_text(json.dumps({"norm": {"name": name}, "optim": {"lr": float(lr)},
                                                        "seed": int(seed)}))
    hold = ("import sys, time; from pathlib import Path; from bnstudy.runfolder import RunLock\n"
            "with RunLock(Path(sys.argv[1])): print('held', flush=True); time.sleep(60)")
    procs = [subprocess.Popen([sys.executable, "-c", hold, str(f)], stdout=subprocess.PIPE, text=True)
             for f in (killed, live)]
    try:
        assert [p.stdout.readline().strip() for p in procs] == ["held", "held"]
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait()
        assert lock_holder_alive(killed) is False and lock_holder_alive(live) is True
        assert lock_holder_alive(copied) is False  # no lock file: copied here without its sweep
        runs, _ = sweep_status.table(tmp_path)
        status = runs.set_index("run").status
        assert status[killed.name] == "interrupted" and status[copied.name] == "interrupted"
        assert status[live.name] == "running"
        # the report reads the same: a dead run is left out as interrupted, not as running
        loaded = results.load([tmp_path]).runs.set_index("run").status
        assert loaded[killed.name] == "interrupted" and loaded[live.name] == "running"
    finally:
        for p in procs:
            p.kill()
            p.wait()
    # a holder on another host cannot be told from here: shown as it says
    (tmp_path / f".{live.name}.lock").write_text(json.dumps({"host": "elsewhere", "boot_id": "x", "pid": 1}))
    assert lock_holder_alive(live) is None
    assert sweep_status.table(tmp_path)[0].set_index("run").status[live.name] == "running"
