"""Finished runs -> two tidy tables, and the seed statistics every conclusion is drawn from.

`runs`: one row per run folder: every config value as a dotted column (`optim.lr`,
`norm.name`, ...), the summary (`status`, `final_test_acc`, `steps_to_test_acc.0.5`, ...),
the last value of each metrics.csv metric (`final.train/acc`, `final.infer/acc_batch.bs2`),
`final_acc` (see below), `run` (an id) and `run_dir`.
`curves`: the long-format metrics.csv and probes.csv rows of all runs with a `run` column.

Reads run folders only (anything holding summary.json, found recursively); never trains.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import yaml

FINISHED = ("completed", "diverged")  # a diverged run is a result; running/failed/interrupted are not (yet)
SCALE_ORDER = ("full", "cpu", "smoke")  # when a study ran at several scales, claims use the largest

# Student-t 97.5% quantiles for 1..30 degrees of freedom (two-sided 95% interval); above 30
# a Cornish-Fisher expansion around the normal quantile is accurate to < 1e-3.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042)


class NoRunsError(ValueError):
    """A sweep folder that does not exist or holds no run folders."""


@dataclass
class Results:
    runs: pd.DataFrame
    curves: pd.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (folder, why) for unreadable folders


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


def flatten(d: dict, prefix: str = "") -> dict:
    """{'optim': {'lr': 0.1}} -> {'optim.lr': 0.1}; lists become their YAML flow text."""
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
    """(one runs-table row, this run's curves) for one run folder."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    cfg_path = run_dir / "config.yaml"
    config = yaml.safe_load(cfg_path.read_text()) if cfg_path.exists() else {}
    row = flatten(config or {})
    summary.pop("traceback", None)  # many lines; the one-line `error` stays
    for k, v in flatten(summary).items():
        # provenance `seed` repeats the config; `device` differs (auto -> cpu): keep both
        if k in row and row[k] != v:
            k = f"run_{k}"
        row.setdefault(k, v)
    row["status"] = summary.get("status", "unknown")
    row["run_dir"] = str(run_dir.resolve())

    parts = []
    for source in ("metrics", "probes"):
        df = _read_rows(run_dir / f"{source}.csv")
        if df is not None:
            parts.append(df.assign(source=source))
    curves = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["step", "epoch", "metric", "value", "source"])
    # the last value of each metric: final train accuracy, inference and shift accuracies, ...
    keep = curves[(curves.source == "metrics") | curves.metric.str.startswith("test/")]
    if len(keep):
        last = keep.dropna(subset=["value"]).sort_values("step").groupby("metric").value.last()
        row.update({f"final.{m}": v for m, v in last.items()})
    return row, curves


def chance(runs: pd.DataFrame) -> pd.Series:
    return 1.0 / runs.get("model.num_classes", pd.Series(10, index=runs.index)).fillna(10).astype(float)


def load(paths: Sequence[Path]) -> Results:
    """Load every run folder under `paths` (NoRunsError when a path is missing or empty)."""
    dirs = find_run_dirs(paths)
    base = Path(os.path.commonpath([str(d.resolve()) for d in dirs]))
    rows, curves, skipped = [], [], []
    for d in dirs:
        try:
            row, c = load_run(d)
        except (OSError, ValueError, yaml.YAMLError) as e:  # a torn or foreign folder: say so, go on
            skipped.append((str(d), f"unreadable: {type(e).__name__}: {e}"))
            continue
        rel = d.resolve().relative_to(base).as_posix()
        row["run"] = rel if rel != "." else d.name
        rows.append(row)
        curves.append(c.assign(run=row["run"]))
    runs = pd.DataFrame(rows)
    if len(runs):
        # Accuracy a claim compares: a diverged run predicts no better than chance, so it counts
        # as chance rather than vanishing from the mean; running/failed runs have none yet.
        final = pd.to_numeric(runs.get("final_test_acc"), errors="coerce")
        runs["final_acc"] = np.where(runs.status == "diverged", chance(runs),
                                     np.where(runs.status == "completed", final, np.nan))
        first = ["run", "study", "status", "norm.name", "optim.lr", "data.batch_size", "seed"]
        runs = runs[[c for c in first if c in runs] + [c for c in runs if c not in first]]
        runs = runs.sort_values([c for c in ("study", "norm.name", "optim.lr", "data.batch_size", "seed", "run")
                                 if c in runs], ignore_index=True)
    curves = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(
        columns=["step", "epoch", "metric", "value", "source", "run"])
    return Results(runs, curves, skipped)


SKIPINIT = " + SkipInit"


def variant_names(runs: pd.DataFrame) -> pd.Series:
    """Each run's norm name, with ' + SkipInit' where it used model.skipinit: a different
    network, so a population of its own in every comparison and figure."""
    skip = runs["model.skipinit"].fillna(False).astype(bool) if "model.skipinit" in runs else False
    return runs["norm.name"] + np.where(skip, SKIPINIT, "")


def with_config(curves: pd.DataFrame, runs: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Curves rows with the named config columns of their run attached (for plots and verdicts)."""
    cols = ["run"] + [c for c in columns if c in runs.columns and c != "run"]
    return curves.merge(runs[cols], on="run", how="inner")


# ---------------------------------------------------------------- choosing runs for a claim

def study_runs(runs: pd.DataFrame, study: str) -> tuple[pd.DataFrame, list[str]]:
    """The finished runs of `study` at one scale and one data set, and notes on what was left out.

    Mixing scales (16 smoke steps with 160 epochs) would average unlike things, so a claim uses
    the largest scale present, and the data set with the most runs at it.
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
    unfinished = sel[~sel.status.isin(FINISHED)]
    if len(unfinished):
        counts = ", ".join(f"{n} {s}" for s, n in unfinished.status.value_counts().items())
        notes.append(f"left out {len(unfinished)} unfinished runs ({counts}); the verdict may change when they finish")
    return sel[sel.status.isin(FINISHED)].copy(), notes


# ---------------------------------------------------------------- statistics over seeds

def t975(dof: float) -> float:
    """The 97.5% quantile of Student's t with `dof` degrees of freedom (dof >= 1)."""
    if dof < 1 or not math.isfinite(dof):
        return math.nan if dof < 1 else 1.959964
    if dof <= 30 and float(dof).is_integer():
        return _T975[int(dof) - 1]
    if dof < 30:  # Welch dof are fractional: interpolate in 1/dof, where t is nearly linear
        lo, hi = math.floor(dof), math.ceil(dof)
        w = (1 / dof - 1 / hi) / (1 / lo - 1 / hi)
        return w * _T975[lo - 1] + (1 - w) * _T975[hi - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * dof) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * dof ** 2)


def mean_ci(values) -> tuple[float, float, int]:
    """(mean, 95% t-interval half-width, n) over finite values; half-width NaN when n < 2."""
    v = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce").dropna(), dtype=float)
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(v[0]), math.nan, 1
    return float(v.mean()), t975(n - 1) * float(v.std(ddof=1)) / math.sqrt(n), n


def diff_ci(a, b) -> tuple[float, float]:
    """mean(a) - mean(b) and its 95% Welch t-interval half-width (NaN when either has n < 2)."""
    a = np.asarray(pd.Series(a, dtype=float).dropna())
    b = np.asarray(pd.Series(b, dtype=float).dropna())
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan
    d = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return d, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return d, 0.0
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return d, float(t975(dof) * se)


def aggregate(df: pd.DataFrame, by: Sequence[str], value: str) -> pd.DataFrame:
    """Mean, 95% CI and n of `value` over the rows (seeds) of each `by` group.

    Columns: *by, mean, ci (half-width; NaN for n=1), lo, hi, n. Rows with no value are dropped.
    """
    by = list(by)
    cols = by + ["mean", "ci", "lo", "hi", "n"]
    v = df[by].assign(_v=pd.to_numeric(df[value], errors="coerce")) if len(df) else None
    if v is None or not v._v.notna().any():
        return pd.DataFrame(columns=cols)
    g = v.dropna(subset=["_v"]).groupby(by, sort=True, dropna=False)._v.agg(["mean", "std", "count"])
    out = g.reset_index().rename(columns={"count": "n"})
    t = out.n.map(lambda n: t975(n - 1) if n >= 2 else math.nan)
    out["ci"] = t * out["std"] / np.sqrt(out.n)
    out["lo"], out["hi"] = out["mean"] - out["ci"], out["mean"] + out["ci"]
    return out[cols]


def fmt_ci(mean: float, ci: float, n: int, digits: int = 3) -> str:
    """'0.712 ± 0.013 (n=3)', or '0.712 (n=1, no CI)'."""
    if n == 0 or mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    if n < 2 or math.isnan(ci):
        return f"{mean:.{digits}f} (n={n}, no CI)"
    return f"{mean:.{digits}f} ± {ci:.{digits}f} (n={n})"


def thresholds(runs: pd.DataFrame) -> list[float]:
    """The accuracy thresholds the runs recorded steps-to-reach for (`steps_to_test_acc.<t>`)."""
    pre = "steps_to_test_acc."
    return sorted(float(c[len(pre):]) for c in runs.columns if c.startswith(pre))


def steps_column(threshold: float) -> str:
    return f"steps_to_test_acc.{threshold:g}"
