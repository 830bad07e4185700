import json
import os

import pytest
import torch
from PIL import Image

from bnstudy.config import DataConfig
from bnstudy.data import (CIFAR10_MEAN, CIFAR10_STD, DataError, augment, balanced_subset,
                          image_folder_cifar, load_data, normalize, synthetic_cifar, train_batches)


def test_normalization_constants_are_the_correct_ones():
    assert CIFAR10_MEAN == (0.4914, 0.4822, 0.4465)
    assert CIFAR10_STD == (0.2470, 0.2435, 0.2616)
    x = torch.tensor([[[[round(m * 255)]] for m in CIFAR10_MEAN]], dtype=torch.uint8)  # (1, 3, 1, 1)
    assert normalize(x).abs().max() < 0.01


def test_synthetic_is_deterministic_shaped_and_balanced():
    a, b = synthetic_cifar(200, 50), synthetic_cifar(200, 50)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train.shape == (200, 3, 32, 32) and a.x_train.dtype == torch.uint8
    assert torch.bincount(a.y_train).tolist() == [20] * 10


def test_synthetic_classes_differ_more_than_examples_within_a_class():
    d = synthetic_cifar(1000, 10)
    means = torch.stack([d.x_train[d.y_train == c].float().mean(0) for c in range(10)])  # (10, 3, 32, 32)
    between = torch.cdist(means.flatten(1), means.flatten(1)).sum() / 90
    assert between > 100  # the class templates are far apart in pixel space


def test_balanced_subset_is_balanced_seeded_and_sorted():
    y = torch.arange(1000) % 10
    a, b, c = balanced_subset(y, 105, 0), balanced_subset(y, 105, 0), balanced_subset(y, 105, 1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    counts = torch.bincount(y[a]).tolist()
    assert sorted(counts) == [10] * 5 + [11] * 5 and len(set(a.tolist())) == 105
    assert balanced_subset(y, None, 0) is None and balanced_subset(y, 5000, 0) is None


def test_load_data_applies_subsets():
    d = load_data(DataConfig(name="synthetic", synthetic_train_size=500, synthetic_test_size=200,
                             train_subset=100, test_subset=50))
    assert (len(d.x_train), len(d.x_test)) == (100, 50)


def test_load_data_puts_a_class_sorted_folder_in_a_fixed_random_order(tmp_path):
    """An image folder is read class by class; evaluation batches (batch statistics) and the
    train_eval slice are consecutive slices, so the loaded order must mix the classes."""
    write_folder(tmp_path / "d", n_per_class=20)
    cfg = DataConfig(name="cifar10_folder", root=str(tmp_path / "d"), cache_dir=str(tmp_path / "c"))
    raw = image_folder_cifar(cfg.root, cfg.cache_dir)
    assert raw.y_train.tolist() == sorted(raw.y_train.tolist())  # the folder's own order
    a, b = load_data(cfg), load_data(cfg)
    for split in ("train", "test"):
        ya = getattr(a, f"y_{split}")
        assert ya.tolist() != sorted(ya.tolist())
        assert torch.equal(ya, getattr(b, f"y_{split}"))  # the same order every time
        assert sorted(ya.tolist()) == sorted(getattr(raw, f"y_{split}").tolist())  # nothing lost
    sub = load_data(DataConfig(name="cifar10_folder", root=cfg.root, cache_dir=cfg.cache_dir, train_subset=20))
    assert sub.y_train.bincount().tolist() == [10, 10] and sub.y_train[:10].unique().numel() == 2


def test_augment_is_a_padded_crop_or_its_flip():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 255, (64, 3, 32, 32), dtype=torch.uint8)
    y = augment(x, g)
    assert y.shape == x.shape and y.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(64):
        candidates = [padded[i, :, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(y[i], c) or torch.equal(y[i], c.flip(2)) for c in candidates)
    # both flips and several offsets occur
    assert (y == x).all(dim=(1, 2, 3)).sum() < 64


def test_train_batches_cover_the_epoch_once():
    x = torch.arange(100).view(100, 1, 1, 1).expand(100, 3, 32, 32).to(torch.uint8)
    y = torch.arange(100)
    seen = torch.cat([yb for _, yb in train_batches(x, y, 32, torch.Generator().manual_seed(0), False)])
    assert len(seen) == 96 and len(set(seen.tolist())) == 96  # last partial batch dropped


def write_folder(root, n_per_class=3, classes=("cat", "dog"), ext="png"):
    g = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        for c in classes:
            os.makedirs(root / split / c, exist_ok=True)
            for i in range(n_per_class):
                arr = torch.randint(0, 256, (32, 32, 3), generator=g, dtype=torch.uint8).numpy()
                Image.fromarray(arr).save(root / split / c / f"{i}.{ext}")


def test_image_folder_reads_decodes_and_caches(tmp_path):
    write_folder(tmp_path / "d")
    cache = tmp_path / "cache"
    d = image_folder_cifar(str(tmp_path / "d"), str(cache))
    assert d.x_train.shape == (6, 3, 32, 32) and d.classes == ("cat", "dog")
    assert d.y_train.tolist() == [0, 0, 0, 1, 1, 1]
    # PNG is lossless: the tensor is the file's pixels, channels first
    png = torch.from_numpy(__import__("numpy").array(Image.open(tmp_path / "d" / "train" / "dog" / "1.png")))
    assert torch.equal(d.x_train[4], png.permute(2, 0, 1))
    files = list(cache.glob("*.pt"))
    assert len(files) == 1
    # the second load comes from the cache: poison the decoder to prove it
    import bnstudy.data as data_mod
    orig, data_mod._decode_all = data_mod._decode_all, None
    try:
        d2 = image_folder_cifar(str(tmp_path / "d"), str(cache))
    finally:
        data_mod._decode_all = orig
    assert torch.equal(d.x_train, d2.x_train)


def test_image_folder_cache_is_invalidated_by_a_changed_file(tmp_path):
    write_folder(tmp_path / "d", n_per_class=2)
    d1 = image_folder_cifar(str(tmp_path / "d"), str(tmp_path / "c"))
    Image.fromarray(torch.zeros(32, 32, 3, dtype=torch.uint8).numpy()).save(tmp_path / "d" / "train" / "cat" / "0.png")
    os.utime(tmp_path / "d" / "train" / "cat" / "0.png", ns=(1, 1))
    d2 = image_folder_cifar(str(tmp_path / "d"), str(tmp_path / "c"))
    assert d2.x_train[0].sum() == 0 and d1.x_train[0].sum() > 0


def test_corrupt_image_error_names_the_file(tmp_path):
    write_folder(tmp_path / "d", ext="jpg")
    bad = tmp_path / "d" / "train" / "dog" / "1.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(DataError, match="1.jpg") as e:
        image_folder_cifar(str(tmp_path / "d"), str(tmp_path / "c"))
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_missing_folder_error(tmp_path):
    with pytest.raises(DataError, match="train"):
        image_folder_cifar(str(tmp_path / "nope"), str(tmp_path / "c"))


def test_cifar10_offline_error_names_folder_and_alternatives(tmp_path):
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name="cifar10", root=str(tmp_path / "cifar"), download=False))
    msg = str(e.value)
    assert str(tmp_path / "cifar") in msg and "cifar10_folder" in msg and "synthetic" in msg


def test_cifar10_cli_offline_download_fails_cleanly(tmp_path, monkeypatch):
    # no network in tests: make any download attempt fail like an offline machine
    import urllib.request

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="could not be downloaded"):
        load_data(DataConfig(name="cifar10", root=str(tmp_path / "cifar"), download=True))


def test_a_run_whose_data_cannot_be_loaded_is_recorded_as_failed(tmp_path):
    """The error is raised (one line for the user) and the run folder says failed, not running."""
    from bnstudy.run import run
    from conftest import compose_config

    cfg = compose_config(["data=cifar10_folder", f"data.root={tmp_path / 'no-such-folder'}"])
    with pytest.raises(DataError):
        run(cfg, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"].startswith("DataError")


def test_a_misspelt_key_gets_the_nearest_key():
    from bnstudy.preflight import did_you_mean
    assert did_you_mean("optim.lrr") == "optim.lr" and did_you_mean("trainer.epoch") == "trainer.epochs"
    assert did_you_mean("nothing.like.it") == ""
