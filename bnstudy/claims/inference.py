"""Inference with population statistics: at inference BN must use running (population)
statistics, so that the output does not depend on the other images in the batch; this
matters most for small batches (Ioffe & Szegedy 2015, Sec. 3.1). Study: inference."""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from ..analysis import style as S
from ..analysis.results import chance, study_runs
from ..analysis.rules import Effect, Verdict, acc_cell, acc_col, decision_text, missing, untrained, verdict
from ..analysis.stats import aggregate, mean_ci, one_sample

KEY, STUDY, TITLE = "inference", "inference", "Inference with running vs batch statistics"
STATEMENT = ("At inference BN must use population (running) statistics: the output must not depend on the other "
             "images in the batch, which matters most for small batches (Ioffe & Szegedy 2015, Sec. 3.1).")
# fixed 2026-11-25 (issue 13), after the cpu inference runs: 2 points
EFFECT = Effect("accuracy with running statistics minus with the evaluation batch's own, at the smallest "
                "evaluation batch (paired per seed)", "points", 2.0)
RULE = ("For BN runs, paired within each seed: test accuracy with running (population) statistics minus with "
        "the evaluation batch's own statistics, at the smallest evaluation batch size, in points (one-sample t "
        "over seeds). Runs that differ only in norm.momentum share their weights (momentum moves only the running "
        "estimates): they are averaged within the seed, not counted as seeds. BN must have trained. "
        + decision_text(EFFECT))


def check(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    title = "Inference with running statistics beats batch statistics at small batches"
    sel, notes = study_runs(runs, STUDY)
    long = inference_table(sel[sel.status == "completed"]) if len(sel) else pd.DataFrame()
    if not len(long) or "bn" not in set(long["norm.name"]) or long["mode"].nunique() < 2:
        return missing(KEY, title, RULE, "completed inference runs with norm=bn logging `infer/acc_running.bs{B}` "
                       "and `infer/acc_batch.bs{B}`", STUDY, notes)
    bn = long[long["norm.name"] == "bn"]
    wide = bn.pivot_table(index=["run", "eval_batch"], columns="mode", values="acc").dropna().reset_index()
    if not len(wide):
        return missing(KEY, title, RULE, "runs with both modes at a shared eval batch size", STUDY, notes)
    smallest = int(wide.eval_batch.min())
    wide = wide.assign(diff=100 * (wide.running - wide.batch)).merge(sel[["run", "seed"]], on="run")
    per_seed = wide[wide.eval_batch == smallest].groupby("seed")["diff"].mean()
    est = one_sample(per_seed)
    blockers = untrained({"bn": sel.loc[sel["norm.name"] == "bn", "final_acc"]}, float(chance(sel).iloc[0]))
    finding = f"Smallest evaluation batch: {smallest}."
    if "final.infer/acc_precise" in sel:
        p = mean_ci(sel[sel["norm.name"] == "bn"].groupby("seed")["final.infer/acc_precise"].mean())
        if p[2]:
            finding += f" Beside the rule, precise (recomputed population) statistics: {acc_cell(*p)}."
    by_seed = long.groupby(["norm.name", "eval_batch", "mode", "seed"], as_index=False).acc.mean()
    agg = aggregate(by_seed, ["norm.name", "eval_batch", "mode"], "acc")
    numbers = agg.assign(acc=acc_col(agg)).pivot_table(
        index=["norm.name", "eval_batch"], columns="mode", values="acc", aggfunc="first").reset_index()
    numbers.columns.name = None
    return verdict(KEY, title, RULE, EFFECT, est, blockers, finding, numbers=numbers, notes=notes)


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
    """Test accuracy vs evaluation batch size with running vs batch statistics, per norm."""
    long = inference_table(runs)
    if not len(long):
        raise S.NotDrawn("inference modes: no infer/acc_{running|batch}.bs{B} rows")
    fig = Figure(figsize=(5.4, 3.7), layout="constrained")
    ax = fig.subplots()
    for norm in S.norms_of(long):
        for mode, style in (("running", "-"), ("batch", "--")):
            sub = long[(long["norm.name"] == norm) & (long["mode"] == mode)]
            if len(sub):
                sub = sub.groupby(["eval_batch", "seed"], as_index=False).acc.mean()  # seeds are the replicates
                S.line_ci(ax, aggregate(sub, ["eval_batch"], "acc"), "eval_batch", S.color(norm),
                         f"{S.label(norm)}, {mode} statistics", scale=S.PCT, errorbars=True, linestyle=style)
        if "final.infer/acc_precise" in runs:
            p = runs.loc[runs["norm.name"] == norm, "final.infer/acc_precise"].dropna()
            if len(p):
                ax.axhline(p.mean() * S.PCT, color=S.color(norm), linestyle=":", linewidth=1.2,
                           label=f"{S.label(norm)}, precise statistics")
    S.log2_axis(ax, long.eval_batch.unique())
    ax.set_xlabel("evaluation batch size (images, log₂ scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Inference with running vs batch statistics\n{S.caption_n(runs)}", fontsize=9)
    ax.legend(loc="best")
    return fig


CHECKS = [check]
FIGURES = {"inference_modes": (lambda runs, curves, v: inference_modes(runs),
                               "Accuracy with running vs batch statistics vs evaluation batch size.")}
