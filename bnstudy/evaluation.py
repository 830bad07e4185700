"""Measurements on a model: `evaluate`, the loop's own test (and train-mode) evaluation, and,
after training, how BN behaves at inference.

- `inference_modes`: test accuracy with running (population) statistics vs batch
  statistics at each test batch size, and with "precise BN" statistics recomputed over
  training images; plus the promise of eval mode, that an example's output does not
  depend on the rest of its batch (the largest change in logits, measured).
- `precise_bn_accuracy`: test accuracy with "precise BN" statistics alone (a study's
  cheap second evaluation, `evaluation.precise_bn`).
- `shifted_test_accuracy`: accuracy when each test batch (or image) gets a random intensity shift.
Every function leaves the model exactly as it found it (weights, BN buffers, mode).
"""
from __future__ import annotations

import copy
from contextlib import contextmanager, nullcontext
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .data import augment, intensity_shift, normalize
from .nets.norms import GhostBatchNorm2d


# In eval mode an image's logits do not depend on the rest of its batch, so on a CPU the forward
# runs in chunks of at most this many images, which run faster. On one core of a 2-core AMD
# EPYC (2 MiB L2 a core) ResNet-20 evaluates ~2.1x faster in fp32 at 125-250 images than at 1,000
# and 1.1-1.2x faster in bf16 + channels_last (`python -m bnstudy bench --eval-chunks
# 125,250,500,1000`: results/bench/eval-chunks/).
CPU_EVAL_CHUNK = 250


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
             train_mode: bool = False, autocast=nullcontext, cpu_chunk: int | None = None) -> tuple[float, float]:
    """(mean loss, accuracy) over uint8 images `x`; eval mode (running statistics) unless
    `train_mode`. The model's mode is restored afterwards; in train mode BN running
    statistics would be updated, so that mode is only for probes that save them. `batch_size`
    is the test batch in train mode; in eval mode, where the batch changes nothing but speed,
    a CPU forwards at most `cpu_chunk` (default CPU_EVAL_CHUNK) images at a time."""
    was_training = model.training
    model.train(train_mode)
    if not train_mode and x.device.type == "cpu":
        batch_size = min(batch_size, cpu_chunk or CPU_EVAL_CHUNK)
    total_loss = torch.zeros((), device=x.device, dtype=torch.float64)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    for i in range(0, len(x), batch_size):
        xb, yb = normalize(x[i:i + batch_size]), y[i:i + batch_size]
        with autocast():
            logits = model(xb)
        total_loss += F.cross_entropy(logits.float(), yb, reduction="sum").double()
        correct += (logits.argmax(1) == yb).sum()
    model.train(was_training)
    n = len(x)
    return total_loss.item() / n, correct.item() / n


def bn_layers(model: nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


@contextmanager
def preserved_state(model: nn.Module) -> Iterator[nn.Module]:
    """Restore parameters, buffers and train/eval mode on exit."""
    state = copy.deepcopy(model.state_dict())
    modes = {m: m.training for m in model.modules()}
    try:
        yield model
    finally:
        model.load_state_dict(state)
        for m, mode in modes.items():
            m.train(mode)


@torch.no_grad()
def batch_stats_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Accuracy with BN normalizing by each test batch's own statistics (train-mode BN),
    dropout off; the running statistics are left untouched."""
    with preserved_state(model):
        model.eval()
        for m in bn_layers(model):
            m.train()
        correct = 0
        n = (len(x) // batch_size) * batch_size or len(x)  # whole batches only: a last tiny batch is not the same test
        for i in range(0, n, batch_size):
            logits = model(normalize(x[i:i + batch_size]))
            correct += (logits.argmax(1) == y[i:i + batch_size]).sum().item()
        return correct / n


@torch.no_grad()
def precise_bn_(model: nn.Module, x_train: torch.Tensor, batch_size: int = 200, max_images: int = 10000,
                augment_seed: int | None = None) -> None:
    """Recompute BN running statistics as the plain average over training batches of
    `batch_size`, in place (Wu & Johnson 2021, "precise BN"). With `augment_seed`, each batch
    is augmented as training batches are (padded random crop + flip, one generator seeded with
    it): the statistics of the inputs the net trained on, as pycls and fvcore recompute them
    over the training loader. Without, the images as they are: for a net trained on augmented
    crops these statistics are not its training statistics (zero padding darkens ~13% of a
    crop's pixels on average), and test accuracy with them reads low.

    Ghost BN layers get population statistics too: here they normalize over whole batches
    and average those batches' statistics, not their virtual batches', whose variance leaves
    out the spread between virtual batches. Their virtual batch size is restored afterwards."""
    layers = bn_layers(model)
    momenta = [m.momentum for m in layers]
    ghosts = [(m, m.virtual_batch_size) for m in layers if isinstance(m, GhostBatchNorm2d)]
    was_training = model.training
    model.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
        m.train()
    for m, _ in ghosts:
        m.virtual_batch_size = batch_size  # a batch no larger than its virtual batch: plain BN
    generator = None if augment_seed is None else torch.Generator(x_train.device).manual_seed(augment_seed)
    try:
        for i in range(0, min(len(x_train), max_images), batch_size):
            xb = x_train[i:i + batch_size]
            model(normalize(xb if generator is None else augment(xb, generator)))
    finally:
        for m, mom in zip(layers, momenta):
            m.momentum = mom
        for m, size in ghosts:
            m.virtual_batch_size = size
        model.train(was_training)


def precise_bn_accuracy(model: nn.Module, x_test: torch.Tensor, y_test: torch.Tensor, x_train: torch.Tensor,
                        images: int, eval_batch_size: int, autocast=nullcontext,
                        augment_seed: int | None = None) -> float:
    """Test accuracy (eval mode) with BN statistics recomputed over the first `images`
    training images by precise_bn_ (in fp32; augmented with `augment_seed`); the model's own
    running statistics are left as they were. The test forward runs under `autocast`, as the
    run's own evaluation does."""
    with preserved_state(model):
        precise_bn_(model, x_train, max_images=images, augment_seed=augment_seed)
        return evaluate(model, x_test, y_test, eval_batch_size, autocast=autocast)[1]


@torch.no_grad()
def batch_independence_gap(model: nn.Module, x: torch.Tensor, n: int = 8) -> float:
    """Largest |logit| change of the first `n` examples between evaluating each alone and
    within a batch of others, in eval mode: ~0 (float rounding) is the promise kept."""
    with preserved_state(model):
        model.eval()
        batch = model(normalize(x[:max(n, min(len(x), 256))]))[:n]
        alone = torch.cat([model(normalize(x[i:i + 1])) for i in range(n)])
        return (batch - alone).abs().max().item()


def inference_modes(model: nn.Module, x_test: torch.Tensor, y_test: torch.Tensor, x_train: torch.Tensor,
                    batch_sizes: list[int], precise_bn_images: int = 10000,
                    augment_seed: int | None = None) -> dict[str, float]:
    """Metrics `infer/*` for one trained model (precise BN over batches augmented with
    `augment_seed`, and then also over the images as they are: `infer/acc_precise_unaugmented`)."""
    out: dict[str, float] = {}
    for b in batch_sizes:
        b_eff = min(b, len(x_test))
        out[f"infer/acc_running.bs{b}"] = evaluate(model, x_test, y_test, b_eff)[1]
        if bn_layers(model):
            out[f"infer/acc_batch.bs{b}"] = batch_stats_accuracy(model, x_test, y_test, b_eff)
    if bn_layers(model):
        with preserved_state(model):
            precise_bn_(model, x_train, max_images=precise_bn_images, augment_seed=augment_seed)
            out["infer/acc_precise"] = evaluate(model, x_test, y_test, 1000)[1]
        if augment_seed is not None:  # beside it, the statistics of the images as they are
            with preserved_state(model):
                precise_bn_(model, x_train, max_images=precise_bn_images)
                out["infer/acc_precise_unaugmented"] = evaluate(model, x_test, y_test, 1000)[1]
    out["infer/batch_independence_gap"] = batch_independence_gap(model, x_test)
    return out


@torch.no_grad()
def shifted_test_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, gain: float, offset: float,
                          batch_size: int = 100, seed: int = 0, batch_stats: bool = False,
                          per_image: bool = False) -> float:
    """Accuracy when each test batch of `batch_size` gets its own random shift (with
    `per_image`, each test image its own): eval mode (running statistics, a fixed affine map
    that cannot undo a batch's gain), or with `batch_stats` each batch normalized by its own
    statistics (which can undo a gain shared by the batch, not one per image). The same shifts
    either way (the same seed); the model's state is restored."""
    g = torch.Generator(x.device).manual_seed(seed)
    with preserved_state(model):
        model.eval()
        for m in bn_layers(model) if batch_stats else []:
            m.train()  # dropout stays off
        correct = 0
        for i in range(0, len(x), batch_size):
            xb = intensity_shift(x[i:i + batch_size], gain, offset, g, per_image)
            correct += (model(normalize(xb)).argmax(1) == y[i:i + batch_size]).sum().item()
    return correct / len(x)
