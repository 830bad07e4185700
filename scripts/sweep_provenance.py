"""provenance.md for a results folder built from a sweep run by hand (not by `reproduce`): the
run folders' commits, data, machines, runs by status and wall time (bnstudy/provenance.py), with
the commands the sweep ran.

    python scripts/sweep_provenance.py STUDY SWEEP_DIR OUT_DIR --command "python -m bnstudy run ..." [--command ...]

Each --command is one command as it was typed (a study at scale=medium: its select and measure
steps); the report step is `python -m bnstudy report SWEEP_DIR --out OUT_DIR`.
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from bnstudy import provenance
from bnstudy.analysis.results import find_run_dirs
from bnstudy.reproduce import Plan


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("study")
    p.add_argument("sweep_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--command", action="append", required=True, help="a command the sweep ran, as typed")
    a = p.parse_args()
    last = shlex.split(a.command[-1])
    plan = Plan(a.study, a.sweep_dir, a.out_dir, last[last.index("bnstudy") + 1:] if "bnstudy" in last else last,
                ["report", str(a.sweep_dir), "--out", str(a.out_dir)])
    command = "(each from a clean clone of the repository at the commit that started it)\n" + "\n".join(
        f"    {c}" for c in a.command)
    rows = provenance.read_runs(find_run_dirs([a.sweep_dir]))
    a.out_dir.mkdir(parents=True, exist_ok=True)
    (a.out_dir / "provenance.md").write_text(provenance.provenance_md(
        rows, plan, command, None, None, (), provenance.sweep_status_md(a.sweep_dir),
        by="python scripts/sweep_provenance.py " + shlex.join([a.study, str(a.sweep_dir), str(a.out_dir), "--command ..."])))
    print(f"wrote {a.out_dir / 'provenance.md'} from {len(rows)} run folders")


if __name__ == "__main__":
    main()
