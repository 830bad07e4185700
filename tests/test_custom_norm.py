"""Your own normalization layer without editing the package: norm=custom norm._target_=...

The layer is defined here, outside bnstudy, as a user's would be in their own module.
"""
from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from bnstudy.analysis import compare, report
from bnstudy.validation import ConfigError
from bnstudy.run import run
from conftest import compose_config


class RMSNorm2d(nn.Module):
    """Scale each example's channels by their root mean square over (H, W): no centring, no batch."""

    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gain = nn.Parameter(torch.ones(num_channels))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        dims = tuple(range(2, x.dim()))
        rms = x.pow(2).mean(dims, keepdim=True).add(self.eps).sqrt() if dims else x.abs().add(self.eps)
        shape = (1, -1) + (1,) * len(dims)
        return x / rms * self.gain.view(shape)


TARGET = f"{__name__}.RMSNorm2d"


def test_a_custom_layer_is_built_at_every_norm_place_with_its_kwargs():
    from bnstudy.nets import build_model
    cfg = compose_config(["norm=custom", f"norm._target_={TARGET}", "+norm.kwargs.eps=0.001"])
    model = build_model(cfg.model, cfg.norm)
    layers = [m for m in model.modules() if isinstance(m, RMSNorm2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(layers) == 19 and not bns  # ResNet-20: the stem and two per block
    assert {m.eps for m in layers} == {0.001}
    model(torch.randn(2, 3, 32, 32))
    assert all(m.calls == 1 for m in layers)


@pytest.mark.parametrize("overrides, key", [
    (["norm=custom"], "norm._target_"),  # no class
    (["norm=custom", "norm._target_=no_such_module.Norm"], "norm._target_"),
    (["norm=bn", f"norm._target_={TARGET}"], "norm._target_"),  # only norm=custom reads it
])
def test_a_custom_norm_without_an_importable_class_stops_naming_the_key(overrides, key):
    with pytest.raises(ConfigError) as e:
        compose_config(overrides)
    assert e.value.key == key


def test_a_custom_layer_trains_beside_bn_and_the_report_names_it(tmp_path, tiny_overrides):
    """The README's example, in process: bn and the custom layer, two seeds each, then `report`
    compares the two arms, the custom one under its class's name."""
    for seed in (0, 1):
        for norm in (["norm=bn"], ["norm=custom", f"norm._target_={TARGET}"]):
            name = norm[0].split("=")[1]
            summary = run(compose_config(tiny_overrides + norm + [f"seed={seed}"]), tmp_path / "sweep" / f"{name}-{seed}")
            assert summary["status"] == "completed"
    report.report([tmp_path / "sweep"], tmp_path / "report")
    runs = pd.read_csv(tmp_path / "report" / "runs.csv")
    t = compare.table(runs).set_index("arm")
    assert set(t.index) == {"norm=RMSNorm2d", "norm=bn"} and set(t.seeds) == {2}
    assert "norm=RMSNorm2d" in (tmp_path / "report" / "report.md").read_text()
