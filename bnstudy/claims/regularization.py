"""Regularization: BN regularizes the model and reduces the need for dropout (Ioffe & Szegedy
2015, Sec. 3.4; Luo et al. 2019). Study: regularization (bn / none x dropout, no augmentation,
a training subset small enough to fit)."""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from ..analysis import style as S
from ..analysis.results import chance, study_runs
from ..analysis.rules import (Effect, Verdict, acc_col, decision_text, has_norms, missing, pct, points, untrained,
                              verdict)
from ..analysis.stats import aggregate, difference

KEY, STUDY, TITLE = "regularization", "regularization", "Regularization"
STATEMENT = "BatchNorm regularizes the model and reduces the need for dropout (Ioffe & Szegedy 2015, Sec. 3.4)."
FIT_LEVEL = 0.95  # a net has fitted its training set at this eval-mode accuracy on it
# fixed 2026-11-25 (issue 13), after the cpu regularization runs: 2 points of gap
EFFECT = Effect("none's train-test gap minus BN's (eval mode, without dropout)", "points", 2.0)
RULE = ("Gap = eval-mode accuracy on the fixed training slice (`train_eval/acc`: the first 2,000 training images, "
        "running statistics, no dropout, no augmentation) minus final test accuracy, at the end of training. A gap "
        f"measures regularization only between nets that have fitted their training set: every compared run must "
        f"reach {FIT_LEVEL:.0%} on the slice, else no verdict (the gap would measure progress). Effect = none's gap "
        "minus BN's without dropout, in points (Welch t over seeds). " + decision_text(EFFECT)
        + " Beside it: what dropout does to each norm's test accuracy.")


def gap(runs: pd.DataFrame) -> pd.Series:
    """Eval-mode train-slice accuracy minus test accuracy, in points."""
    return points(runs["final.train_eval/acc"]) - points(runs["final_test_acc"])


def check(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    title = "BN regularizes (smaller train/test gap, less need for dropout)"
    sel, notes = study_runs(runs, STUDY)
    sel = sel[sel.status == "completed"]
    if not has_norms(sel, ("bn", "none")) or "final.train_eval/acc" not in sel:
        return missing(KEY, title, RULE, "completed regularization runs with norm=bn and norm=none logging "
                       "`train_eval/acc`", STUDY, notes)
    sel = sel.assign(dropout=sel["model.dropout"].fillna(0.0) if "model.dropout" in sel else 0.0, gap=gap(sel))
    base = sel[sel.dropout == 0]
    if not has_norms(base, ("bn", "none")):
        return missing(KEY, title, RULE, "bn and none runs without dropout (model.dropout=0)", STUDY, notes)
    arm = {n: base[base["norm.name"] == n] for n in ("bn", "none")}
    blockers = untrained({n: a.final_acc for n, a in arm.items()}, float(chance(sel).iloc[0]))
    for n, a in arm.items():
        fit = pd.to_numeric(a["final.train_eval/acc"], errors="coerce")
        if not (fit >= FIT_LEVEL).all():
            blockers.append(f"{n} fitted its training set in {int((fit >= FIT_LEVEL).sum())} of {len(fit)} seeds "
                            f"(train-slice accuracy {', '.join(pct(x) for x in fit)}; needs {FIT_LEVEL:.0%}): the gap "
                            "measures progress, not regularization; train longer")
    est = difference(arm["none"].gap, arm["bn"].gap)
    aside = []
    for n in ("bn", "none"):
        g = sel[sel["norm.name"] == n]
        for p in sorted(set(g.dropout) - {0}):
            d = difference(points(g.loc[g.dropout == p, "final_acc"]), points(g.loc[g.dropout == 0, "final_acc"]))
            aside.append(f"dropout {p:g} changes {n}'s test accuracy by {EFFECT.fmt_pm(d)}")
    finding = ("Beside the rule: " + "; ".join(aside) + ".") if aside else "No runs with dropout: that half is not shown."
    agg_gap = aggregate(sel.assign(gap=sel.gap / 100), ["norm.name", "dropout"], "gap")
    agg_fit = aggregate(sel, ["norm.name", "dropout"], "final.train_eval/acc")
    agg_acc = aggregate(sel, ["norm.name", "dropout"], "final_acc")
    numbers = pd.DataFrame({"norm": agg_gap["norm.name"], "dropout": agg_gap.dropout,
                            "train-slice accuracy (%)": acc_col(agg_fit), "test accuracy (%)": acc_col(agg_acc),
                            "gap (points)": acc_col(agg_gap)})
    return verdict(KEY, title, RULE, EFFECT, est, blockers, finding, numbers=numbers, notes=notes)


@S.figure
def regularization(runs: pd.DataFrame) -> Figure:
    """Test accuracy and train/test gap vs dropout rate, per norm."""
    S.need(runs, ["norm.name", "final_acc", "final.train_eval/acc", "final_test_acc"], "regularization")
    r = runs[runs.status == "completed"].copy()
    r["dropout"] = r["model.dropout"].fillna(0.0) if "model.dropout" in r else 0.0
    r["gap"] = gap(r) / 100
    fig = Figure(figsize=(8.0, 3.4), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True)
    for norm in S.norms_of(r):
        sub = r[r["norm.name"] == norm]
        S.line_ci(axes[0], aggregate(sub, ["dropout"], "final_acc"), "dropout", S.color(norm), S.label(norm),
                 scale=S.PCT, errorbars=True)
        S.line_ci(axes[1], aggregate(sub, ["dropout"], "gap"), "dropout", S.color(norm), S.label(norm),
                 scale=S.PCT, errorbars=True)
    for ax in axes:
        ax.set_xlabel("dropout rate")
        ax.set_xticks(sorted(r.dropout.unique()))
    axes[0].set_ylabel("final test accuracy (%)")
    axes[1].set_ylabel("train-slice − test accuracy (points, eval mode)")
    axes[1].axhline(0, color="0.5", linewidth=0.8)
    axes[0].set_title("test accuracy", fontsize=9)
    axes[1].set_title("generalization gap (lower: less overfitting)", fontsize=9)
    S.legend_outside(fig, axes)
    fig.suptitle(f"Regularization: normalization x dropout ({S.caption_n(r)})")
    return fig


CHECKS = [check]
FIGURES = {
    "regularization": (lambda runs, curves, v: regularization(runs),
                       "Test accuracy and eval-mode train-slice minus test accuracy vs dropout rate."),
}
