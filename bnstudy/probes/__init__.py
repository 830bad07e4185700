"""Probes: pure measurements every `probes.<name>.every` steps, written to probes.csv.

One module per concept: activations (percentiles and histograms at every norm layer and
block), sigprop (signal propagation), gradients (norms, update ratios), batchnorm (batch
vs running statistics, accuracy with batch statistics), ics (internal covariate shift)
and landscape (loss and gradient along the gradient). base.py holds the hook points
and the exact restore every probe relies on.
"""
from __future__ import annotations

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


def build_probes(cfg: ProbesConfig, model: nn.Module, x_test: torch.Tensor, y_test: torch.Tensor,
                 eval_batch_size: int = 1000) -> list[Probe]:
    """The probes `cfg` turns on, for this model and test set (on the run's device)."""
    a, s, b = cfg.activations, cfg.sigprop, cfg.bn
    probes: list[Probe] = []
    if a.every:
        probes.append(ActivationsProbe(a.every, x_test, a.batch_size, a.hist_bins, a.hist_range))
    if s.every:
        probes.append(SigpropProbe(s.every, x_test, s.batch_size))
    if cfg.gradients.every:
        probes.append(GradientsProbe(cfg.gradients.every))
    if b.every or b.acc_batchstats:
        probes.append(BatchNormProbe(b.every, x_test, y_test, b.batch_size, b.acc_batchstats, eval_batch_size))
    if cfg.ics.every:
        probes.append(ICSProbe(cfg.ics.every, model, cfg.ics.params, cfg.ics.num_params))
    if cfg.landscape.every:
        probes.append(LandscapeProbe(cfg.landscape.every, cfg.landscape.lr_multiples))
    return probes
