"""The loss landscape along the gradient (Santurkar et al. 2018, Sec. 3.1, Fig. 4).

At step t with weights w and this step's batch-loss gradient g (the raw gradient, before
momentum and weight decay), for each step size eta on a grid (probes.landscape.lr_multiples
times the current lr), on the same batch in the same (train) mode:
  `landscape/loss_min`, `landscape/loss_max`  range of L(w - eta g) over the grid and eta=0;
  `landscape/grad_pred`    max over the grid of ||grad L(w - eta g) - g|| ("gradient
                           predictiveness": small = the gradient stays a good guide);
  `landscape/grad_pred_rel`  grad_pred / ||g||: the same, relative to the gradient's own
                           size, so nets with larger gradients (BN's) do not read as less
                           predictive for that alone (NaN where g = 0);
  `landscape/beta_smooth`  max over the grid of ||grad L(w - eta g) - g|| / ||eta g||, the
                           "effective beta-smoothness" (a local Lipschitz constant of the
                           gradient along g).
Norms are over all parameters together. The forwards replay the training forward's
dropout masks and noise (ctx.batch_loss), so at eta=0 the gradient is g again. Parameters,
grads and BN buffers are restored bit for bit. Cost: one forward and backward per grid point.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from .base import Probe, ProbeContext, Rows, restored


def loss_landscape(params: Sequence[torch.Tensor], batch_loss: Callable[[], torch.Tensor],
                   etas: Sequence[float], loss0: float) -> Rows:
    """Landscape rows along -p.grad from the current `params` (changed and put back)."""
    params = [p for p in params if p.grad is not None]
    w0 = [p.detach().clone() for p in params]
    g = [p.grad.detach().clone() for p in params]
    g_norm = torch.sqrt(sum((gi.float() ** 2).sum() for gi in g))
    losses, preds, betas = [torch.tensor(float(loss0))], [], []
    try:
        for eta in etas:
            with torch.no_grad():
                for p, w, gi in zip(params, w0, g):
                    p.copy_(w - eta * gi)
            loss = batch_loss()
            new_g = torch.autograd.grad(loss, params, allow_unused=True)
            diff = torch.sqrt(sum(((ng if ng is not None else torch.zeros_like(gi)).float() - gi.float()).pow(2).sum()
                                  for ng, gi in zip(new_g, g)))
            losses.append(loss.detach().float().cpu())
            preds.append(diff)
            betas.append(diff / (eta * g_norm))
    finally:
        with torch.no_grad():
            for p, w in zip(params, w0):
                p.copy_(w)
    loss_v = torch.stack(losses).tolist()
    pred_v, beta_v = torch.stack(preds).tolist(), torch.stack(betas).tolist()  # host syncs
    g_norm = g_norm.item()
    return {"landscape/loss_min": min(loss_v), "landscape/loss_max": max(loss_v),
            "landscape/grad_pred": max(pred_v), "landscape/beta_smooth": max(beta_v),
            "landscape/grad_pred_rel": max(pred_v) / g_norm if g_norm > 0 else math.nan}


class LandscapeProbe(Probe):
    def __init__(self, every: int | None, lr_multiples: Sequence[float] = (0.5, 1.0, 2.0, 4.0)):
        self.every, self.lr_multiples = every, list(lr_multiples)

    def before_update(self, ctx: ProbeContext) -> Rows:
        if ctx.lr <= 0:
            return {}
        with restored(ctx.model):
            return loss_landscape(list(ctx.model.parameters()), ctx.batch_loss,
                                  [m * ctx.lr for m in self.lr_multiples], float(ctx.loss))
