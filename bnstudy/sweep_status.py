"""`python -m bnstudy status SWEEP_DIR [--watch S]`: where a sweep stands, without reading folders by hand.

The grid comes from the sweep's own multirun.yaml (what its last command asked for, resolved
as Hydra resolved it), each job's folder from the same override_dirname rule Hydra used, and
each run's state from its summary.json: completed, diverged, failed, interrupted, running, or
not started; a run that says "running" but whose process is gone (killed with no chance to say
so: SIGKILL, a machine that restarted, a folder copied here) is shown as interrupted. The time left is the median wall time of the finished runs of each arm times the
runs still to go, over the launcher's parallel jobs.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
from hydra._internal.config_loader_impl import get_overrides_dirname
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from .config import _run_dirname, register_configs
from .runfolder import live_status

NOT_STARTED = "not started"


def planned_jobs(cfg: DictConfig) -> tuple[list[list[str]], dict]:
    """Each job's overrides as a sweep's command plans them, from its config with the hydra node
    (a sweep folder's multirun.yaml, or compose(..., return_hydra_config=True)), and the
    launcher's settings."""
    from hydra_plugins.bnstudy_sweeper.bnstudy_sweeper import arm_jobs

    register_configs()  # the resolvers the study files use (by_scale, ...)
    sweeper = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    task = list(cfg.hydra.overrides.task)
    parser = OverridesParser.create()
    params = dict(sweeper.get("params") or {})
    if sweeper.get("arms") and sweeper.get("phase") == "measure":
        params.update(sweeper.get("measure") or {})
    cli = parser.parse_overrides(task)
    cli_keys = {o.get_key_element() for o in cli}
    mine = parser.parse_overrides([f"{k}={v}" for k, v in params.items() if k not in cli_keys])
    if sweeper.get("arms"):
        jobs = arm_jobs(sweeper["arms"], mine, cli, sweeper.get("phase", "select"), sweeper.get("chosen") or {},
                        sweeper.get("rate_key", "optim.lr"))
    else:
        jobs = BasicSweeper.split_arguments(mine + cli, None)[0]
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True) if "launcher" in cfg.hydra else {}
    naming = OmegaConf.to_container(cfg.hydra.job.config.override_dirname, resolve=True)
    n_jobs = launcher.get("n_jobs") or 1
    return jobs, {"n_jobs": (os.cpu_count() or 1) if n_jobs < 0 else n_jobs, **naming}


def folder_of(job: list[str], naming: dict) -> str:
    """The run folder Hydra gave this job (hydra.sweep.subdir: run_dirname of override_dirname)."""
    overrides = OverridesParser.create().parse_overrides(job)
    name = get_overrides_dirname(overrides, list(naming.get("exclude_keys", [])), naming.get("item_sep", ","),
                                 naming.get("kv_sep", "="))
    return _run_dirname(name)


def table(sweep_dir: Path) -> tuple[pd.DataFrame, int]:
    """One row per planned job: its folder, arm (the job's overrides but rate and seed), status and
    wall time; and the launcher's parallel jobs."""
    multirun = Path(sweep_dir) / "multirun.yaml"
    if not multirun.exists():
        raise FileNotFoundError(f"{sweep_dir}: no multirun.yaml (not a sweep folder, or no sweep has started there)")
    jobs, naming = planned_jobs(OmegaConf.load(multirun))
    rows, planned = [], set()
    for job in jobs:
        folder = Path(sweep_dir) / folder_of(job, naming)
        planned.add(folder.name)
        arm = " ".join(o for o in job if not o.split("=")[0].lstrip("+") in ("seed", "optim.lr")
                       and o.split("=")[0].lstrip("+").split(".")[0] not in ("exp", "scale", "data"))
        rows.append(_row(folder, arm or "all", "last command"))
    # run folders an earlier command left here (a study's selection phase, say, before its measuring one)
    for folder in sorted(p for p in Path(sweep_dir).iterdir() if (p / "summary.json").exists() and p.name not in planned):
        rows.append(_row(folder, "—", "earlier"))
    return pd.DataFrame(rows), int(naming["n_jobs"])


def _row(folder: Path, arm: str, plan: str) -> dict:
    summary = {}
    if (folder / "summary.json").exists():
        try:
            summary = json.loads((folder / "summary.json").read_text())
        except (OSError, ValueError):
            summary = {"status": "unreadable"}
    wall = summary.get("wall_time_s")
    status = live_status(folder, summary.get("status", NOT_STARTED))
    return {"run": folder.name, "arm": arm, "status": status,
            "wall_min": wall / 60 if wall else float("nan"), "final_test_acc": summary.get("final_test_acc"),
            "command": plan}


def summarize(runs: pd.DataFrame, n_jobs: int) -> str:
    """The sweep in a few lines: runs by status, median wall per arm, time left at this pace (the
    last command's runs; those of earlier commands in one line)."""
    earlier = runs[runs.get("command", pd.Series("last command", index=runs.index)) == "earlier"]
    runs = runs.drop(earlier.index)
    counts = runs.status.value_counts()
    lines = [f"{len(runs)} runs planned: " + ", ".join(f"{n} {s}" for s, n in counts.items())]
    if len(earlier):
        lines.append(f"{len(earlier)} run folders from earlier commands: "
                     + ", ".join(f"{n} {s}" for s, n in earlier.status.value_counts().items()))
    done = runs[runs.status.isin(["completed", "diverged"])]
    per_arm = done.groupby("arm").wall_min.median()
    overall = done.wall_min.median()
    if len(per_arm):
        lines.append("median wall a run: " + ", ".join(f"{a} {m:.1f} min" for a, m in per_arm.items()))
    todo = runs[~runs.status.isin(["completed", "diverged"])]
    if len(todo) and pd.notna(overall):
        left = sum(per_arm.get(a, overall) for a in todo.arm) / max(n_jobs, 1)
        lines.append(f"time left at this pace: ~{left:.0f} min for {len(todo)} runs, {n_jobs} at a time "
                     "(running runs counted whole)")
    elif len(todo):
        lines.append(f"{len(todo)} runs to go; no finished run yet to time them by")
    return "\n".join(lines)


def main(args: list[str]) -> None:
    import argparse

    p = argparse.ArgumentParser(prog="python -m bnstudy status", description=__doc__.splitlines()[0])
    p.add_argument("sweep_dir", type=Path, metavar="SWEEP_DIR")
    p.add_argument("--watch", type=float, metavar="S", help="refresh every S seconds until every run is finished")
    a = p.parse_args(args)
    while True:
        runs, n_jobs = table(a.sweep_dir)
        print(runs.to_string(index=False, na_rep="—", float_format=lambda v: f"{v:.4g}"))
        print(summarize(runs, n_jobs))
        if not a.watch or not (runs.status == "running").any():  # done, or nothing left running to wait for
            return
        time.sleep(a.watch)
        print()
