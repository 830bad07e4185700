"""`python -m bnstudy reproduce`: rerun every study at one scale and rebuild its results folder.

For each study, three steps, each what a user could type by hand:
  run         python -m bnstudy run +exp=STUDY scale=SCALE hydra.sweep.dir=RUNS/STUDY-SCALE-DATA OVERRIDE ...
  report      python -m bnstudy report RUNS/STUDY-SCALE-DATA --out OUT/STUDY
  provenance  OUT/STUDY/provenance.md, from the run folders: commands, commits, data, machines,
              runs by status, wall time
The sweep runs as a subprocess (a study that fails there is one line, and the next one starts);
the report and provenance run in this process. A sweep skips its finished runs, so the same
command resumes where an earlier one stopped. A hand-written OUT/STUDY/README.md is never touched.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import yaml

from . import provenance
from .config import CONF_DIR

EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 1, 2, 130
EXP_DIR = CONF_DIR / "exp"
# Studies left out unless named in --studies: precision benchmarks the harness (bf16 against
# fp32, checked by scripts/precision_check.py), it tests no claim about BN.
NOT_BY_DEFAULT = ("precision",)
# set by reproduce itself: an override of one of these would send the runs elsewhere
RESERVED = ("exp", "scale", "hydra.sweep.dir")
# in a study's sweep folder: one folder per reproduce, where each run of its sweep notes itself
# (config sweep_list, runfolder.note_in_sweep)
SWEEP_LISTS = "sweep-lists"

DESCRIPTION = """\
Rerun every study at one scale and rebuild its results folder. For each study, in order:
  python -m bnstudy run +exp=STUDY scale=SCALE hydra.sweep.dir=RUNS/STUDY-SCALE-DATA OVERRIDE ...
  python -m bnstudy report RUNS/STUDY-SCALE-DATA --out OUT/STUDY
then OUT/STUDY/provenance.md from the run folders (the commands, the commits the runs came
from, the data, the machines, the runs by status, the wall time). DATA is the data config
(data=..., default synthetic). OUT/STUDY/README.md, written by hand, is never touched.

Resumable: a sweep skips its finished runs and resumes interrupted ones, so running the same
command again picks up where it stopped (Ctrl-C stops everything; finished runs are kept).
The report reads only the run folders of this sweep's grid: each run notes itself in
RUNS/STUDY-SCALE-DATA/sweep-lists/STAMP/ (config sweep_list), and the report reads those
(report --sweep-list), plus any folder the sweep wrote; a folder an earlier grid left is listed
in the report's and provenance.md's "Left out", never counted, and its files are kept.

Studies: every YAML in bnstudy/conf/exp/, in the order of the claims that read them
(bnstudy/claims CLAIMS, the report's order), then any other study by name; precision (a
benchmark of the harness, not a claim) only when named in --studies, which runs the studies
it names in the order given. A study whose sweep or report fails is one line, and the next
study starts; the exit code is then 1 (2: a bad command line, 130: interrupted)."""

EPILOG = """\
example (the real data, 2 runs at a time):
  python -m bnstudy reproduce --scale cpu --runs /work/runs --out results --launcher joblib --jobs 2 \\
      data=cifar10_folder data.root=../shared/data/cifar10-jpeg"""


def _fail(code: int, message: str) -> None:
    print(f"bnstudy: error: {message}", file=sys.stderr)
    sys.exit(code)


def _say(line: str) -> None:
    print(f"reproduce: {line}", flush=True)  # flushed: the sweeps' own output interleaves


# ---------------------------------------------------------------- which studies, which commands

def all_studies() -> list[str]:
    """Every study in bnstudy/conf/exp/: those the claims read, in the claims' order, then the rest by name."""
    from .claims import CLAIMS

    found = sorted(p.stem for p in EXP_DIR.glob("*.yaml"))
    claimed = list(dict.fromkeys(c.STUDY for c in CLAIMS if c.STUDY in found))
    return claimed + [s for s in found if s not in claimed]


def select_studies(names: Optional[str]) -> list[str]:
    """The default studies, or those named (comma-separated, in their order); ValueError for an unknown name."""
    known = all_studies()
    if not names:
        return [s for s in known if s not in NOT_BY_DEFAULT]
    chosen = list(dict.fromkeys(n.strip() for n in names.split(",") if n.strip()))
    unknown = [n for n in chosen if n not in known]
    if unknown or not chosen:
        raise ValueError(f"--studies: no study {', '.join(map(repr, unknown)) or 'named'} "
                         f"(studies: {', '.join(known)})")
    return chosen


def _key(override: str) -> str:
    return override.partition("=")[0].lstrip("+~")


def data_name(overrides: list[str]) -> str:
    """The data config a run of these overrides uses: the last data=..., else config.yaml's default."""
    given = [o.partition("=")[2] for o in overrides if _key(o) == "data"]
    if given:
        return given[-1]
    defaults = yaml.safe_load((CONF_DIR / "config.yaml").read_text())["defaults"]
    return next(d["data"] for d in defaults if isinstance(d, dict) and "data" in d)


@dataclass
class Plan:
    study: str
    sweep_dir: Path
    out_dir: Path
    run_args: list[str]  # after `python -m bnstudy`
    report_args: list[str]

    def shell(self, args: list[str]) -> str:
        return "python -m bnstudy " + shlex.join(args)

    def noting(self, sweep_list: Path) -> "Plan":
        """This plan with each run noting itself in `sweep_list`, and the report reading only
        the folders noted there."""
        value = str(sweep_list)
        value = value if re.fullmatch(r"[\w/.:+-]+", value) else "'" + value.replace("'", "\\'") + "'"  # Hydra quoting
        return replace(self, run_args=[*self.run_args, f"sweep_list={value}"],
                       report_args=[*self.report_args, "--sweep-list", str(sweep_list)])


def plan(study: str, scale: str, runs: Path, out: Path, overrides: list[str],
         launcher: Optional[str] = None, jobs: Optional[int] = None) -> Plan:
    sweep_dir = runs / f"{study}-{scale}-{data_name(overrides)}"
    launch = ([f"hydra/launcher={launcher}"] if launcher else []) + ([f"hydra.launcher.n_jobs={jobs}"] if jobs else [])
    return Plan(study, sweep_dir, out / study,
                ["run", f"+exp={study}", f"scale={scale}", f"hydra.sweep.dir={sweep_dir}", *launch, *overrides],
                ["report", str(sweep_dir), "--out", str(out / study)])


# ---------------------------------------------------------------- the steps

def run_sweep(args: list[str]) -> int:
    """`python -m bnstudy ARGS` as a subprocess; its exit code. On Ctrl-C the sweep (which got the
    same SIGINT from the terminal) is given time to mark its runs interrupted; then this raises."""
    proc = subprocess.Popen([sys.executable, "-m", "bnstudy", *args])
    try:
        return proc.wait()
    except KeyboardInterrupt:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:  # the signal came to this process alone: pass it on
            proc.send_signal(signal.SIGINT)
            proc.wait()
        raise


def build_report(sweep_dir: Path, out_dir: Path, keep: Optional[set[Path]] = None) -> None:
    """`python -m bnstudy report SWEEP_DIR --out OUT_DIR`, in this process, over the run folders
    in `keep` only (the sweep's grid) when given."""
    from .analysis import report
    from .analysis.rules import verdict_line

    shown = report.report([sweep_dir], out_dir, warn=lambda line: print(f"bnstudy: warning: {line}", file=sys.stderr),
                          keep=keep)
    for checks in shown.values():
        for v in checks:
            print(verdict_line(v))


def sweep_grid(sweep_list: Path, sweep_dir: Path, started: float) -> Optional[set[Path]]:
    """The run folders of this sweep's grid (resolved): those its runs noted in `sweep_list`, and
    any whose summary.json was written since `started` (a run that wrote but did not note itself
    is this sweep's all the same; a warning names it). None when no run noted itself: the report
    then reads every folder, with a warning."""
    from .analysis.results import find_run_dirs
    from .runfolder import swept_folders

    warn = lambda line: print(f"bnstudy: warning: {line}", file=sys.stderr, flush=True)  # noqa: E731
    swept = {d.resolve() for d in swept_folders(sweep_list, sweep_dir)}
    if not swept:
        warn(f"the sweep noted no run folders in {sweep_list}: the report reads every folder under {sweep_dir}, "
             "including any an earlier grid left")
        return None
    fresh = {d.resolve() for d in find_run_dirs([sweep_dir]) if (d / "summary.json").stat().st_mtime >= started}
    for d in sorted(fresh - swept):
        warn(f"{d} was written by this sweep but not noted in {sweep_list}: counted as this sweep's")
    return swept | fresh


# ---------------------------------------------------------------- the command

def reproduce_one(p: Plan, command: str) -> Optional[str]:
    """Sweep, report and provenance for one study; None when done, else why it failed (one line)."""
    sweep_list = (p.sweep_dir / SWEEP_LISTS / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}").resolve()
    sweep_list.mkdir(parents=True, exist_ok=True)  # this reproduce's own: another's never mixes in
    p = p.noting(sweep_list)
    _say(f"{p.study}: {p.shell(p.run_args)}")
    started = time.time()
    t0 = time.perf_counter()
    code = run_sweep(p.run_args)
    sweep_wall_s = time.perf_counter() - t0
    if code in (EXIT_INTERRUPTED, -signal.SIGINT):
        raise KeyboardInterrupt
    if code != 0:
        return f"the sweep exited with code {code} (its error is above); {p.out_dir} left as it was"
    _say(f"{p.study}: {p.shell(p.report_args)}")
    try:
        keep = sweep_grid(sweep_list, p.sweep_dir, started)
        build_report(p.sweep_dir, p.out_dir, keep)
        rows = provenance.write_provenance(p, command, sweep_wall_s, started, keep)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # a report that cannot be built is this study's failure, not the others'
        return f"the report failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    unfinished = sum(1 for r in rows if r.get("status") not in ("completed", "diverged"))
    _say(f"{p.study}: {provenance.n_of(len(rows), 'run')}" + (f" ({unfinished} not finished: see provenance.md)" if unfinished else "")
         + f", sweep {provenance.duration(sweep_wall_s)}; wrote {p.out_dir}/report.md and provenance.md")
    return None


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bnstudy reproduce", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", required=True, help="smoke | cpu | medium | full (bnstudy/conf/scale/)")
    parser.add_argument("--runs", required=True, type=Path, help="folder of the sweeps: RUNS/STUDY-SCALE-DATA/")
    parser.add_argument("--out", required=True, type=Path, help="results folder: a report per study in OUT/STUDY/")
    parser.add_argument("--studies", help="comma-separated study names, run in this order (default: all but precision)")
    parser.add_argument("--launcher", help="a Hydra launcher: joblib (runs in parallel), local, slurm")
    parser.add_argument("--jobs", type=int, help="runs at a time with --launcher joblib (the default launcher then)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("overrides", nargs="*", metavar="OVERRIDE",
                        help="passed to every study's run, e.g. data=cifar10_folder data.root=PATH")
    a = parser.parse_intermixed_args(argv)

    if not (CONF_DIR / "scale" / f"{a.scale}.yaml").exists():
        _fail(EXIT_CONFIG, f"--scale {a.scale}: one of {', '.join(sorted(p.stem for p in (CONF_DIR / 'scale').glob('*.yaml')))}")
    reserved = [o for o in a.overrides if _key(o) in RESERVED]
    if reserved:
        _fail(EXIT_CONFIG, f"{reserved[0]}: reproduce sets this itself (use --scale, --studies, --runs)")
    if a.jobs is not None and (a.jobs < 1 or a.launcher not in (None, "joblib")):
        _fail(EXIT_CONFIG, f"--jobs {a.jobs}: a positive number of runs at a time, with --launcher joblib")
    launcher = a.launcher or ("joblib" if a.jobs else None)
    try:
        studies = select_studies(a.studies)
    except ValueError as e:
        _fail(EXIT_CONFIG, str(e))

    plans = [plan(s, a.scale, a.runs, a.out, a.overrides, launcher, a.jobs) for s in studies]
    if a.dry_run:
        for p in plans:
            print(f"# {p.study}\n{p.shell(p.run_args)}\n{p.shell(p.report_args)}")
        return

    command = "python -m bnstudy reproduce " + shlex.join(argv)
    failures: dict[str, str] = {}
    current = None
    t0 = time.perf_counter()
    try:
        for p in plans:
            current = p.study
            why = reproduce_one(p, command)
            if why:
                failures[p.study] = why
                print(f"bnstudy: error: {p.study} failed: {why}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        _fail(EXIT_INTERRUPTED, f"interrupted during {current}; finished runs are kept under {a.runs}: "
                                "the same command resumes")
    _say(f"{len(plans) - len(failures)} of {len(plans)} studies done in {provenance.duration(time.perf_counter() - t0)}"
         + (f"; failed: {', '.join(failures)}" if failures else ""))
    if failures:
        sys.exit(EXIT_FAILED)
