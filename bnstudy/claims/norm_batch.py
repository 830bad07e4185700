"""Small normalization batches: BN's accuracy falls when its statistics come from a few images,
even inside a large SGD batch (Wu & He 2018, Fig. 1: the per-GPU batch; here ghost batches,
Hoffer et al. 2017). Study: norm_batch.

GroupNorm (8 groups) is the batch-independent reference at scale=medium: Wu & He find BN above
GN at large normalization batches and below it at 2-4 images (check_gn). At scale=cpu the study
has no GN arm; there its side of the claim is bnstudy/claims/small_batch.py's. Rule written
2026-11-29, before any run of this study; the medium protocol 2026-12-06, before any run of it
(amendments: results/HISTORY.md).

Protocol (cpu): ResNet-20, SGD batch 128, SGD momentum 0.9, weight decay 5e-4; linear warmup over
the first 10% of the steps, then linear decay to zero at the end of the run (accuracy read at the
end); init.zero_init_residual for every arm (the gamma of each residual block's last norm starts
at 0, as Goyal et al. 2017 and Wu & He 2018 do). A 10,000-image class-balanced subset, 5,000 test
images, 4 epochs (312 steps), test accuracy every epoch. Ghost size 128 is plain BN at this batch
(a batch no larger than the ghost batch is normalized as one; tests/test_norm_variants.py checks
that it computes what BatchNorm2d does). After training, test accuracy with running statistics
(the usual eval) and with precise BN (evaluation.precise_bn, Wu & Johnson 2021: statistics
recomputed after training as the plain average over batches of 200 of the first
evaluation.precise_bn_images = 10,000 training images, i.e. all of the cpu subset, unaugmented in
the published runs: runs since 2026-12-08 augment those batches as training's are, because the
unaugmented statistics are not the ones a net trained on augmented crops saw, and read low
(results/norm_batch-medium/precise_bn_recheck.csv recomputes the medium runs both ways); ghost
layers are recomputed over those whole batches, not over ghost batches: population statistics;
the saved model keeps its running statistics).

Protocol (scale=medium): all 50,000 training and 10,000 test images, 15 epochs (5,850 steps), SGD
batch 128, Nesterov momentum, 5% warmup then linear decay, bf16 autocast + channels_last in every
arm (bnstudy/conf/scale/medium.yaml). Arms: ghost BN over 2, 4, 16 and 128 images (128 is plain
BN's forward) and GroupNorm (8 groups), the batch-independent reference of Wu & He's Fig. 1.
Default init for every arm: the medium pilot (scale/medium.yaml) found zero-initialized residual
gammas cost BN 2.4 points, more than the 1 point allowed for sharing them. Two phases
(bnstudy/analysis/selection.py's rule): select, each arm over peak lr {0.1, 0.2, 0.4} on seed 100,
the grid extended by x2 past an edge holding the best rate; then measure, seeds 0-4, each arm at
its rate in hydra.sweeper.chosen, committed from `python -m bnstudy select` before those runs.
check reads BN's drop from 128 to 2 (the drop to 4 beside it), check_gn GN against BN. Test
accuracy once an epoch; precise BN statistics beside, as at cpu.

Deviations: Wu & He trained ResNet-50 on ImageNet (100 epochs) on 8 GPUs with per-GPU batches 32
down to 2, so their SGD batch (256 down to 16) shrank with the normalization batch and the rate
was scaled with it; BN's error rose about 11 points at batch 2 while GroupNorm's stayed flat. Here
the SGD batch stays 128 and only the normalization batch changes; ResNet-20 on a 10,000-image
CIFAR-10 subset for 4 epochs; the reference is normalization batch 128 (plain BN), not Wu & He's
32 (not in this grid); each arm's peak rate is chosen from a 3-point grid rather than set by a
scaling rule. No GroupNorm arm at cpu: GN never looks across the batch, so it is the same net at
every normalization batch (its side of the claim is batch_size_sweep's). Ghost BN's running
statistics are the moving average of the ghost batches' average statistics, whose variance
leaves out the spread between ghost batches (precise BN does not)."""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from ..analysis import style as S
from ..analysis.cells import (EDGE_RULE, SELECTION_BIAS, at_best_rate, edge_blockers, edge_rates, normalization_batch,
                              study_runs, value_text)
from ..analysis.results import chance
from ..analysis.rules import (UNPAIRED, Effect, Note, Verdict, acc_cell, decision_text, missing, points, precise_notes,
                              untrained, verdict)
from ..analysis.stats import aggregate, difference, mean_ci

KEY, STUDY, TITLE = "norm_batch", "norm_batch", "Small normalization batches"
ORDER = 60  # its place in the report (claims are read in this order)
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
        "batches), at the same rates. " + SELECTION_BIAS + " " + decision_text(EFFECT) + " " + EDGE_RULE + " " + UNPAIRED)
RATE = "optim.lr"
# Note.kind of the notes on what a check read in place of the rule's; data as named
SGD_BATCHES = "several SGD batches"  # data: {"batches": the SGD batches present, "using": the one read}
ABSENT = "normalization batch absent"  # subject: "reference" or "small arm"; data: {"absent": .., "using": ..}
# fixed 2026-12-06, before any medium run: 2 points, as EFFECT (Wu & He: GN ~10 points above BN at 2)
GN_EFFECT = Effect("GroupNorm's accuracy minus BN's at the smallest normalization batch", "points", 2.0)
GN_TRAINED = 5.0  # points: GN within this of BN at the reference batch counts as trained well enough to compare
GN_RULE = (f"Wu & He (2018, Fig. 1): BN is above GroupNorm at large normalization batches and below it at 2-4 "
           f"images. GroupNorm (norm=gn, 8 groups) trains at the same SGD batch, each arm at its own rate. Effect = "
           f"mean final test accuracy of GN minus that of BN at normalization batch {SMALL}, in points (Welch t over "
           f"seeds). GN must have trained well enough to compare: its mean no more than {GN_TRAINED:g} points below "
           f"BN's at {REFERENCE}, else inconclusive (the comparison would be with a GN that failed here, not with GN). "
           "Shown beside as information: BN minus GN at every normalization batch with its interval, and the "
           "normalization batches between which that difference changes sign (where BN crosses GN). "
           + decision_text(GN_EFFECT) + " " + EDGE_RULE + " " + UNPAIRED)


def _ghost_runs(runs: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """ghost_bn runs at one SGD batch (the most common), with their normalization batch."""
    if not len(runs) or not {"norm.ghost_batch_size", "data.batch_size"} <= set(runs.columns):
        return runs.iloc[0:0]
    sel = runs[runs["norm.name"] == "ghost_bn"]
    if sel["data.batch_size"].nunique() > 1:
        keep = sel["data.batch_size"].value_counts().index[0]
        present = sorted(sel["data.batch_size"].unique())
        notes.append(Note(f"runs at SGD batches {present}: using batch {keep} only", SGD_BATCHES,
                          data={"batches": [float(x) for x in present], "using": float(keep)}))
        sel = sel[sel["data.batch_size"] == keep]
    return sel.assign(norm_batch=normalization_batch(sel))


def _cells(*sizes) -> list[str]:
    """The cells of these normalization batches, as edge_rates names them."""
    return [f"normalization batch {value_text(b)}" for b in sizes]


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
        notes.append(Note(f"no runs at normalization batch {REFERENCE}: the reference is the largest present, {ref:g}",
                          ABSENT, "reference", {"absent": REFERENCE, "using": float(ref)}))
    if small != SMALL:
        notes.append(Note(f"no runs at normalization batch {SMALL}: the small arm is the smallest present, {small:g}",
                          ABSENT, "small arm", {"absent": SMALL, "using": float(small)}))
    arm = lambda b: best[best.norm_batch == b]
    rate = lambda b: float(arm(b)[RATE].iloc[0])
    est = difference(points(arm(ref).final_acc), points(arm(small).final_acc))
    blockers = untrained({f"normalization batch {ref:g} (its best rate {rate(ref):g})": arm(ref).final_acc},
                         float(chance(sel).iloc[0]))
    blockers += edge_blockers(notes, _cells(ref, small))  # the drop to 4 beside the rule does not block
    precise = "final_acc_precise" in best and best["final_acc_precise"].notna().any()
    estimates = []  # shown beside, for numbers.csv
    finding = (f"Best peak rates: normalization batch {ref:g} at {rate(ref):g}, {small:g} at {rate(small):g}; "
               f"final test accuracy (%) {acc_cell(*mean_ci(arm(ref).final_acc))} vs "
               f"{acc_cell(*mean_ci(arm(small).final_acc))}.")
    if precise:
        est_p = difference(points(arm(ref).final_acc_precise), points(arm(small).final_acc_precise))
        estimates.append(("precise BN statistics (information, not the rule)", EFFECT, est_p))
        notes += precise_notes(best)
        finding += (f" With precise BN statistics (information, not the rule): {EFFECT.fmt_pm(est_p)}"
                    + (" (± its 95% Welch half-width)." if est_p.has_interval else "."))
    if small == SMALL and 4 in sizes:  # Wu & He's degradation is at 2-4 images: the drop to 4, beside the rule
        est4 = difference(points(arm(ref).final_acc), points(arm(4).final_acc))
        estimates.append(("normalization batch 4 as the small arm (information, not the rule)", EFFECT, est4))
        notes.append(f"information, not the rule: the drop from normalization batch {ref:g} to 4 is "
                     f"{EFFECT.fmt_pm(est4)}" + (" (± its 95% Welch half-width)" if est4.has_interval else ""))
    rows = []
    for b in sizes:
        row = {"normalization batch": f"{b:g}", "best peak rate": f"{rate(b):g}",
               "running statistics (%)": acc_cell(*mean_ci(arm(b).final_acc))}
        if precise:
            row["precise statistics (%)"] = acc_cell(*mean_ci(arm(b).final_acc_precise))
        rows.append(row)
    return verdict(KEY, title, RULE, EFFECT, est, blockers, finding, numbers=pd.DataFrame(rows), notes=notes,
                   estimates=estimates)


def check_gn(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    title = "GroupNorm beats BN at the smallest normalization batch"
    sel, notes = study_runs(runs, STUDY)
    ghost = _ghost_runs(sel, notes)
    gn = sel[sel["norm.name"] == "gn"] if len(sel) else sel
    if gn.empty or ghost.empty or ghost.norm_batch.nunique() < 2:
        return missing(KEY, title, GN_RULE, "finished norm_batch runs of norm=gn and of norm=ghost_bn at >= 2 "
                       "normalization batches (scale=medium)", STUDY, notes)
    best = at_best_rate(ghost, ["norm_batch"], RATE)
    gn_runs = gn.assign(arm="gn")
    gn = at_best_rate(gn_runs, ["arm"], RATE)
    notes += edge_rates(ghost, best, ["norm_batch"], RATE, prefixes=("normalization batch ",))
    notes += edge_rates(gn_runs, gn, ["arm"], RATE)  # GroupNorm's own grid: its cell is named "gn"
    sizes = sorted(best.norm_batch.unique())
    ref, small = (REFERENCE if REFERENCE in sizes else sizes[-1]), (SMALL if SMALL in sizes else sizes[0])
    if small != SMALL:
        notes.append(Note(f"no runs at normalization batch {SMALL}: GN is compared with BN at the smallest present, "
                          f"{small:g}", ABSENT, "small arm", {"absent": SMALL, "using": float(small)}))

    def bn(b):
        return best[best.norm_batch == b].final_acc

    est = difference(points(gn.final_acc), points(bn(small)))
    blockers = untrained({f"GroupNorm (rate {float(gn[RATE].iloc[0]):g})": gn.final_acc,
                          f"BN at normalization batch {ref:g}": bn(ref)}, float(chance(sel).iloc[0]))
    gap = points(bn(ref)).mean() - points(gn.final_acc).mean()
    if gap > GN_TRAINED:
        blockers.append(f"GroupNorm ended {gap:.1f} points below BN at normalization batch {ref:g} (more than "
                        f"{GN_TRAINED:g}): it did not train well enough here to compare")
    # GN and BN at the small batch (the effect) and BN at the reference (GN's gap to it decides whether GN counts)
    blockers += edge_blockers(notes, ["gn"] + _cells(ref, small))
    rows, signs = [], []
    for b in sizes:
        d = difference(points(bn(b)), points(gn.final_acc))
        signs.append((b, d))
        rows.append({"normalization batch": f"{b:g}", "BN (%)": acc_cell(*mean_ci(bn(b))),
                     "GroupNorm (%)": acc_cell(*mean_ci(gn.final_acc)),
                     "BN minus GN (points)": f"{d.value:+.1f} [{d.lo:+.1f}, {d.hi:+.1f}]" if d.has_interval
                     else f"{d.value:+.1f}"})
    crossing = [(a, b) for (a, da), (b, db) in zip(signs, signs[1:]) if (da.value < 0) != (db.value < 0)]
    cross = [f"{a:g} and {b:g}" for a, b in crossing]
    finding = (f"GroupNorm {acc_cell(*mean_ci(gn.final_acc))} at rate {float(gn[RATE].iloc[0]):g}; BN at "
               f"normalization batch {small:g} {acc_cell(*mean_ci(bn(small)))}, at {ref:g} "
               f"{acc_cell(*mean_ci(bn(ref)))}. BN minus GN changes sign between normalization batches "
               + (", ".join(cross) if cross else "— (nowhere in this grid)") + ".")
    return verdict(KEY, title, GN_RULE, GN_EFFECT, est, blockers, finding, numbers=pd.DataFrame(rows), notes=notes,
                   params={"crossing": crossing, "gn_below_reference": gap})


@S.figure
def accuracy_vs_norm_batch(runs: pd.DataFrame) -> Figure:
    """Test accuracy vs normalization batch, each at its best rate, with running and with
    precise statistics (in the style of Wu & He 2018, Fig. 1: the batch shrinks to the right)."""
    S.need(runs, ["norm.name", "norm.ghost_batch_size", "data.batch_size", "final_acc", RATE],
           "accuracy vs normalization batch")
    runs = study_runs(runs, STUDY)[0] if "study" in runs else runs  # the measuring runs, where rates were selected
    sel = _ghost_runs(runs, [])
    if sel.empty or sel.norm_batch.nunique() < 2:
        raise S.NotDrawn("accuracy vs normalization batch: fewer than 2 normalization batch sizes of ghost_bn")
    best = at_best_rate(sel, ["norm_batch"], RATE)
    fig = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = fig.subplots()
    gn = runs[runs["norm.name"] == "gn"].dropna(subset=["final_acc"])
    shown = pd.concat([best.final_acc, best.get("final_acc_precise", pd.Series(dtype=float)), gn.final_acc])
    ch = float(chance(sel).iloc[0])
    far = shown.dropna().min() > ch + 0.3  # every arm far above chance: the axis zooms in on them
    if not far:
        S.chance_line(ax, sel)
    S.line_ci(ax, aggregate(best, ["norm_batch"], "final_acc"), "norm_batch", S.color("bn"),
              "running statistics", scale=S.PCT, errorbars=True)
    if "final_acc_precise" in best and best["final_acc_precise"].notna().any():
        S.line_ci(ax, aggregate(best, ["norm_batch"], "final_acc_precise"), "norm_batch", S.color("ghost_bn"),
                  "precise statistics" + (" (unaugmented images)" if precise_notes(best) else ""),
                  scale=S.PCT, errorbars=True, linestyle="--")
    if len(gn):  # GroupNorm does not depend on the batch: a level across the figure
        gn = at_best_rate(gn.assign(arm="gn"), ["arm"], RATE)
        m, h, _ = mean_ci(gn.final_acc)
        ax.axhline(100 * m, color=S.color("gn"), label="GroupNorm (any batch)")
        if h == h:  # an interval with 2+ seeds
            ax.axhspan(100 * (m - h), 100 * (m + h), color=S.color("gn"), alpha=0.15, linewidth=0)
    S.log2_axis(ax, best.norm_batch.dropna().unique())
    ax.invert_xaxis()  # as Wu & He draw it
    ax.set_xlabel("normalization batch (images per BN statistic, log₂ scale)")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title(f"BN accuracy vs normalization batch, SGD batch {int(sel['data.batch_size'].iloc[0])}, each at "
                 f"its best rate\n{S.caption_n(best)}" + (f"; chance {100 * ch:g}%, below the axis" if far else ""),
                 fontsize=9)
    ax.legend(loc="best")
    return fig


CHECKS = [check, check_gn]
FIGURES = {
    "accuracy_vs_norm_batch": (lambda runs, curves, v: accuracy_vs_norm_batch(runs),
                               "Final test accuracy vs normalization (ghost) batch at a fixed SGD batch, each at its "
                               "best rate; running and precise BN statistics (Wu & He 2018, Fig. 1 style)."),
}
