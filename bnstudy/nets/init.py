"""Weight initialization schemes for conv and hidden linear layers, and the norm gammas."""
from __future__ import annotations

import torch
from torch import nn

from ..config import InitConfig


@torch.no_grad()
def init_weights(model: nn.Module, cfg: InitConfig) -> nn.Module:
    """Re-initialize every conv and hidden linear weight by `cfg`, then scale it by `cfg.scale`.

    `default` keeps PyTorch's own layer init (only the scale applies). Biases are zeroed
    under every explicit scheme. Norm layers keep what their constructor gave them (every
    built-in one gamma=1, beta=0), whatever the norm; with
    `zero_init_residual` the last norm of each residual block starts at gamma=0
    (Goyal et al. 2017), so every block starts as the identity.

    The classifier (`model.fc`) is left out of both the scheme and the scale: it keeps the
    init its model constructor gave it (ResNet: PyTorch's nn.Linear default; mlp: N(0, 0.01),
    Ioffe & Szegedy 2015), so for a given seed it is the same tensor under every init.
    No norm follows it, so a scheme applied there sets the logit scale at init (kaiming
    fan_out: logit std ~4.5 vs ~0.9, ResNet-20) and BN would look init-sensitive for a
    reason that has nothing to do with BN. Keeping the constructor's init, rather than
    re-drawing it here, also keeps it independent of how much RNG the scheme consumed.
    """
    classifier = getattr(model, "fc", None)
    for m in model.modules():
        if m is classifier:
            continue
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight
            if cfg.name == "kaiming":
                fn = nn.init.kaiming_normal_ if cfg.distribution == "normal" else nn.init.kaiming_uniform_
                fn(w, mode=cfg.mode, nonlinearity="relu")
            elif cfg.name == "xavier":
                fn = nn.init.xavier_normal_ if cfg.distribution == "normal" else nn.init.xavier_uniform_
                fn(w)
            elif cfg.name == "orthogonal":
                nn.init.orthogonal_(w)
            elif cfg.name == "normal":
                nn.init.normal_(w, 0.0, cfg.std)
            elif cfg.name != "default":
                raise KeyError(f"init.name={cfg.name!r}")
            if cfg.name != "default" and m.bias is not None:
                nn.init.zeros_(m.bias)
            w.mul_(cfg.scale)
    if cfg.zero_init_residual:
        for block in getattr(model, "blocks", lambda: [])():
            if getattr(block.norm2, "weight", None) is not None:
                nn.init.zeros_(block.norm2.weight)
    return model
