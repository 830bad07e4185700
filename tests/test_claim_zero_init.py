"""The zero-init check (what zero-initialized residual gammas cost plain BN) on hand-made run
tables shaped like +exp=zero_init: norm=bn x init.zero_init_residual x peak rate x 5 seeds."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from bnstudy.analysis.rules import (BLOCKED, DISAGREE, INCONCLUSIVE, MISSING, NOT_REPRODUCED, REPRODUCED, SEEN,
                                    UNTRAINED)
from bnstudy.analysis.stats import difference
from bnstudy.claims import zero_init
from conftest import blockers_of, notes_of

from test_claims import NO_CURVES, noise, row

RATES = (0.05, 0.1)


def runs_zero(default=None, zero=None, seeds=5, shared_sd=0.03, sd=0.003, drop=()):
    """Accuracy per (arm, rate): default and zero-init share each seed's draw (shared_sd, what pairing
    removes) plus a small draw of their own (sd); `drop`: (zero, rate, seed) runs that did not finish."""
    default = default or {r: 0.52 for r in RATES}
    zero = zero or {r: 0.37 for r in RATES}
    rng, rows = np.random.default_rng(3), []
    shared = {(r, s): noise(rng, shared_sd) for r, s in itertools.product(RATES, range(seeds))}
    for (z, accs), r, s in itertools.product(((False, default), (True, zero)), RATES, range(seeds)):
        if (z, r, s) in drop:
            continue
        acc = accs[r] + shared[(r, s)] + noise(rng, sd)
        rows.append(row("zero_init", "bn", s, acc, **{"init.zero_init_residual": z, "optim.lr": r}))
    return pd.DataFrame(rows)


def test_reproduced_when_zero_init_costs_more_than_the_minimum_at_both_rates():
    v = zero_init.check(runs_zero(), NO_CURVES)
    assert v.verdict == REPRODUCED, v.finding
    assert v.facts["by_rate"] == {0.05: (REPRODUCED, ""), 0.1: (REPRODUCED, "")}
    costs = {label: e for label, _, e in v.estimates}
    assert set(costs) == {"rate 0.05", "rate 0.1"}
    assert costs["rate 0.05"].value == pytest.approx(15, abs=0.5) and costs["rate 0.05"].n == 5
    assert costs["rate 0.05"].method == "one-sample t"  # paired by seed


def test_pairing_removes_the_seed_to_seed_spread_both_arms_share():
    """A 1.5-point cost under a 3-point shared seed spread: the per-seed differences are tight, so the
    paired interval clears the 0-point side; a Welch interval over the two arms would not."""
    v = zero_init.check(runs_zero(zero={r: 0.505 for r in RATES}, shared_sd=0.03, sd=0.002), NO_CURVES)
    est = dict((label, e) for label, _, e in v.estimates)["rate 0.1"]
    assert est.half < 1.0 and 0 < est.lo and est.hi < 2, est
    assert v.verdict == NOT_REPRODUCED, v.finding  # 1.5 points [~1.1, ~1.9]: below the 2-point minimum
    runs = runs_zero(zero={r: 0.505 for r in RATES}, shared_sd=0.03, sd=0.002)
    arm = lambda z: 100 * runs[(runs["init.zero_init_residual"] == z) & (runs["optim.lr"] == 0.1)].final_acc
    assert difference(arm(False), arm(True)).half > 2 * est.half  # unpaired, the shared spread stays


def test_not_reproduced_when_the_init_makes_no_difference():
    v = zero_init.check(runs_zero(zero={r: 0.52 for r in RATES}), NO_CURVES)
    assert v.verdict == NOT_REPRODUCED, v.finding


def test_rates_that_disagree_leave_it_inconclusive():
    v = zero_init.check(runs_zero(zero={0.05: 0.37, 0.1: 0.52}), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == DISAGREE, v.finding
    assert v.facts["by_rate"][0.05][0] == REPRODUCED and v.facts["by_rate"][0.1][0] == NOT_REPRODUCED


def test_a_default_arm_at_chance_blocks_its_rate():
    v = zero_init.check(runs_zero(default={0.05: 0.52, 0.1: 0.11}, zero={0.05: 0.37, 0.1: 0.10}), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == BLOCKED, v.finding
    assert [b.subject for b in blockers_of(v, UNTRAINED)] == ["default init at rate 0.1"]


def test_a_seed_without_its_partner_is_left_out_and_named():
    v = zero_init.check(runs_zero(drop={(True, 0.1, 4)}), NO_CURVES)
    (note,) = notes_of(v, zero_init.UNPAIRED)
    assert note.data == {"rate": 0.1, "seeds": [4]}
    assert dict((label, e.n) for label, _, e in v.estimates) == {"rate 0.05": 5, "rate 0.1": 4}


def test_seeds_0_to_4_of_the_published_settings_never_decide_it():
    """lr_sweep and norm_batch ran these settings on seeds 0-4 (cpu, cifar10_folder) before the rule:
    alone such runs block it; beside fresh seeds they are left out."""
    seen = runs_zero().assign(**{"data.name": "cifar10_folder"})
    v = zero_init.check(seen, NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == BLOCKED and [b.kind for b in blockers_of(v, SEEN)] == [SEEN]
    fresh = runs_zero().assign(**{"data.name": "cifar10_folder", "seed": lambda d: d.seed + 5})
    v = zero_init.check(pd.concat([seen, fresh], ignore_index=True), NO_CURVES)
    assert v.verdict == REPRODUCED and [n.data for n in notes_of(v, SEEN)] == [{"runs": len(seen)}]
    assert {label: e.n for label, _, e in v.estimates} == {"rate 0.05": 5, "rate 0.1": 5}


def test_without_both_inits_it_is_missing():
    runs = runs_zero()
    assert zero_init.check(runs[~runs["init.zero_init_residual"]], NO_CURVES).verdict == MISSING
