"""Each claim's rule on hand-made run tables where the answer is known: holds, fails, missing.

The factories here make tidy tables shaped like bnstudy.results.load's output (one row per
run; probe rows in long format); test_report.py draws its figures from them too.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from bnstudy import verdicts as V
from bnstudy.results import aggregate, diff_ci, mean_ci, t975

_ids = itertools.count()


def row(study, norm, seed, acc, status="completed", **cfg) -> dict:
    r = {"run": f"{study}/{norm}/{next(_ids)}", "study": study, "status": status, "norm.name": norm, "seed": seed,
         "scale.name": "cpu", "data.name": "synthetic", "model.num_classes": 10, "steps": 400,
         "final_test_acc": acc if status == "completed" else None, "best_test_acc": acc,
         "final_acc": acc if status == "completed" else (0.1 if status == "diverged" else None)}
    r.update(cfg)
    return r


def noise(rng, sd=0.004):
    return float(rng.normal(0, sd))


def runs_lr(bn_top=1.0, none_top=0.1, seeds=2, bn_faster=True, lrs=(0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)):
    """lr_sweep: each norm trains (70%) up to its top rate and diverges above it."""
    rng, rows = np.random.default_rng(0), []
    for lr, s, (norm, top) in itertools.product(lrs, range(seeds), (("bn", bn_top), ("none", none_top))):
        ok = lr <= top
        fast = (norm == "bn") == bn_faster
        rows.append(row("lr_sweep", norm, s, 0.7 + noise(rng) if ok else None, "completed" if ok else "diverged",
                        **{"optim.lr": lr, "steps_to_test_acc.0.3": (100 if fast else 300) + s if ok else None,
                           "steps_to_test_acc.0.9": None}))
    return pd.DataFrame(rows)


def runs_batch(bn_small=0.5, gn_small=0.78, seeds=3):
    """batch_size_sweep: accuracy falls linearly in log2(batch) from 80% at 128 to *_small at 2."""
    rng, rows = np.random.default_rng(1), []
    for b, s in itertools.product((2, 4, 16, 128), range(seeds)):
        f = np.log2(b / 2) / 6
        for norm, small in (("bn", bn_small), ("gn", gn_small)):
            rows.append(row("batch_size_sweep", norm, s, small + (0.8 - small) * f + noise(rng), **{"data.batch_size": b}))
    return pd.DataFrame(rows)


def test_small_batch_reference_is_batch_32_not_an_undertrained_largest_batch():
    """Same epochs for every batch: batch 256 takes few steps and is undertrained. The drop is
    measured from batch 32 (Wu & He's Fig. 1), so BN losing 20 points from 32 to 2 while GN
    holds reproduces the claim even though both are worse still at 256."""
    rng, rows = np.random.default_rng(3), []
    acc = {("bn", 2): 0.5, ("bn", 32): 0.7, ("bn", 256): 0.3, ("gn", 2): 0.6, ("gn", 32): 0.6, ("gn", 256): 0.2}
    for (norm, b), a in acc.items():
        for s in range(3):
            rows.append(row("batch_size_sweep", norm, s, a + noise(rng), **{"data.batch_size": b}))
    v = V.small_batch(pd.DataFrame(rows))
    assert v.verdict == V.REPRODUCED, v.finding
    assert "from batch 32 to batch 2" in v.finding and "largest batch, 256" in v.finding


def runs_init(bn_sensitive=False, seeds=2):
    """init_sweep: none loses accuracy away from scale 1 (and diverges at 10); bn only if bn_sensitive."""
    rng, rows = np.random.default_rng(2), []
    for name, sc, s in itertools.product(("kaiming", "xavier", "orthogonal"), (0.1, 1.0, 2.0, 10.0), range(seeds)):
        bad = abs(np.log10(sc))
        rows.append(row("init_sweep", "none", s, 0.75 - 0.5 * bad + noise(rng) if sc < 10 else None,
                        "completed" if sc < 10 else "diverged", **{"init.name": name, "init.scale": sc}))
        bn_acc = 0.8 - (0.7 * bad if bn_sensitive else 0.0) + noise(rng)
        rows.append(row("init_sweep", "bn", s, max(bn_acc, 0.1), **{"init.name": name, "init.scale": sc}))
    return pd.DataFrame(rows)


def runs_depth(bn_deep_penalty=0.03, none_deep_penalty=0.6, seeds=2):
    rng, rows = np.random.default_rng(3), []
    for d, plain, s in itertools.product((8, 20, 56), (False, True), range(seeds)):
        f = d / 56 if plain else 0.1 * d / 56
        for norm, pen in (("bn", bn_deep_penalty), ("none", none_deep_penalty)):
            rows.append(row("depth_sweep", norm, s, max(0.1, 0.85 - pen * f) + noise(rng),
                            **{"model.depth": d, "model.plain": plain}))
    return pd.DataFrame(rows)


def runs_reg(bn_gap=0.05, none_gap=0.15, bn_dropout_gain=0.0, seeds=3):
    rng, rows = np.random.default_rng(4), []
    for p, s in itertools.product((0.0, 0.3), range(seeds)):
        for norm, gap in (("bn", bn_gap), ("none", none_gap)):
            test = 0.8 + (bn_dropout_gain if norm == "bn" and p > 0 else 0.0) + noise(rng)
            rows.append(row("regularization", norm, s, test,
                            **{"model.dropout": p, "final.train/acc": test + gap * (1 - p) + noise(rng)}))
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


def test_inference_counts_seeds_not_momentum_copies():
    """Runs that differ only in BN momentum share their weights: one seed copied over three
    momenta is still one seed (no verdict), not three."""
    one = runs_infer(seeds=1)
    copies = pd.concat([one.assign(run=one.run + f"/m{m}", **{"norm.momentum": m}) for m in (0.01, 0.1, 0.5)])
    v = V.inference_statistics(copies)
    assert v.verdict == V.INCONCLUSIVE and "n=1" in v.finding
    assert V.inference_statistics(runs_infer(seeds=3)).verdict == V.REPRODUCED


def runs_shift(bn_drop=0.05, none_drop=0.3, seeds=3):
    rng, rows = np.random.default_rng(6), []
    for (norm, drop), s in itertools.product((("bn", bn_drop), ("none", none_drop), ("gn", 0.02)), range(seeds)):
        clean = 0.8 + noise(rng)
        rows.append(row("intensity_shift", norm, s, clean, **{"final.test/acc": clean,
                                                               "final.test_shifted/acc": clean - drop + noise(rng)}))
    return pd.DataFrame(rows)


def runs_probes(bn_stable=True, bn_less_ics=False, bn_smoother=True, seeds=2, steps=range(0, 2001, 200)):
    """covariate_shift runs and their probe rows (percentiles, histograms, ICS, landscape)."""
    rng, runs, rows = np.random.default_rng(7), [], []
    for norm, s in itertools.product(("bn", "none"), range(seeds)):
        run = f"covariate_shift/{norm}/{s}"
        runs.append(row("covariate_shift", norm, s, 0.7, run=run))
        stable = (norm == "bn") == bn_stable
        for step in steps:
            t = step / max(steps)
            shift, scale = (0.0, 1.0) if stable else (2.0 * t, 1 + 3 * t)
            for layer in ("layer1.0.norm1.out", "layer2.0.norm1.out", "layer3.0.norm2.out", "layer1.0.out"):
                for p, z in (("p15", -1.04), ("p50", 0.0), ("p85", 1.04)):
                    rows.append((run, step, f"act/{layer}.{p}", shift + scale * z + noise(rng, 0.03)))
                centers = np.linspace(-4.75, 4.75, 20)
                dens = np.exp(-0.5 * ((centers - shift) / scale) ** 2)
                rows += [(run, step, f"hist/{layer}.bin{k:02d}", d) for k, d in enumerate(dens / dens.sum())]
            less = (norm == "bn") == bn_less_ics
            for prm in ("layer1.0.conv2.weight", "layer3.0.conv1.weight"):
                rows.append((run, step, f"ics/{prm}.l2", (1.0 if less else 2.0) * (1 + noise(rng, 0.05))))
                rows.append((run, step, f"ics/{prm}.cos", (0.6 if less else 0.3) + noise(rng, 0.02)))
            w = 0.1 if (norm == "bn") == bn_smoother else 1.0
            base = 2.3 * (1 - 0.6 * t)
            rows += [(run, step, "landscape/loss_min", base - 0.2 * w), (run, step, "landscape/loss_max", base + w),
                     (run, step, "landscape/grad_pred", w * (1 + noise(rng, 0.05))),
                     (run, step, "landscape/beta_smooth", 5 * w * (1 + noise(rng, 0.05)))]
    curves = pd.DataFrame(rows, columns=["run", "step", "metric", "value"]).assign(epoch=0.0, source="probes")
    return pd.DataFrame(runs), curves


# ---------------------------------------------------------------- statistics

def test_t_quantiles_and_intervals():
    assert t975(1) == pytest.approx(12.706) and t975(10) == pytest.approx(2.228)
    assert t975(1000) == pytest.approx(1.962, abs=2e-3) and 2.228 > t975(10.5) > 2.201
    m, h, n = mean_ci([0.7, 0.72, 0.74])
    assert (m, n) == (pytest.approx(0.72), 3) and h == pytest.approx(4.303 * 0.02 / np.sqrt(3))
    assert np.isnan(mean_ci([0.5])[1]) and mean_ci([])[2] == 0
    d, h = diff_ci([1.0, 1.1, 0.9], [0.0, 0.1, -0.1])
    assert d == pytest.approx(1.0) and 0 < h < 1
    agg = aggregate(pd.DataFrame({"k": ["a", "a", "b"], "v": [1.0, 3.0, 5.0]}), ["k"], "v")
    assert list(agg.n) == [2, 1] and agg["mean"].tolist() == [2.0, 5.0] and np.isnan(agg.ci.iloc[1])


# ---------------------------------------------------------------- each claim, both ways

CASES = [  # (check, holds, fails)
    (V.faster_training, runs_lr(), runs_lr(bn_faster=False)),
    (V.higher_lr, runs_lr(bn_top=1.0, none_top=0.1), runs_lr(bn_top=0.1, none_top=0.1)),
    (V.small_batch, runs_batch(), runs_batch(bn_small=0.8)),
    (V.regularization, runs_reg(), runs_reg(bn_gap=0.2, none_gap=0.05)),
    (V.init_robustness, runs_init(), runs_init(bn_sensitive=True)),
    (V.deep_trainability, runs_depth(), runs_depth(bn_deep_penalty=0.6, none_deep_penalty=0.03)),
    (V.inference_statistics, runs_infer(), runs_infer(batch_stats_penalty=-0.1)),
    (V.intensity_robustness, runs_shift(), runs_shift(bn_drop=0.3, none_drop=0.05)),
]


@pytest.mark.parametrize("check,holds,fails", CASES, ids=[c[0].__name__ for c in CASES])
def test_rule_both_ways(check, holds, fails):
    good, bad = check(holds), check(fails)
    assert good.verdict == V.REPRODUCED, good.finding
    assert bad.verdict == V.NOT_REPRODUCED, bad.finding
    for v in (good, bad):
        assert v.rule and v.finding and len(v.numbers) and not v.missing


PROBE_CASES = [
    (V.ics_activations, dict(bn_stable=True), dict(bn_stable=False)),
    (V.ics_gradients, dict(bn_less_ics=True), dict(bn_less_ics=False)),
    (V.smoother_landscape, dict(bn_smoother=True), dict(bn_smoother=False)),
]


@pytest.mark.parametrize("check,holds,fails", PROBE_CASES, ids=[c[0].__name__ for c in PROBE_CASES])
def test_probe_rule_both_ways(check, holds, fails):
    good, bad = check(*runs_probes(**holds)), check(*runs_probes(**fails))
    assert good.verdict == V.REPRODUCED, good.finding
    assert bad.verdict == V.NOT_REPRODUCED, bad.finding


@pytest.mark.parametrize("check,key", [(V.ics_gradients, "bn_less_ics"), (V.smoother_landscape, "bn_smoother")])
def test_probe_measures_compared_within_each_model(check, key):
    """An mlp and a ResNet are two populations: BN better in one and worse in the other is
    inconclusive, with one row per model, not a pooled mean."""
    (ra, ca), (rb, cb) = runs_probes(**{key: True}), runs_probes(**{key: False})
    rename = lambda df: df.assign(run=df.run + "/mlp")  # noqa: E731
    runs = pd.concat([ra.assign(**{"model.name": "resnet"}), rename(rb).assign(**{"model.name": "mlp"})])
    v = check(runs, pd.concat([ca, rename(cb)]))
    assert v.verdict == V.INCONCLUSIVE, v.finding
    assert set(v.numbers.model) == {"mlp", "resnet"} and "mlp:" in v.finding and "resnet:" in v.finding
    same = check(pd.concat([ra.assign(**{"model.name": "resnet"}), rename(ra).assign(**{"model.name": "mlp"})]),
                 pd.concat([ca, rename(ca)]))
    assert same.verdict == V.REPRODUCED, same.finding


ALL_CHECKS = [c[0] for c in CASES]


@pytest.mark.parametrize("check", ALL_CHECKS + [c[0] for c in PROBE_CASES], ids=lambda c: c.__name__)
def test_missing_runs_say_so_instead_of_guessing(check):
    other = runs_shift() if check is not V.intensity_robustness else runs_batch()
    v = check(other, pd.DataFrame(columns=["run", "step", "metric", "value"])) if check in \
        (V.ics_activations, V.ics_gradients, V.smoother_landscape) else check(other)
    assert v.verdict == V.MISSING and "python -m bnstudy run +exp=" in v.missing


def test_one_seed_is_inconclusive_but_reports_the_point_estimate():
    v = V.higher_lr(runs_lr(seeds=1))
    assert v.verdict == V.INCONCLUSIVE and "n=1" in v.finding and "'reproduced'" in v.finding
    assert "no CI" in v.numbers.iloc[0]["final test accuracy (%)"]


def test_grid_that_misses_the_limit_is_inconclusive():
    # none still trains at the top rate: its limit is unknown, so no ratio can be claimed
    v = V.higher_lr(runs_lr(bn_top=3.0, none_top=3.0))
    assert v.verdict == V.INCONCLUSIVE and "extend the grid" in v.finding


def test_gn_dropping_more_than_bn_is_not_reproduced():
    assert V.small_batch(runs_batch(bn_small=0.6, gn_small=0.4)).verdict == V.NOT_REPRODUCED


def test_no_target_reached_by_both_is_inconclusive():
    runs = runs_lr()
    runs.loc[runs["norm.name"] == "none", "steps_to_test_acc.0.3"] = None
    v = V.faster_training(runs)
    assert v.verdict == V.INCONCLUSIVE and "No threshold" in v.finding


def test_partial_sweep_uses_finished_runs_and_says_what_it_left_out():
    runs = runs_lr()
    running = runs.iloc[:3].assign(status="running", final_acc=None, run=["r1", "r2", "r3"])
    failed = runs.iloc[:1].assign(status="failed", final_acc=None, run=["f1"])
    v = V.higher_lr(pd.concat([runs, running, failed], ignore_index=True))
    assert v.verdict == V.REPRODUCED
    assert any("4 unfinished runs" in n and "3 running" in n and "1 failed" in n for n in v.notes)


def test_mixed_scales_use_the_largest():
    smoke = runs_lr(bn_top=0.1, none_top=0.1).assign(**{"scale.name": "smoke"})
    v = V.higher_lr(pd.concat([runs_lr(), smoke], ignore_index=True))
    assert v.verdict == V.REPRODUCED and any("scale=cpu" in n for n in v.notes)


def test_nets_that_did_not_train_give_no_verdict():
    runs = runs_depth()
    runs["final_acc"] = 0.1  # everything at chance: "BN is no better" would be a guess
    v = V.deep_trainability(runs)
    assert v.verdict == V.INCONCLUSIVE and "above chance" in v.finding


def test_init_skipinit_is_its_own_population_not_pooled():
    """SkipInit rescues the unnormalized net at every init. Pooled with plain none, it would
    make none look init-robust; as its own population the plain comparison still holds,
    and SkipInit's numbers are reported beside it."""
    plain = runs_init()
    rescued = plain[plain["norm.name"] == "none"].assign(**{"model.skipinit": True, "final_acc": 0.78,
                                                              "status": "completed"})
    rescued["run"] = rescued.run + "/skipinit"
    v = V.init_robustness(pd.concat([plain.assign(**{"model.skipinit": False}), rescued]))
    assert v.verdict == V.REPRODUCED, v.finding
    assert "none + SkipInit dependence 0.0" in v.finding
    assert {"bn", "none", "none + SkipInit"} <= set(v.numbers.columns)
    only_skip = V.init_robustness(pd.concat([plain[plain["norm.name"] == "bn"].assign(**{"model.skipinit": True}),
                                             rescued]))
    assert only_skip.verdict == V.NOT_REPRODUCED and "bn + SkipInit" in only_skip.finding


def test_intensity_verdict_reads_the_nets_trained_on_clean_images():
    """Where a shift in training is switched on and off, the verdict compares the nets trained
    on clean images (the claim: a shift between training and test). A net trained with the
    shift that barely learned has nothing to lose and must not decide it."""
    clean = runs_shift().assign(**{"data.intensity_shift": False})
    trained = runs_shift(bn_drop=0.05, none_drop=0.0).assign(**{"data.intensity_shift": True})
    trained.loc[trained["norm.name"] == "none", ["final.test/acc", "final.test_shifted/acc"]] = 0.15
    trained["run"] = trained.run + "/on"
    v = V.intensity_robustness(pd.concat([clean, trained]))
    assert v.verdict == V.REPRODUCED, v.finding
    assert "Trained with the shift: none's drop minus BN's -" in v.finding
    assert any("trained on clean images" in n for n in v.notes)


def test_depth_verdict_needs_a_net_that_trained_at_the_deepest_depth():
    """Both norms at chance at the deepest depth: the advantage there (0) says nothing, even
    though the shallow nets trained."""
    runs = runs_depth()
    deep = runs["model.depth"] == runs["model.depth"].max()
    runs.loc[deep, "final_acc"] = 0.1
    v = V.deep_trainability(runs)
    assert v.verdict == V.INCONCLUSIVE and "No compared cell trained" in v.finding, v.finding
