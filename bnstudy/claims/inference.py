"""Inference with population statistics: at inference BN must use population (running)
statistics, so that the output does not depend on the other images in the batch; this
matters most for small batches (Ioffe & Szegedy 2015, Sec. 3.1). Asked at a large and a small
normalization batch (ghost BN), with precise BN beside the running averages (Wu & Johnson 2021,
Sec. 3-4). Study: inference.

Protocol (bnstudy/conf/exp/inference.yaml; the protocol and rule were
written 2026-11-29, before any run of it: results/HISTORY.md): norm=ghost_bn,
norm.ghost_batch_size {16, 128} x norm.momentum {0.01, 0.1} x seeds. SGD batch 128, so ghost size 128 is plain BN (a batch no larger than the
ghost batch is normalized as one; tests/test_norm_variants.py checks it computes what
BatchNorm2d does) and 16 is a normalization batch of 16 inside it (Hoffer et al. 2017), as
+exp=norm_batch sets it; at smoke, the smoke batch 64 gives normalization batches 16 and 64.
Momentum 0.01 is the Keras/TF default (decay 0.99), 0.1 PyTorch's. ResNet-20, SGD momentum 0.9,
weight decay 5e-4, peak lr 0.1 for every run; linear warmup over the first 10% of the steps,
then linear decay to zero at the end of the run. cpu: 10,000-image class-balanced subset, 5,000
test images, 4 epochs (312 steps). After training (evaluation.inference_modes), test accuracy
(a) in eval mode with the running statistics; (b) with each test batch's own statistics
(train-mode BN, dropout off; ghost layers normalize chunks of their ghost size, as in training)
at test batches {1, 2, 4, 8, 16, 32, 64, 128, 256, 1000}; (c) in eval mode with precise BN
statistics: recomputed as the plain average over batches of 200 of the first
evaluation.precise_bn_images = 10,000 training images (all of the cpu subset), no augmentation,
ghost layers over whole batches (population statistics). Eval-mode accuracy does not depend on
the test batch, so (a) and (c) stand beside (b) at every test batch. The smallest test batch of
the rule is 1. No learning rate is chosen on the runs, so there is no selection bias.

Deviations: Ioffe & Szegedy argue the point (Sec. 3.1) for Inception on ImageNet; Wu & Johnson
measure ResNet-50 on ImageNet (and Mask R-CNN) at normalization batches down to 2 across 8 GPUs.
Here ResNet-20 on a 10,000-image CIFAR-10 subset for 4 epochs, two normalization batches, one
SGD batch. Ghost BN's running variance is the average of the ghost batches' variances, which
leaves out the spread between ghost batches (precise BN does not): at normalization batch 16 the
two estimates of population statistics differ by construction. Batch statistics at a test batch
of 1000 with ghost layers are over chunks of 16 (the training normalization), not over 1000
images as plain BN's are."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..analysis import style as S
from ..analysis.cells import normalization_batch, study_runs
from ..analysis.results import chance
from ..analysis.rules import (INCONCLUSIVE, NOT_REPRODUCED, UNTRAINED, Blocker, Effect, Note, Verdict, acc_cell,
                              decision, missing, pct, untrained, verdict)
from ..analysis.stats import aggregate, mean_ci, one_sample

KEY, STUDY, TITLE = "inference", "inference", "Inference with running vs batch statistics"
ORDER = 110  # its place in the report (claims are read in this order)
STATEMENT = ("At inference BN must use population (running) statistics: the output must not depend on the other "
             "images in the batch, which matters most for small batches (Ioffe & Szegedy 2015, Sec. 3.1); the "
             "train/test mismatch of BN's statistics grows as the normalization batch shrinks (Wu & Johnson 2021, "
             "Sec. 4).")
BN_NORMS = ("bn", "ghost_bn")
ONE_BATCH = "one SGD batch"  # Note.kind where runs used several; data: {"batches": those, "using": the one read}
# fixed 2026-11-25 (when every rule was rewritten), after the cpu inference runs: 2 points; the
# protocol and the rule across normalization batches written 2026-11-29, before any run of it
EFFECT = Effect("accuracy with running statistics minus with the test batch's own, at the smallest test batch "
                "(paired per seed), at the deciding normalization batch", "points", 2.0)
# the same effect at each normalization batch (the rule asks it of every one), and what is shown
# beside it, not decided (numbers.csv gives each with its interval)
ARM = Effect("accuracy with running statistics minus with the test batch's own, at the smallest test batch (paired "
             "per seed)", "points", 2.0)
AT_MOMENTUM = Effect("accuracy with running statistics at one BN momentum minus with the test batch's own, at the "
                     "smallest test batch (paired per seed)", "points", math.nan)
PRECISE = Effect("accuracy with precise statistics minus with the test batch's own, at the smallest test batch "
                 "(paired per seed)", "points", math.nan)
LAG = Effect("accuracy with running statistics minus with precise statistics (paired per seed)", "points", math.nan)
OWN = Effect("accuracy with the test batch's own statistics at test batch = normalization batch minus with precise "
             "statistics (paired per seed)", "points", math.nan)
RULE = ("A run's normalization batch is min(norm.ghost_batch_size, data.batch_size) (norm=bn: data.batch_size). "
        "For each normalization batch: per seed, test accuracy with running (population) statistics minus with the "
        "test batch's own statistics, at the smallest test batch, in points (one-sample t over seeds); runs that "
        "differ only in norm.momentum share their weights (momentum moves only the running estimates), so they are "
        "averaged within the seed, not counted as seeds. Minimum effect +2.0 points. The claim is that population "
        "statistics win at every normalization batch. Reproduced: at every normalization batch the 95% interval "
        "lies above +2.0 points; not reproduced: at some normalization batch it lies below +2.0 points; "
        "inconclusive otherwise, or when a normalization batch's runs did not train (mean final accuracy within 5 "
        "points of chance; a normalization batch with no completed run counts so: amended 2026-11-29 before any run) "
        "or have fewer than 2 seeds, and no other normalization batch is not reproduced. The "
        "effect line is the deciding normalization batch's: the smallest one not reproduced, else the smallest "
        "inconclusive one, else the one with the lowest interval bound. Shown beside, not decided: the same effect "
        "with precise BN statistics (recomputed after training over training images) instead of running ones; "
        "running minus precise at each momentum (the running average's error, Wu & Johnson 2021, Sec. 3); and "
        "accuracy with the statistics of the training normalization batch (test batch = normalization batch) "
        "minus precise (the train/test inconsistency, Wu & Johnson 2021, Sec. 4). No rate is chosen on the runs: "
        "every compared accuracy is read from the same trained net.")


def nb_label(b: float) -> str:
    return f"{b:g}" if np.isfinite(b) else "the SGD batch"


def _bn_runs(sel: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Completed BN / ghost-BN runs at one SGD batch (the most common), with their normalization batch."""
    sel = sel[(sel.status == "completed") & sel["norm.name"].isin(BN_NORMS)]
    if "data.batch_size" in sel and sel["data.batch_size"].nunique() > 1:
        keep = sel["data.batch_size"].value_counts().index[0]
        batches = sorted(sel["data.batch_size"].unique())
        notes.append(Note(f"runs at SGD batches {batches}: using batch {keep} only", ONE_BATCH,
                          data={"batches": [int(b) for b in batches], "using": int(keep)}))
        sel = sel[sel["data.batch_size"] == keep]
    return sel.copy().assign(norm_batch=normalization_batch(sel))


def _per_seed(values: pd.Series, runs: pd.DataFrame) -> pd.Series:
    """A per-run quantity averaged within each seed (momentum copies are one net)."""
    return values.groupby(runs.loc[values.index, "seed"]).mean()


def check(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    title = "Inference with running statistics beats batch statistics at small batches"
    sel, notes = study_runs(runs, STUDY)
    bn_all = sel[sel["norm.name"].isin(BN_NORMS)] if len(sel) else sel
    swept = set(normalization_batch(bn_all).dropna()) if len(bn_all) else set()  # every status
    sel = _bn_runs(sel, notes) if len(sel) else sel
    long = inference_table(sel) if len(sel) else pd.DataFrame()
    if not len(long) or long["mode"].nunique() < 2:
        return missing(KEY, title, RULE, "completed inference runs with norm=bn or ghost_bn logging "
                       "`infer/acc_running.bs{B}` and `infer/acc_batch.bs{B}`", STUDY, notes)
    wide = long.pivot_table(index=["run", "eval_batch"], columns="mode", values="acc").dropna(
        subset=["running", "batch"]).reset_index()
    if not len(wide):
        return missing(KEY, title, RULE, "runs with both modes at a shared test batch size", STUDY, notes)
    smallest = int(wide.eval_batch.min())
    r = sel.set_index("run")
    at = wide[wide.eval_batch == smallest].set_index("run")
    diff = 100 * (at.running - at.batch)  # per run, points
    precise = pd.to_numeric(r.get("final.infer/acc_precise", pd.Series(np.nan, index=r.index)), errors="coerce")
    ch = float(chance(sel).iloc[0])
    arms = []  # (normalization batch, estimate, blockers, (verdict, why, reason))
    info = []
    estimates = []  # (label, Effect, Estimate) per normalization batch, for numbers.csv
    for b, g in r.groupby("norm_batch", dropna=False, sort=True):
        lab = nb_label(b)
        d = diff[diff.index.isin(g.index)]
        est = one_sample(_per_seed(d, g))
        blockers = untrained({f"normalization batch {lab}": g.final_acc}, ch)
        arms.append((b, est, blockers, decision(est, EFFECT, blockers)))
        parts = [f"normalization batch {lab}: {EFFECT.fmt_pm(est)}"]
        estimates.append((f"normalization batch={lab}", ARM, est))
        if "norm.momentum" in g and g["norm.momentum"].nunique() > 1:  # the rule averages them within a seed
            for m, gm in g.groupby("norm.momentum"):
                estimates.append((f"normalization batch={lab}; momentum={m:g}", AT_MOMENTUM,
                                  one_sample(_per_seed(d[d.index.isin(gm.index)], gm))))
        p = precise.reindex(d.index)
        if p.notna().any():
            e = one_sample(_per_seed(100 * (p - at.batch.reindex(d.index)), g))
            parts.append(f"with precise instead of running statistics {EFFECT.fmt_pm(e)}")
            estimates.append((f"normalization batch={lab}", PRECISE, e))
            momenta = g.groupby("norm.momentum") if "norm.momentum" in g else []
            for m, gm in momenta:
                e = one_sample(_per_seed(100 * (at.running.reindex(gm.index) - precise.reindex(gm.index)), gm))
                parts.append(f"running minus precise at momentum {m:g} {EFFECT.fmt_pm(e)}")
                estimates.append((f"normalization batch={lab}; momentum={m:g}", LAG, e))
            own = wide[(wide.eval_batch == b) & wide.run.isin(g.index)].set_index("run")
            if len(own):  # the statistics the net was trained with (Wu & Johnson 2021, Sec. 4)
                e = one_sample(_per_seed(100 * (own.batch - precise.reindex(own.index)), g.loc[own.index]))
                parts.append(f"batch statistics of the training normalization batch (test batch {lab}) minus "
                             f"precise {EFFECT.fmt_pm(e)}")
                estimates.append((f"normalization batch={lab}", OWN, e))
        info.append("; ".join(parts))
    failed = [a for a in arms if a[3][0] == NOT_REPRODUCED]
    open_ = [a for a in arms if a[3][0] == INCONCLUSIVE]
    decider = (failed or open_ or [min(arms, key=lambda a: a[1].lo if a[1].has_interval else -np.inf)])[0]
    b, est, blockers, _ = decider
    # a normalization batch whose runs all diverged or failed is an arm that did not train, not one to forget
    if not failed:
        blockers = list(blockers) + [Blocker(f"normalization batch {nb_label(x)} did not train (no completed run: "
                                             "all diverged or failed)", UNTRAINED, f"normalization batch {nb_label(x)}")
                                     for x in sorted(swept - set(r.norm_batch.dropna()))]
    finding = (f"Smallest test batch: {smallest}. Deciding normalization batch: {nb_label(b)} (of "
               f"{', '.join(nb_label(a[0]) for a in arms)}). Per normalization batch, paired over seeds, ± the 95% "
               "half-width (running minus batch statistics decides; the rest is information): " + " | ".join(info))
    # each normalization batch's own (verdict, why); the verdict is the deciding one's, unless blocked
    facts = {"smallest_test_batch": smallest, "deciding_norm_batch": _fact(b),
             "by_norm_batch": {_fact(a[0]): a[3][:2] for a in arms}}
    return verdict(KEY, title, RULE, EFFECT, est, blockers, finding, numbers=_table(long, sel, precise), notes=notes,
                   estimates=estimates, facts=facts)


def _fact(b: float):
    """A normalization batch as Verdict.facts names it: its number, None for the SGD batch (NaN)."""
    return float(b) if np.isfinite(b) else None


def _same(values: pd.Series, b: float) -> pd.Series:
    """Which of `values` (normalization batches) are `b`, NaN matching NaN."""
    return values.isna() if pd.isna(b) else values == b


def _table(long: pd.DataFrame, sel: pd.DataFrame, precise: pd.Series) -> pd.DataFrame:
    """Accuracy (%) per normalization batch and test batch with running, batch and precise
    statistics; seeds are the replicates (momentum copies averaged within a seed)."""
    nb = sel.set_index("run")["norm_batch"]
    long = long.assign(norm_batch=long.run.map(nb))
    by_seed = long.groupby(["norm_batch", "eval_batch", "mode", "seed"], dropna=False, as_index=False).acc.mean()
    p = sel.assign(precise=precise.reindex(sel.run).to_numpy())
    rows = []
    for (b, e), g in by_seed.groupby(["norm_batch", "eval_batch"], dropna=False, sort=True):
        row = {"normalization batch": nb_label(b), "test batch": int(e)}
        for mode, col in (("running", "running statistics (%)"), ("batch", "test batch's own statistics (%)")):
            row[col] = acc_cell(*mean_ci(g.loc[g["mode"] == mode, "acc"]))
        pb = p[_same(p.norm_batch, b)].groupby("seed").precise.mean().dropna()
        if len(pb):
            row["precise statistics (%)"] = acc_cell(*mean_ci(pb))
        rows.append(row)
    return pd.DataFrame(rows)


def inference_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Long rows (run, norm.name, seed, mode, eval_batch, acc) from final.infer/acc_{mode}.bs{B} columns."""
    cols = [c for c in runs.columns if c.startswith("final.infer/acc_") and ".bs" in c]
    keep = [c for c in ("run", "norm.name", "seed") if c in runs]
    if not cols:
        return pd.DataFrame(columns=keep + ["mode", "eval_batch", "acc"])
    long = runs[keep + cols].melt(id_vars=keep, var_name="metric", value_name="acc").dropna(subset=["acc"])
    parts = long.metric.str.extract(r"final\.infer/acc_(?P<mode>\w+)\.bs(?P<eval_batch>\d+)")
    return pd.concat([long[keep + ["acc"]], parts], axis=1).astype({"eval_batch": int})


@S.figure
def inference_modes(runs: pd.DataFrame) -> Figure:
    """Test accuracy vs test batch size with running vs batch statistics, per normalization
    batch, with precise statistics beside (eval mode: one value at every test batch)."""
    S.need(runs, ["norm.name", "seed"], "inference modes")
    sel = _bn_runs(runs, []) if "status" in runs else runs.assign(norm_batch=normalization_batch(runs))
    long = inference_table(sel)
    if not len(long):
        raise S.NotDrawn("inference modes: no infer/acc_{running|batch}.bs{B} rows")
    long = long.assign(norm_batch=long.run.map(sel.set_index("run")["norm_batch"]))
    fig = Figure(figsize=(5.6, 3.9), layout="constrained")
    ax = fig.subplots()
    S.chance_line(ax, sel)
    sizes = sorted(long.norm_batch.unique(), key=lambda b: -b if np.isfinite(b) else -np.inf)
    for k, b in enumerate(sizes):
        color = f"C{k}"
        sub_b = long[_same(long.norm_batch, b)]
        for mode, style in (("running", "-"), ("batch", "--")):
            sub = sub_b[sub_b["mode"] == mode]
            if len(sub):
                sub = sub.groupby(["eval_batch", "seed"], as_index=False).acc.mean()  # seeds are the replicates
                S.line_ci(ax, aggregate(sub, ["eval_batch"], "acc"), "eval_batch", color,
                          f"norm. batch {nb_label(b)}, {mode} statistics", scale=S.PCT, errorbars=True,
                          linestyle=style)
        if "final.infer/acc_precise" in sel:
            p = sel[_same(sel.norm_batch, b)].groupby("seed")["final.infer/acc_precise"].mean().dropna()
            if len(p):
                ax.axhline(p.mean() * S.PCT, color=color, linestyle=":", linewidth=1.4,
                           label=f"norm. batch {nb_label(b)}, precise statistics ({pct(p.mean())})")
    S.log2_axis(ax, long.eval_batch.unique())
    ax.set_xlabel("test batch size (images, log₂ scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Inference with running, batch and precise BN statistics\n{S.caption_n(sel)}", fontsize=9)
    ax.legend(loc="best", fontsize=7)
    return fig


CHECKS = [check]
FIGURES = {"inference_modes": (lambda runs, curves, v: inference_modes(runs),
                               "Accuracy with running vs batch statistics vs test batch size, per normalization "
                               "batch; precise BN statistics dotted (eval mode: the same at every test batch).")}
