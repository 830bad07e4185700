"""The covariate_shift claims with a rate grid: each (model, norm) arm read at its own best rate,
an arm that did not train blocks its model's comparisons, ICS decided on ||G - G'||/||G||, and
the noisy-BN check (Santurkar et al. 2018, Sec. 2.1)."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from bnstudy.analysis.cells import EDGE_RULE
from bnstudy.analysis.results import with_config
from bnstudy.analysis.rules import (BLOCKED, DISAGREE, EDGE, INCONCLUSIVE, MISSING, NOT_REPRODUCED, REPRODUCED,
                                    TOO_FEW_SEEDS)
from bnstudy.claims import covariate_shift as C
from bnstudy.claims.covariate_shift.common import BEST_RATES, BY_TRAINING, CHOSEN_BY_TEST, DIVERGED, UNPROBED
from bnstudy.claims.covariate_shift.gradients import ICS

from conftest import compose_config, estimate_of, notes_of, untrained_arms
from test_claims import NO_CURVES, edges, noise, row

LRS = (0.025, 0.05, 0.2, 0.8, 1.6)  # every best rate (BEST) inside the grid
BEST = {("mlp", "bn"): 0.2, ("mlp", "none"): 0.8, ("mlp", "noisy_bn"): 0.2,
        ("resnet", "bn"): 0.2, ("resnet", "none"): 0.05, ("resnet", "noisy_bn"): 0.2}


def runs_cs(acc=None, seeds=5, steps=range(0, 1001, 250), lrs=LRS):
    """Both models, three norms, the rates `lrs`. At an arm's best rate (BEST) its test accuracy is acc
    (bn, noisy_bn 50%, none 40%), 10 points less elsewhere; training accuracy 10 points above test. At its best rate none's relative ICS is
    2x BN's, its activations drift and its landscape is rougher; at the other rates none looks like
    BN, so reading every rate would dilute the effect. noisy_bn drifts like none. BN's gradients are
    8x none's, so the absolute ||G - G'|| reads BN as 4x more shifted."""
    acc = {"bn": 0.5, "noisy_bn": 0.5, "none": 0.4, **(acc or {})}
    rng, runs, rows = np.random.default_rng(21), [], []
    for model, norm, lr, s in itertools.product(("mlp", "resnet"), ("bn", "none", "noisy_bn"), lrs, range(seeds)):
        best = lr == BEST[(model, norm)]
        run = f"covariate_shift/{model}/{norm}/{lr}/{s}"
        a = acc[norm] if isinstance(acc[norm], float) else acc[norm][model]
        test = max(0.1, a - (0.0 if best else 0.1)) + noise(rng)
        runs.append(row("covariate_shift", norm, s, test, run=run,
                        **{"model.name": model, "optim.lr": lr, "final.train/acc": min(1.0, test + 0.1)}))
        shifted = (norm == "none" and best) or norm == "noisy_bn"
        for step in steps:
            t = step / max(steps)
            shift, scale = (2.0 * t, 1 + 3 * t) if shifted else (0.0, 1.0)
            for layer in ("layer1.norm.out", "layer2.norm.out"):
                for p, z in (("p15", -1.04), ("p50", 0.0), ("p85", 1.04)):
                    rows.append((run, step, f"act/{layer}.{p}", shift + scale * z + noise(rng, 0.03)))
            rel = (0.2 if norm == "none" and best else 0.1) * (1 + noise(rng, 0.05))
            g = 1.0 if norm == "none" else 8.0
            for prm in ("layer2.fc.weight", "layer3.fc.weight"):
                rows += [(run, step, f"ics/{prm}.rel", rel), (run, step, f"ics/{prm}.l2", rel * g),
                         (run, step, f"ics/{prm}.cos", 0.5)]
            w = 1.0 if norm == "none" and best else 0.1
            rows += [(run, step, "landscape/loss_min", 2.0 - 0.2 * w), (run, step, "landscape/loss_max", 2.0 + w),
                     (run, step, "landscape/grad_pred_rel", w * (1 + noise(rng, 0.05)))]
    curves = pd.DataFrame(rows, columns=["run", "step", "metric", "value"]).assign(epoch=0.0, source="probes")
    return pd.DataFrame(runs), curves


PROBE_CHECKS = [C.check_activations, C.check_gradients, C.check_landscape]


def test_each_arm_at_its_best_rate_reproduces_the_probe_claims():
    runs, curves = runs_cs()
    for check in PROBE_CHECKS:
        v = check(runs, curves)
        assert v.verdict == REPRODUCED, (check.__name__, v.finding)
        assert v.facts["by_model"] == {"mlp": (REPRODUCED, ""), "resnet": (REPRODUCED, "")}, v.facts
        (rates,) = notes_of(v, BEST_RATES)
        assert rates.data == {f"{model} {norm}": lr for (model, norm), lr in BEST.items()}, rates


def test_a_diverged_run_at_the_best_rate_is_left_out_of_the_probe_measures():
    """A seed of BN that blew up at its best rate: its probes (here a huge drift and ICS up to the
    blow-up) would make BN look shifted. It is named and left out of the measures; the other
    four seeds still reproduce, and its accuracy still counts as chance."""
    runs, curves = runs_cs()
    blown = "covariate_shift/resnet/bn/0.2/0"
    runs.loc[runs.run == blown, ["status", "final_acc"]] = ["diverged", 0.1]  # a diverged run counts as chance
    c = curves.copy()
    c.loc[c.run == blown, "value"] = c.loc[c.run == blown, "value"] * 1e6
    for check in PROBE_CHECKS:
        v = check(runs, c)
        assert v.verdict == REPRODUCED, (check.__name__, v.finding)
        assert [n.data["runs"] for n in notes_of(v, DIVERGED)] == [(blown,)], v.notes


def test_a_completed_run_without_probe_rows_is_named_not_silently_dropped():
    runs, curves = runs_cs()
    lost = "covariate_shift/mlp/none/0.8/3"
    for check in PROBE_CHECKS:
        v = check(runs, curves[curves.run != lost])
        assert v.verdict == REPRODUCED, (check.__name__, v.finding)
        assert [n.data["runs"] for n in notes_of(v, UNPROBED)] == [(lost,)], v.notes
    assert not notes_of(C.check_activations(runs, curves), UNPROBED)


def test_an_arm_that_diverged_on_every_seed_blocks_its_model_and_so_the_verdict():
    """resnet none blew up at its best rate on every seed: it has no probe measures left, but its
    model is not thereby absent; that comparison is blocked (did not train), so the models'
    common verdict is inconclusive, not the mlp's alone."""
    runs, curves = runs_cs()
    gone = (runs["model.name"] == "resnet") & (runs["norm.name"] == "none")
    runs.loc[gone, ["status", "final_acc"]] = ["diverged", 0.1]
    for check in PROBE_CHECKS:
        v = check(runs, curves)
        assert v.verdict == INCONCLUSIVE, (check.__name__, v.finding)
        assert v.facts["by_model"] == {"mlp": (REPRODUCED, ""), "resnet": (INCONCLUSIVE, BLOCKED)}, v.facts
        assert v.why == BLOCKED and untrained_arms(v) == {"none (resnet, its best rate 0.025)"}, v.blockers
        assert not [lab for lab, _, _ in v.estimates if lab.startswith("model=resnet")]  # not measured


def test_a_verdict_resting_on_one_model_says_so():
    runs, curves = runs_cs()
    mlp = runs[runs["model.name"] == "mlp"]
    v = C.check_gradients(mlp, curves[curves.run.isin(mlp.run)])
    assert v.verdict == REPRODUCED and set(v.facts["by_model"]) == {"mlp"}, v.finding
    assert set(C.check_gradients(runs, curves).facts["by_model"]) == {"mlp", "resnet"}


def test_an_inconclusive_verdict_over_models_says_why():
    """Each model's verdict and why are in facts["by_model"]; an inconclusive verdict's why is the
    first of rules' reasons, in the order rules.decision tries them, that an inconclusive model has."""
    runs, curves = runs_cs(seeds=1)
    for check in PROBE_CHECKS + [C.check_noisy_bn]:
        v = check(runs, curves)
        assert v.verdict == INCONCLUSIVE and v.why == TOO_FEW_SEEDS, (check.__name__, v.finding)
        assert v.facts["by_model"] == {m: (INCONCLUSIVE, TOO_FEW_SEEDS) for m in ("mlp", "resnet")}, v.facts
    # the mlp blocked (its unnormalized arm at chance), the ResNet on one seed: blocked comes first
    runs, curves = runs_cs(acc={"none": {"mlp": 0.1, "resnet": 0.4}})
    runs.loc[(runs["model.name"] == "mlp") & (runs["norm.name"] == "none"), "final_acc"] = 0.1
    runs = runs[(runs["model.name"] == "mlp") | (runs.seed == 0)]
    for check in PROBE_CHECKS:
        v = check(runs, curves)
        assert v.verdict == INCONCLUSIVE and v.why == BLOCKED, (check.__name__, v.finding)
        assert v.facts["by_model"] == {"mlp": (INCONCLUSIVE, BLOCKED), "resnet": (INCONCLUSIVE, TOO_FEW_SEEDS)}
        assert untrained_arms(v) == {"none (mlp, its best rate 0.025)"}, v.blockers


def test_reading_every_rate_instead_would_not_reproduce():
    """The same runs with no rate recorded are one arm per norm: none's 2x ICS at one rate of
    three is diluted below 1.5x. The best-rate selection is what makes the verdict above."""
    runs, curves = runs_cs()
    v = C.check_gradients(runs.drop(columns=["optim.lr"]), curves)
    assert v.verdict != REPRODUCED, v.finding


def test_ics_is_decided_on_the_relative_measure_not_the_absolute_one():
    runs, curves = runs_cs()
    v = C.check_gradients(runs, curves)
    assert v.verdict == REPRODUCED and {e for _, e, _ in v.estimates} == {ICS}
    # the absolute measure, shown beside (BN 4x larger), decides nothing
    assert all(m["bn"] > 3 * m["none"] for m in v.facts["ics_l2"].values()), v.facts["ics_l2"]


def test_an_arm_that_did_not_train_at_any_rate_blocks_its_model():
    """The unnormalized mlp at chance at every rate (the earlier runs' failure): its comparisons are
    inconclusive, not a BN win, even though its drift and ICS differ from BN's."""
    runs, curves = runs_cs(acc={"none": {"mlp": 0.1, "resnet": 0.4}})
    runs.loc[(runs["model.name"] == "mlp") & (runs["norm.name"] == "none"), "final_acc"] = 0.1
    for check in PROBE_CHECKS:
        v = check(runs, curves)
        assert v.verdict == INCONCLUSIVE and v.why == BLOCKED, (check.__name__, v.finding)
        assert untrained_arms(v) == {"none (mlp, its best rate 0.025)"}, v.blockers
        # the ResNet is still judged
        assert v.facts["by_model"] == {"mlp": (INCONCLUSIVE, BLOCKED), "resnet": (REPRODUCED, "")}, v.facts


def test_noisy_bn_trains_as_well_as_bn():
    runs, curves = runs_cs()
    v = C.check_noisy_bn(runs, curves)
    assert v.verdict == REPRODUCED, v.finding
    decided = {lab: e for lab, e, _ in v.estimates}
    assert decided["model=mlp"].minimum == decided["model=resnet"].minimum == 2.0
    for model in ("mlp", "resnet"):  # beside: the injected shift, noisy BN drifting more than BN
        assert estimate_of(v, f"model={model}; measure=activation drift").value > 0
    assert set(v.numbers.model) == {"mlp", "resnet"}


def test_noisy_bn_costing_five_points_is_not_reproduced():
    runs, curves = runs_cs(acc={"noisy_bn": 0.45})  # training accuracy 5 points below BN's too
    assert C.check_noisy_bn(runs, curves).verdict == NOT_REPRODUCED


def test_noisy_bn_at_chance_is_inconclusive_not_a_large_effect():
    runs, curves = runs_cs()
    noisy = (runs["model.name"] == "resnet") & (runs["norm.name"] == "noisy_bn")
    runs.loc[noisy, ["final_acc", "final.train/acc"]] = 0.1
    v = C.check_noisy_bn(runs, curves)
    assert v.verdict == INCONCLUSIVE and v.why == BLOCKED, v.finding
    assert untrained_arms(v) == {"noisy_bn (resnet, its best rate 0.025)"}, v.blockers


def test_noisy_bn_is_decided_on_training_accuracy_not_its_eval_mode_approximation():
    """Santurkar et al.: noisy BN nets 'perform better in terms of training'. A noisy ResNet whose
    eval mode (noise replaced by its mean) loses 20 test points but trains as BN does: reproduced,
    with the test-accuracy gap shown beside."""
    runs, curves = runs_cs()
    noisy = (runs["model.name"] == "resnet") & (runs["norm.name"] == "noisy_bn")
    runs.loc[noisy, "final_acc"] -= 0.2
    v = C.check_noisy_bn(runs, curves)
    assert v.verdict == REPRODUCED, v.finding
    assert estimate_of(v, "model=resnet; measure=final test accuracy").value == pytest.approx(20, abs=0.5)
    runs.loc[noisy, "final.train/acc"] -= 0.05  # now it trains 5 points worse: the ResNet's verdict flips
    v = C.check_noisy_bn(runs, curves)
    assert v.verdict == INCONCLUSIVE and v.why == DISAGREE, v.finding
    assert v.facts["by_model"] == {"mlp": (REPRODUCED, ""), "resnet": (NOT_REPRODUCED, "")}, v.facts


def test_noisy_bn_check_says_when_its_runs_are_missing():
    runs, curves = runs_cs()
    v = C.check_noisy_bn(runs[runs["norm.name"] != "noisy_bn"], curves)
    assert v.verdict == MISSING and "+exp=covariate_shift" in v.missing
    assert C.check_noisy_bn(runs.iloc[0:0], NO_CURVES).verdict == MISSING


def test_a_compared_arm_best_at_its_grids_edge_blocks_its_model():
    """On the grid 0.05-0.8 the mlp's none does best at its highest rate and the ResNet's at its
    lowest: each model's comparison is blocked (cells.EDGE_RULE), as for an arm that did not train,
    and so is the verdict. noisy BN's check compares bn with noisy_bn, both best inside the grid:
    none's edges are noted there, not blockers. With each none's runs past its edge (worse), the
    verdicts are given; with only the mlp's, the ResNet alone is blocked."""
    runs, curves = runs_cs(lrs=(0.05, 0.2, 0.8))
    for check in PROBE_CHECKS:
        v = check(runs, curves)
        (edge,) = notes_of(v, EDGE)
        assert edge.data == {"mlp none": (0.8, "highest", 0.05, 0.8), "resnet none": (0.05, "lowest", 0.05, 0.8)}
        assert v.verdict == INCONCLUSIVE and v.why == BLOCKED and EDGE_RULE in v.rule, (check.__name__, v.finding)
        assert v.facts["by_model"] == {"mlp": (INCONCLUSIVE, BLOCKED), "resnet": (INCONCLUSIVE, BLOCKED)}, v.facts
        assert edges(v) == {"mlp none": (0.8, "highest", 1.6), "resnet none": (0.05, "lowest", 0.025)}, v.blockers
    noisy = C.check_noisy_bn(runs, curves)
    assert noisy.verdict == REPRODUCED and not noisy.blockers and notes_of(noisy, EDGE), noisy.finding
    runs, curves = runs_cs()
    for check in PROBE_CHECKS:
        v = check(runs, curves)
        assert v.verdict == REPRODUCED and not v.blockers and not notes_of(v, EDGE), (check.__name__, v.finding)
    no_lower = runs[~((runs["model.name"] == "resnet") & (runs["norm.name"] == "none") & (runs["optim.lr"] == 0.025))]
    for check in PROBE_CHECKS:
        v = check(no_lower, curves[curves.run.isin(no_lower.run)])
        assert v.verdict == INCONCLUSIVE and v.why == BLOCKED, (check.__name__, v.finding)
        assert v.facts["by_model"] == {"mlp": (REPRODUCED, ""), "resnet": (INCONCLUSIVE, BLOCKED)}, v.facts
        assert edges(v) == {"resnet none": (0.05, "lowest", 0.025)}, v.blockers


def test_figures_draw_the_best_rate_runs_only():
    runs, curves = runs_cs()
    attached = with_config(curves, runs, ["norm.name", "seed", "model.name", "optim.lr"])
    best = C.best_rate_curves(runs, attached)
    assert set(best.run) == set(C.best_rate_runs(runs).run) and best.run.nunique() == 6 * 5
    assert {"norm.name", "model.name"} <= set(best.columns)  # the report's columns, not merged twice
    fig = C.FIGURES["internal_covariate_shift"][0](runs, attached, None)
    assert fig.axes


def test_cpu_protocol_trains_each_net_its_own_way():
    mlp = compose_config(["+exp=covariate_shift", "scale=cpu", "model=mlp", "norm=none"])
    res = compose_config(["+exp=covariate_shift", "scale=cpu", "model=resnet20", "norm=none"])
    assert (mlp.data.batch_size, mlp.trainer.max_steps, mlp.data.train_subset, mlp.data.augment) == (60, 20000, None, False)
    assert mlp.optim.weight_decay == 0.0 and mlp.probes.ics.every == 500 and mlp.trainer.log_every == 200
    assert (res.data.batch_size, res.trainer.epochs, res.data.train_subset, res.optim.weight_decay) == (128, 4, 10000, 5e-4)
    assert res.probes.activations.every == 25 and res.probes.ics.every == 50 and res.trainer.log_every == 39
    for cfg in (mlp, res):
        assert cfg.schedule.name == "linear" and cfg.schedule.warmup_fraction == 0.1 and cfg.scale.seeds == "0,1,2,3,4"


def test_noisy_bn_is_read_at_its_best_rate_for_training_not_for_test_accuracy():
    """The ResNet's noisy BN trains best at 0.8 (as well as BN) but its eval-mode test accuracy is
    best at 0.2, where it trains 10 points worse. Read at the rate test accuracy picks, the check
    would call noisy BN worse at training than it is (a review's finding, amended 2026-11-29)."""
    runs, curves = runs_cs()
    noisy = (runs["model.name"] == "resnet") & (runs["norm.name"] == "noisy_bn")
    runs.loc[noisy & (runs["optim.lr"] == 0.8), "final.train/acc"] = 0.6
    runs.loc[noisy & (runs["optim.lr"] == 0.2), "final.train/acc"] = 0.5
    v = C.check_noisy_bn(runs, curves)
    assert v.verdict == REPRODUCED, v.finding
    assert notes_of(v, BY_TRAINING), v.notes


def test_noisy_bn_says_its_rate_came_from_the_selection_where_there_was_one():
    """Measured on fresh seeds at the rate chosen on seed 100 by test accuracy, each arm holds one
    rate: the check names that deviation instead of claiming a choice by training accuracy."""
    runs, curves = runs_fresh()
    v = C.check_noisy_bn(runs, curves)
    assert notes_of(v, CHOSEN_BY_TEST) and not notes_of(v, BY_TRAINING), v.notes
    assert notes_of(C.check_noisy_bn(*runs_cs()), BY_TRAINING)


def test_each_net_gets_its_own_row_of_panels():
    """The mlp trains 20,000 steps and the ResNet 312: one step axis for both would squeeze the
    ResNet into the mlp's first percent, so every figure draws a row of panels per net."""
    runs, curves = runs_cs(steps=range(0, 1001, 250))
    attached = with_config(curves, runs, ["norm.name", "seed", "model.name", "optim.lr"])
    res = attached["model.name"] == "resnet"
    attached.loc[res, "step"] = attached.loc[res, "step"] // 100  # the ResNet's shorter run
    for name, panels in (("internal_covariate_shift", 2), ("loss_landscape", 3)):
        fig = C.FIGURES[name][0](runs, attached, None)
        titles = [ax.get_title() for ax in fig.axes]
        assert len(fig.axes) == 2 * panels and sum(t.startswith("mlp: ") for t in titles) == panels, titles
        mlp, resnet = fig.axes[0], fig.axes[panels]
        assert mlp.get_xlim()[1] > 900 and resnet.get_xlim()[1] < 20, (mlp.get_xlim(), resnet.get_xlim())
    fig = C.FIGURES["activation_percentiles"][0](runs, attached, None)
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("mlp: ") for t in titles) and any(t.startswith("resnet: ") for t in titles), titles
    one = attached[attached["model.name"] == "mlp"]
    fig = C.FIGURES["internal_covariate_shift"][0](runs, one, None)
    assert len(fig.axes) == 2 and not fig.axes[0].get_title().startswith("mlp: ")


def test_each_net_sweeps_its_own_rates():
    """covariate_lr picks each net's rate from one x2 ladder: the published runs' low and high
    (mlp 0.2 and 0.8, ResNet-20 0.05 and 0.2) and the rungs between and below; the ResNet's test
    accuracy is read once, at the end of its cpu run."""
    rungs = ("quarter", "half", "low", "double", "high")
    rates = {(m, p): compose_config(["+exp=covariate_shift", "scale=cpu", f"model={m}", f"covariate_lr={p}"]).optim.lr
             for m in ("mlp", "resnet20") for p in rungs}
    assert [rates["mlp", p] for p in rungs] == [0.05, 0.1, 0.2, 0.4, 0.8]
    assert [rates["resnet20", p] for p in rungs] == [0.0125, 0.025, 0.05, 0.1, 0.2]
    res = compose_config(["+exp=covariate_shift", "scale=cpu", "model=resnet20"])
    assert res.trainer.eval_every >= 312 and compose_config(["+exp=covariate_shift", "scale=cpu", "model=mlp"]
                                                            ).trainer.eval_every == 2000


# ------------------------------------------------ the checks of 2026-12-07: inputs, injected shift

from bnstudy.analysis import selection  # noqa: E402
from bnstudy.claims.covariate_shift.common import SEEN_KIND  # noqa: E402
from bnstudy.claims.covariate_shift.injected_shift import NO_SHIFT  # noqa: E402

from conftest import blockers_of  # noqa: E402

GRID = {"mlp": (0.1, 0.2, 0.4), "resnet": (0.025, 0.05, 0.1)}  # covariate_lr {half, low, double}
NORMS = ("bn", "none", "noisy_bn", "noisy_bn_example")


def runs_fresh(shift=None, acc=None, seeds=range(5, 10), selection_seed=100, best=None, one_phase=False):
    """The two-phase protocol: every (model, norm) arm over its net's grid on seed 100, best at
    the middle rate (or `best`: {(model, norm): rate}), 5 points less elsewhere; then seeds 5-9 at
    that rate, with probe rows. `shift`: how far each arm's norm-layer inputs move over training
    ((model, norm) or norm -> the 50th percentile's travel; bn 0.5, none and both noisy arms 2.0),
    each of four units' means as far, half of them the other way, against a spread of 2.08;
    BN's outputs barely move (0.1), the others' outputs move as their inputs. Drift = travel /
    2.08 (the 15-85 spread), so none's and the noisy arms' input drift is 4x BN's. `acc`: test
    accuracy by norm (bn and the noisy arms 50%, none 40%); training accuracy 10 points above.
    `one_phase`: seeds only, at the best rate, no selection seeds (the published runs' shape)."""
    shift = {"bn": 0.5, "none": 2.0, "noisy_bn": 2.0, "noisy_bn_example": 2.0, **(shift or {})}
    acc = {"bn": 0.5, "none": 0.4, "noisy_bn": 0.5, "noisy_bn_example": 0.5, **(acc or {})}
    rng, runs, rows = np.random.default_rng(5), [], []
    for model, norm in itertools.product(("mlp", "resnet"), NORMS):
        top = (best or {}).get((model, norm), GRID[model][1])
        phases = [(s, top) for s in seeds] if one_phase else (
            [(selection_seed, lr) for lr in GRID[model]] + [(s, top) for s in seeds])
        for s, lr in phases:
            run = f"covariate_shift/{model}/{norm}/{lr}/{s}"
            a = acc[norm] if isinstance(acc[norm], float) else acc[norm][model]
            test = a - (0.0 if lr == top else 0.05) + noise(rng)
            runs.append(row("covariate_shift", norm, s, test, run=run,
                            **{"model.name": model, "optim.lr": lr, "final.train/acc": test + 0.1,
                               "data.name": "cifar10_folder",
                               "scale.selection_seeds": "" if one_phase else str(selection_seed)}))
            travel = shift.get((model, norm), shift[norm])
            for step in range(0, 101, 25):
                t = step / 100
                for layer in ("layer1.norm", "layer2.norm"):
                    for side, d in (("in", travel), ("out", 0.1 if norm == "bn" else travel)):
                        for p, z in (("p15", -1.04), ("p50", 0.0), ("p85", 1.04)):
                            rows.append((run, step, f"act/{layer}.{side}.{p}", d * t + z + noise(rng, 0.01)))
                    for k, sign in enumerate((1, -1, 1, -1)):  # units moving apart: the pooled 50th stays put
                        rows.append((run, step, f"chan/{layer}.in.c{k:02d}.mean", sign * travel * t
                                     + noise(rng, 0.01)))
                        rows.append((run, step, f"chan/{layer}.in.c{k:02d}.std", 2.08 + noise(rng, 0.01)))
    curves = pd.DataFrame(rows, columns=["run", "step", "metric", "value"]).assign(epoch=0.0, source="probes")
    return pd.DataFrame(runs), curves


def seen_published():
    """Runs shaped as the published ones: seeds 0-4 of one phase, at scale=cpu on cifar10_folder."""
    return runs_fresh(seeds=range(5), one_phase=True)


def test_the_study_yaml_names_its_arms_as_the_selection_reads_them():
    """Each sweeper arm of the study composes to runs that selection.arm_names calls by the arm's
    name, so `select` prints the rates the measuring phase reads from hydra.sweeper.chosen."""
    from hydra import compose, initialize_config_dir

    from bnstudy.config import CONF_DIR
    from bnstudy.sweep_status import planned_jobs

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["+exp=covariate_shift", "scale=cpu"], return_hydra_config=True)
        arms = dict(cfg.hydra.sweeper.arms)
        jobs, _ = planned_jobs(cfg)
        chosen = "{" + ", ".join(f"{a}: 0.1" for a in arms) + "}"
        measure, _ = planned_jobs(compose("config", overrides=[
            "+exp=covariate_shift", "scale=cpu", "hydra.sweeper.phase=measure", f"hydra.sweeper.chosen={chosen}"],
            return_hydra_config=True))
    for name in arms:
        c = compose_config(["+exp=covariate_shift", "scale=cpu", *(f"{k}={v}" for k, v in arms[name].items())])
        df = pd.DataFrame([{"norm.name": c.norm.name, "model.name": c.model.name}])
        assert selection.arm_names(df).iloc[0] == name
    assert set(arms) == {f"{m}{n}" for m in ("", "mlp_") for n in NORMS}
    seeds = lambda js: {o for j in js for o in j if o.startswith("seed=")}  # noqa: E731
    assert len(jobs) == 8 * 3 and seeds(jobs) == {"seed=100"}
    assert len(measure) == 8 * 5 and seeds(measure) == {f"seed={s}" for s in range(5, 10)}
    assert all("covariate_lr=chosen" in j and "optim.lr=0.1" in j for j in measure)
    rungs = {o for j in jobs for o in j if o.startswith("covariate_lr=")}
    assert rungs == {"covariate_lr=half", "covariate_lr=low", "covariate_lr=double"}
    assert compose_config(["+exp=covariate_shift", "scale=cpu"]).scale.selection_seeds == "100"


def test_the_measuring_runs_decide_the_input_drift():
    """Selection on seed 100, measured on seeds 5-9: none's inputs drift 4x BN's in both nets.
    BN's output drift (the published check's measure) is shown beside, not decided."""
    runs, curves = runs_fresh()
    v = C.check_input_drift(runs, curves)
    assert v.verdict == REPRODUCED, v.finding
    assert v.facts["by_model"] == {"mlp": (REPRODUCED, ""), "resnet": (REPRODUCED, "")}, v.facts
    for model in ("mlp", "resnet"):
        assert estimate_of(v, f"model={model}").value == pytest.approx(2.0, abs=0.1)  # log2 of 4x
        beside = estimate_of(v, f"model={model}; measure=BN's output drift")
        assert beside.value == pytest.approx(np.log2(20), abs=0.2) and np.isnan(
            [e for lab, e, _ in v.estimates if lab.endswith("output drift")][0].minimum)
        assert v.facts["drift"][model]["bn_out"] < v.facts["drift"][model]["bn_in"]
    (rates,) = notes_of(v, BEST_RATES)
    assert rates.data == {f"{m} {n}": GRID[m][1] for m in ("mlp", "resnet") for n in NORMS}
    assert not blockers_of(v, SEEN_KIND) and not notes_of(v, SEEN_KIND)


def test_the_input_drift_reads_the_inputs_not_the_normalized_outputs():
    """BN's inputs drift as much as none's while its outputs stay put: the published check (the
    outputs) reads BN as stable; the inputs' check does not."""
    runs, curves = runs_fresh(shift={"bn": 2.0})
    assert C.check_activations(runs, curves).verdict == REPRODUCED
    v = C.check_input_drift(runs, curves)
    assert v.verdict == NOT_REPRODUCED, v.finding
    assert estimate_of(v, "model=mlp").value == pytest.approx(0.0, abs=0.1)


def test_the_seen_seeds_never_decide_the_new_checks():
    """The published runs' shape (seeds 0-4, one phase, cpu, cifar10_folder) with input rows that
    would decide: blocked, 'seen before the rule'. Beside fresh runs they are left out: here they
    read the opposite way (BN's inputs drifting as none's), and the fresh runs still decide."""
    runs, curves = seen_published()
    for check in (C.check_input_drift, C.check_injected_shift, C.check_noisy_bn_shifted):
        v = check(runs, curves)
        assert v.verdict == INCONCLUSIVE and v.why == BLOCKED, (check.__name__, v.finding)
        (b,) = blockers_of(v, SEEN_KIND)
        assert b.data == {"runs": len(runs)}, v.blockers
        assert v.facts["by_model"] == {m: (INCONCLUSIVE, BLOCKED) for m in ("mlp", "resnet")}, v.facts
    seen, seen_curves = runs_fresh(seeds=range(5), one_phase=True, shift={"bn": 2.0})
    fresh, fresh_curves = runs_fresh()
    both, both_curves = pd.concat([seen, fresh], ignore_index=True), pd.concat([seen_curves, fresh_curves])
    v = C.check_input_drift(both, both_curves)
    assert v.verdict == REPRODUCED and not v.blockers, v.finding
    assert [n.data for n in notes_of(v, SEEN_KIND)] == [{"runs": len(seen)}]
    # the published checks read such runs as before: no guard there
    assert C.check_activations(seen, seen_curves).verdict == REPRODUCED


def test_runs_without_the_inputs_probed_leave_the_new_checks_untested():
    """The published curves.csv.gz was cut to the norm layers' outputs: without `.in` rows the
    new checks say which rows they need."""
    runs, curves = runs_fresh()
    outputs = curves[~curves.metric.str.contains(r"\.in\.")]
    for check in (C.check_input_drift, C.check_injected_shift):
        v = check(runs, outputs)
        assert v.verdict == MISSING and "chan/*norm*.in" in v.missing, (check.__name__, v.missing)
    v = C.check_noisy_bn_shifted(runs, outputs)  # trained, but whether the noise shifted anything is unknown
    assert v.verdict == INCONCLUSIVE and {b.subject for b in blockers_of(v, NO_SHIFT)} == {
        "noisy_bn_example (mlp)", "noisy_bn_example (resnet)"}, v.blockers
    assert all(b.data["shift"] is None for b in blockers_of(v, NO_SHIFT))


def test_a_choice_at_the_grids_edge_measures_nothing():
    """The ResNet's BN chose its lowest rate on seed 100: the selection asks for the next rung
    before any measuring run, so the measuring runs are not read and the checks wait."""
    runs, curves = runs_fresh(best={("resnet", "bn"): 0.025})
    v = C.check_input_drift(runs, curves)
    assert v.verdict == MISSING and any("not read" in n for n in v.notes), v.notes


def test_the_per_example_noise_decides_the_injected_shift_and_the_channel_noise_is_beside():
    """Per-example noise drifts 4x BN's inputs in both nets (reproduced); the per-channel noise,
    as in the published mlp, no more than BN's there (not reproduced beside, deciding nothing)."""
    runs, curves = runs_fresh(shift={("mlp", "noisy_bn"): 0.5})
    v = C.check_injected_shift(runs, curves)
    assert v.verdict == REPRODUCED, v.finding
    assert v.facts["by_arm"] == {"noisy_bn_example": {"mlp": (REPRODUCED, ""), "resnet": (REPRODUCED, "")},
                                 "noisy_bn": {"mlp": (NOT_REPRODUCED, ""), "resnet": (REPRODUCED, "")}}, v.facts
    assert estimate_of(v, "arm=noisy_bn; model=mlp").value == pytest.approx(0.0, abs=0.1)
    assert set(v.numbers.arm) == {"noisy_bn_example", "noisy_bn"}
    runs, curves = runs_fresh(shift={("resnet", "noisy_bn_example"): 0.5})
    v = C.check_injected_shift(runs, curves)
    assert v.verdict == INCONCLUSIVE and v.why == DISAGREE, v.finding
    assert v.facts["by_model"] == {"mlp": (REPRODUCED, ""), "resnet": (NOT_REPRODUCED, "")}


def test_noisy_bn_trains_as_well_where_its_noise_shifted_the_inputs():
    runs, curves = runs_fresh(shift={("mlp", "noisy_bn"): 0.5})
    v = C.check_noisy_bn_shifted(runs, curves)
    assert v.verdict == REPRODUCED and not v.blockers, v.finding
    assert v.facts["shift"]["noisy_bn_example"] == {"mlp": (REPRODUCED, ""), "resnet": (REPRODUCED, "")}
    # the channel noise shifted nothing in the mlp: that comparison is inconclusive, for that reason
    assert v.facts["by_arm"]["noisy_bn"] == {"mlp": (INCONCLUSIVE, BLOCKED), "resnet": (REPRODUCED, "")}, v.facts
    assert estimate_of(v, "model=mlp").value == pytest.approx(0.0, abs=1.0)  # points, bn minus noisy
    # costing 5 points of training accuracy: not reproduced
    runs, curves = runs_fresh(acc={"noisy_bn_example": 0.45})
    assert C.check_noisy_bn_shifted(runs, curves).verdict == NOT_REPRODUCED


def test_a_noise_that_shifted_nothing_blocks_its_comparison_not_a_win():
    """Per-example noise that left the ResNet's inputs as stable as BN's trains as well as BN
    there, which says nothing about training under covariate shift: that model is blocked,
    'injected no measurable shift', and so is the verdict."""
    runs, curves = runs_fresh(shift={("resnet", "noisy_bn_example"): 0.5})
    v = C.check_noisy_bn_shifted(runs, curves)
    assert v.verdict == INCONCLUSIVE and v.why == BLOCKED, v.finding
    assert v.facts["by_model"] == {"mlp": (REPRODUCED, ""), "resnet": (INCONCLUSIVE, BLOCKED)}, v.facts
    (b,) = blockers_of(v, NO_SHIFT)
    assert b.subject == "noisy_bn_example (resnet)" and b.data["shift"] == (NOT_REPRODUCED, ""), v.blockers


def test_unit_drift_ignores_a_change_of_scale_and_counts_units_moving_apart():
    """The input-drift checks read each unit's mean against its own spread: a unit that only grows
    (as a norm layer's input does with its weights' norm) does not drift; units whose means move
    apart against a fixed spread do, where the percentiles pooled over them stay put."""
    from bnstudy.claims.covariate_shift.activations import activation_drift
    from bnstudy.claims.covariate_shift.inputs import unit_drift

    rows, pooled = [], []
    for step, s in enumerate((1.0, 2.0, 4.0, 8.0)):
        rows += [("grows", "l.in", "c00", step, "mean", s), ("grows", "l.in", "c00", step, "std", s)]
        for unit, sign in (("c00", 1), ("c01", -1)):  # means step apart; spread 2
            rows += [("apart", "l.in", unit, step, "mean", sign * step), ("apart", "l.in", unit, step, "std", 2.0)]
        pooled += [("apart", "l.in", step, stat, q) for stat, q in (("p15", -step - 1.0), ("p50", 0.0),
                                                                    ("p85", step + 1.0))]
        # a unit with almost no spread (fed by dead ReLUs): its ratio explodes; the median over units holds
        rows += [("apart", "l.in", "c02", step, "mean", 0.1 * step), ("apart", "l.in", "c02", step, "std", 1e-6)]
    units = pd.DataFrame(rows, columns=["run", "layer", "unit", "step", "stat", "value"])
    drift = unit_drift(units).set_index("run").drift
    assert drift["grows"] == pytest.approx(0) and drift["apart"] == pytest.approx(1.5)  # 3 steps / spread 2
    act = pd.DataFrame(pooled, columns=["run", "layer", "step", "stat", "value"])
    assert activation_drift(act).drift.iloc[0] < 1.0  # the pooled measure reads less: its median never moves


def test_the_studys_runs_probe_the_units_the_input_drift_reads(tmp_path):
    """A real (tiny) run of each net as the study configures it writes `chan/` rows for the first
    probes.activations.channels units of every norm layer's input, which unit_drift turns into one
    drift per layer."""
    from bnstudy.claims.covariate_shift.inputs import unit_drift, unit_rows
    from bnstudy.run import run

    tiny = ["scale=smoke", "data.synthetic_train_size=256", "data.synthetic_test_size=100", "data.train_subset=null",
            "data.test_subset=null", "data.batch_size=32", "trainer.max_steps=8", "device=cpu"]
    for model, layers in (("mlp", 3), ("resnet20", 19)):
        out = tmp_path / model
        cfg = compose_config(["+exp=covariate_shift", f"model={model}", "norm=bn", *tiny])
        summary = run(cfg, out)
        assert summary["status"] == "completed", summary.get("error")
        probes = pd.read_csv(out / "probes.csv").assign(run=model)
        units = unit_rows(probes)
        k = cfg.probes.activations.channels
        assert k > 0 and units.groupby("layer").unit.nunique().eq(k).all() and units.layer.nunique() == layers
        drift = unit_drift(units)
        assert len(drift) == layers and drift.drift.gt(0).all(), drift
