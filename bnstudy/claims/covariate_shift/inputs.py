"""Drift of the layers' inputs, before they are normalized (Ioffe & Szegedy 2015, Sec. 1-2:
internal covariate shift is the change in the distribution of a layer's inputs; Fig. 1;
Santurkar et al. 2018, Sec. 2): does BN keep them stable over training? Its check, and the
measure the noisy-BN checks share (injected_shift.py)."""
from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from ...analysis.cells import EDGE_RULE
from ...analysis.rules import decision_text, Effect, has_norms, log2, missing, Verdict
from ...analysis.stats import difference, fmt_ci, mean_ci
from .activations import activation_drift
from .common import (EACH_MODEL, FRESH_PROTOCOL, RATIO, STUDY, act_table, estimate_label, fresh_runs, judge_by_model,
                     read_study)

PERCENTILES = ("p15", "p50", "p85")

INPUT_DRIFT = Effect("none's drift of the norm layers' inputs / BN's (geometric mean over seeds)", "ratio", RATIO)
# shown beside, information only: what the published check measures in the BN net
OUTPUTS_BESIDE = Effect("none's drift of the norm layers' inputs / BN's drift of its normalized outputs", "ratio",
                        math.nan)

INPUT_RULE = (FRESH_PROTOCOL + "Drift of a layer's input distribution (Ioffe & Szegedy 2015, Sec. 1-2: internal "
              "covariate shift is the change in the distribution of a layer's inputs; Fig. 1; Santurkar et al. 2018, "
              "Sec. 2) = the range over training of the 15th, 50th and 85th percentiles of the input of a norm layer, "
              "before it normalizes (`act/<layer>.in.*`: the convolution's or linear layer's output; in the "
              "unnormalized net the identity's input), each step's percentiles first divided by that step's own "
              "15-85 spread, averaged: so a change of scale alone does not count (a norm layer's input grows with its "
              "weights' norm, which the normalized output, and so the net, does not see; without weight decay, as in "
              "the mlp, that growth alone would read as drift), a shift of location or shape against the spread "
              "does (amended on review the day the rule was written, before any run). Layers: every norm layer probed in both "
              "nets. Per run, drift is averaged over layers; effect = mean log2(drift) of none minus that of BN "
              "(Welch t over seeds), shown as a ratio. " + EACH_MODEL + decision_text(INPUT_DRIFT) + " Shown beside, "
              "not decided: BN's drift of its normalized outputs (the published check's measure, normalized by "
              "construction, read unstandardized as published), and none's input drift over it. " + EDGE_RULE)


def norm_layers(act: pd.DataFrame, side: str, norms: Sequence[str]) -> list[str]:
    """The norm layers probed in the runs of every one of `norms`, at `side` ('in': before the
    layer normalizes, 'out': after)."""
    found = [set(act.loc[act["norm.name"] == n, "layer"]) for n in norms]
    common = set.intersection(*found) if found else set()
    return sorted(layer for layer in common if "norm" in layer and layer.endswith("." + side))


def drift_per_run(act: pd.DataFrame, sel: pd.DataFrame, layers: Sequence[str], standardized: bool = True) -> pd.DataFrame:
    """(run, norm.name, value): each run's drift (activations.activation_drift, each step standardized
    by its own spread unless `standardized` is False) averaged over `layers`."""
    drift = activation_drift(act[act.layer.isin(layers)], standardized).merge(sel[["run", "norm.name"]], on="run")
    return drift.groupby(["run", "norm.name"], as_index=False).drift.mean().rename(columns={"drift": "value"})


def percentile_rows(c: pd.DataFrame) -> pd.DataFrame:
    """The `act/*` rows of the 15th, 50th and 85th percentiles, split into layer and stat."""
    act = act_table(c, "act") if len(c) else c.assign(layer=[], stat=[])
    return act[act.stat.isin(PERCENTILES)]


def check_input_drift(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    claim, title = "ics_inputs", "BN keeps the inputs of its layers stable during training (before normalization)"
    runs, seen, notes = fresh_runs(runs)
    sel, c, read_notes = read_study(runs, curves)
    notes += read_notes
    act = percentile_rows(c)
    layers = norm_layers(act, "in", ("bn", "none")) if has_norms(act, ("bn", "none")) else []
    per_run = drift_per_run(act, sel, layers) if layers else pd.DataFrame()
    if not has_norms(per_run, ("bn", "none")):
        return missing(claim, title, INPUT_RULE, "covariate_shift runs with norm=bn and norm=none probing the norm "
                       "layers' inputs (`act/*norm*.in.p15|p50|p85` rows of probes.csv) at >= 2 steps, on fresh "
                       "seeds (the measuring phase in bnstudy/conf/exp/covariate_shift.yaml)", STUDY, notes)
    verdict, finding, numbers, estimates, fields = judge_by_model(
        sel, {"input drift": per_run}, {"input drift": INPUT_DRIFT}, notes=notes, blocked=lambda model: list(seen))
    fields["blockers"] = list(dict.fromkeys(fields["blockers"]))  # a seen-runs blocker is every model's
    outputs = drift_per_run(act[act["norm.name"] == "bn"], sel, norm_layers(act, "out", ("bn",)), standardized=False)
    models = sel.set_index("run")["model.name"] if "model.name" in sel else pd.Series("", index=sel.run)
    aside, rows, facts = [], [], {}
    for model in sorted(set(models)):
        none_in = per_run.loc[per_run.run.map(models).eq(model) & per_run["norm.name"].eq("none"), "value"]
        bn_in = per_run.loc[per_run.run.map(models).eq(model) & per_run["norm.name"].eq("bn"), "value"]
        bn_out = outputs.loc[outputs.run.map(models).eq(model), "value"]
        if not len(bn_out) or not len(none_in):
            continue
        est = difference(log2(none_in), log2(bn_out))
        estimates.append((estimate_label(model, "BN's output drift"), OUTPUTS_BESIDE, est))
        facts[model] = {"bn_in": float(bn_in.mean()), "bn_out": float(bn_out.mean()), "none": float(none_in.mean())}
        aside.append(f"{model} BN's output drift {bn_out.mean():.3g} (its input drift {bn_in.mean():.3g}); none's "
                     f"input drift / it {OUTPUTS_BESIDE.fmt(est.value)}".strip())
        rows.append({"model": model, "measure": "drift of the normalized outputs (beside)",
                     "bn": fmt_ci(*mean_ci(bn_out), digits=4), "none": fmt_ci(*mean_ci(none_in), digits=4)})
    if aside:
        finding += " Beside the rule, the published check's measure: " + "; ".join(aside) + "."
        numbers = pd.concat([numbers, pd.DataFrame(rows)], ignore_index=True)
    fields["facts"]["drift"] = facts  # {model: {bn_in, bn_out, none}}: mean drift over runs
    return Verdict(claim, title, verdict, INPUT_RULE, finding, numbers, notes=notes, estimates=estimates, **fields)
