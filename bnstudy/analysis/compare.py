"""Any sweep gets a comparison: the arms a sweep of no named study varied, side by side.

`python -m bnstudy run -m norm=bn,gn` and then `report` has no claim to judge; what a researcher
wants from it is each arm's accuracy over seeds with an interval, and its curve. An arm is a
combination of the config values the sweep varied, the seed and the rate aside; where rates were
swept, each arm is shown at its own best rate (and every rate in the full table).
"""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from . import style as S
from .cells import at_best_rate, value_text
from .results import FINISHED, NOT_THE_EXPERIMENT, experiment_columns, variant_names, with_config
from .rules import acc_cell
from .stats import aggregate, mean_ci

RATE = "optim.lr"
DERIVED = ("norm.noise_seed", "model.skipinit", "norm._target_")  # follow the seed, or in the arm's norm name


def free_runs(runs: pd.DataFrame, studies: set[str]) -> pd.DataFrame:
    """The runs of no named study (`studies`: those the claims read)."""
    if not len(runs) or "study" not in runs:
        return runs.iloc[0:0]
    return runs[~runs.study.isin(studies)]


def arm_columns(runs: pd.DataFrame) -> list[str]:
    """The config columns the sweep varied, but the seed and the rate."""
    cols = [c for c in experiment_columns(runs) if c not in ("seed", RATE, *DERIVED, *NOT_THE_EXPERIMENT)]
    return [c for c in cols if runs[c].astype(str).nunique() > 1]


def _named(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` with SkipInit folded into the norm's name (results.variant_names)."""
    return runs.assign(**{"norm.name": variant_names(runs)}) if "norm.name" in runs else runs.copy()


def varied(runs: pd.DataFrame) -> list[str]:
    """The columns that tell this sweep's arms apart."""
    return arm_columns(_named(runs))


def with_arms(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` with an `arm` column: 'norm=gn', 'norm=bn, data.batch_size=8', or 'all' (one arm)."""
    r = _named(runs)
    cols = arm_columns(r)
    def name(row) -> str:
        return ", ".join(f"{'norm' if c == 'norm.name' else c}={value_text(row[c])}" for c in cols) or "all"
    return r.assign(arm=r.apply(name, axis=1) if len(r) else pd.Series(dtype=str))


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per arm (at its best rate where rates were swept): seeds, final and best test accuracy with
    95% intervals, divergences."""
    done = with_arms(runs[runs.status.isin(FINISHED)])
    if done.empty:
        return pd.DataFrame()
    swept = RATE in done and done[RATE].nunique() > 1
    best = at_best_rate(done, ["arm"], RATE) if swept else done
    rows = []
    for arm, g in best.groupby("arm", sort=False):
        rows.append({"arm": arm} | ({"best rate": value_text(float(g[RATE].iloc[0]))} if swept else {})
                    | {"seeds": g.seed.nunique(),
                       "final test accuracy (%)": acc_cell(*mean_ci(g.final_acc)),
                       "best test accuracy (%)": acc_cell(*mean_ci(pd.to_numeric(g.get("best_test_acc"),
                                                                                  errors="coerce"))),
                       "diverged": int((g.status == "diverged").sum())})
    return pd.DataFrame(rows)


def rate_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every (arm, rate) cell, where rates were swept: final test accuracy and divergences."""
    done = with_arms(runs[runs.status.isin(FINISHED)])
    if done.empty or RATE not in done or done[RATE].nunique() < 2:
        return pd.DataFrame()
    return pd.DataFrame([{"arm": arm, "peak rate": value_text(float(lr)), "seeds": g.seed.nunique(),
                          "final test accuracy (%)": acc_cell(*mean_ci(g.final_acc)),
                          "diverged": int((g.status == "diverged").sum())}
                         for (arm, lr), g in done.groupby(["arm", RATE], sort=True)])


@S.figure
def accuracy_curves(runs: pd.DataFrame, curves: pd.DataFrame) -> Figure:
    """Test accuracy against step for each arm (at its best rate), mean and 95% band over seeds."""
    done = with_arms(runs[runs.status.isin(FINISHED)])
    if done.empty:
        raise S.NotDrawn("arm curves: no finished runs")
    if RATE in done and done[RATE].nunique() > 1:
        done = at_best_rate(done, ["arm"], RATE)
    c = with_config(curves[curves.metric == "test/acc"], done, ["arm"])
    if c.empty:
        raise S.NotDrawn("arm curves: no test/acc rows in these runs' metrics")
    fig = Figure(figsize=(6, 3.8), layout="constrained")
    ax = fig.subplots()
    S.chance_line(ax, done)
    for i, (arm, g) in enumerate(c.groupby("arm", sort=False)):
        S.line_ci(ax, aggregate(g, ["step"], "value"), "step", f"C{i}", arm, scale=S.PCT)
    ax.set_xlabel("step")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Test accuracy by arm ({S.caption_n(done)})", fontsize=9)
    ax.legend(loc="best", fontsize=8)
    return fig
