"""One pure function per claim: the runs table (and probe curves) in, a Verdict out.

Each function picks its study's finished runs, computes the numbers over seeds, and applies
a rule stated in words next to it (`rule`), so a reader can check the verdict by hand.
Common conventions:
- a diverged run's accuracy counts as chance (results.final_acc), never as missing;
- every verdict needs >= MIN_SEEDS seeds in each compared cell: with fewer, the point
  estimates are reported but the verdict is "inconclusive" (one seed is noise);
- when no compared cell's mean accuracy is TRAINED_MARGIN above chance, nothing trained and
  the verdict is "inconclusive" (comparing chance with chance proves nothing);
- where the runs a claim needs are absent, the verdict is MISSING and `missing` says which
  runs to make, instead of guessing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from .results import (SKIPINIT, aggregate, chance, diff_ci, fmt_ci, mean_ci, steps_column, study_runs,
                      thresholds, variant_names, with_config)

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
MISSING = "not tested (runs missing)"
MIN_SEEDS = 2
USABLE_FRACTION = 0.5  # of the way from chance to the sweep's best accuracy
LR_RATIO = 3.0
TRAINED_MARGIN = 0.05  # a cell within 5 points of chance did not train: no verdict rests on it


@dataclass
class Verdict:
    claim: str  # key, e.g. "higher_lr"
    title: str
    verdict: str
    rule: str
    finding: str = ""  # the numbers against the rule, in a sentence or two
    numbers: pd.DataFrame = field(default_factory=pd.DataFrame)  # formatted, for the report
    missing: str = ""  # which runs are needed, and the command that makes them
    notes: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)  # choices a figure should share (e.g. target accuracy)


def _missing(claim, title, rule, needs: str, study: str, notes=()) -> Verdict:
    return Verdict(claim, title, MISSING, rule, missing=f"needs {needs} "
                   f"(`python -m bnstudy run +exp={study}`)", notes=list(notes))


def _decide(outcome: str, n_min: int, best_acc: Optional[float] = None, chance_acc: float = 0.1) -> tuple[str, str]:
    """The verdict, and a prefix for the finding when too few seeds, or nets that did not
    train (`best_acc`: the best compared cell's mean accuracy), forbid one."""
    if best_acc is not None and not best_acc >= chance_acc + TRAINED_MARGIN:
        return INCONCLUSIVE, (f"No compared cell trained clearly above chance (best {_pct(best_acc)}, chance "
                              f"{_pct(chance_acc)}): nothing to compare; train longer. ")
    if n_min < MIN_SEEDS:
        return INCONCLUSIVE, (f"Only n={n_min} seed per compared cell: the point estimates say "
                              f"'{outcome}', but a verdict needs >= {MIN_SEEDS} seeds. ")
    return outcome, ""


def _pct(x: float) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def _acc(mean, ci, n) -> str:
    return fmt_ci(100 * mean, 100 * ci, n, digits=1) if np.isfinite(mean) else "—"


def _points(d: float, h: float) -> str:
    """A difference of accuracies in points, with its CI half-width where there is one."""
    return f"{100 * d:+.1f}" + (f" ± {100 * h:.1f}" if np.isfinite(h) else "") + " points"


def _acc_col(agg: pd.DataFrame) -> list[str]:
    """An aggregate()'s rows as 'mean ± half-width (n=..)' accuracy strings, in percent."""
    return [_acc(m, h, n) for m, h, n in zip(agg["mean"], agg.ci, agg.n)]


def _has_norms(sel: pd.DataFrame, norms: Sequence[str]) -> bool:
    return len(sel) > 0 and set(norms) <= set(sel["norm.name"])


# ---------------------------------------------------------------- faster training

FASTER_RULE = ("Target = the highest accuracy threshold (trainer.acc_thresholds) that both bn and none reach "
               "in some run. At every learning rate both ran where either reaches it, compare mean steps to "
               "the target over seeds (a cell where a seed never reaches it counts as never). "
               "Reproduced: BN needs fewer steps at every such rate; not reproduced: none needs fewer at some "
               "rate; inconclusive: otherwise (ties at the evaluation interval).")


def faster_training(runs: pd.DataFrame) -> Verdict:
    claim, title = "faster_training", "BN reaches a target accuracy in fewer steps"
    sel, notes = study_runs(runs, "lr_sweep")
    ts = thresholds(sel)
    if not _has_norms(sel, ("bn", "none")) or not ts:
        return _missing(claim, title, FASTER_RULE, "finished lr_sweep runs with norm=bn and norm=none", "lr_sweep", notes)
    bn, none = sel[sel["norm.name"] == "bn"], sel[sel["norm.name"] == "none"]
    shared = sorted(set(bn["optim.lr"]) & set(none["optim.lr"]))
    if not shared:
        return _missing(claim, title, FASTER_RULE, "bn and none runs at a shared learning rate", "lr_sweep", notes)
    sh = sel[sel["optim.lr"].isin(shared)]
    both = [t for t in ts if all(sh.loc[sh["norm.name"] == n, steps_column(t)].notna().any() for n in ("bn", "none"))]
    if not both:
        best = {n: sh.loc[sh["norm.name"] == n, "final_acc"].max() for n in ("bn", "none")}
        return Verdict(claim, title, INCONCLUSIVE, FASTER_RULE, notes=notes,
                       finding=f"No threshold in {ts} was reached by both norms (best final accuracy: "
                               f"bn {_pct(best['bn'])}, none {_pct(best['none'])}); train longer.")
    target = both[-1]
    col = steps_column(target)
    rows, faster, slower, ties, n_min = [], [], [], [], math.inf
    for lr in shared:
        cell = {}
        for norm in ("bn", "none"):
            s = sh[(sh["norm.name"] == norm) & (sh["optim.lr"] == lr)][col]
            m, h, n = mean_ci(s)
            n_min = min(n_min, len(s))
            all_reached = bool(s.notna().all())
            cell[norm] = m if all_reached else math.inf
            rows.append({"learning rate": lr, "norm": norm, "steps": fmt_ci(m, h, n, 0) if all_reached
                         else f"not reached by {s.isna().sum()}/{len(s)} seeds"})
        if math.isinf(cell["bn"]) and math.isinf(cell["none"]):
            continue  # neither gets there at this rate: nothing to compare
        (faster if cell["bn"] < cell["none"] else slower if cell["none"] < cell["bn"] else ties).append(lr)
    outcome = NOT_REPRODUCED if slower else REPRODUCED if faster and not ties else INCONCLUSIVE
    verdict, pre = _decide(outcome, int(n_min))
    lrs = lambda xs: ", ".join(f"{x:g}" for x in xs) or "none"
    finding = (pre + f"Target {target:.0%} test accuracy. BN faster at lr {lrs(faster)}; "
               f"no normalization faster at lr {lrs(slower)}" + (f"; tied at lr {lrs(ties)}" if ties else "") + ".")
    numbers = pd.DataFrame(rows).pivot(index="learning rate", columns="norm", values="steps").reset_index()
    numbers.columns.name = None
    numbers = numbers.rename(columns={"bn": f"bn: steps to {target:.0%}", "none": f"none: steps to {target:.0%}"})
    return Verdict(claim, title, verdict, FASTER_RULE, finding, numbers, notes=notes, params={"target": target})


# ---------------------------------------------------------------- higher learning rates

HIGHER_LR_RULE = (f"A learning rate is usable for a norm when no seed diverged and the mean final test accuracy "
                  f"is at least {USABLE_FRACTION:g} of the way from chance to the best mean accuracy in the sweep. "
                  f"Reproduced: BN's largest usable rate is >= {LR_RATIO:g}x that of none; not reproduced: it is "
                  f"less; inconclusive: a norm has no usable rate, or none's largest usable rate is the top of the "
                  f"grid (its limit was not found).")


def usable_learning_rates(sel: pd.DataFrame) -> pd.DataFrame:
    """Per (norm, lr): accuracy over seeds, divergences, and whether the rate is usable."""
    agg = aggregate(sel, ["norm.name", "optim.lr"], "final_acc")
    div = sel.groupby(["norm.name", "optim.lr"]).status.apply(lambda s: int((s == "diverged").sum()))
    agg["diverged"] = [div.get((a, b), 0) for a, b in zip(agg["norm.name"], agg["optim.lr"])]
    c = float(chance(sel).iloc[0])
    bar = c + USABLE_FRACTION * (agg["mean"].max() - c)
    agg["usable"] = (agg.diverged == 0) & (agg["mean"] >= bar)
    agg.attrs["bar"] = bar
    return agg


def higher_lr(runs: pd.DataFrame) -> Verdict:
    claim, title = "higher_lr", "BN trains at much higher learning rates"
    sel, notes = study_runs(runs, "lr_sweep")
    if not _has_norms(sel, ("bn", "none")) or sel.groupby("norm.name")["optim.lr"].nunique().min() < 2:
        return _missing(claim, title, HIGHER_LR_RULE, "finished lr_sweep runs with norm=bn and norm=none "
                        "at >= 2 learning rates each", "lr_sweep", notes)
    sel = sel[sel["norm.name"].isin(["bn", "none"])]
    agg = usable_learning_rates(sel)
    top = {n: agg.loc[(agg["norm.name"] == n) & agg.usable, "optim.lr"].max() for n in ("bn", "none")}
    grid_top = sel.loc[sel["norm.name"] == "none", "optim.lr"].max()
    numbers = pd.DataFrame({
        "norm": agg["norm.name"], "learning rate": agg["optim.lr"],
        "final test accuracy (%)": _acc_col(agg),
        "diverged seeds": [f"{d}/{n}" for d, n in zip(agg.diverged, agg.n)],
        "usable": np.where(agg.usable, "yes", "no")})
    fmt = lambda x: "none" if pd.isna(x) else f"{x:g}"
    finding = (f"Largest usable learning rate: bn {fmt(top['bn'])}, none {fmt(top['none'])} "
               f"(usable: accuracy >= {_pct(agg.attrs['bar'])} and no divergence).")
    if pd.isna(top["bn"]) or pd.isna(top["none"]):
        outcome = INCONCLUSIVE
        finding += " A norm has no usable rate in the grid; widen it."
    elif top["none"] >= grid_top:
        outcome = INCONCLUSIVE
        finding += f" No normalization is still usable at the grid's top rate {grid_top:g}; extend the grid upward."
    else:
        ratio = top["bn"] / top["none"]
        outcome = REPRODUCED if ratio >= LR_RATIO else NOT_REPRODUCED
        finding += f" Ratio {ratio:.3g}x."
    verdict, pre = _decide(outcome, int(agg.n.min()), agg["mean"].max(), float(chance(sel).iloc[0]))
    return Verdict(claim, title, verdict, HIGHER_LR_RULE, pre + finding, numbers, notes=notes,
                   params={"largest_usable_lr": top})


# ---------------------------------------------------------------- small batches

SMALL_BATCH_RULE = ("Drop = mean final test accuracy at the reference batch size minus at the smallest (both "
                    "norms ran both), with a 95% Welch t-interval. The reference is batch 32, the largest in Wu & "
                    "He's Fig. 1 (the largest shared batch where 32 was not run): with the same number of epochs "
                    "for every batch size, larger batches take fewer steps and a short budget undertrains them, "
                    "which is not the claim. Reproduced: BN's drop is positive beyond its CI and "
                    "GN's drop is smaller than BN's; not reproduced: BN's drop is <= 0 or GN's drop is >= BN's; "
                    "inconclusive: otherwise. (Wu & He 2018, Fig. 1: BN's error grows at batch 2-4, GN's does not.)")


REFERENCE_BATCH = 32


def small_batch(runs: pd.DataFrame) -> Verdict:
    claim, title = "small_batch", "BN degrades at small batches; GroupNorm does not"
    sel, notes = study_runs(runs, "batch_size_sweep")
    if not _has_norms(sel, ("bn", "gn")):
        return _missing(claim, title, SMALL_BATCH_RULE, "finished batch_size_sweep runs with norm=bn and norm=gn",
                        "batch_size_sweep", notes)
    shared = sorted(set(sel.loc[sel["norm.name"] == "bn", "data.batch_size"])
                    & set(sel.loc[sel["norm.name"] == "gn", "data.batch_size"]))
    if len(shared) < 2:
        return _missing(claim, title, SMALL_BATCH_RULE, "bn and gn runs at >= 2 shared batch sizes",
                        "batch_size_sweep", notes)
    small = shared[0]
    large = REFERENCE_BATCH if REFERENCE_BATCH in shared else shared[-1]
    if small > 8:
        notes.append(f"the smallest shared batch size is {small}; the claim is about batches of 2-4")
    agg = aggregate(sel[sel["data.batch_size"].isin(shared)], ["norm.name", "data.batch_size"], "final_acc")
    numbers = agg.assign(acc=_acc_col(agg)).pivot(
        index="data.batch_size", columns="norm.name", values="acc").reset_index()
    numbers.columns.name = None
    numbers = numbers.rename(columns={"data.batch_size": "batch size"})
    drops, n_min = {}, math.inf
    for norm in ("bn", "gn"):
        a = sel.loc[(sel["norm.name"] == norm) & (sel["data.batch_size"] == large), "final_acc"]
        b = sel.loc[(sel["norm.name"] == norm) & (sel["data.batch_size"] == small), "final_acc"]
        drops[norm] = diff_ci(a, b)
        n_min = min(n_min, len(a), len(b))
    (bd, bh), (gd, gh) = drops["bn"], drops["gn"]
    if bd <= 0 or gd >= bd:
        outcome = NOT_REPRODUCED
    elif bd - bh > 0:
        outcome = REPRODUCED
    else:
        outcome = INCONCLUSIVE
    verdict, pre = _decide(outcome, int(n_min), agg["mean"].max(), float(chance(sel).iloc[0]))
    finding = pre + f"Accuracy drop from batch {large} to batch {small}: bn {_points(bd, bh)}, gn {_points(gd, gh)}."
    if large != shared[-1]:  # beside the rule's numbers: the same drop from the largest batch
        top = {n: diff_ci(sel.loc[(sel["norm.name"] == n) & (sel["data.batch_size"] == shared[-1]), "final_acc"],
                          sel.loc[(sel["norm.name"] == n) & (sel["data.batch_size"] == small), "final_acc"])
               for n in ("bn", "gn")}
        finding += (f" From the largest batch, {shared[-1]} (not the rule's reference): bn {_points(*top['bn'])}, "
                    f"gn {_points(*top['gn'])}.")
    return Verdict(claim, title, verdict, SMALL_BATCH_RULE, finding, numbers, notes=notes)


# ---------------------------------------------------------------- internal covariate shift

def _probe_curves(runs: pd.DataFrame, curves: pd.DataFrame, study: str, prefix: str):
    sel, notes = study_runs(runs, study)
    c = curves[curves.run.isin(sel.run) & curves.metric.str.startswith(prefix)] if len(sel) else curves.iloc[0:0]
    return sel, with_config(c, sel, ["norm.name", "seed"] + (["model.name"] if "model.name" in sel else [])), notes


ACT_RULE = ("Drift of a layer's activation distribution = the range over training of its 15th, 50th and 85th "
            "percentiles, averaged, divided by the mean 15-85 spread (scale-free). Layers: the inputs to the "
            "nonlinearities probed in both nets (the norm layers' outputs; identity without BN). "
            "Reproduced: BN's drift (mean over seeds) is smaller at every layer; not reproduced: larger at "
            "half the layers or more; inconclusive: otherwise. (Ioffe & Szegedy 2015, Fig. 1b-c.)")


def activation_drift(act: pd.DataFrame) -> pd.DataFrame:
    """Per (run, layer): scale-free drift of the p15/p50/p85 percentiles over training."""
    wide = act.pivot_table(index=["run", "layer", "step"], columns="stat", values="value").reset_index()
    rows = []
    for (run, layer), g in wide.groupby(["run", "layer"]):
        if g.step.nunique() < 2:
            continue
        spread = (g.p85 - g.p15).abs().mean()
        rng = np.mean([g[s].max() - g[s].min() for s in ("p15", "p50", "p85")])
        rows.append((run, layer, rng / spread if spread > 0 else math.nan))
    return pd.DataFrame(rows, columns=["run", "layer", "drift"])


def ics_activations(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    from .plots import _act_table, choose_layers

    claim, title = "ics_activations", "BN keeps activation distributions stable during training"
    sel, c, notes = _probe_curves(runs, curves, "covariate_shift", "act/")
    act = _act_table(c, "act") if len(c) else c
    if len(act):
        act = act[act.stat.isin(["p15", "p50", "p85"])]
    if not len(act) or not _has_norms(act, ("bn", "none")):
        return _missing(claim, title, ACT_RULE, "covariate_shift runs with norm=bn and norm=none and activation "
                        "probes (`act/*.p15|p50|p85` rows in probes.csv)", "covariate_shift", notes)
    layers = choose_layers({n: set(act.loc[act["norm.name"] == n, "layer"]) for n in ("bn", "none")}, k=10 ** 6)
    drift = activation_drift(act[act.layer.isin(layers)]).merge(sel[["run", "norm.name"]], on="run")
    if not len(drift):
        return _missing(claim, title, ACT_RULE, "activation probes at >= 2 steps per run", "covariate_shift", notes)
    agg = aggregate(drift, ["layer", "norm.name"], "drift")
    wide = agg.pivot(index="layer", columns="norm.name", values="mean")
    smaller = int((wide.bn < wide.none).sum())
    outcome = (REPRODUCED if smaller == len(wide) else NOT_REPRODUCED if smaller <= len(wide) / 2 else INCONCLUSIVE)
    numbers = agg.assign(drift=[fmt_ci(m, h, n) for m, h, n in zip(agg["mean"], agg.ci, agg.n)]).pivot(
        index="layer", columns="norm.name", values="drift").reset_index()
    numbers.columns.name = None
    verdict, pre = _decide(outcome, int(agg.n.min()))
    finding = pre + f"BN's drift is smaller at {smaller} of {len(wide)} layers."
    return Verdict(claim, title, verdict, ACT_RULE, finding, numbers, notes=notes)


ICS_RULE = ("Santurkar et al. (2018) ICS of a layer: the change in its gradient caused by updating the earlier "
            "layers, as ||G - G'|| (lower: less shift) and cos(G, G') (higher: less shift), averaged over probed "
            "parameters and training. Reproduced (BN reduces ICS): BN is lower in ||G - G'|| and higher in "
            "cosine, each beyond the 95% CI of the difference; not reproduced: BN is no better in either "
            "(point estimates); inconclusive: otherwise. Santurkar et al. report BN does not reduce ICS.")


def _per_run_mean(c: pd.DataFrame, prefix: str, stat: str) -> pd.DataFrame:
    rows = c[c.metric.str.startswith(prefix) & c.metric.str.endswith("." + stat)]
    return rows.groupby(["run", "norm.name"], as_index=False).value.mean()


def _two_sided_compare(per_run: dict[str, pd.DataFrame], lower_is_better: dict[str, bool]):
    """For each measure: (BN better beyond CI, BN better by point estimate, diff, ci, n_min, numbers rows)."""
    out, rows, n_min = {}, [], math.inf
    for name, df in per_run.items():
        a = df.loc[df["norm.name"] == "bn", "value"]
        b = df.loc[df["norm.name"] == "none", "value"]
        d, h = diff_ci(b, a) if lower_is_better[name] else diff_ci(a, b)  # positive: BN better
        n_min = min(n_min, len(a), len(b))
        out[name] = (bool(np.isfinite(h) and d - h > 0), bool(d > 0))
        for norm, s in (("bn", a), ("none", b)):
            rows.append({"measure": name, "norm": norm, "value": fmt_ci(*mean_ci(s), digits=4)})
    numbers = pd.DataFrame(rows).pivot(index="measure", columns="norm", values="value").reset_index()
    numbers.columns.name = None
    return out, numbers, int(n_min)


def _compare_per_model(per: dict[str, pd.DataFrame], sel: pd.DataFrame, lower_is_better: dict[str, bool],
                       decide: Callable[[dict], str], describe: Callable[[dict], str]):
    """_two_sided_compare within each model (an mlp's and a ResNet's gradients are not one
    population). The outcome is the models' common one, else inconclusive; the finding names
    each model's."""
    models = sel.groupby("model.name").run if "model.name" in sel else [("", sel.run)]
    outcomes, tables, findings, n_min = [], [], [], math.inf
    for model, run_ids in models:
        per_m = {k: v[v.run.isin(run_ids)] for k, v in per.items()}
        per_m = {k: v for k, v in per_m.items() if _has_norms(v, ("bn", "none"))}
        if not per_m:
            continue
        res, numbers, n = _two_sided_compare(per_m, lower_is_better)
        outcomes.append(decide(res))
        tables.append(numbers.assign(model=model)[["model"] + list(numbers.columns)])
        findings.append((f"{model}: " if model else "") + describe(res))
        n_min = min(n_min, n)
    outcome = outcomes[0] if len(set(outcomes)) == 1 else INCONCLUSIVE
    return outcome, pd.concat(tables, ignore_index=True), "; ".join(findings) + ".", int(n_min)


def ics_gradients(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    claim, title = "ics_gradients", "BN reduces internal covariate shift (Santurkar et al.'s measure)"
    sel, c, notes = _probe_curves(runs, curves, "covariate_shift", "ics/")
    if not len(c) or not _has_norms(c, ("bn", "none")):
        return _missing(claim, title, ICS_RULE, "covariate_shift runs with norm=bn and norm=none and the ICS "
                        "probe (`ics/*` rows; `probes=all`)", "covariate_shift", notes)
    per = {"||G - G'||": _per_run_mean(c, "ics/", "l2"), "cos(G, G')": _per_run_mean(c, "ics/", "cos")}

    def decide(res):
        if all(sig for sig, _ in res.values()):
            return REPRODUCED
        return NOT_REPRODUCED if not any(pt for _, pt in res.values()) else INCONCLUSIVE

    def describe(res):
        better = [k for k, (_, pt) in res.items() if pt]
        return "BN shows less shift in " + (", ".join(better) if better else "neither measure")

    outcome, numbers, finding, n_min = _compare_per_model(per, sel, {"||G - G'||": True, "cos(G, G')": False},
                                                          decide, describe)
    verdict, pre = _decide(outcome, n_min)
    finding = pre + finding
    return Verdict(claim, title, verdict, ICS_RULE, finding, numbers, notes=notes)


LANDSCAPE_RULE = ("Along each gradient step (Santurkar et al. 2018, Sec. 3.1), averaged over training: the loss "
                  "range max - min, gradient predictiveness ||grad L(x) - grad L(x - eta g)|| and effective "
                  "beta-smoothness (all lower: smoother). Reproduced: BN is lower in all three beyond the 95% CI "
                  "of the difference; not reproduced: BN is lower in none (point estimates); inconclusive: otherwise.")


def smoother_landscape(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    claim, title = "landscape", "BN makes the loss landscape smoother"
    sel, c, notes = _probe_curves(runs, curves, "covariate_shift", "landscape/")
    if not len(c) or not _has_norms(c, ("bn", "none")):
        return _missing(claim, title, LANDSCAPE_RULE, "covariate_shift runs with norm=bn and norm=none and the "
                        "landscape probe (`landscape/*` rows; `probes=all`)", "covariate_shift", notes)
    wide = c.pivot_table(index=["run", "norm.name", "step"], columns="metric", values="value").reset_index()
    sel = sel[sel.run.isin(wide.run)]
    per = {}
    if {"landscape/loss_max", "landscape/loss_min"} <= set(wide.columns):
        wide["range"] = wide["landscape/loss_max"] - wide["landscape/loss_min"]
        per["loss range"] = wide.groupby(["run", "norm.name"], as_index=False)["range"].mean().rename(columns={"range": "value"})
    for m, name in (("landscape/grad_pred", "gradient predictiveness"), ("landscape/beta_smooth", "beta-smoothness")):
        if m in wide:
            per[name] = wide.groupby(["run", "norm.name"], as_index=False)[m].mean().rename(columns={m: "value"})

    def decide(res):
        if len(res) == 3 and all(sig for sig, _ in res.values()):
            return REPRODUCED
        return NOT_REPRODUCED if not any(pt for _, pt in res.values()) else INCONCLUSIVE

    def describe(res):
        better = [k for k, (_, pt) in res.items() if pt]
        return f"BN is smoother in {len(better)} of {len(res)} measures ({', '.join(better) or 'none'})"

    outcome, numbers, finding, n_min = _compare_per_model(per, sel, {k: True for k in per}, decide, describe)
    verdict, pre = _decide(outcome, n_min)
    finding = pre + finding
    return Verdict(claim, title, verdict, LANDSCAPE_RULE, finding, numbers, notes=notes)


# ---------------------------------------------------------------- regularization

REG_RULE = ("Gap = final train accuracy (last logged window, train mode, on the training batches as fed: augmented where the study augments) minus final test "
            "accuracy, without dropout. Reproduced: BN's gap is smaller than none's beyond the 95% CI of the "
            "difference, and adding dropout to BN does not raise its test accuracy beyond the CI (BN reduces the "
            "need for dropout; Ioffe & Szegedy 2015, Sec. 3.4); not reproduced: BN's gap is >= none's, or "
            "dropout helps BN beyond the CI; inconclusive: otherwise.")


def regularization(runs: pd.DataFrame) -> Verdict:
    from .plots import train_test_gap

    claim, title = "regularization", "BN regularizes (smaller train/test gap, less need for dropout)"
    sel, notes = study_runs(runs, "regularization")
    sel = sel[sel.status == "completed"]
    if not _has_norms(sel, ("bn", "none")) or "final.train/acc" not in sel:
        return _missing(claim, title, REG_RULE, "completed regularization runs with norm=bn and norm=none",
                        "regularization", notes)
    sel = sel.assign(dropout=sel["model.dropout"].fillna(0.0) if "model.dropout" in sel else 0.0,
                     gap=train_test_gap(sel))
    base = sel[sel.dropout == 0]
    if not _has_norms(base, ("bn", "none")):
        return _missing(claim, title, REG_RULE, "bn and none runs without dropout (model.dropout=0)",
                        "regularization", notes)
    gb, gn_ = base.loc[base["norm.name"] == "bn", "gap"], base.loc[base["norm.name"] == "none", "gap"]
    d, h = diff_ci(gn_, gb)  # positive: BN's gap smaller
    n_min = min(len(gb), len(gn_))
    bn = sel[sel["norm.name"] == "bn"]
    gain, gain_h, drop_rate = math.nan, math.nan, None
    rates = sorted(set(bn.dropout) - {0})
    if rates:  # the dropout rate that helped BN most
        gains = {p: diff_ci(bn.loc[bn.dropout == p, "final_acc"], bn.loc[bn.dropout == 0, "final_acc"]) for p in rates}
        drop_rate = max(gains, key=lambda p: gains[p][0])
        gain, gain_h = gains[drop_rate]
        n_min = min(n_min, int((bn.dropout == drop_rate).sum()))
    else:
        notes.append("no BN runs with dropout: the dropout half of the rule is not tested")
    dropout_helps = np.isfinite(gain_h) and gain - gain_h > 0
    if d <= 0 or dropout_helps:
        outcome = NOT_REPRODUCED
    elif np.isfinite(h) and d - h > 0:
        outcome = REPRODUCED
    else:
        outcome = INCONCLUSIVE
    agg_gap = aggregate(sel, ["norm.name", "dropout"], "gap")
    agg_acc = aggregate(sel, ["norm.name", "dropout"], "final_acc")
    numbers = pd.DataFrame({"norm": agg_gap["norm.name"], "dropout": agg_gap.dropout,
                            "train - test gap (points)": _acc_col(agg_gap),
                            "test accuracy (%)": _acc_col(agg_acc)})
    verdict, pre = _decide(outcome, n_min, agg_acc["mean"].max(), float(chance(sel).iloc[0]))
    finding = pre + f"Without dropout, none's gap minus BN's: {_points(d, h)}."
    if drop_rate is not None:
        finding += f" Dropout {drop_rate:g} changes BN's test accuracy by {_points(gain, gain_h)}."
    return Verdict(claim, title, verdict, REG_RULE, finding, numbers, notes=notes)


# ---------------------------------------------------------------- initialization

INIT_RULE = ("Over the init cells (scheme x scale, and zero_init_residual where swept) both norms ran: "
             "dependence = best minus worst cell's mean final accuracy (diverged = chance). BN and none are "
             "compared without SkipInit (model.skipinit=false) when both ran so; SkipInit variants are their own "
             "populations, reported beside, never pooled. Reproduced: BN's dependence is at most half of none's "
             "and BN's worst cell beats none's worst; not reproduced: BN's dependence is >= none's; inconclusive: "
             "otherwise, or none trains in no cell (> chance + 5 points).")


def init_robustness(runs: pd.DataFrame) -> Verdict:
    claim, title = "init", "BN makes training less dependent on initialization"
    sel, notes = study_runs(runs, "init_sweep")
    keys = [k for k in ("init.name", "init.scale", "init.zero_init_residual") if k in sel and sel[k].nunique() > 1]
    if not _has_norms(sel, ("bn", "none")) or not keys:
        return _missing(claim, title, INIT_RULE, "finished init_sweep runs with norm=bn and norm=none over >= 2 "
                        "init settings", "init_sweep", notes)
    sel = sel.assign(variant=variant_names(sel))
    agg = aggregate(sel, ["variant"] + keys, "final_acc")
    cells = {v: set(map(tuple, g[keys].to_numpy())) for v, g in agg.groupby("variant")}
    pairs = [(f"bn{x}", f"none{x}") for x in ("", SKIPINIT) if {f"bn{x}", f"none{x}"} <= set(cells)]
    pairs = [(b, n) for b, n in pairs if len(cells[b] & cells[n]) >= 2]
    if not pairs:
        return _missing(claim, title, INIT_RULE, ">= 2 init settings run with both bn and none", "init_sweep", notes)
    bn_v, none_v = pairs[0]  # without SkipInit where both ran so
    shared = cells[bn_v] & cells[none_v]
    agg = agg[[tuple(r) in shared for r in agg[keys].to_numpy()]]
    stats = {v: g["mean"] for v, g in agg.groupby("variant")}
    dep = {v: float(s.max() - s.min()) for v, s in stats.items()}
    worst = {v: float(s.min()) for v, s in stats.items()}
    c = float(chance(sel).iloc[0])
    if stats[none_v].max() <= c + 0.05:
        outcome = INCONCLUSIVE
    elif dep[bn_v] >= dep[none_v]:
        outcome = NOT_REPRODUCED
    elif dep[bn_v] <= 0.5 * dep[none_v] and worst[bn_v] > worst[none_v]:
        outcome = REPRODUCED
    else:
        outcome = INCONCLUSIVE
    numbers = agg.assign(acc=_acc_col(agg)).pivot_table(
        index=keys, columns="variant", values="acc", aggfunc="first").reset_index()
    numbers.columns.name = None
    compared = agg[agg.variant.isin([bn_v, none_v])]
    verdict, pre = _decide(outcome, int(compared.n.min()))
    finding = pre + (f"Dependence (best - worst cell): {bn_v} {100 * dep[bn_v]:.1f}, {none_v} "
                     f"{100 * dep[none_v]:.1f} points; worst cell: {bn_v} {_pct(worst[bn_v])}, {none_v} "
                     f"{_pct(worst[none_v])}.")
    others = [v for v in sorted(stats) if v not in (bn_v, none_v)]
    if others:
        finding += " Beside them (not in the verdict): " + "; ".join(
            f"{v} dependence {100 * dep[v]:.1f}, worst {_pct(worst[v])}" for v in others) + "."
    if stats[none_v].max() <= c + 0.05:
        finding += " Without normalization no cell trained above chance: nothing to compare."
    return Verdict(claim, title, verdict, INIT_RULE, finding, numbers, notes=notes)


# ---------------------------------------------------------------- depth

DEPTH_RULE = ("At the deepest depth both norms ran (plain networks without shortcuts where present, else "
              "residual): BN's advantage = BN's minus none's mean final accuracy, with a 95% Welch t-interval. "
              "Reproduced: the advantage is positive beyond the CI and BN loses less accuracy than none from the "
              "shallowest to the deepest net; not reproduced: the advantage is <= 0; inconclusive: otherwise.")


def deep_trainability(runs: pd.DataFrame) -> Verdict:
    claim, title = "depth", "BN makes deep networks trainable"
    sel, notes = study_runs(runs, "depth_sweep")
    if not _has_norms(sel, ("bn", "none")) or sel["model.depth"].nunique() < 2:
        return _missing(claim, title, DEPTH_RULE, "finished depth_sweep runs with norm=bn and norm=none at "
                        ">= 2 depths", "depth_sweep", notes)
    sel = sel.assign(plain=sel["model.plain"].fillna(False).astype(bool) if "model.plain" in sel else False)
    kind = "plain" if _has_norms(sel[sel.plain], ("bn", "none")) else "residual"
    sub = sel[sel.plain == (kind == "plain")]
    depths = sorted(set(sub.loc[sub["norm.name"] == "bn", "model.depth"]) & set(sub.loc[sub["norm.name"] == "none", "model.depth"]))
    if len(depths) < 2:
        return _missing(claim, title, DEPTH_RULE, "bn and none runs at >= 2 shared depths", "depth_sweep", notes)
    shallow, deep = depths[0], depths[-1]
    acc = lambda n, d: sub.loc[(sub["norm.name"] == n) & (sub["model.depth"] == d), "final_acc"]
    adv, h = diff_ci(acc("bn", deep), acc("none", deep))
    loss = {n: acc(n, shallow).mean() - acc(n, deep).mean() for n in ("bn", "none")}
    if adv <= 0:
        outcome = NOT_REPRODUCED
    elif np.isfinite(h) and adv - h > 0 and loss["bn"] < loss["none"]:
        outcome = REPRODUCED
    else:
        outcome = INCONCLUSIVE
    agg = aggregate(sel, ["plain", "model.depth", "norm.name"], "final_acc")
    numbers = agg.assign(network=np.where(agg.plain, "plain", "residual"),
                         acc=_acc_col(agg)).pivot_table(
        index=["network", "model.depth"], columns="norm.name", values="acc", aggfunc="first").reset_index()
    numbers.columns.name = None
    n_min = min(len(acc(n, d)) for n in ("bn", "none") for d in (shallow, deep))
    # the advantage is read at the deepest depth: if neither norm trained there, it says nothing
    verdict, pre = _decide(outcome, n_min, max(acc("bn", deep).mean(), acc("none", deep).mean()),
                           float(chance(sel).iloc[0]))
    finding = pre + (f"{kind.capitalize()} nets at depth {deep}: BN minus none {_points(adv, h)}; accuracy lost from depth "
                     f"{shallow} to {deep}: bn {100 * loss['bn']:.1f}, none {100 * loss['none']:.1f} points.")
    return Verdict(claim, title, verdict, DEPTH_RULE, finding, numbers, notes=notes)


# ---------------------------------------------------------------- inference

INFER_RULE = ("For BN runs, paired over runs: accuracy with running (population) statistics minus accuracy with "
              "the evaluation batch's own statistics, at the smallest evaluation batch size, with a 95% t-interval. "
              "Reproduced: positive beyond the CI (inference must not depend on the batch; Ioffe & Szegedy 2015, "
              "Sec. 3.1); not reproduced: <= 0; inconclusive: otherwise.")


def inference_statistics(runs: pd.DataFrame) -> Verdict:
    from .plots import inference_table

    claim, title = "inference", "Inference with running statistics beats batch statistics at small batches"
    sel, notes = study_runs(runs, "inference")
    long = inference_table(sel[sel.status == "completed"]) if len(sel) else pd.DataFrame()
    if not len(long) or "bn" not in set(long["norm.name"]) or long["mode"].nunique() < 2:
        return _missing(claim, title, INFER_RULE, "completed inference runs with norm=bn logging "
                        "`infer/acc_running.bs{B}` and `infer/acc_batch.bs{B}`", "inference", notes)
    bn = long[long["norm.name"] == "bn"]
    wide = bn.pivot_table(index=["run", "eval_batch"], columns="mode", values="acc").dropna().reset_index()
    if not len(wide):
        return _missing(claim, title, INFER_RULE, "runs with both modes at a shared eval batch size", "inference", notes)
    wide["diff"] = wide.running - wide.batch
    smallest = int(wide.eval_batch.min())
    # the unit of replication is the seed: runs that differ only in norm.momentum train the same
    # weights (momentum only moves the running estimates), so they are averaged, not counted apart
    wide = wide.merge(sel[["run", "seed"]], on="run")
    per_seed = wide[wide.eval_batch == smallest].groupby("seed")["diff"].mean()
    m, h, n = mean_ci(per_seed)
    outcome = NOT_REPRODUCED if m <= 0 else REPRODUCED if np.isfinite(h) and m - h > 0 else INCONCLUSIVE
    by_seed = long.groupby(
        ["norm.name", "eval_batch", "mode", "seed"], as_index=False).acc.mean()
    agg = aggregate(by_seed, ["norm.name", "eval_batch", "mode"], "acc")
    numbers = agg.assign(acc=_acc_col(agg)).pivot_table(
        index=["norm.name", "eval_batch"], columns="mode", values="acc", aggfunc="first").reset_index()
    numbers.columns.name = None
    verdict, pre = _decide(outcome, n, agg["mean"].max(), float(chance(sel).iloc[0]))
    finding = pre + f"At evaluation batch {smallest}: running minus batch statistics {_points(m, h)}."
    if "final.infer/acc_precise" in sel:
        p = mean_ci(sel[sel["norm.name"] == "bn"].groupby("seed")["final.infer/acc_precise"].mean())
        if p[2]:
            finding += f" Precise statistics: {_acc(*p)}."
    return Verdict(claim, title, verdict, INFER_RULE, finding, numbers, notes=notes)


# ---------------------------------------------------------------- intensity shift

SHIFT_RULE = ("Drop = clean minus intensity-shifted test accuracy of the same model: in the nets trained on "
              "clean images where a shift in training was switched on and off (the claim is about a shift "
              "between training and test; a net trained with the shift has seen it), at the largest shift where "
              "its size was swept. Reproduced: BN's drop is smaller than none's beyond the 95% Welch "
              "t-interval of the difference; not reproduced: BN's drop is >= none's; inconclusive: otherwise.")


def _drop_diff(sel: pd.DataFrame) -> tuple[float, float]:
    """None's drop minus BN's (positive: BN drops less), with its Welch half-width."""
    return diff_ci(sel.loc[sel["norm.name"] == "none", "drop"], sel.loc[sel["norm.name"] == "bn", "drop"])


def intensity_robustness(runs: pd.DataFrame) -> Verdict:
    from .plots import is_on_off, shift_column

    claim, title = "intensity_shift", "BN is robust to a shift in input intensity"
    sel, notes = study_runs(runs, "intensity_shift")
    sel = sel[sel.status == "completed"]
    if not _has_norms(sel, ("bn", "none")) or not {"final.test/acc", "final.test_shifted/acc"} <= set(sel):
        return _missing(claim, title, SHIFT_RULE, "completed intensity_shift runs with norm=bn and norm=none "
                        "logging `test/acc` and `test_shifted/acc`", "intensity_shift", notes)
    sel = sel.assign(drop=sel["final.test/acc"] - sel["final.test_shifted/acc"])
    col, aside = shift_column(sel), ""
    if col and is_on_off(sel[col]):
        on = sel[col].astype(bool)
        if (~on).any():
            trained_on = sel[on]
            sel = sel[~on]
            notes.append(f"nets trained on clean images ({col}=false); those trained with the shift are reported "
                         "beside, not in the verdict")
            if _has_norms(trained_on, ("bn", "none")):
                aside = f" Trained with the shift: none's drop minus BN's {_points(*_drop_diff(trained_on))}."
    elif col:
        sel = sel[sel[col] == sel[col].max()]
        notes.append(f"using the largest shift, {col}={sel[col].max():g}")
    d, h = _drop_diff(sel)
    outcome = NOT_REPRODUCED if d <= 0 else REPRODUCED if np.isfinite(h) and d - h > 0 else INCONCLUSIVE
    rows = []
    for norm, g in sel.groupby("norm.name"):
        rows.append({"norm": norm, "clean (%)": _acc(*mean_ci(g["final.test/acc"])),
                     "shifted (%)": _acc(*mean_ci(g["final.test_shifted/acc"])), "drop (points)": _acc(*mean_ci(g["drop"]))})
    n_min = min(int((sel["norm.name"] == n).sum()) for n in ("bn", "none"))
    verdict, pre = _decide(outcome, n_min, sel.groupby("norm.name")["final.test/acc"].mean().max(),
                           float(chance(sel).iloc[0]))
    finding = pre + f"None's drop minus BN's: {_points(d, h)}." + aside
    return Verdict(claim, title, verdict, SHIFT_RULE, finding, pd.DataFrame(rows), notes=notes)
