"""Norm-layer registry. Models take `norm_layer(num_channels) -> nn.Module`, channels first.

Adding a norm is one entry in NORMS: a builder `(NormConfig, num_channels, layer_index) -> nn.Module`,
whether the convs before it need their bias back (they do when nothing re-centres), its layer
for the mlp's (N, C) features if it has one, and its label and colour in figures. A layer of
your own needs no entry: `norm=custom norm._target_=mypkg.MyNorm`.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from hydra.utils import instantiate
import torch.nn.functional as F
from torch import nn

from ..config import NormConfig

NormLayer = Callable[[int], nn.Module]


class GhostBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics come from virtual batches of `virtual_batch_size`
    examples inside the real batch (Hoffer et al. 2017). Each chunk is normalized by
    torch's batch_norm over that chunk alone; the running statistics move once per step,
    towards the average of the chunks' statistics, by `momentum` or, when it is None, as
    torch's cumulative average. Eval mode is plain BatchNorm2d.

    The chunks' means and unbiased variances come from batch_norm itself, in fp32: each chunk
    gets running buffers at momentum 1, which it overwrites. Where that was measured to pay
    (bf16, channels_last, >= 32 channels: results/bench/norms/) all chunks go through one
    batch_norm call, chunk i's channels becoming channels i*C..i*C+C-1 of a (g, k*C, H, W)
    batch; elsewhere (16 channels, fp32, NCHW, a smaller last chunk) one call per chunk."""

    def __init__(self, num_features: int, virtual_batch_size: int, **kw):
        super().__init__(num_features, **kw)
        self.virtual_batch_size = virtual_batch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W)
        g = self.virtual_batch_size
        if not self.training or x.shape[0] <= g:
            return super().forward(x)
        k, c = -(-x.shape[0] // g), x.shape[1]  # k chunks; the last may be smaller
        track = self.track_running_stats
        # (k, C): batch_norm at momentum 1 writes each chunk's mean and unbiased variance here
        mean = torch.zeros(k, c, dtype=self.running_mean.dtype, device=x.device) if track else None
        var = torch.zeros_like(mean) if track else None
        if self._one_call(x):
            out = self._chunks_as_channels(x, mean, var)
        else:
            out = torch.cat([F.batch_norm(chunk, mean[i] if track else None, var[i] if track else None,
                                          self.weight, self.bias, True, 1.0, self.eps)
                             for i, chunk in enumerate(x.split(g))])
        if track:
            with torch.no_grad():
                self.num_batches_tracked += 1
                # momentum=None is torch's cumulative average (precise BN sets it): weight 1/n
                factor = 1.0 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.mean(0), factor)
                self.running_var.lerp_(var.mean(0), factor)
        return out

    def _one_call(self, x: torch.Tensor) -> bool:
        # One call copies the activation four times (in and out, forward and backward) where the
        # loop pays ~40 us a chunk. On a CPU one call won in bf16 from 32 channels (up to 2x a layer
        # at 2 images a chunk); with 16 channels (bf16 runs of 32 bytes to copy) and in fp32 it lost.
        return (x.shape[0] % self.virtual_batch_size == 0 and x.dtype == torch.bfloat16 and x.shape[1] >= 32
                and x.is_contiguous(memory_format=torch.channels_last))

    def _chunks_as_channels(self, x: torch.Tensor, mean, var) -> torch.Tensor:
        n, c, h, w = x.shape
        g = self.virtual_batch_size
        k = n // g
        # channels_last memory is (k, g, H, W, C); to (g, H, W, k*C): one copy
        xs = x.permute(0, 2, 3, 1).reshape(k, g, h, w, c).permute(1, 2, 3, 0, 4).reshape(g, h, w, k * c)
        ys = F.batch_norm(xs.permute(0, 3, 1, 2),  # (g, k*C, H, W), channels_last
                          None if mean is None else mean.view(-1), None if var is None else var.view(-1),
                          None if self.weight is None else self.weight.repeat(k),
                          None if self.bias is None else self.bias.repeat(k), True, 1.0, self.eps)
        # and back: (g, H, W, k, C) -> (k, g, H, W, C) = (N, H, W, C) -> (N, C, H, W), channels_last
        ys = ys.permute(0, 2, 3, 1).reshape(g, h, w, k, c).permute(3, 0, 1, 2, 4)
        return ys.reshape(n, h, w, c).permute(0, 3, 1, 2)


class RunningBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm without batch noise in its training forward: after `burn_in` training steps of
    plain BN, it normalizes with its running (moving-average) statistics, as eval mode does, and
    still moves them towards each batch's statistics. Batch Renormalization (Ioffe 2017, Sec. 3)
    with r and d unbounded: y = gamma * (r * (x - mu_B) / sigma_B + d) + beta, r = sigma_B / sigma,
    d = (mu_B - mu) / sigma with mu, sigma the running statistics before this step and r, d held
    constant in the backward. So an example's output depends on its own activations and the
    running statistics alone, never on the other examples of its batch; the gradient still
    flows through the batch's mean and variance, BN's gradient scaled by r, which keeps
    normalizing the update (normalizing by moving averages with no gradient through any
    statistics blows up: Ioffe & Szegedy 2015, Sec. 2; Ioffe 2017, Sec. 3).

    Eval mode, the buffers and the state_dict are BatchNorm2d's. Train mode past the burn-in is
    not a batch-statistics evaluation (evaluation.batch_stats_accuracy reads running statistics
    here). One host read of num_batches_tracked a layer a step (a sync on a GPU)."""

    def __init__(self, num_features: int, burn_in: int = 50, **kw):
        super().__init__(num_features, **kw)
        self.burn_in = burn_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W)
        if not self.training or not self.track_running_stats or int(self.num_batches_tracked) < self.burn_in:
            return super().forward(x)
        self._check_input_dim(x)
        c = x.shape[1]
        # batch_norm at momentum 1 writes the batch's mean and unbiased variance here, in fp32
        mean = torch.zeros(c, dtype=self.running_mean.dtype, device=x.device)
        var = torch.ones_like(mean)
        xb = F.batch_norm(x, mean, var, None, None, True, 1.0, self.eps)  # (x - mu_B) / sigma_B, differentiable
        n = x.numel() // c
        with torch.no_grad():
            inv_std = torch.rsqrt(self.running_var + self.eps)
            r = torch.sqrt(var * ((n - 1) / n) + self.eps) * inv_std  # sigma_B over the biased variance BN used
            d = (mean - self.running_mean) * inv_std
        scale, shift = (r * self.weight, d * self.weight + self.bias) if self.affine else (r, d)
        shape = (1, c, 1, 1)
        out = torch.addcmul(shift.to(xb.dtype).view(shape), xb, scale.to(xb.dtype).view(shape))
        with torch.no_grad():
            self.num_batches_tracked += 1
            # momentum=None is torch's cumulative average (precise BN sets it): weight 1/n
            factor = 1.0 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
            self.running_mean.lerp_(mean, factor)
            self.running_var.lerp_(var, factor)
        return out


class GroupNorm(nn.GroupNorm):
    """torch's GroupNorm, given NCHW memory on the CPU where a group has fewer than 16 channels:
    there torch's channels_last kernel is 3-10x slower than its NCHW one (bf16, one thread, 8
    groups of 2 channels: forward + backward 29 ms a layer against 8 ms with both copies), so a
    channels_last input goes to NCHW and the output back. With >= 16 channels a group (ln, one
    group) the channels_last kernel is the faster (results/bench/norms/)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and x.dim() == 4 and self.num_channels // self.num_groups < 16
                and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)):
            return super().forward(x.contiguous()).contiguous(memory_format=torch.channels_last)
        return super().forward(x)


class NoisyBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm followed, in training, by random noise drawn anew at every step: covariate
    shift injected on purpose (the "noisy BN" control of Santurkar et al. 2018, Sec. 2.1).
    The draws come from the module's own generator, seeded by `seed`, so they do not consume
    the global RNG (the probes save and restore it: probes/base.py).

    `noise_per` says what shares a draw:
      channel  one scale ~ U(1, noise_scale) and shift ~ U(-noise_shift, noise_shift) per
               channel, shared by every example (and position) of the batch;
      example  Santurkar et al.'s i.i.d. noise, as read here (their Appendix A was not at hand):
               each step the layer draws one noise distribution for all its activations, the
               mean and half-width of a multiplicative and of an additive uniform noise: scale
               mean ~ U(1, noise_scale), half-width ~ U(0, noise_scale - 1); shift mean ~
               U(-noise_shift, noise_shift), half-width ~ U(0, noise_shift). Every activation of
               every example then draws its own scale and shift from them, i.i.d.: non-zero
               mean, non-unit variance, a distribution that changes at every step. A scale stays
               positive while noise_scale < 2.

    In eval mode the noise is replaced by its mean, as inverted dropout does: scale
    (1 + noise_scale) / 2, shift 0, in both modes. The layers after it were trained on
    activations scaled by 1.25 on average (noise_scale 1.5); dropping the scale at test time
    compounds over the depth (ResNet-20: 15% eval-mode accuracy where batch statistics gave 30%)."""

    NOISE_PER = ("channel", "example")

    def __init__(self, num_features: int, noise_shift: float, noise_scale: float, seed: int = 0,
                 noise_per: str = "channel", **kw):
        super().__init__(num_features, **kw)
        if noise_per not in self.NOISE_PER:
            raise ValueError(f"noise_per={noise_per!r}: one of {', '.join(self.NOISE_PER)}")
        self.noise_shift, self.noise_scale, self.noise_per = noise_shift, noise_scale, noise_per
        self.generator = torch.Generator().manual_seed(seed)
        # the last step's draws: (scale, shift) per channel, or per element (noise_per=example)
        self.last_noise: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if not self.training:
            return y * ((1 + self.noise_scale) / 2)
        if self.noise_per == "example":
            scale, shift = self._example_noise(y.shape)
            self.last_noise = (scale, shift)
            return y * scale.to(y) + shift.to(y)
        c = self.num_features
        scale = 1 + (self.noise_scale - 1) * torch.rand(c, generator=self.generator)
        shift = self.noise_shift * (2 * torch.rand(c, generator=self.generator) - 1)
        self.last_noise = (scale, shift)
        shape = (1, c) + (1,) * (y.dim() - 2)  # (1, C, 1, 1) for images, (1, C) for features
        return y * scale.to(y).view(shape) + shift.to(y).view(shape)

    def _example_noise(self, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        """This step's distribution, then a scale and a shift for every element of `shape`."""
        u = torch.rand(4, generator=self.generator)
        s, a = self.noise_scale - 1, self.noise_shift
        scale_mean, scale_half = 1 + s * u[0], s * u[1]
        shift_mean, shift_half = a * (2 * u[2] - 1), a * u[3]
        e = 2 * torch.rand((2, *shape), generator=self.generator) - 1  # (2, N, C[, H, W]) in [-1, 1)
        return scale_mean + scale_half * e[0], shift_mean + shift_half * e[1]

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 4):  # (N, C) features (the mlp) or (N, C, H, W) images
            raise ValueError(f"expected 2D or 4D input (got {x.dim()}D input)")


@dataclass(frozen=True)
class NormSpec:
    build: Callable[[NormConfig, int, int], nn.Module]  # (cfg, num_channels, layer index) -> layer, (N, C, H, W)
    conv_bias: bool  # True where the norm does not subtract a mean (so a conv bias is not redundant)
    # the layer for (N, C) features (the mlp); None: not available there
    build_1d: Optional[Callable[[NormConfig, int, int], nn.Module]] = None
    label: Optional[str] = None  # in figures and reports; None: the arm's own name (a custom layer's class)
    color: Optional[str] = None  # matplotlib's; None: the next free one


def _custom(c: NormConfig, n: int, i: int) -> nn.Module:
    """Your own layer (norm=custom norm._target_=mypkg.MyNorm): Hydra's instantiate builds
    MyNorm(num_channels, **norm.kwargs); the convs before it carry no bias, as before BN."""
    return instantiate({"_target_": c._target_, **c.kwargs}, n)


def _noisy(noise_per: str) -> Callable[[NormConfig, int, int], nn.Module]:
    def build(c: NormConfig, n: int, i: int) -> nn.Module:  # each layer its own reproducible noise stream
        return NoisyBatchNorm2d(n, c.noise_shift, c.noise_scale, seed=c.noise_seed * 1000 + i, noise_per=noise_per,
                                eps=c.eps, momentum=c.momentum, affine=c.affine)
    return build


# Adding a built-in norm is one entry here: config validation (bnstudy/validation.py), the mlp
# (nets/mlp.py) and the figures' labels and colours (analysis/style.py) read it.
NORMS: dict[str, NormSpec] = {
    "bn": NormSpec(lambda c, n, i: nn.BatchNorm2d(n, eps=c.eps, momentum=c.momentum, affine=c.affine), False,
                   lambda c, n, i: nn.BatchNorm1d(n, eps=c.eps, momentum=c.momentum, affine=c.affine),
                   "BatchNorm", "C0"),
    "none": NormSpec(lambda c, n, i: nn.Identity(), True, lambda c, n, i: nn.Identity(), "no normalization", "C3"),
    "gn": NormSpec(lambda c, n, i: GroupNorm(c.groups, n, eps=c.eps, affine=c.affine), False,
                   label="GroupNorm", color="C2"),
    # LayerNorm over (C, H, W) of each example = GroupNorm with a single group.
    "ln": NormSpec(lambda c, n, i: GroupNorm(1, n, eps=c.eps, affine=c.affine), False, label="LayerNorm", color="C4"),
    "ghost_bn": NormSpec(lambda c, n, i: GhostBatchNorm2d(n, c.ghost_batch_size, eps=c.eps, momentum=c.momentum,
                                                       affine=c.affine), False,
                         label="ghost BatchNorm", color="C1"),
    "running_bn": NormSpec(lambda c, n, i: RunningBatchNorm2d(n, c.burn_in, eps=c.eps, momentum=c.momentum,
                                                           affine=c.affine), False,
                           label="BatchNorm, running statistics", color="C9"),
    # both take (N, C) features too
    "noisy_bn": NormSpec(_noisy("channel"), False, _noisy("channel"), "noisy BatchNorm", "C5"),
    "noisy_bn_example": NormSpec(_noisy("example"), False, _noisy("example"), "noisy BatchNorm (per example)",
                                 "C6"),
    "custom": NormSpec(_custom, False, _custom),
}


def make_norm_layer(cfg: NormConfig, features: bool = False) -> tuple[NormLayer, bool]:
    """Return (norm_layer factory, whether convs should carry a bias); `features`: for (N, C)
    features (the mlp) instead of (N, C, H, W) images."""
    if cfg.name not in NORMS:
        raise KeyError(f"norm.name={cfg.name!r}: one of {', '.join(NORMS)}")
    spec, index = NORMS[cfg.name], itertools.count()
    build = spec.build_1d if features else spec.build
    if build is None:
        raise ValueError(f"norm.name={cfg.name!r} is not available for (N, C) features (model=mlp): use "
                         + ", ".join(n for n, s in NORMS.items() if s.build_1d is not None))
    return (lambda num_channels: build(cfg, num_channels, next(index))), spec.conv_bias
