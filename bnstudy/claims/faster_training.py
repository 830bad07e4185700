"""Faster training: BN reaches a given accuracy in far fewer steps (Ioffe & Szegedy 2015,
Sec. 4.2, Fig. 2: 14x fewer for Inception). Study: lr_sweep (bn, none and none + SkipInit over a
grid of rates); BN is compared with each unnormalized arm by the same rule.

Protocol (lr_sweep's arms, grid, schedule and deviations: higher_lr.py): at scale=cpu, test
accuracy every 39 steps (8 evaluations). At scale=medium (bnstudy/conf/scale/medium.yaml): all
50,000 training and 10,000 test images, 15 epochs (5,850 steps), Nesterov momentum, 5% warmup
then linear decay, bf16 autocast + channels_last in every arm; test accuracy every 98 steps (4
an epoch); thresholds 0.3 ... 0.9 with 0.75 and 0.85 added. Two phases, by
bnstudy/analysis/selection.py's RULE: (1) select: each arm over peak lr {0.1, 0.2, 0.4} on seed
100, before any measuring run; (2) measure: seeds 0-4, each arm at its rate in
hydra.sweeper.chosen, committed from `python -m bnstudy select SWEEP_DIR` before these runs.
Faster training is read on the measuring runs alone. Precision guard: PRECISION_RULE of
bnstudy/analysis/equivalence.py (fixed before the runs) on the measuring runs of bn and none
and their fp32 twins, judged by scripts/precision_twins.py; the commands are in lr_sweep.yaml."""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..analysis import style as S
from ..analysis.cells import (EDGE_RULE, SELECTION_BIAS, at_best_rate, edge_blockers, edge_rates, steps_column,
                              study_runs, thresholds)
from ..analysis.results import SKIPINIT, chance, variant_names
from ..analysis.rules import (UNPAIRED, INCONCLUSIVE, MIN_SEEDS, Blocker, Effect, Note, Verdict, acc_cell, decision_text,
                              has_norms, log2, missing, pct, untrained, verdict)
from ..analysis.stats import aggregate, censored, fmt_ci, mean_ci

KEY, STUDY, TITLE = "faster_training", "lr_sweep", "Faster training"
ORDER = 10  # its place in the report (claims are read in this order)
STATEMENT = ("BatchNorm networks reach a given accuracy in far fewer training steps (Ioffe & Szegedy 2015, "
             "Sec. 4.2, Fig. 2).")
# fixed 2026-11-25 (when every rule was rewritten), after the cpu lr_sweep had been run: 1.5x fewer
# steps is the smallest speed-up that "far fewer" could mean; Ioffe & Szegedy report 14x
EFFECT = Effect("speed-up (none's steps to the target / BN's, geometric mean over seeds)", "ratio", math.log2(1.5))
AMENDED, STEPS_STUDY = "2026-11-29", "steps_to_target"
AMENDMENT = (f"Amended {AMENDED}, after {STEPS_STUDY}'s bn and none runs had been read (its SkipInit runs were "
             "still going), and applied to lr_sweep's runs too (read before; its verdicts do not change): one of steps_to_target's 15 unnormalized seeds never reached "
             "the lowest threshold (its test accuracy stayed near chance, 14.6% at best), so, as committed, the rule "
             "found no threshold every seed reached and could give no verdict at any number of seeds. Now a seed that "
             "reached no threshold at all does not set the target: it counts as reaching the target anywhere from "
             "the schedule's last step to never; and a run that diverged after passing the target, anywhere from the "
             "evaluation before the one that saw it to never (as committed, it counted as never reaching it). The "
             "interval holds these bins: it is unbounded above when such a seed is the unnormalized arm's and below "
             "when it is BN's, so neither arm's slowness is overstated. The point estimate and the standard "
             "deviations count a seed that reached no threshold at the last step and a diverged run where it was "
             "seen (a bound, not an estimate). An arm needs at least 2 seeds that reached a threshold. The report "
             "notes the verdict the rule as committed gives, and the speed-up without the seeds that reached no "
             "threshold.")
RULE = ("BN is compared with none, and separately with none + SkipInit (model.skipinit; never pooled with "
        "none), by the same rule. Each arm at its own best learning rate (highest mean final test accuracy in the "
        "sweep). Target = the highest threshold in trainer.acc_thresholds that every seed of both arms reached at "
        "those rates, leaving out seeds that reached no threshold at all (amended 2026-11-29, below). "
        "Effect = mean log2(steps to the target) of the unnormalized arm minus that of BN (Welch t over seeds), "
        "shown as a ratio; steps are seen only at evaluations, so the interval is widened to hold whatever step "
        "between two evaluations each seed got there. Under a decaying rate, steps to a target are shaped by the "
        "schedule (the slower arm may reach it only as the rate falls): the speed-up is read at the schedule's "
        "pace. " + SELECTION_BIAS + " " + decision_text(EFFECT) + " " + AMENDMENT + " " + EDGE_RULE + " " + UNPAIRED)


ARMS = ("bn", "none", "none" + SKIPINIT)  # results.variant_names of the study's arms
# Blocker.kind of compare()'s reasons for no verdict (besides rules.UNTRAINED); subject: the arm
SEVERAL_RATES = "ran at several rates"  # data: {"rates": the arm's rates} (fixed_rates only)
NO_THRESHOLD = "seeds reached no threshold"  # data: {"failed": how many seeds did, "seeds": the arm's seeds}
NO_TARGET = "no target"  # no subject; data: {"thresholds": the thresholds the runs recorded}
# Note.kind of the verdict the rule as committed gives, where the amendment changed it; data: {"verdict": it}
AS_COMMITTED = "verdict as committed"


def eval_interval(runs: pd.DataFrame) -> pd.Series:
    """Steps between two evaluations: trainer.eval_every, else one epoch."""
    epoch = (pd.to_numeric(runs["steps"], errors="coerce") / pd.to_numeric(runs["epochs"], errors="coerce")).round()
    every = pd.to_numeric(runs.get("trainer.eval_every", pd.Series(index=runs.index, dtype=float)), errors="coerce")
    return every.fillna(epoch)


def reached(runs: pd.DataFrame, target: float) -> pd.Series:
    """Steps to `target` per run; NaN where it was never reached or the run diverged."""
    return pd.to_numeric(runs[steps_column(target)], errors="coerce").where(runs.status == "completed")


def bin_start(runs: pd.DataFrame, steps: pd.Series) -> pd.Series:
    """The low end of each run's bin for the target it was seen at `steps`: the evaluation before
    the one that saw it (at least 1; strictly it got there after it, so the bin is one step wider
    than it need be, which only widens the interval, by at most log2(1 + 1/step) at an end). The
    rule's interval and the figures use it."""
    return (steps - eval_interval(runs)).clip(lower=1)


def _steps_cell(s: pd.Series) -> str:
    cell = fmt_ci(*mean_ci(s), digits=0)
    return cell + (f"; not reached by {s.isna().sum()}/{len(s)}" if s.isna().any() else "")


def compare(runs: pd.DataFrame, other: str, title: str, study: str = STUDY, key: str = KEY,
            rule: str = RULE, fixed_rates: bool = False) -> Verdict:
    """BN vs the unnormalized arm `other` ('none' or 'none + SkipInit'), each at its own best rate
    among `study`'s runs; with `fixed_rates`, each arm at the one rate the study fixed for it
    before its runs (an arm that ran several blocks the verdict: picking one here would choose
    on the seeds that measure it)."""
    sel, notes = study_runs(runs, study)
    ts = thresholds(sel)
    sel = sel.assign(variant=variant_names(sel)) if len(sel) else sel
    pair = ("bn", other)
    if not has_norms(sel, pair, "variant") or not ts:
        return missing(key, title, rule, f"finished {study} runs with norm=bn and norm={_config_name(other)}", study,
                       notes)
    sel = sel[sel.variant.isin(pair)]
    best = at_best_rate(sel, ["variant"])  # a variant name such as 'none + SkipInit'
    notes += edge_rates(sel, best, ["variant"])
    arm = {n: best[best.variant == n] for n in pair}
    if not all(len(a) for a in arm.values()):  # an arm with no finished run at any rate
        return missing(key, title, rule, f"finished {study} runs with norm=bn and norm={_config_name(other)}", study,
                       notes)
    rate = {n: float(arm[n]["optim.lr"].iloc[0]) for n in pair}
    its, their = ("its rate", "their rates") if fixed_rates else ("its best rate", "their best rates")
    blockers = untrained({f"{n} at {its} {rate[n]:g}": arm[n].final_acc for n in arm}, float(chance(sel).iloc[0]))
    if fixed_rates:
        several = {n: sorted(g["optim.lr"].unique()) for n, g in sel.groupby("variant") if g["optim.lr"].nunique() > 1}
        blockers += [Blocker(f"{n} ran at {len(r)} rates ({', '.join(f'{x:g}' for x in r)}) where {study} fixes one "
                             "an arm", SEVERAL_RATES, n, {"rates": tuple(float(x) for x in r)})
                     for n, r in several.items()]
    else:  # each arm at its own best rate: one at its grid's edge blocks (EDGE_RULE)
        blockers += edge_blockers(notes, pair)
    # amended 2026-11-29 (AMENDMENT): seeds that reached no threshold at all do not set the target
    failed = {n: recorded(arm[n], ts[0]).isna() for n in arm}
    if any(f.any() for f in failed.values()):
        notes.append(Note(f"under the rule as committed before {STEPS_STUDY}'s runs (before the amendment of "
                          f"{AMENDED}), seeds that reached no threshold left no target that every seed reached: "
                          "inconclusive, at any number of seeds", AS_COMMITTED, data={"verdict": INCONCLUSIVE}))
        blockers += [Blocker(f"{n}: {k} of {len(f)} seeds reached no threshold (at least {MIN_SEEDS} must)",
                             NO_THRESHOLD, n, {"failed": k, "seeds": len(f)})
                     for n, f in failed.items() if (k := int(f.sum())) > len(f) - MIN_SEEDS]
    enough = all(int((~f).sum()) >= MIN_SEEDS for f in failed.values())
    hit = [t for t in ts if enough and all(recorded(arm[n][~failed[n]], t).notna().all() for n in arm)]
    target = hit[-1] if hit else None
    if target is None:
        blockers.append(Blocker(f"no threshold in {ts} was reached by every seed of both arms at {their}", NO_TARGET,
                                data={"thresholds": tuple(ts)}))
    b = {n: bins(arm[n], target, failed[n]) for n in arm}  # (recorded, low, high) steps per seed
    est = speedup(b, other)
    effect = replace(EFFECT, name=EFFECT.name.replace("none's", f"{other}'s"))
    estimates = []
    if target and any(f.any() for f in failed.values()):
        note, e = without_failed(arm, failed, other, target)
        notes.append(note)
        estimates.append((WITHOUT_FAILED, effect, e))
    rows = []
    for (variant, lr), g in sel.groupby(["variant", "optim.lr"]):
        rows.append({"norm": variant, "learning rate": lr}
                    | ({} if fixed_rates else {"best rate": "yes" if lr == rate[variant] else ""})
                    | {"final test accuracy (%)": acc_cell(*mean_ci(g.final_acc)),
                       f"steps to {target:.0%}" if target else "steps to target":
                           _steps_cell(reached(g, target)) if target else "—"})
    finding = (f"{'Rates (fixed before the runs)' if fixed_rates else 'Best rates'}: bn {rate['bn']:g}, "
               f"{other} {rate[other]:g}."
               + (f" Target {target:.0%} test accuracy: mean steps bn {b['bn'][0].mean():.0f}, {other} "
                  f"{b[other][0].mean():.0f}" + _counted(arm, failed) + "." if target else ""))
    return verdict(key, title, rule, effect, est, blockers, finding, numbers=pd.DataFrame(rows), notes=notes,
                   params={"target": target}, estimates=estimates, facts={"rates": rate})


def recorded(runs: pd.DataFrame, target: float) -> pd.Series:
    """Steps at which each run was first seen at `target`, whatever its status (a diverged run
    may have passed it before diverging); NaN where never."""
    return pd.to_numeric(runs[steps_column(target)], errors="coerce")


def bins(runs: pd.DataFrame, target: Optional[float], failed: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(recorded, low, high): the steps each seed is counted at, and the bin in which it got to
    `target` under the rule: after the evaluation before the one that saw it, up to that one; a
    run that diverged after passing it, from there to never (inf); a seed that reached no
    threshold at all (`failed`), from the schedule's last step (its arm's completed runs' steps)
    to never, counted at that last step."""
    rec = recorded(runs, target) if target else pd.Series(np.nan, index=runs.index)
    done = runs.status == "completed"
    last = pd.to_numeric(runs.loc[done, "steps"], errors="coerce").max()
    last = last if np.isfinite(last) else pd.to_numeric(runs["steps"], errors="coerce").max()
    return (rec.where(~failed, last), bin_start(runs, rec).where(~failed, last),
            rec.where(done, np.inf).where(~failed, np.inf))


def speedup(b: dict, other: str):
    """The rule's estimate from each arm's bins (arm -> bins(...)): log2 steps of `other` minus BN's,
    over the bins' least and most favourable ends."""
    return censored([(1, log2(b[other][1])), (-1, log2(b["bn"][2]))],
                    [(1, log2(b[other][2])), (-1, log2(b["bn"][1]))],
                    [(1, log2(b[other][0])), (-1, log2(b["bn"][0]))])


def _counted(arm: dict, failed: dict) -> str:
    k = {n: int(f.sum()) for n, f in failed.items() if f.any()}
    return (" (" + ", ".join(f"{n}'s {c} seed{'s' if c > 1 else ''} that reached no threshold counted at the last "
                             "step" for n, c in k.items()) + ": a bound, not an estimate)") if k else ""


# its label in Verdict.estimates and its note's Note.kind (data: {arm: {seed: final accuracy}} of those seeds)
WITHOUT_FAILED = "without the seeds that reached no threshold (information only)"


def without_failed(arm: dict, failed: dict, other: str, target: float):
    """Information only: the speed-up at the same target with the seeds that reached no threshold
    left out, to show how much the verdict leans on how they are counted: (the note, the estimate)."""
    keep = {n: a[~failed[n]] for n, a in arm.items()}
    b = {n: bins(keep[n], target, failed[n][~failed[n]]) for n in keep}
    e = speedup(b, other)
    who = "; ".join(f"{n}: seed {', '.join(str(int(x)) for x in arm[n].seed[failed[n]])}, final accuracy "
                    f"{', '.join(pct(x) for x in arm[n].final_acc[failed[n]])}" for n in arm if failed[n].any())
    seeds = {n: {int(x): float(acc) for x, acc in zip(arm[n].seed[failed[n]], arm[n].final_acc[failed[n]])}
             for n in arm if failed[n].any()}
    return Note(f"seeds that reached no threshold ({who}) count by the rule as reaching {target:.0%} anywhere from "
                f"the schedule's last step to never; without them (information only) the speed-up is "
                f"{EFFECT.fmt(e.value)}, interval [{EFFECT.fmt(e.lo)}, {EFFECT.fmt(e.hi)}]", WITHOUT_FAILED,
                data=seeds), e


def _config_name(arm: str) -> str:
    return "skipinit" if arm.endswith(SKIPINIT) else arm


def check(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    return compare(runs, "none", "BN reaches a target accuracy in fewer steps")


def check_skipinit(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    return compare(runs, "none" + SKIPINIT,
                   "BN reaches a target accuracy in fewer steps than an unnormalized net with SkipInit")


@S.figure
def convergence(curves: pd.DataFrame, lrs: Optional[Sequence[float]] = None, max_panels: int = 4) -> Figure:
    """Train loss and test accuracy vs step per arm (BN, none, none + SkipInit), at learning rates
    both BN and none ran."""
    S.need(curves, ["norm.name", "optim.lr", "metric", "step", "value"], "convergence")
    c = curves[curves.metric.isin(["train/loss", "test/acc"])]
    c = c.assign(variant=variant_names(c))
    shared = S.shared_values(c, "optim.lr", by="variant")
    if not shared:
        raise S.NotDrawn("convergence: no learning rate at which both bn and none have curves")
    lrs = S.spread_pick(shared, max_panels) if lrs is None else list(lrs)
    c = c[c["optim.lr"].isin(lrs) & c.variant.isin(ARMS)].copy()
    c["value"] = c["value"].where(np.isfinite(c["value"]))
    fig = Figure(figsize=(2.6 * len(lrs) + 0.6, 5.0), layout="constrained")
    axes = fig.subplots(2, len(lrs), sharex="col", sharey="row", squeeze=False)
    loss = c[c.metric == "train/loss"]
    first = loss.sort_values("step").groupby("run").value.first()
    top = 1.6 * float(first.median()) if len(first) else None  # diverging losses would flatten the rest
    for j, lr in enumerate(lrs):
        for norm in S.norms_of(c, "variant"):
            sub = c[(c["optim.lr"] == lr) & (c.variant == norm)]
            for i, metric in enumerate(("train/loss", "test/acc")):
                m = sub[sub.metric == metric]
                if not len(m):
                    continue
                agg = aggregate(m, ["step"], "value")
                S.line_ci(axes[i, j], agg, "step", S.color(norm), S.label(norm),
                         scale=S.PCT if metric == "test/acc" else 1.0)
            ends = sub[(sub.metric == "train/loss")].groupby("run").step.max()
            diverged = sub[sub.get("status", pd.Series("", index=sub.index)) == "diverged"].run.unique()
            for r in diverged:
                axes[0, j].plot([ends[r]], [top or 1], marker="x", color=S.color(norm), linestyle="none",
                                markersize=8, label="diverged")
        axes[0, j].set_title(f"lr = {lr:g}")
        axes[1, j].set_xlabel("step (SGD updates)")
        axes[1, j].xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[0]:
        S.log10_axis(ax, "y", subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0))
        if top:
            ax.set_ylim(top=top * 1.05)
    axes[0, 0].set_ylabel("train loss (cross-entropy, log scale)")
    axes[1, 0].set_ylabel("test accuracy (%)")
    axes[1, 0].set_ylim(0, None)
    S.legend_outside(fig, axes)
    fig.suptitle(f"Convergence at learning rates both ran ({S.caption_n(c.drop_duplicates('run'))})")
    return fig


@S.figure
def steps_to_target(runs: pd.DataFrame, target: Optional[float] = None) -> Figure:
    """Steps until the test accuracy first reached `target` vs learning rate per arm (SkipInit
    variants apart); a diverged run never reached it, as in the rule."""
    S.need(runs, ["norm.name", "optim.lr"], "steps to target accuracy")
    ts = thresholds(runs)
    if not ts:
        raise S.NotDrawn("steps to target accuracy: runs recorded no steps_to_test_acc thresholds")
    runs = runs.assign(variant=variant_names(runs))
    arms = S.norms_of(runs, "variant")
    if target is None:  # the highest threshold some run of each arm reached
        hit = [t for t in ts if all(reached(runs[runs.variant == n], t).notna().any() for n in arms)]
        if not hit:
            raise S.NotDrawn("steps to target accuracy: no threshold was reached by every norm")
        target = hit[-1]
    col = steps_column(target)
    runs = runs.assign(**{col: reached(runs, target)})
    fig = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = fig.subplots()
    top = float(np.nanmax([pd.to_numeric(runs.get("steps"), errors="coerce").max(), runs[col].max(), 1.0]))
    for norm in arms:
        sub = runs[runs.variant == norm]
        hit = sub[sub[col].notna()]
        if len(hit):
            S.line_ci(ax, aggregate(hit, ["optim.lr"], col), "optim.lr", S.color(norm), S.label(norm), errorbars=True)
        miss = sub[sub[col].isna()]
        if len(miss):
            ax.plot(miss["optim.lr"], np.full(len(miss), top * 1.3), marker="^", linestyle="none",
                    color=S.color(norm), markerfacecolor="none", markersize=7,
                    label=f"not reached ({S.label(norm)})")
    S.log10_axis(ax)
    S.log10_axis(ax, "y", subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0))
    ax.set_xlabel("peak learning rate (log scale)")
    ax.set_ylabel(f"steps to {target:.0%} test accuracy (log scale)")
    ax.set_title(f"Steps to {target:.0%} test accuracy ({S.caption_n(runs)})\nopen triangle: a seed never got there "
                 "or diverged", fontsize=9)
    S.legend_outside(fig, [ax], ncols=2)
    return fig


def figure_target(verdicts) -> Optional[float]:
    """The lowest of the checks' targets: one every compared arm reached at its best rate."""
    targets = [v.params["target"] for v in verdicts if v.params.get("target")]
    return min(targets) if targets else None


CHECKS = [check, check_skipinit]
FIGURES = {
    "convergence": (lambda runs, curves, v: convergence(curves),
                    "Train loss and test accuracy vs step at learning rates both BN and none ran, with none + SkipInit "
                    "beside them (mean over seeds, 95% CI band)."),
    "steps_to_target": (lambda runs, curves, v: steps_to_target(runs[variant_names(runs).isin(ARMS)],
                                                                target=figure_target(v)),
                        "Steps until the test accuracy first reached the target, vs learning rate."),
}
