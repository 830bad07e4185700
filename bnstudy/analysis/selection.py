"""Choose each arm's learning rate on selection seeds, then measure it on fresh seeds.

A study at scale=medium runs in two phases (hydra_plugins/bnstudy_sweeper): first every arm
over a x2 grid of peak rates on the selection seeds (scale.selection_seeds), then every arm at
its chosen rate on the measuring seeds (scale.seeds), which chose nothing. This module applies
the selection rule to the selection runs, says where a grid must grow before any measuring run,
and checks that the measuring runs ran at the rates the rule chose.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..runfolder import FINISHED
from .results import chance
from .rules import TRAINED_MARGIN

RATE = "optim.lr"
RULE = ("Each arm's peak learning rate is chosen on the selection seeds alone, over a x2 grid: the rate with the "
        "highest mean final test accuracy (a diverged run counts as chance; a tie goes to the lower rate). The "
        "chosen rate lies inside the grid, with a finished run at a worse rate on each side; when the best rate is "
        "at an edge of the grid, the grid is extended by x2 beyond that edge and the choice read again, before any "
        "measuring run. The measuring seeds, disjoint from the selection seeds, then run each arm at its chosen "
        "rate only, and only they enter the verdicts.")
INSIDE = "inside the grid"
NOWHERE = "trained at no rate of its grid"  # the start of such an arm's status
# an arm at chance at every rate has no best rate for a grid to bracket (an edge, where every rate
# ties, would ask for rates without end); choose() and the claims that read it say so
NOWHERE_SPAN = 16  # an arm at chance everywhere has its grid extended down until it spans this factor
NOWHERE_RULE = ("An arm that trained at no rate of its grid (every rate's mean final test accuracy within "
                f"{100 * TRAINED_MARGIN:.0f} points of chance) has its grid extended by x2 below its lowest rate "
                f"until the grid spans x{NOWHERE_SPAN} (before any measuring run; added 2026-12-07 before any run "
                "it judges); an arm that then still trains at no rate has no best rate to bracket: it is measured at "
                "the grid's lowest rate, the one most likely to let it train.")


def settled(status: str) -> bool:
    """Whether a choice (choose's status) lets the measuring runs start: a best rate inside its
    grid, or an arm that trained at no rate of it (NOWHERE_RULE)."""
    return status == INSIDE or str(status).startswith(NOWHERE)


def arm_names(runs: pd.DataFrame) -> pd.Series:
    """Each run's arm as the study YAMLs name it (hydra.sweeper.arms, .chosen): the norm's name,
    `skipinit` for the unnormalized net with SkipInit, `ghost<N>` for ghost BN over N images;
    then, where the weights are not PyTorch's default init at scale 1, `-<init>-x<scale>`
    (`bn-kaiming-x4`: BN, He init, every weight x4); `mlp_` before it all for the mlp
    (`mlp_bn`: covariate_shift's two nets each have their own rates)."""
    nan = pd.Series(np.nan, index=runs.index)
    name = runs.get("norm.name", nan).astype(object)
    skip = runs.get("model.skipinit", nan).astype(object).fillna(False).astype(bool)
    ghost = pd.to_numeric(runs.get("norm.ghost_batch_size", nan), errors="coerce")
    out = name.where(~skip, "skipinit")
    is_ghost = name == "ghost_bn"
    ghost_names = pd.Series([f"ghost{g:g}" if math.isfinite(g) else "ghost?" for g in ghost], index=runs.index,
                            dtype=object)
    out = out.where(~is_ghost, ghost_names)
    init = runs.get("init.name", nan).astype(object).where(lambda s: s.notna(), "default")
    scale = pd.to_numeric(runs.get("init.scale", nan), errors="coerce").fillna(1.0)
    suffix = pd.Series([f"-{i}-x{s:g}" if i != "default" or s != 1 else "" for i, s in zip(init, scale)],
                       index=runs.index, dtype=object)
    out = out + suffix
    # covariate_shift gives each net its own grid and rates: the mlp's arms are named apart
    return out.where(runs.get("model.name", nan) != "mlp", "mlp_" + out)


def seed_set(spec) -> set[int]:
    """'0,1,2' (a Hydra sweep value, as scale.seeds holds it) -> {0, 1, 2}."""
    if spec is None or (isinstance(spec, float) and math.isnan(spec)):
        return set()
    return {int(float(s)) for s in str(spec).split(",") if s.strip()}  # a runs.csv may read "100" back as 100.0


def phases(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(selection runs, measuring runs): a run is a selection run when its seed is one of its
    scale's selection seeds."""
    if not len(runs) or "scale.selection_seeds" not in runs:
        return runs.iloc[0:0], runs
    chosen_by = runs["scale.selection_seeds"].map(seed_set)
    is_sel = pd.Series([int(s) in sel for s, sel in zip(runs.seed, chosen_by)], index=runs.index)
    return runs[is_sel], runs[~is_sel]


def choose(selection: pd.DataFrame, rate: str = RATE) -> pd.DataFrame:
    """One row per arm of the selection runs: the rates run, the mean final accuracy at each,
    the chosen rate and whether it lies inside the grid (or which rate extends it)."""
    rows = []
    sel = selection.assign(arm=arm_names(selection))
    for arm, cell in sel.groupby("arm", sort=False):
        done = cell[cell.status.isin(FINISHED)]
        unfinished = len(cell) - len(done)
        acc = done.groupby(rate).final_acc.mean().sort_index()
        row = {"arm": arm, "rates": list(acc.index), "accuracy": {r: float(a) for r, a in acc.items()},
               "seeds": sorted(int(s) for s in done.seed.unique()), "unfinished": unfinished}
        if acc.empty:
            rows.append({**row, "chosen": np.nan, "status": f"no finished run ({unfinished} unfinished)"})
            continue
        best = acc[acc == acc.max()].index.min()  # a tie goes to the lower rate
        lower, higher = acc[acc.index < best], acc[acc.index > best]
        if unfinished:
            status = f"incomplete: {unfinished} run(s) of this arm unfinished"
        elif len(acc) > 1 and (acc < float(chance(done).max()) + TRAINED_MARGIN).all():
            best = acc.index.min()  # NOWHERE_RULE
            span = f"({acc.index.min():g} to {acc.index.max():g})"
            status = (f"{NOWHERE} {span}: measured at its lowest rate" if acc.index.max() / best >= NOWHERE_SPAN
                      else f"trained at no rate yet {span}, under x{NOWHERE_SPAN}: at the grid's lower edge: extend "
                           f"it to {best / 2:g}")
        elif lower.empty:
            status = f"at the grid's lower edge: extend it to {best / 2:g}"
        elif higher.empty or not (higher < acc[best]).any():
            status = f"at the grid's upper edge: extend it to {acc.index.max() * 2:g}"
        else:
            status = INSIDE
        rows.append({**row, "chosen": float(best), "status": status})
    return pd.DataFrame(rows, columns=["arm", "rates", "accuracy", "seeds", "unfinished", "chosen", "status"])


def measuring_problems(selection: pd.DataFrame, measuring: pd.DataFrame, choices: pd.DataFrame,
                       rate: str = RATE) -> list[str]:
    """What keeps the measuring runs from being a fair measurement of the choice: a seed used in
    both phases, an arm measured at a rate other than its chosen one, or chosen at an edge."""
    problems = []
    shared = sorted(set(selection.seed.astype(int)) & set(measuring.seed.astype(int)))
    if shared:
        problems.append(f"seeds {shared} both selected and measured")
    arms = arm_names(measuring)
    unselected = sorted(set(arms) - set(choices.arm))
    if unselected:
        problems.append(f"{', '.join(unselected)}: measured without selection runs")
    for _, c in choices.iterrows():
        ran = sorted(measuring.loc[arms == c.arm, rate].unique())
        if not ran:
            continue
        if not settled(c.status):
            problems.append(f"{c.arm}: measured while its choice is {c.status}")
        elif ran != [c.chosen]:
            problems.append(f"{c.arm}: measured at {', '.join(f'{r:g}' for r in ran)}, chosen {c.chosen:g}")
    return problems


def table(choices: pd.DataFrame) -> pd.DataFrame:
    """The selection as a report shows it: per arm, accuracy at each rate, the choice and its status."""
    def by_rate(acc: dict) -> str:  # two decimals: choices hinge on tenths
        return ", ".join(f"{r:g}: {100 * a:.2f}%" for r, a in acc.items())
    return pd.DataFrame({"arm": choices.arm, "selection seeds": choices.seeds.map(lambda s: ",".join(map(str, s))),
                         "final test accuracy by peak rate": choices.accuracy.map(by_rate),
                         "chosen rate": choices.chosen.map(lambda r: f"{r:g}" if math.isfinite(r) else "—"),
                         "choice": choices.status})


def audit(runs: pd.DataFrame, min_seeds: int = 5, rate: str = RATE) -> list[str]:
    """What keeps a published two-phase study from being the fair test its protocol promises, one
    line each: seeds in both phases, a choice not inside its grid (a finished worse rate on each
    side), an arm measured at another rate or on fewer than `min_seeds` finished seeds, or runs in
    more than one precision."""
    problems = []
    chose, measured = phases(runs)
    if chose.empty:
        return ["no selection runs"]
    choices = choose(chose, rate)
    problems += [f"{c.arm}: {c.status}" for c in choices.itertuples() if not settled(c.status)]
    problems += measuring_problems(chose, measured, choices, rate)
    done = measured[measured.status.isin(FINISHED)]
    seeds = done.assign(arm=arm_names(done)).groupby("arm").seed.nunique()
    for arm in choices.arm:
        if seeds.get(arm, 0) < min_seeds:
            problems.append(f"{arm}: {seeds.get(arm, 0)} finished measuring seeds (at least {min_seeds})")
    if "precision" in runs and runs.precision.nunique() > 1:
        problems.append(f"runs in {runs.precision.nunique()} precisions: {sorted(runs.precision.unique())}")
    return problems
