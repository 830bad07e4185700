"""Trainability of deep networks: BN makes deep networks trainable that do not train without
it, above all plain networks without shortcuts (He et al. 2016, Fig. 1; Bjorck et al. 2018).
Study: depth_sweep (depth x plain/residual, bn / none)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..analysis import style as S
from ..analysis.results import chance, study_runs
from ..analysis.rules import Effect, Verdict, acc_col, decision_text, has_norms, missing, points, untrained, verdict
from ..analysis.stats import aggregate, difference

KEY, STUDY, TITLE = "depth", "depth_sweep", "Trainability of deep networks"
STATEMENT = ("BatchNorm makes deep networks trainable that do not train without it, above all plain networks "
             "without shortcuts (He et al. 2016, Fig. 1; Bjorck et al. 2018).")
# fixed 2026-11-25 (issue 13), after the cpu depth_sweep: "trainable where the other is not"
# is a large gap; 5 points is the least that could mean it
EFFECT = Effect("BN's minus none's final accuracy at the deepest depth", "points", 5.0)
RULE = ("At the deepest depth both norms ran (plain networks without shortcuts where both norms ran them, else "
        "residual): effect = BN's minus none's mean final accuracy, in points (Welch t over seeds). BN must have "
        "trained at that depth (else the setup, not the norm, failed: no warmup, too few steps), and none at the "
        "shallowest (else nothing shows it can train at all). " + decision_text(EFFECT))


def check(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    title = "BN makes deep networks trainable"
    sel, notes = study_runs(runs, STUDY)
    if not has_norms(sel, ("bn", "none")) or sel["model.depth"].nunique() < 2:
        return missing(KEY, title, RULE, "finished depth_sweep runs with norm=bn and norm=none at >= 2 depths",
                       STUDY, notes)
    sel = sel.assign(plain=sel["model.plain"].fillna(False).astype(bool) if "model.plain" in sel else False)
    kind = "plain" if has_norms(sel[sel.plain], ("bn", "none")) else "residual"
    sub = sel[sel.plain == (kind == "plain")]
    depths = sorted(set(sub.loc[sub["norm.name"] == "bn", "model.depth"])
                    & set(sub.loc[sub["norm.name"] == "none", "model.depth"]))
    if len(depths) < 2:
        return missing(KEY, title, RULE, "bn and none runs at >= 2 shared depths", STUDY, notes)
    shallow, deep = depths[0], depths[-1]
    acc = lambda n, d: sub.loc[(sub["norm.name"] == n) & (sub["model.depth"] == d), "final_acc"]
    est = difference(points(acc("bn", deep)), points(acc("none", deep)))
    blockers = untrained({f"bn ({kind}, depth {deep})": acc("bn", deep),
                          f"none ({kind}, depth {shallow})": acc("none", shallow)}, float(chance(sel).iloc[0]))
    loss = {n: 100 * (acc(n, shallow).mean() - acc(n, deep).mean()) for n in ("bn", "none")}
    finding = (f"{kind.capitalize()} nets, depth {deep}. Beside the rule: accuracy lost from depth {shallow} to {deep}: "
               f"bn {loss['bn']:.1f}, none {loss['none']:.1f} points.")
    agg = aggregate(sel, ["plain", "model.depth", "norm.name"], "final_acc")
    numbers = agg.assign(network=np.where(agg.plain, "plain", "residual"), acc=acc_col(agg)).pivot_table(
        index=["network", "model.depth"], columns="norm.name", values="acc", aggfunc="first").reset_index()
    numbers.columns.name = None
    return verdict(KEY, title, RULE, EFFECT, est, blockers, finding, numbers=numbers, notes=notes)


@S.figure
def accuracy_vs_depth(runs: pd.DataFrame) -> Figure:
    """Final test accuracy vs depth per norm, plain (no shortcuts) and residual."""
    S.need(runs, ["norm.name", "model.depth", "final_acc"], "accuracy vs depth")
    if runs["model.depth"].nunique() < 2:
        raise S.NotDrawn("accuracy vs depth: fewer than 2 depths")
    r = runs.assign(plain=runs["model.plain"].fillna(False).astype(bool) if "model.plain" in runs else False)
    fig = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = fig.subplots()
    S.chance_line(ax, r)
    for norm in S.norms_of(r):
        for plain, style in ((False, "-"), (True, "--")):
            sub = r[(r["norm.name"] == norm) & (r.plain == plain)]
            if len(sub):
                S.line_ci(ax, aggregate(sub, ["model.depth"], "final_acc"), "model.depth", S.color(norm),
                         f"{S.label(norm)}, {'plain' if plain else 'residual'}", scale=S.PCT, errorbars=True,
                         linestyle=style)
    ax.set_xticks(sorted(r["model.depth"].dropna().unique()))
    ax.set_xlabel("depth (weighted layers)")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title(f"Trainability vs depth\n{S.caption_n(r)}", fontsize=9)
    ax.legend(loc="best")
    return fig


CHECKS = [check]
FIGURES = {"accuracy_vs_depth": (lambda runs, curves, v: accuracy_vs_depth(runs),
                                 "Final test accuracy vs depth, plain and residual.")}
