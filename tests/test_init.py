import math

import pytest
import torch
from torch import nn

from bnstudy.config import InitConfig, ModelConfig, NormConfig
from bnstudy.models import build_model
from bnstudy.weight_init import init_weights


def model(norm="bn"):
    torch.manual_seed(0)
    return build_model(ModelConfig(depth=20, width=2), NormConfig(name=norm))


def big_conv(m):  # layer3 convs: 128 x 128 x 3 x 3 at width 2, enough samples for std checks
    return m.layer3[1].conv1.weight


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_kaiming_normal_std(mode):
    w = big_conv(init_weights(model(), InitConfig(name="kaiming", mode=mode)))
    fan = w.shape[1] * 9 if mode == "fan_in" else w.shape[0] * 9
    assert w.std().item() == pytest.approx(math.sqrt(2 / fan), rel=0.03)


def test_kaiming_uniform_bound():
    w = big_conv(init_weights(model(), InitConfig(name="kaiming", distribution="uniform", mode="fan_in")))
    bound = math.sqrt(6 / (w.shape[1] * 9))
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound


def test_xavier_normal_std():
    w = big_conv(init_weights(model(), InitConfig(name="xavier")))
    assert w.std().item() == pytest.approx(math.sqrt(2 / (w.shape[0] * 9 + w.shape[1] * 9)), rel=0.03)


def test_orthogonal_rows():
    w = init_weights(model(), InitConfig(name="orthogonal")).layer1[0].conv1.weight  # (32, 32*9): rows orthonormal
    flat = w.flatten(1)
    assert torch.allclose(flat @ flat.T, torch.eye(flat.shape[0]), atol=1e-5)


def test_normal_std_and_scale_multiplier():
    w = big_conv(init_weights(model(), InitConfig(name="normal", std=0.05, scale=2.0)))
    assert w.std().item() == pytest.approx(0.1, rel=0.03)


def test_default_keeps_torch_init_but_applies_scale():
    a, b = model(), model()
    init_weights(b, InitConfig(name="default", scale=0.5))
    assert torch.allclose(big_conv(b), 0.5 * big_conv(a))


def test_biases_zeroed_with_norm_none():
    m = init_weights(model("none"), InitConfig(name="kaiming"))
    assert all(c.bias.abs().sum() == 0 for c in m.modules() if isinstance(c, nn.Conv2d))


def test_zero_init_residual_zeroes_last_gamma_only():
    m = init_weights(model(), InitConfig(name="kaiming", zero_init_residual=True))
    for block in m.blocks():
        assert block.norm2.weight.abs().sum() == 0
        assert torch.all(block.norm1.weight == 1)
    assert torch.all(m.norm1.weight == 1)
