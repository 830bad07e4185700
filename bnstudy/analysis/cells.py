"""Choosing a claim's runs from the report's tables (bnstudy/analysis/results.py loads them): a
study's runs at its largest scale and phase, each arm at its best rate, the cells a grid left
incomplete, the rates at a grid's edge, and how cells and values are named."""
from __future__ import annotations

import itertools
import numbers
from typing import Collection, Sequence

import numpy as np
import pandas as pd

from ..runfolder import FINISHED
from .results import SCALE_ORDER, chance
from .rules import EDGE, INCOMPLETE, SEEN, TRAINED_MARGIN, Blocker, Note

# Note.kind of study_runs' notes on the runs it left out; data as named
SCALES = "several scales"  # data: {"scales": the scales present, "using": the one read}
DATA_SETS = "several data sets"  # data: {"data": the data sets present, "using": the one read}
UNFINISHED = "unfinished runs"  # data: {status: runs left out with it}
# the study chose its rates on selection seeds; data: {"selection_seeds": [...], "selection_runs": n}
SELECTED = "rates chosen on selection seeds"


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
        notes.append(Note(f"runs at scales {sorted(present)}: using scale={best} only", SCALES,
                          data={"scales": sorted(present), "using": best}))
        sel = sel[sel["scale.name"] == best]
    if "data.name" in sel and sel["data.name"].nunique() > 1:
        best = sel["data.name"].value_counts().index[0]
        present = sorted(sel["data.name"].unique())
        notes.append(Note(f"runs on data sets {present}: using data={best} only", DATA_SETS,
                          data={"data": present, "using": best}))
        sel = sel[sel["data.name"] == best]
    sel = _phase(sel, phase, notes)
    if not finished:
        return sel.copy(), notes
    unfinished = sel[~sel.status.isin(FINISHED)]
    if len(unfinished):
        counts = {s: int(n) for s, n in unfinished.status.value_counts().items()}
        notes.append(Note(f"left out {len(unfinished)} unfinished runs ("
                          + ", ".join(f"{n} {s}" for s, n in counts.items())
                          + "); the verdict may change when they finish", UNFINISHED, data=counts))
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
    notes.append(Note(f"the rates were chosen on {len(chose)} selection runs (seeds {seeds}), so the selection bias "
                      f"named in the rule does not arise; read on the {len(measured)} measuring runs at the chosen "
                      "rates", SELECTED, data={"selection_seeds": sorted(map(int, chose.seed.unique())),
                                               "selection_runs": len(chose)}))
    at_chosen = [_chosen_rate(arm, choices) == lr for arm, lr in zip(arm_names(measured), measured[RATE])]
    return measured[np.array(at_chosen, dtype=bool)]  # an array: an empty list would select no columns


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


def matching(runs: pd.DataFrame, spec: dict) -> pd.Series:
    """Whether each run has every value of `spec` ({column: value, or a tuple of numbers it may
    be}): e.g. the runs a rule was written after seeing. False for all where a column is absent."""
    out = pd.Series(True, index=runs.index)
    for col, value in spec.items():
        if col not in runs:
            return pd.Series(False, index=runs.index)
        out &= (pd.to_numeric(runs[col], errors="coerce").isin(value) if isinstance(value, tuple)
                else runs[col].astype(str).eq(value))
    return out


def fresh(runs: pd.DataFrame, seen: pd.Series, described: str) -> tuple[pd.DataFrame, list, list]:
    """(runs, blockers, notes) for a rule written after some of `runs` (`seen`, a mask: cells.matching)
    had been seen: those left out beside fresh runs (a note), or kept and blocking the verdict where
    they are all there is (Blocker kind rules.SEEN). `described`: which runs, e.g. "scale=cpu, seeds 0-4"."""
    if not seen.any():
        return runs, [], []
    n = int(seen.sum())
    if seen.all():
        text = f"the rule was written after these runs ({n}: {described}) had been seen: exploratory, fresh seeds decide"
        return runs, [Blocker(text, SEEN, described, {"runs": n})], [Note(text, SEEN, data={"runs": n})]
    return runs[~seen], [], [Note(f"left out {n} runs the rule was written after seeing ({described})", SEEN,
                                  data={"runs": n})]


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
    lacking: dict[str, list[str]] = {}
    for _, scope in scopes:
        seeds = scope.groupby(by + [rate], dropna=False)["seed"].nunique() if "seed" in scope else None
        most = int(seeds.max()) if seeds is not None and len(seeds) else 0
        rates = sorted(pd.to_numeric(scope[rate], errors="coerce").dropna().unique())
        for key in itertools.product(*(scope[c].drop_duplicates().tolist() for c in by)):
            cell = scope[np.logical_and.reduce([scope[c].eq(k) | (scope[c].isna() & pd.isna(k))
                                                for c, k in zip(by, key)])]
            name = _cell_name(key, prefixes)
            if not len(cell):
                lacking[name] = ["no finished run"]
                continue
            have = pd.to_numeric(cell[rate], errors="coerce")
            gaps = [f"rate {r:g} missing" for r in rates if not (have == r).any()]
            if most:
                n = cell.assign(_r=have).groupby("_r")["seed"].nunique()
                gaps += [f"{n[r]} of {most} seeds at {r:g}" for r in rates if r in n.index and n[r] < most]
            if gaps:
                lacking[name] = gaps
    if not lacking:
        return []
    return [Note("cells that lack part of the grid (a sweep cut short, or failed runs), each read on what it has: "
                 + "; ".join(f"{name}: {', '.join(gaps)}" for name, gaps in lacking.items()), INCOMPLETE,
                 data=lacking)]


def edge_rates(runs: pd.DataFrame, best: pd.DataFrame, by: Sequence[str], rate: str = "optim.lr",
               prefixes: Sequence[str] = ()) -> list[str]:
    """A note naming the `by` groups whose best `rate` (in `best`, from at_best_rate) is the lowest
    or highest rate that group ran in `runs`: a rate beyond the grid might have done better, so
    that arm's accuracy may be understated. A group is named by its values, each after its
    `prefixes` entry ('batch ' names 2 'batch 2'). Empty when no best rate sits at an edge.
    The note changes no verdict; edge_blockers turns the entries of the arms a rule compares
    into blockers."""
    by = list(by)
    if not len(best) or rate not in best or not set(by) <= set(best.columns):
        return []
    num = lambda d: d.assign(**{rate: pd.to_numeric(d[rate], errors="coerce")})  # noqa: E731
    grid = num(runs).groupby(by, dropna=False)[rate].agg(lo="min", hi="max", n="nunique")
    picked = num(best).groupby(by, dropna=False)[rate].first().rename("best")
    table = grid.join(picked, how="inner")  # index alignment matches NaN keys too
    nowhere = trained_nowhere(runs, by, rate)
    edge: dict[str, tuple] = {}
    for key, r in table.iterrows():
        if r.n < 2 or r.best not in (r.lo, r.hi) or key in nowhere:
            continue
        name = _cell_name(key if isinstance(key, tuple) else (key,), prefixes)
        edge[name] = (float(r.best), "lowest" if r.best == r.lo else "highest", float(r.lo), float(r.hi))
    if not edge:
        return []
    return [Note("best rate at an edge of the grid the arm ran, so a rate beyond it might do better (where the rule "
                 "compares that arm, the verdict waits for it: see the rule): "
                 + "; ".join(f"{name} at {b:g}, the {side} of its grid ({lo:g} to {hi:g})"
                             for name, (b, side, lo, hi) in edge.items()), EDGE, data=edge)]


NOWHERE_GRID = (3, 4.0)  # rates, span: the grid an arm must have failed on to be at no edge


def trained_nowhere(runs: pd.DataFrame, by: Sequence[str], rate: str = "optim.lr") -> set:
    """The `by` groups (keys as groupby gives them) that ran at least NOWHERE_GRID[0] rates spanning
    at least a factor NOWHERE_GRID[1] and whose mean final accuracy is within rules.TRAINED_MARGIN
    of chance at every one (a diverged run at chance): no best rate to bracket, so no edge
    (EDGE_RULE). A narrower grid at chance says too little: its arm stays at an edge."""
    if "final_acc" not in runs or not len(runs):
        return set()
    done = runs[runs.status.isin(FINISHED)] if "status" in runs else runs
    if not len(done):
        return set()
    bar = float(chance(done).iloc[0]) + TRAINED_MARGIN
    means = done.assign(acc=pd.to_numeric(done.final_acc, errors="coerce")).groupby(
        list(by) + [rate], dropna=False).acc.mean()
    level = list(range(len(by)))
    top = means.groupby(level=level, dropna=False).max()
    rates = pd.Series(pd.to_numeric(means.index.get_level_values(-1), errors="coerce"), index=means.index)
    wide = rates.groupby(level=level, dropna=False).agg(lambda r: len(r) >= NOWHERE_GRID[0]
                                                        and r.max() >= NOWHERE_GRID[1] * r.min())
    return {k for k, v in top.items() if not v >= bar and wide[k]}


# the rule every claim states whose arms are compared at their own best rates (amended
# 2026-12-07, after the published runs: results/HISTORY.md)
EDGE_RULE = ("A compared arm whose best rate is the lowest or the highest rate it ran makes the verdict "
             "inconclusive: a rate beyond the edge might do better, so the comparison would measure where the grid "
             "stopped; the next runs are that arm's at the next rate past the edge (x2 or /2), until a rate past its "
             "best does worse. A grid of two rates always has its best at an edge. A rate at "
             "which the arm diverged or did not train is part of its grid, so an arm is at an edge only where no "
             "rate past its best was run. An arm that trained at no rate of a grid of at least 3 rates spanning at least "
             "x4 (mean accuracy within 5 points of chance at each) has no best rate to bracket: it is at no edge, and counts as not trained where the rule needs it "
             "trained (amended 2026-12-07).")


def edge_blockers(notes: Sequence[str], cells: Collection[str]) -> list[Blocker]:
    """A Blocker (kind EDGE, subject the cell) for each of `cells` (named as edge_rates names
    them) whose best rate an EDGE note of `notes` puts at an edge of its grid (EDGE_RULE)."""
    out = []
    for note in notes:
        if getattr(note, "kind", "") != EDGE:
            continue
        for cell, (best, side, lo, hi) in note.data.items():
            if cell in cells:
                beyond = best / 2 if side == "lowest" else best * 2
                out.append(Blocker(f"{cell}'s best rate {best:g} is the {side} of its grid ({lo:g} to {hi:g}): "
                                   f"its runs at {beyond:g} would show whether a rate past the edge does better (if "
                                   "they do, the edge moves on)", EDGE, cell,
                                   {"best": best, "side": side, "grid": (lo, hi), "beyond": beyond}))
    return out


def thresholds(runs: pd.DataFrame) -> list[float]:
    """The accuracy thresholds the runs recorded steps-to-reach for (`steps_to_test_acc.<t>`)."""
    pre = "steps_to_test_acc."
    return sorted(float(c[len(pre):]) for c in runs.columns if c.startswith(pre))


def steps_column(threshold: float) -> str:
    return f"steps_to_test_acc.{threshold:g}"
