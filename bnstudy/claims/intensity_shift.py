"""Intensity variation (the medical-imaging case: scanners and patients differ in image
intensity): with BN, such variation in the training images should not hurt training. Study:
intensity_shift (bn / none / gn, each trained on clean images and with a random gain and offset
per image, each cell at its own best rate).
Protocol and rule written 2026-11-29, before any run of it (results/HISTORY.md).

The claim names no paper; the variation it means is MR's: conventional MR intensities are in
arbitrary units, and the intensity of one tissue differs between scans of the same protocol,
across scanners, patients and visits (Nyúl & Udupa 1999; Shinohara et al. 2014, who normalize for
it), whereas CT is calibrated in Hounsfield units and varies little.

Protocol: the variation (data.intensity_shift=true) is drawn per image (data.intensity_per_image):
each training image is multiplied by its own gain, log-uniform in [1/1.5, 1.5]
(data.intensity_gain 0.5: two images differ by up to 2.25x), and shifted by its own offset,
uniform in [-0.1, 0.1] of the 0-1 pixel range (data.intensity_offset 0.1), then rounded and
clipped to 0-255. GN is the per-sample norm: norm.groups 8 (2 channels a group in the first
stage, 8 in the last), picked over LN because a per-image gain is removed by either (both are
scale-invariant per image), a per-image offset passes the first conv as a per-channel constant
that GN's small groups nearly remove and LN's one group does not, and LN trains conv nets worse
(Wu & He 2018, Sec. 4.1, Table 1); GN is also the per-sample norm used in medical-image
segmentation with small batches and in this harness's batch_size_sweep. The rate grid {0.025,
0.1} brackets where earlier runs of this harness trained each arm: BN and none near 0.1 (He et
al. 2016's rate), GN only at lower rates (its batch-128 runs at 0.1 with no warmup stayed near
chance). ResNet-20, SGD momentum 0.9, weight decay 5e-4; linear warmup over the first 10% of the
steps, then linear decay to zero at the end of the run (accuracy read at the end);
init.zero_init_residual (the gamma of each residual block's last norm starts at 0, as Goyal et al.
2017 and Wu & He 2018 do; none has no gamma, so it starts as the ordinary unnormalized residual
net). scale=cpu: 10,000-image class-balanced subset, 5,000 test images, 3 epochs (234 steps), test
accuracy at the end only. After training (evaluation.shifted_test), accuracy on the test images
with the same per-image variation, drawn with the run's seed, in eval mode (running statistics)
and with each test batch of 100 normalized by its own statistics.

Limits: the size of the variation is assumed, not measured: images reach a net after the usual
per-scan rescaling to a 0-1 range, which removes most of MR's arbitrary scale but leaves tissue
intensities that differ between scans by tens of percent (the residual that standardization
methods such as Nyúl & Udupa's and Shinohara et al.'s exist to remove), plus a small offset;
CT-like variation would be far smaller and is not tested. Both settings of a norm get the same
2-point grid, so much of the selection bias cancels in a cost, but not all.

Deviations: no paper's protocol to follow; the variation is simulated on CIFAR-10 natural images
(8-bit, so the brightest and darkest pixels clip at the extreme gains and offsets, which loses
information that no normalization can restore; MR intensities do not saturate that way), as a
global gain and offset per image, not MR's nonlinear, tissue-dependent differences or its bias
fields. 3 epochs rather than the 4 of the other cpu studies (so that 60 runs fit one session): a
short budget is a harsher test of "does not hurt training" (a slower start shows as a cost). A
2-point rate grid per cell."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..analysis import style as S
from ..analysis.cells import EDGE_RULE, SELECTION_BIAS, at_best_rate, edge_blockers, edge_rates, study_runs
from ..analysis.results import chance
from ..analysis.rules import (UNPAIRED, TRAINED_MARGIN, Effect, Note, Verdict, acc_cell, decision_text, has_norms, missing,
                              points, untrained, verdict)
from ..analysis.stats import aggregate, combine, difference, mean_ci

KEY, STUDY, TITLE = "intensity_shift", "intensity_shift", "Intensity variation in training"
ORDER = 120  # its place in the report (claims are read in this order)
STATEMENT = ("With BatchNorm, variation in image intensity across machines and patients does not hurt training "
             "(the seed's medical-imaging example; MR intensities vary between scans: Nyúl & Udupa 1999, "
             "Shinohara et al. 2014).")
SWITCH, PER_IMAGE, RATE = "data.intensity_shift", "data.intensity_per_image", "optim.lr"
ARMS = ["norm.name", SWITCH]
# fixed 2026-11-25 (when every rule was rewritten), after the cpu intensity_shift runs: a cost under
# 2 points is "not hurting"; the per-image protocol, best rates and this rule written 2026-11-29,
# before any run of it
EFFECT = Effect("BN's cost of intensity variation in training (clean test accuracy when trained on clean images "
                "minus when trained with the variation, each at its best rate)", "points", 2.0, claimed=-1)
# shown beside the rule, not decided (Verdict.estimates; no minimum)
COST = Effect("a norm's cost of intensity variation in training (as BN's; beside the rule, not decided)", "points",
              math.nan)
COST_MINUS_BN = Effect("a norm's cost of intensity variation in training minus BN's (beside the rule, not decided)",
                       "points", math.nan)
RULE = ("Runs with a gain and offset drawn per image (data.intensity_per_image); where none exist, the per-batch "
        "runs made before 2026-11-29, noted. Each (norm, training setting) cell at its own best peak learning rate: "
        "the rate of the grid with the highest mean final test accuracy on the clean test images over seeds (a "
        "diverged run counts as chance; a tie goes to the lower rate). Cost of a norm = its mean final clean-test "
        f"accuracy when trained on clean images minus when trained with random intensity variation ({SWITCH}=false "
        "vs true), each at its best rate, in points (Welch t over seeds). The claim is about BN's cost, which must "
        "stay below the minimum effect; none's and a per-sample norm's (GN) costs, and each minus BN's, are shown "
        "beside, not decided, so a reader sees whether BN is what removes the cost (a cost beside is marked "
        "uninterpretable where that norm did not train on clean images). BN must have trained on clean images; BN "
        "trained with the variation may sit at chance: that is the harm the claim denies, a cost, not a failed arm "
        "(amended 2026-11-29, before any run of this protocol: it first asked BN to train in both settings). "
        + SELECTION_BIAS + " " + decision_text(EFFECT) + " Secondary, labelled, not in the verdict: robustness, each "
        "cell's accuracy on test images with the variation (eval mode, running statistics; and each test batch of "
        "100 normalized by its own statistics). " + EDGE_RULE + " " + UNPAIRED)
SHIFTED = (("final.test_shifted/acc", "running"), ("final.test_shifted/acc_batchstats", "batch"))
# Note.kind of the notes on the runs read
LEFT_OUT = "runs of the other protocol left out"  # data: {"runs": how many, "protocol": "per batch" | "per image"}
PER_BATCH = "per-batch variation"  # data: {}: the runs read drew one gain and offset per batch
ONE_SIZE = "one variation size"  # data: {column: the value read} (data.intensity_gain, data.intensity_offset)


def _protocol(sel: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """The per-image runs where any exist (else the older per-batch ones, noted), at one variation size."""
    per_image = sel[PER_IMAGE].fillna(False).astype(bool) if PER_IMAGE in sel else pd.Series(False, index=sel.index)
    on = sel[SWITCH].astype(bool)
    if (per_image & on).any():
        if (~per_image).any():
            notes.append(Note(f"left out {int((~per_image).sum())} runs of the protocol before 2026-11-29 (intensity "
                              "varied per batch)", LEFT_OUT, data={"runs": int((~per_image).sum()),
                                                                    "protocol": "per batch"}))
        sel = sel[per_image]
    else:
        if per_image.any():  # per-image clean runs, but none of its varied runs finished: never pooled
            notes.append(Note(f"left out {int(per_image.sum())} runs of the per-image protocol (no run with the "
                              "variation of that protocol has finished)", LEFT_OUT,
                              data={"runs": int(per_image.sum()), "protocol": "per image"}))
        sel = sel[~per_image]
        notes.append(Note("these runs drew one gain and offset per batch (the protocol before 2026-11-29), not one "
                          "per image as scanners and patients differ; BN's batch statistics partly undo a per-batch "
                          "gain. The verdict is about per-batch variation", PER_BATCH))
    size = [c for c in ("data.intensity_gain", "data.intensity_offset") if c in sel]
    varied = sel[sel[SWITCH].astype(bool)]
    if size and len(varied) and varied[size].drop_duplicates().shape[0] > 1:
        keep = varied.groupby(size).size().idxmax()
        keep = keep if isinstance(keep, tuple) else (keep,)
        used = ", ".join(f"{c}={v:g}" for c, v in zip(size, keep))
        notes.append(Note(f"variation runs at several sizes: using {used} only", ONE_SIZE,
                          data={c: float(v) for c, v in zip(size, keep)}))
        match = np.logical_and.reduce([sel[c] == v for c, v in zip(size, keep)])
        sel = sel[~sel[SWITCH].astype(bool) | match]
    return sel


def _cells(sel: pd.DataFrame) -> pd.DataFrame:
    """Each (norm, setting) cell's runs at its own best rate (one rate everywhere if no rate column)."""
    sel = sel.assign(**{SWITCH: sel[SWITCH].astype(bool)})
    return at_best_rate(sel, ARMS, RATE) if RATE in sel else sel


def _arm(best: pd.DataFrame, norm: str, on: bool, col: str = "final_acc") -> pd.Series:
    return best.loc[(best["norm.name"] == norm) & (best[SWITCH] == on), col] if col in best else pd.Series(dtype=float)


def cost(best: pd.DataFrame, norm: str):
    return difference(points(_arm(best, norm, False)), points(_arm(best, norm, True)))


def check(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    title = "Intensity variation in the training images does not hurt training with BN"
    sel, notes = study_runs(runs, STUDY)
    if not has_norms(sel, ("bn",)) or SWITCH not in sel or sel[SWITCH].astype(bool).nunique() < 2:
        return missing(KEY, title, RULE, f"finished intensity_shift runs with norm=bn, {SWITCH}=false and true",
                       STUDY, notes)
    sel = _protocol(sel, notes)
    best = _cells(sel)
    if RATE in sel:
        label = lambda d: d.assign(images=d[SWITCH].astype(bool).map({True: "varied", False: "clean"}))  # noqa: E731
        notes += edge_rates(label(sel), label(best), ["norm.name", "images"], RATE)
    if not (len(_arm(best, "bn", False)) and len(_arm(best, "bn", True))):
        return missing(KEY, title, RULE, f"intensity_shift runs with norm=bn at {SWITCH}=false and true of one "
                       "protocol", STUDY, notes)
    ch = float(chance(sel).iloc[0])
    rate = lambda n, on: (f" at {float(best.loc[(best['norm.name'] == n) & (best[SWITCH] == on), RATE].iloc[0]):g}"
                          if RATE in best and len(_arm(best, n, on)) else "")
    # BN with the variation at chance is the harm the claim denies (a cost), not a failed arm
    blockers = untrained({f"bn trained on clean images (its best rate{rate('bn', False)})": _arm(best, "bn", False)}, ch)
    blockers += edge_blockers(notes, ("bn clean", "bn varied"))  # BN's two cells; the other norms' costs are beside
    est = cost(best, "bn")
    norms = S.norms_of(best)
    aside, estimates, untrained_beside = [], [], []
    for n in (n for n in norms if n != "bn"):
        if not (len(_arm(best, n, False)) and len(_arm(best, n, True))):
            continue
        c = cost(best, n)
        diff = combine([(1, points(_arm(best, n, False))), (-1, points(_arm(best, n, True))),
                        (-1, points(_arm(best, "bn", False))), (1, points(_arm(best, "bn", True)))])
        trained = not untrained({n: _arm(best, n, False)}, ch)
        untrained_beside += [] if trained else [n]
        label = f"arm={n}" + ("" if trained else " (uninterpretable: did not train on clean images)")
        estimates += [(label, COST, c), (label, COST_MINUS_BN, diff)]
        aside.append(f"{n}'s cost {EFFECT.fmt_pm(c)}, {n}'s cost minus BN's {EFFECT.fmt_pm(diff)}"
                     + ("" if trained else f" (uninterpretable: {n} did not train on clean images, mean accuracy "
                                           f"within {100 * TRAINED_MARGIN:.0f} points of chance)"))
    finding = ("Beside the rule (± the 95% half-width, each cell at its best rate): " + "; ".join(aside) + ".") \
        if aside else ""
    rows = []
    for norm in norms:
        row = {"norm": norm}
        for on, what in ((False, "trained clean"), (True, "trained with variation")):
            row[f"{what}: best rate"] = rate(norm, on).replace(" at ", "") or "—"
            row[f"{what}: clean test (%)"] = acc_cell(*mean_ci(_arm(best, norm, on)))
        row["cost (points)"] = EFFECT.fmt_pm(cost(best, norm))
        for on, what in ((False, "trained clean"), (True, "trained with variation")):
            for col, stats in SHIFTED:
                if col in best and _arm(best, norm, on, col).notna().any():
                    row[f"secondary: {what}, varied test, {stats} statistics (%)"] = acc_cell(
                        *mean_ci(_arm(best, norm, on, col)))
        rows.append(row)
    if "final.test_shifted/acc" in best and "final.test_shifted/acc_batchstats" not in best:
        notes.append("varied-test accuracy with running statistics only: these runs did not log it with batch "
                     "statistics (`test_shifted/acc_batchstats`, logged since bnstudy 0.2.0)")
    # untrained_beside: the norms whose cost beside is uninterpretable (they did not train on clean images)
    return verdict(KEY, title, RULE, EFFECT, est, blockers, finding, numbers=pd.DataFrame(rows), notes=notes,
                   estimates=estimates, facts={"untrained_beside": untrained_beside})


@S.figure
def intensity_shift(runs: pd.DataFrame) -> Figure:
    """Left: clean test accuracy of nets trained on clean images vs with intensity variation, per
    norm, each cell at its best rate (the cost the rule reads). Right (secondary): the same nets on
    test images with the variation."""
    S.need(runs, ["norm.name", SWITCH, "final_acc"], "intensity variation")
    r = runs[runs.status.isin(("completed", "diverged"))]
    if not len(r) or r[SWITCH].astype(bool).nunique() < 2:
        raise S.NotDrawn("intensity variation: runs trained clean and with the variation are both needed")
    best = _cells(_protocol(r, []))
    norms = S.norms_of(best)
    shifted = "final.test_shifted/acc" in best and best["final.test_shifted/acc"].notna().any()
    fig = Figure(figsize=(4.0 + 3.6 * shifted, 3.6), layout="constrained")
    axes = fig.subplots(1, 1 + shifted, squeeze=False, sharey=True)[0]
    cells = lambda col: [(best[~best[SWITCH]], col, "trained on clean images", ""),
                         (best[best[SWITCH]], col, "trained with intensity variation", "//")]
    panels = [(axes[0], cells("final_acc"), "clean test images (the rule: the cost of variation)")]
    if shifted:
        panels.append((axes[1], cells("final.test_shifted/acc"), "test images with the variation (secondary)"))
    for ax, bars, title in panels:
        for k, (sub, col, what, hatch) in enumerate(bars):
            agg = aggregate(sub, ["norm.name"], col).set_index("norm.name").reindex(norms)
            xs = np.arange(len(norms)) + (k - 0.5) * 0.38
            m, ci = agg["mean"].to_numpy(float) * S.PCT, agg["ci"].fillna(0).to_numpy(float) * S.PCT
            yerr = np.nan_to_num(np.vstack([np.minimum(ci, m), np.minimum(ci, S.PCT - m)]))  # within 0-100%
            ax.bar(xs, m, width=0.36, yerr=yerr, capsize=3, color=[S.color(n) for n in norms], hatch=hatch,
                   edgecolor="white", alpha=1.0 if k == 0 else 0.55)
            ax.bar([0], [0], color="0.35", alpha=1.0 if k == 0 else 0.55, hatch=hatch, edgecolor="white", label=what)
        S.chance_line(ax, best)
        ax.set_xticks(range(len(norms)), [S.label(n) for n in norms])
        ax.set_xlabel("normalization (each cell at its best rate)")
        ax.set_title(title, fontsize=9)
        ax.legend(loc="upper right", fontsize=7)
    axes[0].set_ylabel("final test accuracy (%)")
    fig.suptitle(f"Intensity variation in training ({S.caption_n(best)})", fontsize=9)
    return fig


CHECKS = [check]
FIGURES = {"intensity_shift": (lambda runs, curves, v: intensity_shift(runs),
                               "Clean test accuracy when trained on clean images vs with per-image intensity "
                               "variation, each cell at its best rate (left, the rule); the same nets on test images "
                               "with the variation (right, secondary).")}
