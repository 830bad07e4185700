"""The intensity_shift claim (BN's cost of per-image intensity variation in training, each cell at
its own best rate) on hand-made run tables, and the per-image variation it needs, from the data
path to the run's config."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from bnstudy import train as train_module
from bnstudy.analysis.cells import EDGE_RULE
from bnstudy.analysis.rules import BLOCKED, EDGE, HOLDS_MINIMUM, INCONCLUSIVE, MISSING, NOT_REPRODUCED, REPRODUCED
from bnstudy.claims import intensity_shift
from bnstudy.data import intensity_shift as shift_images, train_batches
from bnstudy.run import run

from conftest import compose_config, estimate_of, notes_of, untrained_arms
from test_claims import NO_CURVES, edges, noise, row

COST = {"bn": 0.0, "none": 0.2, "gn": 0.0}


def runs_intensity(cost=None, seeds=5, sd=0.004, lrs=(0.0125, 0.025, 0.1, 0.2), best=None, per_image=True,
                   untrained=()):
    """intensity_shift: each cell 80% on clean test images at its best rate (`best[(norm, on)]`,
    default 0.1 trained clean and 0.025 with the variation, each inside the default grid), minus
    `cost[norm]` when trained with the variation, minus 30 points at the other rates of the grid;
    the varied test images cost a clean-trained net 10 points. `untrained`: cells (norm, on) within
    5 points of chance (12% at their best rate, chance at the others)."""
    cost, best = {**COST, **(cost or {})}, best or {}
    rng, rows = np.random.default_rng(12), []
    for norm, on, lr, s in itertools.product(("bn", "none", "gn"), (False, True), lrs, range(seeds)):
        top = best.get((norm, on), 0.025 if on else 0.1)
        acc = 0.8 - (cost[norm] if on else 0.0) - (0.0 if lr == top else 0.3) + noise(rng, sd)
        acc = (0.12 if lr == top else 0.1) + noise(rng, sd) if (norm, on) in untrained else acc
        rows.append(row("intensity_shift", norm, s, acc, **{
            "data.intensity_shift": on, "data.intensity_per_image": per_image, "optim.lr": lr,
            "data.intensity_gain": 0.5, "data.intensity_offset": 0.1, "final.test/acc": acc,
            "final.test_shifted/acc": acc - (0.0 if on else 0.1), "final.test_shifted/acc_batchstats": acc - 0.05}))
    return pd.DataFrame(rows)


def test_reproduced_when_bn_pays_nothing_each_cell_at_its_own_best_rate():
    """Each setting's best rate differs (0.1 clean, 0.025 with the variation): read at one shared
    rate, BN's cost would be +30 points."""
    v = intensity_shift.check(runs_intensity(), NO_CURVES)
    assert v.verdict == REPRODUCED, v.finding
    assert abs(v.estimate.value) < 1 and v.estimate.n == 5
    table = v.numbers.set_index("norm")
    assert table.loc["bn", "trained clean: best rate"] == "0.1"
    assert table.loc["bn", "trained with variation: best rate"] == "0.025"
    # beside the rule: none pays 20 points, 20 more than BN; GN's cost is shown too
    assert estimate_of(v, "arm=none", intensity_shift.COST).value == pytest.approx(20, abs=0.5)
    assert estimate_of(v, "arm=none", intensity_shift.COST_MINUS_BN).value == pytest.approx(20, abs=0.5)
    assert estimate_of(v, "arm=gn", intensity_shift.COST).has_interval and not v.facts["untrained_beside"]


def test_not_reproduced_when_bn_pays_for_the_variation():
    v = intensity_shift.check(runs_intensity(cost={"bn": 0.08}), NO_CURVES)
    assert v.verdict == NOT_REPRODUCED, v.finding
    assert 7 < v.estimate.value < 9


def test_inconclusive_when_the_interval_holds_the_bound():
    v = intensity_shift.check(runs_intensity(cost={"bn": 0.02}, sd=0.03, seeds=4), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == HOLDS_MINIMUM, v.finding


def test_bn_that_did_not_train_on_clean_images_gives_no_verdict():
    v = intensity_shift.check(runs_intensity(untrained=(("bn", False),)), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == BLOCKED, v.finding
    assert untrained_arms(v) == {"bn trained on clean images (its best rate at 0.1)"}, v.blockers


def test_bn_at_chance_with_the_variation_is_the_harm_not_a_failed_arm():
    """BN trains on clean images (80%) and stays at chance with the variation: a 70-point cost,
    which the claim denies (amended 2026-11-29, before any run: it once made this inconclusive)."""
    v = intensity_shift.check(runs_intensity(untrained=(("bn", True),)), NO_CURVES)
    assert v.verdict == NOT_REPRODUCED, v.finding
    assert 65 < v.estimate.value < 75


def test_bn_at_chance_at_every_rate_with_the_variation_is_the_harm_not_an_edge():
    """At chance at every rate of its grid (3 rates or more, spanning x4 or more), BN trained with
    the variation trained nowhere: no best rate to bracket, so no edge (cells.EDGE_RULE, amended
    2026-12-07), and being at chance is the harm the claim denies, not a failed arm: not reproduced."""
    runs = runs_intensity()
    harmed = runs["norm.name"].eq("bn") & runs["data.intensity_shift"]
    runs.loc[harmed, "final_acc"] = 0.1
    v = intensity_shift.check(runs, NO_CURVES)
    assert v.verdict == NOT_REPRODUCED and not untrained_arms(v) and not edges(v), v.finding


def test_a_bn_cell_best_at_its_grids_edge_blocks_the_verdict():
    """On the 2-point grid (0.025, 0.1), BN trained clean does best at its highest rate and BN
    trained with the variation at its lowest: both cells of the rule's cost block (cells.EDGE_RULE);
    none's and GN's cells, at the same edges beside the rule, are noted only. With the rates past
    the edges run (0.0125 and 0.2, worse), the verdict is given."""
    v = intensity_shift.check(runs_intensity(lrs=(0.025, 0.1)), NO_CURVES)
    assert v.verdict == INCONCLUSIVE and v.why == BLOCKED, v.finding
    assert edges(v) == {"bn clean": (0.1, "highest", 0.2), "bn varied": (0.025, "lowest", 0.0125)}, v.blockers
    (note,) = notes_of(v, EDGE)
    assert set(note.data) == {f"{n} {s}" for n in ("bn", "none", "gn") for s in ("clean", "varied")}, note
    assert EDGE_RULE in v.rule
    decided = intensity_shift.check(runs_intensity(), NO_CURVES)
    assert decided.verdict == REPRODUCED and not decided.blockers and not notes_of(decided, EDGE), decided.finding


def test_an_untrained_comparison_norm_is_marked_beside_not_a_blocker():
    v = intensity_shift.check(runs_intensity(untrained=(("gn", False), ("gn", True))), NO_CURVES)
    assert v.verdict == REPRODUCED, v.finding
    assert v.facts["untrained_beside"] == ["gn"], v.finding


def test_robustness_is_secondary_and_labelled():
    """Varied test images cost the clean-trained nets 10 points: shown, never decided."""
    v = intensity_shift.check(runs_intensity(), NO_CURVES)
    assert v.verdict == REPRODUCED
    cols = set(v.numbers.columns)
    assert "secondary: trained clean, varied test, running statistics (%)" in cols
    assert "secondary: trained with variation, varied test, batch statistics (%)" in cols
    cell = v.numbers.set_index("norm").loc["bn", "secondary: trained clean, varied test, running statistics (%)"]
    assert 69 < float(cell.split()[0]) < 71, cell


def test_per_image_runs_replace_the_per_batch_runs_and_say_so():
    """Old per-batch runs where BN paid 10 points beside new per-image runs where it pays none:
    only the per-image protocol counts."""
    old = runs_intensity(cost={"bn": 0.1}, per_image=np.nan).drop(columns="data.intensity_per_image")
    v = intensity_shift.check(pd.concat([old, runs_intensity()], ignore_index=True), NO_CURVES)
    assert v.verdict == REPRODUCED and v.estimate.n == 5, v.finding
    left = notes_of(v, intensity_shift.LEFT_OUT)
    assert [n.data for n in left] == [{"runs": 120, "protocol": "per batch"}], v.notes
    assert not notes_of(v, intensity_shift.PER_BATCH), v.notes
    alone = intensity_shift.check(old, NO_CURVES)
    assert alone.verdict == NOT_REPRODUCED
    assert notes_of(alone, intensity_shift.PER_BATCH), alone.notes


def test_clean_runs_of_the_per_image_protocol_never_join_the_per_batch_runs():
    """The new sweep part-way through (its clean runs finished, none with the variation): the
    old per-batch runs are read alone, as if the new ones were absent, and the new ones are noted."""
    old = runs_intensity(cost={"bn": 0.1}, per_image=np.nan).drop(columns="data.intensity_per_image")
    new = runs_intensity(cost={"bn": 0.1})
    new = new[~new["data.intensity_shift"]].assign(**{"final_acc": 0.95, "final.test/acc": 0.95})
    v = intensity_shift.check(pd.concat([old, new], ignore_index=True), NO_CURVES)
    alone = intensity_shift.check(old, NO_CURVES)
    assert v.verdict == alone.verdict == NOT_REPRODUCED and v.estimate.value == alone.estimate.value, v.finding
    left = notes_of(v, intensity_shift.LEFT_OUT)
    assert [n.data for n in left] == [{"runs": 60, "protocol": "per image"}], v.notes


def test_one_variation_size_is_used_and_said():
    other = runs_intensity(cost={"bn": 0.1}, seeds=2)
    other = other[other["data.intensity_shift"]].assign(**{"data.intensity_offset": 0.3})
    v = intensity_shift.check(pd.concat([runs_intensity(), other], ignore_index=True), NO_CURVES)
    assert v.verdict == REPRODUCED, v.finding
    size = notes_of(v, intensity_shift.ONE_SIZE)
    assert [n.data for n in size] == [{"data.intensity_gain": 0.5, "data.intensity_offset": 0.1}], v.notes


@pytest.mark.parametrize("runs", [runs_intensity().iloc[0:0], runs_intensity().assign(study="norm_batch"),
                                  runs_intensity().assign(**{"data.intensity_shift": False})],
                         ids=["none", "other study", "no variation arm"])
def test_missing_runs_say_so(runs):
    v = intensity_shift.check(runs, NO_CURVES)
    assert v.verdict == MISSING and "python -m bnstudy run +exp=intensity_shift" in v.missing


def test_figure_draws_each_cell_at_its_best_rate():
    fig = intensity_shift.intensity_shift(runs_intensity())
    left = fig.axes[0]
    heights = [p.get_height() for p in left.patches if p.get_height() > 0]
    assert len(heights) == 6 and min(heights) > 55, heights  # no bar at a rate 30 points off the best
    assert len(fig.axes) == 2


# ---------------------------------------------------------------- the variation: per image

def test_per_image_shift_gives_each_image_its_own_gain_and_offset():
    """Identical images come out different per image, identical per batch: this fails if the
    variation is drawn once per batch."""
    x = torch.full((16, 3, 8, 8), 120, dtype=torch.uint8)
    per_image = shift_images(x, 0.5, 0.1, torch.Generator().manual_seed(0), per_image=True)
    assert per_image.float().mean(dim=(1, 2, 3)).unique().numel() >= 12
    assert all(torch.equal(im, im.flatten()[0].expand_as(im)) for im in per_image)  # one global map per image
    per_batch = shift_images(x, 0.5, 0.1, torch.Generator().manual_seed(0), per_image=False)
    assert per_batch.unique().numel() == 1


def test_per_image_shift_stays_in_its_stated_ranges():
    x = torch.full((4000, 1, 1, 1), 100, dtype=torch.uint8)
    out = shift_images(x, 0.5, 0.0, torch.Generator().manual_seed(1), per_image=True).float() / 100
    assert out.min() >= 1 / 1.5 - 0.01 and out.max() <= 1.5 + 0.01
    assert out.min() < 0.7 and out.max() > 1.45  # the whole range is drawn
    out = shift_images(x, 0.0, 0.1, torch.Generator().manual_seed(1), per_image=True).float() - 100
    assert out.min() >= -26 and out.max() <= 26 and out.min() < -24 and out.max() > 24  # +-0.1 of 255


def test_train_batches_vary_per_image():
    x = torch.full((64, 3, 8, 8), 120, dtype=torch.uint8)
    y = torch.zeros(64, dtype=torch.int64)
    xb, _ = next(train_batches(x, y, 32, torch.Generator().manual_seed(0), False, 0.5, 0.1, True))
    assert xb.mean(dim=(1, 2, 3)).unique().numel() >= 24
    xb, _ = next(train_batches(x, y, 32, torch.Generator().manual_seed(0), False, 0.5, 0.1, False))
    assert xb.mean(dim=(1, 2, 3)).unique().numel() == 1


def test_a_run_with_the_variation_trains_on_per_image_shifts(tmp_path, tiny_overrides, monkeypatch):
    """The config reaches the batches: the study's runs vary intensity per image (the default),
    and data.intensity_per_image=false restores one draw per batch."""
    seen = []

    def spy(*args):
        seen.append(args[5:])
        return train_batches(*args)

    monkeypatch.setattr(train_module, "train_batches", spy)
    cfg = compose_config(tiny_overrides + ["+exp=intensity_shift", "data.intensity_shift=true", "norm=bn",
                                           "optim.lr=0.1", "evaluation.shifted_test=false"])
    assert cfg.data.intensity_per_image and cfg.data.intensity_offset == 0.1
    run(cfg, tmp_path / "a")
    assert seen and seen[0] == (0.5, 0.1, True), seen
    seen.clear()
    run(compose_config(tiny_overrides + ["data.intensity_shift=true", "data.intensity_per_image=false"]),
        tmp_path / "b")
    assert seen and seen[0][-1] is False, seen


def test_study_file_sweeps_the_protocol_of_its_header():
    cfg = compose_config(["+exp=intensity_shift", "scale=cpu", "norm=gn"])
    assert cfg.schedule.name == "linear" and cfg.schedule.warmup_fraction == 0.1 and cfg.init.zero_init_residual
    assert (cfg.data.intensity_gain, cfg.data.intensity_offset, cfg.data.intensity_per_image) == (0.5, 0.1, True)
    assert cfg.trainer.epochs == 3 and cfg.evaluation.shifted_test and cfg.norm.groups == 8
    assert cfg.scale.seeds == "0,1,2,3,4"
    text = open(intensity_shift.__file__.replace("claims/intensity_shift.py", "conf/exp/intensity_shift.yaml")).read()
    assert "norm: bn,none,gn" in text and "optim.lr: ${by_scale:'0.1','0.025,0.1','0.025,0.1'}" in text
    assert "written 2026-11-29, before any run of it" in intensity_shift.__doc__
