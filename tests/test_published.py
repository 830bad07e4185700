"""The verdicts in results/README.md follow from the published tables: recompute each study's
verdicts from its committed runs.csv (and curves.csv.gz where a check reads probe curves)."""
from __future__ import annotations

import re

import pandas as pd
import pytest

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
