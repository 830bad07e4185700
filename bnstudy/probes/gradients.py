"""Gradient norms and the size of the actual optimizer update, per parameter tensor.

  `grad/{param}.norm`          ||dL/dW|| of this step's batch loss (before weight decay and
                               momentum: the raw gradient backward produced);
  `grad/{param}.update_ratio`  ||W_{t+1} - W_t|| / ||W_t||: the update the optimizer really
                               applied (lr, momentum and weight decay included), relative to
                               the weight; NaN where ||W_t|| = 0 (e.g. BN betas at init);
  `grad/spread`                ||dL/dW|| of the first weight matrix / that of the last (the
                               first and last parameters with ndim > 1: the stem conv and the
                               classifier). Well above 1: gradients grow towards the input;
                               well below: they vanish.
"""
from __future__ import annotations

import torch

from .base import Probe, ProbeContext, Rows


class GradientsProbe(Probe):
    def __init__(self, every: int | None):
        self.every = every
        self._before: list[tuple[str, torch.nn.Parameter, torch.Tensor]] = []  # (name, param, W_t)

    def before_update(self, ctx: ProbeContext) -> Rows:
        named = [(n, p) for n, p in ctx.model.named_parameters() if p.grad is not None]
        if not named:
            return {}
        norms = torch.stack([p.grad.detach().float().norm() for _, p in named]).tolist()  # one host sync
        rows = {f"grad/{n}.norm": v for (n, _), v in zip(named, norms)}
        weights = [i for i, (_, p) in enumerate(named) if p.ndim > 1]
        if weights:
            first, last = norms[weights[0]], norms[weights[-1]]
            rows["grad/spread"] = first / last if last > 0 else float("nan")
        self._before = [(n, p, p.detach().clone()) for n, p in named]
        return rows

    def after_update(self, ctx: ProbeContext) -> Rows:
        if not self._before:
            return {}
        norms = torch.stack([torch.stack([(p.detach() - w).float().norm(), w.float().norm()])
                             for _, p, w in self._before]).tolist()  # (params, 2): one host sync
        names = [n for n, _, _ in self._before]
        self._before = []
        return {f"grad/{n}.update_ratio": (d / w if w > 0 else float("nan")) for n, (d, w) in zip(names, norms)}
