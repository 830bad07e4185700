"""Finished runs -> two tidy tables.

`runs`: one row per run folder: every config value as a dotted column (`optim.lr`,
`norm.name`, ...), the summary (`status`, `final_test_acc`, `steps_to_test_acc.0.5`, ...),
the last value of each metrics.csv metric (`final.train/acc`, `final.infer/acc_batch.bs2`),
`final_acc` (see below; `final_acc_precise` likewise where runs recorded precise-BN accuracy),
`run` (an id) and `run_dir`.
`curves`: the long-format metrics.csv and probes.csv rows of all runs with a `run` column.

Reads run folders (anything holding summary.json, found recursively), or a published report
folder (its runs.csv and curves.csv.gz); never trains. A run folder that cannot be read is
skipped and named; the same (config, seed) found in several folders is counted once.
"""
from __future__ import annotations

import itertools
import json
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Iterable, Optional, Sequence

import numpy as np
import pandas as pd
import yaml

from ..config import NOT_THE_EXPERIMENT
from ..outputs import flatten
from ..runfolder import FINISHED

SCALE_ORDER = ("full", "medium", "cpu", "smoke")  # when a study ran at several scales, claims use the largest
CONFIG_GROUPS = ("data", "model", "norm", "init", "optim", "schedule", "trainer", "probes", "scale", "evaluation")
CURVE_COLUMNS = ["step", "epoch", "metric", "value", "source", "run"]


class NoRunsError(ValueError):
    """A sweep folder that does not exist or holds no run folders."""


@dataclass
class Results:
    runs: pd.DataFrame
    curves: pd.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (folder, why) for unreadable folders
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (dropped run, the run kept instead)

    def warnings(self) -> list[str]:
        """One line per folder left out: unreadable, or a repeat of a (config, seed) already counted."""
        return ([f"skipped {d}: {why}" for d, why in self.skipped]
                + [f"skipped {d}: the same config and seed as {kept} (counted once)" for d, kept in self.duplicates])


# ---------------------------------------------------------------- loading

def find_run_dirs(paths: Iterable[Path]) -> list[Path]:
    """Every folder under `paths` that holds summary.json; NoRunsError for a missing or empty path."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise NoRunsError(f"{p} is not a folder" if p.exists() else f"{p} does not exist")
        # attempts/ holds earlier, replaced attempts of a run (bnstudy/runfolder.py): not results
        here = sorted({s.parent for s in p.rglob("summary.json")
                       if ".hydra" not in s.parts and "attempts" not in s.relative_to(p).parts})
        if not here:
            raise NoRunsError(f"{p} holds no run folders (no summary.json found under it)")
        found += here
    return sorted(set(found))


def _read_rows(path: Path) -> pd.DataFrame | None:
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        # a run still writing can leave a torn last line: keep what parses
        df = pd.read_csv(path, on_bad_lines="skip", engine="python")
    if not {"step", "metric", "value"} <= set(df.columns):
        return None
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    return df


def load_run(run_dir: Path) -> tuple[dict, pd.DataFrame]:
    """(one runs-table row, this run's curves) for one run folder; ValueError for a folder
    whose summary.json or config.yaml is not what a run writes."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    if not isinstance(summary, dict) or "status" not in summary:
        raise ValueError("summary.json holds no run status")
    cfg_path = run_dir / "config.yaml"
    config = yaml.safe_load(cfg_path.read_text()) if cfg_path.exists() else {}
    if not isinstance(config or {}, dict):
        raise ValueError("config.yaml is not a mapping")
    row = flatten(config or {})
    summary.pop("traceback", None)  # many lines; the one-line `error` stays
    for k, v in flatten(summary).items():
        # provenance `seed` repeats the config; `device` differs (auto -> cpu): keep both
        if k in row and row[k] != v:
            k = f"run_{k}"
        row.setdefault(k, v)
    row["status"] = summary["status"]
    row["run_dir"] = str(run_dir.resolve())

    parts = []
    for source in ("metrics", "probes"):
        df = _read_rows(run_dir / f"{source}.csv")
        if df is not None:
            parts.append(df.assign(source=source))
    curves = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CURVE_COLUMNS[:-1])
    # the last value of each metric: final train accuracy, inference and shift accuracies, ...
    keep = curves[(curves.source == "metrics") | curves.metric.str.startswith("test/")]
    if len(keep):
        last = keep.dropna(subset=["value"]).sort_values("step").groupby("metric").value.last()
        row.update({f"final.{m}": v for m, v in last.items()})
    return row, curves


def chance(runs: pd.DataFrame) -> pd.Series:
    return 1.0 / runs.get("model.num_classes", pd.Series(10, index=runs.index)).fillna(10).astype(float)


def is_published(path: Path) -> bool:
    """A folder `report` wrote (runs.csv beside it), rather than a sweep of run folders."""
    return (Path(path) / "runs.csv").is_file() and not any(Path(path).rglob("summary.json"))


def load_published(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, curves) from a report folder's runs.csv and curves.csv.gz (curves may be absent)."""
    path = Path(path)
    runs = pd.read_csv(path / "runs.csv")
    c = path / "curves.csv.gz"
    curves = pd.read_csv(c) if c.exists() else pd.DataFrame(columns=CURVE_COLUMNS)
    return runs, curves


def experiment_columns(runs: pd.DataFrame) -> list[str]:
    """The columns that say what a run trained: study, seed and the config groups' keys, without
    the keys that are NOT_THE_EXPERIMENT."""
    return sorted(c for c in runs.columns if (c in ("study", "seed") or c.split(".")[0] in CONFIG_GROUPS)
                  and c not in NOT_THE_EXPERIMENT)


def experiment_key(runs: pd.DataFrame) -> pd.Series:
    """What a run trained, as one string per run: its experiment_columns' values."""
    cols = experiment_columns(runs)
    if not len(runs):
        return pd.Series(dtype=str)
    return runs[cols].apply(lambda col: col.map(repr)).agg("|".join, axis=1)


def drop_duplicates(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """One run per (config, seed): a seed found in two sweep folders is one replicate, not two.
    Keeps a finished run over an unfinished one, then the one written last."""
    if not len(runs):
        return runs, []
    r = runs.copy().assign(_key=experiment_key(runs), _finished=runs.status.isin(FINISHED),
                    _time=[_mtime(d) for d in runs.get("run_dir", pd.Series("", index=runs.index))])
    r = r.sort_values(["_key", "_finished", "_time"])
    kept = r.groupby("_key").tail(1)
    dropped = [(str(d), str(kept.loc[kept._key == k, "run"].iloc[0]))
               for d, k in zip(r.loc[~r.index.isin(kept.index), "run"], r.loc[~r.index.isin(kept.index), "_key"])]
    return runs.loc[sorted(kept.index)], dropped


def _mtime(run_dir) -> float:
    try:
        return (Path(run_dir) / "summary.json").stat().st_mtime
    except (OSError, TypeError):
        return 0.0


# why a run folder outside `keep` is left out (bnstudy reproduce: folders its sweep did not run)
NOT_IN_SWEEP = ("not in this sweep's grid (left by an earlier version of the study, or by another command); "
                "its files are kept")


def load(paths: Sequence[Path], keep: Optional[Collection[Path]] = None) -> Results:
    """Load every run folder under `paths`, or the tables of a published report folder
    (NoRunsError when a path is missing or holds neither). With `keep`, run folders not in it
    are left out, each listed in `skipped` (NOT_IN_SWEEP)."""
    paths = [Path(p) for p in paths]
    published = [p for p in paths if p.is_dir() and is_published(p)]
    dirs = find_run_dirs([p for p in paths if p not in published]) if len(published) < len(paths) else []
    rows, curves, skipped = [], [], []
    if keep is not None:
        keep = {Path(k).resolve() for k in keep}
        skipped = [(str(d), NOT_IN_SWEEP) for d in dirs if d.resolve() not in keep]
        dirs = [d for d in dirs if d.resolve() in keep]
    base = Path(os.path.commonpath([str(d.resolve()) for d in dirs])) if dirs else None
    for d in dirs:
        try:
            row, c = load_run(d)
        except (OSError, ValueError, yaml.YAMLError) as e:  # a torn or foreign folder: say so, go on
            skipped.append((str(d), f"unreadable: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"))
            continue
        rel = d.resolve().relative_to(base).as_posix()
        row["run"] = rel if rel != "." else d.name
        rows.append(row)
        curves.append(c.assign(run=row["run"]))
    # an empty config value reads back from runs.csv as missing: the same here, so that a run
    # compares equal to itself in a published table (report's overwrite guard, duplicates)
    runs = pd.DataFrame(rows).replace("", np.nan)
    if len(runs):
        # Accuracy a claim compares: a diverged run predicts no better than chance, so it counts
        # as chance rather than vanishing from the mean; running/failed runs have none yet.
        final = pd.to_numeric(runs.get("final_test_acc"), errors="coerce")
        runs["final_acc"] = np.where(runs.status == "diverged", chance(runs),
                                     np.where(runs.status == "completed", final, np.nan))
        if "final_test_acc_precise" in runs:  # evaluation.precise_bn: the same, with recomputed BN statistics
            precise = pd.to_numeric(runs["final_test_acc_precise"], errors="coerce")
            runs["final_acc_precise"] = np.where(runs.status == "diverged", chance(runs),
                                                 np.where(runs.status == "completed", precise, np.nan))
    for p in published:
        r, c = load_published(p)
        runs = pd.concat([runs, r], ignore_index=True)
        curves.append(c)
    runs, duplicates = drop_duplicates(runs)
    if len(runs):
        first = ["run", "study", "status", "norm.name", "optim.lr", "data.batch_size", "seed"]
        runs = runs[[c for c in first if c in runs] + [c for c in runs if c not in first]]
        runs = runs.sort_values([c for c in ("study", "norm.name", "optim.lr", "data.batch_size", "seed", "run")
                                 if c in runs], ignore_index=True)
    curves = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=CURVE_COLUMNS)
    if duplicates:
        curves = curves[~curves.run.isin({d for d, _ in duplicates})]
    return Results(runs, curves, skipped, duplicates)


SKIPINIT = " + SkipInit"


def variant_names(runs: pd.DataFrame) -> pd.Series:
    """Each run's norm name, with ' + SkipInit' where it used model.skipinit: a different
    network, so a population of its own in every comparison and figure. A layer of your own
    (norm=custom) goes by its class's name."""
    skip = runs["model.skipinit"].fillna(False).astype(bool) if "model.skipinit" in runs else False
    names = runs["norm.name"].astype(object)  # object: an all-NaN column stays NaN
    if "norm._target_" in runs:
        cls = runs["norm._target_"].map(lambda t: t.rsplit(".", 1)[-1] if isinstance(t, str) and t else None)
        names = names.where(~((names == "custom") & cls.notna()), cls)
    return names + np.where(skip, SKIPINIT, "")


def with_config(curves: pd.DataFrame, runs: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Curves rows with the named config columns of their run attached (for plots and verdicts)."""
    cols = ["run"] + [c for c in columns if c in runs.columns and c != "run"]
    return curves.merge(runs[cols], on="run", how="inner")


# ---------------------------------------------------------------- choosing runs for a claim

def study_runs(runs: pd.DataFrame, study: str, finished: bool = True,
               phase: str = "measure") -> tuple[pd.DataFrame, list[str]]:
    """The finished runs of `study` at one scale and one data set, and notes on what was left out
    (`finished=False`: the runs of every status at that scale and data set, no note on status).

    Mixing scales (16 smoke steps with 160 epochs) would average unlike things, so a claim uses
    the largest scale present, and the data set with the most runs at it. Where the study chose
    its rates on selection seeds (bnstudy/analysis/selection.py), a claim reads the measuring
    runs (`phase="select"`: the selection runs, for a claim about the grid itself).
    """
    notes: list[str] = []
    if "study" not in runs or not len(runs):
        return runs.iloc[0:0], notes
    sel = runs[runs.study == study]
    if not len(sel):
        return sel, notes
    if "scale.name" in sel and sel["scale.name"].nunique() > 1:
        present = list(sel["scale.name"].dropna().unique())
        best = min(present, key=lambda s: SCALE_ORDER.index(s) if s in SCALE_ORDER else len(SCALE_ORDER))
        notes.append(f"runs at scales {sorted(present)}: using scale={best} only")
        sel = sel[sel["scale.name"] == best]
    if "data.name" in sel and sel["data.name"].nunique() > 1:
        best = sel["data.name"].value_counts().index[0]
        notes.append(f"runs on data sets {sorted(sel['data.name'].unique())}: using data={best} only")
        sel = sel[sel["data.name"] == best]
    sel = _phase(sel, phase, notes)
    if not finished:
        return sel.copy(), notes
    unfinished = sel[~sel.status.isin(FINISHED)]
    if len(unfinished):
        counts = ", ".join(f"{n} {s}" for s, n in unfinished.status.value_counts().items())
        notes.append(f"left out {len(unfinished)} unfinished runs ({counts}); the verdict may change when they finish")
    return sel[sel.status.isin(FINISHED)].copy(), notes


def _chosen_rate(arm: str, choices: pd.DataFrame) -> float:
    hit = choices.loc[choices.arm == arm, "chosen"]
    return float(hit.iloc[0]) if len(hit) else float("nan")


def _phase(runs: pd.DataFrame, phase: str, notes: list[str]) -> pd.DataFrame:
    """`runs` without the other phase's runs, where the study has a selection phase; the measuring
    runs only at each arm's chosen rate, and none when the selection does not back them (an arm
    chosen at an edge or still selecting, measured at another rate, a seed in both phases)."""
    from .selection import RATE, arm_names, choose, measuring_problems, phases

    chose, measured = phases(runs)
    if chose.empty:
        return runs
    seeds = ", ".join(map(str, sorted(chose.seed.unique())))
    if phase == "select":
        notes.append(f"read on the {len(chose)} selection runs (seeds {seeds}), not the {len(measured)} measuring runs")
        return chose
    choices = choose(chose)
    problems = measuring_problems(chose, measured, choices)
    if problems:  # no verdict from measuring runs the selection does not back
        notes += [f"not read: {p}" for p in problems]
        return measured.iloc[0:0]
    notes.append(f"the rates were chosen on {len(chose)} selection runs (seeds {seeds}), so the selection bias named "
                 f"in the rule does not arise; read on the {len(measured)} measuring runs at the chosen rates")
    return measured[[_chosen_rate(arm, choices) == lr for arm, lr in zip(arm_names(measured), measured[RATE])]]


def mixed_precisions(runs: pd.DataFrame) -> list[str]:
    """One line per study, scale and data set whose runs trained in more than one precision
    (summary.json's `precision`, as resolved on the run's device): its arms would differ in
    arithmetic as well as in what the study varies. The precision study compares precisions on
    purpose; runs from before the field was recorded say nothing and are not counted."""
    if "precision" not in runs or "study" not in runs:
        return []
    known = runs[runs.precision.notna() & (runs.study != "precision")]
    keys = [c for c in ("study", "scale.name", "data.name") if c in known]
    lines = []
    for key, cell in known.groupby(keys, dropna=False):
        counts = cell.precision.astype(str).value_counts().sort_index()
        if len(counts) > 1:
            at = dict(zip(keys, key))
            where = "".join(f" {label}={at[c]}" for c, label in (("scale.name", "at scale"), ("data.name", "on data"))
                            if isinstance(at.get(c), str))
            each = ", ".join(f"{p}: {n} run{'s' if n != 1 else ''}" for p, n in counts.items())
            lines.append(f"{at['study']}{where} mixes precisions ({each}); report them separately "
                         "(a study compares its arms in one precision)")
    return lines


# stated in every rule that picks each arm's rate on the seeds that then measure it
SELECTION_BIAS = ("Choosing each arm's best rate on the same seeds that then measure it biases that arm upward (by "
                  "up to ~0.85 sd/sqrt(seeds) when the rates tie; arms with flat accuracy over the grid gain more); "
                  "not corrected.")


def normalization_batch(runs: pd.DataFrame) -> pd.Series:
    """Images each BN statistic is computed over in training: for ghost_bn the ghost batch, at most
    the SGD batch; otherwise the SGD batch (NaN where the table does not say)."""
    nan = pd.Series(np.nan, index=runs.index)
    batch = pd.to_numeric(runs.get("data.batch_size", nan), errors="coerce")
    ghost = pd.to_numeric(runs.get("norm.ghost_batch_size", nan), errors="coerce")
    return pd.Series(np.where(runs["norm.name"] == "ghost_bn", np.fmin(ghost, batch), batch), index=runs.index)


def at_best_rate(runs: pd.DataFrame, by: Sequence[str], rate: str = "optim.lr",
                 value: str = "final_acc") -> pd.DataFrame:
    """The runs of each `by` group at that group's own best rate: the `rate` with the highest
    mean `value` over seeds (final_acc counts a diverged run as chance); a tie goes to the
    lower rate. Rows keep their columns; the index is new."""
    by = list(by)
    if not len(runs):
        return runs.copy()
    means = runs.groupby(by + [rate], dropna=False)[value].mean().dropna().reset_index()
    best = means.sort_values([value, rate], ascending=[False, True]).groupby(by, dropna=False).head(1)
    return runs.merge(best[by + [rate]], on=by + [rate], how="inner")


def value_text(v) -> str:
    """A config value as names and keys print it, the same however it was read back (a run
    folder, runs.csv): None and NaN as "nan", bools and strings as they are, integers whole
    (128, not 128.0), other numbers in %g."""
    if v is None:
        return "nan"
    if isinstance(v, (bool, np.bool_, str)) or not isinstance(v, numbers.Real):
        return str(bool(v)) if isinstance(v, np.bool_) else str(v)
    if v != v:
        return "nan"
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


def _cell_name(keys: Sequence, prefixes: Sequence[str]) -> str:
    """A group as the notes name it: each key after its prefix ('batch ' names 2 'batch 2')."""
    return " ".join(p + value_text(k) for p, k in zip(list(prefixes) + [""] * len(keys), keys)).strip()


def incomplete_cells(runs: pd.DataFrame, by: Sequence[str], rate: str = "optim.lr", within: Sequence[str] = (),
                     prefixes: Sequence[str] = ()) -> list[str]:
    """A note naming the `by` cells of the finished `runs` that lack part of their grid: a cell with
    no finished run, a rate of the grid it did not finish, or fewer seeds at a rate than the most
    any cell has there (a sweep cut short, or runs that failed). The grid is what the runs of the
    same `within` scope cover (the product of the `by` values, the rates and the seeds seen
    there: `within=["model.name"]` for a study whose nets have rate grids of their own). Such a
    cell's best rate is chosen from what it has. Empty when every cell is complete. Information
    only: it changes no verdict."""
    by, within = list(by), list(within)
    if not len(runs) or rate not in runs or not set(by + within) <= set(runs.columns):
        return []
    scopes = runs.groupby(within, dropna=False) if within else [((), runs)]
    lacking = []
    for _, scope in scopes:
        seeds = scope.groupby(by + [rate], dropna=False)["seed"].nunique() if "seed" in scope else None
        most = int(seeds.max()) if seeds is not None and len(seeds) else 0
        rates = sorted(pd.to_numeric(scope[rate], errors="coerce").dropna().unique())
        for key in itertools.product(*(scope[c].drop_duplicates().tolist() for c in by)):
            cell = scope[np.logical_and.reduce([scope[c].eq(k) | (scope[c].isna() & pd.isna(k))
                                                for c, k in zip(by, key)])]
            name = _cell_name(key, prefixes)
            if not len(cell):
                lacking.append(f"{name}: no finished run")
                continue
            have = pd.to_numeric(cell[rate], errors="coerce")
            gaps = [f"rate {r:g} missing" for r in rates if not (have == r).any()]
            if most:
                n = cell.assign(_r=have).groupby("_r")["seed"].nunique()
                gaps += [f"{n[r]} of {most} seeds at {r:g}" for r in rates if r in n.index and n[r] < most]
            if gaps:
                lacking.append(f"{name}: {', '.join(gaps)}")
    if not lacking:
        return []
    return ["cells that lack part of the grid (a sweep cut short, or failed runs), each read on what it has: "
            + "; ".join(lacking)]


def edge_rates(runs: pd.DataFrame, best: pd.DataFrame, by: Sequence[str], rate: str = "optim.lr",
               prefixes: Sequence[str] = ()) -> list[str]:
    """A note naming the `by` groups whose best `rate` (in `best`, from at_best_rate) is the lowest
    or highest rate that group ran in `runs`: a rate beyond the grid might have done better, so
    that arm's accuracy may be understated. A group is named by its values, each after its
    `prefixes` entry ('batch ' names 2 'batch 2'). Empty when no best rate sits at an edge.
    Information only: it changes no verdict."""
    by = list(by)
    if not len(best) or rate not in best or not set(by) <= set(best.columns):
        return []
    num = lambda d: d.assign(**{rate: pd.to_numeric(d[rate], errors="coerce")})  # noqa: E731
    grid = num(runs).groupby(by, dropna=False)[rate].agg(lo="min", hi="max", n="nunique")
    picked = num(best).groupby(by, dropna=False)[rate].first().rename("best")
    table = grid.join(picked, how="inner")  # index alignment matches NaN keys too
    edge = []
    for key, r in table.iterrows():
        if r.n < 2 or r.best not in (r.lo, r.hi):
            continue
        name = _cell_name(key if isinstance(key, tuple) else (key,), prefixes)
        edge.append(f"{name} at {r.best:g}, the {'lowest' if r.best == r.lo else 'highest'} of its grid "
                    f"({r.lo:g} to {r.hi:g})")
    if not edge:
        return []
    return ["best rate at an edge of the grid the arm ran, so a rate beyond it might do better (information only; "
            "the rule uses the committed grid): " + "; ".join(edge)]


def thresholds(runs: pd.DataFrame) -> list[float]:
    """The accuracy thresholds the runs recorded steps-to-reach for (`steps_to_test_acc.<t>`)."""
    pre = "steps_to_test_acc."
    return sorted(float(c[len(pre):]) for c in runs.columns if c.startswith(pre))


def steps_column(threshold: float) -> str:
    return f"steps_to_test_acc.{threshold:g}"
