"""Norm-layer registry. Models take `norm_layer(num_channels) -> nn.Module`, channels first.

Adding a norm is one entry in NORMS: a builder `(NormConfig, num_channels, layer_index) -> nn.Module`
and whether the convs before it need their bias back (they do when nothing re-centres).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import NormConfig

NormLayer = Callable[[int], nn.Module]


class GhostBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics come from virtual batches of `virtual_batch_size`
    examples inside the real batch (Hoffer et al. 2017). Each chunk is normalized by
    torch's batch_norm over that chunk alone; the running statistics move once per step,
    towards the average of the chunks' statistics, by `momentum` or, when it is None, as
    torch's cumulative average. Eval mode is plain BatchNorm2d."""

    def __init__(self, num_features: int, virtual_batch_size: int, **kw):
        super().__init__(num_features, **kw)
        self.virtual_batch_size = virtual_batch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W)
        if not self.training or x.shape[0] <= self.virtual_batch_size:
            return super().forward(x)
        chunks = x.split(self.virtual_batch_size)
        out = torch.cat([F.batch_norm(c, None, None, self.weight, self.bias, True, 0.0, self.eps)
                         for c in chunks])
        if self.track_running_stats:
            with torch.no_grad():
                # in fp32, as the running statistics are (under bf16 autocast the chunks are bf16)
                mean = torch.stack([c.float().mean(dim=(0, 2, 3)) for c in chunks]).mean(0)  # (C,)
                var = torch.stack([c.float().var(dim=(0, 2, 3), unbiased=True) for c in chunks]).mean(0)
                self.num_batches_tracked += 1
                # momentum=None is torch's cumulative average (precise BN sets it): weight 1/n
                factor = 1.0 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean, factor)
                self.running_var.lerp_(var, factor)
        return out


class NoisyBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm followed, in training, by a random per-channel scale and shift drawn anew
    at every step: covariate shift injected on purpose (the "noisy BN" control of
    Santurkar et al. 2018, Sec. 2.1). scale ~ U(1, noise_scale), shift ~ U(-noise_shift,
    noise_shift). The draws come from the module's own generator, seeded by `seed`, so
    they do not consume the global RNG.

    In eval mode the noise is replaced by its mean, as inverted dropout does: scale
    (1 + noise_scale) / 2, shift 0. The layers after it were trained on activations scaled
    by 1.25 on average (noise_scale 1.5); dropping the scale at test time compounds over
    the depth (ResNet-20: 15% eval-mode accuracy where batch statistics gave 30%)."""

    def __init__(self, num_features: int, noise_shift: float, noise_scale: float, seed: int = 0, **kw):
        super().__init__(num_features, **kw)
        self.noise_shift, self.noise_scale = noise_shift, noise_scale
        self.generator = torch.Generator().manual_seed(seed)
        self.last_noise: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if not self.training:
            return y * ((1 + self.noise_scale) / 2)
        c = self.num_features
        scale = 1 + (self.noise_scale - 1) * torch.rand(c, generator=self.generator)
        shift = self.noise_shift * (2 * torch.rand(c, generator=self.generator) - 1)
        self.last_noise = (scale, shift)
        shape = (1, c) + (1,) * (y.dim() - 2)  # (1, C, 1, 1) for images, (1, C) for features
        return y * scale.to(y).view(shape) + shift.to(y).view(shape)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 4):  # (N, C) features (the mlp) or (N, C, H, W) images
            raise ValueError(f"expected 2D or 4D input (got {x.dim()}D input)")


@dataclass(frozen=True)
class NormSpec:
    build: Callable[[NormConfig, int, int], nn.Module]  # (cfg, num_channels, layer index) -> layer
    conv_bias: bool  # True where the norm does not subtract a mean (so a conv bias is not redundant)


NORMS: dict[str, NormSpec] = {
    "bn": NormSpec(lambda c, n, i: nn.BatchNorm2d(n, eps=c.eps, momentum=c.momentum, affine=c.affine), False),
    "none": NormSpec(lambda c, n, i: nn.Identity(), True),
    "gn": NormSpec(lambda c, n, i: nn.GroupNorm(c.groups, n, eps=c.eps, affine=c.affine), False),
    # LayerNorm over (C, H, W) of each example = GroupNorm with a single group.
    "ln": NormSpec(lambda c, n, i: nn.GroupNorm(1, n, eps=c.eps, affine=c.affine), False),
    "ghost_bn": NormSpec(lambda c, n, i: GhostBatchNorm2d(n, c.ghost_batch_size, eps=c.eps, momentum=c.momentum,
                                                       affine=c.affine), False),
    # each layer its own reproducible noise stream
    "noisy_bn": NormSpec(lambda c, n, i: NoisyBatchNorm2d(n, c.noise_shift, c.noise_scale, seed=c.noise_seed * 1000 + i,
                                                          eps=c.eps, momentum=c.momentum, affine=c.affine), False),
}


def make_norm_layer(cfg: NormConfig) -> tuple[NormLayer, bool]:
    """Return (norm_layer factory, whether convs should carry a bias)."""
    if cfg.name not in NORMS:
        raise KeyError(f"norm.name={cfg.name!r}: one of {', '.join(NORMS)}")
    spec, index = NORMS[cfg.name], itertools.count()
    return (lambda num_channels: spec.build(cfg, num_channels, next(index))), spec.conv_bias
