"""Statistics over seeds: means with 95% Student-t intervals, and effects with their intervals.

The seed is the unit of replication. Every interval here is a Student-t interval on seed
values: one-sample for a paired or single quantity, Welch-Satterthwaite for a difference
(or any fixed linear combination) of arm means. `Estimate` carries what a rule needs to
decide (the interval) and what a reader needs to plan (the spread, hence how many seeds
would settle an open question, and the minimum detectable effect).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import scipy.stats

MAX_SEEDS = 1000  # beyond this, "seeds needed" is reported as more than this


def t975(dof: float) -> float:
    """The 97.5% quantile of Student's t with `dof` degrees of freedom (dof >= 1; Welch's are
    fractional): the two-sided 95% interval's multiplier."""
    if not dof >= 1:
        return math.nan
    return float(scipy.stats.t.ppf(0.975, dof))


def _finite(values) -> np.ndarray:
    return np.asarray(pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").dropna(), dtype=float)


@dataclass(frozen=True)
class Estimate:
    """A linear combination of arm means over seeds, sum(coef * mean(arm)), with its 95% t-interval."""
    value: float
    half: float  # 95% half-width; NaN when an arm has fewer than 2 seeds
    se: float
    dof: float
    n: int  # seeds in the smallest arm
    coefs: tuple[float, ...] = ()
    sds: tuple[float, ...] = ()  # per-arm sample standard deviations
    method: str = "Welch t"
    bounds: Optional[tuple[float, float]] = None  # set by `censored`: the interval is not value ± half

    @property
    def lo(self) -> float:
        return self.bounds[0] if self.bounds else self.value - self.half

    @property
    def hi(self) -> float:
        return self.bounds[1] if self.bounds else self.value + self.half

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.half)

    @property
    def ends(self) -> tuple[float, float]:
        """The means of the bin ends least and most favourable to a positive effect (a censored
        estimate); (value, value) otherwise. More seeds narrow the interval around these ends,
        never the distance between them."""
        return (self.bounds[0] + self.half, self.bounds[1] - self.half) if self.bounds else (self.value, self.value)

    @property
    def mde(self) -> float:
        """Minimum detectable effect: the smallest distance from a threshold that these seeds
        detect with 80% power at the 5% level ((t + z_0.8) * se), plus, for a censored estimate,
        the larger distance from the estimate to a bin end's mean (the bins do not shrink)."""
        least, most = self.ends
        if not self.has_interval or math.isnan(least) or math.isnan(most):
            return math.nan
        # an unbounded end (a seed censored at 'never') says nothing about detection: left out
        reach = [d for d in (self.value - least, most - self.value) if math.isfinite(d)]
        return (t975(self.dof) + float(scipy.stats.t.ppf(0.8, self.dof))) * self.se + max(reach + [0.0])


def combine(arms: Sequence[tuple[float, Sequence[float]]]) -> Estimate:
    """sum(coef * mean(values)) over arms, with a Welch-Satterthwaite t-interval.

    One arm with coefficient 1 is the one-sample t-interval (dof n - 1); (1, a), (-1, b) is
    Welch's interval for mean(a) - mean(b); four arms give a difference of differences."""
    coefs, vals = [float(c) for c, _ in arms], [_finite(v) for _, v in arms]
    ns = [len(v) for v in vals]
    if not arms or min(ns) == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, min(ns, default=0), tuple(coefs), (),
                        _method(len(arms)))
    value = float(sum(c * v.mean() for c, v in zip(coefs, vals)))
    if min(ns) < 2:
        return Estimate(value, math.nan, math.nan, math.nan, min(ns), tuple(coefs), (), _method(len(arms)))
    sds = tuple(float(v.std(ddof=1)) for v in vals)
    se, dof = _se_dof(coefs, sds, ns)
    half = 0.0 if se == 0 else t975(dof) * se
    return Estimate(value, half, se, dof, min(ns), tuple(coefs), sds, _method(len(arms)))


def _method(k: int) -> str:
    return "one-sample t" if k == 1 else "Welch t"


def _se_dof(coefs, sds, ns) -> tuple[float, float]:
    terms = [(c * s) ** 2 / n for c, s, n in zip(coefs, sds, ns)]
    var = sum(terms)
    if var == 0:
        return 0.0, float(sum(ns) - len(ns))
    dof = var ** 2 / sum(t ** 2 / (n - 1) for t, n in zip(terms, ns))
    return math.sqrt(var), dof


def one_sample(values) -> Estimate:
    return combine([(1.0, values)])


def difference(a, b) -> Estimate:
    """mean(a) - mean(b), Welch."""
    return combine([(1.0, a), (-1.0, b)])


def censored(arms_low: Sequence[tuple[float, Sequence[float]]],
             arms_high: Sequence[tuple[float, Sequence[float]]], arms: Sequence[tuple[float, Sequence[float]]]) -> Estimate:
    """`combine(arms)` for a quantized measurement, whose true value per seed lies anywhere in a
    bin (steps to a target between two evaluations; a largest usable rate between two grid
    points). `arms_low` holds each seed's bin end least favourable to a positive effect,
    `arms_high` the most favourable end, `arms` the recorded values.

    The interval runs from the least favourable ends' mean minus t * se to the most favourable
    ends' mean plus t * se, where each arm's standard deviation is at least that of a value
    spread evenly over its bin (width / sqrt(12)): seeds that all land in the same bin have
    not shown that their true values agree.

    A bin may be open (an end at +-inf: a seed that never reached the target is somewhere from
    the last step to never); the interval's end on that side is then unbounded, and the open bins
    do not widen the standard deviation."""
    mid = combine(arms)
    if not mid.has_interval:
        return mid
    lows, highs = [_finite(v) for _, v in arms_low], [_finite(v) for _, v in arms_high]
    width = [float(np.mean(w[np.isfinite(w)])) if np.isfinite(w).any() else 0.0
             for w in (np.abs(h - l) for l, h in zip(lows, highs))]
    sds = tuple(max(sd, w / math.sqrt(12)) for sd, w in zip(mid.sds, width))
    se, dof = _se_dof(mid.coefs, sds, [len(_finite(v)) for _, v in arms])
    half = t975(dof) * se
    least = sum(c * v.mean() for c, v in zip(mid.coefs, lows))
    most = sum(c * v.mean() for c, v in zip(mid.coefs, highs))
    return Estimate(mid.value, half, se, dof, mid.n, mid.coefs, sds, mid.method + " over the measurement's bins",
                    (least - half, most + half))


def bins_span(est: Estimate, threshold: float) -> bool:
    """Whether a censored estimate's bin ends lie on both sides of `threshold` (or on it): then
    no number of seeds excludes it; a finer grid or denser evaluations would."""
    least, most = est.ends
    return est.bounds is not None and least <= threshold <= most


def seeds_needed(est: Estimate, threshold: float) -> Optional[int]:
    """Seeds per arm at which the 95% interval, at the observed spread and estimate, would
    exclude `threshold`; None when no number would (estimate on the threshold, a censored
    estimate whose bins span it, or no spread measured), MAX_SEEDS + 1 when more than MAX_SEEDS.
    For a censored estimate the interval narrows around the bin ends' means, not the estimate."""
    least, most = est.ends
    if math.isnan(least) or math.isnan(most):
        return None
    gap = least - threshold if least > threshold else threshold - most if most < threshold else 0.0
    if not est.sds or not math.isfinite(gap) or gap == 0:
        return None
    for n in range(2, MAX_SEEDS + 1):
        se, dof = _se_dof(est.coefs, est.sds, [n] * len(est.sds))
        if se == 0 or t975(dof) * se < gap:
            return n
    return MAX_SEEDS + 1


# ---------------------------------------------------------------- tables of means

def mean_ci(values) -> tuple[float, float, int]:
    """(mean, 95% t-interval half-width, n) over finite values; half-width NaN when n < 2."""
    e = one_sample(values)
    return e.value, e.half, e.n


def diff_ci(a, b) -> tuple[float, float]:
    """mean(a) - mean(b) and its 95% Welch t-interval half-width (NaN when either has n < 2)."""
    e = difference(a, b)
    return e.value, e.half


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
