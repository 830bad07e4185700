"""BatchNorm's two sets of statistics: the batch's (training) and the running ones (inference).

Per BatchNorm layer, on the fixed probe batch in train mode (as activations.py), with
mu_B, var_B the probe batch's per-channel mean and (biased) variance of the layer's input
and mu_R, var_R its running statistics before this forward:
  `bn/{module}.mean_gap`   mean over channels of |mu_B - mu_R| / sqrt(var_R + eps): the
                           shift between train- and eval-mode outputs, in output units;
  `bn/{module}.var_gap`    mean over channels of |log((var_B + eps) / (var_R + eps))|;
  `bn/{module}.gamma_norm`, `bn/{module}.beta_norm`: L2 norms of the affine parameters.
At every evaluation (when acc_batchstats): `test/acc_batchstats` and `test/loss_batchstats`,
the test set evaluated in train mode (each batch of data.eval_batch_size test images
normalized by its own statistics), beside metrics.csv's eval-mode `test/acc`.
Running statistics are restored bit for bit. Models without BatchNorm give no rows.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..evaluation import evaluate  # the loop's own evaluation, in train mode
from .base import Probe, ProbeContext, Rows, channel_moments, forward_hooks, probe_images, restored


def batchnorm_layers(model: nn.Module) -> dict[str, _BatchNorm]:
    return {n: m for n, m in model.named_modules() if isinstance(m, _BatchNorm)}


class BatchNormProbe(Probe):
    def __init__(self, every: int | None, x_test: torch.Tensor, y_test: torch.Tensor,
                 batch_size: int = 128, acc_batchstats: bool = True, eval_batch_size: int = 1000):
        self.every, self.acc_batchstats, self.eval_batch_size = every, acc_batchstats, eval_batch_size
        self.x = probe_images(x_test, batch_size)
        self.x_test, self.y_test = x_test, y_test

    def measure(self, model: nn.Module, autocast=nullcontext) -> Rows:
        layers = batchnorm_layers(model)
        if not layers:
            return {}
        gaps: dict[str, torch.Tensor] = {}

        def on_input(name, module, inputs, output):
            if module.running_mean is None:
                return
            mu_b, var_b = channel_moments(inputs[0])  # (C,), (C,): the probe batch's statistics
            mu_r, var_r = running[name]
            gaps[f"{name}.mean_gap"] = ((mu_b - mu_r).abs() / (var_r + module.eps).sqrt()).mean()
            gaps[f"{name}.var_gap"] = ((var_b + module.eps) / (var_r + module.eps)).log().abs().mean()

        running = {n: (m.running_mean.detach().float().clone(), m.running_var.detach().float().clone())
                   for n, m in layers.items() if m.running_mean is not None}
        with restored(model, params=False), torch.no_grad(), forward_hooks(layers, on_input), autocast():
            model.train()
            model(self.x)
        for n, m in layers.items():
            if m.weight is not None:
                gaps[f"{n}.gamma_norm"] = m.weight.detach().float().norm()
                gaps[f"{n}.beta_norm"] = m.bias.detach().float().norm()
        order = [f"{n}.{s}" for n in layers for s in ("mean_gap", "var_gap", "gamma_norm", "beta_norm")
                 if f"{n}.{s}" in gaps]
        values = torch.stack([gaps[k] for k in order]).tolist()  # one host sync
        return {f"bn/{k}": v for k, v in zip(order, values)}

    def before_update(self, ctx: ProbeContext) -> Rows:
        return self.measure(ctx.model, ctx.autocast)

    def on_eval(self, ctx: ProbeContext) -> Rows:
        if not self.acc_batchstats or not batchnorm_layers(ctx.model):
            return {}

        with restored(ctx.model, params=False):
            loss, acc = evaluate(ctx.model, self.x_test, self.y_test, self.eval_batch_size,
                                 train_mode=True, autocast=ctx.autocast)
        return {"test/acc_batchstats": acc, "test/loss_batchstats": loss}
