"""The verdicts in results/README.md follow from the published tables: recompute each study's
verdicts from its committed runs.csv (and curves.csv.gz where a check reads probe curves)."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from bnstudy.analysis import report
from bnstudy.analysis.results import Results
from conftest import REPO

RESULTS = REPO / "results"


def bare(verdict: str) -> str:
    """A verdict without its parentheticals: '(was reproduced)' in the README, and MISSING's own
    '(runs missing)' on both sides."""
    return re.sub(r"\(.*?\)", "", verdict).strip()


def readme_verdicts() -> dict[str, list[str]]:
    """study -> the verdict column of its rows in results/README.md's table, in order."""
    out: dict[str, list[str]] = {}
    study = None
    for line in (RESULTS / "README.md").read_text().splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]  # \| is a literal bar
        if len(cells) != 5 or not line.startswith("| ") or cells[0] in ("study", "---"):
            continue
        m = re.match(r"\[(\w+)\]", cells[0])
        study = m.group(1) if m else study
        out.setdefault(study, []).append(bare(re.sub(r"\*\*", "", cells[3])))
    return out


PUBLISHED = readme_verdicts()


def test_every_study_is_in_the_summary():
    """Every study with a results folder; a study whose rules are written before its runs has none yet."""
    assert set(PUBLISHED) == {c.STUDY for c in report.CLAIMS if (RESULTS / c.STUDY).is_dir()}


@pytest.mark.parametrize("study", sorted(PUBLISHED))
def test_summary_verdicts_follow_from_the_published_runs(study):
    runs = pd.read_csv(RESULTS / study / "runs.csv")
    curves_path = RESULTS / study / "curves.csv.gz"
    curves = pd.read_csv(curves_path) if curves_path.exists() else pd.DataFrame(
        columns=["step", "epoch", "metric", "value", "source", "run"])
    checks = report.run_checks(Results(runs, curves, []))
    computed = [bare(v.verdict) for c in report.CLAIMS if c.STUDY == study for v in checks[c.KEY]]
    assert PUBLISHED[study] == computed


MEDIUM = sorted(p.name for p in RESULTS.glob("*-medium") if (p / "runs.csv").exists())


@pytest.mark.parametrize("folder", MEDIUM)
def test_a_published_medium_study_is_the_fair_test_its_protocol_promises(folder):
    """Selection and measuring seeds disjoint, every chosen rate inside its grid, >= 5 measuring
    seeds an arm at its chosen rate, one precision; plain BN near convergence on the whole test set."""
    from bnstudy.analysis import selection

    runs = pd.read_csv(RESULTS / folder / "runs.csv")
    assert selection.audit(runs) == []
    assert set(runs["n_test"]) == {10000} and set(runs["n_train"]) == {50000}
    _, measured = selection.phases(runs)
    bn = measured[selection.arm_names(measured).isin(["bn", "ghost128"])]
    assert len(bn) and bn.final_acc.mean() >= 0.85


# ---------------------------------------------------------------- the numbers a study README quotes

FOLDERS = sorted(p.parent for p in RESULTS.glob("**/runs.csv") if "in-progress" not in p.parts)


def numbers_of(folder) -> pd.DataFrame:
    return pd.read_csv(folder / "numbers.csv", keep_default_na=True)


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.relative_to(RESULTS).as_posix())
def test_numbers_are_what_the_report_writes_from_runs_csv(folder):
    """numbers.csv is not stale: the report's code, run on the published tables, writes the same."""
    from bnstudy.analysis import numbers
    from bnstudy.analysis.results import load

    res = load([folder])
    now = numbers.table(res.runs, report.run_checks(res), report.shown_claims(res.runs))
    was = numbers_of(folder)
    assert list(was.columns) == list(now.columns)
    assert len(was) == len(now)
    for col in ("study", "kind", "claim", "check", "quantity", "unit", "cell", "verdict"):
        assert was[col].fillna("").astype(str).tolist() == now[col].fillna("").astype(str).tolist(), col
    for col in ("value", "half", "low", "high", "minimum", "n"):
        assert np.allclose(was[col].astype(float), now[col].astype(float), rtol=1e-9, equal_nan=True), col


def _matches(column: pd.Series, text: str) -> pd.Series:
    """Plainly: does each runs.csv value read as the cell's text ('0.1', '128', 'False', 'bn', 'nan')?"""
    if text == "nan":
        return column.isna()
    if text in ("True", "False"):
        return column.astype(str) == text
    try:
        want = float(text)
    except ValueError:
        return column.astype(str) == text
    return np.isclose(pd.to_numeric(column, errors="coerce"), want)


def _t_half(values: pd.Series) -> float:
    return scipy.stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)) \
        if len(values) > 1 else np.nan


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.relative_to(RESULTS).as_posix())
def test_every_cell_number_follows_from_runs_csv_by_a_plain_groupby(folder):
    """Recomputed here from runs.csv alone, with pandas and scipy, not with bnstudy's analysis:
    each cell's runs (by its config values; the phase from the seed), a diverged run's accuracy as
    chance, means with Student-t half-widths, divergences, median wall time; every finished run in
    exactly one cell."""
    runs = pd.read_csv(folder / "runs.csv")
    runs = runs[runs.status.isin(["completed", "diverged"])].copy()
    chance = 1 / runs.get("model.num_classes", pd.Series(10, index=runs.index)).fillna(10)
    runs["acc"] = np.where(runs.status == "diverged", chance, runs.final_test_acc)
    if "final_test_acc_precise" in runs:
        runs["acc_precise"] = np.where(runs.status == "diverged", chance, runs.final_test_acc_precise)
    sel = runs.get("scale.selection_seeds", pd.Series(np.nan, index=runs.index))
    runs["phase"] = ["select" if pd.notna(s) and str(int(seed)) in str(s).replace(".0", "").split(",") else "measure"
                     for seed, s in zip(runs.seed, sel)]
    cells = numbers_of(folder).query("kind == 'cell'")
    assert len(cells)
    counted = 0
    for (study, cell), rows in cells.groupby(["study", "cell"], sort=False):
        mask = runs.study == study
        for part in cell.split("; "):
            key, text = part.split("=", 1)
            mask &= _matches(runs[key], text)
        g = runs[mask]
        q = rows.set_index("quantity")
        acc = q.loc["final test accuracy"]
        assert acc.n == len(g), cell
        counted += len(g)
        assert acc.value == pytest.approx(100 * g.acc.mean(), abs=1e-9), cell
        assert acc.half == pytest.approx(100 * _t_half(g.acc), abs=1e-9, nan_ok=True), cell
        if "final test accuracy, precise BN statistics" in q.index:
            p = q.loc["final test accuracy, precise BN statistics"]
            assert p.value == pytest.approx(100 * g.acc_precise.mean(), abs=1e-9), cell
        if "best test accuracy" in q.index:
            assert q.loc["best test accuracy", "value"] == pytest.approx(100 * g.best_test_acc.mean(), abs=1e-9)
        assert q.loc["diverged runs", "value"] == (g.status == "diverged").sum(), cell
        if "median wall time of a completed run" in q.index:
            wall = g[g.status == "completed"].wall_time_s
            assert q.loc["median wall time of a completed run", "value"] == pytest.approx(wall.median() / 60)
    assert counted == len(runs)


# a number as the READMEs print it: "42.0 ± 1.2", an interval "[+7.1, +10.0]", "33.5%", "+8.5 points"
PM = re.compile(r"([+-]?\d+\.\d+)(?: points| ?%)? ± (\d+\.\d+)")
INTERVAL = re.compile(r"\[([+-]?\d+\.\d+)(?: points|%|x)?, ([+-]?\d+\.\d+)(?: points|%|x)?\]")
PERCENT = re.compile(r"(?<![\d.±] )(?<![\d.])(\d+\.\d+)%")
POINTS = re.compile(r"(?<![\d.])([+-]\d+\.\d+) points(?! ±)")


def _shown(x: float, text: str) -> bool:
    """Does `x` print as `text` at text's precision?"""
    digits = len(text.split(".")[1])
    return np.isfinite(x) and f"{x:+.{digits}f}".lstrip("+") == text.lstrip("+") \
        or np.isfinite(x) and f"{x:.{digits}f}" == text


def quoted_numbers(readme: str) -> list[tuple[str, tuple[str, ...]]]:
    """(pattern name, the numbers) of every number a README quotes in the checked forms."""
    found = []
    for name, pattern in (("pm", PM), ("interval", INTERVAL), ("percent", PERCENT), ("points", POINTS)):
        found += [(name, m.groups()) for m in pattern.finditer(readme)]
    return found


READMES = sorted(f / "README.md" for f in FOLDERS if (f / "README.md").exists())


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.parent.relative_to(RESULTS).as_posix())
def test_every_number_a_study_readme_quotes_is_a_generated_number(readme):
    """Each 'mean ± half', interval, percentage and signed 'points' in the README is a row of
    numbers.csv beside it (or of a folder under it: a follow-up), as printed."""
    tables = [numbers_of(f) for f in FOLDERS if f == readme.parent or readme.parent in f.parents]
    t = pd.concat(tables, ignore_index=True)
    value, half, low, high = (t[c].astype(float).to_numpy() for c in ("value", "half", "low", "high"))
    unknown = []
    for name, nums in quoted_numbers(readme.read_text()):
        if name == "pm":
            ok = any(_shown(v, nums[0]) and _shown(h, nums[1]) for v, h in zip(value, half))
        elif name == "interval":
            ok = any(_shown(lo, nums[0]) and _shown(hi, nums[1]) for lo, hi in zip(low, high))
        else:
            ok = any(_shown(v, nums[0]) for v in value)
        if not ok:
            unknown.append(" / ".join(nums))
    assert not unknown, f"{readme.relative_to(REPO)} quotes numbers numbers.csv does not hold: {unknown}"
