"""Activation distributions (Ioffe & Szegedy 2015, Fig. 1): percentiles and histograms.

Positions: the input (`in`, the pre-normalization activation) and output (`out`) of every
norm layer, and the output of every block (post-ReLU in the ResNet, so `zero_frac`
counts dead units; post-sigmoid in the MLP). Under norm=none the norm layers are
nn.Identity, so `in` equals `out` and bn and none runs compare position by position.

Rows: `act/{position}.{in|out}.{stat}`, stat in p01 p15 p50 p85 p99 (torch.quantile,
linear interpolation), mean, std (population, over every element), zero_frac (fraction
of exact zeros); and `hist/{position}.{in|out}.bin{k:02d}`: the fraction of elements in
bin k of `bins` equal bins over [-R, R] (R = hist_range, default 20 bins of width 0.5 over
[-5, 5]); bin k covers [-R + k*2R/bins, -R + (k+1)*2R/bins), and the first and last
bins also hold everything below -R and above R, so each histogram sums to 1. Block
outputs have only `out`.

Per unit (`channels` > 0): `chan/{position}.in.c{k:02d}.{mean|std}`, the mean and the
(population) standard deviation over the probe batch, and positions, of each of the first
`channels` channels of every norm layer's input (units in the MLP): a layer's distribution as
Ioffe & Szegedy's Fig. 1 follows it, one unit at a time, where pooled percentiles would let
units moving in opposite directions cancel.

Measured on the fixed probe batch (the first `batch_size` test images) in train mode:
every norm uses the probe batch's own statistics, as the network does while training.
BN running statistics are restored bit for bit afterwards.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from .base import (Probe, ProbeContext, Rows, block_positions, channel_moments, forward_hooks, norm_positions,
                   probe_images, restored)

QUANTILES = (0.01, 0.15, 0.50, 0.85, 0.99)
STATS = ("p01", "p15", "p50", "p85", "p99", "mean", "std", "zero_frac")
MAX_QUANTILE_ELEMENTS = 2 ** 24  # torch.quantile's input limit; larger inputs are strided down to it


def distribution_stats(x: torch.Tensor) -> torch.Tensor:
    """STATS of all elements of `x`, any shape -> (8,)."""
    x = x.detach().flatten().float()  # (n,)
    sample = x[:: -(-x.numel() // MAX_QUANTILE_ELEMENTS)]
    q = torch.quantile(sample, torch.tensor(QUANTILES, device=x.device))  # (5,)
    rest = torch.stack([x.mean(), x.std(correction=0), (x == 0).float().mean()])  # (3,)
    return torch.cat([q, rest])


def histogram(x: torch.Tensor, bins: int, limit: float) -> torch.Tensor:
    """Fractions of elements in `bins` equal bins over [-limit, limit], tails in the end bins -> (bins,)."""
    x = x.detach().flatten().float().clamp(-limit, limit)
    return torch.histc(x, bins, -limit, limit) / x.numel()


class ActivationsProbe(Probe):
    def __init__(self, every: int | None, x_test: torch.Tensor, batch_size: int = 128,
                 bins: int = 20, limit: float = 5.0, channels: int = 0):
        self.every, self.bins, self.limit, self.channels = every, bins, limit, channels
        self.x = probe_images(x_test, batch_size)

    def measure(self, model: nn.Module, autocast=nullcontext) -> Rows:
        norms, blocks = norm_positions(model), block_positions(model)
        out: dict[str, torch.Tensor] = {}  # row prefix -> (8 + bins,)
        units: dict[str, torch.Tensor] = {}  # norm layer input -> (2, k): the first k channels' mean, std

        def summary(x: torch.Tensor) -> torch.Tensor:
            return torch.cat([distribution_stats(x), histogram(x, self.bins, self.limit)])

        def on_norm(name, module, inputs, output):
            out[f"{name}.in"] = summary(inputs[0])
            out[f"{name}.out"] = out[f"{name}.in"] if output is inputs[0] else summary(output)
            if self.channels:
                mean, var = channel_moments(inputs[0])  # (C,), (C,)
                units[f"{name}.in"] = torch.stack([mean, var.sqrt()])[:, :self.channels]

        def on_block(name, module, inputs, output):
            out[f"{name}.out"] = summary(output)

        with restored(model, params=False), torch.no_grad(), forward_hooks(norms, on_norm), \
                forward_hooks(blocks, on_block), autocast():
            model.train()
            model(self.x)
        values = torch.stack(list(out.values())).tolist()  # (positions, 8 + bins): one host sync
        rows: Rows = {}
        for prefix, v in zip(out, values):
            rows.update({f"act/{prefix}.{s}": v[i] for i, s in enumerate(STATS)})
            rows.update({f"hist/{prefix}.bin{k:02d}": v[len(STATS) + k] for k in range(self.bins)})
        for prefix, (means, stds) in zip(units, [u.tolist() for u in units.values()]):
            rows.update({f"chan/{prefix}.c{k:02d}.{stat}": x for stat, xs in (("mean", means), ("std", stds))
                         for k, x in enumerate(xs)})
        return rows

    def before_update(self, ctx: ProbeContext) -> Rows:
        return self.measure(ctx.model, ctx.autocast)
