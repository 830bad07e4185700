"""Probes: values by hand on tiny tensors and nets, exact restore, and whole smoke runs."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from bnstudy.config import ModelConfig, NormConfig
from bnstudy.validation import ConfigError
from bnstudy.nets.resnet import build_model
from bnstudy.probes import build_probes
from bnstudy.probes.activations import ActivationsProbe, distribution_stats, histogram
from bnstudy.probes.base import ProbeContext, norm_positions, restored
from bnstudy.probes.batchnorm import BatchNormProbe
from bnstudy.probes.gradients import GradientsProbe
from bnstudy.probes.ics import default_ics_params, internal_covariate_shift
from bnstudy.probes.landscape import loss_landscape
from bnstudy.probes.sigprop import signal_stats
from bnstudy.run import run

from conftest import compose_config

STATS = ("p01", "p15", "p50", "p85", "p99", "mean", "std", "zero_frac")


# ---------------------------------------------------------------------------- by hand

def test_distribution_stats_by_hand():
    x = torch.arange(101.0).view(1, 1, 101)  # 0, 1, ..., 100: percentile k is k
    p01, p15, p50, p85, p99, mean, std, zero = distribution_stats(x).tolist()
    assert (p01, p15, p50, p85, p99) == pytest.approx((1, 15, 50, 85, 99))
    assert mean == pytest.approx(50) and std == pytest.approx(math.sqrt((101 ** 2 - 1) / 12))
    assert zero == pytest.approx(1 / 101)
    relu = torch.relu(torch.tensor([-2.0, -1.0, 0.0, 3.0]))
    assert distribution_stats(relu)[-1].item() == pytest.approx(0.75)


def test_histogram_by_hand():
    x = torch.tensor([-10.0, -4.9, 0.1, 0.2, 4.99, 7.0])  # bins of width 2.5 over [-5, 5]; tails to the ends
    assert histogram(x, 4, 5.0).tolist() == pytest.approx([2 / 6, 0, 2 / 6, 2 / 6])


def test_signal_stats_by_hand():
    x = torch.tensor([[[[1.0, 3.0]], [[0.0, 0.0]]],
                      [[[5.0, 7.0]], [[2.0, 2.0]]]])  # (N=2, C=2, H=1, W=2)
    sq_mean, var = signal_stats(x)
    # channel 0: mean 4, var 5; channel 1: mean 1, var 1
    assert sq_mean.item() == pytest.approx((16 + 1) / 2) and var.item() == pytest.approx((5 + 1) / 2)


class TinyNormNet(nn.Module):
    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norm1 = norm

    def forward(self, x):
        return self.norm1(x)


def test_the_activations_probe_leaves_the_noise_stream_where_it_was():
    """The probe runs the net in train mode, so per-example noisy BN draws during it (and the
    probe sees noisy outputs); the next training step still draws what it would have drawn."""
    from bnstudy.nets.norms import NoisyBatchNorm2d

    x = torch.randn(8, 2, 3, 3)
    reference = NoisyBatchNorm2d(2, 0.5, 1.5, seed=4, noise_per="example")
    expected = reference(x)  # the next step without a probe
    model = TinyNormNet(NoisyBatchNorm2d(2, 0.5, 1.5, seed=4, noise_per="example"))
    probe = ActivationsProbe(1, torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    probe.x = torch.randn(8, 2, 3, 3)
    rows = probe.measure(model)
    assert abs(rows["act/norm1.out.std"] - 1) > 0.01  # the probe's forward drew noise
    assert torch.equal(model(x), expected)


def test_activations_of_a_norm_layer_by_hand():
    x = torch.tensor([[[[1.0, 3.0]], [[0.0, 4.0]]],
                      [[[5.0, 7.0]], [[2.0, 2.0]]]])  # (2, 2, 1, 2)
    model = TinyNormNet(nn.BatchNorm2d(2))
    probe = ActivationsProbe(1, torch.zeros(2, 3, 32, 32, dtype=torch.uint8), bins=4, limit=2.0)
    probe.x = x
    rows = probe.measure(model)
    assert rows["act/norm1.in.p50"] == pytest.approx(2.5) and rows["act/norm1.in.mean"] == pytest.approx(3.0)
    assert rows["act/norm1.in.zero_frac"] == pytest.approx(1 / 8)
    # train mode: each channel is standardized by the probe batch's own statistics
    assert rows["act/norm1.out.mean"] == pytest.approx(0, abs=1e-6)
    assert rows["act/norm1.out.std"] == pytest.approx(1, abs=1e-4)
    assert sum(rows[f"hist/norm1.out.bin{k:02d}"] for k in range(4)) == pytest.approx(1)
    assert model.norm1.running_mean.tolist() == [0, 0] and model.norm1.num_batches_tracked.item() == 0
    none_rows = ActivationsProbe(1, torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).measure(TinyNormNet(nn.Identity()))
    assert {k.replace(".in.", ".out.") for k in none_rows if ".in." in k} == {k for k in none_rows if ".out." in k}


def test_per_unit_rows_of_a_norm_layers_input_by_hand():
    """channels=1: the first channel's mean and population std over batch and positions; none
    without the option; a 2-d input (the MLP's) reads its units as channels."""
    x = torch.tensor([[[[1.0, 3.0]], [[0.0, 4.0]]],
                      [[[5.0, 7.0]], [[2.0, 2.0]]]])  # channel 0: 1, 3, 5, 7 (mean 4, var 5)
    probe = ActivationsProbe(1, torch.zeros(2, 3, 32, 32, dtype=torch.uint8), channels=1)
    probe.x = x
    rows = probe.measure(TinyNormNet(nn.BatchNorm2d(2)))
    assert {k for k in rows if k.startswith("chan/")} == {"chan/norm1.in.c00.mean", "chan/norm1.in.c00.std"}
    assert rows["chan/norm1.in.c00.mean"] == pytest.approx(4) and rows["chan/norm1.in.c00.std"] == pytest.approx(
        math.sqrt(5))
    probe.channels = 0
    assert not any(k.startswith("chan/") for k in probe.measure(TinyNormNet(nn.BatchNorm2d(2))))
    probe.channels, probe.x = 4, torch.tensor([[1.0, 0.0], [3.0, 2.0]])  # (N=2, units=2): both units
    rows = probe.measure(TinyNormNet(nn.BatchNorm1d(2)))
    assert rows["chan/norm1.in.c01.mean"] == pytest.approx(1) and rows["chan/norm1.in.c01.std"] == pytest.approx(1)
    assert "chan/norm1.in.c02.mean" not in rows


def test_batchnorm_gaps_by_hand():
    bn = nn.BatchNorm2d(2, eps=1e-12)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([1.0, -1.0]))
        bn.running_var.copy_(torch.tensor([4.0, 1.0]))
        bn.weight.copy_(torch.tensor([3.0, 4.0]))
    probe = BatchNormProbe(1, torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.zeros(2, dtype=torch.long))
    probe.x = torch.tensor([[[[1.0, 3.0]], [[0.0, 0.0]]],
                            [[[5.0, 7.0]], [[2.0, 2.0]]]])  # batch means (4, 1), variances (5, 1)
    model = TinyNormNet(bn)
    rows = probe.measure(model)
    assert rows["bn/norm1.mean_gap"] == pytest.approx((3 / 2 + 2 / 1) / 2)
    assert rows["bn/norm1.var_gap"] == pytest.approx((math.log(5 / 4) + 0) / 2)
    assert rows["bn/norm1.gamma_norm"] == pytest.approx(5) and rows["bn/norm1.beta_norm"] == 0
    assert bn.running_mean.tolist() == [1, -1] and bn.num_batches_tracked.item() == 0


def test_ics_of_a_two_layer_linear_net_by_hand():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False))
    x, t = torch.randn(5, 3), torch.randn(5, 2)
    lr, mom, wd = 0.1, 0.9, 0.01
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=mom, weight_decay=wd)

    def batch_loss():
        return 0.5 * ((model(x) - t) ** 2).sum()

    batch_loss().backward(); opt.step(); opt.zero_grad()  # a real step first: a momentum buffer exists
    batch_loss().backward()
    W1, W2 = model[0].weight.detach().clone(), model[1].weight.detach().clone()
    G1, G2 = model[0].weight.grad.clone(), model[1].weight.grad.clone()
    buf1 = opt.state[model[0].weight]["momentum_buffer"].clone()

    def grad_w2(w1):  # L = 0.5 ||x W1^T W2^T - t||^2  =>  dL/dW2 = r^T h, h = x W1^T, r = h W2^T - t
        h = x @ w1.T
        return (h @ W2.T - t).T @ h

    assert torch.allclose(grad_w2(W1), G2, atol=1e-6)
    W1_new = W1 - lr * (mom * buf1 + G1 + wd * W1)  # SGD's actual update: momentum and weight decay
    G2_new = grad_w2(W1_new)
    rows = internal_covariate_shift(model, opt, batch_loss, ["0.weight", "1.weight"])
    assert rows["ics/0.weight.l2"] == 0 and rows["ics/0.weight.cos"] == pytest.approx(1)
    assert rows["ics/1.weight.l2"] == pytest.approx((G2 - G2_new).norm().item(), rel=1e-5)
    cos = (G2 * G2_new).sum() / (G2.norm() * G2_new.norm())
    assert rows["ics/1.weight.cos"] == pytest.approx(cos.item(), rel=1e-5)
    assert rows["ics/1.weight.rel"] == pytest.approx(((G2 - G2_new).norm() / G2.norm()).item(), rel=1e-5)
    assert rows["ics/0.weight.rel"] == 0
    # nothing changed: weights, grads, the momentum buffer
    assert torch.equal(model[0].weight, W1) and torch.equal(model[1].weight, W2)
    assert torch.equal(model[0].weight.grad, G1) and torch.equal(model[1].weight.grad, G2)
    assert torch.equal(opt.state[model[0].weight]["momentum_buffer"], buf1)


def test_ics_relative_shift_is_nan_without_a_gradient():
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        model[1].weight.zero_()  # dL/dW1 = 0: no gradient to be relative to
    x = torch.randn(5, 3)

    def batch_loss():
        return model(x).sum()

    batch_loss().backward()
    rows = internal_covariate_shift(model, torch.optim.SGD(model.parameters(), lr=0.1), batch_loss, ["0.weight"])
    assert rows["ics/0.weight.l2"] == 0 and math.isnan(rows["ics/0.weight.rel"])


def test_landscape_of_a_quadratic_by_hand():
    a = torch.tensor([1.0, 3.0])  # L(w) = 0.5 sum a_i w_i^2: the gradient is a*w, the curvature a
    w = torch.tensor([1.0, 1.0], requires_grad=True)

    def batch_loss():
        return 0.5 * (a * w * w).sum()

    w.grad = a * w.detach()  # g = (1, 3)
    rows = loss_landscape([w], batch_loss, [0.1, 0.2], loss0=batch_loss().item())
    # grad L(w - eta g) - g = -eta a*g = -eta (1, 9);  ||eta g|| = eta sqrt(10)
    assert rows["landscape/beta_smooth"] == pytest.approx(math.sqrt(82 / 10))
    assert rows["landscape/grad_pred"] == pytest.approx(0.2 * math.sqrt(82))
    assert rows["landscape/grad_pred_rel"] == pytest.approx(0.2 * math.sqrt(82) / math.sqrt(10))  # / ||g||
    # L(w - eta g) = 0.5 ((1 - eta)^2 + 3 (1 - 3 eta)^2): 2 at eta=0, 1.14 at 0.1, 0.56 at 0.2
    assert rows["landscape/loss_max"] == pytest.approx(2.0) and rows["landscape/loss_min"] == pytest.approx(0.56)
    assert w.tolist() == [1.0, 1.0]
    with torch.no_grad():
        w.copy_(torch.tensor([0.0, 1.0]))  # along the top eigenvector: beta is the top curvature, 3
    w.grad = a * w.detach()
    assert loss_landscape([w], batch_loss, [0.05, 0.1], 1.5)["landscape/beta_smooth"] == pytest.approx(3.0)


def test_gradient_norms_and_update_ratio_by_hand():
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=True))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 4.0]]))
        model[1].weight.fill_(1.0); model[1].bias.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model(torch.tensor([[1.0, 1.0]])).sum().backward()  # dL/dW1 = [[1, 1], [1, 1]], dL/dW2 = [[3, 4]]
    probe = GradientsProbe(1)
    ctx = ProbeContext(0, 0.0, model, opt, 0.5)
    rows = probe.before_update(ctx)
    opt.step()
    rows.update(probe.after_update(ctx))
    assert rows["grad/0.weight.norm"] == pytest.approx(2) and rows["grad/1.weight.norm"] == pytest.approx(5)
    assert rows["grad/spread"] == pytest.approx(2 / 5)
    assert rows["grad/0.weight.update_ratio"] == pytest.approx(0.5 * 2 / 5)  # ||lr g|| / ||W||
    assert math.isnan(rows["grad/1.bias.update_ratio"])  # ||b|| = 0


# ---------------------------------------------------------------------------- purity

class Noisy(nn.Module):
    """Draws from the global RNG (dropout) and from its own generator, in train mode."""

    def __init__(self):
        super().__init__()
        self.lin, self.bn, self.drop = nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)
        self.generator = torch.Generator().manual_seed(1)

    def forward(self, x):
        return self.drop(self.bn(self.lin(x))) + torch.rand(4, generator=self.generator)


def test_restored_puts_everything_back_bit_for_bit():
    torch.manual_seed(0)
    model, x = Noisy(), torch.randn(8, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    model(x).sum().backward()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    rng, gen = torch.get_rng_state(), model.generator.get_state()
    with restored(model, opt):
        model.eval()
        opt.step()
        model.train()
        model(x).sum().backward()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))
    assert len(opt.state) == 0 and model.training
    assert torch.equal(rng, torch.get_rng_state()) and torch.equal(gen, model.generator.get_state())


# ---------------------------------------------------------------------------- whole runs

DENSE = ["probes=all", "probes.gradients.every=2", "probes.ics.every=3", "probes.landscape.every=3",
         "probes.activations.every=5", "probes.sigprop.every=5", "probes.bn.every=2",
         "probes.activations.batch_size=32", "probes.sigprop.batch_size=32", "probes.bn.batch_size=32"]


def _run(tmp_path, name, overrides):
    out = tmp_path / name
    summary = run(compose_config(overrides), out)
    assert summary["status"] == "completed", summary.get("error")
    return pd.read_csv(out / "metrics.csv"), pd.read_csv(out / "probes.csv")


@pytest.fixture(scope="module")
def bn_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bn")
    tiny = ["scale=smoke", "data.synthetic_train_size=256", "data.synthetic_test_size=100",
            "data.train_subset=null", "data.test_subset=null", "data.batch_size=32",
            "trainer.max_steps=6", "trainer.log_every=2", "device=cpu"]
    return tiny, _run(tmp, "all", tiny + DENSE), _run(tmp, "none", tiny + ["probes=none"])


def _positions(probes: pd.DataFrame, stat: str) -> set[str]:
    names = probes.metric[probes.metric.str.startswith("act/") & probes.metric.str.endswith(f".{stat}")]
    return {n[len("act/"):-len(f".{stat}")] for n in names}


def _check_resnet20_rows(probes: pd.DataFrame, norm: str) -> None:
    model = build_model(ModelConfig(), NormConfig(name=norm))
    norms = list(norm_positions(model))
    blocks = [f"layer{s}.{b}" for s in (1, 2, 3) for b in range(3)]
    assert len(norms) == 19
    expected = {f"{n}.{side}" for n in norms for side in ("in", "out")} | {f"{b}.out" for b in blocks}
    for stat in STATS:
        assert _positions(probes, stat) == expected, stat
    assert {f"hist/{blocks[0]}.out.bin{k:02d}" for k in range(20)} <= set(probes.metric)
    for b in blocks:
        assert {f"sigprop/{b}.sq_mean", f"sigprop/{b}.var", f"sigprop/{b}.branch_var"} <= set(probes.metric)
    params = [n for n, _ in model.named_parameters()]
    assert {f"grad/{p}.norm" for p in params} <= set(probes.metric)
    assert {f"grad/{p}.update_ratio" for p in params} <= set(probes.metric)
    assert "grad/spread" in set(probes.metric)
    ics = {f"ics/{p}.{s}" for p in default_ics_params(model, 4) for s in ("l2", "cos", "rel")}
    assert ics <= set(probes.metric)
    landscape = {"landscape/loss_min", "landscape/loss_max", "landscape/grad_pred", "landscape/beta_smooth",
                 "landscape/grad_pred_rel"}
    assert landscape <= set(probes.metric)
    assert sorted(probes[probes.metric == "landscape/loss_min"].step.unique()) == [0, 3]
    assert sorted(probes[probes.metric == "grad/spread"].step.unique()) == [0, 2, 4]
    assert probes[probes.metric.str.startswith(("ics/", "landscape/", "act/"))].value.notna().all()


def test_bn_run_writes_every_probe(bn_runs):
    _, (_, probes), _ = bn_runs
    assert list(probes.columns) == ["step", "epoch", "metric", "value"]
    _check_resnet20_rows(probes, "bn")
    bn = probes[probes.metric.str.startswith("bn/")]
    assert len({m.rsplit(".", 1)[0] for m in bn.metric}) == 19
    assert {"test/acc_batchstats", "test/loss_batchstats"} <= set(probes.metric)


def test_probes_do_not_change_the_run(bn_runs):
    _, (with_probes, _), (without, probes_none) = bn_runs
    assert len(probes_none) == 0
    assert with_probes[["step", "metric"]].equals(without[["step", "metric"]])
    assert with_probes.value.tolist() == without.value.tolist()  # exact, not approximate


def test_norm_none_run_has_the_same_positions(tmp_path, bn_runs):
    tiny = bn_runs[0]
    _, probes = _run(tmp_path, "none", tiny + DENSE + ["norm=none"])
    _check_resnet20_rows(probes, "none")
    ins = probes[probes.metric.str.contains(r"norm\d\.in\.")].set_index(["step", "metric"]).value
    outs = probes[probes.metric.str.contains(r"norm\d\.out\.")].copy()
    outs["metric"] = outs.metric.str.replace(".out.", ".in.", regex=False)
    assert outs.set_index(["step", "metric"]).value.equals(ins)  # identity: in == out
    assert not probes.metric.str.startswith("bn/").any()


@pytest.mark.parametrize("noisy", ["noisy_bn", "noisy_bn_example"])
def test_probes_restore_noise_streams(tmp_path, bn_runs, noisy):
    """Dropout (global RNG) and noisy BN (its own generator, per channel or per example) draw in
    train-mode forwards."""
    tiny = bn_runs[0]
    extra = [f"norm={noisy}", "model.dropout=0.3"]
    try:
        compose_config(tiny + extra)
    except Exception as e:  # another part of the harness: skip where it is not there
        pytest.skip(f"noisy_bn or model.dropout not available: {e}")
    with_probes, _ = _run(tmp_path, f"all-{noisy}", tiny + extra + DENSE)
    without, _ = _run(tmp_path, f"none-{noisy}", tiny + extra + ["probes=none"])
    assert with_probes.value.tolist() == without.value.tolist()


def test_mlp_run(tmp_path, bn_runs):
    _, probes = _run(tmp_path, "mlp", bn_runs[0] + DENSE + ["model=mlp"])
    for layer in ("layer1", "layer2", "layer3"):  # norm input, and output = the sigmoid's input
        for side in ("in", "out"):
            assert f"act/{layer}.norm.{side}.p15" in set(probes.metric)
        assert f"act/{layer}.out.p50" in set(probes.metric)
    assert not probes.metric.str.startswith("sigprop/").any()  # no residual blocks
    assert probes.metric.str.startswith("ics/").any()


# ---------------------------------------------------------------------------- config and model

def test_probes_config_groups():
    none = compose_config(["probes=none"]).probes
    assert not any(getattr(none, n).every for n in ("activations", "sigprop", "gradients", "bn", "ics", "landscape"))
    default = compose_config([]).probes
    assert default.activations.every and not default.ics.every and not default.landscape.every
    assert build_probes(none, nn.Linear(1, 1), torch.zeros(1, 3, 32, 32, dtype=torch.uint8),
                        torch.zeros(1, dtype=torch.long)) == []
    all_ = compose_config(["probes=all"]).probes
    assert all_.ics.every and all_.landscape.every
    with pytest.raises(ConfigError, match="probes.ics.every"):
        compose_config(["probes.ics.every=-1"])
    with pytest.raises(ConfigError, match="probes.landscape.lr_multiples"):
        compose_config(["probes.landscape.lr_multiples=[]"])


def test_mlp_model():
    cfg = compose_config(["model=mlp"])
    assert (cfg.model.depth, cfg.model.width) == (3, 100)
    model = build_model(cfg.model, NormConfig(name="bn"))
    assert list(norm_positions(model)) == ["layer1.norm", "layer2.norm", "layer3.norm"]
    assert all(isinstance(m, nn.BatchNorm1d) for m in norm_positions(model).values())
    assert model(torch.zeros(4, 3, 32, 32)).shape == (4, 10)
    assert model.layer1.fc.weight.shape == (100, 3072) and model.layer1.fc.bias is None
    assert model.layer1.fc.weight.std().item() == pytest.approx(0.01, rel=0.05)
    plain = build_model(cfg.model, NormConfig(name="none"))
    assert all(isinstance(m, nn.Identity) for m in norm_positions(plain).values()) and plain.layer1.fc.bias is not None
    with pytest.raises(ConfigError, match="norm.name"):
        compose_config(["model=mlp", "norm=gn"])


def test_every_probe_config_has_its_registry_entry():
    """bnstudy.probes.PROBES and ProbesConfig name the same probes, in the order they run."""
    import dataclasses

    from bnstudy.config import ProbesConfig
    from bnstudy.probes import PROBES

    assert list(PROBES) == [f.name for f in dataclasses.fields(ProbesConfig)]
