"""The loss landscape along the gradient (Santurkar et al. 2018, Sec. 3.1, Fig. 4): loss range,
gradient predictiveness, beta-smoothness. Its check and its figure."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ...analysis import style as S
from ...analysis.cells import EDGE_RULE
from ...analysis.rules import Effect, has_norms, missing, Verdict
from ...analysis.stats import aggregate
from .common import (EACH_MODEL, PROTOCOL, RATIO, STUDY, judge_by_model, means_by_model, model_means, param_rows,
                     per_model, per_run, read_study)

LANDSCAPE = {"loss range": Effect("none's loss range along the gradient / BN's", "ratio", RATIO),
             "relative gradient predictiveness": Effect(
                 "none's relative gradient predictiveness ||grad L(w - eta g) - g||/||g|| / BN's", "ratio", RATIO)}

LANDSCAPE_RULE = (PROTOCOL + "Along each gradient step (Santurkar et al. 2018, Sec. 3.1), averaged over training: the "
                  "loss range max - min over the step sizes, and the gradient predictiveness relative to the "
                  "gradient, max ||grad L(w - eta g) - g||/||g|| (effective beta-smoothness shown beside; its units "
                  "depend on the parametrization). Effect per measure = mean log2 of none minus that of BN (Welch t "
                  "over seeds), shown as a ratio. Reproduced: both measures' intervals lie above 1.5x; not "
                  "reproduced: one lies below; inconclusive: otherwise, or an arm did not train. " + EACH_MODEL
                  + EDGE_RULE)


def with_relative_grad_pred(c: pd.DataFrame) -> pd.DataFrame:
    """The curves with `landscape/grad_pred_rel` rows: logged, or for runs made before it was,
    grad_pred over the total ||g|| of the gradients probe at the same step."""
    if (c.metric == "landscape/grad_pred_rel").any() or not (c.metric == "landscape/grad_pred").any():
        return c
    g = param_rows(c, "grad", "norm")
    total = np.sqrt((g.value ** 2).groupby([g.run, g.step]).sum()).rename("g").reset_index()
    gp = c[c.metric == "landscape/grad_pred"].merge(total, on=["run", "step"])
    return pd.concat([c, gp.assign(metric="landscape/grad_pred_rel", value=gp.value / gp.g).drop(columns="g")],
                     ignore_index=True)


def landscape_measures(c: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per run: the mean loss range and relative gradient predictiveness over the probed steps."""
    c = with_relative_grad_pred(c)
    ls = c[c.metric.str.startswith("landscape/")]
    if not len(ls):
        return {}
    wide = ls.pivot_table(index=["run", "norm.name", "step"], columns="metric", values="value").reset_index()
    out = {}
    if {"landscape/loss_max", "landscape/loss_min"} <= set(wide.columns):
        out["loss range"] = per_run(wide.assign(value=wide["landscape/loss_max"] - wide["landscape/loss_min"]))
    if "landscape/grad_pred_rel" in wide:
        out["relative gradient predictiveness"] = per_run(wide.assign(value=wide["landscape/grad_pred_rel"]))
    return out


def check_landscape(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    claim, title = "landscape", "BN makes the loss landscape smoother"
    sel, c, notes = read_study(runs, curves)
    per = landscape_measures(c) if len(c) else {}
    if len(per) < 2 or not all(has_norms(v, ("bn", "none")) for v in per.values()):
        return missing(claim, title, LANDSCAPE_RULE, "covariate_shift runs with norm=bn and norm=none and the "
                       "landscape probe (`landscape/*` rows), with `landscape/grad_pred_rel` or the gradients probe "
                       "at the same steps", STUDY, notes)
    if "landscape/grad_pred_rel" not in set(c.metric):
        notes.append("||g|| read from the gradients probe at the landscape steps (runs made before "
                     "`landscape/grad_pred_rel` was logged)")
    verdict, finding, numbers, estimates, fields = judge_by_model(sel, per, LANDSCAPE, notes=notes)
    beta = c[c.metric == "landscape/beta_smooth"]
    if len(beta):
        fields["facts"]["beta_smooth"] = model_means(per_run(beta), sel)  # {model: {norm: mean}}, shown beside
        finding += (" Beside the rule, effective beta-smoothness: "
                    + "; ".join(means_by_model(per_run(beta), sel, "")) + ".")
    return Verdict(claim, title, verdict, LANDSCAPE_RULE, finding, numbers, notes=notes, estimates=estimates,
                   **fields)


@S.figure
def loss_landscape(curves: pd.DataFrame) -> Figure:
    """Loss range along the gradient, gradient predictiveness and beta-smoothness over training."""
    S.need(curves, ["norm.name", "metric"], "loss landscape")
    curves = with_relative_grad_pred(curves)
    ls = curves[curves.metric.str.startswith("landscape/")]
    if not len(ls):
        raise S.NotDrawn("loss landscape: no landscape/* probe rows")
    rows = per_model(ls)
    fig = Figure(figsize=(10.5, 3.2 * len(rows)), layout="constrained")
    grid = fig.subplots(len(rows), 3, squeeze=False, sharex="row")
    for axes, (prefix, m_ls) in zip(grid, rows):
        for norm in S.norms_of(m_ls):
            sub = m_ls[m_ls["norm.name"] == norm]
            lo = aggregate(sub[sub.metric == "landscape/loss_min"], ["step"], "value")
            hi = aggregate(sub[sub.metric == "landscape/loss_max"], ["step"], "value")
            if len(lo) and len(hi):
                band = lo.merge(hi, on="step", suffixes=("_lo", "_hi"))
                axes[0].fill_between(band.step, band.mean_lo, band.mean_hi, color=S.color(norm), alpha=0.3,
                                     label=S.label(norm))
            for ax, m in ((axes[1], "landscape/grad_pred_rel"), (axes[2], "landscape/beta_smooth")):
                a = aggregate(sub[sub.metric == m], ["step"], "value")
                if len(a):
                    S.line_ci(ax, a, "step", S.color(norm), S.label(norm))
        axes[0].set_ylabel("training loss (cross-entropy)")
        axes[1].set_ylabel("‖∇L(x) − ∇L(x − ηg)‖ / ‖g‖ (log scale)")
        axes[2].set_ylabel("effective β (log scale)")
        axes[0].set_title(f"{prefix}loss range along the gradient step", fontsize=9)
        axes[1].set_title(f"{prefix}relative gradient predictiveness (lower: better)", fontsize=9)
        axes[2].set_title(f"{prefix}β-smoothness (lower: smoother)", fontsize=9)
        for ax in axes:
            ax.set_xlabel("step (SGD updates)")
        for ax in axes[1:]:
            if ax.has_data():
                S.log10_axis(ax, "y", subs=(1.0, 2.0, 5.0))
    S.legend_outside(fig, grid)
    fig.suptitle("Loss landscape along the training trajectory (Santurkar et al. 2018, Fig. 4)")
    return fig
