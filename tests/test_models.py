import pytest
import torch
from torch import nn

from bnstudy.config import ModelConfig, NormConfig
from bnstudy.nets.resnet import CifarResNet, ShortcutA, build_model, count_parameters
from bnstudy.nets.norms import NORMS, make_norm_layer

# He et al. 2016, Table 6 (CIFAR-10): parameters of the option-A ResNets.
PUBLISHED = {20: 0.27e6, 32: 0.46e6, 44: 0.66e6, 56: 0.85e6, 110: 1.7e6}


@pytest.mark.parametrize("depth", sorted(PUBLISHED))
def test_parameter_counts_match_the_paper(depth):
    n = count_parameters(build_model(ModelConfig(depth=depth), NormConfig(name="bn")))
    assert abs(n - PUBLISHED[depth]) / PUBLISHED[depth] < 0.02, n


def test_resnet20_exact_count_and_width():
    assert count_parameters(build_model(ModelConfig(depth=20), NormConfig(name="bn"))) == 269_722
    wide = count_parameters(build_model(ModelConfig(depth=20, width=2), NormConfig(name="bn")))
    assert 3.9 < wide / 269_722 < 4.0  # convs scale with width^2


@pytest.mark.parametrize("norm", sorted(NORMS))
def test_each_norm_is_injected_everywhere(norm):
    # custom: a layer of your own by its class (here torch's own BatchNorm2d)
    model = build_model(ModelConfig(depth=20), NormConfig(name=norm, groups=8,
                                                          _target_="torch.nn.BatchNorm2d" if norm == "custom" else ""))
    norms = [m for name, m in model.named_modules() if name.split(".")[-1].startswith("norm")]
    assert len(norms) == 19  # stem + 2 per block x 9 blocks
    from bnstudy.nets.norms import GhostBatchNorm2d, GroupNorm, NoisyBatchNorm2d, RunningBatchNorm2d
    # GroupNorm: torch's nn.GroupNorm with a faster memory layout for its CPU kernel (same values)
    expected = {"bn": nn.BatchNorm2d, "gn": GroupNorm, "ln": GroupNorm, "none": nn.Identity,
                "ghost_bn": GhostBatchNorm2d, "noisy_bn": NoisyBatchNorm2d, "noisy_bn_example": NoisyBatchNorm2d,
                "running_bn": RunningBatchNorm2d, "custom": nn.BatchNorm2d}[norm]
    assert all(type(m) is expected for m in norms)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all((c.bias is not None) == (norm == "none") for c in convs)
    if norm == "ln":
        assert all(m.num_groups == 1 for m in norms)
    if norm == "gn":
        assert all(m.num_groups == 8 for m in norms)
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10) and torch.isfinite(out).all()


def test_bn_options_reach_the_layer():
    layer, bias = make_norm_layer(NormConfig(name="bn", momentum=0.01, eps=1e-3, affine=False))
    bn = layer(16)
    assert (bn.momentum, bn.eps, bn.affine, bias) == (0.01, 1e-3, False, False)


def test_shortcut_a_is_parameter_free_subsample_and_zero_pad():
    s = ShortcutA(16, 32, 2)
    x = torch.randn(2, 16, 8, 8)
    y = s(x)
    assert y.shape == (2, 32, 4, 4) and not list(s.parameters())
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


def test_depth_must_be_6n_plus_2():
    with pytest.raises(ValueError):
        CifarResNet(depth=21)
