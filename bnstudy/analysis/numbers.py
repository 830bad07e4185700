"""The numbers a study's README may quote, as one tidy table: numbers.csv (and numbers.md) beside
report.md, written by `report`.

Three kinds of rows, one number each (with its 95% interval where it has one):

- cell: a quantity over the seeds of one cell, the finished runs of a study that share every
  config value the study varied but the seed (`cell` names them as runs.csv columns, e.g.
  "norm.name=bn; model.skipinit=False; optim.lr=0.1"): final test accuracy (a diverged run counts as
  chance), the same with precise BN statistics, best test accuracy, divergences, wall time.
- effect: each check's effect with its interval, minimum effect, seeds and verdict (the summary
  table's numbers; `mde`, the minimum detectable effect at 80% power, a distance from the
  minimum, a factor for ratios; `p`, the one-sided p-value behind a decided verdict; `why`, why
  an inconclusive verdict is one: rules.why_text), then the other effects the check computes
  (per part, with the verdict and why its interval gives where it has a minimum effect, and
  inconclusive with the check's blockers when something blocks the check; or as information;
  `cell` names the part).
- table: the numbers of each check's own table in the report, as printed there (rounded).

A README that quotes "42.0 ± 1.2" or "[+7.1, +10.0]" quotes a row of this table, and
tests/test_published.py recomputes the cell rows from runs.csv with a plain groupby.
"""
from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np
import pandas as pd

from .cells import value_text
from .results import FINISHED, NOT_THE_EXPERIMENT, experiment_columns
from .selection import phases
from .rules import INCONCLUSIVE, decision, p_value, why_text
from .stats import mean_ci

COLUMNS = ["study", "kind", "claim", "check", "quantity", "unit", "cell", "value", "half", "low", "high",
           "minimum", "mde", "p", "n", "verdict", "why"]
# the order a cell names its columns in (the rest follow alphabetically); a column the others
# determine is left out of the cell's name
FIRST = ("phase", "scale.name", "model.name", "norm.name", "model.skipinit", "model.depth", "init.name", "init.scale",
         "data.batch_size", "norm.ghost_batch_size", "norm.momentum", "model.dropout", "data.intensity_shift",
         "optim.lr")
ALWAYS_NAMED = ("norm.name",)  # kept in a cell's name whenever it varies
NOT_A_CELL = ("seed", "norm.noise_seed", *NOT_THE_EXPERIMENT)  # the noise seed follows the seed
SEP = "; "


def with_phase(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` with a `phase` column (select | measure) where some runs are selection runs."""
    chose, _ = phases(runs)
    if chose.empty:
        return runs
    return runs.assign(phase=np.where(runs.index.isin(chose.index), "select", "measure"))


def cell_columns(runs: pd.DataFrame) -> list[str]:
    """The columns that tell one study's cells apart: every config value that varies but the
    seed, less those the others determine."""
    cols = [c for c in experiment_columns(runs) if c not in NOT_A_CELL] + (["phase"] if "phase" in runs else [])
    # a key older runs lack (NaN) beside one value in newer runs is not varied: keys are added
    # with defaults that keep the old behaviour
    cols = [c for c in cols if runs[c].dropna().map(value_text).nunique() > 1]
    cols.sort(key=lambda c: (FIRST.index(c) if c in FIRST else len(FIRST), c))
    text = runs[cols].apply(lambda s: s.map(value_text))
    for c in reversed(list(cols)):  # drop the least telling first
        rest = [k for k in cols if k != c]
        # the norm is always named: a norm's unused config value (GroupNorm's default ghost batch
        # size, say) may tell its cells apart as well, but would name them by a setting they ignore
        if rest and c not in ALWAYS_NAMED and (text.groupby(rest)[c].nunique() <= 1).all():
            cols = rest
    return cols


def cell_name(keys: dict) -> str:
    return SEP.join(f"{k}={value_text(v)}" for k, v in keys.items())


def _row(study: str, kind: str, quantity: str, unit: str, value: float, half: float = math.nan, n: int = 0,
         **more) -> dict:
    half = float(half) if half is not None else math.nan
    return {"study": study, "kind": kind, "quantity": quantity, "unit": unit, "value": value, "half": half,
            "low": value - half if math.isfinite(half) else math.nan,
            "high": value + half if math.isfinite(half) else math.nan, "n": n} | more


def _pct(values) -> tuple[float, float, int]:
    m, h, n = mean_ci(pd.to_numeric(values, errors="coerce"))
    return 100 * m, 100 * h, n


def cell_rows(runs: pd.DataFrame, study: str) -> list[dict]:
    """Every cell of one study's finished runs, with its accuracies, divergences and wall time."""
    done = with_phase(runs[runs.status.isin(FINISHED)])
    if done.empty:
        return []
    cols = cell_columns(done)
    rows = []
    for keys, g in done.groupby(cols, sort=True, dropna=False) if cols else [((), done)]:
        keys = keys if isinstance(keys, tuple) else (keys,)
        cell = cell_name(dict(zip(cols, keys)))
        def add(quantity, unit, value, half=math.nan, n=0):
            rows.append(_row(study, "cell", quantity, unit, value, half, n, cell=cell))
        add("final test accuracy", "%", *_pct(g.final_acc))
        if "final_acc_precise" in g and g.final_acc_precise.notna().any():
            add("final test accuracy, precise BN statistics", "%", *_pct(g.final_acc_precise))
        if "best_test_acc" in g and pd.to_numeric(g.best_test_acc, errors="coerce").notna().any():
            add("best test accuracy", "%", *_pct(g.best_test_acc))
        add("diverged runs", "runs", float((g.status == "diverged").sum()), n=len(g))
        wall = pd.to_numeric(g["wall_time_s"], errors="coerce")[g.status == "completed"].dropna() \
            if "wall_time_s" in g else ()
        if len(wall):
            add("median wall time of a completed run", "min", float(wall.median() / 60), n=len(wall))
    return rows


def _effect_row(claim, v, label: str, e, est) -> dict:
    base = {"claim": claim.KEY, "check": v.title, "verdict": v.verdict if not label else "", "cell": label,
            "why": why_text(v) if not label else ""}
    if label and e is not None and est is not None and math.isfinite(e.minimum):  # a judged part: its own verdict
        # unless something blocks the check: then no part of it is decided either
        base["verdict"], base["why"] = (INCONCLUSIVE, why_text(v)) if v.blockers else decision(est, e)[:2]
    if e is None or est is None or not math.isfinite(est.value):
        return _row(claim.STUDY, "effect", e.name if e else "", e.unit if e else "", math.nan, **base)
    show = (lambda x: 2 ** x) if e.unit == "ratio" else (lambda x: x)
    lo, hi = (est.lo, est.hi) if est.has_interval else (math.nan, math.nan)
    row = _row(claim.STUDY, "effect", e.name, "x" if e.unit == "ratio" else "points", show(est.value),
               est.half if e.unit != "ratio" else math.nan, est.n, **base)
    mde = est.mde  # the minimum detectable effect at 80% power: a distance from the threshold
    return row | {"low": show(lo), "high": show(hi), "minimum": show(e.minimum),
                  "mde": (2 ** mde if e.unit == "ratio" else mde) if math.isfinite(mde) else math.nan,
                  "p": p_value(est, e, base["verdict"])}


def effect_rows(claim, verdicts: Sequence) -> list[dict]:
    """Each check's effect, interval, minimum and verdict, in the units the report prints them,
    then the other effects it computes (Verdict.estimates: per part, or information)."""
    rows = []
    for v in verdicts:
        rows.append(_effect_row(claim, v, "", v.effect, v.estimate))
        rows += [_effect_row(claim, v, label, e, est) for label, e, est in v.estimates]
    return rows


# a cell of a check's table: "46.0 ± 1.7 (n=5)", "+1.5 points ± 1.4", "2.56x", "74 ± 6 (n=15); not reached by 1/15"
CELL = re.compile(r"^([+-]?\d*\.?\d+)(?: points|%|x)?(?: ± (\d*\.?\d+))?(?: \(n=(\d+)\))?")


def table_rows(claim, verdicts: Sequence) -> list[dict]:
    """The numbers of each check's table (Verdict.numbers) as the report prints them: the
    columns that hold 'mean ± half' cells are quantities, the others name the row."""
    rows = []
    for v in verdicts:
        t = v.numbers.astype(str) if len(v.numbers) else pd.DataFrame()
        measured = [c for c in t if t[c].str.contains("±").any()]
        labels = [c for c in t if c not in measured]
        for _, r in t.iterrows():
            cell = SEP.join(f"{c}={r[c]}" for c in labels)
            for c in measured:
                m = CELL.match(r[c].strip())
                if m is None:
                    continue
                value, half, n = m.groups()
                rows.append(_row(claim.STUDY, "table", str(c), "", float(value), float(half) if half else math.nan,
                                 int(n) if n else 0, claim=claim.KEY, check=v.title, cell=cell))
    return rows


def table(runs: pd.DataFrame, checks: dict, claims: Sequence) -> pd.DataFrame:
    """numbers.csv: the cell rows of every study among `runs`, then the effects and tables of
    the checks of `claims` (those shown in the report)."""
    rows = []
    for study, g in runs.groupby("study", sort=True) if "study" in runs else []:
        rows += cell_rows(g, study)
    for claim in claims:
        rows += effect_rows(claim, checks[claim.KEY]) + table_rows(claim, checks[claim.KEY])
    out = pd.DataFrame(rows, columns=COLUMNS)
    return out.astype({"n": "Int64"})


def to_markdown(numbers: pd.DataFrame) -> str:
    """numbers.md: the same rows, one table per study and kind, values at the report's precision."""
    def fmt(x, digits=1):
        return "" if pd.isna(x) else f"{x:.{digits}f}"
    lines = ["# Numbers", "",
             "Every number the study's README quotes, from the runs in runs.csv (numbers.csv holds them at "
             "full precision). Means over seeds with 95% Student-t half-widths; a diverged run counts as chance.",
             ""]
    for (study, kind), g in numbers.groupby(["study", "kind"], sort=False):
        lines += [f"## {study}: {kind}s", ""]
        cols = {"cell": ["cell", "quantity", "value", "half", "n"],
                "effect": ["claim", "check", "cell", "quantity", "value", "low", "high", "minimum", "mde", "n",
                           "verdict", "why"],
                "table": ["check", "cell", "quantity", "value", "half", "n"]}[kind]
        t = g[cols].copy()
        for c in ("value", "half", "low", "high", "minimum", "mde"):
            if c in t:
                t[c] = [f"{x:g}" if kind == "table" and not pd.isna(x) else fmt(x, 3 if u == "x" else 1)
                        for x, u in zip(g[c], g.unit)]  # a check's table: as the report prints it
        t["quantity"] = [f"{q} ({u})" if u else q for q, u in zip(g.quantity, g.unit)]
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "---|" * len(cols))
        lines += ["| " + " | ".join(str(v).replace("|", "\\|") if not pd.isna(v) else "" for v in r) + " |"
                  for r in t.itertuples(index=False)]
        lines.append("")
    return "\n".join(lines)
