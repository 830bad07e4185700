"""TOST (bnstudy/analysis/equivalence.py): equivalence and difference each need an interval that
settles it; the precision guard pairs bf16 and fp32 effects by seed."""
import math

import pandas as pd
import pytest
from scipy import stats

from bnstudy.analysis import equivalence as E


def test_the_interval_is_the_90_percent_t_interval():
    d = [0.1, -0.3, 0.4, 0.0, 0.2]
    t = E.tost(d, 2.0)
    half = stats.t.ppf(0.95, 4) * pd.Series(d).std() / math.sqrt(5)
    assert t.value == pytest.approx(0.08) and t.hi - t.value == pytest.approx(half)
    assert t.outcome == E.EQUIVALENT and math.isnan(t.pairs_needed)


def test_a_wide_interval_is_inconclusive_never_equivalent():
    t = E.tost([3.0, -3.0, 2.5, -2.0, 0.0], 2.0)
    assert t.outcome == E.INCONCLUSIVE and t.pairs_needed > 5


def test_a_difference_beyond_the_margin_is_shown_as_different():
    assert E.tost([4.1, 3.8, 4.4, 3.9, 4.2], 2.0).outcome == E.DIFFERENT
    assert E.tost([-4.1, -3.8, -4.4, -3.9, -4.2], 2.0).outcome == E.DIFFERENT


def test_one_pair_decides_nothing():
    assert E.tost([0.1], 2.0).outcome == E.INCONCLUSIVE


def test_the_precision_guard_pairs_the_bn_minus_none_effect_by_seed():
    def runs(bn, none):
        rows = [{"norm.name": n, "seed": s, "final_acc": a, "model.skipinit": False}
                for n, accs in (("bn", bn), ("none", none)) for s, a in enumerate(accs)]
        return pd.DataFrame(rows)
    bf16 = runs([.86, .87, .85, .86, .86], [.80, .81, .79, .80, .81])
    fp32 = runs([.85, .87, .85, .86, .85], [.80, .80, .79, .81, .80])
    t, table = E.precision_guard(bf16, fp32)
    assert list(table.index) == [0, 1, 2, 3, 4]
    assert table["difference"].tolist() == pytest.approx([1.0, -1.0, 0.0, 1.0, 0.0])
    assert t.outcome == E.EQUIVALENT
