"""The published results follow from their runs: each study's numbers.csv (verdicts, effects,
cells) is what the report's code computes from its committed runs.csv (and curves.csv.gz); its
cells again by a plain pandas groupby; every number a study README quotes is in its numbers.csv;
the verdict tables of README.md and results/README.md are made from those files."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from bnstudy.analysis import published, report
from conftest import REPO

RESULTS = REPO / "results"


def test_the_verdict_tables_in_the_readmes_are_what_verdicts_writes():
    """README.md and results/README.md show the table `python -m bnstudy verdicts` makes from every
    published numbers.csv, which the tests below check against runs.csv."""
    for readme in (REPO / "README.md", RESULTS / "README.md"):
        shown = published.BLOCK.search(readme.read_text())
        assert shown, f"{readme} has no verdict block"
        assert shown.group(0) == published.block(RESULTS, readme.parent), \
            f"{readme}: run python -m bnstudy verdicts --write README.md results/README.md"


def test_every_study_is_in_the_verdict_table():
    """Every claim's study with a results folder (STUDY/ at cpu scale, STUDY-medium/ at medium); a
    study whose rules are written before its runs has none yet."""
    rows = published.rows(RESULTS, RESULTS)
    studies = {re.match(r"\[(\w[\w-]*)\]", s).group(1) for s in rows.study}
    at_scale = {f"{c.STUDY}-{scale}" for c in report.CLAIMS for scale in ("medium", "full")}
    assert studies == ({c.STUDY for c in report.CLAIMS if (RESULTS / c.STUDY).is_dir()}
                       | {name for name in at_scale if (RESULTS / name).is_dir()})
    for c in report.CLAIMS:  # every check of a published study has its row
        if (RESULTS / c.STUDY).is_dir():
            checks = numbers_of(RESULTS / c.STUDY).query("kind == 'effect' and claim == @c.KEY")
            assert set(checks.check) <= set(rows.check)


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
    for col in ("value", "half", "low", "high", "minimum", "mde", "n"):
        assert np.allclose(was[col].astype(float), now[col].astype(float), rtol=1e-9, equal_nan=True), col


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.relative_to(RESULTS).as_posix())
def test_every_published_inconclusive_verdict_says_why(folder):
    effects = numbers_of(folder).query("kind == 'effect'")
    main = effects[effects.cell.isna() | (effects.cell == "")]
    assert (main.why.notna() == (main.verdict == "inconclusive")).all(), main[["check", "verdict", "why"]]


# where the rate is the claim (the largest stable rate of a range test), a best accuracy at an
# edge of the rate range is no chosen rate
RATE_IS_THE_CLAIM = {"lr_range"}
# where every rate of the grid is a comparison of its own (both arms at each rate), no rate is chosen
EACH_RATE_COMPARED = {"zero_init"}
CONFIG_GROUPS = ("data.", "model.", "norm.", "init.", "optim.", "schedule.", "trainer.", "evaluation.")


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.relative_to(RESULTS).as_posix())
def test_no_decided_verdict_stands_on_a_cell_best_at_its_grids_edge(folder):
    """Independently of the claim code: in a folder with a decided verdict, every cell (the runs
    that share every setting but seed and rate) that ran more than one rate has its best rate (the
    highest mean final accuracy, a diverged run at chance, a tie to the lower rate) strictly inside
    the rates it ran; where rates were chosen on selection seeds, the selection runs' grid is read."""
    from bnstudy.analysis import selection
    from bnstudy.config import NOT_THE_EXPERIMENT

    effects = numbers_of(folder).query("kind == 'effect'")
    if not effects.verdict.isin(["reproduced", "not reproduced"]).any() or folder.name in RATE_IS_THE_CLAIM | EACH_RATE_COMPARED:
        pytest.skip("no decided verdict that chooses rates")
    runs = pd.read_csv(folder / "runs.csv")
    runs = runs[runs.status.isin(["completed", "diverged"])]
    chosen_on, _ = selection.phases(runs)
    grid = chosen_on if len(chosen_on) else runs
    keys = [c for c in grid.columns if c.startswith(CONFIG_GROUPS) and c not in NOT_THE_EXPERIMENT
            and c != "optim.lr" and grid[c].astype(str).nunique() > 1]
    at_edge = []
    for cell, g in (grid.groupby([grid[k].astype(str) for k in keys]) if keys else [("all", grid)]):
        means = g.groupby("optim.lr").final_acc.mean()
        if len(means) < 2:
            continue
        best = means[means == means.max()].index.min()
        if best in (means.index.min(), means.index.max()):
            at_edge.append((cell, best))
    assert not at_edge, f"{folder.name}: best rate at an edge of its grid: {at_edge}"


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
MDE = re.compile(r"minimum detectable (?:effect )?(?:of )?x?(\d+\.?\d*)")


def _shown(x: float, text: str) -> bool:
    """Does `x` print as `text` at text's precision?"""
    digits = len(text.split(".")[1]) if "." in text else 0
    return np.isfinite(x) and f"{x:+.{digits}f}".lstrip("+") == text.lstrip("+") \
        or np.isfinite(x) and f"{x:.{digits}f}" == text


def quoted_numbers(readme: str) -> list[tuple[str, tuple[str, ...]]]:
    """(pattern name, the numbers) of every number a README quotes in the checked forms."""
    found = []
    for name, pattern in (("pm", PM), ("interval", INTERVAL), ("percent", PERCENT), ("points", POINTS), ("mde", MDE)):
        found += [(name, m.groups()) for m in pattern.finditer(readme)]
    return found


READMES = sorted(f / "README.md" for f in FOLDERS if (f / "README.md").exists())


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.parent.relative_to(RESULTS).as_posix())
def test_every_number_a_study_readme_quotes_is_a_generated_number(readme):
    """Each 'mean ± half', interval, percentage, signed 'points' and minimum detectable effect in
    the README is a row of numbers.csv beside it (or of a folder under it: a follow-up), as printed."""
    tables = [numbers_of(f) for f in FOLDERS if f == readme.parent or readme.parent in f.parents]
    t = pd.concat(tables, ignore_index=True)
    value, half, low, high, mde = (t[c].astype(float).to_numpy() for c in ("value", "half", "low", "high", "mde"))
    unknown = []
    for name, nums in quoted_numbers(readme.read_text()):
        if name == "pm":
            ok = any(_shown(v, nums[0]) and _shown(h, nums[1]) for v, h in zip(value, half))
        elif name == "interval":
            ok = any(_shown(lo, nums[0]) and _shown(hi, nums[1]) for lo, hi in zip(low, high))
        elif name == "mde":
            ok = any(_shown(m, nums[0]) or f"{m:.3g}" == nums[0] for m in mde if np.isfinite(m))
        else:
            ok = any(_shown(v, nums[0]) for v in value)
        if not ok:
            unknown.append(" / ".join(nums))
    assert not unknown, f"{readme.relative_to(REPO)} quotes numbers numbers.csv does not hold: {unknown}"


def test_verdicts_rewrites_only_its_block_and_refuses_a_file_without_one(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(f"intro\n\n{published.START}\nold table\n{published.END}\n\nafter\n")
    published.write(RESULTS, [page])
    text = page.read_text()
    assert text.startswith("intro\n\n") and text.endswith("\n\nafter\n") and "old table" not in text
    assert "| study | scale | runs | check | verdict |" in text
    bare = tmp_path / "bare.md"
    bare.write_text("no markers here\n")
    with pytest.raises(ValueError, match="no <!-- verdicts:start -->"):
        published.write(RESULTS, [bare])
    assert bare.read_text() == "no markers here\n"


def test_a_check_published_at_two_scales_is_shown_side_by_side():
    """Matched by title (a trailing "(...)" dropped), one column a scale; a check at one scale only
    has no row there."""
    t = pd.DataFrame({"study": ["[a](a/)", "[b](b/)", "[a-medium](a-medium/)", "[a](a/)"],
                      "scale": ["cpu", "cpu", "medium", "cpu"],
                      "check": ["BN is faster", "BN is faster (dense)", "BN is faster", "BN is deep"],
                      "verdict": ["inconclusive", "reproduced", "not reproduced", "reproduced"],
                      "effect": ["1.9x", "2.6x", "1.25x", "+3.0 points"],
                      "95% interval": ["[1.1x, 4.4x]", "[2.2x, ∞]", "[1.13x, 1.4x]", "(per part)"]})
    both = published.side_by_side(t)
    assert list(both.columns) == ["claim", "cpu", "medium"] and list(both.claim) == ["BN is faster"]
    row = both.iloc[0]
    assert row.cpu == "[a](a/): inconclusive, 1.9x [1.1x, 4.4x]<br>[b](b/): **reproduced**, 2.6x [2.2x, ∞]"
    assert row.medium == "[a-medium](a-medium/): **not reproduced**, 1.25x [1.13x, 1.4x]"


def test_holm_steps_down_and_every_decided_verdict_has_its_p_below_the_intervals_level():
    nan = float("nan")
    assert published.holm([0.001, 0.013, 0.02, nan]) == [True, False, False, False]
    assert published.holm([0.02, 0.001, 0.01]) == [True, True, True]  # 0.001 <= .025/3, 0.01 <= .025/2, 0.02 <= .025
    for folder in FOLDERS:  # p < 0.025 exactly where the 95% interval excludes the minimum effect
        e = numbers_of(folder).query("kind == 'effect' and verdict in ('reproduced', 'not reproduced')")
        e = e[e.value.notna()]  # a check decided per part has no estimate of its own: its parts have
        assert (e.p < published.ALPHA).all(), folder
        other = numbers_of(folder).query("kind == 'effect' and verdict not in ('reproduced', 'not reproduced')")
        assert other.p.isna().all(), folder
