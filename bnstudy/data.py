"""Data: CIFAR-10 (torchvision), CIFAR-10 from an image folder, or synthetic, as uint8 tensors.

Everything is held as uint8 (N, 3, 32, 32) on the run's device; batches are drawn by a
seeded permutation and augmented batched on tensors (no per-sample PIL, no DataLoader),
then normalized with the CIFAR-10 training-set statistics.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

from .config import DataConfig
from .outputs import atomic_torch_save

# Per-channel mean and std of the 50,000 CIFAR-10 training images in [0, 1].
# (The often-copied std (0.2023, 0.1994, 0.2010) is a known mistake.)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


class DataError(RuntimeError):
    """Data that cannot be loaded; the message is one line saying what and where."""


@dataclass
class TensorData:
    x_train: torch.Tensor  # (N, 3, 32, 32) uint8
    y_train: torch.Tensor  # (N,) int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]

    def to(self, device: torch.device) -> "TensorData":
        return TensorData(self.x_train.to(device), self.y_train.to(device),
                          self.x_test.to(device), self.y_test.to(device), self.classes)


# ---------------------------------------------------------------------------- sources

def synthetic_cifar(n_train: int, n_test: int, noise: float = 0.6, num_classes: int = 10,
                    seed: int = 1234) -> TensorData:
    """CIFAR-shaped data with class-dependent structure, deterministic for a given seed.

    Each class has a smooth random colour template (a 4x4 pattern upsampled to 32x32);
    an example is its class template, randomly shifted by up to 4 pixels, with a random
    contrast and Gaussian pixel noise. Learnable well above chance in a few hundred steps,
    not solvable at a glance.
    """
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand(num_classes, 3, 4, 4, generator=g)
    templates = F.interpolate(templates, size=(40, 40), mode="bicubic", align_corners=False)  # (K, 3, 40, 40)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % num_classes
        y = y[torch.randperm(n, generator=g)]
        dx = torch.randint(0, 9, (n,), generator=g)
        dy = torch.randint(0, 9, (n,), generator=g)
        contrast = 0.5 + torch.rand(n, 1, 1, 1, generator=g)
        x = torch.empty(n, 3, 32, 32, dtype=torch.uint8)
        for i in range(0, n, 4096):  # in chunks: the float intermediates of 50,000 images would take GBs
            j = slice(i, i + 4096)
            xf = _crop(templates[y[j]], dy[j], dx[j], 32)  # (chunk, 3, 32, 32)
            xf = 0.5 + contrast[j] * (xf - 0.5) + noise * 0.25 * torch.randn(xf.shape, generator=g)
            x[j] = (xf.clamp(0, 1) * 255).round().to(torch.uint8)
        return x, y

    x_tr, y_tr = make(n_train)
    x_te, y_te = make(n_test)
    return TensorData(x_tr, y_tr, x_te, y_te, tuple(f"class{i}" for i in range(num_classes)))


def torchvision_cifar10(root: str, download: bool) -> TensorData:
    from torchvision.datasets import CIFAR10

    try:
        train = CIFAR10(root, train=True, download=download)
        test = CIFAR10(root, train=False, download=download)
    except Exception as e:  # offline: URLError / RuntimeError("Dataset not found ...")
        raise DataError(
            f"CIFAR-10 is not in {os.path.abspath(root)} and could not be downloaded "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
            f"use data=cifar10_folder data.root=PATH for an image-folder copy, or data=synthetic"
        ) from None

    def to_tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) -> (N, 3, 32, 32)
        return x, torch.tensor(ds.targets, dtype=torch.int64)

    return TensorData(*to_tensors(train), *to_tensors(test), tuple(train.classes))


def _folder_listing(split_dir: Path) -> tuple[list[tuple[str, int]], list[str]]:
    from torchvision.datasets.folder import find_classes, make_dataset

    classes, class_to_idx = find_classes(str(split_dir))
    samples = make_dataset(str(split_dir), class_to_idx, extensions=(".jpg", ".jpeg", ".png"))
    return samples, classes


def _decode_all(samples: list[tuple[str, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    import numpy as np
    from PIL import Image

    x = np.empty((len(samples), 32, 32, 3), dtype=np.uint8)
    for i, (path, _) in enumerate(samples):
        try:
            with Image.open(path) as im:
                img = np.asarray(im.convert("RGB"))
        except Exception as e:  # PIL.UnidentifiedImageError, OSError on truncated files, ...
            raise DataError(f"cannot decode image {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        if img.shape != (32, 32, 3):
            raise DataError(f"image {path} is {img.shape[1]}x{img.shape[0]} pixels, expected 32x32")
        x[i] = img
    x_t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()  # (N, H, W, C) -> (N, C, H, W)
    return x_t, torch.tensor([c for _, c in samples], dtype=torch.int64)


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bnstudy"


def image_folder_cifar(root: str, cache_dir: Optional[str] = None) -> TensorData:
    """CIFAR-10 from `root/{train,test}/<class>/*.{jpg,png}`, decoded once and cached.

    The cache key covers the folder's absolute path and every file's name, size and
    mtime, so an edited folder is decoded again rather than served stale.
    """
    root_p = Path(root).expanduser()
    for split in ("train", "test"):
        if not (root_p / split).is_dir():
            raise DataError(f"data.root={root}: no folder {root_p / split} "
                            "(expected train/<class>/* and test/<class>/* images)")
    train_samples, classes = _folder_listing(root_p / "train")
    test_samples, test_classes = _folder_listing(root_p / "test")
    if classes != test_classes:
        raise DataError(f"data.root={root}: train classes {classes} differ from test classes {test_classes}")

    h = hashlib.sha1(str(root_p.resolve()).encode())
    for path, c in train_samples + test_samples:
        st = os.stat(path)
        h.update(f"{path}|{c}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    cache_file = cache / f"cifar_folder_{h.hexdigest()[:16]}.pt"
    if cache_file.exists():
        try:
            d = torch.load(cache_file, weights_only=True)
            return TensorData(d["x_train"], d["y_train"], d["x_test"], d["y_test"], tuple(classes))
        except Exception:
            pass  # unreadable cache: decode again and overwrite it
    x_tr, y_tr = _decode_all(train_samples)
    x_te, y_te = _decode_all(test_samples)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        atomic_torch_save({"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te}, cache_file)
    except OSError:
        pass  # a cache we cannot write only costs time
    return TensorData(x_tr, y_tr, x_te, y_te, tuple(classes))


def balanced_subset(y: torch.Tensor, size: Optional[int], seed: int) -> Optional[torch.Tensor]:
    """Indices of a class-balanced random subset of `size` examples (None: keep all)."""
    if size is None or size >= len(y):
        return None
    g = torch.Generator().manual_seed(seed)
    classes = torch.unique(y)
    per_class = [size // len(classes) + (1 if i < size % len(classes) else 0) for i in range(len(classes))]
    picks = []
    for c, k in zip(classes.tolist(), per_class):
        idx = torch.nonzero(y == c).flatten()
        picks.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    return torch.sort(torch.cat(picks)).values


def load_data(cfg: DataConfig, subset_seed: int = 0) -> TensorData:
    """The data set named by `cfg`, subset as configured, on the CPU."""
    if cfg.name == "synthetic":
        data = synthetic_cifar(cfg.synthetic_train_size, cfg.synthetic_test_size, cfg.synthetic_noise)
    elif cfg.name == "cifar10":
        data = torchvision_cifar10(cfg.root, cfg.download)
    elif cfg.name == "cifar10_folder":
        data = image_folder_cifar(cfg.root, cfg.cache_dir)
    else:
        raise DataError(f"data.name={cfg.name!r}: one of synthetic, cifar10, cifar10_folder")
    tr = balanced_subset(data.y_train, cfg.train_subset, subset_seed)
    te = balanced_subset(data.y_test, cfg.test_subset, subset_seed + 1)
    # a fixed random order: an image folder (and a subset of it) comes sorted by class, and
    # consecutive slices feed the evaluation batches (batch statistics!) and train_eval/*
    tr = _fixed_order(len(data.y_train) if tr is None else tr, subset_seed + 2)
    te = _fixed_order(len(data.y_test) if te is None else te, subset_seed + 3)
    data.x_train, data.y_train = data.x_train[tr], data.y_train[tr]
    data.x_test, data.y_test = data.x_test[te], data.y_test[te]
    return data


def _fixed_order(idx: torch.Tensor | int, seed: int) -> torch.Tensor:
    """`idx` (or range(idx)) in a random order that depends only on `seed`."""
    idx = torch.arange(idx) if isinstance(idx, int) else idx
    return idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))]


# ---------------------------------------------------------------------------- batches

def _crop(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, size: int) -> torch.Tensor:
    """Per-example crop of a (N, C, H, W) batch at offsets (dy, dx): two batched gathers."""
    n, c, h, w = x.shape
    ar = torch.arange(size, device=x.device)
    rows = (dy.to(x.device)[:, None] + ar).view(n, 1, size, 1).expand(n, c, size, w)
    x = x.gather(2, rows)  # (N, C, size, W)
    cols = (dx.to(x.device)[:, None] + ar).view(n, 1, 1, size).expand(n, c, size, size)
    return x.gather(3, cols)  # (N, C, size, size)


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """The standard CIFAR augmentation, batched: `pad`-pixel zero-padded random crop + flip."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))  # (N, C, H+2p, W+2p)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=generator.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=generator.device)
    x = _crop(padded, dy, dx, h)
    flip = torch.rand(n, generator=generator, device=generator.device) < 0.5
    return torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)


def normalize(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float, standardized per channel with the CIFAR-10 statistics."""
    mean, std = _mean_std(x.device, dtype)
    return (x.to(dtype) / 255.0 - mean) / std


@functools.lru_cache(maxsize=8)
def _mean_std(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The constants as (1, 3, 1, 1) tensors, made once per device: normalize runs every step."""
    return (torch.tensor(CIFAR10_MEAN, device=device, dtype=dtype).view(1, 3, 1, 1),
            torch.tensor(CIFAR10_STD, device=device, dtype=dtype).view(1, 3, 1, 1))


def intensity_shift(x: torch.Tensor, gain: float, offset: float, generator: torch.Generator,
                    per_image: bool = False) -> torch.Tensor:
    """A random global gain in [1/(1+gain), 1+gain] (log-uniform) and offset in [-offset, offset]
    (pixel range 0-1) on a uint8 batch: with `per_image`, each image draws its own (scanners and
    patients differ image by image); else one draw for the whole batch, as if it came from
    another scanner. Pixels are rounded and clipped to 0-255. One draw per batch takes the same
    two random numbers as before `per_image` existed."""
    n = x.shape[0] if per_image else 1
    u = torch.rand(2, n, generator=generator, device=generator.device).to(x.device)
    g = torch.exp((2 * u[0] - 1) * math.log1p(gain)).view(n, 1, 1, 1)
    o = ((2 * u[1] - 1) * offset * 255).view(n, 1, 1, 1)
    return (x.float() * g + o).round().clamp(0, 255).to(torch.uint8)


def train_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator,
                  do_augment: bool = True, gain: float = 0.0,
                  offset: float = 0.0, per_image: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled, augmented, normalized batches; the last partial batch is dropped.
    With `gain` or `offset`, each batch also gets a random intensity shift (intensity_shift:
    each image its own with `per_image`, else one for the batch)."""
    perm = torch.randperm(len(x), generator=generator, device=generator.device).to(x.device)
    for i in range(len(x) // batch_size):
        idx = perm[i * batch_size:(i + 1) * batch_size]
        xb = x[idx]
        if do_augment:
            xb = augment(xb, generator)
        if gain > 0 or offset > 0:
            xb = intensity_shift(xb, gain, offset, generator, per_image)
        yield normalize(xb), y[idx]
