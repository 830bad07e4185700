"""Assemble the study report: tables, figures and one verdict per claim, from finished runs.

`python -m bnstudy report SWEEP_DIR ... --out DIR` writes into DIR:
  runs.csv        one row per run (config, status, summary metrics)
  curves.csv.gz   every metrics.csv and probes.csv row, with a `run` column
  figures/        one PNG and PDF per figure whose runs are present
  report.md       per claim: numbers with 95% CIs, verdict, the rule behind it, figures
  report.html     the same, figures inline (self-contained)
  numbers.csv/md  every number a README may quote: per cell and per check (analysis/numbers.py)
SWEEP_DIR may also be a folder an earlier report wrote (runs.csv, curves.csv.gz): the report is
then rebuilt from those tables. Nothing is trained; partial sweeps are fine, and the report
says what it left out and why. The claims come from bnstudy/claims/; this module knows none
by name.
"""
from __future__ import annotations

import datetime
import math
import shutil
from pathlib import Path
from typing import Callable, Collection, Optional, Sequence, Union

import pandas as pd
from matplotlib.figure import Figure

from .. import claims as C
from . import compare, numbers, rules, selection, style
from .cells import mixed_precisions, study_runs, value_text
from .document import Block, to_html, to_markdown
from .results import FINISHED, Results, experiment_columns, load, variant_names, with_config
from .rules import Verdict

CLAIMS = C.CLAIMS  # modules: KEY, STUDY, TITLE, STATEMENT, CHECKS, FIGURES
CURVE_COLUMNS = ["norm.name", "model.skipinit", "optim.lr", "seed", "status", "model.name",
                 "probes.activations.hist_range"]  # model.skipinit: results.variant_names


def run_checks(res: Results) -> dict[str, list[Verdict]]:
    """Every claim's checks on these runs: claim key -> its verdicts."""
    return {c.KEY: [check(res.runs, res.curves) for check in c.CHECKS] for c in CLAIMS}


def draw_figures(res: Results, checks: Optional[dict] = None) -> dict[str, Union[Figure, str]]:
    """Every figure whose runs are present; for the others, why it was not drawn."""
    checks = checks or run_checks(res)
    out: dict[str, Union[Figure, str]] = {}
    for claim in CLAIMS:
        sel, _ = study_runs(res.runs, claim.STUDY)
        curves = with_config(res.curves[res.curves.run.isin(sel.run)], sel, CURVE_COLUMNS) if len(sel) else None
        for name, (draw, _) in claim.FIGURES.items():
            try:
                if not len(sel):
                    raise style.NotDrawn(f"no finished runs of study {claim.STUDY}")
                out[name] = draw(sel, curves, checks[claim.KEY])
            except style.NotDrawn as e:
                out[name] = str(e)
    free = compare.free_runs(res.runs, {c.STUDY for c in CLAIMS})
    if len(free):
        try:
            out["arm_curves"] = compare.accuracy_curves(free, res.curves[res.curves.run.isin(free.run)])
        except style.NotDrawn as e:
            out["arm_curves"] = str(e)
    return out


def write_figures(figs: dict, fig_dir: Path) -> list[Path]:
    written = []
    for name, fig in figs.items():
        if isinstance(fig, Figure):
            written += style.save(fig, fig_dir / name)
    return written


# ---------------------------------------------------------------- the report

def _status_table(runs: pd.DataFrame) -> pd.DataFrame:
    t = runs.groupby(["study", "status"]).size().unstack("status", fill_value=0)
    t.columns.name = None
    return t.reset_index()


def _unfinished(runs: pd.DataFrame) -> pd.DataFrame:
    u = runs[~runs.status.isin(FINISHED)]
    if "norm.name" in u:  # a SkipInit run is its own arm: say so (results.variant_names)
        u = u.assign(**{"norm.name": variant_names(u)})
    why = u.get("error", pd.Series("", index=u.index)).fillna("")
    cols = [c for c in ("run", "study", "norm.name", "optim.lr", "seed") if c in u]
    return u[cols].assign(status=u.status, why=why.str.slice(0, 120)).reset_index(drop=True)


def shown_claims(runs: pd.DataFrame) -> list:
    """The claims whose study has run folders here: a claim of another study gets one line in
    the report, not a section (a sweep of no named study gets the comparison of its arms)."""
    present = set(runs.get("study", pd.Series(dtype=str)).dropna())
    return [c for c in CLAIMS if c.STUDY in present]


STUDIES = {c.STUDY for c in CLAIMS}


def _comparison_blocks(runs: pd.DataFrame, figs: dict) -> list[Block]:
    """The arms a sweep of no named study varied, side by side (analysis/compare.py)."""
    free = compare.free_runs(runs, STUDIES)
    t = compare.table(free) if len(free) else pd.DataFrame()
    if t.empty:
        return []
    cols = compare.varied(free)
    blocks: list[Block] = [("h2", "Comparison of the arms this sweep varied"),
                           ("p", f"{len(free)} runs of no named study ({', '.join(sorted(free.study.unique()))}); "
                                 f"arms by {', '.join(cols) or 'nothing: one arm'}"
                                 + (", each at its own best peak rate (highest mean final test accuracy; the "
                                    "rate table below gives every rate)" if "best rate" in t else "")
                                 + ". Accuracies are means over seeds with 95% t intervals; a diverged run counts "
                                   "as chance. No claim is judged here."),
                           ("table", t)]
    rates = compare.rate_table(free)
    if len(rates):
        blocks.append(("table", rates))
    if isinstance(figs.get("arm_curves"), Figure):
        blocks.append(("fig", "arm_curves", "Test accuracy against step for each arm, mean and 95% band over seeds."))
    return blocks


def summary_row(claim, v: Verdict) -> dict:
    """One check in the summary: its verdict with the effect, 95% interval, minimum effect and seeds."""
    e, est = v.effect, v.estimate
    has = e is not None and est is not None and math.isfinite(est.value)
    return {"claim": claim.TITLE, "check": v.title, "verdict": v.verdict,
            "effect": e.fmt(est.value) if has else "—",
            "95% interval": f"[{e.fmt(est.lo)}, {e.fmt(est.hi)}]" if has and est.has_interval else "—",
            "minimum effect": e.fmt(e.minimum) if e is not None else "—",
            "seeds": est.n if has else "—"}


def summary_table(shown: list, checks: dict) -> pd.DataFrame:
    return pd.DataFrame([summary_row(c, v) for c in shown for v in checks[c.KEY]])


def _selection_blocks(runs: pd.DataFrame) -> list[Block]:
    """Where a study chose its rates on selection seeds: the grid, the accuracy at each rate, the
    choice, and what keeps the measuring runs from being read at it."""
    blocks: list[Block] = []
    for (study, scale), cell in runs.groupby(["study", "scale.name"]) if {"study", "scale.name"} <= set(runs) else []:
        chose, measured = selection.phases(cell)
        if chose.empty:
            continue
        choices = selection.choose(chose)
        blocks.append(("h2", f"Rates chosen on selection seeds: {study}, scale={scale}"))
        blocks.append(("p", f"*Rule.* {selection.RULE} Measuring runs here: {len(measured)}, seeds "
                            f"{', '.join(map(str, sorted(measured.seed.unique()))) or 'none yet'}."))
        blocks.append(("table", selection.table(choices)))
        problems = selection.measuring_problems(chose, measured, choices)
        if problems:
            blocks.append(("list", problems))
    return blocks


def plumbing_only(runs: pd.DataFrame) -> str:
    """Why these runs can only test the harness ('smoke-scale', 'on synthetic data'), or ''."""
    why = []
    if len(runs) and (runs.get("scale.name", pd.Series(dtype=str)) == "smoke").any():
        why.append("smoke-scale (a few dozen steps)")
    if len(runs) and (runs.get("data.name", pd.Series(dtype=str)) == "synthetic").any():
        why.append("on synthetic data")
    return " and ".join(why)


def _left_out(res: Results, runs: pd.DataFrame, shown: list, figs: dict) -> list[Block]:
    """The runs and figures a report leaves out, and why."""
    blocks: list[Block] = []
    blocks.append(("h2", "Left out"))
    unfinished = _unfinished(runs) if len(runs) else pd.DataFrame()
    blocks.append(("p", f"{len(unfinished)} runs not finished (running, failed or interrupted) were left out"
                   + (":" if len(unfinished) else ".")))
    if len(unfinished):
        blocks.append(("table", unfinished))
    if res.skipped or res.duplicates:
        blocks.append(("p", "Run folders left out:"))
        blocks.append(("list", [f"`{line}`" for line in res.warnings()]))
    names = {n for c in shown for n in c.FIGURES} | ({"arm_curves"} if len(compare.free_runs(runs, STUDIES)) else set())
    not_drawn = [f"`{n}`: {why}" for n, why in figs.items() if not isinstance(why, Figure) and n in names]
    if not_drawn:
        blocks.append(("p", "Figures not drawn:"))
        blocks.append(("list", not_drawn))
    return blocks


def build(res: Results, checks: dict, figs: dict, sources: Sequence[str]) -> list[Block]:
    runs = res.runs
    shown = shown_claims(runs)
    absent = [c for c in CLAIMS if c not in shown]
    blocks: list[Block] = [("h1", "BatchNorm claims: what these runs show")]
    why = plumbing_only(runs)
    if why:
        blocks.append(("banner", "These numbers test the harness, not BatchNorm.",
                       f"The runs are {why}: far too short or too artificial for any verdict below to say what "
                       "BatchNorm does. Run a study at scale=cpu or medium on CIFAR-10 for that."))
    if shown:  # the answer first: every check's verdict with its effect and interval
        blocks.append(("table", summary_table(shown, checks)))
    version = ", ".join(sorted(map(str, runs.get("git_commit", pd.Series(dtype=str)).dropna().unique()))) or "unknown"
    blocks.append(("p", f"Made by `python -m bnstudy report {' '.join(map(str, sources))}` on "
                        f"{datetime.date.today().isoformat()} from {len(runs)} runs "
                        f"(code commit of the runs: {version}). Nothing was retrained."))
    if len(runs):
        blocks.append(("table", _status_table(runs)))
    if not shown:  # a sweep of no named study: its comparison is the report
        blocks.append(("p", "No named study among these runs, so no claim is judged; the arms the sweep varied are "
                            "compared below. The named studies: `python -m bnstudy run --help` (exp)."))
        blocks += _selection_blocks(runs) + _comparison_blocks(runs, figs) + _left_out(res, runs, shown, figs)
        return blocks
    blocks.append(("p", "How to read it: numbers are means over seeds with a 95% Student-t interval "
                        "(`mean ± half-width (n=seeds)`; with one seed, no interval). A diverged run counts as "
                        "chance accuracy. Each check computes one effect over seeds with a 95% interval and "
                        "compares it with a minimum effect fixed beside its rule: reproduced when the interval "
                        "lies beyond the minimum effect in the claimed direction, not reproduced when it lies "
                        "short of it, inconclusive otherwise, or when a compared arm did not train (within "
                        f"{100 * rules.TRAINED_MARGIN:.0f} points of chance) or has fewer than {rules.MIN_SEEDS} "
                        "seeds; an inconclusive verdict says why and how many seeds the observed spread would "
                        "need. Only finished runs (completed or diverged) enter the numbers; each study is read "
                        f"at its largest scale present. The rules were rewritten on {rules.RULES_DATE}, after the "
                        "cpu-scale runs had been seen (results/HISTORY.md gives the verdicts before and after)."))
    blocks += _selection_blocks(runs)
    blocks += _comparison_blocks(runs, figs)
    for i, claim in enumerate(shown, 1):
        vs = checks[claim.KEY]
        blocks.append(("h2", f"{i}. {claim.TITLE}"))
        blocks.append(("p", f"*Claim.* {claim.STATEMENT}"))
        rule = None
        for v in vs:
            if len(vs) > 1:
                blocks.append(("h3", v.title))
            blocks.append(("p", f"**Verdict: {v.verdict}**" + (f" — {v.title}." if len(vs) == 1 else "")))
            if v.rule != rule:  # checks that share a rule print it once
                blocks.append(("details", "Rule", v.rule))
                rule = v.rule
            if v.missing:
                blocks.append(("p", f"*Not tested:* {v.missing}."))
            if v.finding:
                blocks.append(("p", f"*Finding.* {v.finding}"))
            if v.notes:
                blocks.append(("list", v.notes))
            if len(v.numbers):
                blocks.append(("table", v.numbers))
        for name, (_, caption) in claim.FIGURES.items():
            if isinstance(figs.get(name), Figure):
                blocks.append(("fig", name, caption))
    if absent:
        blocks.append(("h2", "Not tested here"))
        blocks.append(("p", "No runs of their study among these folders: " + "; ".join(
            f"{c.TITLE.lower()} (`python -m bnstudy run +exp={c.STUDY}`)" for c in absent) + "."))
    return blocks + _left_out(res, runs, shown, figs)


def write_tables(res: Results, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    res.runs.to_csv(out / "runs.csv", index=False)
    cols = ["run"] + [c for c in res.curves.columns if c != "run"]
    if len(res.curves):  # a published folder may hold runs.csv alone (its curves too large to publish)
        res.curves[cols].to_csv(out / "curves.csv.gz", index=False, compression={"method": "gzip", "mtime": 0})


def _load(sources: Sequence[Path], warn: Optional[Callable[[str], None]],
          keep: Optional[Collection[Path]] = None) -> Results:
    res = load(sources, keep)
    for line in res.warnings():
        (warn or (lambda _: None))(line)
    return res


def plot(sources: Sequence[Path], out: Path, warn: Optional[Callable[[str], None]] = None) -> dict[str, Union[Path, str]]:
    """Figures only: `out`/figures/*.png|pdf. Returns name -> PNG path, or why it was not drawn.
    `warn` gets one line per run folder left out (unreadable, or a repeated config and seed)."""
    res = _load(sources, warn)
    checks = run_checks(res)
    figs = draw_figures(res, checks)
    write_figures(figs, Path(out) / "figures")
    return {n: (Path(out) / "figures" / f"{n}.png" if isinstance(f, Figure) else f) for n, f in figs.items()}


class MixedPrecisionError(ValueError):
    """A study's runs trained in more than one precision (cells.mixed_precisions)."""


class ReportExistsError(ValueError):
    """The output folder holds a report of runs that are not among these."""


WRITTEN = ("runs.csv", "curves.csv.gz", "report.md", "report.html", "numbers.csv", "numbers.md", "figures")  # what report() writes into `out`


def _identities(runs: pd.DataFrame, cols: Sequence[str]) -> set[tuple]:
    """Each run's values of `cols`, as text that reads the same from a run folder and runs.csv."""
    return {tuple(value_text(v) for v in row) for row in runs[list(cols)].itertuples(index=False)}


def other_runs(out: Path, runs: pd.DataFrame) -> int:
    """How many runs of the report already in `out` are not among `runs` (compared on the
    config columns both tables have): what writing a new report there would lose."""
    old_csv = Path(out) / "runs.csv"
    if not old_csv.exists():
        return 0
    try:
        old = pd.read_csv(old_csv)
    except (OSError, ValueError, pd.errors.ParserError):
        return 1  # unreadable, but a report's table all the same
    cols = [c for c in experiment_columns(old) if c in runs.columns]
    if not cols or not len(old):
        return len(old)
    return len(_identities(old, cols) - _identities(runs, cols))


def report(sources: Sequence[Path], out: Path, warn: Optional[Callable[[str], None]] = None,
           keep: Optional[Collection[Path]] = None, force: bool = False) -> dict[str, list[Verdict]]:
    """Tables, figures, report.md and report.html into `out`; returns the verdicts of the
    claims whose study is among the runs. `warn` as for plot(); `keep` as for results.load
    (reproduce: the run folders of the sweep it just ran). Before anything is written:
    MixedPrecisionError when a study's runs trained in more than one precision, and
    ReportExistsError when `out` holds a report of runs not among these (with `force`, what that
    report wrote is removed first; a hand-written README.md or provenance.md stays)."""
    out = Path(out)
    res = _load(sources, warn, keep)
    mixed = mixed_precisions(res.runs)
    if mixed:
        raise MixedPrecisionError("; ".join(mixed))
    in_place = any(Path(s).resolve() == out.resolve() for s in sources)  # rebuilding a report: its tables are the source
    lost = 0 if in_place else other_runs(out, res.runs)
    if lost and not force:
        raise ReportExistsError(f"{out} holds a report of {lost} run(s) that are not among these; pass --force to "
                                "replace it, or --out another folder")
    if lost:
        for name in WRITTEN:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    if not in_place:
        write_tables(res, out)
    checks = run_checks(res)
    figs = draw_figures(res, checks)
    write_figures(figs, out / "figures")
    blocks = build(res, checks, figs, sources)
    (out / "report.md").write_text(to_markdown(blocks))
    (out / "report.html").write_text(to_html(blocks, out / "figures", "BatchNorm claims report"))
    quoted = numbers.table(res.runs, checks, shown_claims(res.runs))
    quoted.to_csv(out / "numbers.csv", index=False)
    (out / "numbers.md").write_text(numbers.to_markdown(quoted))
    return {c.KEY: checks[c.KEY] for c in shown_claims(res.runs)}
