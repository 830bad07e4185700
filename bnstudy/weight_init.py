"""Weight initialization schemes for conv and linear layers, and the norm gammas."""
from __future__ import annotations

import torch
from torch import nn

from .config import InitConfig

_NORM_TYPES = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)


@torch.no_grad()
def init_weights(model: nn.Module, cfg: InitConfig) -> nn.Module:
    """Re-initialize every conv/linear weight by `cfg`, then scale it by `cfg.scale`.

    `default` keeps PyTorch's own layer init (only the scale applies). Biases are zeroed
    under every explicit scheme. Norm layers get gamma=1, beta=0; with
    `zero_init_residual` the last norm of each residual block starts at gamma=0
    (Goyal et al. 2017), so every block starts as the identity.
    """
    for m in model.modules():
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
        elif isinstance(m, _NORM_TYPES) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if cfg.zero_init_residual:
        for block in getattr(model, "blocks", lambda: [])():
            if getattr(block.norm2, "weight", None) is not None:
                nn.init.zeros_(block.norm2.weight)
    return model
