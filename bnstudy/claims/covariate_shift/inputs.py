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
from .activations import activation_drift, drift_by_run
from .common import (EACH_MODEL, FRESH_PROTOCOL, RATIO, STUDY, act_table, estimate_label, fresh_runs, judge_by_model,
                     read_study)

INPUT_DRIFT = Effect("none's drift of the norm layers' inputs / BN's (geometric mean over seeds)", "ratio", RATIO)
# shown beside, information only: what the published check measures in the BN net
OUTPUTS_BESIDE = Effect("none's drift of the norm layers' inputs / BN's drift of its normalized outputs", "ratio",
                        math.nan)
UNIT_ROWS = "`chan/*norm*.in.c*.mean|std` rows of probes.csv, probes.activations.channels > 0"

UNIT_DRIFT = ("Drift of a layer's input, per unit as Ioffe & Szegedy's Fig. 1 follows one unit: for each of the first "
              "probes.activations.channels channels (the study YAML sets how many) of the input of a norm layer, "
              "before it normalizes (units in the mlp; `chan/<layer>.in.c<k>.*`: the convolution's or linear layer's "
              "output; in the unnormalized net the identity's input), its mean over the probe batch (and positions) "
              "divided by its standard deviation there, at each probe step (a step where it has no spread is left "
              "out); the unit's drift is the range of that ratio over training; a layer's, the median over its units "
              "(a unit with almost no spread, such as one fed by dead ReLUs, has a ratio that explodes and would rule "
              "a mean) (amended on review 2026-12-07, before any run: percentiles pooled over a layer's units, the "
              "first version, let units moving in opposite directions cancel). Dividing by "
              "the unit's own spread makes a change of scale alone count as no drift (a norm layer's input grows with "
              "its weights' norm, which the normalized output, and so the BN net, does not see; without weight "
              "decay, as in the mlp, that growth alone would read as drift); a shift of location against the spread "
              "counts. In the unnormalized net the next nonlinearity does see a change of scale, so this measure can "
              "understate none's drift (toward not reproduced); stated before any run. ")

INPUT_RULE = (FRESH_PROTOCOL + "Internal covariate shift is the change in the distribution of a layer's inputs "
              "(Ioffe & Szegedy 2015, Sec. 1-2, Fig. 1; Santurkar et al. 2018, Sec. 2). " + UNIT_DRIFT
              + "Layers: every norm layer probed in both nets. Per run, drift is averaged over layers; effect = mean "
              "log2(drift) of none minus that of BN (Welch t over seeds), shown as a ratio. " + EACH_MODEL
              + decision_text(INPUT_DRIFT) + " Shown beside, not decided: BN's drift of its normalized outputs (the "
              "published check's measure: pooled percentiles, normalized by construction, read unstandardized as "
              "published), and none's input drift over it. " + EDGE_RULE)


def norm_layers(rows: pd.DataFrame, side: str, norms: Sequence[str]) -> list[str]:
    """The norm layers probed in the runs of every one of `norms`, at `side` ('in': before the
    layer normalizes, 'out': after)."""
    found = [set(rows.loc[rows["norm.name"] == n, "layer"]) for n in norms]
    common = set.intersection(*found) if found else set()
    return sorted(layer for layer in common if "norm" in layer and layer.endswith("." + side))


def unit_rows(c: pd.DataFrame) -> pd.DataFrame:
    """The per-unit rows `chan/<layer>.in.c<k>.mean|std`, with `layer` (the norm layer's input,
    'layer1.norm.in'), `unit` ('c03') and `stat` ('mean' or 'std') columns."""
    rows = act_table(c, "chan") if len(c) else c.assign(layer=[], stat=[])
    if not len(rows):
        return rows.assign(unit=[])
    parts = rows.layer.str.rsplit(".", n=1, expand=True)
    return rows.assign(layer=parts[0], unit=parts[1])


def unit_drift(units: pd.DataFrame) -> pd.DataFrame:
    """(run, layer, drift), UNIT_DRIFT: each unit's mean over its standard deviation at every probe
    step, its range over training, the median over the layer's units (a step where a unit has no
    spread is left out, and a unit left with < 2 steps)."""
    wide = units.pivot_table(index=["run", "layer", "unit", "step"], columns="stat", values="value")
    wide = wide.reindex(columns=["mean", "std"]).reset_index()
    wide = wide[wide["std"] > 0]
    z = (wide["mean"] / wide["std"]).groupby([wide.run, wide.layer, wide.unit]).agg(["max", "min", "count"])
    z = z[z["count"] >= 2]
    per_layer = (z["max"] - z["min"]).groupby(level=["run", "layer"]).median()
    return per_layer.rename("drift").reset_index()


def percentile_rows(c: pd.DataFrame) -> pd.DataFrame:
    """The `act/*` rows of the 15th, 50th and 85th percentiles, split into layer and stat."""
    act = act_table(c, "act") if len(c) else c.assign(layer=[], stat=[])
    return act[act.stat.isin(("p15", "p50", "p85"))]


def input_drift_per_run(units: pd.DataFrame, sel: pd.DataFrame, layers: Sequence[str]) -> pd.DataFrame:
    """(run, norm.name, value): each run's per-unit input drift averaged over `layers`."""
    return drift_by_run(unit_drift(units[units.layer.isin(layers)]), sel)


def check_input_drift(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    claim, title = "ics_inputs", "BN keeps the inputs of its layers stable during training (before normalization)"
    runs, seen, notes = fresh_runs(runs)
    sel, c, read_notes = read_study(runs, curves)
    notes += read_notes
    units = unit_rows(c)
    layers = norm_layers(units, "in", ("bn", "none")) if has_norms(units, ("bn", "none")) else []
    inputs = input_drift_per_run(units, sel, layers) if layers else pd.DataFrame()
    if not has_norms(inputs, ("bn", "none")):
        return missing(claim, title, INPUT_RULE, "covariate_shift runs with norm=bn and norm=none probing the norm "
                       f"layers' inputs per unit ({UNIT_ROWS}) at >= 2 steps, on fresh seeds (the measuring phase in "
                       "bnstudy/conf/exp/covariate_shift.yaml)", STUDY, notes)
    verdict, finding, numbers, estimates, fields = judge_by_model(
        sel, {"input drift": inputs}, {"input drift": INPUT_DRIFT}, notes=notes, blocked=lambda model: list(seen))
    fields["blockers"] = list(dict.fromkeys(fields["blockers"]))  # a seen-runs blocker is every model's
    act = percentile_rows(c)
    bn_act = act[act["norm.name"] == "bn"]
    outputs = drift_by_run(activation_drift(bn_act[bn_act.layer.isin(norm_layers(act, "out", ("bn",)))]), sel)
    models = sel.set_index("run")["model.name"] if "model.name" in sel else pd.Series("", index=sel.run)
    aside, rows, facts = [], [], {}
    for model in sorted(set(models)):
        none_in = inputs.loc[inputs.run.map(models).eq(model) & inputs["norm.name"].eq("none"), "value"]
        bn_in = inputs.loc[inputs.run.map(models).eq(model) & inputs["norm.name"].eq("bn"), "value"]
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
