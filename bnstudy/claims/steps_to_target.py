"""Faster training, measured densely: steps to a target accuracy with test accuracy read every
few steps, each arm at the one rate lr_sweep chose for it, on seeds that chose nothing (Ioffe &
Szegedy 2015, Sec. 4.2, Fig. 2). Study: steps_to_target, which exists because lr_sweep's
evaluations, 39 steps apart, could not settle the claim at any number of seeds. The rule is
faster_training's, read on these runs: BN vs none is the claim; BN vs none + SkipInit is judged
apart by the same rule; an arm that ran at more than one rate gets no verdict.

Protocol: lr_sweep's cpu protocol (ResNet-20, batch 128, a 10,000-image class-balanced training
subset, 4 epochs (312 steps), SGD momentum 0.9, weight decay 5e-4, linear warmup over the first
10% of the steps, then linear decay to zero, fp32), each arm at its rate in steps_to_target.yaml.
Changed: (1) test accuracy every 8 steps (39 evaluations) on a 2,000-image class-balanced test
subset (lr_sweep: every 39 steps on 5,000), without re-evaluating the training slice
(trainer.train_eval=false) and without probes (no claim here reads them), so that the
evaluations cost ~2 min a run; (2) thresholds 0.2 and 0.25 added below lr_sweep's 0.3, 0.4, ...,
0.9, because lr_sweep's SkipInit runs ended at 24-27% at the rates that had finished (below 0.3:
no target for BN vs SkipInit; at 0.4, its best rate, they ended at 36-39%, so 0.2 and 0.25 may
go unused); the BN-vs-none target stays the highest threshold every seed of both reached (0.3 in
lr_sweep). At scale=full, evaluation is once an epoch (not dense).

Seeds: 15 an arm, for power. lr_sweep's numbers: speed-up ~1.93x (log2 0.95); the 8-step bins'
least favourable end sits ~0.06 (log2) below the estimate, leaving ~0.30 (log2) above the 1.5x
minimum (log2 0.585); the per-seed sd of log2(steps) was 0.29-0.32 at 39-step bins, ~0.28
without their rounding. With sd 0.28 an arm, (t + z_0.8) x se stays under 0.30 at 15 seeds:
(2.05 + 0.84) x 0.28 x sqrt(2/15) = 0.30, i.e. ~80% power if the speed-up is ~1.9x; 10 seeds
would give ~60-65%, 5 seeds ~25-30%.

Limits: test noise, stated before the runs: a 2,000-image accuracy has a binomial sd of ~1 point
at 30%; near 30% none's accuracy rose ~0.06-0.1 points a step in lr_sweep and BN's ~0.2, so the
noise moves none's first crossing by ~1-2 evaluations and BN's by less than one. Taking the
first of many noisy readings crosses early, more so on the flatter curve: it shortens none's
steps more than BN's, so it biases the speed-up DOWN (against "reproduced", toward "not
reproduced"), by up to ~log2(210/195) ~ 0.1 (log2) at these numbers. Not corrected.

Deviations: Ioffe & Szegedy compare BN-Inception with Inception on ImageNet over millions of
steps (their Fig. 2 plots validation accuracy vs steps); here ResNet-20 for 312 steps on 10,000
CIFAR-10 images under a decaying rate (steps to a target are read at the schedule's pace), with
lr_sweep's rates. BN's rate 0.05 is the lowest of lr_sweep's grid (a lower rate might have
suited it better; lr_sweep's report notes it)."""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Optional

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from . import faster_training as F
from ..analysis import style as S
from ..analysis.cells import study_runs
from ..analysis.results import SKIPINIT, chance, variant_names
from ..analysis.rules import UNPAIRED, Effect, Note, Verdict, decision_text, pct
from ..analysis.stats import Estimate, aggregate, difference, one_sample

KEY, STUDY, TITLE = "steps_to_target", "steps_to_target", "Faster training, dense evaluations"
ORDER = 20  # its place in the report (claims are read in this order)
STATEMENT = F.STATEMENT[:-1] + ": here each arm at the rate lr_sweep chose for it, evaluated every few steps."
EFFECT = F.EFFECT  # 1.5x, fixed 2026-11-25 for lr_sweep's rule
RULE = ("Each arm (bn, none, none + SkipInit) runs at one peak rate, fixed in the study's YAML before any of its "
        "runs as that arm's best rate in lr_sweep (highest mean final test accuracy over lr_sweep's seeds 0-4), on "
        "seeds 10-24, which chose nothing: no selection bias. BN is compared with none, and separately with "
        "none + SkipInit, by lr_sweep's faster-training rule: target = the highest threshold in "
        "trainer.acc_thresholds that every seed of both arms reached, leaving out seeds that reached no threshold "
        "at all (amended 2026-11-29, below). Effect = mean log2(steps to the target) of the "
        "unnormalized arm minus that of BN (Welch t over seeds), shown as a ratio; test accuracy is read every "
        "trainer.eval_every steps (cpu: 8, on 2,000 test images), and the interval is widened to hold whatever "
        "step between two evaluations each seed got there. Under a decaying rate, steps to a target are shaped by "
        "the schedule: the speed-up is read at the schedule's pace. " + decision_text(EFFECT) + " " + F.AMENDMENT + " "
        + UNPAIRED)


BUDGETS = (0.25, 0.5, 1.0)  # fractions of the schedule's steps at which budget_accuracy reads test accuracy
# Note.kind of budget_accuracy's note; data: {"total": the schedule's steps, "steps": {fraction: step read}}
AT_BUDGETS = "accuracy at fixed fractions of the steps"
# budget_accuracy's estimates (information only: no rule reads them, no minimum)
AT_BUDGET = Effect("test accuracy at a fixed fraction of the schedule's steps (mean over seeds; information only)",
                   "points", math.nan)
LEAD_AT_BUDGET = Effect("BN's test accuracy minus the unnormalized arm's at a fixed fraction of the schedule's steps "
                        "(information only)", "points", math.nan)


def in_points(e: Estimate) -> Estimate:
    """An estimate of accuracies (fractions) in percentage points, as the report prints it."""
    return replace(e, value=100 * e.value, half=100 * e.half, se=100 * e.se, sds=tuple(100 * x for x in e.sds),
                   bounds=None if e.bounds is None else (100 * e.bounds[0], 100 * e.bounds[1]))


def budget_accuracy(runs: pd.DataFrame, curves: pd.DataFrame, other: str) -> tuple[list[str], list]:
    """A note (information only; no rule reads it): each arm's test accuracy at the last
    evaluation by 25%, 50% and 100% of the schedule's steps (mean over seeds, 95% interval) and
    BN minus `other` (Welch). A run that diverged before that evaluation counts as chance. These
    are points on one decaying schedule, not runs given a shorter budget. Returns (the note, its
    estimates in points for Verdict.estimates)."""
    sel, _ = study_runs(runs, STUDY)
    if not len(sel) or not len(curves) or "steps" not in sel:
        return [], []
    sel = sel.assign(variant=variant_names(sel))
    sel = sel[sel.variant.isin(("bn", other))]
    c = curves[(curves.metric == "test/acc") & curves.run.isin(sel.run)]
    if sel.variant.nunique() < 2 or not len(c):
        return [], []
    acc = c.pivot_table(index="run", columns="step", values="value", aggfunc="last")
    total = float(pd.to_numeric(sel.steps, errors="coerce").max())
    floor = sel.set_index("run").assign(chance=chance(sel).to_numpy())
    parts, estimates, read = [], [], {}
    for f in BUDGETS:
        steps = [s for s in acc.columns if s <= f * total]
        if not steps:
            continue
        step = max(steps)
        diverged = floor.status.reindex(acc.index) == "diverged"
        at = acc[step].where(~(acc[step].isna() & diverged), floor.chance.reindex(acc.index))
        arm = {n: at.reindex(sel.run[sel.variant == n]).dropna() for n in ("bn", other)}
        if not all(len(a) for a in arm.values()):
            continue
        m = {n: one_sample(a) for n, a in arm.items()}
        d = difference(arm["bn"], arm[other])
        where = f"step {step:g} ({f:.0%})"
        read[f] = float(step)
        estimates += [(f"arm={n}; {where}", AT_BUDGET, in_points(m[n])) for n in ("bn", other)]
        estimates.append((f"bn minus {other}; {where}", LEAD_AT_BUDGET, in_points(d)))
        cell = lambda e: pct(e.value) + (f" ± {100 * e.half:.1f}" if e.has_interval else "")  # noqa: E731
        diff = (f"{100 * d.value:+.1f} points" + (f" [{100 * d.lo:+.1f}, {100 * d.hi:+.1f}]" if d.has_interval else ""))
        parts.append(f"{f:.0%} (step {step:g}): bn {cell(m['bn'])}, {other} {cell(m[other])}, bn minus {other} {diff}")
    if not parts:
        return [], []
    return [Note(f"Test accuracy at fixed fractions of the {total:g} steps (information only, no rule reads it; mean "
                 "over seeds ± 95% half-width, difference with its Welch 95% interval; points on one decaying "
                 "schedule, not runs given a shorter budget): " + "; ".join(parts), AT_BUDGETS,
                 data={"total": total, "steps": read})], estimates


def check(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    v = F.compare(runs, "none", "BN reaches a target accuracy in fewer steps (evaluated every few steps)",
                  study=STUDY, key=KEY, rule=RULE, fixed_rates=True)
    notes, estimates = budget_accuracy(runs, curves, "none")
    v.notes += notes
    v.estimates += estimates
    return v


def check_skipinit(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    other = "none" + SKIPINIT
    v = F.compare(runs, other, "BN reaches a target accuracy in fewer steps than an unnormalized net "
                  "with SkipInit (evaluated every few steps)", study=STUDY, key=KEY, rule=RULE, fixed_rates=True)
    notes, estimates = budget_accuracy(runs, curves, other)
    v.notes += notes
    v.estimates += estimates
    return v


@S.figure
def accuracy_vs_step(curves: pd.DataFrame, target: Optional[float] = None) -> Figure:
    """Test accuracy vs step per arm, each at its own rate (mean over seeds, 95% CI band), with
    the target accuracy the rule read steps to."""
    S.need(curves, ["norm.name", "optim.lr", "metric", "step", "value"], "test accuracy vs step")
    c = curves[curves.metric == "test/acc"]
    if not len(c):
        raise S.NotDrawn("test accuracy vs step: no test/acc rows")
    c = c.assign(variant=variant_names(c))
    c = c[c.variant.isin(F.ARMS)]
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.subplots()
    for arm in S.norms_of(c, "variant"):
        sub = c[c.variant == arm]
        rates = ", ".join(f"{r:g}" for r in sorted(sub["optim.lr"].dropna().unique()))
        S.line_ci(ax, aggregate(sub, ["step"], "value"), "step", S.color(arm), f"{S.label(arm)} (lr {rates})",
                  scale=S.PCT)
    if target:
        ax.axhline(target * S.PCT, color="0.3", linestyle="--", linewidth=1, label=f"target {target:.0%}")
    S.chance_line(ax, c)
    ax.set_xlabel("step (SGD updates)")
    ax.set_ylabel("test accuracy (%)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, None)
    n = int(c.drop_duplicates("run").groupby("variant").seed.nunique().max())  # per arm, whatever the rates
    ax.set_title(f"Test accuracy vs step, each arm at its own rate (mean of {n} seeds, 95% CI;\na diverged run's "
                 "curve ends where it diverged)", fontsize=9)
    S.legend_outside(fig, [ax], ncols=3)
    return fig


@S.figure
def steps_per_seed(runs: pd.DataFrame, target: Optional[float] = None) -> Figure:
    """Each seed's steps to the target per arm: the evaluation that saw it (dot) and the
    evaluation before it (the bar's lower end), where the rule says it got there."""
    S.need(runs, ["norm.name", "optim.lr"], "steps to the target per seed")
    if not target:
        raise S.NotDrawn("steps to the target per seed: no threshold was reached by every seed of the compared arms")
    runs = runs.assign(variant=variant_names(runs))
    runs = runs[runs.variant.isin(F.ARMS)]
    fig = Figure(figsize=(5.0, 3.6), layout="constrained")
    ax = fig.subplots()
    arms = S.norms_of(runs, "variant")
    for i, arm in enumerate(arms):
        sub = runs[runs.variant == arm]
        steps = F.reached(sub, target)
        first = F.bin_start(sub, steps)
        x = i + np.linspace(-0.2, 0.2, len(sub)) if len(sub) > 1 else np.array([float(i)])
        ok = steps.notna().to_numpy()
        ax.errorbar(x[ok], steps[ok], yerr=np.vstack([(steps - first)[ok], np.zeros(ok.sum())]), fmt="o",
                    color=S.color(arm), capsize=2, label=S.label(arm))
        if (~ok).any():
            ax.plot(x[~ok], np.full((~ok).sum(), float(np.nanmax([steps.max(), 1.0])) * 1.3), marker="^",
                    linestyle="none", color=S.color(arm), markerfacecolor="none", label=f"not reached ({S.label(arm)})")
    ax.set_xticks(range(len(arms)), [S.label(a) for a in arms], fontsize=8)
    ax.set_xlabel("arm, each at its own learning rate (one dot a seed)")
    ax.set_ylabel(f"steps to {target:.0%} test accuracy")
    ax.set_ylim(0, None)
    ax.set_title(f"Steps to {target:.0%} per seed; bar: since the evaluation before", fontsize=9)
    S.legend_outside(fig, [ax], ncols=2)
    return fig


CHECKS = [check, check_skipinit]
FIGURES = {
    "accuracy_vs_step": (lambda runs, curves, v: accuracy_vs_step(curves, target=F.figure_target(v)),
                         "Test accuracy vs step, each arm at the rate lr_sweep chose for it (mean over seeds, 95% CI "
                         "band); dashed: the target the rule read steps to."),
    "steps_per_seed": (lambda runs, curves, v: steps_per_seed(runs, target=F.figure_target(v)),
                       "Each seed's steps to the target: the evaluation that saw it, and the one before (bar)."),
}
