"""Small normalization batches: BN's accuracy falls when its statistics come from a few images,
even inside a large SGD batch (Wu & He 2018, Fig. 1: the per-GPU batch; here ghost batches,
Hoffer et al. 2017). Study: norm_batch.

GroupNorm has no arm here: it never looks across the batch, so a GN net is the same at every
normalization batch; its side of the claim is bnstudy/claims/small_batch.py's."""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from ..analysis import style as S
from ..analysis.results import SELECTION_BIAS, at_best_rate, chance, edge_rates, normalization_batch, study_runs
from ..analysis.rules import Effect, Verdict, acc_cell, decision_text, missing, points, untrained, verdict
from ..analysis.stats import aggregate, difference, mean_ci

KEY, STUDY, TITLE = "norm_batch", "norm_batch", "Small normalization batches"
STATEMENT = ("BatchNorm's accuracy falls when its statistics come from very small batches (2-4 images), even inside "
             "a large SGD batch: Wu & He's per-GPU batch (Wu & He 2018, Fig. 1), here ghost batches (Hoffer et al. "
             "2017).")
REFERENCE, SMALL = 128, 2  # plain BN at the SGD batch of 128; Wu & He's smallest batch
# fixed 2026-11-29, before any run of this study: 2 points, the smallest accuracy difference this
# harness treats as an effect (as small_batch's; Wu & He: ~11 points at batch 2)
EFFECT = Effect("accuracy at the reference normalization batch minus at the smallest", "points", 2.0)
RULE = ("A run's normalization batch is min(norm.ghost_batch_size, data.batch_size), norm=ghost_bn at one SGD batch "
        "(128; a ghost batch as large as the SGD batch is plain BN). Each normalization batch at its own best peak "
        "learning rate: the rate of the grid with the highest mean final test accuracy over seeds, read with "
        f"running statistics (a diverged run counts as chance; a tie goes to the lower rate). Effect = mean final test accuracy at normalization "
        f"batch {REFERENCE} minus at normalization batch {SMALL}, in points (Welch t over seeds); where {SMALL} is "
        f"absent the smallest present is used, and where {REFERENCE} is absent the largest present, each noted. The "
        f"reference arm ({REFERENCE}) must have trained; the small arm may sit at chance: that is the claimed "
        "degradation itself, not a failed arm. Shown beside as information, not decided: the same effect with "
        "precise BN statistics (recomputed after training over training images in whole batches, not ghost "
        "batches), at the same rates. " + SELECTION_BIAS + " " + decision_text(EFFECT))
RATE = "optim.lr"


def _ghost_runs(runs: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """ghost_bn runs at one SGD batch (the most common), with their normalization batch."""
    if not len(runs) or not {"norm.ghost_batch_size", "data.batch_size"} <= set(runs.columns):
        return runs.iloc[0:0]
    sel = runs[runs["norm.name"] == "ghost_bn"]
    if sel["data.batch_size"].nunique() > 1:
        keep = sel["data.batch_size"].value_counts().index[0]
        notes.append(f"runs at SGD batches {sorted(sel['data.batch_size'].unique())}: using batch {keep} only")
        sel = sel[sel["data.batch_size"] == keep]
    return sel.assign(norm_batch=normalization_batch(sel))


def check(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    title = "BN degrades when it normalizes over small batches"
    sel, notes = study_runs(runs, STUDY)
    sel = _ghost_runs(sel, notes)
    if sel.empty or sel.norm_batch.nunique() < 2:
        return missing(KEY, title, RULE, "finished norm_batch runs (norm=ghost_bn) at >= 2 normalization batch sizes",
                       STUDY, notes)
    best = at_best_rate(sel, ["norm_batch"], RATE)
    notes += edge_rates(sel, best, ["norm_batch"], RATE, prefixes=("normalization batch ",))
    sizes = sorted(best.norm_batch.unique())
    ref = REFERENCE if REFERENCE in sizes else sizes[-1]
    small = SMALL if SMALL in sizes else sizes[0]
    if ref != REFERENCE:
        notes.append(f"no runs at normalization batch {REFERENCE}: the reference is the largest present, {ref:g}")
    if small != SMALL:
        notes.append(f"no runs at normalization batch {SMALL}: the small arm is the smallest present, {small:g}")
    arm = lambda b: best[best.norm_batch == b]
    rate = lambda b: float(arm(b)[RATE].iloc[0])
    est = difference(points(arm(ref).final_acc), points(arm(small).final_acc))
    blockers = untrained({f"normalization batch {ref:g} (its best rate {rate(ref):g})": arm(ref).final_acc},
                         float(chance(sel).iloc[0]))
    precise = "final_acc_precise" in best and best["final_acc_precise"].notna().any()
    finding = (f"Best peak rates: normalization batch {ref:g} at {rate(ref):g}, {small:g} at {rate(small):g}; "
               f"final test accuracy (%) {acc_cell(*mean_ci(arm(ref).final_acc))} vs "
               f"{acc_cell(*mean_ci(arm(small).final_acc))}.")
    if precise:
        est_p = difference(points(arm(ref).final_acc_precise), points(arm(small).final_acc_precise))
        finding += (f" With precise BN statistics (information, not the rule): {EFFECT.fmt_pm(est_p)}"
                    + (" (± its 95% Welch half-width)." if est_p.has_interval else "."))
    rows = []
    for b in sizes:
        row = {"normalization batch": f"{b:g}", "best peak rate": f"{rate(b):g}",
               "running statistics (%)": acc_cell(*mean_ci(arm(b).final_acc))}
        if precise:
            row["precise statistics (%)"] = acc_cell(*mean_ci(arm(b).final_acc_precise))
        rows.append(row)
    return verdict(KEY, title, RULE, EFFECT, est, blockers, finding, numbers=pd.DataFrame(rows), notes=notes)


@S.figure
def accuracy_vs_norm_batch(runs: pd.DataFrame) -> Figure:
    """Test accuracy vs normalization batch, each at its best rate, with running and with
    precise statistics (in the style of Wu & He 2018, Fig. 1: the batch shrinks to the right)."""
    S.need(runs, ["norm.name", "norm.ghost_batch_size", "data.batch_size", "final_acc", RATE],
           "accuracy vs normalization batch")
    sel = _ghost_runs(runs, [])
    if sel.empty or sel.norm_batch.nunique() < 2:
        raise S.NotDrawn("accuracy vs normalization batch: fewer than 2 normalization batch sizes of ghost_bn")
    best = at_best_rate(sel, ["norm_batch"], RATE)
    fig = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = fig.subplots()
    S.chance_line(ax, sel)
    S.line_ci(ax, aggregate(best, ["norm_batch"], "final_acc"), "norm_batch", S.color("bn"),
              "running statistics", scale=S.PCT, errorbars=True)
    if "final_acc_precise" in best and best["final_acc_precise"].notna().any():
        S.line_ci(ax, aggregate(best, ["norm_batch"], "final_acc_precise"), "norm_batch", S.color("ghost_bn"),
                  "precise statistics", scale=S.PCT, errorbars=True, linestyle="--")
    S.log2_axis(ax, best.norm_batch.dropna().unique())
    ax.invert_xaxis()  # as Wu & He draw it
    ax.set_xlabel("normalization batch (images per BN statistic, log₂ scale)")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title(f"BN accuracy vs normalization batch, SGD batch {int(sel['data.batch_size'].iloc[0])}, each at "
                 f"its best rate\n{S.caption_n(best)}", fontsize=9)
    ax.legend(loc="best")
    return fig


CHECKS = [check]
FIGURES = {
    "accuracy_vs_norm_batch": (lambda runs, curves, v: accuracy_vs_norm_batch(runs),
                               "Final test accuracy vs normalization (ghost) batch at a fixed SGD batch, each at its "
                               "best rate; running and precise BN statistics (Wu & He 2018, Fig. 1 style)."),
}
