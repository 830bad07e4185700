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

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Iterable, Optional, Sequence

import numpy as np
import pandas as pd
import yaml

from ..config import NOT_THE_EXPERIMENT
from ..outputs import flatten
from ..runfolder import FINISHED, live_status

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
    row["status"] = live_status(run_dir, summary["status"])
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
