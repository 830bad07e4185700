"""What the covariate-shift checks share: each arm at its own best rate, the runs they read,
the judgement within each model, and the probe tables."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import pandas as pd

from ...analysis.cells import (SELECTED, SELECTION_BIAS, at_best_rate, edge_blockers, edge_rates, fresh,
                               incomplete_cells, matching, study_runs)
from ...analysis.results import chance, with_config
from ...analysis.rules import (BLOCKED, DISAGREE, INCONCLUSIVE, NO_EFFECT, NOT_REPRODUCED, REPRODUCED, SEEN,
                               WHY_ORDER, acc_cell, decision, Effect, effect_line, log2, Note, points, untrained)
from ...analysis.stats import difference, fmt_ci, mean_ci

STUDY = "covariate_shift"  # the study YAML whose runs the checks read

RATE = "optim.lr"

TRAIN_ACC = "final.train/acc"  # training accuracy in train mode over the last trainer.log_every steps

# fixed 2026-11-25 (when every rule was rewritten), after the first cpu covariate_shift runs: a
# measure counts as reduced by BN when none's value is at least 1.5x BN's
RATIO = math.log2(1.5)

# the protocol every check shares (written 2026-11-29, before any run of it)
PROTOCOL = ("Each arm (model x norm) at its own best peak learning rate: the rate of the grid with the highest mean "
             "final test accuracy over seeds (a diverged run counts as chance; a tie goes to the lower rate); every "
             "measure is read on those runs only. An arm whose mean accuracy at its best rate is within 5 points of "
             "chance did not train: every comparison within its model that uses it is inconclusive, with that reason. "
             "A run that diverged at its arm's best rate is left out of the probe measures (its probes end at the "
             "blow-up) and named; its accuracy still counts as chance (amended before any run of this protocol). "
             + SELECTION_BIAS + " ")

EACH_MODEL = ("Judged within each model; the verdict is the models' common one, else inconclusive (a verdict that "
               "only one model's runs could judge says so). ")

# the protocol of the checks written 2026-12-07 (inputs.py, injected_shift.py), before any run they judge
FRESH_PROTOCOL = ("Written 2026-12-07, before any run it judges. The runs of seeds 0-4 at scale=cpu on cifar10_folder "
                  "(the published 60) had been seen as a study, so they never decide it: alone they make it "
                  "inconclusive (blocked: seen before the rule), beside other runs they are left out. Each arm (net x "
                  "norm) at the peak rate chosen on selection seed 100 over its net's x2 grid (covariate_lr {half, "
                  "low, double}: mlp 0.1, 0.2, 0.4; ResNet-20 0.025, 0.05, 0.1, each bracketing the published best "
                  "rates by test accuracy, mlp 0.2 and ResNet-20 0.05), by mean final test accuracy, a best rate at "
                  "an edge extended x2 past it before any measuring run (bnstudy/analysis/selection.py RULE); "
                  "measured on seeds 5-9 at that rate, which chose nothing. Runs without a selection phase are read "
                  "as the published checks read them, each arm at its best rate on the seeds that measure it. An arm "
                  "whose mean final test accuracy is within 5 points of chance did not train: every comparison within "
                  "its model that uses it is inconclusive. A run that diverged is left out of the probe measures, "
                  "its accuracy counted as chance. ")

# the runs the checks of 2026-12-07 were written after seeing: they never decide those checks
SEEN_RUNS = {"study": STUDY, "scale.name": "cpu", "data.name": "cifar10_folder", "seed": (0, 1, 2, 3, 4)}
SEEN_KIND = SEEN  # Blocker.kind where they are all there is; Note.kind where they are left out
SEEN_DESCRIBED = "scale=cpu, data=cifar10_folder, seeds 0-4"


def fresh_runs(runs: pd.DataFrame) -> tuple[pd.DataFrame, list, list]:
    """(runs, blockers, notes) for a check of 2026-12-07: the seen runs (SEEN_RUNS) left out beside
    others (a note), or kept and blocking the verdict where the study has no others."""
    study = runs.study == STUDY if "study" in runs else pd.Series(False, index=runs.index)
    kept, blockers, notes = fresh(runs[study], matching(runs[study], SEEN_RUNS), SEEN_DESCRIBED)
    return pd.concat([runs[~study], kept]), blockers, notes

# Note.kind of the notes read_study writes
BEST_RATES = "best peak rates"  # data: {arm ("mlp bn"): its best rate}
BY_TRAINING = "best rate by training accuracy"  # data: {}
# Note.kind where `by_training` was asked but the study chose its rates on selection seeds by test
# accuracy, so the measuring runs hold one rate an arm and training accuracy chooses nothing
CHOSEN_BY_TEST = "rate chosen by test accuracy on selection seeds"  # data: {}
DIVERGED = "diverged at the best rate"  # data: {"runs": (run, ...)}, left out of the probe measures
UNPROBED = "no probe rows"  # data: {"runs": (run, ...)}, completed but left out of the probe measures


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
    out = [Note("best peak rates: " + ", ".join(f"{m} {n} {r:g}".strip() for (m, n), r in arms.items()), BEST_RATES,
                data={f"{m} {n}".strip(): float(r) for (m, n), r in arms.items()})]
    return (out + edge_rates(models(sel), models(best), ["_model", "norm.name"], RATE)
            + incomplete_cells(models(sel), ["_model", "norm.name"], RATE, within=["_model"]))


def read_study(runs: pd.DataFrame, curves: pd.DataFrame, by_training: bool = False):
    """(the best-rate runs, their curves with config columns, notes). `by_training`: each arm's
    best rate by its final training accuracy (noise on; a diverged run as chance), kept in
    final_acc, with the test accuracy in `test_acc` (the noisy-BN check)."""
    sel, notes = study_runs(runs, STUDY)
    if by_training and TRAIN_ACC in sel:
        train = pd.to_numeric(sel[TRAIN_ACC], errors="coerce").where(sel.status == "completed", chance(sel))
        sel = sel.copy().assign(test_acc=sel.final_acc, final_acc=train)  # copy: a defragmented frame
        if not any(getattr(n, "kind", "") == SELECTED for n in notes):
            notes.append(Note("each arm's best rate chosen by its final training accuracy (this check's measure)",
                              BY_TRAINING))
        else:  # the measuring runs hold one rate an arm: training accuracy chooses nothing
            notes.append(Note("each arm's rate was chosen on the selection seeds by final test accuracy, not by its "
                              "final training accuracy as this check's rule asks (a deviation from the rule)",
                              CHOSEN_BY_TEST))
    best = best_rate_runs(sel)
    notes += rate_notes(sel, best)
    # a diverged run's probes end at its blow-up: they would measure that, not the claim
    blown = best[best.status != "completed"] if len(best) else best
    if len(blown):
        notes.append(Note(f"{len(blown)} run(s) at their arm's best rate diverged: left out of the probe measures, "
                          "their accuracy counted as chance: " + ", ".join(map(str, blown.run)), DIVERGED,
                          data={"runs": tuple(blown.run)}))
    c = curves[curves.run.isin(measured_runs(best))] if len(best) else curves.iloc[0:0]
    probed = set(c.run[c.metric.str.startswith(("act/", "chan/", "ics/", "landscape/"))]) if len(c) else set()
    unprobed = [r for r in measured_runs(best) if r not in probed]
    if len(unprobed) and len(probed):
        notes.append(Note(f"{len(unprobed)} completed run(s) at their arm's best rate have no probe rows (probes.csv "
                          "missing or unreadable): left out of the probe measures: " + ", ".join(map(str, unprobed)),
                          UNPROBED, data={"runs": tuple(unprobed)}))
    cols = ["norm.name", "seed"] + (["model.name"] if "model.name" in best else [])
    return best, with_config(c, best, cols), notes


def _arm_name(m: pd.DataFrame, norm: str, model: str) -> str:
    rate = m.loc[m["norm.name"] == norm, RATE] if RATE in m else pd.Series(dtype=float)
    where = ", ".join(p for p in (model, f"its best rate {rate.iloc[0]:g}" if len(rate.dropna()) else "") if p)
    return f"{norm} ({where})" if where else norm


def estimate_label(model: str, measure: str = "") -> str:
    """A per-model estimate's label in numbers.csv: 'model=mlp', 'model=mlp; measure=loss range'."""
    return "; ".join(p for p in (f"model={model}" if model else "", f"measure={measure}" if measure else "") if p) \
        or "all runs"


def judge_by_model(sel: pd.DataFrame, per_run: dict[str, pd.DataFrame], effects: dict[str, Effect],
                   arms: tuple[str, str] = ("none", "bn"), scale: Callable = log2, notes: Sequence[str] = (),
                   blocked: Callable[[str], list] = lambda model: []):
    """Decide each measure (per_run: run, norm.name, value) within each model: effect =
    mean scale(value) of arms[0] minus that of arms[1]; a model's verdict is reproduced when all
    its measures are, not reproduced when one is; the models' common verdict, else inconclusive.
    Both arms must have trained (`sel` holds the runs the measures come from), and neither may have
    its best rate at an edge of its grid (an EDGE note of `notes`, read_study's: EDGE_RULE). Returns
    (verdict, finding, numbers, estimates, fields): estimates holds each model's effect per measure
    as (label, Effect, Estimate), labelled "model=mlp" (and "; measure=..." where there are
    several), for Verdict.estimates; fields, the Verdict's why, blockers and facts: by_model
    {model: (verdict, why)} (and by_measure {label: (verdict, why)} where there are several). An
    inconclusive part's why is the first of WHY_ORDER its measures have, and so is an inconclusive
    verdict's over its inconclusive parts (DISAGREE where every part was decided); blockers are
    those of the blocked parts, with `blocked(model)`'s, any other a check's rule names (runs seen
    before it, a noise that shifted nothing). A table of accuracies (scale=points) is in percent."""
    models = sel.groupby("model.name").run if "model.name" in sel else [("", sel.run)]
    c = float(chance(sel).iloc[0]) if len(sel) else 0.1
    first, second = arms
    outcomes, lines, rows, judged, estimates = [], [], [], [], []
    whys, all_blockers, by_measure = [], [], {}
    shown = ((lambda v: acc_cell(*mean_ci(v))) if scale is points  # noqa: E731
             else (lambda v: fmt_ci(*mean_ci(v), digits=4)))
    for model, ids in models:
        m = sel[sel.run.isin(ids)]
        blockers = untrained({_arm_name(m, n, model): m.loc[m["norm.name"] == n, "final_acc"] for n in arms}, c)
        blockers += edge_blockers(notes, [f"{model} {n}".strip() for n in arms])  # as rate_notes names them
        blockers += blocked(model)
        decided, parts, reasons, part_whys = [], [], [], []
        for name, df in per_run.items():
            d = df[df.run.isin(ids)]
            a, b = d.loc[d["norm.name"] == first, "value"], d.loc[d["norm.name"] == second, "value"]
            if not len(a) or not len(b):
                continue
            est = difference(scale(a), scale(b))
            v, why, reason = decision(est, effects[name], blockers)
            decided.append(v)
            reasons.append(reason)
            part_whys.append(why)
            label = estimate_label(model, name if len(per_run) > 1 else "")
            estimates.append((label, effects[name], est))
            if len(per_run) > 1:
                by_measure[label] = (v, why)
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
            whys.append(BLOCKED if blockers else NO_EFFECT)
            all_blockers += blockers
            lines.append((f"{model}: " if model else "") + f"not measured — {INCONCLUSIVE} ({why})")
            continue
        outcome = (REPRODUCED if all(v == REPRODUCED for v in decided) else
                   NOT_REPRODUCED if NOT_REPRODUCED in decided else INCONCLUSIVE)
        outcomes.append(outcome)
        judged.append(model)
        whys.append(next((w for w in WHY_ORDER if w in part_whys), "") if outcome == INCONCLUSIVE else "")
        all_blockers += blockers  # an arm that did not train blocks every measure: the part is inconclusive
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
    why = (next((w for w in WHY_ORDER if w in whys), DISAGREE if len(set(outcomes)) > 1 else NO_EFFECT)
           if verdict == INCONCLUSIVE else "")
    facts = {"by_model": dict(zip(judged, zip(outcomes, whys)))}
    if by_measure:
        facts["by_measure"] = by_measure
    fields = {"why": why, "blockers": all_blockers if verdict == INCONCLUSIVE else [], "facts": facts}
    return verdict, finding, numbers, estimates, fields


def param_rows(c: pd.DataFrame, prefix: str, stat: str) -> pd.DataFrame:
    """`{prefix}/{param}.{stat}` rows as (run, norm.name, step, param, value)."""
    r = c[c.metric.str.startswith(prefix + "/") & c.metric.str.endswith("." + stat)]
    return r.assign(param=r.metric.str[len(prefix) + 1:-len(stat) - 1])[["run", "norm.name", "step", "param", "value"]]


def per_run(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.groupby(["run", "norm.name"], as_index=False).value.mean()


def model_means(per_run: pd.DataFrame, sel: pd.DataFrame) -> dict[str, dict[str, float]]:
    """{model: {"bn": mean, "none": mean}} of a measure over runs (for Verdict.facts)."""
    models = sel[["run", "model.name"]] if "model.name" in sel else sel[["run"]].assign(**{"model.name": ""})
    return {model: {n: float(g.loc[g["norm.name"] == n, "value"].mean()) for n in ("bn", "none")}
            for model, g in per_run.merge(models, on="run").groupby("model.name")}


def means_by_model(per_run: pd.DataFrame, sel: pd.DataFrame, name: str) -> list[str]:
    """'{model} {name}: bn x, none y' per model: a measure shown beside a rule, in its own units."""
    return [f"{model} {name}".strip() + f": bn {m['bn']:.4g}, none {m['none']:.4g}"
            for model, m in model_means(per_run, sel).items()]


def act_table(curves: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Rows `act/...`, `hist/...` or `chan/...` split into layer (module.in|out, and for `chan/` the
    unit: module.in.c03) and stat columns."""
    rows = curves[curves.metric.str.startswith(kind + "/")].copy()
    if not len(rows):
        return rows.assign(layer=[], stat=[])
    parts = rows.metric.str[len(kind) + 1:].str.rsplit(".", n=1, expand=True)
    rows["layer"], rows["stat"] = parts[0], parts[1]
    return rows


def per_model(curves: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(title prefix, rows) for each net: the mlp trains 20,000 steps and the ResNet 312, so each
    gets its own row of panels rather than one step axis; one net, one row with no prefix."""
    if "model.name" not in curves or curves["model.name"].nunique() <= 1:
        return [("", curves)]
    return [(f"{m}: ", g) for m, g in curves.groupby("model.name", sort=True)]
