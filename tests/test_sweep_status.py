"""`bnstudy status SWEEP_DIR`: the planned grid from the sweep's multirun.yaml, each run's state."""
import json

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bnstudy import sweep_status
from bnstudy.config import CONF_DIR


def test_status_counts_the_grid_by_state_and_times_what_is_left(tmp_path):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["+exp=lr_sweep", "scale=smoke"], return_hydra_config=True)
    (tmp_path / "multirun.yaml").write_text(OmegaConf.to_yaml(cfg))
    for name, status, wall in (("norm=bn,optim.lr=0.1,seed=0", "completed", 600),
                               ("norm=none,optim.lr=3.2,seed=0", "diverged", 60),
                               ("norm=none,optim.lr=0.1,seed=0", "running", None)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({"status": status, "wall_time_s": wall}))
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
