"""provenance.md: what made a study's results folder, from its run folders: the commands,
the commits, the data, the machines, the runs by status (and the sweep's grid as `status`
shows it), and the wall time. Written by `python -m bnstudy reproduce` on every run.
"""
from __future__ import annotations

import datetime
import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd
import yaml

from . import sweep_status
from .analysis.document import md_table
from .analysis.results import find_run_dirs
from .outputs import flatten

def read_runs(run_dirs: Sequence[Path]) -> list[dict]:
    """One row per run folder: its config and summary.json, flattened (the columns of runs.csv,
    without reading the curves), and when summary.json was last written."""
    rows = []
    for d in run_dirs:
        try:
            summary = json.loads((d / "summary.json").read_text())
            config = yaml.safe_load((d / "config.yaml").read_text()) if (d / "config.yaml").exists() else {}
        except (OSError, ValueError, yaml.YAMLError):
            rows.append({"status": "unreadable", "run_dir": str(d)})
            continue
        summary.pop("traceback", None)
        row = flatten(config if isinstance(config, dict) else {})
        for k, v in flatten(summary if isinstance(summary, dict) else {}).items():
            row.setdefault(k, v)
        row.update(run_dir=str(d), written=(d / "summary.json").stat().st_mtime)
        rows.append(row)
    return rows


def duration(seconds: float) -> str:
    """A wall time as a reader wants it (s, min or h)."""
    if seconds != seconds:  # NaN: no run recorded a wall time
        return "unknown"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def n_of(count: int, noun: str) -> str:
    """'1 run', '3 runs'."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _counts(rows: list[dict], columns: list[str]) -> str:
    """A markdown table: each distinct combination of `columns` among the runs and how many runs have it."""
    def cell(v):
        return "" if v is None or v != v else str(v)

    counts = Counter(tuple(cell(r.get(c)) for c in columns) for r in rows)
    table = pd.DataFrame([(*k, n) for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))],
                         columns=[*columns, "runs"])
    return md_table(table)


def provenance_md(rows: list[dict], p, command: str, sweep_wall_s: Optional[float],
                  started: Optional[float], left_out: Sequence[str] = (), status: Optional[str] = None,
                  by: str = "python -m bnstudy reproduce") -> str:
    """provenance.md for one study: what made OUT/STUDY (`p`, its reproduce.Plan), from its run
    folders' rows (read_runs);
    `left_out`: the folders under the sweep folder that this sweep's grid does not hold;
    `status`: what `python -m bnstudy status SWEEP_DIR` says of the sweep (sweep_status_md); `by`:
    the command that writes it."""
    walls = [float(r["wall_time_s"]) for r in rows if isinstance(r.get("wall_time_s"), (int, float))]
    fresh = sum(1 for r in rows if started is not None and r.get("written", 0) >= started)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Provenance: {p.study}",
        "",
        f"Written by `{by}` on {now} from {n_of(len(rows), 'run folder')} under `{p.sweep_dir}` ("
        + ("regenerated on every reproduce; " if by == "python -m bnstudy reproduce" else "")
        + "README.md beside it is written by hand).",
        "",
        "## Commands",
        "",
        f"This folder was rebuilt by, in `{Path.cwd()}`,",
        "",
        f"    {command}",
        "",
        "which, for this study, ran",
        "",
        f"    {p.shell(p.run_args)}",
        f"    {p.shell(p.report_args)}",
        "",
        "Running either again skips the runs that have finished (a sweep resumes where it stopped).",
        "",
        "## Code",
        "",
        "The commit each run's code came from (`-dirty`: with uncommitted changes to the package, bnstudy/).",
        "",
        _counts(rows, ["git_commit", "bnstudy_version"]),
        "",
        "## Data",
        "",
        "Subset sizes as configured (`data.*_subset`, empty: all) and as loaded (`n_train`, `n_test`).",
        "",
        _counts(rows, ["data.name", "data.root", "data.train_subset", "data.test_subset", "n_train", "n_test"]),
        "",
        "## Machines",
        "",
        _counts(rows, ["hostname", "device_name", "torch_version", "precision"]),
        "",
        "## Runs by status",
        "",
        _counts(rows, ["status"]),
        "",
        *([status, ""] if status else []),
        "## Wall time",
        "",
        f"- the runs' own (summary.json `wall_time_s`, {n_of(len(walls), 'run')}): "
        f"{duration(sum(walls)) if walls else 'unknown'} in all, "
        f"median {duration(statistics.median(walls)) if walls else 'unknown'} a run;",
    ]
    if sweep_wall_s is not None:
        lines.append(f"- this reproduce's sweep step: {duration(sweep_wall_s)} ({n_of(fresh, 'run')} written by it, "
                     f"{len(rows) - fresh} already finished before it).")
    if left_out:
        lines += ["", "## Left out", "",
                  f"{n_of(len(left_out), 'run folder')} under `{p.sweep_dir}` that this sweep's grid does not hold "
                  "(left by an earlier version of the study, or by another command) are not in the report; "
                  "their files are kept:", ""]
        lines += [f"- `{name}`" for name in left_out]
    return "\n".join(lines) + "\n"


def write_provenance(p, command: str, sweep_wall_s: Optional[float], started: Optional[float],
                     keep: Optional[set[Path]] = None) -> list[dict]:
    """Write OUT/STUDY/provenance.md for `p` (a reproduce.Plan) over the run folders in `keep`
    (the sweep's grid; all under the sweep folder when None); its rows, one per run."""
    dirs = find_run_dirs([p.sweep_dir])
    kept = [d for d in dirs if keep is None or d.resolve() in keep]
    rows = read_runs(kept)
    left_out = [str(d.relative_to(p.sweep_dir)) for d in dirs if d not in kept]
    p.out_dir.mkdir(parents=True, exist_ok=True)
    (p.out_dir / "provenance.md").write_text(provenance_md(rows, p, command, sweep_wall_s, started, left_out,
                                                           sweep_status_md(p.sweep_dir)))
    return rows


def sweep_status_md(sweep_dir: Path) -> Optional[str]:
    """The sweep as `python -m bnstudy status SWEEP_DIR` shows it (bnstudy/sweep_status.py): its
    last command's planned runs by arm and status, and its summary lines; None without a
    multirun.yaml."""
    try:
        runs, n_jobs = sweep_status.table(sweep_dir)
    except FileNotFoundError:
        return None
    planned = runs[runs.command == "last command"]
    counts = planned.groupby(["arm", "status"]).size().rename("runs").reset_index()
    lines = ["## The sweep's grid, by `status`", "",
             f"`python -m bnstudy status {sweep_dir}` when this was written: the runs its last command planned",
             "(from the sweep's multirun.yaml), by arm and state, then its summary.", "",
             "| arm | status | runs |", "|---|---|---|"]
    lines += [f"| {r.arm} | {r.status} | {r.runs} |" for r in counts.itertuples()]
    lines += ["", *(f"    {line}" for line in sweep_status.summarize(runs, n_jobs).splitlines())]
    return "\n".join(lines)
