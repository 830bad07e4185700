"""What every claim's rule shares: the verdict, how an effect's interval decides it, and the
conditions under which no verdict is given.

A claim module (bnstudy/claims/) computes one effect per check, over seeds, with a 95%
interval (bnstudy.analysis.stats), and fixes a minimum effect before the runs it judges.
`decide` then applies the same symmetric rule to every claim:
  reproduced      the interval lies beyond the minimum effect, in the claimed direction;
  not reproduced  the interval lies short of it: the effect is shown to be smaller than
                  claimed, or opposite;
  inconclusive    otherwise (the interval contains the minimum effect), or when a compared
                  arm did not train, or an arm has fewer than MIN_SEEDS seeds, or the
                  measurement is censored (a limit outside the grid); the verdict says why
                  and how many seeds the observed spread would need.
No verdict rests on a point estimate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import scipy.stats

from .stats import Estimate, bins_span, fmt_ci, seeds_needed

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
MISSING = "not tested (runs missing)"
MIN_SEEDS = 2  # an interval needs two seeds; its width then says whether they are enough
TRAINED_MARGIN = 0.05  # an arm whose mean accuracy is within 5 points of chance did not train
RULES_DATE = "2026-11-25"  # the rules below were rewritten on this date, after the cpu runs


@dataclass(frozen=True)
class Effect:
    """How a claim's effect is named, printed and thresholded."""
    name: str  # e.g. "none's gap minus BN's"
    unit: str  # "points" (accuracy percentage points) | "ratio" (estimated as log2, printed as x)
    minimum: float  # the minimum effect, in the estimate's units (log2 for ratios)
    claimed: int = +1  # +1: the claim says the effect exceeds the minimum; -1: that it stays below it

    def fmt(self, v: float) -> str:
        if math.isinf(v):  # an unbounded end of an interval (a censored measurement)
            return ("∞" if self.unit == "ratio" else "+∞") if v > 0 else ("0x" if self.unit == "ratio" else "-∞")
        if not math.isfinite(v):
            return "—"
        return f"{2 ** v:.3g}x" if self.unit == "ratio" else f"{v:+.1f} points"

    def fmt_width(self, v: float) -> str:
        if not math.isfinite(v):
            return "—"
        return f"x{2 ** v:.3g}" if self.unit == "ratio" else f"{v:.1f} points"

    def fmt_pm(self, est: Estimate) -> str:
        """'+4.9 points ± 16.2': an estimate with its 95% half-width, where it has one."""
        return self.fmt(est.value) + (f" ± {est.half:.1f}" if est.has_interval else "")


@dataclass
class Verdict:
    claim: str  # key, e.g. "higher_lr"
    title: str
    verdict: str
    rule: str
    finding: str = ""  # the numbers against the rule, in a sentence or two
    numbers: pd.DataFrame = field(default_factory=pd.DataFrame)  # formatted, for the report
    missing: str = ""  # which runs are needed, and the command that makes them
    notes: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)  # choices a figure should share (e.g. target accuracy)
    effect: Optional[Effect] = None
    estimate: Optional[Estimate] = None
    reason: str = ""  # why inconclusive, a sentence
    # why inconclusive, one of WHY_ORDER: set by verdict() (decision) and by checks that block a
    # decided verdict afterwards; a check that judges part by part (covariate_shift, by model) gives
    # the first of WHY_ORDER an inconclusive part has, or DISAGREE where every part was decided and
    # they differ; its facts["by_model"] holds each part's (verdict, why)
    why: str = ""
    blockers: list[str] = field(default_factory=list)  # what forbade a verdict (why == BLOCKED)
    # other effects the check computes (per part, or shown beside as information), as
    # (label, Effect, Estimate): numbers.csv gives each with its interval
    estimates: list[tuple[str, Effect, Estimate]] = field(default_factory=list)
    # the other values the finding quotes (a deciding cell, a chosen rate, a mean that is no
    # effect), by name: what a reader or a test checks without parsing the sentence
    facts: dict = field(default_factory=dict)

    def effect_line(self) -> str:
        return effect_line(self.effect, self.estimate) if self.effect and self.estimate else ""


def effect_line(e: Effect, est: Estimate) -> str:
    """'name = +3.1 points, 95% interval [-1.2 points, +7.4 points] (Welch t, n=2 seeds per arm);
    minimum effect +2.0 points; minimum detectable effect 5.1 points (80% power)'."""
    if not math.isfinite(est.value):
        return ""
    line = f"{e.name} = {e.fmt(est.value)}"
    if est.has_interval:
        mde = f"; minimum detectable effect {e.fmt_width(est.mde)} (80% power)" if est.se > 0 else ""
        open_ = [side for side, end in (("below", est.lo), ("above", est.hi)) if math.isinf(end)]
        if open_:  # a censored seed (one that reached no target) leaves that side of the interval open
            shown = ("neither verdict can be shown" if len(open_) == 2 else
                     f"only '{REPRODUCED if (open_[0] == 'above') == (e.claimed > 0) else NOT_REPRODUCED}' can "
                     "be shown, and the minimum detectable effect is for it")
            mde += f"; the interval is open {' and '.join(open_)} (a seed that may never have got there): {shown}"
        return line + (f", 95% interval [{e.fmt(est.lo)}, {e.fmt(est.hi)}] ({est.method}, n={est.n} seeds per "
                       f"arm); minimum effect {e.fmt(e.minimum)}" + mde)
    return line + f" (n={est.n}: no interval); minimum effect {e.fmt(e.minimum)}"


# why a verdict is inconclusive (Verdict.why): what a test or a reader can check without its sentence
BLOCKED = "blocked"  # a reason forbids a verdict whatever the interval (Verdict.blockers say which)
NO_EFFECT = "no effect"  # no effect could be computed
TOO_FEW_SEEDS = "too few seeds"  # no interval: fewer than MIN_SEEDS seeds in an arm
HOLDS_MINIMUM = "interval holds the minimum"  # the 95% interval contains the minimum effect
DISAGREE = "the parts disagree"  # a check judged part by part (by model): each decided, not alike
WHY_ORDER = (BLOCKED, NO_EFFECT, TOO_FEW_SEEDS, HOLDS_MINIMUM)  # decision()'s order


def decision(est: Estimate, effect: Effect, blockers: Sequence[str] = ()) -> tuple[str, str, str]:
    """(verdict, why, reason) by the symmetric rule of this module's docstring. `blockers` are
    reasons that forbid a verdict whatever the interval (an arm that did not train, a
    censored measurement); `why` (one of BLOCKED, NO_EFFECT, TOO_FEW_SEEDS, HOLDS_MINIMUM) and
    the reason, a sentence, are empty for reproduced and not reproduced."""
    if blockers:
        return INCONCLUSIVE, BLOCKED, "; ".join(blockers)
    if not math.isfinite(est.value):
        return INCONCLUSIVE, NO_EFFECT, "no effect could be computed"
    if est.n < MIN_SEEDS or not est.has_interval:
        return INCONCLUSIVE, TOO_FEW_SEEDS, f"n={est.n} seed in an arm: no interval (at least {MIN_SEEDS} seeds per arm)"
    m, c = effect.minimum, effect.claimed
    eps = 1e-9 * max(1.0, abs(m))  # a bound that equals the minimum (0.3 / 0.1 on a grid) does not exclude it
    beyond = est.lo > m + eps if c > 0 else est.hi < m - eps
    short = est.hi < m - eps if c > 0 else est.lo > m + eps
    if beyond:
        return REPRODUCED, "", ""
    if short:
        return NOT_REPRODUCED, "", ""
    n = seeds_needed(est, m)
    open_ = math.isinf(est.lo) or math.isinf(est.hi)
    more = ("no number of seeds, nor denser evaluations, would settle it at this estimate: a seed that may never have "
            "got there leaves the interval open on one side, and the other side's bins reach the minimum effect"
            if open_ and bins_span(est, m)
            else "no number of seeds would settle it at this estimate: the measurement's bins alone span the minimum "
            "effect (a finer grid or denser evaluations would)" if bins_span(est, m)
            else "no number of seeds would settle it at this estimate" if n is None
            else f"about {n} seeds per arm would settle it at the observed spread" if n <= 1000
            else "more than 1000 seeds per arm would be needed at the observed spread")
    return INCONCLUSIVE, HOLDS_MINIMUM, (f"the interval [{effect.fmt(est.lo)}, {effect.fmt(est.hi)}] contains the "
                                         f"minimum effect {effect.fmt(m)}; {more}")


def why_text(v: "Verdict") -> str:
    """Why an inconclusive verdict is one, in a few words (numbers.csv's `why`): its `why`,
    and for a blocked one the kinds of its blockers ('blocked: best rate at an edge; did not
    train'). Empty for any other verdict."""
    if v.verdict != INCONCLUSIVE:
        return ""
    if v.why != BLOCKED:
        return v.why
    kinds = list(dict.fromkeys(getattr(b, "kind", "") for b in v.blockers))
    return BLOCKED + (": " + "; ".join(k for k in kinds if k) if any(kinds) else "")


def verdict_line(v: "Verdict") -> str:
    """A verdict as `report` and `reproduce` print it: verdict, the check, and why where inconclusive."""
    why = why_text(v)
    return f"{v.verdict:>26}  {v.title}" + (f"  ({why})" if why else "")


def decide(est: Estimate, effect: Effect, blockers: Sequence[str] = ()) -> tuple[str, str]:
    """(verdict, reason): decision() without its `why`."""
    v, _, reason = decision(est, effect, blockers)
    return v, reason


def p_value(est: Estimate, effect: Effect, verdict: str) -> float:
    """The one-sided p-value of the test behind a decided verdict: reproduced (or not
    reproduced) at the 95% interval's level means p < 0.025 against the minimum effect, from
    the interval's end on that side (for a censored estimate, the least favourable bin end).
    NaN for any other verdict. For a multiplicity correction across verdicts (published.holm)."""
    if verdict not in (REPRODUCED, NOT_REPRODUCED) or not est.has_interval:
        return math.nan
    m, c = effect.minimum, effect.claimed
    below = (verdict == REPRODUCED) == (c < 0)  # the interval must lie below the minimum effect
    least, most = est.ends
    if est.se == 0:
        return 0.0
    t = ((most - m) if below else (least - m)) / est.se
    return float(scipy.stats.t.cdf(t, est.dof) if below else scipy.stats.t.sf(t, est.dof))


# stated 2026-12-07 for every rule that compares arms over seeds with Welch's t (the design each used
# from its first runs; results/HISTORY.md): why not paired by seed
UNPAIRED = ("Unpaired: Welch t over seeds, not paired by seed. A seed gives the compared arms the same data order "
            "(and, where their parameters match, the same initial weights), but they are different networks or "
            "settings whose training parts within the first steps, so nothing makes a seed's runs co-vary; a paired "
            "t would also have half the degrees of freedom of 5 seeds an arm, and a seed missing in one arm would "
            "remove it from the other.")

UNTRAINED = "did not train"  # Blocker.kind of an arm within TRAINED_MARGIN of chance
# Note.kind of the notes every claim may carry (analysis/cells.py writes them)
EDGE = "best rate at an edge"  # data: {cell: (best rate, "lowest" or "highest", grid's lowest, highest)}
INCOMPLETE = "incomplete cells"  # data: {cell: [what it lacks]} (see cells.incomplete_cells)
# runs a rule was written after seeing (cells.matching picks them): a Blocker where they are all a check
# has, a Note where they are left out beside fresh runs
SEEN = "seen before the rule"


class Note(str):
    """A sentence of the report (a str, as the report prints it) with what it is, for a reader
    or a test: `kind` (e.g. EDGE), `subject` (the arm or cell it is about) and `data` (the
    values it quotes, by name). A plain str note has none of them."""

    def __new__(cls, text: str, kind: str = "", subject: str = "", data: Optional[dict] = None) -> "Note":
        obj = super().__new__(cls, text)
        obj.kind, obj.subject, obj.data = kind, subject, dict(data or {})
        return obj



PRECISE_UNAUGMENTED = "precise statistics over unaugmented images"  # Note.kind


def precise_notes(runs: pd.DataFrame, column: str = "final_acc_precise") -> list[Note]:
    """A note where runs that trained on augmented batches (data.augment) had their precise-BN
    statistics recomputed over the training images unaugmented (evaluation.precise_bn_augment
    false, or absent: the harness before 2026-12-08): statistics the net never trained with.
    None where no such run has a value in `column`."""
    if column not in runs or "data.augment" not in runs:
        return []
    has = pd.to_numeric(runs[column], errors="coerce").notna()
    augmented = runs["data.augment"].astype(str).str.lower().eq("true")
    flag = runs.get("evaluation.precise_bn_augment", pd.Series(np.nan, index=runs.index))
    unaugmented = ~flag.astype(str).str.lower().eq("true")
    n = int((has & augmented & unaugmented).sum())
    if not n:
        return []
    return [Note(f"precise BN statistics of {n} run(s) were recomputed over the training images unaugmented, while "
                 "the nets trained on augmented crops (the harness before 2026-12-08): not the statistics they "
                 "trained with (on norm_batch medium's checkpoints, test accuracy with them was 0.6-3.7 points below "
                 "that with the running statistics, and over augmented batches within 0.8 of it: "
                 "results/HISTORY.md, 2026-12-08)",
                 PRECISE_UNAUGMENTED, data={"runs": n})]

class Blocker(Note):
    """A reason that forbids a verdict: its sentence and what it is (`kind`, e.g. UNTRAINED;
    `subject`, the arm it is about)."""


def untrained(arms: dict[str, pd.Series], chance: float) -> list[str]:
    """A Blocker (kind UNTRAINED, subject the arm) for each arm (name -> its runs' accuracies)
    whose mean is not TRAINED_MARGIN above chance."""
    out = []
    for name, acc in arms.items():
        a = pd.to_numeric(pd.Series(acc, dtype=object), errors="coerce").dropna()
        if not len(a) or not a.mean() >= chance + TRAINED_MARGIN:
            out.append(Blocker(f"{name} did not train (mean accuracy {pct(a.mean()) if len(a) else '—'}; an arm "
                               f"needs {pct(chance + TRAINED_MARGIN)}, chance + {100 * TRAINED_MARGIN:.0f} points)",
                               UNTRAINED, name))
    return out


def verdict(claim: str, title: str, rule: str, effect: Effect, est: Estimate, blockers: Sequence[str] = (),
            finding: str = "", **kw) -> Verdict:
    """The Verdict of `est` under `effect`'s minimum, with the effect line leading the finding."""
    v, why, reason = decision(est, effect, blockers)
    out = Verdict(claim, title, v, rule, effect=effect, estimate=est, reason=reason, why=why,
                  blockers=list(blockers), **kw)
    parts = [out.effect_line(), finding, f"Inconclusive: {reason}." if reason else ""]
    out.finding = " ".join(p.rstrip(".") + "." for p in parts if p)
    return out


def missing(claim, title, rule, needs: str, study: str, notes=()) -> Verdict:
    return Verdict(claim, title, MISSING, rule, missing=f"needs {needs} (`python -m bnstudy run +exp={study}`)",
                   notes=list(notes))


def pct(x: float) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def acc_cell(mean, ci, n) -> str:
    return fmt_ci(100 * mean, 100 * ci, n, digits=1) if np.isfinite(mean) else "—"


def acc_col(agg: pd.DataFrame) -> list[str]:
    """An aggregate()'s rows as 'mean ± half-width (n=..)' accuracy strings, in percent."""
    return [acc_cell(m, h, n) for m, h, n in zip(agg["mean"], agg.ci, agg.n)]


def has_norms(sel: pd.DataFrame, norms: Sequence[str], column: str = "norm.name") -> bool:
    """Whether `sel` has runs of every one of `norms` (in `column`: 'variant' for results.variant_names)."""
    return len(sel) > 0 and set(norms) <= set(sel[column])


def points(values) -> pd.Series:
    """Accuracies (fractions) as percentage points."""
    return 100 * pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")


def log2(values) -> pd.Series:
    v = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    return np.log2(v.where(v > 0))



def decision_text(effect: Effect) -> str:
    """The symmetric decision, in words, for a rule's text."""
    m = effect.fmt(effect.minimum)
    side, other = ("above", "below") if effect.claimed > 0 else ("below", "above")
    return (f"Reproduced: the 95% interval of the effect lies {side} {m}; not reproduced: it lies {other} {m}; "
            f"inconclusive: it contains {m}, or a compared arm did not train (mean accuracy within "
            f"{100 * TRAINED_MARGIN:.0f} points of chance), or an arm has fewer than {MIN_SEEDS} seeds.")
