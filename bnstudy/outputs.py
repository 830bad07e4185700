"""Per-run outputs: the public contract that analysis, tests and users read.

In each run folder: `config.yaml` (resolved config), `metrics.csv` (tidy long format:
step, epoch, metric, value), `probes.csv` (the same format: the rows of bnstudy/probes/,
step t measured at the weights after t updates), `summary.json` (status, results, provenance) and
`last.pt` (a checkpoint loadable with torch.load(..., weights_only=True)).
Every whole-file write goes through a temporary file and a rename.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import torch

METRIC_COLUMNS = ("step", "epoch", "metric", "value")
_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    _atomic(path, lambda f: f.write(text.encode()))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_torch_save(obj: Any, path: Path) -> None:
    _atomic(path, lambda f: torch.save(obj, f))


def flatten(d: dict, prefix: str = "") -> dict:
    """{'optim': {'lr': 0.1}} -> {'optim.lr': 0.1}; lists become their JSON text (a config
    or summary as one row: the report's runs table, a run folder's comparison, HParams)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, list):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


def count_rows(path: Path) -> int:
    """Data rows (lines after the header) of a metrics file; 0 if absent."""
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return max(sum(1 for _ in f) - 1, 0)


def truncate_rows(path: Path, rows: int) -> None:
    """Keep the header and the first `rows` data rows: what was logged up to a checkpoint."""
    if not path.exists():
        return
    with open(path, "rb") as f:
        lines = f.readlines()
    keep = lines[:rows + 1]
    if len(keep) == len(lines) and (not keep or keep[-1].endswith(b"\n")):
        return
    if keep and not keep[-1].endswith(b"\n"):  # a half-written last row from a kill
        keep = keep[:-1]
    atomic_write_text(path, b"".join(keep).decode())


class MetricsLog:
    """Appends tidy rows (step, epoch, metric, value) to metrics.csv, flushed per call; `tee`,
    if given, gets the same rows of each call (the TensorBoard event log)."""

    def __init__(self, path: Path, tee: Optional[Callable[[list], None]] = None):
        self.tee = tee
        self.path = Path(path)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.rows = 0 if new else count_rows(self.path)  # data rows in the file: a checkpoint records it
        self._f = open(self.path, "a", newline="")
        self._w = csv.writer(self._f)
        if new:
            self._w.writerow(METRIC_COLUMNS)
            self._f.flush()

    def log(self, step: int, epoch: float, values: dict[str, float]) -> None:
        self.log_rows((step, epoch, k, v) for k, v in values.items())

    def log_rows(self, rows: Iterable[tuple[int, float, str, float]]) -> None:
        rows = list(rows)
        for step, epoch, metric, value in rows:
            self._w.writerow((step, f"{epoch:.6g}", metric, repr(float(value))))
            self.rows += 1
        self._f.flush()
        if self.tee is not None:
            self.tee(rows)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def git_commit(cwd: Optional[Path] = None) -> Optional[str]:
    """The code's git commit, or None outside git. '-dirty' when the package folder (`cwd`, by
    default bnstudy/: its code and configs, all that a run executes) differs from that commit or
    holds files git does not know; changes elsewhere in the checkout (results/, README.md,
    scripts/) change no run and do not count: reports written into a clean clone by `bnstudy
    reproduce` marked the runs after them dirty."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=cwd,
                             capture_output=True, text=True, timeout=5)
        sha = out.stdout.strip()
        if out.returncode != 0 or not sha:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=normal", "--", "."], cwd=cwd,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def provenance(device: torch.device, seed: int) -> dict[str, Any]:
    import torchvision

    from . import __version__

    return {
        "bnstudy_version": __version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "python_version": platform.python_version(),
        "device": str(device),
        "device_name": device_name(device),
        "hostname": platform.node(),
        "seed": seed,
    }
