"""Norm-layer registry. Models take `norm_layer(num_channels) -> nn.Module`, channels first.

Adding a norm is one entry in NORMS: a builder `(NormConfig, num_channels) -> nn.Module`
and whether the convs before it need their bias back (they do when nothing re-centres).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from torch import nn

from .config import NormConfig

NormLayer = Callable[[int], nn.Module]


@dataclass(frozen=True)
class NormSpec:
    build: Callable[[NormConfig, int], nn.Module]
    conv_bias: bool  # True where the norm does not subtract a mean (so a conv bias is not redundant)


NORMS: dict[str, NormSpec] = {
    "bn": NormSpec(lambda c, n: nn.BatchNorm2d(n, eps=c.eps, momentum=c.momentum, affine=c.affine), False),
    "none": NormSpec(lambda c, n: nn.Identity(), True),
    "gn": NormSpec(lambda c, n: nn.GroupNorm(c.groups, n, eps=c.eps, affine=c.affine), False),
    # LayerNorm over (C, H, W) of each example = GroupNorm with a single group.
    "ln": NormSpec(lambda c, n: nn.GroupNorm(1, n, eps=c.eps, affine=c.affine), False),
}


def _build(cfg: NormConfig, num_channels: int) -> nn.Module:
    return NORMS[cfg.name].build(cfg, num_channels)


def make_norm_layer(cfg: NormConfig) -> tuple[NormLayer, bool]:
    """Return (norm_layer factory, whether convs should carry a bias)."""
    if cfg.name not in NORMS:
        raise KeyError(f"norm.name={cfg.name!r}: one of {', '.join(NORMS)}")
    return partial(_build, cfg), NORMS[cfg.name].conv_bias
