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

Measured on the fixed probe batch (the first `batch_size` test images) in train mode:
every norm uses the probe batch's own statistics, as the network does while training.
BN running statistics are restored bit for bit afterwards.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from .base import Probe, ProbeContext, Rows, block_positions, forward_hooks, norm_positions, probe_images, restored

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
                 bins: int = 20, limit: float = 5.0):
        self.every, self.bins, self.limit = every, bins, limit
        self.x = probe_images(x_test, batch_size)

    def measure(self, model: nn.Module, autocast=nullcontext) -> Rows:
        norms, blocks = norm_positions(model), block_positions(model)
        out: dict[str, torch.Tensor] = {}  # row prefix -> (8 + bins,)

        def summary(x: torch.Tensor) -> torch.Tensor:
            return torch.cat([distribution_stats(x), histogram(x, self.bins, self.limit)])

        def on_norm(name, module, inputs, output):
            out[f"{name}.in"] = summary(inputs[0])
            out[f"{name}.out"] = out[f"{name}.in"] if output is inputs[0] else summary(output)

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
        return rows

    def before_update(self, ctx: ProbeContext) -> Rows:
        return self.measure(ctx.model, ctx.autocast)
