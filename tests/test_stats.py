"""The statistics over seeds and the symmetric decision rule, against values computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bnstudy.analysis.rules import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Effect, decide
from bnstudy.analysis.stats import (Estimate, aggregate, bins_span, censored, combine, diff_ci, difference, mean_ci,
                                    one_sample, seeds_needed, t975)


def test_t_quantiles_and_intervals():
    assert t975(1) == pytest.approx(12.706, abs=1e-3) and t975(10) == pytest.approx(2.228, abs=1e-3)
    assert t975(1000) == pytest.approx(1.962, abs=2e-3) and 2.228 > t975(10.5) > 2.201
    assert t975(7.5) == pytest.approx(2.33304, abs=1e-5)  # exact at a fractional Welch dof (R: qt(.975, 7.5))
    m, h, n = mean_ci([0.7, 0.72, 0.74])
    assert (m, n) == (pytest.approx(0.72), 3) and h == pytest.approx(4.303 * 0.02 / np.sqrt(3), rel=1e-3)
    assert np.isnan(mean_ci([0.5])[1]) and mean_ci([])[2] == 0
    d, h = diff_ci([1.0, 1.1, 0.9], [0.0, 0.1, -0.1])
    assert d == pytest.approx(1.0) and h == pytest.approx(2.776 * math.sqrt(2 * 0.01 / 3), rel=1e-3)  # dof 4
    agg = aggregate(pd.DataFrame({"k": ["a", "a", "b"], "v": [1.0, 3.0, 5.0]}), ["k"], "v")
    assert list(agg.n) == [2, 1] and agg["mean"].tolist() == [2.0, 5.0] and np.isnan(agg.ci.iloc[1])


def test_difference_of_differences_by_hand():
    """(a - b) - (c - d) with equal variances 1 and 3 seeds each: se = sqrt(4/3), Satterthwaite dof = 8."""
    a, b, c, d = [1, 2, 3], [0, 1, 2], [5, 6, 7], [5, 6, 7]
    e = combine([(1, a), (-1, b), (-1, c), (1, d)])
    assert e.value == pytest.approx(1.0) and e.se == pytest.approx(math.sqrt(4 / 3)) and e.dof == pytest.approx(8)
    assert e.half == pytest.approx(2.306 * math.sqrt(4 / 3), rel=1e-3) and e.n == 3
    assert one_sample([1, 2, 3]).dof == 2 and one_sample([1, 2, 3]).method == "one-sample t"


def test_seeds_needed_by_hand():
    """One sample, sd 1, estimate 1, threshold 0: t(n-1)/sqrt(n) < 1 first at n = 7 (2.447/2.646)."""
    e = one_sample([0.0, 2.0])  # mean 1, sd sqrt(2)
    e = Estimate(1.0, e.half, e.se, e.dof, 2, (1.0,), (1.0,), "one-sample t")
    assert seeds_needed(e, 0.0) == 7
    assert seeds_needed(e, 1.0) is None  # the estimate sits on the threshold: no number settles it
    assert seeds_needed(Estimate(1.0, 1.0, 1.0, 1, 2, (1.0,), (1000.0,)), 0.999) > 1000


def test_censored_interval_holds_the_bins_even_without_spread():
    """Two seeds per arm, all in the same bin of width 1: Welch's interval would be a point; here
    each arm's sd is at least 1/sqrt(12), and the interval runs from the least favourable bin
    ends (0) minus t(2) * se to the most favourable (2) plus it."""
    lo_arms = [(1, [1.0, 1.0]), (-1, [1.0, 1.0])]
    hi_arms = [(1, [2.0, 2.0]), (-1, [0.0, 0.0])]
    mid = [(1, [1.5, 1.5]), (-1, [0.5, 0.5])]
    e = censored(lo_arms, hi_arms, mid)
    se = math.sqrt(2 * (1 / 12) / 2)
    assert combine(mid).half == 0 and e.value == 1.0 and e.se == pytest.approx(se) and e.dof == pytest.approx(2)
    assert (e.lo, e.hi) == (pytest.approx(0 - 4.303 * se, rel=1e-4), pytest.approx(2 + 4.303 * se, rel=1e-4))


def test_seeds_needed_and_mde_of_a_censored_estimate_count_the_bins():
    """Bins of width 1, every seed in the same bin: estimate 3, bin ends' means 2 (least
    favourable) and 4 (most). More seeds narrow the interval around 2 and 4, not around 3: to
    exclude 1 takes 3 seeds an arm (t(4) * sqrt(1/18) = 0.65 < 1 = 2 - 1; at 2 seeds 1.24 > 1),
    where the gap from the estimate (2) would say 2; no number excludes 2.5, between the ends."""
    e = censored([(1, [3.0, 3.0]), (-1, [1.0, 1.0])], [(1, [4.0, 4.0]), (-1, [0.0, 0.0])],
                 [(1, [3.5, 3.5]), (-1, [0.5, 0.5])])
    assert e.value == 3.0 and e.ends == (pytest.approx(2.0), pytest.approx(4.0))
    assert seeds_needed(e, 1.0) == 3 and seeds_needed(e, 5.0) == 3
    assert seeds_needed(e, 2.5) is None and bins_span(e, 2.5) and not bins_span(e, 1.0)
    assert e.mde == pytest.approx((4.303 + 1.061) * math.sqrt(1 / 12) + 1.0, rel=1e-3)  # t(2) quantiles: 97.5% and 80%
    plain = one_sample([1.0, 2.0, 3.0])
    assert plain.ends == (2.0, 2.0) and not bins_span(plain, 2.0)
    assert plain.mde == pytest.approx((4.303 + 1.061) * plain.se, rel=1e-3)
    nan_end = Estimate(3.0, e.half, e.se, e.dof, 2, e.coefs, e.sds, e.method, (math.nan, e.hi))
    assert seeds_needed(nan_end, 1.0) is None and math.isnan(nan_end.mde)
    verdict, reason = decide(e, Effect("e", "points", 2.5))
    assert verdict == INCONCLUSIVE and "bins alone span the minimum effect" in reason
    assert "about 3 seeds per arm" in decide(e, Effect("e", "points", 1.0, -1))[1]


@pytest.mark.parametrize("lo,hi,claimed,expected", [
    (2.5, 4.0, +1, REPRODUCED), (0.0, 1.5, +1, NOT_REPRODUCED), (-3.0, -1.0, +1, NOT_REPRODUCED),
    (1.0, 3.0, +1, INCONCLUSIVE), (0.0, 1.5, -1, REPRODUCED), (2.5, 4.0, -1, NOT_REPRODUCED),
    (1.0, 2.0, +1, INCONCLUSIVE), (2.0, 3.0, +1, INCONCLUSIVE)])  # a bound on the minimum does not exclude it
def test_decision_is_symmetric(lo, hi, claimed, expected):
    est = Estimate((lo + hi) / 2, (hi - lo) / 2, 1.0, 4, 3, (1.0, -1.0), (1.0, 1.0))
    verdict, reason = decide(est, Effect("e", "points", 2.0, claimed))
    assert verdict == expected
    assert bool(reason) == (expected == INCONCLUSIVE)


def test_no_verdict_without_an_interval_or_with_a_blocker():
    one = difference([0.9], [0.1, 0.2])
    assert decide(one, Effect("e", "points", 0.1))[0] == INCONCLUSIVE
    big = difference([10.0, 10.1, 9.9], [0.0, 0.1, -0.1])
    assert decide(big, Effect("e", "points", 2.0))[0] == REPRODUCED
    v, reason = decide(big, Effect("e", "points", 2.0), ["none did not train"])
    assert v == INCONCLUSIVE and reason == "none did not train"
