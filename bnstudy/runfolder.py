"""A run folder's life across restarts: skip it when finished, resume it when cut short,
start it afresh when it failed, and never let two processes work in it at once.

Hydra does not resume a multirun, so bnstudy does it per run: a study's run folders are
named by their overrides (bnstudy/conf/config.yaml), and `claim` decides what to do with one.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from .config import NOT_THE_EXPERIMENT
from .outputs import flatten

FINISHED = ("completed", "diverged")  # a diverged run is a result; running/failed/interrupted are not (yet)

CHECKPOINT_KEYS = {"step", "model", "optimizer", "rng", "rows", "result", "accum", "step_in_epoch"}
RUN_FILES = ("summary.json", "metrics.csv", "probes.csv", "last.pt", "config.yaml")


class RunBusy(RuntimeError):
    """Another live process holds this run folder."""


@dataclass
class Claim:
    action: str  # skip | resume | fresh
    summary: Optional[dict[str, Any]] = None  # the finished run's summary (skip)
    checkpoint: Optional[dict[str, Any]] = None  # resume from this state
    note: str = ""


def read_summary(run_dir: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None


class RunLock:
    """An exclusive, non-blocking flock beside the run folder; the kernel drops it when the
    process dies (SIGKILL included), so a killed run never leaves a stale lock. The holder
    writes who it is (host, boot, pid) into the lock file, for `lock_holder_alive`."""

    def __init__(self, run_dir: Path):
        run_dir = Path(run_dir)
        self.path = run_dir.parent / f".{run_dir.name}.lock"
        self._fd: Optional[int] = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise RunBusy(f"{self.path.parent} is being worked on by another process") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(_me()).encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _me() -> dict[str, Any]:
    boot = Path("/proc/sys/kernel/random/boot_id")
    return {"host": os.uname().nodename, "boot_id": boot.read_text().strip() if boot.exists() else None,
            "pid": os.getpid()}


def lock_holder_alive(run_dir: Path) -> Optional[bool]:
    """Whether the process that last took `run_dir`'s lock still lives: False when it ran on
    this machine (same host, same boot) and is gone, or this machine has restarted since, or the
    lock file is missing (a folder copied here without its sweep); True when it lives; None
    when it cannot be told from here (another host, or a lock file without a holder). A run in
    a container that shares this host's name but not its process ids reads as gone: `status`
    should run where the runs do."""
    path = Path(run_dir).parent / f".{Path(run_dir).name}.lock"
    try:
        holder = json.loads(path.read_text() or "null")
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return None
    me = _me()
    if not isinstance(holder, dict) or holder.get("host") != me["host"]:
        return None
    if holder.get("boot_id") != me["boot_id"]:
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (KeyError, TypeError, ValueError):  # a holder without a usable pid
        return None
    return True


def live_status(run_dir: Path, status: str) -> str:
    """A run's status as its summary.json gives it, except that "running" reads "interrupted" when
    the process that held the run is gone (lock_holder_alive: killed before it could say so, a
    machine that restarted, a folder copied here). `status` and `report` both read runs so."""
    if status == "running" and lock_holder_alive(run_dir) is False:
        return "interrupted"
    return status


def note_in_sweep(run_dir: Path, sweep_list: Path) -> None:
    """Note `run_dir` as one of this sweep's runs (config `sweep_list`, set by reproduce): an
    empty file named after the run folder in the `sweep_list` folder. One file per run, so runs
    on several processes or machines never write to the same file, and the name is relative to
    the sweep folder, so it reads the same wherever that folder is mounted."""
    Path(sweep_list).mkdir(parents=True, exist_ok=True)
    (Path(sweep_list) / Path(run_dir).name).touch()


def swept_folders(sweep_list: Path, sweep_dir: Path) -> set[Path]:
    """The run folders under `sweep_dir` that a sweep noted in `sweep_list` (note_in_sweep);
    empty when it noted none."""
    if not Path(sweep_list).is_dir():
        return set()
    return {Path(sweep_dir) / f.name for f in Path(sweep_list).iterdir()}


def set_aside(run_dir: Path, reason: str) -> Optional[Path]:
    """Move an earlier attempt's files into run_dir/attempts/<n>-<reason>/ (nothing is deleted)."""
    present = [f for f in RUN_FILES if (run_dir / f).exists()]
    if not present:
        return None
    attempts = run_dir / "attempts"
    n = len(list(attempts.glob("*"))) + 1 if attempts.exists() else 1
    dest = attempts / f"{n}-{reason}-{time.strftime('%Y%m%d-%H%M%S')}"
    dest.mkdir(parents=True)
    for f in present:
        shutil.move(str(run_dir / f), str(dest / f))
    return dest


def same_config(old_text: str, new_text: str) -> bool:
    """Whether two resolved configs describe the same run: equal on every key both have,
    ignoring the keys that are NOT_THE_EXPERIMENT. Keys added to the schema since the old run
    do not count."""
    import yaml

    try:
        a, b = flatten(yaml.safe_load(old_text) or {}), flatten(yaml.safe_load(new_text) or {})
    except yaml.YAMLError:
        return False
    return all(a[k] == b[k] for k in a.keys() & b.keys() if k not in NOT_THE_EXPERIMENT)


def claim(run_dir: Path, config_text: str, rerun: bool = False) -> Claim:
    """Decide what to do with `run_dir` for a run of `config_text` (call under RunLock)."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    old_config = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").exists() else None
    if summary is None and old_config is None and not (run_dir / "metrics.csv").exists():
        return Claim("fresh")
    status = (summary or {}).get("status")
    if rerun:
        set_aside(run_dir, "replaced")
        return Claim("fresh", note="rerun=true: the earlier attempt was moved to attempts/")
    if old_config is not None and not same_config(old_config, config_text):
        set_aside(run_dir, "other-config")
        return Claim("fresh", note="the folder held a run of a different config: moved to attempts/")
    if status in FINISHED:
        return Claim("skip", summary=summary)
    ckpt_path = run_dir / "last.pt"
    if status != "failed" and ckpt_path.exists():
        try:
            ckpt = torch.load(ckpt_path, weights_only=True)
            missing = CHECKPOINT_KEYS - set(ckpt)
            if missing:
                raise KeyError(f"no {', '.join(sorted(missing))}")
            return Claim("resume", checkpoint=ckpt, note=f"resuming from step {ckpt['step']}")
        except Exception as e:  # an unreadable checkpoint: start over, keeping the old files
            set_aside(run_dir, "bad-checkpoint")
            return Claim("fresh", note=f"unreadable last.pt ({type(e).__name__}): starting over")
    set_aside(run_dir, status or "incomplete")
    return Claim("fresh", note=f"earlier attempt ({status or 'incomplete'}) moved to attempts/")
