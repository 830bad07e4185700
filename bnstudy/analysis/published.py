"""The published studies (results/STUDY/, each written by `report`): their verdict table, as
README.md and results/README.md show it between two markers.

    python -m bnstudy verdicts [RESULTS_DIR] [--write FILE ...]

prints the tables (first the checks published at more than one scale, side by side; then every
check of every study), or rewrites the block between `<!-- verdicts:start -->` and
`<!-- verdicts:end -->` in each FILE (links relative to it). The table is read from each study's
numbers.csv (its effect rows) and runs.csv (scale, run count): nothing is recomputed here, and a
test checks that both READMEs hold what this writes.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pandas as pd

from .results import SCALE_ORDER
from .rules import Effect

START, END = "<!-- verdicts:start -->", "<!-- verdicts:end -->"
DECIDED = ("reproduced", "not reproduced")
# each decided verdict is a one-sided test at 2.5% (its 95% interval beyond or short of the
# minimum effect); Holm keeps that error rate for the family of every published verdict
ALPHA = 0.025
BLOCK = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)


def study_folders(results: Path) -> list[Path]:
    """results/STUDY folders a report wrote (runs.csv and numbers.csv), in name order; their
    subfolders (superseded protocols, follow-ups) are linked from the study's own README."""
    return sorted(p for p in Path(results).iterdir() if (p / "runs.csv").exists() and (p / "numbers.csv").exists())


def _effect(unit: str) -> Effect:
    return Effect("", "ratio" if unit == "x" else "points", math.nan)


def _estimate_units(v: float, unit: str) -> float:
    """A number as numbers.csv prints it (a ratio as a factor) back in the estimate's units (log2)."""
    return (math.log2(v) if v > 0 else -math.inf) if unit == "x" else v


def _shown(row) -> str:
    """'+8.5 points' or '2.56x', as the report prints it (Effect.fmt; a ratio is stored as printed)."""
    return _effect(row.unit).fmt(_estimate_units(row.value, row.unit)) if pd.notna(row.value) else "—"


def _interval(row) -> str:
    if pd.isna(row.low) or pd.isna(row.high):
        return "—"
    e = _effect(row.unit)
    return f"[{e.fmt(_estimate_units(row.low, row.unit))}, {e.fmt(_estimate_units(row.high, row.unit))}]".replace(
        " points", "")


def rows(results: Path, relative_to: Path) -> pd.DataFrame:
    """One row per check of every published study."""
    out = []
    for folder in study_folders(results):
        numbers = pd.read_csv(folder / "numbers.csv")
        runs = pd.read_csv(folder / "runs.csv", usecols=lambda c: c in ("scale.name", "status"))
        scale = ", ".join(sorted(runs["scale.name"].dropna().unique())) if "scale.name" in runs else "?"
        link = f"[{folder.name}]({Path(os.path.relpath(folder, relative_to)).as_posix()}/)"
        effects = numbers[numbers.kind == "effect"]
        main = effects[effects.cell.isna() | (effects.cell == "")]
        for r in main.itertuples():
            # a check decided per part (per net) has no effect of its own: each judged part's
            # (those with a minimum effect; the others are information)
            parts = effects[(effects.check == r.check) & effects.cell.notna() & (effects.cell != "")
                            & effects.minimum.notna()]
            if pd.isna(r.value) and len(parts):
                effect = "; ".join(f"{p.cell}: {_shown(p)} {_interval(p)}" for p in parts.itertuples())
                # decided only when every part is (an intersection-union test): its p is the largest
                p = parts.p.max() if r.verdict in DECIDED and (parts.verdict == r.verdict).all() else math.nan
                interval, r = "(per part)", r._replace(minimum=parts.minimum.iloc[0], unit=parts.unit.iloc[0],
                                                       n=parts.n.min(), p=p)
            else:
                effect, interval = _shown(r), _interval(r)
            minimum = _effect(r.unit).fmt(_estimate_units(r.minimum, r.unit)) if pd.notna(r.minimum) else "—"
            why = getattr(r, "why", "")
            verdict = r.verdict + (f" ({why})" if isinstance(why, str) and why else "")
            out.append({"study": link, "scale": scale, "runs": len(runs), "check": r.check, "verdict": verdict,
                        "effect": effect, "95% interval": interval, "minimum effect": minimum,
                        "seeds": int(r.n) if pd.notna(r.n) and r.n > 0 else "—", "p": r.p})
    t = pd.DataFrame(out)
    if len(t):
        survives = holm(t.p.tolist())
        t["after Holm"] = ["—" if pd.isna(p) else "holds" if ok else "does not hold" for p, ok in zip(t.p, survives)]
    return t.drop(columns="p")


def _bold(verdict: str) -> str:
    return f"**{verdict}**" if verdict in DECIDED else verdict


def side_by_side(t: pd.DataFrame) -> pd.DataFrame:
    """The checks published at more than one scale: one row a check (its title without a trailing
    "(...)", so steps_to_target's "(evaluated every few steps)" sits with lr_sweep's), a column a
    scale, each cell every study's verdict, effect and interval at that scale."""
    scales = [s for s in reversed(SCALE_ORDER) if s != "smoke"]  # smallest first: cpu, medium, full
    t = t[t.scale.isin(scales)]
    shown = t.assign(
        claim=t.check.str.replace(r" \([^()]*\)$", "", regex=True),
        cell=[f"{study}: {_bold(v)}, {e}" + ("" if ci in ("—", "(per part)") else f" {ci}")
              for study, v, e, ci in zip(t.study, t.verdict, t.effect, t["95% interval"])])
    wide = shown.pivot_table(index="claim", columns="scale", values="cell", aggfunc="<br>".join, sort=False)
    wide = wide[wide.notna().sum(axis=1) > 1]
    return wide[[s for s in scales if s in wide]].fillna("—").reset_index()


def holm(ps: list[float], alpha: float = ALPHA) -> list[bool]:
    """Holm's step-down correction over the decided verdicts (finite p): does each still hold
    with the family's error rate at `alpha`? (NaN p: not a test; False.)"""
    tests = sorted((p, i) for i, p in enumerate(ps) if pd.notna(p))
    holds = [False] * len(ps)
    for rank, (p, i) in enumerate(tests):
        if p > alpha / (len(tests) - rank):
            break
        holds[i] = True
    return holds


def markdown(results: Path, relative_to: Path) -> str:
    """The side-by-side table of the checks published at several scales, then every check's row
    (the study and run count given once per study), as markdown."""
    t = rows(results, relative_to)
    decided = (t["after Holm"] != "—").sum() if len(t) else 0
    lines = []
    both = side_by_side(t) if len(t) else t
    if len(both):
        lines += ["The claims tested at more than one scale, side by side (what changed as the nets trained "
                  "longer):", "", "| check | " + " | ".join(both.columns[1:]) + " |",
                  "|" + "---|" * len(both.columns)]
        lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in r) + " |" for r in both.itertuples(index=False)]
        lines += ["", "Every published check:", ""]
    lines += [f"After Holm: whether a decided verdict still holds when the {decided} decided verdicts below are "
             f"corrected together (Holm's step-down, each a one-sided test at {ALPHA:g}).", "",
             "| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
    last = None
    for r in t.itertuples(index=False):
        first = r.study != last
        cells = [r.study if first else "", r.scale if first else "", str(r.runs) if first else ""] + \
                [str(v).replace("|", "\\|") for v in r[3:]]
        cells[4] = _bold(cells[4])
        lines.append("| " + " | ".join(cells) + " |")
        last = r.study
    return "\n".join(lines)


def block(results: Path, relative_to: Path) -> str:
    return f"{START}\n{markdown(results, relative_to)}\n{END}"


def write(results: Path, files: list[Path]) -> list[Path]:
    """Rewrite the verdict block of each file (ValueError naming a file without the markers)."""
    for f in files:
        text = Path(f).read_text()
        if not BLOCK.search(text):
            raise ValueError(f"{f} has no {START} ... {END} block to fill")
        Path(f).write_text(BLOCK.sub(lambda _: block(results, Path(f).resolve().parent), text))
    return files


def main(args: list[str]) -> None:
    import argparse

    p = argparse.ArgumentParser(prog="python -m bnstudy verdicts",
                                description="The verdict table of the published studies (from their numbers.csv).")
    p.add_argument("results", nargs="?", type=Path, default=Path("results"), metavar="RESULTS_DIR")
    p.add_argument("--write", nargs="+", type=Path, default=[], metavar="FILE",
                   help="rewrite the block between the verdict markers in each FILE")
    a = p.parse_args(args)
    if not a.results.is_dir():
        raise FileNotFoundError(f"{a.results}: no such folder")
    if a.write:
        for f in write(a.results.resolve(), a.write):
            print(f"wrote the verdict table into {f}")
    else:
        print(markdown(a.results.resolve(), Path.cwd()))
