"""Internal covariate shift as Santurkar, Tsipras, Ilyas & Madry (2018, Def. 2.1) define it.

For a layer i at step t: G = dL/dW_i at w_t on this step's batch (the gradient the loop
just computed); G' = dL/dW_i on the same batch after every layer BEFORE i has taken its
actual optimizer update of this step (lr, momentum and weight decay included), the
layers from i on left at w_t. Rows `ics/{param}.l2` = ||G - G'|| and `ics/{param}.cos` =
cos(G, G'). "Before" is module order (the order the modules are registered, which is
forward order for the nets here): W_i's own module and those after it stay at w_t.

The update is the optimizer's own step, run once and undone: parameters, grads,
optimizer state (momentum buffers) and BN running statistics are restored bit for bit.
Cost: one forward and backward per chosen parameter, plus one optimizer step.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import Probe, ProbeContext, Rows, restored


def default_ics_params(model: nn.Module, num_params: int) -> list[str]:
    """`num_params` weight tensors (ndim > 1) evenly spaced from the second to the last:
    the first has no layer before it, so its shift is 0 by definition."""
    weights = [n for n, p in model.named_parameters() if p.ndim > 1][1:]
    if len(weights) <= num_params:
        return weights
    idx = torch.linspace(0, len(weights) - 1, num_params).round().long().tolist()
    return [weights[i] for i in dict.fromkeys(idx)]


def internal_covariate_shift(model: nn.Module, optimizer: torch.optim.Optimizer,
                             batch_loss: Callable[[], torch.Tensor], names: Sequence[str]) -> Rows:
    """ics rows for the named parameters; p.grad must hold this step's gradient."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    modules = list(dict.fromkeys(n.rpartition(".")[0] for n, _ in named))
    owner = {n: modules.index(n.rpartition(".")[0]) for n, _ in named}
    params = dict(named)
    with restored(model, optimizer):
        optimizer.step()  # this step's actual update of every layer, undone on exit
        updated = {n: p.detach().clone() for n, p in named}
    out: dict[str, torch.Tensor] = {}
    with restored(model):
        for name in names:
            before = [(params[n], updated[n]) for n, _ in named if owner[n] < owner[name]]
            originals = [p.detach().clone() for p, _ in before]
            with torch.no_grad():
                for p, new in before:
                    p.copy_(new)
            g_new = torch.autograd.grad(batch_loss(), params[name])[0].float().flatten()  # G'
            with torch.no_grad():
                for (p, _), old in zip(before, originals):
                    p.copy_(old)
            g = params[name].grad.detach().float().flatten()  # G
            out[f"{name}.l2"] = (g - g_new).norm()
            out[f"{name}.cos"] = F.cosine_similarity(g, g_new, dim=0)
    values = torch.stack(list(out.values())).tolist() if out else []  # one host sync
    return {f"ics/{k}": v for k, v in zip(out, values)}


class ICSProbe(Probe):
    def __init__(self, every: int | None, model: nn.Module, params: Sequence[str] = (), num_params: int = 4):
        self.every = every
        known = {n for n, _ in model.named_parameters()}
        unknown = [n for n in params if n not in known]
        if unknown:
            raise ValueError(f"probes.ics.params: no parameter named {', '.join(unknown)} in the model "
                             f"(e.g. {', '.join(list(known)[:3])})")
        self.names = list(params) or default_ics_params(model, num_params)

    def before_update(self, ctx: ProbeContext) -> Rows:
        return internal_covariate_shift(ctx.model, ctx.optimizer, ctx.batch_loss, self.names)
