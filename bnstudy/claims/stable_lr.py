"""Largest stable learning rate in a range test: BN's is much higher than none's (Ioffe & Szegedy
2015, Sec. 3.3; Bjorck et al. 2018, Sec. 2; Santurkar et al. 2018), read from an exponential
learning-rate ramp (Smith 2017, Sec. 3.3), per seed. Study: lr_range; its rule (RULE) was
written 2026-11-29, before any run (results/HISTORY.md).

Protocol: ResNet-20, batch 128 and 512; the rate rises exponentially from optim.lr/1e5 = 0.001
at the first step to optim.lr = 100 at step 400 (smoke: 16 steps), momentum 0.9, weight decay
5e-4; no evaluation but the final one. A completed seed that logged no loss window is left out,
with a note.

Deviations: Smith ramps linearly over a few epochs and reads the rate where accuracy stops
rising; we ramp exponentially (5 decades in 400 steps) and read the loss, which needs no
evaluation. Bjorck et al. used ResNet-110 at full scale; ours is ResNet-20 on a 10,000-image
subset (the ramp sees 51,200 images at batch 128, 204,800 at batch 512)."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import higher_lr
from ..analysis import style as S
from ..analysis.cells import study_runs
from ..analysis.results import variant_names
from ..analysis.rules import (UNPAIRED, BLOCKED, Blocker, Effect, Verdict, INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED,
                              decision_text, has_norms, log2, missing, verdict)
from ..analysis.stats import censored

KEY, STUDY, TITLE = "stable_lr", "lr_range", "Largest stable learning rate (range test)"
ORDER = 40  # its place in the report (claims are read in this order)
STATEMENT = ("BatchNorm allows much higher learning rates without divergence (Ioffe & Szegedy 2015, Sec. 3.3; "
             "Bjorck et al. 2018, Sec. 2; Santurkar et al. 2018), here as the largest stable rate of a "
             "learning-rate range test (Smith 2017, Sec. 3.3); De & Smith 2020 (Sec. 4) find the gain mainly at "
             "large batch.")
RISE = 2.0  # a window whose mean loss is more than RISE x the lowest window mean before it is unstable
# the lr_sweep claim's 3x, taken over by the lr_range rule written 2026-11-29 before any run
EFFECT = Effect("BN's largest stable learning rate / none's (geometric mean over seeds)", "ratio",
                higher_lr.EFFECT.minimum)
RULE = ("The training loss is logged as its mean over windows of trainer.log_every steps (10). A run becomes "
        f"unstable at the first window whose mean loss is more than {RISE:g}x the lowest window mean before it, or "
        "when it diverges (a loss above trainer.diverge_loss = 1000, or non-finite, ends it). A seed's largest stable "
        "rate is the rate at the last step of the last window before that; each window spans a factor of "
        "10**(range_decades x log_every / (steps - 1)) in rate (1.33 at 5 decades in 400 steps), and the interval "
        "is widened to hold any limit inside that window. A run that never became unstable has a limit at or above "
        "the ramp's top rate (censored: no 'not reproduced' when one of BN's seeds is, no verdict when one of "
        "none's is). A run unstable in its first window (it diverged before logging one) has a limit below the end of "
        "that window, recorded as the ramp's first rate (censored below: no 'reproduced' when one of BN's seeds is, "
        "no 'not reproduced' when one of none's is). Effect, per batch size: mean log2(BN's largest stable rate) "
        "minus mean log2(none's), Welch t over seeds, shown as a ratio. The check at the smaller batch (128) is the "
        "primary one; the larger (512) is reported beside it. "
        + decision_text(EFFECT) + " No arm is judged on accuracy here (a range test does not train to one): in "
        "its place, an arm that logged no loss window gives no verdict. Stated limits of the measure: the bar is "
        "relative to each run's own lowest loss, so an arm that fits further (BN; batch 512, which sees 4x the "
        "images) meets a stricter absolute bar; and a window's mean lags the onset of a blow-up inside it, so the "
        "interval covers the limit as defined here, not an onset earlier in the window. " + UNPAIRED)

# how a run's limit was read; NEVER, FIRST and NO_WINDOWS are also the Blocker.kind of the reasons a check
# gives no verdict (subject: the arm; data: {"seeds": those seeds, "batch": the batch size}, and NEVER's
# {"top": the ramp's top rate} for none)
UNSTABLE, DIVERGED, NEVER, FIRST, NO_WINDOWS = ("unstable", "diverged", "never unstable",
                                                "unstable from the first window", "no windows")


def unstable_window(losses: Sequence[float]) -> Optional[int]:
    """Index of the first unstable window: a non-finite mean, or one more than RISE x the lowest
    mean before it; None when every window is stable."""
    lowest = math.inf
    for i, x in enumerate(losses):
        if not math.isfinite(x) or x > RISE * lowest:
            return i
        lowest = min(lowest, x)
    return None


def windows(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per logged window: run, step, loss (its mean), lr (the rate of its last step)."""
    key = ["run", "step"]
    if not {"run", "step", "metric", "value"} <= set(curves.columns):
        return pd.DataFrame(columns=key + ["loss", "lr"])
    c = curves[curves.metric.isin(["train/loss", "train/lr"])]

    def part(metric: str, name: str) -> pd.DataFrame:
        m = c[c.metric == metric].drop_duplicates(key, keep="last")
        return m[key + ["value"]].rename(columns={"value": name})

    # the row a divergence writes (the bad step's own loss) has no rate beside it: not a window
    w = part("train/loss", "loss").merge(part("train/lr", "lr"), on=key)
    return w.astype({"loss": float, "lr": float}).sort_values(key, ignore_index=True)


def ramp(runs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per run: the ramp's first rate, and the factor in rate one window spans (from its config)."""
    def num(col: str, default: float = np.nan) -> pd.Series:
        return pd.to_numeric(runs.get(col, pd.Series(default, index=runs.index)), errors="coerce")

    scaled = num("optim.scale_lr", 0).fillna(0).astype(bool)  # as bnstudy.optim.peak_lr
    peak = num("optim.lr") * np.where(scaled, num("data.batch_size") / num("optim.lr_batch_size", 128), 1.0)
    decades = num("schedule.range_decades")
    # the study sets trainer.max_steps; else a completed run's steps are its total
    total = num("trainer.max_steps").fillna(num("steps"))
    return peak / 10 ** decades, 10 ** (decades * num("trainer.log_every") / (total - 1))


def limits(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its norm, batch size, seed, status, windows logged, how its limit was read
    (`kind`), the largest stable rate (`limit`) and the bin holding the limit (`lo`, `hi`)."""
    w = windows(curves[curves.run.isin(runs.run)] if "run" in curves else curves)
    by_run = dict(tuple(w.groupby("run")))
    first, factor = ramp(runs)
    rows = []
    for r, s, f in zip(runs.to_dict("records"), first, factor):
        own = by_run.get(r["run"], w.iloc[0:0])
        k = unstable_window(own.loss.tolist())
        if k is None and r["status"] == "diverged":
            k = len(own)  # it diverged in the window after the last one logged
        if k is None:
            kind = NEVER if len(own) else NO_WINDOWS
            limit = lo = hi = own.lr.iloc[-1] if len(own) else np.nan
        elif k == 0:
            kind, limit, lo, hi = FIRST, s, s, s * f
        else:
            kind = DIVERGED if k == len(own) else UNSTABLE
            limit = lo = own.lr.iloc[k - 1]
            hi = lo * f
        rows.append({"run": r["run"], "norm.name": r["norm.name"], "data.batch_size": r["data.batch_size"],
                     "seed": r["seed"], "status": r["status"], "windows": len(own), "kind": kind,
                     "limit": limit, "lo": lo, "hi": hi})
    return pd.DataFrame(rows, columns=["run", "norm.name", "data.batch_size", "seed", "status", "windows", "kind",
                                       "limit", "lo", "hi"])


def _rates(per: pd.DataFrame) -> str:
    """'0.42, >= 100, < 0.00133': a censored limit by the bound it is known by."""
    cell = {NEVER: lambda r: f">= {r.limit:.3g}", FIRST: lambda r: f"< {r.hi:.3g}"}
    return ", ".join(cell.get(r.kind, lambda r: f"{r.limit:.3g}")(r) for r in per.itertuples()
                     if pd.notna(r.limit)) or "—"


def _table(per: pd.DataFrame, batch) -> pd.DataFrame:
    rows = []
    for n in ("bn", "none"):
        p = per[per["norm.name"] == n].sort_values("seed")
        m = p[p.limit.notna()]
        rows.append({"norm": n, "batch size": batch, "seeds measured": f"{len(m)}/{len(p)}",
                     "largest stable rate per seed": _rates(m),
                     "geometric mean": f"{2 ** log2(m.limit).mean():.3g}" if len(m) else "—",
                     "never unstable (censored)": int((p.kind == NEVER).sum()),
                     "unstable from the first window": int((p.kind == FIRST).sum()),
                     "diverged": int((p.status == "diverged").sum())})
    return pd.DataFrame(rows)


def _check(runs: pd.DataFrame, curves: pd.DataFrame, larger: bool) -> Verdict:
    claim = f"BN's largest stable learning rate is at least {EFFECT.fmt(EFFECT.minimum)} none's"
    sel, notes = study_runs(runs, STUDY)
    # the rule's arms: bn and plain none (a none + SkipInit run is a network of its own)
    sel = sel[variant_names(sel).isin(["bn", "none"])] if len(sel) else sel
    batches = sorted(pd.to_numeric(sel["data.batch_size"], errors="coerce").dropna().unique()) \
        if len(sel) and "data.batch_size" in sel else []
    if not has_norms(sel, ("bn", "none")) or not batches or (larger and len(batches) < 2):
        title = f"{claim}, at the {'larger batch size' if larger else 'smaller batch size (primary)'}"
        needs = ("finished lr_range runs with norm=bn and norm=none" +
                 (" at a second, larger batch size" if larger and batches else ""))
        return missing(KEY, title, RULE, needs, STUDY, notes)
    b = batches[-1] if larger else batches[0]
    b = int(b) if float(b).is_integer() else b
    title = f"{claim}, batch {b}" + ("" if larger else " (primary)")
    at = sel[pd.to_numeric(sel["data.batch_size"], errors="coerce") == b]
    if not has_norms(at, ("bn", "none")):
        return missing(KEY, title, RULE, f"finished lr_range runs with norm=bn and norm=none at batch {b}", STUDY,
                       notes)
    per = limits(at, curves)
    seeds = {(n, k): g.seed.tolist() for (n, k), g in per.groupby(["norm.name", "kind"])}
    blockers = []
    for n in ("bn", "none"):
        if not per.loc[per["norm.name"] == n, "windows"].sum():
            blockers.append(Blocker(f"{n} at batch {b} logged no loss window (train/loss beside train/lr in "
                                    "metrics.csv): no limit was measured", NO_WINDOWS, n,
                                    {"seeds": per.loc[per["norm.name"] == n, "seed"].tolist(), "batch": b}))
        elif (n, NO_WINDOWS) in seeds:
            notes.append(f"{n} seed(s) {seeds[n, NO_WINDOWS]} at batch {b} finished without logging a loss window: "
                         "left out")
    if ("none", NEVER) in seeds:
        top = per.loc[(per["norm.name"] == "none") & (per.kind == NEVER), "limit"].max()
        blockers.append(Blocker(f"none never became unstable for seed(s) {seeds['none', NEVER]} at batch {b}: its "
                                f"limit lies above the ramp's top rate {top:.3g}; raise optim.lr", NEVER, "none",
                                {"seeds": seeds["none", NEVER], "batch": b, "top": float(top)}))
    m = per[per.limit.notna()]
    arm = {n: m[m["norm.name"] == n] for n in ("bn", "none")}
    # each seed's limit lies in the window after its largest stable rate
    est = censored([(1, log2(arm["bn"].lo)), (-1, log2(arm["none"].hi))],
                   [(1, log2(arm["bn"].hi)), (-1, log2(arm["none"].lo))],
                   [(1, log2(arm["bn"].limit)), (-1, log2(arm["none"].limit))])
    geo = {n: 2 ** log2(arm[n].limit).mean() if len(arm[n]) else math.nan for n in arm}
    finding = (f"Batch {b}: largest stable rate per seed: bn {_rates(arm['bn'])} (geometric mean {geo['bn']:.3g}); "
               f"none {_rates(arm['none'])} (geometric mean {geo['none']:.3g}).")
    v = verdict(KEY, title, RULE, EFFECT, est, blockers, finding, numbers=_table(per, b), notes=notes,
                params={"batch_size": b, "largest_stable_lr": {n: arm[n].limit.tolist() for n in arm}})
    # a censored limit bounds the ratio on one side only
    why = []
    if v.verdict == NOT_REPRODUCED and ("bn", NEVER) in seeds:
        why.append(Blocker(f"BN never became unstable for seed(s) {seeds['bn', NEVER]}: its limit, and the ratio, "
                           "may be larger", NEVER, "bn", {"seeds": seeds["bn", NEVER], "batch": b}))
    if v.verdict == NOT_REPRODUCED and ("none", FIRST) in seeds:
        why.append(Blocker(f"none was unstable from its first window for seed(s) {seeds['none', FIRST]}: its limit "
                           "may be lower, and the ratio larger", FIRST, "none",
                           {"seeds": seeds["none", FIRST], "batch": b}))
    if v.verdict == REPRODUCED and ("bn", FIRST) in seeds:
        why.append(Blocker(f"BN was unstable from its first window for seed(s) {seeds['bn', FIRST]}: its limit, and "
                           "the ratio, may be smaller", FIRST, "bn", {"seeds": seeds["bn", FIRST], "batch": b}))
    if why:
        v.verdict, v.why, v.reason = INCONCLUSIVE, BLOCKED, "; ".join(why)
        v.blockers += why
        v.finding += f" Inconclusive: {v.reason}."
    return v


def check(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    """The primary check: the smaller batch size present (128; 32 at smoke scale)."""
    return _check(runs, curves, larger=False)


def check_large_batch(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    """Beside it: the larger batch size present (512; 64 at smoke scale)."""
    return _check(runs, curves, larger=True)


@S.figure
def range_test(runs: pd.DataFrame, curves: pd.DataFrame) -> Figure:
    """Window-mean training loss vs learning rate, one panel per batch size, one line per seed;
    each seed's largest stable rate marked."""
    S.need(runs, ["run", "norm.name", "data.batch_size", "seed", "status"], "range test")
    per = limits(runs, curves)
    w = windows(curves[curves.run.isin(runs.run)] if "run" in curves else curves)
    w = w[np.isfinite(w.loss) & (w.lr > 0)].merge(per, on="run")
    if not len(w):
        raise S.NotDrawn("range test: no logged loss windows (train/loss beside train/lr)")
    batches = sorted(w["data.batch_size"].unique())
    fig = Figure(figsize=(3.4 * len(batches) + 0.6, 3.6), layout="constrained")
    axes = fig.subplots(1, len(batches), sharey=True, squeeze=False)[0]
    marks = {UNSTABLE: dict(marker="o"), DIVERGED: dict(marker="o"), NEVER: dict(marker=">", markerfacecolor="none")}
    for ax, b in zip(axes, batches):
        here = w[w["data.batch_size"] == b]
        for norm in S.norms_of(here):
            for _, g in here[here["norm.name"] == norm].groupby("run"):
                ax.plot(g.lr, g.loss, color=S.color(norm), linewidth=0.8, alpha=0.8, label=S.label(norm))
                at = g[np.isclose(g.lr, g.limit.iloc[0])]
                if g.kind.iloc[0] in marks and len(at):
                    ax.plot(at.lr, at.loss, color=S.color(norm), linestyle="none", **marks[g.kind.iloc[0]])
        S.log10_axis(ax, subs=(1.0,))
        S.log10_axis(ax, "y", subs=(1.0, 2.0, 5.0))
        ax.set_xlabel("learning rate (log scale)")
        ax.set_title(f"batch {b:g}")
    # the markers' legend entries, in grey: their colour is the norm's
    axes[-1].plot([], [], color="0.4", linestyle="none", label="largest stable rate", **marks[UNSTABLE])
    axes[-1].plot([], [], color="0.4", linestyle="none", label="never unstable (limit >= top rate)", **marks[NEVER])
    axes[0].set_ylabel("train loss, mean over a window (log scale)")
    S.legend_outside(fig, axes, ncols=4)
    n = int(per.groupby(["norm.name", "data.batch_size"]).seed.nunique().max())
    fig.suptitle(f"Learning-rate range test, one line per seed ({n} per arm)\nunstable once a window's mean loss "
                 f"exceeds {RISE:g}x the lowest before it, or the run diverges", fontsize=10)
    return fig


CHECKS = [check, check_large_batch]
FIGURES = {
    "range_test": (lambda runs, curves, v: range_test(runs, curves),
                   "Training loss (mean over each logged window) vs learning rate along the exponential ramp, one "
                   "line per seed, one panel per batch size; o: the seed's largest stable rate (the last window "
                   f"before the loss first exceeded {RISE:g}x its lowest window mean, or before it diverged); "
                   "open >: a seed that never became unstable."),
}
