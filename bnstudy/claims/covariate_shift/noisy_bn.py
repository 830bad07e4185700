"""Noisy BN (Santurkar et al. 2018, Sec. 2.1, Fig. 2): BN nets with covariate shift injected on
purpose train as well as BN. Its check."""
from __future__ import annotations

import math

import pandas as pd

from ...analysis.cells import EDGE_RULE
from ...analysis.rules import decision_text, Effect, has_norms, log2, missing, points, Verdict
from ...analysis.stats import difference
from .activations import activation_drift, choose_layers, drift_by_run
from .common import EACH_MODEL, PROTOCOL, STUDY, TRAIN_ACC, act_table, estimate_label, judge_by_model, read_study

# fixed 2026-11-29, before any run of this protocol: noisy BN costs BN less than 2 points (the
# harness's smallest accuracy effect; Santurkar et al. Fig. 2: "almost non-existent")
NOISY = Effect("BN's final training accuracy minus noisy BN's", "points", 2.0, claimed=-1)

# shown beside the noisy-BN rule, information only (no minimum: they decide nothing)
NOISY_TEST = Effect("BN's final test accuracy (eval mode) minus noisy BN's", "points", math.nan)

NOISY_DRIFT = Effect("noisy BN's activation drift / BN's (geometric mean over seeds)", "ratio", math.nan)

NOISY_RULE = (PROTOCOL + "Santurkar et al. (2018, Sec. 2.1, Fig. 2): a BN net with noise injected after each BN "
              "layer (a random per-unit scale and shift, drawn anew every step: covariate shift on purpose) still "
              "performs about as well as plain BN in terms of training. Effect = mean final training accuracy "
              "(train mode, noise on, over the last trainer.log_every steps, `train/acc`; a diverged run counts as "
              "chance) of bn minus that of noisy_bn, each at its own best rate by that training accuracy (amended "
              "2026-11-29 before any run of this protocol: first by test accuracy), in points (Welch t over seeds); the "
              "claim is that it stays below +2 points. Both must have trained, judged on that training accuracy "
              "(noisy BN's eval mode replaces the noise by its mean, an approximation that is not the claim's "
              "object). " + EACH_MODEL + decision_text(NOISY) + " Beside it, information only: the same difference "
              "in final test accuracy (eval mode), and noisy BN's activation drift over BN's, which shows whether the "
              "noise injected visible shift. " + EDGE_RULE)


def check_noisy_bn(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    claim, title = "noisy_bn", "BN nets train as well with covariate shift injected (noisy BN)"
    sel, c, notes = read_study(runs, curves, by_training=True)  # final_acc: training accuracy, noise on
    if not has_norms(sel, ("bn", "noisy_bn")) or TRAIN_ACC not in sel:
        return missing(claim, title, NOISY_RULE, f"covariate_shift runs with norm=bn and norm=noisy_bn logging "
                       f"`{TRAIN_ACC[len('final.'):]}`", STUDY, notes)
    acc = sel.assign(value=sel.final_acc)[["run", "norm.name", "value"]]
    verdict, finding, numbers, estimates, fields = judge_by_model(
        sel, {"final training accuracy": acc}, {"final training accuracy": NOISY}, arms=("bn", "noisy_bn"),
        scale=points, notes=notes)
    test = sel.assign(value=sel.test_acc)[["run", "norm.name", "value"]]
    aside = []
    for model, g in (sel.groupby("model.name") if "model.name" in sel else [("", sel)]):
        t = test[test.run.isin(g.run)]
        d = difference(points(t.loc[t["norm.name"] == "bn", "value"]), points(t.loc[t["norm.name"] == "noisy_bn", "value"]))
        aside.append(f"{model} {NOISY_TEST.fmt_pm(d)}".strip())
        estimates.append((estimate_label(model, "final test accuracy"), NOISY_TEST, d))
    finding += (" Beside the rule, final test accuracy (eval mode: noisy BN's noise replaced by its mean), BN's minus "
                "noisy BN's: " + "; ".join(aside) + ".")
    act = act_table(c, "act") if len(c) else c
    if len(act) and has_norms(act, ("bn", "noisy_bn")):
        act = act[act.stat.isin(["p15", "p50", "p85"])]
        layers = choose_layers({n: set(act.loc[act["norm.name"] == n, "layer"]) for n in ("bn", "noisy_bn")},
                               k=10 ** 6)
        per_run = drift_by_run(activation_drift(act[act.layer.isin(layers)]), sel)
        models = sel[["run", "model.name"]] if "model.name" in sel else sel[["run"]].assign(**{"model.name": ""})
        aside = []
        for model, g in per_run.merge(models, on="run").groupby("model.name"):
            a, b = g.loc[g["norm.name"] == "noisy_bn", "value"], g.loc[g["norm.name"] == "bn", "value"]
            if len(a) and len(b):
                est = difference(log2(a), log2(b))
                aside.append(f"{model} noisy BN's drift / BN's ".lstrip() + NOISY_DRIFT.fmt(est.value)
                             + (f" (95% interval [{NOISY_DRIFT.fmt(est.lo)}, {NOISY_DRIFT.fmt(est.hi)}])"
                                if est.has_interval else ""))
                estimates.append((estimate_label(model, "activation drift"), NOISY_DRIFT, est))
        if aside:
            finding += " Beside the rule, the injected shift: " + "; ".join(aside) + "."
    return Verdict(claim, title, verdict, NOISY_RULE, finding, numbers, notes=notes, estimates=estimates, **fields)
