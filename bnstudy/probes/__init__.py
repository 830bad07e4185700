"""Probes: pure measurements every `probes.<name>.every` steps, written to probes.csv.

One module per concept: activations (percentiles and histograms at every norm layer and
block), sigprop (signal propagation), gradients (norms, update ratios), batchnorm (batch
vs running statistics, accuracy with batch statistics), ics (internal covariate shift)
and landscape (loss and gradient along the gradient). base.py holds the hook points
and the exact restore every probe relies on.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..config import ProbesConfig
from .activations import ActivationsProbe
from .base import Probe, ProbeContext, Rows
from .batchnorm import BatchNormProbe
from .gradients import GradientsProbe
from .ics import ICSProbe
from .landscape import LandscapeProbe
from .sigprop import SigpropProbe

__all__ = ["Probe", "ProbeContext", "Rows", "build_probes", "ActivationsProbe", "SigpropProbe",
           "GradientsProbe", "BatchNormProbe", "ICSProbe", "LandscapeProbe"]


# One entry a probe, in the order they run: its config's field in ProbesConfig -> whether that
# config turns it on, and how to build it (config, model, test images, labels, evaluation batch).
# Adding a probe: its module here, its config dataclass in ProbesConfig, its entry below.
PROBES: dict[str, tuple[Callable[[Any], bool], Callable[..., Probe]]] = {
    "activations": (lambda c: bool(c.every),
                    lambda c, model, x, y, ebs: ActivationsProbe(c.every, x, c.batch_size, c.hist_bins, c.hist_range,
                                                                     c.channels)),
    "sigprop": (lambda c: bool(c.every), lambda c, model, x, y, ebs: SigpropProbe(c.every, x, c.batch_size)),
    "gradients": (lambda c: bool(c.every), lambda c, model, x, y, ebs: GradientsProbe(c.every)),
    "bn": (lambda c: bool(c.every or c.acc_batchstats),
           lambda c, model, x, y, ebs: BatchNormProbe(c.every, x, y, c.batch_size, c.acc_batchstats, ebs)),
    "ics": (lambda c: bool(c.every), lambda c, model, x, y, ebs: ICSProbe(c.every, model, c.params, c.num_params)),
    "landscape": (lambda c: bool(c.every), lambda c, model, x, y, ebs: LandscapeProbe(c.every, c.lr_multiples)),
}


def build_probes(cfg: ProbesConfig, model: nn.Module, x_test: torch.Tensor, y_test: torch.Tensor,
                 eval_batch_size: int = 1000) -> list[Probe]:
    """The probes `cfg` turns on, for this model and test set (on the run's device)."""
    return [build(getattr(cfg, name), model, x_test, y_test, eval_batch_size)
            for name, (on, build) in PROBES.items() if on(getattr(cfg, name))]
