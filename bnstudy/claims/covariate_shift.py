"""Internal covariate shift. Ioffe & Szegedy (2015, Fig. 1) credit BN with keeping each
layer's input distribution stable over training; Santurkar et al. (2018) find BN nets train as
well with covariate shift injected on purpose (noisy BN, Sec. 2.1), measure ICS through
gradients and find BN does not reduce it (Sec. 2.2), and credit a smoother loss landscape
instead (Sec. 3.1, Fig. 4). Study: covariate_shift (a sigmoid mlp and a ResNet-20, bn / none /
noisy_bn, each at its own best rate from a grid); four checks, each judged within each model
(an mlp's and a ResNet's measures are not one population) and decided where the models agree.
Protocol and rules written 2026-11-29, before any run of this protocol (amendments, each made
before any run of it: results/HISTORY.md).

Protocol: two peak rates per net, the config group bnstudy/conf/covariate_lr/. The ResNet's
{0.05, 0.2} span lr_sweep's best rates (bn's 0.05 is the lower point, none's 0.1 lies between
them; none's largest usable rate per seed was 0.1-0.4), the mlp's {0.2, 0.8} its need for large
ones (at 0.1 for 312 steps its unnormalized arm stayed at chance). A best rate at the edge of the
grid is noted in the report, not a blocker; with 2 points per net every best rate is at an edge,
and the note then says which way a better rate might lie. Each net is trained its own way.
mlp (Ioffe & Szegedy's net: 3 hidden layers of 100 sigmoid units, N(0, 0.01) weights): batch 60
as theirs, all 50,000 training images, no augmentation, no weight decay, 20,000 steps (24
epochs; theirs: 50,000 steps on MNIST; scale=full runs 50,000), test accuracy every 2,000 steps;
probes: activation percentiles every 200 steps (100 points), ICS and landscape every 500 (40
points). resnet20 (Santurkar et al.'s VGG replaced by the harness's ResNet-20): batch 128, a
10,000-image class-balanced subset with the usual crop + flip, weight decay 5e-4, 4 epochs (312
steps), test accuracy at the end of the run at scale=cpu (every epoch at scale=full); activation
percentiles every 25 steps, ICS and landscape every 50. Both: SGD momentum 0.9, linear warmup
over the first 10% of the steps, then linear decay to zero at the end of the run (accuracy read
at the end); 5,000 test images. The noisy-BN check's training accuracy covers the last
trainer.log_every steps: mlp 200 steps = 12,000 images, ResNet 39 = ~5,000.

Limits: the selection bias of choosing each arm's best rate on the seeds that then measure it is
up to ~0.85 sd/sqrt(seeds) when 3 rates tie, ~0.56 when 2 do; the probe measures are read at the
rate chosen by accuracy, so they carry no direct selection on themselves; not corrected.

Deviations: Ioffe & Szegedy trained the sigmoid net on MNIST (28x28 grey digits) for 50,000
steps; here on flattened CIFAR-10 for 20,000 steps (the unnormalized net may end lower than
theirs did on MNIST; the trained precondition says whether it learnt at all). Santurkar et al.
used VGG (and deep linear nets) on CIFAR-10 with longer training; here ResNet-20 for 312 steps.
A 2-point rate grid per net: the mlp's unnormalized arm may want a rate above 0.8, and the
ResNet's BN and noisy-BN arms one below 0.05 (in lr_sweep BN's accuracy fell at every step up
from 0.05): their best rates are then at the grid's edge, noted, and their accuracy may be
understated.
Noisy BN (bnstudy/nets/norms.py, NoisyBatchNorm2d), compared with Santurkar et al. Sec. 2.1 ("we
perturb each activation for each sample in the batch using i.i.d. noise sampled from a non-zero
mean and non-unit variance distribution"; the distribution changes at each time step; its mean
and variance are themselves drawn at random each step, Appendix A): ours draws, anew each step
and per channel (unit), a scale ~ U(1, 1.5) and a shift ~ U(-0.5, 0.5) applied after BN's
normalization and affine map, shared by every example (and every spatial position) of the
batch. So the time-varying, non-zero mean and non-unit variance shift of each unit's
distribution is there (the injected covariate shift), but the per-example i.i.d. noise around
it is not: our noise moves each unit's distribution without widening it within a batch. The
noise magnitudes are ours, not the paper's. In eval mode ours multiplies by the mean scale
(1.25), as inverted dropout does."""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from ..analysis import style as S
from ..analysis.results import (SELECTION_BIAS, at_best_rate, chance, edge_rates, incomplete_cells, study_runs,
                                with_config)
from ..analysis.rules import (INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Effect, Verdict, acc_cell, decide,
                              decision_text, effect_line, has_norms, log2, missing, points, untrained)
from ..analysis.stats import aggregate, difference, fmt_ci, mean_ci

KEY, STUDY, TITLE = "covariate_shift", "covariate_shift", "Internal covariate shift"
STATEMENT = ("BatchNorm works by reducing internal covariate shift: layer input distributions stay stable during "
             "training (Ioffe & Szegedy 2015, Fig. 1). Santurkar et al. (2018) find BN nets train as well with "
             "covariate shift injected on purpose (noisy BN), measure ICS through gradients, find BN does not reduce "
             "it, and credit a smoother loss landscape instead.")
RATE = "optim.lr"
TRAIN_ACC = "final.train/acc"  # training accuracy in train mode over the last trainer.log_every steps
# fixed 2026-11-25 (when every rule was rewritten), after the first cpu covariate_shift runs: a
# measure counts as reduced by BN when none's value is at least 1.5x BN's
RATIO = math.log2(1.5)
DRIFT = Effect("none's activation drift / BN's (geometric mean over seeds)", "ratio", RATIO)
ICS = Effect("none's relative ICS ||G - G'||/||G|| / BN's", "ratio", RATIO)
LANDSCAPE = {"loss range": Effect("none's loss range along the gradient / BN's", "ratio", RATIO),
             "relative gradient predictiveness": Effect(
                 "none's relative gradient predictiveness ||grad L(w - eta g) - g||/||g|| / BN's", "ratio", RATIO)}
# fixed 2026-11-29, before any run of this protocol: noisy BN costs BN less than 2 points (the
# harness's smallest accuracy effect; Santurkar et al. Fig. 2: "almost non-existent")
NOISY = Effect("BN's final training accuracy minus noisy BN's", "points", 2.0, claimed=-1)
# shown beside the noisy-BN rule, information only (no minimum: they decide nothing)
NOISY_TEST = Effect("BN's final test accuracy (eval mode) minus noisy BN's", "points", math.nan)
NOISY_DRIFT = Effect("noisy BN's activation drift / BN's (geometric mean over seeds)", "ratio", math.nan)
# the protocol every check shares (written 2026-11-29, before any run of it)
_PROTOCOL = ("Each arm (model x norm) at its own best peak learning rate: the rate of the grid with the highest mean "
             "final test accuracy over seeds (a diverged run counts as chance; a tie goes to the lower rate); every "
             "measure is read on those runs only. An arm whose mean accuracy at its best rate is within 5 points of "
             "chance did not train: every comparison within its model that uses it is inconclusive, with that reason. "
             "A run that diverged at its arm's best rate is left out of the probe measures (its probes end at the "
             "blow-up) and named; its accuracy still counts as chance (amended before any run of this protocol). "
             + SELECTION_BIAS + " ")
_EACH_MODEL = ("Judged within each model; the verdict is the models' common one, else inconclusive (a verdict that "
               "only one model's runs could judge says so). ")
ACT_RULE = (_PROTOCOL + "Drift of a layer's activation distribution = the range over training of its 15th, 50th and "
            "85th percentiles, averaged, divided by the mean 15-85 spread (scale-free). Layers: those probed in both "
            "nets that are inputs to a nonlinearity, the norm layers' outputs (identity in the unnormalized net), as "
            "in Ioffe & Szegedy; only where no norm layer is probed, every probed output, else every probed layer. "
            "Per run, drift is averaged over layers; effect = mean "
            "log2(drift) of none minus that of BN (Welch t over seeds), shown as a ratio. " + _EACH_MODEL
            + decision_text(DRIFT) + " (Ioffe & Szegedy 2015, Fig. 1b-c.)")
ICS_RULE = (_PROTOCOL + "Santurkar et al. (2018, Def. 2.1) ICS of a layer: the change of its gradient G caused by the "
            "update of the layers before it (in forward order), decided on the relative measure ||G - G'||/||G|| "
            "(BN's gradients are larger, so the absolute ||G - G'|| would read them as more shift; it is shown "
            "beside, with cos(G, G'), and decides nothing). Per run, averaged over probed parameters and steps; "
            "effect = mean log2 of none minus that of BN (Welch t over seeds), shown as a ratio. " + _EACH_MODEL
            + decision_text(ICS) + " Santurkar et al. report that BN does not reduce it.")
LANDSCAPE_RULE = (_PROTOCOL + "Along each gradient step (Santurkar et al. 2018, Sec. 3.1), averaged over training: the "
                  "loss range max - min over the step sizes, and the gradient predictiveness relative to the "
                  "gradient, max ||grad L(w - eta g) - g||/||g|| (effective beta-smoothness shown beside; its units "
                  "depend on the parametrization). Effect per measure = mean log2 of none minus that of BN (Welch t "
                  "over seeds), shown as a ratio. Reproduced: both measures' intervals lie above 1.5x; not "
                  "reproduced: one lies below; inconclusive: otherwise, or an arm did not train. " + _EACH_MODEL)
NOISY_RULE = (_PROTOCOL + "Santurkar et al. (2018, Sec. 2.1, Fig. 2): a BN net with noise injected after each BN "
              "layer (a random per-unit scale and shift, drawn anew every step: covariate shift on purpose) still "
              "performs about as well as plain BN in terms of training. Effect = mean final training accuracy "
              "(train mode, noise on, over the last trainer.log_every steps, `train/acc`; a diverged run counts as "
              "chance) of bn minus that of noisy_bn, each at its own best rate by that training accuracy (amended "
              "2026-11-29 before any run of this protocol: first by test accuracy), in points (Welch t over seeds); the "
              "claim is that it stays below +2 points. Both must have trained, judged on that training accuracy "
              "(noisy BN's eval mode replaces the noise by its mean, an approximation that is not the claim's "
              "object). " + _EACH_MODEL + decision_text(NOISY) + " Beside it, information only: the same difference "
              "in final test accuracy (eval mode), and noisy BN's activation drift over BN's, which shows whether the "
              "noise injected visible shift.")


def best_rate_runs(sel: pd.DataFrame) -> pd.DataFrame:
    """Each (model, norm) arm's runs at its own best rate (the rule's selection); runs without a
    recorded rate are kept as they are."""
    if RATE not in sel or sel[RATE].isna().all() or not len(sel):
        return sel
    by = [c for c in ("model.name", "norm.name") if c in sel]
    return at_best_rate(sel, by, RATE)


def measured_runs(best: pd.DataFrame) -> pd.Series:
    """The runs whose probes the checks read: those of `best` that completed (a diverged run's
    probes end at its blow-up)."""
    return best.run[best.status == "completed"]


def rate_notes(sel: pd.DataFrame, best: pd.DataFrame) -> list[str]:
    """'best peak rates: mlp bn 0.2, ...' and the arms whose best rate sits at an edge of the grid."""
    if RATE not in best or best[RATE].isna().all() or not len(best):
        return []
    models = lambda d: d.assign(_model=d["model.name"] if "model.name" in d else "")  # noqa: E731
    arms = models(best).groupby(["_model", "norm.name"])[RATE].first()
    out = ["best peak rates: " + ", ".join(f"{m} {n} {r:g}".strip() for (m, n), r in arms.items())]
    return (out + edge_rates(models(sel), models(best), ["_model", "norm.name"], RATE)
            + incomplete_cells(models(sel), ["_model", "norm.name"], RATE, within=["_model"]))


def _study(runs: pd.DataFrame, curves: pd.DataFrame, by_training: bool = False):
    """(the best-rate runs, their curves with config columns, notes). `by_training`: each arm's
    best rate by its final training accuracy (noise on; a diverged run as chance), kept in
    final_acc, with the test accuracy in `test_acc` (the noisy-BN check)."""
    sel, notes = study_runs(runs, STUDY)
    if by_training and TRAIN_ACC in sel:
        train = pd.to_numeric(sel[TRAIN_ACC], errors="coerce").where(sel.status == "completed", chance(sel))
        sel = sel.copy().assign(test_acc=sel.final_acc, final_acc=train)  # copy: a defragmented frame
        notes.append("each arm's best rate chosen by its final training accuracy (this check's measure)")
    best = best_rate_runs(sel)
    notes += rate_notes(sel, best)
    # a diverged run's probes end at its blow-up: they would measure that, not the claim
    blown = best[best.status != "completed"] if len(best) else best
    if len(blown):
        notes.append(f"{len(blown)} run(s) at their arm's best rate diverged: left out of the probe measures, their "
                     "accuracy counted as chance: " + ", ".join(map(str, blown.run)))
    c = curves[curves.run.isin(measured_runs(best))] if len(best) else curves.iloc[0:0]
    probed = set(c.run[c.metric.str.startswith(("act/", "ics/", "landscape/"))]) if len(c) else set()
    unprobed = [r for r in measured_runs(best) if r not in probed]
    if len(unprobed) and len(probed):
        notes.append(f"{len(unprobed)} completed run(s) at their arm's best rate have no probe rows (probes.csv "
                     "missing or unreadable): left out of the probe measures: " + ", ".join(map(str, unprobed)))
    cols = ["norm.name", "seed"] + (["model.name"] if "model.name" in best else [])
    return best, with_config(c, best, cols), notes


def _arm_name(m: pd.DataFrame, norm: str, model: str) -> str:
    rate = m.loc[m["norm.name"] == norm, RATE] if RATE in m else pd.Series(dtype=float)
    where = ", ".join(p for p in (model, f"its best rate {rate.iloc[0]:g}" if len(rate.dropna()) else "") if p)
    return f"{norm} ({where})" if where else norm


def _label(model: str, measure: str = "") -> str:
    """A per-model estimate's label in numbers.csv: 'model=mlp', 'model=mlp; measure=loss range'."""
    return "; ".join(p for p in (f"model={model}" if model else "", f"measure={measure}" if measure else "") if p) \
        or "all runs"


def judge_by_model(sel: pd.DataFrame, per_run: dict[str, pd.DataFrame], effects: dict[str, Effect],
                   arms: tuple[str, str] = ("none", "bn"), scale: Callable = log2):
    """Decide each measure (per_run: run, norm.name, value) within each model: effect =
    mean scale(value) of arms[0] minus that of arms[1]; a model's verdict is reproduced when all
    its measures are, not reproduced when one is; the models' common verdict, else inconclusive.
    Both arms must have trained (`sel` holds the runs the measures come from). Returns
    (verdict, finding, numbers, estimates): estimates holds each model's effect per measure as
    (label, Effect, Estimate), labelled "model=mlp" (and "; measure=..." where there are several),
    for Verdict.estimates. A table of accuracies (scale=points) is in percent."""
    models = sel.groupby("model.name").run if "model.name" in sel else [("", sel.run)]
    c = float(chance(sel).iloc[0]) if len(sel) else 0.1
    first, second = arms
    outcomes, lines, rows, judged, estimates = [], [], [], [], []
    shown = ((lambda v: acc_cell(*mean_ci(v))) if scale is points  # noqa: E731
             else (lambda v: fmt_ci(*mean_ci(v), digits=4)))
    for model, ids in models:
        m = sel[sel.run.isin(ids)]
        blockers = untrained({_arm_name(m, n, model): m.loc[m["norm.name"] == n, "final_acc"] for n in arms}, c)
        decided, parts, reasons = [], [], []
        for name, df in per_run.items():
            d = df[df.run.isin(ids)]
            a, b = d.loc[d["norm.name"] == first, "value"], d.loc[d["norm.name"] == second, "value"]
            if not len(a) or not len(b):
                continue
            est = difference(scale(a), scale(b))
            v, reason = decide(est, effects[name], blockers)
            decided.append(v)
            reasons.append(reason)
            estimates.append((_label(model, name if len(per_run) > 1 else ""), effects[name], est))
            parts.append(effect_line(effects[name], est) + (f" [{v}]" if len(per_run) > 1 else ""))
            for norm, vals in ((second, b), (first, a)):
                rows.append({"model": model, "measure": name, "norm": norm, "value": shown(vals)})
        if not decided:
            if not all((m["norm.name"] == n).any() for n in arms):
                continue  # no runs of one arm in this model: nothing to judge here
            # both arms ran but no measure came from completed runs of both (e.g. one arm diverged
            # on every seed): that model's comparison is blocked, not absent
            why = "; ".join(blockers) or "no measure from completed runs of both arms at their best rates"
            outcomes.append(INCONCLUSIVE)
            judged.append(model)
            lines.append((f"{model}: " if model else "") + f"not measured — {INCONCLUSIVE} ({why})")
            continue
        outcome = (REPRODUCED if all(v == REPRODUCED for v in decided) else
                   NOT_REPRODUCED if NOT_REPRODUCED in decided else INCONCLUSIVE)
        outcomes.append(outcome)
        judged.append(model)
        reason = "; ".join(dict.fromkeys(r for r in reasons if r)) if outcome == INCONCLUSIVE else ""
        lines.append((f"{model}: " if model else "") + "; ".join(parts) + f" — {outcome}"
                     + (f" ({reason})" if reason else ""))
    numbers = pd.DataFrame(rows)
    if len(numbers):
        numbers = numbers.pivot_table(index=["model", "measure"], columns="norm", values="value",
                                      aggfunc="first").reset_index()
        numbers.columns.name = None
    verdict = outcomes[0] if outcomes and len(set(outcomes)) == 1 else INCONCLUSIVE
    finding = ". ".join(lines) + "." if lines else ""
    if len(set(outcomes)) > 1:
        finding += " The models disagree: inconclusive."
    if len(judged) == 1 and judged[0]:
        finding += (f" Judged on the {judged[0]} alone: no other net has runs of both arms here, so this is one "
                    "model's verdict, not two agreeing.")
    return verdict, finding, numbers, estimates


# ---------------------------------------------------------------- activation drift (Ioffe & Szegedy, Fig. 1)


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


def check_activations(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    claim, title = "ics_activations", "BN keeps activation distributions stable during training"
    sel, c, notes = _study(runs, curves)
    act = _act_table(c, "act") if len(c) else c
    if len(act):
        act = act[act.stat.isin(["p15", "p50", "p85"])]
    if not len(act) or not has_norms(act, ("bn", "none")):
        return missing(claim, title, ACT_RULE, "covariate_shift runs with norm=bn and norm=none and activation "
                       "probes (`act/*.p15|p50|p85` rows in probes.csv)", STUDY, notes)
    layers = choose_layers({n: set(act.loc[act["norm.name"] == n, "layer"]) for n in ("bn", "none")}, k=10 ** 6)
    drift = activation_drift(act[act.layer.isin(layers)]).merge(sel[["run", "norm.name"]], on="run")
    if not len(drift):
        return missing(claim, title, ACT_RULE, "activation probes at >= 2 steps per run", STUDY, notes)
    per_run = drift.groupby(["run", "norm.name"], as_index=False).drift.mean().rename(columns={"drift": "value"})
    verdict, finding, _, estimates = judge_by_model(sel, {"activation drift": per_run}, {"activation drift": DRIFT})
    by_layer = aggregate(drift, ["layer", "norm.name"], "drift")
    wide = by_layer.pivot(index="layer", columns="norm.name", values="mean")
    if {"bn", "none"} <= set(wide.columns):
        finding += (f" Beside the rule: BN's mean drift is smaller at {int((wide.bn < wide.none).sum())} of "
                    f"{len(wide)} layers.")
    numbers = by_layer.assign(drift=[fmt_ci(m, h, n) for m, h, n in zip(by_layer["mean"], by_layer.ci, by_layer.n)]).pivot(
        index="layer", columns="norm.name", values="drift").reset_index()
    numbers.columns.name = None
    return Verdict(claim, title, verdict, ACT_RULE, finding, numbers, notes=notes, estimates=estimates)


# ---------------------------------------------------------------- gradient ICS (Santurkar et al., Def. 2.1)


def _param_rows(c: pd.DataFrame, prefix: str, stat: str) -> pd.DataFrame:
    """`{prefix}/{param}.{stat}` rows as (run, norm.name, step, param, value)."""
    r = c[c.metric.str.startswith(prefix + "/") & c.metric.str.endswith("." + stat)]
    return r.assign(param=r.metric.str[len(prefix) + 1:-len(stat) - 1])[["run", "norm.name", "step", "param", "value"]]


def relative_ics(c: pd.DataFrame) -> pd.DataFrame:
    """Per (run, step, param): ||G - G'||/||G||, logged (`ics/*.rel`) or, for runs made before it was,
    from `ics/*.l2` and the gradients probe's ||G|| (`grad/*.norm`) at the same step."""
    rel = _param_rows(c, "ics", "rel")
    if len(rel):
        return rel
    l2, g = _param_rows(c, "ics", "l2"), _param_rows(c, "grad", "norm")
    m = l2.merge(g[["run", "step", "param", "value"]], on=["run", "step", "param"], suffixes=("", "_g"))
    return m.assign(value=m.value / m.value_g.where(m.value_g > 0))[["run", "norm.name", "step", "param", "value"]]


def _per_run(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.groupby(["run", "norm.name"], as_index=False).value.mean()


def _means_by_model(per_run: pd.DataFrame, sel: pd.DataFrame, name: str) -> list[str]:
    """'{model} {name}: bn x, none y' per model: a measure shown beside a rule, in its own units."""
    models = sel[["run", "model.name"]] if "model.name" in sel else sel[["run"]].assign(**{"model.name": ""})
    out = []
    for model, g in per_run.merge(models, on="run").groupby("model.name"):
        m = {n: g.loc[g["norm.name"] == n, "value"].mean() for n in ("bn", "none")}
        out.append(f"{model} {name}".strip() + f": bn {m['bn']:.4g}, none {m['none']:.4g}")
    return out


def check_gradients(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    claim, title = "ics_gradients", "BN reduces internal covariate shift (Santurkar et al.'s measure)"
    sel, c, notes = _study(runs, curves)
    rel = relative_ics(c) if len(c) else c
    if not len(rel) or not has_norms(rel, ("bn", "none")):
        return missing(claim, title, ICS_RULE, "covariate_shift runs with norm=bn and norm=none, the ICS probe "
                       "(`ics/*` rows) and its relative measure (`ics/*.rel`, or the gradients probe at the same "
                       "steps)", STUDY, notes)
    if not (c.metric.str.startswith("ics/") & c.metric.str.endswith(".rel")).any():
        notes.append("||G|| read from the gradients probe at the ICS steps (runs made before `ics/*.rel` was logged)")
    verdict, finding, numbers, estimates = judge_by_model(sel, {"relative ICS": _per_run(rel)},
                                                          {"relative ICS": ICS})
    aside = [line for stat, name in (("l2", "||G - G'||"), ("cos", "cos(G, G')"))
             for line in _means_by_model(_per_run(_param_rows(c, "ics", stat)), sel, name)]
    if aside:
        finding += " Beside the rule (absolute units): " + "; ".join(aside) + "."
    return Verdict(claim, title, verdict, ICS_RULE, finding, numbers, notes=notes, estimates=estimates)


# ---------------------------------------------------------------- loss landscape (Santurkar et al., Sec. 3.1)


def with_relative_grad_pred(c: pd.DataFrame) -> pd.DataFrame:
    """The curves with `landscape/grad_pred_rel` rows: logged, or for runs made before it was,
    grad_pred over the total ||g|| of the gradients probe at the same step."""
    if (c.metric == "landscape/grad_pred_rel").any() or not (c.metric == "landscape/grad_pred").any():
        return c
    g = _param_rows(c, "grad", "norm")
    total = np.sqrt((g.value ** 2).groupby([g.run, g.step]).sum()).rename("g").reset_index()
    gp = c[c.metric == "landscape/grad_pred"].merge(total, on=["run", "step"])
    return pd.concat([c, gp.assign(metric="landscape/grad_pred_rel", value=gp.value / gp.g).drop(columns="g")],
                     ignore_index=True)


def landscape_measures(c: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per run: the mean loss range and relative gradient predictiveness over the probed steps."""
    c = with_relative_grad_pred(c)
    ls = c[c.metric.str.startswith("landscape/")]
    if not len(ls):
        return {}
    wide = ls.pivot_table(index=["run", "norm.name", "step"], columns="metric", values="value").reset_index()
    out = {}
    if {"landscape/loss_max", "landscape/loss_min"} <= set(wide.columns):
        out["loss range"] = _per_run(wide.assign(value=wide["landscape/loss_max"] - wide["landscape/loss_min"]))
    if "landscape/grad_pred_rel" in wide:
        out["relative gradient predictiveness"] = _per_run(wide.assign(value=wide["landscape/grad_pred_rel"]))
    return out


def check_landscape(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    claim, title = "landscape", "BN makes the loss landscape smoother"
    sel, c, notes = _study(runs, curves)
    per = landscape_measures(c) if len(c) else {}
    if len(per) < 2 or not all(has_norms(v, ("bn", "none")) for v in per.values()):
        return missing(claim, title, LANDSCAPE_RULE, "covariate_shift runs with norm=bn and norm=none and the "
                       "landscape probe (`landscape/*` rows), with `landscape/grad_pred_rel` or the gradients probe "
                       "at the same steps", STUDY, notes)
    if "landscape/grad_pred_rel" not in set(c.metric):
        notes.append("||g|| read from the gradients probe at the landscape steps (runs made before "
                     "`landscape/grad_pred_rel` was logged)")
    verdict, finding, numbers, estimates = judge_by_model(sel, per, LANDSCAPE)
    beta = c[c.metric == "landscape/beta_smooth"]
    if len(beta):
        finding += (" Beside the rule, effective beta-smoothness: "
                    + "; ".join(_means_by_model(_per_run(beta), sel, "")) + ".")
    return Verdict(claim, title, verdict, LANDSCAPE_RULE, finding, numbers, notes=notes, estimates=estimates)


# ---------------------------------------------------------------- noisy BN (Santurkar et al., Sec. 2.1)


def check_noisy_bn(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    claim, title = "noisy_bn", "BN nets train as well with covariate shift injected (noisy BN)"
    sel, c, notes = _study(runs, curves, by_training=True)  # final_acc: training accuracy, noise on
    if not has_norms(sel, ("bn", "noisy_bn")) or TRAIN_ACC not in sel:
        return missing(claim, title, NOISY_RULE, f"covariate_shift runs with norm=bn and norm=noisy_bn logging "
                       f"`{TRAIN_ACC[len('final.'):]}`", STUDY, notes)
    acc = sel.assign(value=sel.final_acc)[["run", "norm.name", "value"]]
    verdict, finding, numbers, estimates = judge_by_model(
        sel, {"final training accuracy": acc}, {"final training accuracy": NOISY}, arms=("bn", "noisy_bn"), scale=points)
    test = sel.assign(value=sel.test_acc)[["run", "norm.name", "value"]]
    aside = []
    for model, g in (sel.groupby("model.name") if "model.name" in sel else [("", sel)]):
        t = test[test.run.isin(g.run)]
        d = difference(points(t.loc[t["norm.name"] == "bn", "value"]), points(t.loc[t["norm.name"] == "noisy_bn", "value"]))
        aside.append(f"{model} {NOISY_TEST.fmt_pm(d)}".strip())
        estimates.append((_label(model, "final test accuracy"), NOISY_TEST, d))
    finding += (" Beside the rule, final test accuracy (eval mode: noisy BN's noise replaced by its mean), BN's minus "
                "noisy BN's: " + "; ".join(aside) + ".")
    act = _act_table(c, "act") if len(c) else c
    if len(act) and has_norms(act, ("bn", "noisy_bn")):
        act = act[act.stat.isin(["p15", "p50", "p85"])]
        layers = choose_layers({n: set(act.loc[act["norm.name"] == n, "layer"]) for n in ("bn", "noisy_bn")},
                               k=10 ** 6)
        drift = activation_drift(act[act.layer.isin(layers)]).merge(sel[["run", "norm.name"]], on="run")
        per_run = drift.groupby(["run", "norm.name"], as_index=False).drift.mean()
        models = sel[["run", "model.name"]] if "model.name" in sel else sel[["run"]].assign(**{"model.name": ""})
        aside = []
        for model, g in per_run.merge(models, on="run").groupby("model.name"):
            a, b = g.loc[g["norm.name"] == "noisy_bn", "drift"], g.loc[g["norm.name"] == "bn", "drift"]
            if len(a) and len(b):
                est = difference(log2(a), log2(b))
                aside.append(f"{model} noisy BN's drift / BN's ".lstrip() + NOISY_DRIFT.fmt(est.value)
                             + (f" (95% interval [{NOISY_DRIFT.fmt(est.lo)}, {NOISY_DRIFT.fmt(est.hi)}])"
                                if est.has_interval else ""))
                estimates.append((_label(model, "activation drift"), NOISY_DRIFT, est))
        if aside:
            finding += " Beside the rule, the injected shift: " + "; ".join(aside) + "."
    return Verdict(claim, title, verdict, NOISY_RULE, finding, numbers, notes=notes, estimates=estimates)


# ---------------------------------------------------------------- figures


def _act_table(curves: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Rows `act/...` or `hist/...` split into layer (module.in|out) and stat columns."""
    rows = curves[curves.metric.str.startswith(kind + "/")].copy()
    if not len(rows):
        return rows.assign(layer=[], stat=[])
    parts = rows.metric.str[len(kind) + 1:].str.rsplit(".", n=1, expand=True)
    rows["layer"], rows["stat"] = parts[0], parts[1]
    return rows


def _per_model(curves: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(title prefix, rows) for each net: the mlp trains 20,000 steps and the ResNet 312, so each
    gets its own row of panels rather than one step axis; one net, one row with no prefix."""
    if "model.name" not in curves or curves["model.name"].nunique() <= 1:
        return [("", curves)]
    return [(f"{m}: ", g) for m, g in curves.groupby("model.name", sort=True)]


def choose_layers(layers_by_norm: dict[str, set], k: int = 3) -> list[str]:
    """Up to k probed layers present for every norm, spread over depth; the input to a
    nonlinearity (a norm layer's output, identity in the unnormalized net) first, as in Ioffe & Szegedy."""
    common = sorted(set.intersection(*layers_by_norm.values())) if layers_by_norm else []
    for pick in (lambda l: "norm" in l and l.endswith(".out"), lambda l: l.endswith(".out"), lambda l: True):
        chosen = [l for l in common if pick(l)]
        if chosen:
            return S.spread_pick(chosen, k)
    return []


@S.figure
def activation_percentiles(curves: pd.DataFrame, layers: Optional[Sequence[str]] = None) -> Figure:
    """15th/50th/85th activation percentiles over training, per layer, with and without BN
    (in the style of Ioffe & Szegedy 2015, Fig. 1b-c)."""
    S.need(curves, ["norm.name", "metric"], "activation percentiles")
    act = _act_table(curves, "act")
    act = act[act.stat.isin(["p15", "p50", "p85"])]
    if not len(act):
        raise S.NotDrawn("activation percentiles: no act/*.p15|p50|p85 probe rows")
    norms = S.norms_of(act)
    rows = []  # (title prefix, that net's rows, layer): each net's own layers
    for prefix, a in _per_model(act):
        picked = list(layers) if layers else choose_layers({n: set(a.loc[a["norm.name"] == n, "layer"])
                                                            for n in S.norms_of(a)})
        rows += [(prefix, a, layer) for layer in picked]
    if not rows:
        raise S.NotDrawn("activation percentiles: no probed layer common to every norm")
    fig = Figure(figsize=(2.9 * len(norms) + 0.4, 2.2 * len(rows) + 0.8), layout="constrained")
    axes = fig.subplots(len(rows), len(norms), squeeze=False, sharex="row")
    shades = {"p15": "C9", "p50": "C1", "p85": "C6"}
    for i, (prefix, a, layer) in enumerate(rows):
        for j, norm in enumerate(norms):
            ax = axes[i, j]
            sub = a[(a.layer == layer) & (a["norm.name"] == norm)]
            for stat in ("p85", "p50", "p15"):
                s = sub[sub.stat == stat]
                if len(s):
                    S.line_ci(ax, aggregate(s, ["step"], "value"), "step", shades[stat],
                             f"{stat[1:]}th percentile")
            ax.set_title(f"{prefix}{S.label(norm)}: {layer}", fontsize=8)
            if j == 0:
                ax.set_ylabel("activation value")
    for ax in axes[-1]:
        ax.set_xlabel("step (SGD updates)")
    S.legend_outside(fig, axes)
    fig.suptitle("Activation distribution over training (15th, 50th, 85th percentiles)")
    return fig


def hist_edges(n_bins: int, half_range: float) -> np.ndarray:
    """Bin edges of the probes' fixed histograms: n_bins equal bins over [-half_range, half_range]
    (the end bins also hold the tails)."""
    return np.linspace(-half_range, half_range, n_bins + 1)


@S.figure
def activation_histograms(curves: pd.DataFrame, layer: Optional[str] = None) -> Figure:
    """Histograms of one layer's activations over training, one panel per norm."""
    S.need(curves, ["norm.name", "metric"], "activation histograms")
    h = _act_table(curves, "hist")
    if not len(h):
        raise S.NotDrawn("activation histograms: no hist/* probe rows")
    h["bin"] = pd.to_numeric(h.stat.str.removeprefix("bin"), errors="coerce")
    norms = S.norms_of(h)
    rows = []  # (title prefix, that net's rows of its layer): each net its own layer
    for prefix, g in _per_model(h):
        picked = layer or (choose_layers({n: set(g.loc[g["norm.name"] == n, "layer"]) for n in S.norms_of(g)},
                                         k=3) or [None])[-1]
        if picked is not None and (g.layer == picked).any():
            rows.append((prefix, g[g.layer == picked]))
    if not rows:
        raise S.NotDrawn("activation histograms: no probed layer common to every norm")
    h = pd.concat([g for _, g in rows])
    n_bins = int(h.bin.max()) + 1
    half = float(h["probes.activations.hist_range"].dropna().iloc[0]) \
        if "probes.activations.hist_range" in h and h["probes.activations.hist_range"].notna().any() else 5.0
    edges = hist_edges(n_bins, half)
    fig = Figure(figsize=(3.4 * len(norms) + 0.8, 3.2 * len(rows)), layout="constrained")
    grid_axes = fig.subplots(len(rows), len(norms), squeeze=False, sharey=True)
    mesh = None
    # counts -> fractions per (run, step), then mean over seeds; one colour scale for all panels
    frac = lambda d: d.assign(frac=d.value / d.groupby(["run", "step"]).value.transform("sum"))  # noqa: E731
    rows = [(prefix, frac(g)) for prefix, g in rows]
    vmax = max(float(g.groupby(["norm.name", "step", "bin"]).frac.mean().max()) for _, g in rows)
    for axes, (prefix, g) in zip(grid_axes, rows):
        for ax, norm in zip(axes, norms):
            sub = g[g["norm.name"] == norm]
            ax.grid(False)
            if not len(sub):
                continue
            grid = sub.groupby(["step", "bin"]).frac.mean().unstack("bin").reindex(columns=range(n_bins)).fillna(0)
            steps = grid.index.to_numpy(float)
            step_edges = np.concatenate([[steps[0] - (steps[1] - steps[0]) / 2 if len(steps) > 1 else steps[0] - 0.5],
                                         (steps[1:] + steps[:-1]) / 2,
                                         [steps[-1] + (steps[-1] - steps[-2]) / 2 if len(steps) > 1
                                          else steps[-1] + 0.5]])
            mesh = ax.pcolormesh(step_edges, edges, grid.to_numpy().T, cmap="viridis",
                                 norm=PowerNorm(0.5, vmin=0, vmax=vmax), shading="flat")
            ax.set_title(f"{prefix}{S.label(norm)}: {sub.layer.iloc[0]}", fontsize=8)
            ax.set_xlabel("step (SGD updates)")
        axes[0].set_ylabel(f"activation value (end bins include |x| > {half:g})")
    if mesh is not None:
        fig.colorbar(mesh, ax=list(grid_axes.ravel()), label="fraction of activations (sqrt scale)")
    fig.suptitle("Activation histograms over training")
    return fig


def _per_param_mean(curves: pd.DataFrame, prefix: str, stat: str) -> pd.DataFrame:
    """`{prefix}/{param}.{stat}` rows averaged over parameters: one value per (run, step)."""
    rows = curves[curves.metric.str.startswith(prefix + "/") & curves.metric.str.endswith("." + stat)]
    keys = [c for c in ("run", "step", "norm.name") if c in rows]
    return rows.groupby(keys, as_index=False).value.mean()


@S.figure
def internal_covariate_shift(curves: pd.DataFrame) -> Figure:
    """Santurkar et al. (2018) ICS over training, per norm: ||G - G'||/||G|| (the rule's measure)
    and cos(G, G')."""
    S.need(curves, ["norm.name", "metric"], "internal covariate shift")
    rows = []
    for prefix, c in _per_model(curves):
        rel = relative_ics(c)
        l2 = rel.groupby(["run", "step", "norm.name"], as_index=False).value.mean() if len(rel) else rel
        cos = _per_param_mean(c, "ics", "cos")
        if len(l2) or len(cos):
            rows.append((prefix, l2, cos))
    if not rows:
        raise S.NotDrawn("internal covariate shift: no ics/* probe rows")
    fig = Figure(figsize=(8.0, 3.2 * len(rows)), layout="constrained")
    grid = fig.subplots(len(rows), 2, squeeze=False, sharex="row")
    for axes, (prefix, l2, cos) in zip(grid, rows):
        for ax, df, ylabel in ((axes[0], l2, "‖G − G′‖ / ‖G‖ (log scale)"), (axes[1], cos, "cos(G, G′)")):
            for norm in S.norms_of(df) if len(df) else []:
                S.line_ci(ax, aggregate(df[df["norm.name"] == norm], ["step"], "value"), "step", S.color(norm),
                          S.label(norm))
            ax.set_xlabel("step (SGD updates)")
            ax.set_ylabel(ylabel)
        if len(l2):
            S.log10_axis(axes[0], "y", subs=(1.0, 2.0, 5.0))
        axes[0].set_title(f"{prefix}relative gradient change from updating earlier layers (lower: less ICS)",
                          fontsize=8)
        axes[1].set_title(f"{prefix}direction agreement (higher: less ICS)", fontsize=8)
    S.legend_outside(fig, grid)
    fig.suptitle("Internal covariate shift (Santurkar et al. 2018), mean over probed parameters")
    return fig


@S.figure
def loss_landscape(curves: pd.DataFrame) -> Figure:
    """Loss range along the gradient, gradient predictiveness and beta-smoothness over training."""
    S.need(curves, ["norm.name", "metric"], "loss landscape")
    curves = with_relative_grad_pred(curves)
    ls = curves[curves.metric.str.startswith("landscape/")]
    if not len(ls):
        raise S.NotDrawn("loss landscape: no landscape/* probe rows")
    rows = _per_model(ls)
    fig = Figure(figsize=(10.5, 3.2 * len(rows)), layout="constrained")
    grid = fig.subplots(len(rows), 3, squeeze=False, sharex="row")
    for axes, (prefix, m_ls) in zip(grid, rows):
        for norm in S.norms_of(m_ls):
            sub = m_ls[m_ls["norm.name"] == norm]
            lo = aggregate(sub[sub.metric == "landscape/loss_min"], ["step"], "value")
            hi = aggregate(sub[sub.metric == "landscape/loss_max"], ["step"], "value")
            if len(lo) and len(hi):
                band = lo.merge(hi, on="step", suffixes=("_lo", "_hi"))
                axes[0].fill_between(band.step, band.mean_lo, band.mean_hi, color=S.color(norm), alpha=0.3,
                                     label=S.label(norm))
            for ax, m in ((axes[1], "landscape/grad_pred_rel"), (axes[2], "landscape/beta_smooth")):
                a = aggregate(sub[sub.metric == m], ["step"], "value")
                if len(a):
                    S.line_ci(ax, a, "step", S.color(norm), S.label(norm))
        axes[0].set_ylabel("training loss (cross-entropy)")
        axes[1].set_ylabel("‖∇L(x) − ∇L(x − ηg)‖ / ‖g‖ (log scale)")
        axes[2].set_ylabel("effective β (log scale)")
        axes[0].set_title(f"{prefix}loss range along the gradient step", fontsize=9)
        axes[1].set_title(f"{prefix}relative gradient predictiveness (lower: better)", fontsize=9)
        axes[2].set_title(f"{prefix}β-smoothness (lower: smoother)", fontsize=9)
        for ax in axes:
            ax.set_xlabel("step (SGD updates)")
        for ax in axes[1:]:
            if ax.has_data():
                S.log10_axis(ax, "y", subs=(1.0, 2.0, 5.0))
    S.legend_outside(fig, grid)
    fig.suptitle("Loss landscape along the training trajectory (Santurkar et al. 2018, Fig. 4)")
    return fig


def best_rate_curves(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """The curves (config columns attached, as the report passes them) of the runs the rules
    read: each arm at its best rate, without the runs that diverged there (as the checks)."""
    return curves[curves.run.isin(measured_runs(best_rate_runs(runs)))]


CHECKS = [check_activations, check_gradients, check_landscape, check_noisy_bn]
FIGURES = {
    "activation_percentiles": (lambda runs, curves, v: activation_percentiles(best_rate_curves(runs, curves)),
                               "15th/50th/85th activation percentiles over training, each arm at its best rate "
                               "(Ioffe & Szegedy 2015, Fig. 1 style)."),
    "activation_histograms": (lambda runs, curves, v: activation_histograms(best_rate_curves(runs, curves)),
                              "Activation histograms over training, each arm at its best rate."),
    "internal_covariate_shift": (lambda runs, curves, v: internal_covariate_shift(best_rate_curves(runs, curves)),
                                 "Santurkar et al. ICS: gradient change from updating earlier layers, relative to "
                                 "||G|| (the rule's measure) and as cos(G, G'), each arm at its best rate."),
    "loss_landscape": (lambda runs, curves, v: loss_landscape(best_rate_curves(runs, curves)),
                       "Loss range, relative gradient predictiveness and β-smoothness along the gradient, each arm "
                       "at its best rate."),
}
