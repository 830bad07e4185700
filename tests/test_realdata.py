"""Opt-in tests on the real CIFAR-10 image folder (`-m realdata`; deselected by default):
BNSTUDY_CIFAR_FOLDER, or ../shared/data/cifar10-jpeg beside the checkout. Skipped, saying
where they looked, when neither exists."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from bnstudy.data import image_folder_cifar
from bnstudy.run import run
from conftest import REPO, compose_config

pytestmark = pytest.mark.realdata
FOLDER = Path(os.environ.get("BNSTUDY_CIFAR_FOLDER", REPO.parent / "shared" / "data" / "cifar10-jpeg"))


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    if not (FOLDER / "train").is_dir():
        pytest.skip(f"needs the CIFAR-10 image folder: set BNSTUDY_CIFAR_FOLDER (looked in {FOLDER})")
    return image_folder_cifar(str(FOLDER))


def test_the_folder_is_all_of_cifar10_balanced(cifar):
    assert cifar.x_train.shape == (50000, 3, 32, 32) and cifar.x_test.shape == (10000, 3, 32, 32)
    assert cifar.x_train.dtype == torch.uint8 and len(cifar.classes) == 10
    assert torch.bincount(cifar.y_train).tolist() == [5000] * 10
    assert torch.bincount(cifar.y_test).tolist() == [1000] * 10


def test_a_short_run_on_the_real_images_learns(cifar, tmp_path):
    """60 steps of BN ResNet-20 on a 2,560-image subset get well above chance on 1,000 test images."""
    cfg = compose_config(["scale=cpu", "data=cifar10_folder", f"data.root={FOLDER}", "data.train_subset=2560",
                          "data.test_subset=1000", "trainer.max_steps=60", "trainer.eval_every=60"])
    summary = run(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and summary["final_test_acc"] > 0.2
