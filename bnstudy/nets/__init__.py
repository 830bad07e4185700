"""The networks and what is injected into them: CIFAR ResNets (resnet.py), the sigmoid mlp of
Ioffe & Szegedy's Fig. 1 (mlp.py), the norm-layer registry (norms.py) and the init schemes (init.py)."""
from .resnet import build_model, count_parameters

__all__ = ["build_model", "count_parameters"]
