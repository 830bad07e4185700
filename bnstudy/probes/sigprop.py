"""Signal propagation plots (Brock, De & Smith 2021, "Characterizing signal propagation").

Per residual block, on the fixed probe batch in train mode (as activations.py):
  `sigprop/{block}.sq_mean`     average over channels of the squared channel mean of the
                                block's output (mean over N, H, W);
  `sigprop/{block}.var`         average over channels of the channel variance of the output;
  `sigprop/{block}.branch_var`  the same for the residual branch's output before the
                                addition: the block's last norm position (`norm2`, an
                                identity under norm=none), times skipinit's gain if any.
Step 0 is the initialization. Models without residual blocks (the MLP) give no rows.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from ..nets.resnet import BasicBlock
from .base import Probe, ProbeContext, Rows, channel_moments, forward_hooks, probe_images, restored


def signal_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(average channel squared mean, average channel variance) of (N, C, *) features."""
    mean, var = channel_moments(x)  # (C,), (C,)
    return (mean ** 2).mean(), var.mean()


class SigpropProbe(Probe):
    def __init__(self, every: int | None, x_test: torch.Tensor, batch_size: int = 128):
        self.every = every
        self.x = probe_images(x_test, batch_size)

    def measure(self, model: nn.Module, autocast=nullcontext) -> Rows:
        blocks = {n: m for n, m in model.named_modules() if isinstance(m, BasicBlock)}
        if not blocks:
            return {}
        branches = {n: b.norm2 for n, b in blocks.items()}
        out: dict[str, torch.Tensor] = {}

        def on_block(name, module, inputs, output):
            out[f"{name}.sq_mean"], out[f"{name}.var"] = signal_stats(output)

        def on_branch(name, module, inputs, output):
            gain = getattr(blocks[name], "skip_gain", None)  # skipinit scales the branch after norm2: var scales by gain^2
            var = signal_stats(output)[1]
            out[f"{name}.branch_var"] = var if gain is None else var * gain.detach().float() ** 2

        with restored(model, params=False), torch.no_grad(), forward_hooks(blocks, on_block), \
                forward_hooks(branches, on_branch), autocast():
            model.train()
            model(self.x)
        order = [f"{n}.{s}" for n in blocks for s in ("sq_mean", "var", "branch_var")]
        values = torch.stack([out[k] for k in order]).tolist()  # one host sync
        return {f"sigprop/{k}": v for k, v in zip(order, values)}

    def before_update(self, ctx: ProbeContext) -> Rows:
        return self.measure(ctx.model, ctx.autocast)
