"""Regularization: BN regularizes the model and reduces the need for dropout (Ioffe & Szegedy
2015, Sec. 3.4), through the noise of its batch statistics (Luo et al. 2019). Study:
regularization (bn / gn / none x dropout x a rate grid, no augmentation, a training subset
small enough that every arm fits it). Three checks on the train/test gap of nets that fitted
their training set, each arm at its own best rate. Rule written 2026-11-29, before any run of this
protocol (amendments: results/HISTORY.md).

Protocol: ResNet-20 (dropout between the two convs of each block), SGD momentum 0.9, weight decay
5e-4, batch 25, no data augmentation; linear warmup over the first 10% of the steps, then linear
decay to zero at the end of the run. scale=cpu: a 250-image class-balanced training subset (25
per class), 100 epochs (1000 steps), 5,000 test images; test and train-slice accuracy at steps
500 and 1000. GroupNorm has 8 groups. No probes.

Limits: choosing each arm's rate by test accuracy biases its test accuracy upward and so its gap
downward, in every arm alike. Once nets fit (train accuracy near 100%), the gap is close to 100
minus test accuracy, so check (1) reads much like a test-accuracy difference between fitted nets.

Deviations: Ioffe & Szegedy's evidence is BN-Inception on ImageNet, where dropout was removed and
accuracy held; Luo et al. analyse and test on CIFAR and ImageNet at full size. Here ResNet-20 on
250 CIFAR-10 images without augmentation, so that every arm fits in 1000 steps; a 2-point rate
grid (x4 apart) for each arm; dropout at one rate (0.3), inside the residual blocks only."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..analysis import style as S
from ..analysis.cells import EDGE_RULE, SELECTION_BIAS, edge_blockers, edge_rates, study_runs
from ..analysis.results import chance
from ..analysis.rules import (Blocker, Effect, Note, Verdict, acc_cell, decision_text, missing, pct, points,
                              untrained, verdict)
from ..analysis.stats import aggregate, combine, difference, fmt_ci, mean_ci

KEY, STUDY, TITLE = "regularization", "regularization", "Regularization"
ORDER = 80  # its place in the report (claims are read in this order)
STATEMENT = ("BatchNorm regularizes the model and reduces the need for dropout (Ioffe & Szegedy 2015, Sec. 3.4); "
             "the regularization comes from the noise of batch statistics (Luo et al. 2019).")
RATE = "optim.lr"
FIT_LEVEL = 0.95  # a run has fitted its training set at this eval-mode accuracy on it
# Blocker.kind of an arm that fitted at no rate; subject: the arm; data: {"fitted": its seeds that fitted at the
# rate read, "seeds": its seeds}
NOT_FITTED = "did not fit"
DROPOUT = 0.3  # the dropout arm of check (3)
OTHER_DROPOUT = "another dropout arm"  # Note.kind where no runs are at DROPOUT; data: {"dropout": the arm read}
# the gap's minimum fixed 2026-11-25 (when every rule was rewritten); the other two fixed
# 2026-11-29, before any run of this protocol: 2 points, the harness's smallest accuracy effect
EFFECT = Effect("none's train-test gap minus BN's (eval mode, without dropout)", "points", 2.0)
NOISE = Effect("GN's train-test gap minus BN's (without dropout)", "points", 2.0)
NEED = Effect(f"how much more dropout {DROPOUT:g} closes none's gap than BN's", "points", 2.0)
# shown beside the rules, not decided (Verdict.estimates; no minimum)
GN_NONE = Effect("GN's train-test gap minus none's (without dropout; beside the rule)", "points", math.nan)
CUT = Effect("dropout's cut of an arm's gap (its gap without dropout minus with; beside the rule)", "points", math.nan)
DROPOUT_ACC = Effect("dropout's change of an arm's test accuracy (with dropout minus without; beside the rule)",
                     "points", math.nan)
_PROTOCOL = ("Gap = final eval-mode accuracy on the fixed training slice (`train_eval/acc`: running statistics, no "
             "dropout, no augmentation; at scale=cpu the whole 250-image training set) minus final test accuracy, in "
             f"points. A run fitted when its train-slice accuracy is >= {FIT_LEVEL:.0%} (a diverged run did not). "
             "Each arm (norm x dropout) is read at its own best peak learning rate among the rates of the grid at "
             "which every seed fitted: the one with the highest mean final test accuracy (a tie goes to the lower "
             "rate). An arm with no such rate did not fit: a comparison that uses it is inconclusive, with that "
             "reason (its gap would measure progress, not regularization); so is one with an arm whose mean test "
             "accuracy is within 5 points of chance. " + SELECTION_BIAS + " ")
RULE = (_PROTOCOL + "Effect = none's gap minus BN's, both without dropout (Welch t over seeds). "
        + decision_text(EFFECT) + " Beside it: every arm's rate, accuracies and gap. " + EDGE_RULE)
NOISE_RULE = (_PROTOCOL + "GroupNorm normalizes each example alone: a normalized net without batch noise (Luo et al. "
              "2019 trace BN's regularization to that noise). Effect = GN's gap minus BN's, both without dropout "
              "(Welch t over seeds). " + decision_text(NOISE) + " Beside it: GN's gap against none's. " + EDGE_RULE)
NEED_RULE = (_PROTOCOL + f"BN reduces the need for dropout: effect = (none's gap without dropout minus with dropout "
             f"{DROPOUT:g}) minus (BN's gap without dropout minus with {DROPOUT:g}), four arms at their own best "
             "rates (Welch-Satterthwaite t over seeds): how much more dropout closes none's gap than BN's. "
             + decision_text(NEED) + " " + EDGE_RULE)


def gap(runs: pd.DataFrame) -> pd.Series:
    """Eval-mode train-slice accuracy minus test accuracy, in points."""
    return points(runs["final.train_eval/acc"]) - points(runs["final_test_acc"])


def _table(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs with `dropout`, `gap`, `fit` (train-slice accuracy) and `fitted` columns, and a rate column."""
    r = runs.copy()
    r["dropout"] = pd.to_numeric(r["model.dropout"], errors="coerce").fillna(0.0) if "model.dropout" in r else 0.0
    if RATE not in r:
        r[RATE] = np.nan
    r["fit"] = pd.to_numeric(r["final.train_eval/acc"], errors="coerce")
    r["gap"] = gap(r)
    r["fitted"] = (r.status == "completed") & (r.fit >= FIT_LEVEL)
    return r


def arm_at_best_rate(arm: pd.DataFrame) -> tuple[pd.DataFrame, Optional[str]]:
    """(the arm's runs at its best rate among those at which every seed fitted, None), or, when no
    rate of the grid fitted, (its runs at the rate of highest mean test accuracy, why it did not fit).
    Every seed is every seed the arm ran at any rate: a seed whose run at a rate failed or has not
    finished did not fit there. The runs carry `arm_seeds`, that count."""
    by_rate = arm.groupby(RATE, dropna=False).agg(acc=("final_acc", "mean"), n=("fitted", "size"),
                                                  n_fit=("fitted", "sum")).reset_index()
    seeds = arm.seed.nunique()
    fitted = by_rate[by_rate.n_fit >= seeds]
    pick = fitted if len(fitted) else by_rate
    best = pick.sort_values(["acc", RATE], ascending=[False, True]).iloc[0][RATE]
    runs = (arm[arm[RATE] == best] if pd.notna(best) else arm[arm[RATE].isna()]).assign(arm_seeds=seeds)
    if len(fitted):
        return runs, None
    per_rate = "; ".join(
        (f"at {r[RATE]:g}: " if pd.notna(r[RATE]) else "")
        + f"{int(r.n_fit)} of {seeds} seeds, train-slice accuracy "
        + ", ".join(pct(x.fit) + (" (diverged)" if x.status == "diverged" else "")
                    for x in arm[(arm[RATE] == r[RATE]) if pd.notna(r[RATE]) else arm[RATE].isna()].itertuples())
        for _, r in by_rate.iterrows())
    return runs, (f"fitted its training set at no rate of the grid ({per_rate}; every seed needs {FIT_LEVEL:.0%}): "
                  "its gap would measure progress, not regularization")


def arm_name(norm: str, dropout: float) -> str:
    return f"{norm}, dropout {dropout:g}"


def best_arms(runs: pd.DataFrame) -> dict[tuple[str, float], tuple[pd.DataFrame, Optional[str]]]:
    """(norm, dropout) -> arm_at_best_rate of that arm, for every arm present."""
    r = _table(runs)
    return {(n, float(p)): arm_at_best_rate(g) for (n, p), g in r.groupby(["norm.name", "dropout"])}


def _blockers(arms: dict, keys: Sequence[tuple[str, float]], c: float, notes: Sequence[str]) -> list[str]:
    """Why the arms `keys` (the ones the rule compares) forbid a verdict: one that fitted at no
    rate, did not train, or has its best rate at an edge of its grid (EDGE_RULE)."""
    out = [Blocker(f"{arm_name(*k)} {arms[k][1]}", NOT_FITTED, arm_name(*k),
                   {"fitted": int(arms[k][0].fitted.sum()), "seeds": int(arms[k][0].arm_seeds.iloc[0])})
           for k in keys if arms[k][1]]
    rate = lambda k: arms[k][0][RATE].iloc[0]  # noqa: E731
    names = {arm_name(*k) + (f" (rate {rate(k):g})" if pd.notna(rate(k)) else ""): arms[k][0].final_acc for k in keys}
    return out + untrained(names, c) + edge_blockers(notes, [arm_name(*k) for k in keys])


def _numbers(arms: dict, keys: Sequence[tuple[str, float]]) -> pd.DataFrame:
    rows = []
    for k in keys:
        a, why = arms[k]
        rate = a[RATE].iloc[0]
        rows.append({"norm": k[0], "dropout": f"{k[1]:g}", "peak rate": f"{rate:g}" if pd.notna(rate) else "—",
                     "fitted seeds": f"{int(a.fitted.sum())} of {int(a.arm_seeds.iloc[0])}"
                                     + ("" if why is None else " (did not fit)"),
                     "train-slice accuracy (%)": acc_cell(*mean_ci(a.fit)),
                     "test accuracy (%)": acc_cell(*mean_ci(a.final_acc)),
                     "gap (points)": fmt_ci(*mean_ci(a.gap), digits=1)})
    return pd.DataFrame(rows)


def _prepared(runs: pd.DataFrame):
    """(best_arms of the study's runs, notes, among them the arms whose chosen rate is at an edge
    of the grid they ran, each named by arm_name), or (None, notes)."""
    sel, notes = study_runs(runs, STUDY)
    if not len(sel) or "final.train_eval/acc" not in sel:
        return None, notes
    arms = best_arms(sel)
    named = lambda d: d.assign(arm=[arm_name(n, p) for n, p in zip(d["norm.name"], d.dropout)])  # noqa: E731
    notes += edge_rates(named(_table(sel)), named(pd.concat([a for a, _ in arms.values()])), ["arm"], RATE)
    return arms, notes


def _gap_minus_bn(runs: pd.DataFrame, other: str):
    """(arms, notes, the compared keys, `other`'s gap minus BN's without dropout, chance), or
    (None, notes, keys, None, None) when either arm is missing."""
    arms, notes = _prepared(runs)
    keys = [(other, 0.0), ("bn", 0.0)]
    if arms is None or not all(k in arms for k in keys):
        return None, notes, keys, None, None
    c = float(chance(study_runs(runs, STUDY)[0]).iloc[0])
    return arms, notes, keys, difference(arms[keys[0]][0].gap, arms[keys[1]][0].gap), c


def check(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    title = "BN regularizes (smaller train/test gap between nets that fitted)"
    arms, notes, keys, est, c = _gap_minus_bn(runs, "none")
    if arms is None:
        return missing(KEY, title, RULE, "regularization runs with norm=bn and norm=none without dropout "
                       "(model.dropout=0), logging `train_eval/acc`", STUDY, notes)
    shown = [k for k in sorted(arms) if k[0] in ("bn", "gn", "none")]
    return verdict(KEY, title, RULE, EFFECT, est, _blockers(arms, keys, c, notes), numbers=_numbers(arms, shown),
                   notes=notes)


def check_batch_noise(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    claim, title = "regularization_batch_noise", "BN's regularization comes from batch noise (GroupNorm control)"
    arms, notes, keys, est, c = _gap_minus_bn(runs, "gn")
    if arms is None:
        return missing(claim, title, NOISE_RULE, "regularization runs with norm=gn and norm=bn without dropout, "
                       "logging `train_eval/acc`", STUDY, notes)
    finding, estimates = "", []
    if ("none", 0.0) in arms:
        d = difference(arms[("gn", 0.0)][0].gap, arms[("none", 0.0)][0].gap)
        fitted = all(arms[k][1] is None for k in (("gn", 0.0), ("none", 0.0)))
        finding = (f"Beside the rule: GN's gap minus none's {NOISE.fmt_pm(d)}"
                   + (" (± its 95% Welch half-width)" if d.has_interval else "")
                   + ("" if fitted else ", not all fitted"))
        estimates.append(("gn minus none" + ("" if fitted else " (not all fitted)"), GN_NONE, d))
    return verdict(claim, title, NOISE_RULE, NOISE, est, _blockers(arms, keys, c, notes), finding,
                   numbers=_numbers(arms, [k for k in (("bn", 0.0), ("gn", 0.0), ("none", 0.0)) if k in arms]),
                   notes=notes, estimates=estimates)


def check_dropout(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    claim, title = "regularization_dropout", "BN reduces the need for dropout"
    arms, notes = _prepared(runs)
    with_p = sorted(p for (n, p) in (arms or {}) if p > 0)
    p = DROPOUT if DROPOUT in with_p else (with_p[-1] if with_p else DROPOUT)
    keys = [("none", 0.0), ("none", p), ("bn", 0.0), ("bn", p)]
    if arms is None or not all(k in arms for k in keys):
        return missing(claim, title, NEED_RULE, f"regularization runs with norm=bn and norm=none, each with and "
                       f"without dropout (model.dropout=0 and {DROPOUT:g}), logging `train_eval/acc`", STUDY, notes)
    if p != DROPOUT:
        notes.append(Note(f"no runs at dropout {DROPOUT:g}: the dropout arm is {p:g}", OTHER_DROPOUT,
                          data={"dropout": float(p)}))
    c = float(chance(study_runs(runs, STUDY)[0]).iloc[0])
    g = lambda k: arms[k][0].gap  # noqa: E731
    est = combine([(1.0, g(keys[0])), (-1.0, g(keys[1])), (-1.0, g(keys[2])), (1.0, g(keys[3]))])
    cut = {n: difference(g((n, 0.0)), g((n, p))) for n in ("none", "bn")}
    finding = "Dropout's cut of the gap: " + "; ".join(f"{n} {NEED.fmt_pm(e)}" for n, e in cut.items())
    acc = {n: difference(points(arms[(n, p)][0].final_acc), points(arms[(n, 0.0)][0].final_acc)) for n in ("none", "bn")}
    finding += (f". Beside the rule, dropout {p:g} changes test accuracy by: "
                + "; ".join(f"{n} {NEED.fmt_pm(e)}" for n, e in acc.items()))
    estimates = ([(f"arm={n}; dropout {p:g}", CUT, e) for n, e in cut.items()]
                 + [(f"arm={n}; dropout {p:g}", DROPOUT_ACC, e) for n, e in acc.items()])
    return verdict(claim, title, NEED_RULE, NEED, est, _blockers(arms, keys, c, notes), finding,
                   numbers=_numbers(arms, keys), notes=notes, estimates=estimates)


@S.figure
def regularization(runs: pd.DataFrame) -> Figure:
    """Test accuracy and train/test gap vs dropout rate, per norm, each arm at its best rate."""
    S.need(runs, ["norm.name", "final_acc", "final.train_eval/acc", "final_test_acc"], "regularization")
    r = pd.concat([a for a, _ in best_arms(runs[runs.status.isin(("completed", "diverged"))]).values()],
                  ignore_index=True)
    r["gap"] = r.gap / 100
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
    axes[1].set_ylabel("gap (points)")  # eval-mode train-slice minus test accuracy: the panel's title
    if r.gap.min() * S.PCT < 10:  # a zero line only where gaps come near it; else it flattens their differences
        axes[1].axhline(0, color="0.5", linewidth=0.8)
    axes[0].set_title("test accuracy", fontsize=9)
    axes[1].set_title("gap: eval-mode train-slice minus test accuracy\n(lower: less overfitting)", fontsize=9)
    S.legend_outside(fig, axes)
    fig.suptitle(f"Regularization: normalization x dropout, each at its best rate ({S.caption_n(r)})")
    return fig


CHECKS = [check, check_batch_noise, check_dropout]
FIGURES = {
    "regularization": (lambda runs, curves, v: regularization(runs),
                       "Test accuracy and eval-mode train-slice minus test accuracy vs dropout rate, each arm at its "
                       "best rate among those at which every seed fitted."),
}
