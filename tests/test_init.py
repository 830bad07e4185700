import math

import pytest
import torch
from torch import nn

from bnstudy.config import InitConfig, ModelConfig, NormConfig
from bnstudy.nets.resnet import build_model
from bnstudy.nets.init import init_weights


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


SCHEMES = ["default", "kaiming", "xavier", "orthogonal", "normal"]


def logit_std(m: nn.Module) -> float:
    from bnstudy.data import normalize

    x = torch.randint(0, 256, (128, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return m(normalize(x)).std().item()


@pytest.mark.parametrize("name", SCHEMES)
def test_scheme_leaves_the_logit_scale_of_a_bn_resnet_alone(name):
    """BN re-normalizes after every conv, so with the classifier left out of the scheme
    the logits at init do not depend on it (kaiming on the classifier gave ~5x)."""
    reference = logit_std(init_weights(model(), InitConfig(name="default")))
    std = logit_std(init_weights(model(), InitConfig(name=name, scale=1.0)))
    assert reference / 2 < std < 2 * reference, (name, std, reference)


def test_classifier_init_is_the_same_under_every_scheme_and_scale():
    reference = model().fc
    for name in SCHEMES:
        for scale in (0.5, 1.0, 3.0):
            fc = init_weights(model(), InitConfig(name=name, scale=scale)).fc
            assert torch.equal(fc.weight, reference.weight) and torch.equal(fc.bias, reference.bias), (name, scale)


def test_mlp_hidden_layers_take_the_scheme_and_its_classifier_keeps_the_paper_init():
    def mlp():
        torch.manual_seed(0)
        return build_model(ModelConfig(name="mlp", depth=3, width=100), NormConfig(name="bn"))

    reference, m = mlp(), init_weights(mlp(), InitConfig(name="kaiming", mode="fan_in", scale=2.0))
    assert m.layer1.fc.weight.std().item() == pytest.approx(2 * math.sqrt(2 / (3 * 32 * 32)), rel=0.03)
    assert torch.equal(m.fc.weight, reference.fc.weight)
    assert m.fc.weight.std().item() == pytest.approx(0.01, rel=0.1)  # N(0, 0.01), Ioffe & Szegedy 2015
