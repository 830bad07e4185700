"""Noisy BN's injected shift (Santurkar et al. 2018, Sec. 2.1, Fig. 2): does the noise injected
after BN make the layers' inputs drift more than BN's, and where it does, does noisy BN still
train as well as BN? Two checks, decided on Santurkar et al.'s i.i.d. noise per activation and
example (norm=noisy_bn_example), with the published runs' noise, one scale and shift per channel
(norm=noisy_bn), judged the same way beside.

Limit (stated on review, before any run): eval mode replaces the noise by its mean, but the
running variances were gathered on noisy activations, so in eval mode the normalized activations
of the noisy arms shrink layer by layer (root mean square ~0.75 at the ResNet's last norm layer
for the per-example noise, ~0.91 per channel, measured at initial weights). Their eval-mode test
accuracy, which chooses their rate and says whether they trained, may understate them; the
training comparison itself reads train-mode accuracy, noise on. Each arm's drift is read at its own
chosen rate, so a noisy arm chosen at another rate than BN's drifts more or less for that reason
too (stated before any run; no runs at BN's rate are planned)."""
from __future__ import annotations

import pandas as pd

from ...analysis.cells import EDGE_RULE
from ...analysis.results import chance
from ...analysis.rules import (REPRODUCED, Blocker, decision_text, Effect, has_norms, missing, points, Verdict)
from .common import EACH_MODEL, FRESH_PROTOCOL, RATIO, STUDY, TRAIN_ACC, fresh_runs, judge_by_model, read_study
from .inputs import UNIT_ROWS, input_drift_per_run, norm_layers, unit_rows
from .noisy_bn import NOISY

DECIDING, BESIDE = "noisy_bn_example", "noisy_bn"  # the noisy arms: the one that decides, the one beside
NO_SHIFT = "injected no measurable shift"  # Blocker.kind: a noisy arm whose injected-shift check is not reproduced (or undecided)
# each net's first norm layer (the ResNet's stem, the mlp's first layer): no noise upstream of its input
FIRST_NORMS = ("norm1.in", "layer1.norm.in")

INJECTED = Effect("noisy BN's drift of the norm layers' inputs / BN's (geometric mean over seeds)", "ratio", RATIO)

ARMS_TEXT = ("Decided on norm=noisy_bn_example (Santurkar et al.'s i.i.d. noise per activation and example, their "
             "recipe as read here: bnstudy/nets/norms.py); norm=noisy_bn (one scale and shift per channel, the "
             "published runs' noise) is judged the same way beside, each model's outcome in the facts, deciding "
             "nothing. ")

SHIFT_RULE = (FRESH_PROTOCOL + "Santurkar et al. (2018, Sec. 2.1, Fig. 2): noise injected after each BN layer leaves "
              "the distributions of the layers' inputs less stable than BN's. Drift of the norm layers' inputs as in "
              "the input-drift check (per unit, each step's mean over that step's spread), over the norm layers probed in both "
              "arms that have a noisy layer upstream (all but each net's first, which sees the images through one "
              "weight layer: left out on review the day the rule was written, before any run); effect = mean log2(drift) of the noisy "
              "arm minus that of BN (Welch t over seeds), shown as a ratio, against the study's minimum, 1.5x. "
              + ARMS_TEXT + EACH_MODEL + decision_text(INJECTED) + " " + EDGE_RULE)

TRAINS_RULE = (FRESH_PROTOCOL + "Santurkar et al. (2018, Sec. 2.1, Fig. 2): a BN net with covariate shift injected "
               "after each BN layer still trains about as well as plain BN. Effect = BN's mean final training "
               "accuracy (train mode, noise on, over the last trainer.log_every steps, `train/acc`; a diverged run "
               "counts as chance) minus the noisy arm's, in points (Welch t over seeds); the claim is that it stays "
               "below +2 points, the published noisy-BN check's minimum. Each arm at the rate the protocol chose by "
               "test accuracy (the published check chose by training accuracy: one selection serves every check "
               "here). A noisy arm whose injected-shift check (same runs) is anything but reproduced in a model (not "
               "reproduced, inconclusive, or unmeasured) has not been shown to shift that model's inputs: its "
               "comparison there is inconclusive (blocked: injected no measurable shift), for it would not test "
               "training under covariate shift. " + ARMS_TEXT + EACH_MODEL
               + decision_text(NOISY) + " " + EDGE_RULE)


def _read(runs: pd.DataFrame, curves: pd.DataFrame):
    """(the best-rate runs, their curves, notes, blockers of runs seen before the rules)."""
    runs, seen, notes = fresh_runs(runs)
    sel, c, read_notes = read_study(runs, curves)
    return sel, c, notes + read_notes, seen


def _arms(sel: pd.DataFrame) -> list[str]:
    return [a for a in (DECIDING, BESIDE) if has_norms(sel, ("bn", a))]


def _shift(sel, units, arm: str, notes, seen) -> tuple:
    """judge_by_model's (verdict, finding, numbers, estimates, fields) of `arm`'s injected shift,
    None where no input drift was measured for both it and BN."""
    layers = [l for l in (norm_layers(units, "in", ("bn", arm)) if has_norms(units, ("bn", arm)) else [])
              if l not in FIRST_NORMS]
    per_run = input_drift_per_run(units, sel, layers) if layers else pd.DataFrame()
    if not has_norms(per_run, ("bn", arm)):
        return None
    return judge_by_model(sel, {"input drift": per_run}, {"input drift": INJECTED}, arms=(arm, "bn"), notes=notes,
                          blocked=lambda model: list(seen))


def _combine(parts: dict, rule: str, claim: str, title: str, notes) -> Verdict:
    """The deciding arm's verdict, the other arm's parts beside it (its finding, estimates labelled
    `arm=...`, numbers with an arm column); facts["by_arm"]: {arm: {model: (verdict, why)}}."""
    verdict, finding, numbers, estimates, fields = parts[DECIDING]
    fields["blockers"] = list(dict.fromkeys(fields["blockers"]))  # a seen-runs blocker is every model's
    # one table: each arm's rows, its column named alike
    tables = [numbers.rename(columns={DECIDING: "noisy BN"}).assign(arm=DECIDING)]
    for arm, (_, f, n, e, fl) in parts.items():
        if arm == DECIDING:
            continue
        finding += f" Beside the rule, {arm}: {f}"
        estimates += [(f"arm={arm}; {label}", effect, est) for label, effect, est in e]
        tables.append(n.rename(columns={arm: "noisy BN"}).assign(arm=arm))
    fields["facts"]["by_arm"] = {arm: p[4]["facts"]["by_model"] for arm, p in parts.items()}
    numbers = pd.concat(tables, ignore_index=True)
    numbers = numbers[["arm"] + [col for col in numbers.columns if col != "arm"]]
    return Verdict(claim, title, verdict, rule, finding, numbers, notes=notes, estimates=estimates, **fields)


def check_injected_shift(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    claim, title = "noisy_bn_shift", "Noise injected after BN makes the layers' inputs drift more than BN's (noisy BN)"
    sel, c, notes, seen = _read(runs, curves)
    units = unit_rows(c)
    parts = {arm: p for arm in _arms(sel) if (p := _shift(sel, units, arm, notes, seen)) is not None}
    if DECIDING not in parts:
        return missing(claim, title, SHIFT_RULE, f"covariate_shift runs with norm=bn and norm={DECIDING} probing the "
                       f"norm layers' inputs per unit ({UNIT_ROWS}) at >= 2 steps, on fresh seeds (the measuring "
                       "phase in bnstudy/conf/exp/covariate_shift.yaml)", STUDY, notes)
    return _combine(parts, SHIFT_RULE, claim, title, notes)


def no_shift(arm: str, model: str, outcome) -> list:
    """A Blocker (kind NO_SHIFT) where `arm`'s injected-shift check in `model`, outcome
    (verdict, why) or None where unmeasured, is anything but reproduced."""
    if outcome is not None and outcome[0] == REPRODUCED:
        return []
    where = f"{arm} ({model})" if model else arm
    why = ("its input drift was not measured" if outcome is None else
           f"its input drift over BN's is {outcome[0]}" + (f" ({outcome[1]})" if outcome[1] else ""))
    return [Blocker(f"{where} was not shown to shift its layers' inputs: {why}, so its runs do not test training under "
                    "covariate shift", NO_SHIFT, where, {"shift": outcome})]


def check_noisy_bn_shifted(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    claim = "noisy_bn_shifted"
    title = "BN nets train as well with covariate shift injected, where the noise measurably shifts layer inputs"
    sel, c, notes, seen = _read(runs, curves)
    if not has_norms(sel, ("bn", DECIDING)) or TRAIN_ACC not in sel:
        return missing(claim, title, TRAINS_RULE, f"covariate_shift runs with norm=bn and norm={DECIDING} logging "
                       f"`{TRAIN_ACC[len('final.'):]}`", STUDY, notes)
    units = unit_rows(c)
    train = pd.to_numeric(sel[TRAIN_ACC], errors="coerce").where(sel.status == "completed", chance(sel))
    acc = sel.assign(value=train)[["run", "norm.name", "value"]]
    parts, shifts = {}, {}
    for arm in _arms(sel):
        shift = _shift(sel, units, arm, notes, seen)
        shifts[arm] = shift[4]["facts"]["by_model"] if shift is not None else {}
        parts[arm] = judge_by_model(
            sel, {"final training accuracy": acc}, {"final training accuracy": NOISY}, arms=("bn", arm), scale=points,
            notes=notes, blocked=lambda model, arm=arm: list(seen) + no_shift(arm, model, shifts[arm].get(model)))
    v = _combine(parts, TRAINS_RULE, claim, title, notes)
    v.facts["shift"] = shifts  # {arm: {model: (verdict, why)}} of the injected-shift check
    return v
