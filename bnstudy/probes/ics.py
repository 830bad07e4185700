"""Internal covariate shift as Santurkar, Tsipras, Ilyas & Madry (2018, Def. 2.1) define it.

For a layer i at step t: G = dL/dW_i at w_t on this step's batch (the gradient the loop
just computed); G' = dL/dW_i on the same batch after every layer BEFORE i has taken its
actual optimizer update of this step (lr, momentum and weight decay included), the
layers from i on left at w_t. Rows `ics/{param}.l2` = ||G - G'||, `ics/{param}.cos` =
cos(G, G') and `ics/{param}.rel` = ||G - G'|| / ||G|| (NaN where G = 0): the shift
relative to the gradient's own size, so nets with larger gradients (BN's) do not read
as more shifted. G' is computed with the training forward's dropout masks and noise
(ctx.batch_loss replays them), so at lr=0 the shift is exactly 0.

"Before" is forward order: a layer is a module with its own parameters (a conv's weight
and bias), placed where the forward first uses one of them. Module registration order
would put SkipInit's gain, owned by the block but applied after its convs, first.

The update is the optimizer's own step, run once and undone: parameters, grads,
optimizer state (momentum buffers) and BN running statistics are restored bit for bit.
Cost: one forward and backward per chosen parameter, plus one optimizer step (and one
forward, once, for the order).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from .base import Probe, ProbeContext, Rows, restored


def default_ics_params(model: nn.Module, num_params: int) -> list[str]:
    """`num_params` weight tensors (ndim > 1) evenly spaced from the second to the last:
    the first has no layer before it, so its shift is 0 by definition."""
    weights = [n for n, p in model.named_parameters() if p.ndim > 1][1:]
    if len(weights) <= num_params:
        return weights
    idx = torch.linspace(0, len(weights) - 1, num_params).round().long().tolist()
    return [weights[i] for i in dict.fromkeys(idx)]


class _FirstUse(TorchFunctionMode):
    """Numbers the watched tensors in the order torch ops first take them as arguments."""

    def __init__(self, watched: dict[int, str]):  # id(tensor) -> name
        super().__init__()
        self.watched, self.order = watched, {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for x in tree_leaves((args, kwargs)):
            name = self.watched.get(id(x))
            if name is not None and name not in self.order:
                self.order[name] = len(self.order)
        return func(*args, **kwargs)


def forward_order(model: nn.Module, batch_loss: Callable[[], torch.Tensor]) -> dict[str, int]:
    """Parameter name -> rank of its first use in one forward of `batch_loss` (parameters the
    forward never uses are left out). The forward leaves no trace (BN statistics, streams)."""
    with restored(model, params=False), torch.no_grad(), \
            _FirstUse({id(p): n for n, p in model.named_parameters()}) as mode:
        batch_loss()
    return mode.order


def layers_before(order: dict[str, int], name: str) -> list[str]:
    """The parameters of the layers that run before `name`'s layer. A layer is the module
    owning the parameters directly, at the first use (in `order`) of any of them."""
    layer = lambda n: n.rpartition(".")[0]
    start: dict[str, int] = {}
    for n, rank in order.items():
        start[layer(n)] = min(rank, start.get(layer(n), rank))
    return [n for n in order if start[layer(n)] < start[layer(name)]]


def internal_covariate_shift(model: nn.Module, optimizer: torch.optim.Optimizer,
                             batch_loss: Callable[[], torch.Tensor], names: Sequence[str],
                             order: Optional[dict[str, int]] = None) -> Rows:
    """ics rows for the named parameters; p.grad must hold this step's gradient. `order` is
    forward_order(model, batch_loss), computed here when not given."""
    order = forward_order(model, batch_loss) if order is None else order
    params = dict(model.named_parameters())
    with restored(model, optimizer):
        optimizer.step()  # this step's actual update of every layer, undone on exit
        updated = {n: p.detach().clone() for n, p in params.items()}
    out: dict[str, torch.Tensor] = {}
    with restored(model):
        for name in names:
            before = [(params[n], updated[n]) for n in layers_before(order, name)]
            originals = [p.detach().clone() for p, _ in before]
            with torch.no_grad():
                for p, new in before:
                    p.copy_(new)
            g_new = torch.autograd.grad(batch_loss(), params[name])[0].float().flatten()  # G'
            with torch.no_grad():
                for (p, _), old in zip(before, originals):
                    p.copy_(old)
            g = params[name].grad.detach().float().flatten()  # G
            l2, g_norm = (g - g_new).norm(), g.norm()
            out[f"{name}.l2"] = l2
            out[f"{name}.cos"] = F.cosine_similarity(g, g_new, dim=0)
            out[f"{name}.rel"] = torch.where(g_norm > 0, l2 / g_norm, torch.nan)
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
        self.order: Optional[dict[str, int]] = None  # the architecture's forward order, found once

    def before_update(self, ctx: ProbeContext) -> Rows:
        if self.order is None:
            self.order = forward_order(ctx.model, ctx.batch_loss)
        return internal_covariate_shift(ctx.model, ctx.optimizer, ctx.batch_loss, self.names, self.order)
