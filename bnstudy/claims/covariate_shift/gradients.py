"""Internal covariate shift as Santurkar et al. (2018, Def. 2.1) measure it: the change of a
layer's gradient caused by updating the layers before it. Its check and its figure."""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from ...analysis import style as S
from ...analysis.cells import EDGE_RULE
from ...analysis.rules import decision_text, Effect, has_norms, missing, Verdict
from ...analysis.stats import aggregate
from .common import (EACH_MODEL, PROTOCOL, RATIO, STUDY, judge_by_model, means_by_model, model_means, param_rows,
                     per_model, per_run, read_study)

ICS = Effect("none's relative ICS ||G - G'||/||G|| / BN's", "ratio", RATIO)

ICS_RULE = (PROTOCOL + "Santurkar et al. (2018, Def. 2.1) ICS of a layer: the change of its gradient G caused by the "
            "update of the layers before it (in forward order), decided on the relative measure ||G - G'||/||G|| "
            "(BN's gradients are larger, so the absolute ||G - G'|| would read them as more shift; it is shown "
            "beside, with cos(G, G'), and decides nothing). Per run, averaged over probed parameters and steps; "
            "effect = mean log2 of none minus that of BN (Welch t over seeds), shown as a ratio. " + EACH_MODEL
            + decision_text(ICS) + " Santurkar et al. report that BN does not reduce it. " + EDGE_RULE)


def relative_ics(c: pd.DataFrame) -> pd.DataFrame:
    """Per (run, step, param): ||G - G'||/||G||, logged (`ics/*.rel`) or, for runs made before it was,
    from `ics/*.l2` and the gradients probe's ||G|| (`grad/*.norm`) at the same step."""
    rel = param_rows(c, "ics", "rel")
    if len(rel):
        return rel
    l2, g = param_rows(c, "ics", "l2"), param_rows(c, "grad", "norm")
    m = l2.merge(g[["run", "step", "param", "value"]], on=["run", "step", "param"], suffixes=("", "_g"))
    return m.assign(value=m.value / m.value_g.where(m.value_g > 0))[["run", "norm.name", "step", "param", "value"]]


def check_gradients(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    claim, title = "ics_gradients", "BN reduces internal covariate shift (Santurkar et al.'s measure)"
    sel, c, notes = read_study(runs, curves)
    rel = relative_ics(c) if len(c) else c
    if not len(rel) or not has_norms(rel, ("bn", "none")):
        return missing(claim, title, ICS_RULE, "covariate_shift runs with norm=bn and norm=none, the ICS probe "
                       "(`ics/*` rows) and its relative measure (`ics/*.rel`, or the gradients probe at the same "
                       "steps)", STUDY, notes)
    if not (c.metric.str.startswith("ics/") & c.metric.str.endswith(".rel")).any():
        notes.append("||G|| read from the gradients probe at the ICS steps (runs made before `ics/*.rel` was logged)")
    verdict, finding, numbers, estimates, fields = judge_by_model(sel, {"relative ICS": per_run(rel)},
                                                                  {"relative ICS": ICS}, notes=notes)
    absolute = {stat: per_run(param_rows(c, "ics", stat)) for stat in ("l2", "cos")}
    aside = [line for stat, name in (("l2", "||G - G'||"), ("cos", "cos(G, G')"))
             for line in means_by_model(absolute[stat], sel, name)]
    fields["facts"].update({f"ics_{stat}": model_means(m, sel) for stat, m in absolute.items()})  # {model: {norm: x}}
    if aside:
        finding += " Beside the rule (absolute units): " + "; ".join(aside) + "."
    return Verdict(claim, title, verdict, ICS_RULE, finding, numbers, notes=notes, estimates=estimates, **fields)


def _per_param_mean(curves: pd.DataFrame, prefix: str, stat: str) -> pd.DataFrame:
    """`{prefix}/{param}.{stat}` rows averaged over parameters: one value per (run, step)."""
    rows = curves[curves.metric.str.startswith(prefix + "/") & curves.metric.str.endswith("." + stat)]
    keys = [c for c in ("run", "step", "norm.name") if c in rows]
    return rows.groupby(keys, as_index=False).value.mean()


@S.figure
def internal_covariate_shift(curves: pd.DataFrame) -> Figure:
    """Santurkar et al. (2018) ICS over training, per norm: ||G - G'||/||G|| (the rule's measure)
    and cos(G, G')."""
    S.need(curves, ["norm.name", "metric"], "internal covariate shift")
    rows = []
    for prefix, c in per_model(curves):
        rel = relative_ics(c)
        l2 = rel.groupby(["run", "step", "norm.name"], as_index=False).value.mean() if len(rel) else rel
        cos = _per_param_mean(c, "ics", "cos")
        if len(l2) or len(cos):
            rows.append((prefix, l2, cos))
    if not rows:
        raise S.NotDrawn("internal covariate shift: no ics/* probe rows")
    fig = Figure(figsize=(8.0, 3.2 * len(rows)), layout="constrained")
    grid = fig.subplots(len(rows), 2, squeeze=False, sharex="row")
    for axes, (prefix, l2, cos) in zip(grid, rows):
        for ax, df, ylabel in ((axes[0], l2, "‖G − G′‖ / ‖G‖ (log scale)"), (axes[1], cos, "cos(G, G′)")):
            for norm in S.norms_of(df) if len(df) else []:
                S.line_ci(ax, aggregate(df[df["norm.name"] == norm], ["step"], "value"), "step", S.color(norm),
                          S.label(norm))
            ax.set_xlabel("step (SGD updates)")
            ax.set_ylabel(ylabel)
        if len(l2):
            S.log10_axis(axes[0], "y", subs=(1.0, 2.0, 5.0))
        axes[0].set_title(f"{prefix}relative gradient change from updating earlier layers (lower: less ICS)",
                          fontsize=8)
        axes[1].set_title(f"{prefix}direction agreement (higher: less ICS)", fontsize=8)
    S.legend_outside(fig, grid)
    fig.suptitle("Internal covariate shift (Santurkar et al. 2018), mean over probed parameters")
    return fig
