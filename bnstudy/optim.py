"""SGD and the learning-rate schedule, as plain functions of the step."""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import OptimConfig, ScheduleConfig


def peak_lr(cfg: OptimConfig, batch_size: int) -> float:
    """optim.lr is the rate at optim.lr_batch_size examples; scaled linearly if asked (Goyal et al. 2017)."""
    return cfg.lr * batch_size / cfg.lr_batch_size if cfg.scale_lr else cfg.lr


def build_optimizer(model: nn.Module, cfg: OptimConfig, lr: float) -> torch.optim.Optimizer:
    if cfg.decay_norm_and_bias:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    else:  # no weight decay on 1-d parameters: norm gammas/betas and biases
        decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
        groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)


def warmup_steps(total_steps: int, cfg: ScheduleConfig) -> int:
    """Warmup length: schedule.warmup_steps or schedule.warmup_fraction of the run, the larger."""
    return max(cfg.warmup_steps, round(cfg.warmup_fraction * total_steps))


def lr_at(step: int, total_steps: int, base_lr: float, cfg: ScheduleConfig) -> float:
    """The learning rate for optimizer step `step` (0-based) of a run of `total_steps`.

    Every schedule but `range` warms up linearly from 0 over warmup_steps(...), then:
    constant; step (x gamma at each milestone); cosine (to final_lr_fraction at the end); linear
    (to 0 at the end: the budget-aware schedule of Li et al. 2020). `range` is a learning-rate
    range test (Smith 2017): base_lr / 10**range_decades at step 0, rising exponentially to
    base_lr at the last step.
    """
    if cfg.name == "range":
        return base_lr * 10.0 ** (-cfg.range_decades * (1 - step / max(total_steps - 1, 1)))
    warm = warmup_steps(total_steps, cfg)
    if step < warm:
        return base_lr * (step + 1) / warm
    if cfg.name == "linear":
        return base_lr * max(total_steps - step, 0) / max(total_steps - warm, 1)
    if cfg.name == "constant":
        return base_lr
    if cfg.name == "step":
        frac = step / max(total_steps, 1)
        return base_lr * cfg.gamma ** sum(frac >= m for m in cfg.milestones)
    if cfg.name == "cosine":
        span = max(total_steps - warm, 1)
        t = min((step - warm) / span, 1.0)
        lo = base_lr * cfg.final_lr_fraction
        return lo + (base_lr - lo) * 0.5 * (1 + math.cos(math.pi * t))
    raise KeyError(f"schedule.name={cfg.name!r}: one of constant, step, cosine, linear, range")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr
