"""Each claim's rule on hand-made run tables where the answer is known: reproduced, not
reproduced and inconclusive, and missing runs said as such.

The factories here make tidy tables shaped like bnstudy.analysis.results.load's output (one
row per run; probe rows in long format); test_report.py draws its figures from them too.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from bnstudy.analysis.cells import (DATA_SETS, EDGE_RULE, SCALES, UNFINISHED, at_best_rate, edge_rates,
                                    incomplete_cells, study_runs)
from bnstudy.analysis.rules import (BLOCKED, EDGE, HOLDS_MINIMUM, INCOMPLETE, INCONCLUSIVE, MISSING, NOT_REPRODUCED,
                                    REPRODUCED, TOO_FEW_SEEDS)
from bnstudy.analysis.stats import bins_span
from bnstudy.claims import (CLAIMS, covariate_shift, depth, faster_training, higher_lr, inference, init,
                            intensity_shift, regularization, small_batch, steps_to_target)
from conftest import blockers_of, estimate_of, notes_of, untrained_arms

_ids = itertools.count()
NO_CURVES = pd.DataFrame(columns=["run", "step", "epoch", "metric", "value", "source"])


def row(study, norm, seed, acc, status="completed", **cfg) -> dict:
    r = {"run": f"{study}/{norm}/{next(_ids)}", "study": study, "status": status, "norm.name": norm, "seed": seed,
         "scale.name": "cpu", "data.name": "synthetic", "model.num_classes": 10, "steps": 400, "epochs": 4.0,
         "final_test_acc": acc if status == "completed" else None, "best_test_acc": acc,
         "final_acc": acc if status == "completed" else (0.1 if status == "diverged" else None)}
    r.update(cfg)
    return r


def noise(rng, sd=0.004):
    return float(rng.normal(0, sd))


def edges(v) -> dict:
    """A verdict's EDGE blockers as {cell: (best, side, beyond)}."""
    return {b.subject: (b.data["best"], b.data["side"], b.data["beyond"]) for b in blockers_of(v, EDGE)}


def kinds(notes) -> dict:
    """A list of notes (rules.Note) as {kind: its data}."""
    return {getattr(n, "kind", ""): getattr(n, "data", None) for n in notes}


LR_GRID = (0.0125, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)  # x2: resolves a 3x ratio


def runs_lr(bn_top=1.6, none_top=0.1, seeds=5, bn_faster=True, lrs=LR_GRID, skip_top=0.4, skip_steps=300):
    """lr_sweep: each arm trains (70%) up to its top rate and diverges above it; the faster of bn
    and none reaches 30% at step 100, the other at step 300, and none + SkipInit (norm.name none,
    model.skipinit) at `skip_steps` (evaluated every 10 steps). skip_top=None: no SkipInit arm."""
    rng, rows = np.random.default_rng(0), []
    arms = [("bn", False, bn_top), ("none", False, none_top)] + ([("none", True, skip_top)] if skip_top else [])
    for lr, s, (norm, skip, top) in itertools.product(lrs, range(seeds), arms):
        ok = lr <= top
        steps = skip_steps if skip else 100 if (norm == "bn") == bn_faster else 300
        rows.append(row("lr_sweep", norm, s, 0.7 + noise(rng) if ok else None, "completed" if ok else "diverged",
                        **{"optim.lr": lr, "model.skipinit": skip, "steps_to_test_acc.0.3": steps if ok else None,
                           "steps_to_test_acc.0.9": None, "trainer.eval_every": 10}))
    return pd.DataFrame(rows)


STEPS_RATES = {("bn", False): 0.05, ("none", False): 0.1, ("none", True): 0.2}


def runs_steps(bn_steps=100, none_steps=200, skip_steps=200, seeds=10, every=8, none_acc=0.36):
    """steps_to_target: each arm at one rate, tested every `every` steps; a seed reaches 30% at
    its arm's steps give or take ~6% (rounded up to the evaluation that saw it), and 40% only
    for BN (none ends at `none_acc`)."""
    rng, rows = np.random.default_rng(7), []
    arms = {("bn", False): (bn_steps, 0.5), ("none", False): (none_steps, none_acc), ("none", True): (skip_steps, 0.4)}
    for s, ((norm, skip), (steps, acc)) in itertools.product(range(seeds), arms.items()):
        seen = every * np.ceil(steps * np.exp(rng.normal(0, 0.06)) / every)
        rows.append(row("steps_to_target", norm, 10 + s, acc + noise(rng),
                        **{"optim.lr": STEPS_RATES[norm, skip], "model.skipinit": skip, "trainer.eval_every": every,
                           "steps": 312, "epochs": 4.0, "steps_to_test_acc.0.3": seen,
                           "steps_to_test_acc.0.4": seen * 1.5 if norm == "bn" else None}))
    return pd.DataFrame(rows)


def runs_batch(bn_small=0.5, gn_small=0.78, seeds=3, sd=0.004, lrs=(0.025, 0.05, 0.1, 0.2)):
    """batch_size_sweep: at its best base rate (0.1 at batch >= 16, 0.05 below, each inside the
    default grid) a norm's accuracy falls linearly in log2(batch) from 80% at 128 to *_small at 2;
    each doubling of the rate away from the best costs 5 points."""
    rng, rows = np.random.default_rng(1), []
    for b, lr, s in itertools.product((2, 4, 16, 128), lrs, range(seeds)):
        f = np.log2(b / 2) / 6
        off = 0.05 * abs(np.log2(lr / (0.1 if b >= 16 else 0.05)))
        for norm, small in (("bn", bn_small), ("gn", gn_small)):
            rows.append(row("batch_size_sweep", norm, s, small + (0.8 - small) * f - off + noise(rng, sd),
                            **{"data.batch_size": b, "optim.lr": lr}))
    return pd.DataFrame(rows)


def runs_init(bn_sensitive=False, seeds=3):
    """init_sweep: none loses accuracy away from scale 1 (and diverges at 10); bn only if bn_sensitive."""
    rng, rows = np.random.default_rng(2), []
    for name, sc, s in itertools.product(("kaiming", "xavier", "orthogonal"), (0.1, 1.0, 2.0, 10.0), range(seeds)):
        bad = abs(np.log10(sc))
        rows.append(row("init_sweep", "none", s, 0.75 - 0.5 * bad + noise(rng) if sc < 10 else None,
                        "completed" if sc < 10 else "diverged", **{"init.name": name, "init.scale": sc}))
        bn_acc = 0.8 - (0.7 * bad if bn_sensitive else 0.0) + noise(rng)
        rows.append(row("init_sweep", "bn", s, max(bn_acc, 0.1), **{"init.name": name, "init.scale": sc}))
    return pd.DataFrame(rows)


def runs_depth(bn_deep_penalty=0.03, none_deep_penalty=0.6, seeds=3):
    rng, rows = np.random.default_rng(3), []
    for d, plain, s in itertools.product((8, 20, 56), (False, True), range(seeds)):
        f = d / 56 if plain else 0.1 * d / 56
        for norm, pen in (("bn", bn_deep_penalty), ("none", none_deep_penalty)):
            rows.append(row("depth_sweep", norm, s, max(0.1, 0.85 - pen * f) + noise(rng),
                            **{"model.depth": d, "model.plain": plain}))
    return pd.DataFrame(rows)


def runs_reg(bn_gap=0.13, none_gap=0.17, gn_gap=0.17, none_dropout_gain=0.06, bn_dropout_gain=0.0, fit=True,
             seeds=3):
    """regularization: test accuracy 83% without dropout, plus each norm's dropout gain with it (gn's
    0.03); eval-mode train-slice accuracy = 83% + the norm's gap (>= 95%: fitted), or 70% when not
    fitted; so dropout closes a norm's gap by its gain. One rate (no optim.lr column)."""
    rng, rows = np.random.default_rng(4), []
    for p, s in itertools.product((0.0, 0.3), range(seeds)):
        for norm, gap, gain in (("bn", bn_gap, bn_dropout_gain), ("none", none_gap, none_dropout_gain),
                                ("gn", gn_gap, 0.03)):
            test = 0.83 + (gain if p > 0 else 0.0) + noise(rng)
            train = min(1.0, 0.83 + gap + noise(rng)) if fit else 0.7
            rows.append(row("regularization", norm, s, test, **{"model.dropout": p, "final.train_eval/acc": train,
                                                                 "final.train/acc": 0.5}))
    return pd.DataFrame(rows)


def runs_infer(batch_stats_penalty=0.3, seeds=3):
    """inference: batch-statistics accuracy 80% - penalty/sqrt(B); running statistics 80%."""
    rng, rows = np.random.default_rng(5), []
    for s in range(seeds):
        r = row("inference", "bn", s, 0.8)
        for b in (2, 16, 128):
            r[f"final.infer/acc_running.bs{b}"] = 0.8 + noise(rng)
            r[f"final.infer/acc_batch.bs{b}"] = 0.8 - batch_stats_penalty / np.sqrt(b) + noise(rng)
        r["final.infer/acc_precise"] = 0.805
        rows.append(r)
    return pd.DataFrame(rows)


def runs_shift(bn_cost=0.0, none_cost=0.2, seeds=3):
    """intensity_shift: each norm 80% on clean test images when trained clean, 80% - cost when
    trained with intensity variation; shifted test images cost the clean-trained nets 10 points."""
    rng, rows = np.random.default_rng(6), []
    for (norm, cost), on, s in itertools.product((("bn", bn_cost), ("none", none_cost), ("gn", 0.01)),
                                                 (False, True), range(seeds)):
        clean = 0.8 - (cost if on else 0.0) + noise(rng)
        rows.append(row("intensity_shift", norm, s, clean, **{"data.intensity_shift": on, "final.test/acc": clean,
                                                               "final.test_shifted/acc": clean - 0.1}))
    return pd.DataFrame(rows)


def runs_probes(bn_stable=True, bn_less_ics=False, bn_smoother=True, seeds=3, steps=range(0, 2001, 200),
                noisy_cost=0.0):
    """covariate_shift runs and their probe rows (percentiles, histograms, ICS, landscape). noisy_bn
    runs: accuracy 70% - noisy_cost (bn and none 70%; sd 0.4 points; training accuracy 10 points higher), BN's ICS and landscape, and
    the drift of the unstable arm (the injected shift); noisy_bn_example runs as noisy_bn's at no cost. A norm
    layer's input (`.in`) moves as its output, and so do two of its units (`chan/`), in opposite directions."""
    rng, acc_rng, runs, rows = np.random.default_rng(7), np.random.default_rng(17), [], []
    for norm, s in itertools.product(("bn", "none", "noisy_bn", "noisy_bn_example"), range(seeds)):
        run = f"covariate_shift/{norm}/{s}"
        acc = 0.7 - (noisy_cost if norm == "noisy_bn" else 0.0) + noise(acc_rng)
        runs.append(row("covariate_shift", norm, s, acc, run=run, **{"final.train/acc": acc + 0.1}))
        like_bn = norm in ("bn", "noisy_bn", "noisy_bn_example")
        stable = (norm == "bn") == bn_stable if not norm.startswith("noisy_bn") else False
        for step in steps:
            t = step / max(steps)
            shift, scale = (0.0, 1.0) if stable else (2.0 * t, 1 + 3 * t)
            for layer in ("layer1.0.norm1.out", "layer2.0.norm1.out", "layer3.0.norm2.out", "layer1.0.out"):
                for p, z in (("p15", -1.04), ("p50", 0.0), ("p85", 1.04)):
                    rows.append((run, step, f"act/{layer}.{p}", shift + scale * z + noise(rng, 0.03)))
                    if "norm" in layer:  # no draw, so the other rows' noise stays as it was; a little drift
                        rows.append((run, step, f"act/{layer[:-len('out')]}in.{p}", shift + scale * z + 0.05 * t))
                for k, sign in enumerate((1, -1) if "norm" in layer else ()):  # two units of the input, apart
                    unit = f"chan/{layer[:-len('out')]}in.c{k:02d}"
                    rows += [(run, step, f"{unit}.mean", sign * (shift + 0.05 * t)), (run, step, f"{unit}.std", scale)]
                centers = np.linspace(-4.75, 4.75, 20)
                dens = np.exp(-0.5 * ((centers - shift) / scale) ** 2)
                rows += [(run, step, f"hist/{layer}.bin{k:02d}", d) for k, d in enumerate(dens / dens.sum())]
            less = like_bn == bn_less_ics
            for prm in ("layer1.0.conv2.weight", "layer3.0.conv1.weight"):
                rel = (0.1 if less else 0.2) * (1 + noise(rng, 0.05))
                rows.append((run, step, f"ics/{prm}.l2", 5 * rel))
                rows.append((run, step, f"ics/{prm}.rel", rel))
                rows.append((run, step, f"ics/{prm}.cos", (0.6 if less else 0.3) + noise(rng, 0.02)))
            w = 0.1 if like_bn == bn_smoother else 1.0
            base = 2.3 * (1 - 0.6 * t)
            rows += [(run, step, "landscape/loss_min", base - 0.2 * w), (run, step, "landscape/loss_max", base + w),
                     (run, step, "landscape/grad_pred", w * (1 + noise(rng, 0.05))),
                     (run, step, "landscape/grad_pred_rel", w * (1 + noise(rng, 0.05))),
                     (run, step, "landscape/beta_smooth", 5 * w * (1 + noise(rng, 0.05)))]
    curves = pd.DataFrame(rows, columns=["run", "step", "metric", "value"]).assign(epoch=0.0, source="probes")
    return pd.DataFrame(runs), curves


# ---------------------------------------------------------------- each claim, both ways

CASES = [  # (check, holds, fails)
    (faster_training.check, runs_lr(), runs_lr(bn_faster=False)),
    (faster_training.check_skipinit, runs_lr(), runs_lr(skip_steps=100)),
    (steps_to_target.check, runs_steps(), runs_steps(none_steps=110)),
    (steps_to_target.check_skipinit, runs_steps(), runs_steps(skip_steps=105)),
    (higher_lr.check, runs_lr(bn_top=1.6, none_top=0.1), runs_lr(bn_top=0.1, none_top=0.1)),
    (small_batch.check, runs_batch(), runs_batch(bn_small=0.8)),
    (regularization.check, runs_reg(), runs_reg(bn_gap=0.17, none_gap=0.13)),
    (init.check, runs_init(), runs_init(bn_sensitive=True)),
    (depth.check, runs_depth(), runs_depth(bn_deep_penalty=0.6, none_deep_penalty=0.03)),
    (inference.check, runs_infer(), runs_infer(batch_stats_penalty=-0.1)),
    (intensity_shift.check, runs_shift(), runs_shift(bn_cost=0.1)),
]
IDS = [c[0].__module__.rsplit(".", 1)[-1] + ("" if c[0].__name__ == "check" else f".{c[0].__name__}") for c in CASES]


@pytest.mark.parametrize("check,holds,fails", CASES, ids=IDS)
def test_rule_both_ways(check, holds, fails):
    good, bad = check(holds, NO_CURVES), check(fails, NO_CURVES)
    assert good.verdict == REPRODUCED, good.finding
    assert bad.verdict == NOT_REPRODUCED, bad.finding
    for v in (good, bad):
        assert v.rule and v.finding and len(v.numbers) and not v.missing
        assert v.estimate is not None and v.estimate.has_interval
        # the effect, its interval and the minimum effect lead the finding, beside the verdict
        assert v.effect_line() and v.finding.startswith(v.effect_line()), v.finding


@pytest.mark.parametrize("runs", [runs_batch(bn_small=0.8, seeds=2, sd=0.15), runs_batch(seeds=2, sd=0.15)],
                         ids=["point-estimate-short", "point-estimate-beyond"])
def test_two_noisy_seeds_reach_no_verdict_either_way(runs):
    """A point estimate on either side of the minimum effect is not a verdict: with two seeds
    whose spread swamps the effect, the verdict is inconclusive and says how many seeds would do."""
    v = small_batch.check(runs, NO_CURVES)
    assert v.verdict == INCONCLUSIVE, v.finding
    assert v.why == HOLDS_MINIMUM and not v.blockers


PROBE_CASES = [
    (covariate_shift.check_activations, dict(bn_stable=True), dict(bn_stable=False)),
    (covariate_shift.check_gradients, dict(bn_less_ics=True), dict(bn_less_ics=False)),
    (covariate_shift.check_landscape, dict(bn_smoother=True), dict(bn_smoother=False)),
]


@pytest.mark.parametrize("check,holds,fails", PROBE_CASES, ids=[c[0].__name__ for c in PROBE_CASES])
def test_probe_rule_both_ways(check, holds, fails):
    good, bad = check(*runs_probes(**holds)), check(*runs_probes(**fails))
    assert good.verdict == REPRODUCED, good.finding
    assert bad.verdict == NOT_REPRODUCED, bad.finding


@pytest.mark.parametrize("check,key", [(covariate_shift.check_gradients, "bn_less_ics"),
                                       (covariate_shift.check_landscape, "bn_smoother")])
def test_probe_measures_compared_within_each_model(check, key):
    """An mlp and a ResNet are two populations: BN better in one and worse in the other is
    inconclusive, with one row per model, not a pooled mean."""
    (ra, ca), (rb, cb) = runs_probes(**{key: True}), runs_probes(**{key: False})
    rename = lambda df: df.assign(run=df.run + "/mlp")  # noqa: E731
    runs = pd.concat([ra.assign(**{"model.name": "resnet"}), rename(rb).assign(**{"model.name": "mlp"})])
    v = check(runs, pd.concat([ca, rename(cb)]))
    assert v.verdict == INCONCLUSIVE, v.finding
    assert set(v.numbers.model) == {"mlp", "resnet"} and "mlp:" in v.finding and "resnet:" in v.finding
    same = check(pd.concat([ra.assign(**{"model.name": "resnet"}), rename(ra).assign(**{"model.name": "mlp"})]),
                 pd.concat([ca, rename(ca)]))
    assert same.verdict == REPRODUCED, same.finding


def test_ics_is_decided_on_the_relative_measure():
    """BN's gradients are 4x larger and its absolute ||G - G'|| 2x larger: relative to ||G|| it
    shifts half as much. Runs made before `ics/*.rel` was logged get ||G|| from the gradients probe."""
    runs, curves = runs_probes(bn_less_ics=False)
    curves = curves[~curves.metric.str.endswith(".rel")].copy()
    ics = curves.metric.str.startswith("ics/") & curves.metric.str.endswith(".l2")
    is_bn = curves.run.str.contains("/bn/")
    curves.loc[ics, "value"] = np.where(is_bn[ics], 2.0, 1.0)
    grads = curves.loc[ics].assign(metric=lambda d: "grad/" + d.metric.str[4:-3] + ".norm",
                                   value=lambda d: np.where(d.run.str.contains("/bn/"), 40.0, 10.0))
    v = covariate_shift.check_gradients(runs, pd.concat([curves, grads]))
    assert v.verdict == REPRODUCED, v.finding
    assert any("gradients probe" in n for n in v.notes)


def test_arm_that_did_not_train_makes_the_probe_checks_inconclusive():
    runs, curves = runs_probes()
    runs.loc[runs["norm.name"] == "none", "final_acc"] = 0.1
    for check in (covariate_shift.check_activations, covariate_shift.check_gradients, covariate_shift.check_landscape):
        v = check(runs, curves)
        assert v.verdict == INCONCLUSIVE and "none did not train" in v.finding, v.finding


ALL_CHECKS = [c[0] for c in CASES] + [c[0] for c in PROBE_CASES]


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: f"{c.__module__.rsplit('.', 1)[-1]}.{c.__name__}")
def test_missing_runs_say_so_instead_of_guessing(check):
    other = runs_shift() if check is not intensity_shift.check else runs_batch()
    v = check(other, NO_CURVES)
    assert v.verdict == MISSING and "python -m bnstudy run +exp=" in v.missing


def test_every_claim_module_is_whole():
    for c in CLAIMS:
        assert c.KEY and c.STUDY and c.TITLE and c.STATEMENT and c.CHECKS and c.FIGURES, c.__name__
        assert "20" in c.STATEMENT or "seed" in c.STATEMENT  # a source is cited
        for name, (draw, caption) in c.FIGURES.items():
            assert callable(draw) and caption


# ---------------------------------------------------------------- the conditions for no verdict

def test_one_seed_is_inconclusive_and_says_why():
    v = higher_lr.check(runs_lr(seeds=1), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == TOO_FEW_SEEDS
    assert "no CI" in v.numbers.iloc[0]["final test accuracy (%)"]


def test_grid_that_misses_the_limit_is_inconclusive():
    # none still trains at the top rate: its limit is unknown, so no ratio can be claimed
    v = higher_lr.check(runs_lr(bn_top=3.2, none_top=3.2), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == BLOCKED, v.finding
    assert [b.subject for b in blockers_of(v, higher_lr.AT_TOP)] == ["none"], v.blockers


def test_a_x3_grid_cannot_show_a_ratio_under_3x():
    """Equal limits on a x3 grid bound the ratio to (1/3, 3): the interval touches the minimum
    effect of 3x, so it cannot be 'not reproduced'; a x2 grid can."""
    x3 = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
    v = higher_lr.check(runs_lr(bn_top=0.1, none_top=0.1, lrs=x3), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == HOLDS_MINIMUM, v.finding


def test_quantized_steps_widen_the_interval_even_when_every_seed_agrees():
    """Every seed reaches the target at the same evaluation: the interval is the evaluation bins',
    not zero. BN at 100 and none at 300, evaluated every 100: BN got there anywhere in steps 1-100."""
    runs = runs_lr().assign(**{"trainer.eval_every": 100})
    v = faster_training.check(runs, NO_CURVES)
    assert v.verdict == INCONCLUSIVE, v.finding
    assert v.estimate.lo < faster_training.EFFECT.minimum < v.estimate.hi and v.estimate.se > 0


def test_steps_to_target_reads_its_own_study_at_each_arms_one_rate():
    """Each arm ran one rate (lr_sweep's choice), so no rate is picked and no grid edge is noted;
    the 8-step bins leave a 2x speed-up's interval clear of 1.5x, where lr_sweep's 39-step bins
    on the same steps do not; lr_sweep's check does not read these runs, nor this one lr_sweep's."""
    runs = runs_steps()
    v = steps_to_target.check(runs, NO_CURVES)
    assert v.verdict == REPRODUCED and v.params["target"] == 0.3 and not notes_of(v, EDGE), v.finding
    assert v.facts["rates"] == {"bn": 0.05, "none": 0.1} and "best rate" not in v.numbers
    assert "seeds 10-24, which chose nothing" in steps_to_target.RULE
    coarse = steps_to_target.check(runs.assign(**{"trainer.eval_every": 39}), NO_CURVES)
    assert coarse.verdict == INCONCLUSIVE and coarse.estimate.lo < v.estimate.lo, coarse.finding
    assert faster_training.check(runs, NO_CURVES).verdict == MISSING
    assert steps_to_target.check(runs_lr(), NO_CURVES).verdict == MISSING
    skip = steps_to_target.check_skipinit(runs, NO_CURVES)
    assert skip.verdict == REPRODUCED and skip.facts["rates"]["none + SkipInit"] == 0.2, skip.finding


def test_a_seed_that_reached_no_threshold_is_censored_from_the_last_step_to_never():
    """Amended rule (2026-11-29): one unnormalized seed that never trained does not take the target
    away; it counts from step 312 to never, so the interval's upper end is unbounded and the
    verdict rests on the lower end. The same seed in BN's arm leaves the lower end unbounded:
    never reproduced. The notes give the committed rule's verdict and the speed-up without it."""
    runs = runs_steps()
    none = runs[(runs["norm.name"] == "none") & ~runs["model.skipinit"]].index
    runs.loc[none[3], ["steps_to_test_acc.0.3", "final_acc", "final_test_acc"]] = [np.nan, 0.128, 0.128]
    v = steps_to_target.check(runs, NO_CURVES)
    assert v.verdict == REPRODUCED and v.params["target"] == 0.3 and v.estimate.hi == np.inf, v.finding
    assert 1.5 < 2 ** v.estimate.lo < 2 ** v.estimate.value, v.finding
    assert [n.data for n in notes_of(v, faster_training.AS_COMMITTED)] == [{"verdict": INCONCLUSIVE}], v.notes
    (without,) = notes_of(v, faster_training.WITHOUT_FAILED)
    assert without.data == {"none": {13: 0.128}}, without  # the seed left out, with its final accuracy
    ratio = 2 ** estimate_of(v, faster_training.WITHOUT_FAILED).value
    assert 1.8 < ratio < 2 ** v.estimate.value, (ratio, v.finding)  # 312 steps raise none's mean
    assert not notes_of(steps_to_target.check(runs_steps(), NO_CURVES), faster_training.AS_COMMITTED)
    bn = runs_steps()
    bn.loc[bn[bn["norm.name"] == "bn"].index[0], ["steps_to_test_acc.0.3", "steps_to_test_acc.0.4"]] = [np.nan, np.nan]
    vb = steps_to_target.check(bn, NO_CURVES)
    assert vb.verdict == INCONCLUSIVE and vb.why == HOLDS_MINIMUM, vb.finding
    # open below only, and the bins above reach the minimum effect: no seeds nor denser evaluations would settle it
    assert vb.estimate.lo == -np.inf and np.isfinite(vb.estimate.hi), vb.finding
    assert bins_span(vb.estimate, vb.effect.minimum), vb.reason
    # all but one of an arm's seeds failed: no verdict
    most = runs_steps()
    most.loc[most[most["norm.name"] == "none"].index[:-1], "steps_to_test_acc.0.3"] = np.nan
    vm = steps_to_target.check_skipinit(most, NO_CURVES)
    assert vm.verdict == INCONCLUSIVE, vm.finding
    assert [(b.subject, b.data) for b in blockers_of(vm, faster_training.NO_THRESHOLD)] == [
        ("none + SkipInit", {"failed": 9, "seeds": 10})], vm.reason
    assert vm.params["target"] is None, vm.finding  # no target picked from the one seed left


def test_steps_to_target_notes_accuracy_at_fixed_fractions_of_the_steps():
    """Information beside the verdict: each arm's test accuracy at the last evaluation by 25%, 50%
    and 100% of the 312 steps (72, 152, 312 with evaluations every 8), BN minus the other arm
    with an interval; a run that diverged before an evaluation counts there as chance."""
    runs = runs_steps(seeds=3)
    one = runs[(runs["norm.name"] == "none") & ~runs["model.skipinit"]].run.iloc[0]
    runs.loc[runs.run == one, ["status", "final_acc"]] = ["diverged", 0.1]
    rows = []
    for r in runs.to_dict("records"):
        base = 0.3 if r["norm.name"] == "bn" else 0.2
        for step in range(8, 313, 8):
            if r["run"] == one and step > 100:
                break  # diverged at step 100: no later evaluation
            rows.append({"run": r["run"], "step": step, "epoch": step / 78, "metric": "test/acc",
                         "value": base + 0.2 * step / 312 + 0.001 * r["seed"], "source": "metrics"})
    curves = pd.DataFrame(rows)
    v = steps_to_target.check(runs, curves)
    (note,) = notes_of(v, steps_to_target.AT_BUDGETS)
    assert note.data == {"total": 312, "steps": {0.25: 72, 0.5: 152, 1.0: 312}}, note
    # in points; seeds 10-12 add 1.0-1.2 points; none's seed 10 diverged at step 100
    bn, none, lead = (estimate_of(v, f"{who}; step 72 (25%)") for who in ("arm=bn", "arm=none", "bn minus none"))
    assert (bn.value, bn.half, none.value, none.half) == pytest.approx((35.7, 0.2, 25.7, 0.2), abs=0.05)
    assert (lead.value, lead.lo, lead.hi) == pytest.approx((10.0, 9.8, 10.2), abs=0.05)
    assert estimate_of(v, "arm=bn; step 152 (50%)").value == pytest.approx(40.8, abs=0.05)
    assert estimate_of(v, "arm=bn; step 312 (100%)").value == pytest.approx(51.1, abs=0.05)
    # none at 312: seeds 11 and 12 at 41.1% and 41.2%, the diverged one at chance (10%): mean 30.8%
    assert estimate_of(v, "arm=none; step 312 (100%)").value == pytest.approx(30.8, abs=0.05)
    # information only: the curves change no verdict
    plain = steps_to_target.check(runs, NO_CURVES)
    assert (plain.verdict, plain.estimate.value, plain.estimate.lo) == (v.verdict, v.estimate.value, v.estimate.lo)
    assert plain.notes == steps_to_target.check(runs, NO_CURVES).notes
    assert not notes_of(plain, steps_to_target.AT_BUDGETS)
    skip = steps_to_target.check_skipinit(runs, curves)
    assert len(notes_of(skip, steps_to_target.AT_BUDGETS)) == 1, skip.notes
    assert estimate_of(skip, "bn minus none + SkipInit; step 72 (25%)").has_interval


def test_steps_to_target_refuses_to_pick_a_rate_on_its_own_seeds():
    """An arm run at a second rate (a rerun, a typo) would let the rule choose on the measuring
    seeds: the verdict is blocked, naming the arm, not quietly read at the better rate."""
    runs = runs_steps()
    extra = runs[runs["norm.name"] == "none"].assign(**{"optim.lr": 0.2, "steps_to_test_acc.0.3": 400.0})
    extra = extra.assign(run=[f"extra{i}" for i in range(len(extra))])
    v = steps_to_target.check(pd.concat([runs, extra], ignore_index=True), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == BLOCKED, v.finding
    assert [(b.subject, b.data) for b in blockers_of(v, faster_training.SEVERAL_RATES)] == [
        ("none", {"rates": (0.1, 0.2)})], v.reason


def test_a_run_that_diverged_after_reaching_the_target_counts_from_there_to_never():
    """Amended 2026-11-29: a run that diverged after passing the target got there somewhere from
    the evaluation before the one that saw it to never. In the unnormalized arm it is counted
    where it was seen (not as slow: the speed-up falls); in BN's the interval's lower end is open,
    so 'reproduced' cannot be shown. The per-arm table still counts it as not reached."""
    clean = steps_to_target.check(runs_steps(), NO_CURVES)
    runs = runs_steps()
    none = runs[(runs["norm.name"] == "none") & ~runs["model.skipinit"]].index[0]
    runs.loc[none, ["status", "final_acc", "steps_to_test_acc.0.3"]] = ["diverged", 0.1, 40]
    assert faster_training.reached(runs.loc[[none]], 0.3).isna().all()
    v = steps_to_target.check(runs, NO_CURVES)
    assert v.estimate.hi == np.inf and v.estimate.value < clean.estimate.value, v.finding
    assert "not reached by 1/10" in v.numbers.to_string(), v.numbers
    runs = runs_steps()
    runs.loc[runs[runs["norm.name"] == "bn"].index[0], ["status", "final_acc"]] = ["diverged", 0.1]
    vb = steps_to_target.check(runs, NO_CURVES)
    assert vb.verdict == INCONCLUSIVE and vb.estimate.lo == -np.inf and np.isfinite(vb.estimate.hi), vb.finding
    assert "a run that diverged after passing the target" in faster_training.RULE


def test_an_arm_without_any_accuracy_is_missing_not_a_crash():
    runs = runs_lr()
    runs.loc[runs["norm.name"] == "none", "final_acc"] = np.nan  # e.g. runs that never wrote a final accuracy
    assert faster_training.check(runs, NO_CURVES).verdict == MISSING


def test_no_target_reached_by_both_is_inconclusive():
    runs = runs_lr()
    runs.loc[runs["norm.name"] == "none", "steps_to_test_acc.0.3"] = None
    v = faster_training.check(runs, NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.params["target"] is None, v.finding
    assert [b.data for b in blockers_of(v, faster_training.NO_TARGET)] == [{"thresholds": (0.3, 0.9)}], v.reason


def test_lr_sweep_skipinit_is_its_own_arm_not_pooled_with_none():
    """SkipInit (norm.name none, model.skipinit) trains fast (step 50) and at every rate of the
    grid. Pooled with plain none it would make none look fast and stable; as its own arm the
    BN-vs-none rules still hold, and BN-vs-SkipInit is judged apart (not reproduced here)."""
    runs = runs_lr(skip_top=3.2, skip_steps=50)
    faster, versus_skip = faster_training.check(runs, NO_CURVES), faster_training.check_skipinit(runs, NO_CURVES)
    assert faster.verdict == REPRODUCED, faster.finding
    assert set(faster.numbers.norm) == {"bn", "none"} and faster.numbers["final test accuracy (%)"].str.endswith("(n=5)").all()
    assert versus_skip.verdict == NOT_REPRODUCED, versus_skip.finding
    assert set(versus_skip.facts["rates"]) == {"bn", "none + SkipInit"}
    assert set(versus_skip.numbers.norm) == {"bn", "none + SkipInit"}
    higher = higher_lr.check(runs, NO_CURVES)
    assert higher.verdict == REPRODUCED, higher.finding
    assert higher.facts["largest_usable_lr_per_seed"]["none + SkipInit"] == (3.2,) * 5, higher.finding
    table = higher.numbers[higher.numbers.norm == "none + SkipInit"]
    assert len(table) == len(LR_GRID) and (table["usable seeds"] == "5/5").all()


def test_faster_than_skipinit_needs_its_runs():
    runs = runs_lr(skip_top=None)
    assert faster_training.check(runs, NO_CURVES).verdict == REPRODUCED
    v = faster_training.check_skipinit(runs, NO_CURVES)
    assert v.verdict == MISSING and "norm=skipinit" in v.missing, v.missing


def test_faster_training_is_blocked_where_a_compared_arm_is_best_at_its_grids_edge():
    """BN does best at 0.4, the highest rate it ran: a higher one might have done better, so the
    speed-up would be read where the grid stopped (cells.EDGE_RULE). With BN's runs at 0.8
    (worse) added, its best rate is inside its grid and the verdict is given."""
    runs = runs_lr(lrs=(0.05, 0.1, 0.2, 0.4, 0.8), none_top=0.2, skip_top=None)
    bn, none = runs["norm.name"].eq("bn"), runs["norm.name"].eq("none")  # no SkipInit arm here
    runs.loc[bn & runs["optim.lr"].eq(0.4), "final_acc"] += 0.05
    runs.loc[bn & runs["optim.lr"].eq(0.8), "final_acc"] -= 0.1
    runs.loc[none & runs["optim.lr"].eq(0.1), "final_acc"] += 0.05
    at_edge = runs[~(bn & runs["optim.lr"].eq(0.8))]
    v = faster_training.check(at_edge, NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == BLOCKED, v.finding
    (b,) = blockers_of(v, EDGE)
    assert b.subject == "bn" and b.data == {"best": 0.4, "side": "highest", "grid": (0.05, 0.4), "beyond": 0.8}, b
    assert v.facts["rates"] == {"bn": 0.4, "none": 0.1} and EDGE_RULE in v.rule
    decided = faster_training.check(runs, NO_CURVES)
    assert decided.verdict == REPRODUCED and not decided.blockers, decided.finding
    assert decided.facts["rates"] == {"bn": 0.4, "none": 0.1} and not notes_of(decided, EDGE), decided.notes


def test_partial_sweep_uses_finished_runs_and_says_what_it_left_out():
    runs = runs_lr()
    running = runs.iloc[:3].assign(status="running", final_acc=None, run=["r1", "r2", "r3"])
    failed = runs.iloc[:1].assign(status="failed", final_acc=None, run=["f1"])
    v = higher_lr.check(pd.concat([runs, running, failed], ignore_index=True), NO_CURVES)
    assert v.verdict == REPRODUCED
    assert [n.data for n in notes_of(v, UNFINISHED)] == [{"running": 3, "failed": 1}], v.notes


def test_mixed_scales_use_the_largest():
    smoke = runs_lr(bn_top=0.1, none_top=0.1).assign(**{"scale.name": "smoke"})
    v = higher_lr.check(pd.concat([runs_lr(), smoke], ignore_index=True), NO_CURVES)
    assert v.verdict == REPRODUCED and [n.data["using"] for n in notes_of(v, SCALES)] == ["cpu"], v.notes


def test_study_runs_picks_one_scale_and_data_and_can_keep_every_status():
    runs = runs_lr()
    runs.loc[runs.index[0], "status"] = "failed"
    smoke = runs_lr().assign(**{"scale.name": "smoke"})
    other_data = runs_lr().assign(**{"data.name": "cifar10_folder"}).iloc[:3]
    mixed = pd.concat([runs, smoke, other_data], ignore_index=True)
    sel, notes = study_runs(mixed, "lr_sweep")
    assert len(sel) == len(runs) - 1 and "failed" not in set(sel.status)
    left = kinds(notes)
    assert left[SCALES]["using"] == "cpu" and left[DATA_SETS]["using"] == "synthetic", notes
    assert left[UNFINISHED] == {"failed": 1}, notes
    every, notes = study_runs(mixed, "lr_sweep", finished=False)
    assert len(every) == len(runs) and set(every["scale.name"]) == {"cpu"} and set(every["data.name"]) == {"synthetic"}
    assert UNFINISHED not in kinds(notes), notes


def test_an_arm_that_did_not_train_is_named_and_blocks_the_verdict():
    runs = runs_batch()
    runs.loc[runs["norm.name"] == "gn", "final_acc"] = 0.1  # GN at chance would "hold" trivially
    v = small_batch.check(runs, NO_CURVES)
    assert v.verdict == INCONCLUSIVE and untrained_arms(v) == {"gn at batch 128 (its best rate 0.025)"}, v.finding


def test_small_batch_takes_each_cell_at_its_own_best_rate():
    """A rate that ruins BN at batch 2 (chance) does not count against it when another rate
    trains there: the drop is read at each cell's best rate, and the table names the rates."""
    runs = runs_batch(bn_small=0.8, gn_small=0.8)
    ruined = (runs["norm.name"] == "bn") & (runs["data.batch_size"] == 2) & (runs["optim.lr"] == 0.2)
    runs.loc[ruined, "final_acc"] = 0.1
    v = small_batch.check(runs, NO_CURVES)
    assert v.verdict == NOT_REPRODUCED, v.finding
    assert abs(v.estimate.value) < 2, v.finding
    table = v.numbers.set_index("batch size")
    assert table.loc[2, "bn best base rate"] == "0.05" and table.loc[128, "gn best base rate"] == "0.1"
    assert "bn, precise statistics (%)" not in v.numbers  # no precise-BN accuracy in these runs


def test_a_best_rate_at_an_edge_of_its_grid_is_noted_and_blocks_the_cells_the_rule_compares():
    """Batches below 16 do best at 0.05, the lowest rate of a 0.05-0.2 grid: a lower one might
    have done better. The note names every such cell; the verdict is blocked by those the rule
    compares (each norm at batch 2 and at the reference, 128), not by batch 4, which it does not
    read. With 0.025 run too (worse), every best rate is inside its grid and the verdict is given."""
    v = small_batch.check(runs_batch(lrs=(0.05, 0.1, 0.2)), NO_CURVES)
    (edge,) = notes_of(v, EDGE)
    assert set(edge.data) == {"bn batch 2", "bn batch 4", "gn batch 2", "gn batch 4"}, edge
    assert edge.data["bn batch 2"] == (0.05, "lowest", 0.05, 0.2), edge
    assert v.verdict == INCONCLUSIVE and v.why == BLOCKED, v.finding
    assert edges(v) == {"bn batch 2": (0.05, "lowest", 0.025), "gn batch 2": (0.05, "lowest", 0.025)}, v.blockers
    assert EDGE_RULE in v.rule
    inside = small_batch.check(runs_batch(lrs=(0.025, 0.05, 0.1, 0.2)), NO_CURVES)
    assert not notes_of(inside, EDGE) and not inside.blockers and inside.verdict == REPRODUCED, inside.finding


def test_edge_rates_uses_each_groups_own_grid():
    """A group that ran only one rate has no edge; one whose grid is 0.1-0.4 is judged on that grid."""
    runs = pd.DataFrame({"arm": ["a"] * 3 + ["b"] * 2 + ["c"], "optim.lr": [0.1, 0.2, 0.4, 0.1, 0.2, 0.1],
                         "final_acc": [0.3, 0.5, 0.4, 0.2, 0.6, 0.5]})
    best = at_best_rate(runs, ["arm"])
    (note,) = edge_rates(runs, best, ["arm"], prefixes=("arm ",))
    assert note.kind == EDGE and note.data == {"arm b": (0.2, "highest", 0.1, 0.2)}, note
    nan_key = runs.assign(arm=runs.arm.where(runs.arm != "b"))  # a missing key is a group too
    (note,) = edge_rates(nan_key, at_best_rate(nan_key, ["arm"]), ["arm"])
    assert note.data == {"nan": (0.2, "highest", 0.1, 0.2)}, note


def test_small_batch_shows_the_precise_bn_effect_beside_the_rule():
    runs = runs_batch()
    runs["final_acc_precise"] = runs["final_acc"] + np.where(runs["norm.name"] == "bn", 0.01, 0.0)
    v = small_batch.check(runs, NO_CURVES)
    assert v.verdict == REPRODUCED, v.finding
    assert estimate_of(v, "precise BN statistics (information, not the rule)").value > 0
    assert "bn, precise statistics (%)" in v.numbers


def test_depth_verdict_needs_bn_to_train_at_the_deepest_depth():
    """Both norms at chance at the deepest depth: the advantage there (0) says nothing, even
    though the shallow nets trained."""
    runs = runs_depth()
    runs.loc[runs["model.depth"] == runs["model.depth"].max(), "final_acc"] = 0.1
    v = depth.check(runs, NO_CURVES)
    assert v.verdict == INCONCLUSIVE and untrained_arms(v) == {"bn (plain, depth 56)"}, v.finding


def test_regularization_gap_needs_nets_that_fitted_their_training_set():
    v = regularization.check(runs_reg(fit=False), NO_CURVES)
    assert v.verdict == INCONCLUSIVE, v.finding
    # no seed of either compared arm fitted at the rate read
    assert {b.subject: b.data for b in blockers_of(v, regularization.NOT_FITTED)} == {
        "bn, dropout 0": {"fitted": 0, "seeds": 3}, "none, dropout 0": {"fitted": 0, "seeds": 3}}, v.reason


def test_regularization_gap_is_eval_mode_not_the_running_train_accuracy():
    """The running train-mode accuracy (dropout on, weights moving) is 50% here; the eval-mode
    train-slice accuracy decides, so dropout does not lower the gap mechanically."""
    runs = runs_reg()
    assert np.allclose(regularization.gap(runs), 100 * (runs["final.train_eval/acc"] - runs.final_test_acc))
    assert regularization.check(runs, NO_CURVES).verdict == REPRODUCED


def test_init_skipinit_is_its_own_population_not_pooled():
    """SkipInit rescues the unnormalized net at every init. Pooled with plain none, it would
    make none look init-robust; as its own population the plain comparison still holds,
    and SkipInit's numbers are reported beside it."""
    plain = runs_init()
    rescued = plain[plain["norm.name"] == "none"].assign(**{"model.skipinit": True, "final_acc": 0.78,
                                                              "status": "completed"})
    rescued["run"] = rescued.run + "/skipinit"
    v = init.check(pd.concat([plain.assign(**{"model.skipinit": False}), rescued]), NO_CURVES)
    assert v.verdict == REPRODUCED, v.finding
    # beside the rule, with its interval: SkipInit's spread (0) minus BN's (~1 point of seed noise)
    beside = estimate_of(v, "none + SkipInit's spread minus bn's (information, not the rule)")
    assert beside.value == pytest.approx(-1.3, abs=0.05) and beside.has_interval, v.finding
    cells = (v.facts["best_cell"]["none + SkipInit"], v.facts["worst_cell"]["none + SkipInit"])
    assert cells == pytest.approx((0.78, 0.78), abs=0.0005), v.finding
    assert {"bn", "none", "none + SkipInit"} <= set(v.numbers.columns)
    only_skip = init.check(pd.concat([plain[plain["norm.name"] == "bn"].assign(**{"model.skipinit": True}),
                                      rescued]), NO_CURVES)
    assert only_skip.verdict == NOT_REPRODUCED and set(only_skip.facts["best_cell"]) == {"bn + SkipInit",
                                                                                         "none + SkipInit"}


def test_init_runs_that_reinitialized_the_classifier_give_no_verdict():
    v = init.check(runs_init().assign(bnstudy_version="0.1.0"), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and [b.data for b in blockers_of(v, init.REINIT)] == [{"versions": ["0.1.0"]}]
    assert init.check(runs_init().assign(bnstudy_version="0.2.0"), NO_CURVES).verdict == REPRODUCED


def test_inference_counts_seeds_not_momentum_copies():
    """Runs that differ only in BN momentum share their weights: one seed copied over three
    momenta is still one seed (no verdict), not three."""
    one = runs_infer(seeds=1)
    copies = pd.concat([one.assign(run=one.run + f"/m{m}", **{"norm.momentum": m}) for m in (0.01, 0.1, 0.5)])
    v = inference.check(copies, NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == TOO_FEW_SEEDS


def test_intensity_is_decided_on_the_cost_of_training_with_variation():
    """Varied test images cost every net 10 points (eval-mode BN cannot undo a gain); that is
    secondary, beside the rule. The rule reads the cost of training with the variation: none's, not BN's."""
    v = intensity_shift.check(runs_shift(bn_cost=0.0, none_cost=0.2), NO_CURVES)
    assert v.verdict == REPRODUCED
    assert "none's cost +20." in v.finding and "none's cost minus BN's +20." in v.finding, v.finding
    assert "secondary: trained clean, varied test, running statistics (%)" in v.numbers.columns


def test_incomplete_cells_reads_each_scope_on_its_own_grid():
    """Two nets with rate grids of their own: a complete sweep has no note; a net's cell that lacks
    one of its net's rates, or a seed, is named, and the other net's rates are not asked of it."""
    rows = [{"model": m, "norm": n, "optim.lr": lr, "seed": s}
            for m, lrs in (("mlp", (0.2, 0.8)), ("resnet", (0.05, 0.2)))
            for n in ("bn", "none") for lr in lrs for s in range(3)]
    runs = pd.DataFrame(rows)
    assert incomplete_cells(runs, ["model", "norm"], within=["model"]) == []
    assert incomplete_cells(runs, ["model", "norm"]) != []  # one grid for both nets: every cell lacks rates
    cut = runs[~((runs.model == "resnet") & (runs.norm == "none") & (runs["optim.lr"] == 0.2))
               & ~((runs.model == "mlp") & (runs.norm == "bn") & (runs.seed == 0) & (runs["optim.lr"] == 0.8))]
    (note,) = incomplete_cells(cut, ["model", "norm"], within=["model"])
    assert note.kind == INCOMPLETE and note.data == {"resnet none": ["rate 0.2 missing"],
                                                     "mlp bn": ["2 of 3 seeds at 0.8"]}, note


def test_decision_says_why_in_a_code_as_well_as_a_sentence():
    """rules.decision: each way to an inconclusive verdict has its code (Verdict.why); decided
    verdicts have none."""
    from bnstudy.analysis.rules import BLOCKED, NO_EFFECT, Effect, decision
    from bnstudy.analysis.stats import difference

    e = Effect("a - b", "points", 2.0)
    far, near = difference([10, 11, 12], [0, 1, 2]), difference([3, 2, 4], [0, 1, 2])
    assert decision(far, e)[:2] == (REPRODUCED, "")
    assert decision(difference([0, 1, 2], [10, 11, 12]), e)[:2] == (NOT_REPRODUCED, "")
    assert decision(near, e)[:2] == (INCONCLUSIVE, HOLDS_MINIMUM)
    assert decision(difference([3], [0, 1]), e)[:2] == (INCONCLUSIVE, TOO_FEW_SEEDS)
    assert decision(difference([float("nan")], [0.0]), e)[:2] == (INCONCLUSIVE, NO_EFFECT)
    assert decision(far, e, ["b did not train"]) == (INCONCLUSIVE, BLOCKED, "b did not train")


def test_every_claim_module_is_in_the_report():
    """Each module (or package) of bnstudy/claims/ is one claim, discovered into claims.CLAIMS
    in its ORDER (the report's order, one place each) with the interface the report reads."""
    import pkgutil

    import bnstudy.claims

    found = {m.name for m in pkgutil.iter_modules(bnstudy.claims.__path__)}
    assert found == {c.__name__.rsplit(".", 1)[1] for c in CLAIMS}
    orders = [c.ORDER for c in CLAIMS]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)
    assert [c.KEY for c in CLAIMS][:3] == ["faster_training", "steps_to_target", "higher_lr"]
    for c in CLAIMS:
        assert {"KEY", "STUDY", "TITLE", "STATEMENT", "CHECKS", "FIGURES"} <= set(dir(c)), c.__name__


def test_a_claim_module_is_discovered_and_one_lacking_the_interface_is_refused(tmp_path, monkeypatch):
    """A module dropped into bnstudy/claims/ joins the report at its ORDER; one without the
    interface stops the import with a line naming what it lacks."""
    import sys

    import bnstudy.claims as claims

    (tmp_path / "planted_claim.py").write_text(
        "KEY, STUDY, TITLE, ORDER = 'planted', 'lr_sweep', 'Planted', 15\nSTATEMENT = ''\nCHECKS = []\n"
        "FIGURES = {}\n")
    monkeypatch.setattr(claims, "__path__", [*claims.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "bnstudy.claims.planted_claim", raising=False)
    assert [c.KEY for c in claims._discover()][:3] == ["faster_training", "planted", "steps_to_target"]
    (tmp_path / "planted_claim.py").write_text("KEY = 'planted'\n")
    monkeypatch.delitem(sys.modules, "bnstudy.claims.planted_claim", raising=False)
    with pytest.raises(ImportError, match="planted_claim .*lacks STUDY, TITLE, ORDER"):
        claims._discover()
    sys.modules.pop("bnstudy.claims.planted_claim", None)


def test_why_text_names_what_blocked_an_inconclusive_verdict():
    from bnstudy.analysis.rules import UNTRAINED, Blocker, Verdict, why_text

    blocked = Verdict("c", "t", INCONCLUSIVE, "r", why=BLOCKED,
                      blockers=[Blocker("a", EDGE, "bn"), Blocker("b", UNTRAINED, "none"), Blocker("c", EDGE, "gn")])
    assert why_text(blocked) == f"{BLOCKED}: {EDGE}; {UNTRAINED}"
    assert why_text(Verdict("c", "t", INCONCLUSIVE, "r", why=HOLDS_MINIMUM)) == HOLDS_MINIMUM
    assert why_text(Verdict("c", "t", REPRODUCED, "r")) == ""


def test_verdict_line_says_why_only_where_inconclusive():
    from bnstudy.analysis.rules import EDGE, Blocker, Verdict, verdict_line

    blocked = Verdict("c", "BN helps", INCONCLUSIVE, "r", why=BLOCKED, blockers=[Blocker("a", EDGE, "bn")])
    assert verdict_line(blocked).split() == [*INCONCLUSIVE.split(), "BN", "helps", f"({BLOCKED}:", *f"{EDGE})".split()]
    assert verdict_line(Verdict("c", "BN helps", REPRODUCED, "r")).split() == [REPRODUCED, "BN", "helps"]
