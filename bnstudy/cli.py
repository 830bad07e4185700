"""Command line: `python -m bnstudy run [hydra overrides]`, `report SWEEP_DIR ...`, `plot SWEEP_DIR ...`,
`bench`, `reproduce --scale S --runs DIR --out DIR` (bnstudy/reproduce.py).

Exit codes: 0 done (a diverged run is a result, not an error); 1 a run failed;
2 a bad config value or command line; 3 data that cannot be loaded or an output
folder that cannot be used; 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from .config import CONF_DIR, register_configs
from .validation import ConfigError, to_config
from .data import DataError

EXIT_FAILED, EXIT_CONFIG, EXIT_DATA, EXIT_INTERRUPTED = 1, 2, 3, 130

USAGE = """usage: python -m bnstudy run [OVERRIDE ...]

  run     train one configuration, or a named study with +exp=NAME (a Hydra multirun)
          e.g. python -m bnstudy run norm=none optim.lr=0.05 seed=1
               python -m bnstudy run +exp=lr_sweep scale=smoke
          `python -m bnstudy run --help` lists the config groups and their options.
  report  tables, figures and a verdict per claim from finished runs (never trains)
          python -m bnstudy report SWEEP_DIR [SWEEP_DIR ...] [--out DIR] [--sweep-list DIR]
  plot    the figures alone: python -m bnstudy plot SWEEP_DIR [SWEEP_DIR ...] [--out DIR]
  status  a sweep's runs by status, median wall time per arm, time left (--watch S to refresh)
          python -m bnstudy status SWEEP_DIR
  select  each arm's chosen rate from a sweep's selection runs (scale=medium), whether it lies
          inside its grid, and the `chosen:` lines for the study YAML before its measuring phase
          python -m bnstudy select SWEEP_DIR
  tensorboard  TensorBoard event files from finished run folders or a published study
          (live while training: trainer.tensorboard=true)
          python -m bnstudy tensorboard SWEEP_DIR [--out DIR]
  verdicts  the verdict table of the published studies (results/*/numbers.csv), printed, or
          rewritten between its markers in README.md and results/README.md
          python -m bnstudy verdicts [RESULTS_DIR] [--write README.md results/README.md]
  bench   training throughput vs a bare loop and the classic DataLoader recipe
          python -m bnstudy bench [--steps N] [--reps R] [--out results/bench/cpu.json]
  reproduce  every study's sweep at one scale, then its report and provenance.md into OUT/STUDY;
          resumable (finished runs are skipped). `python -m bnstudy reproduce --help` for more.
          python -m bnstudy reproduce --scale cpu --runs /work/runs --out results [--studies A,B]
              [--launcher joblib --jobs 2] [--dry-run] [OVERRIDE ...]
"""


def _fail(code: int, message: str) -> None:
    print(f"bnstudy: error: {message}", file=sys.stderr)
    sys.exit(code)


register_configs()


def _share_resources(cfg) -> None:
    """Give each job of a parallel sweep its own cores, so jobs do not oversubscribe them:
    under submitit (SLURM, or its local stand-in) torch's threads follow the job's cpus_per_task
    (SLURM_CPUS_PER_TASK where SLURM sets it); under joblib each job gets cores / n_jobs, and
    on a multi-GPU machine a GPU of its own."""
    import os

    import torch

    hc = HydraConfig.get()
    cpus = os.environ.get("SLURM_CPUS_PER_TASK") or OmegaConf.select(hc, "launcher.cpus_per_task", default=None)
    if cpus and "submitit" in str(OmegaConf.select(hc, "launcher._target_", default="")):
        torch.set_num_threads(max(1, int(cpus)))
        return
    n_jobs = OmegaConf.select(hc, "launcher.n_jobs", default=None)
    if not n_jobs or n_jobs == 1:
        return
    cores = os.cpu_count() or 1
    n_jobs = cores if n_jobs < 0 else n_jobs
    torch.set_num_threads(max(1, cores // n_jobs))
    if cfg.device == "auto" and torch.cuda.device_count() > 1:
        cfg.device = f"cuda:{int(hc.job.num) % torch.cuda.device_count()}"


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_run(dcfg: DictConfig) -> dict:
    from .run import RunFolderError, run
    from .runfolder import RunBusy

    try:
        cfg = to_config(dcfg)
    except ConfigError as e:
        _fail(EXIT_CONFIG, str(e))
    _share_resources(cfg)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = run(cfg, out_dir)
    except RunBusy as e:
        logging.getLogger("bnstudy").warning(f"skipped: {e}")
        return {"status": "busy"}
    except (DataError, RunFolderError, OSError) as e:
        _fail(EXIT_DATA, str(e))
    except KeyboardInterrupt:
        _fail(EXIT_INTERRUPTED, f"interrupted; finished runs are kept, this one is marked in {out_dir}/summary.json; "
                                "run the same command again to resume where it stopped")
    if summary["status"] == "failed" and HydraConfig.get().mode.name == "RUN":
        _fail(EXIT_FAILED, f"run failed: {summary.get('error')} (see {out_dir}/summary.json)")
    return summary


def _warn(line: str) -> None:
    print(f"bnstudy: warning: {line}", file=sys.stderr)


def analyse(cmd: str, args: list[str]) -> None:
    """`report` / `plot`: read finished run folders, write tables, figures and report."""
    import argparse

    from .analysis import report
    from .analysis.rules import verdict_line
    from .analysis.results import NoRunsError

    parser = argparse.ArgumentParser(prog=f"python -m bnstudy {cmd}", description=(
        "Read the run folders (any folder holding summary.json) under each SWEEP_DIR and write "
        + ("runs.csv, curves.csv.gz, figures/, report.md and report.html" if cmd == "report" else "figures/")
        + " into --out. Never trains."))
    parser.add_argument("sweep_dirs", nargs="+", type=Path, metavar="SWEEP_DIR")
    parser.add_argument("--out", type=Path, help="output folder (default: the first SWEEP_DIR/report)")
    if cmd == "report":
        parser.add_argument("--force", action="store_true", help=(
            "replace a report of other runs already in --out (its runs.csv, curves, figures and report; a "
            "hand-written README.md stays)"))
        parser.add_argument("--sweep-list", type=Path, metavar="DIR", help=(
            "read only the run folders a sweep noted in DIR (its sweep_list=DIR; bnstudy reproduce sets it), "
            "leaving out any an earlier grid left in SWEEP_DIR; with one SWEEP_DIR"))
    a = parser.parse_args(args)
    out = a.out or a.sweep_dirs[0] / "report"
    keep = None
    if getattr(a, "sweep_list", None) is not None:
        from .runfolder import swept_folders

        if len(a.sweep_dirs) != 1 or not a.sweep_list.is_dir():
            _fail(EXIT_CONFIG, f"--sweep-list {a.sweep_list}: " + ("an existing folder" if len(a.sweep_dirs) == 1
                                                                   else "with exactly one SWEEP_DIR"))
        keep = {d.resolve() for d in swept_folders(a.sweep_list, a.sweep_dirs[0])}
        if not keep:
            _fail(EXIT_CONFIG, f"--sweep-list {a.sweep_list}: no run noted itself there")
    try:
        if cmd == "report":
            shown = report.report(a.sweep_dirs, out, warn=_warn, keep=keep, force=a.force)
            for checks in shown.values():
                for v in checks:
                    print(verdict_line(v))
            if len(shown) < len(report.CLAIMS):
                print(f"{len(report.CLAIMS) - len(shown)} other claims not tested here (no runs of their study)")
            print(f"wrote {out / 'report.md'} and {out / 'report.html'}")
        else:
            drawn = [p for p in report.plot(a.sweep_dirs, out, warn=_warn).values() if isinstance(p, Path)]
            print(f"wrote {len(drawn)} figures to {out / 'figures'}")
    except (NoRunsError, report.MixedPrecisionError, report.ReportExistsError) as e:
        _fail(EXIT_CONFIG, str(e))
    except OSError as e:
        _fail(EXIT_DATA, f"cannot write the outputs to {out}: {e}")


def run_help() -> str:
    """`run --help`: the config groups a user picks from and their options (the files of
    bnstudy/conf/), not Hydra's listing, which includes the schema's internal base_* entries."""
    lines = ["usage: python -m bnstudy run [GROUP=OPTION ...] [KEY=VALUE ...] [+exp=STUDY]", "",
             "Config groups (group=option; the defaults are in bnstudy/conf/config.yaml):"]
    for group in sorted(p for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra"):
        options = sorted(f.stem for f in group.glob("*.yaml"))
        lines.append(f"  {group.name + ':':14} {', '.join(options)}")
    lines += ["", "Any key can be set (optim.lr=0.05, trainer.epochs=10); a sweep is -m KEY=A,B or +exp=STUDY.",
              "Every key with its default: python -m bnstudy run --cfg job"]
    return "\n".join(lines)


def select(args: list[str]) -> None:
    """`select SWEEP_DIR`: the selection rule applied to the sweep's selection runs."""
    import argparse

    from .analysis import selection
    from .analysis.results import NoRunsError, load

    parser = argparse.ArgumentParser(prog="python -m bnstudy select", description=selection.RULE)
    parser.add_argument("sweep_dir", type=Path, metavar="SWEEP_DIR")
    a = parser.parse_args(args)
    try:
        runs = load([a.sweep_dir]).runs
    except NoRunsError as e:
        _fail(EXIT_CONFIG, str(e))
    chosen_lines, edges, waiting = [], 0, 0
    for (study, scale), cell in runs.groupby(["study", "scale.name"]):
        sel, measuring = selection.phases(cell)
        if sel.empty:
            print(f"{study} at scale={scale}: no selection runs (this scale chooses no rates on selection seeds)")
            continue
        choices = selection.choose(sel)
        print(f"{study} at scale={scale}, selection seeds {', '.join(map(str, sorted(sel.seed.unique())))}:")
        print(selection.table(choices).to_string(index=False))
        for line in selection.measuring_problems(sel, measuring, choices):
            print(f"  problem: {line}")
        edges += int(choices.status.str.contains("edge").sum())
        waiting += int((~choices.status.str.contains("edge") & ~choices.status.map(selection.settled)).sum())
        chosen = "{" + ", ".join(f"{c.arm}: {c.chosen:g}" if selection.settled(c.status) else f"{c.arm}: null"
                                 for c in choices.itertuples()) + "}"
        chosen_lines += [f"# {study}, scale={scale}: the chosen rates, for the measuring phase. In "
                         f"bnstudy/conf/exp/{study}.yaml, hydra.sweeper.chosen's by_scale takes as its {scale} value",
                         chosen, "# or, on the command line: " + f"'hydra.sweeper.chosen={chosen}'"]
    print("\n".join(chosen_lines))
    if waiting:
        print(f"{waiting} arm(s) with selection runs unfinished or missing: finish the selection phase (the same "
              "command resumes it) before choosing")
    if edges:
        print(f"{edges} arm(s) not chosen inside their grid: run the selection phase again for that arm at the "
              "rate its status names (the study YAML's header says how: a command-line override, or its next "
              "rung) before any measuring run")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    cmd, rest = argv[0], argv[1:]
    if cmd == "run" and any(a in ("--help", "-h") for a in rest):
        print(run_help())
        return
    if cmd == "run":
        if not any(a in ("--help", "-h", "--info", "--cfg", "-c", "--hydra-help") or a.startswith("--info")
                   for a in rest):
            from .preflight import compose_or_fail
            compose_or_fail(rest)
        sys.argv = [f"{sys.argv[0]} run"] + rest
        hydra_run()
    elif cmd in ("report", "plot"):
        analyse(cmd, rest)
    elif cmd == "select":
        select(rest)
    elif cmd == "status":
        from . import sweep_status
        try:
            sweep_status.main(rest)
        except FileNotFoundError as e:
            _fail(EXIT_CONFIG, str(e))
    elif cmd == "tensorboard":
        from . import tensorboard
        from .analysis.results import NoRunsError
        try:
            tensorboard.main(rest)
        except (tensorboard.MissingExtra, NoRunsError) as e:
            _fail(EXIT_CONFIG, str(e))
    elif cmd == "verdicts":
        from .analysis import published
        try:
            published.main(rest)
        except (FileNotFoundError, ValueError) as e:
            _fail(EXIT_CONFIG, str(e))
    elif cmd == "bench":
        from . import bench
        bench.main(rest)
    elif cmd == "reproduce":
        from . import reproduce
        reproduce.main(rest)
    else:
        print(USAGE, file=sys.stderr)
        _fail(EXIT_CONFIG, f"unknown command {cmd!r}")
