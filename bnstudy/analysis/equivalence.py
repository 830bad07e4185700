"""Showing that two things do not differ by more than a margin: two one-sided tests (TOST).

An interval that includes 0 shows nothing: too few seeds give one too. Equivalence is shown
when the 90% interval of the (paired) difference lies inside (-margin, +margin), i.e. both
one-sided 5% tests reject a difference of at least the margin. Symmetrically, a difference is
shown when that interval lies wholly beyond the margin on one side. Anything else is
inconclusive, with the number of pairs the observed spread would need to settle it.

Used to guard the medium scale's precision: the BN-minus-none effect measured in bf16 against
its fp32 twins, paired by seed (results/bench/medium-precision/).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

EQUIVALENT, DIFFERENT, INCONCLUSIVE = "equivalent", "different", "inconclusive"
MAX_PAIRS = 1000

# fixed 2026-12-06, before any medium run: the medium studies' minimum effect, 2 points
PRECISION_MARGIN = 2.0
PRECISION_RULE = (
    "Every arm of a medium study trains in bf16 autocast + channels_last. Guard, fixed before the runs: the "
    "faster-training measuring runs of BN and of the unnormalized net (each at its chosen rate, seeds 0-4) are "
    "run again in fp32 (their twins: the same seeds, so the same init, data order and augmentation). Per seed, "
    "the effect is BN's final test accuracy minus none's, in points; d = the bf16 effect minus the fp32 effect. "
    f"Equivalent when the 90% t interval of d over seeds lies inside ±{PRECISION_MARGIN:g} points (TOST at 5% "
    f"each side; ±{PRECISION_MARGIN:g} is the medium studies' minimum effect); different when it lies wholly "
    "outside, on one side; inconclusive otherwise. If different, the medium verdicts are redone in fp32.")


@dataclass(frozen=True)
class Tost:
    value: float  # mean difference
    lo: float  # its 90% t interval
    hi: float
    n: int
    sd: float
    margin: float
    outcome: str
    pairs_needed: float  # to settle an inconclusive outcome at this spread and estimate; NaN otherwise


def _half(sd: float, n: int, alpha: float) -> float:
    return float(stats.t.ppf(1 - alpha, n - 1)) * sd / math.sqrt(n)


def tost(differences, margin: float, alpha: float = 0.05) -> Tost:
    """TOST on paired differences (one per seed) against +-margin."""
    d = np.asarray(pd.to_numeric(pd.Series(differences, dtype=object), errors="coerce").dropna(), dtype=float)
    n = len(d)
    if n < 2:
        m = float(d.mean()) if n else math.nan
        return Tost(m, math.nan, math.nan, n, math.nan, margin, INCONCLUSIVE, math.nan)
    m, sd = float(d.mean()), float(d.std(ddof=1))
    half = _half(sd, n, alpha)
    lo, hi = m - half, m + half
    if -margin < lo and hi < margin:
        outcome = EQUIVALENT
    elif lo > margin or hi < -margin:
        outcome = DIFFERENT
    else:
        outcome = INCONCLUSIVE
    need = math.nan
    if outcome == INCONCLUSIVE:
        room = abs(abs(m) - margin)  # the half-width that would settle it, either way
        if room > 0 and sd == 0:
            need = n
        elif room > 0:
            need = next((k for k in range(n, MAX_PAIRS + 1) if _half(sd, k, alpha) < room), math.inf)
        else:
            need = math.inf
    return Tost(m, lo, hi, n, sd, margin, outcome, need)


def effect_by_seed(runs: pd.DataFrame, a: str = "bn", b: str = "none") -> pd.Series:
    """Per seed, arm a's final accuracy minus arm b's, in points (arms by norm.name, without
    SkipInit); seeds where either is missing are left out."""
    plain = runs[~runs.get("model.skipinit", pd.Series(False, index=runs.index)).fillna(False).astype(bool)]
    acc = plain.pivot_table(index="seed", columns="norm.name", values="final_acc", aggfunc="mean")
    if a not in acc or b not in acc:
        return pd.Series(dtype=float)
    return (100 * (acc[a] - acc[b])).dropna()


def precision_guard(bf16: pd.DataFrame, fp32: pd.DataFrame) -> tuple[Tost, pd.DataFrame]:
    """PRECISION_RULE on the bf16 measuring runs and their fp32 twins: the TOST and the table
    of per-seed effects it reads."""
    e16, e32 = effect_by_seed(bf16), effect_by_seed(fp32)
    table = pd.DataFrame({"bf16: bn - none": e16, "fp32: bn - none": e32}).dropna()
    table["difference"] = table["bf16: bn - none"] - table["fp32: bn - none"]
    return tost(table["difference"], PRECISION_MARGIN), table
