"""Probe forwards replay the training forward's randomness, and ICS orders layers by forward execution.

Small real ResNets trained for a step or a few through bnstudy.train.train, on 8 random images."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bnstudy.config import ModelConfig, NormConfig, ScheduleConfig, TrainerConfig
from bnstudy.data import TensorData
from bnstudy.nets.resnet import build_model
from bnstudy.probes.base import Probe, restored
from bnstudy.probes.ics import ICSProbe, forward_order, layers_before
from bnstudy.probes.landscape import LandscapeProbe, loss_landscape
from bnstudy.train import train

# (norm, dropout): a deterministic forward, then the two sources of randomness in a train-mode forward
RANDOMNESS = [("bn", 0.0), ("noisy_bn", 0.0), ("bn", 0.5)]


class Recorder:
    """Stands in for MetricsLog: keeps the rows in memory."""

    def __init__(self):
        self.rows, self.values = 0, {}

    def log(self, step, epoch, values):
        self.values.update(values)
        self.rows += len(values)


def _model(norm: str, dropout: float = 0.0, depth: int = 8, skipinit: bool = False):
    torch.manual_seed(0)
    return build_model(ModelConfig(depth=depth, dropout=dropout, skipinit=skipinit), NormConfig(name=norm))


def _train(model, probes, lr: float, steps: int = 1) -> dict[str, float]:
    """`steps` full-batch steps on 8 random images; the probes' rows."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=gen)  # (8, 3, 32, 32)
    y = torch.randint(0, 10, (8,), generator=gen)
    data = TensorData(x, y, x, y, tuple(str(c) for c in range(10)))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    probe_log = Recorder()
    torch.manual_seed(1)  # the global stream dropout draws from
    train(model, data, optimizer, trainer=TrainerConfig(epochs=steps, max_steps=steps, log_every=1,
                                                        checkpoint=False, progress=False),
          schedule=ScheduleConfig(name="constant"), base_lr=lr, batch_size=8, eval_batch_size=8,
          augment=False, seed=0, metrics=Recorder(), probes=probes, probe_metrics=probe_log)
    return probe_log.values


@pytest.mark.parametrize("norm, dropout", RANDOMNESS)
def test_ics_is_zero_at_lr_zero(norm, dropout):
    """At lr=0 no layer moves, so G' = G exactly: any shift measured is the probe's own noise."""
    model = _model(norm, dropout)
    rows = _train(model, [ICSProbe(1, model, num_params=3)], lr=0.0)
    names = {k.rsplit(".", 1)[0] for k in rows}
    assert len(names) == 3
    for name in names:
        assert rows[f"{name}.cos"] == pytest.approx(1.0, abs=1e-6), name
        assert rows[f"{name}.rel"] == pytest.approx(0.0, abs=1e-6), name


class GradAtZeroStep(Probe):
    """The landscape at eta=0: the gradient the probe recomputes at the training weights."""

    every = 1

    def before_update(self, ctx):
        with restored(ctx.model):
            return loss_landscape(list(ctx.model.parameters()), ctx.batch_loss, [0.0], float(ctx.loss))


@pytest.mark.parametrize("norm, dropout", RANDOMNESS)
def test_landscape_recomputes_the_training_gradient(norm, dropout):
    rows = _train(_model(norm, dropout), [GradAtZeroStep()], lr=0.0)
    assert rows["landscape/loss_min"] == pytest.approx(rows["landscape/loss_max"], rel=1e-6)
    assert rows["landscape/grad_pred_rel"] == pytest.approx(0.0, abs=1e-6)


def test_probes_leave_weights_and_streams_bit_identical():
    """With both sources of randomness and probes at every step, the run is the run without probes."""
    def trained(with_probes: bool):
        model = _model("noisy_bn", 0.5)
        probes = [ICSProbe(1, model, num_params=2), LandscapeProbe(1, [1.0])] if with_probes else []
        rows = _train(model, probes, lr=0.1, steps=3)
        assert bool(rows) == with_probes
        gens = [m.generator.get_state() for m in model.modules() if hasattr(m, "generator")]
        return model.state_dict(), torch.get_rng_state(), gens

    (w_on, rng_on, gens_on), (w_off, rng_off, gens_off) = trained(True), trained(False)
    assert all(torch.equal(w_on[k], w_off[k]) for k in w_off)
    assert torch.equal(rng_on, rng_off) and len(gens_on) > 0
    assert all(torch.equal(a, b) for a, b in zip(gens_on, gens_off))


def test_forward_order_puts_skipinit_gain_after_the_branch():
    """SkipInit's gain belongs to the block but multiplies the output of conv2/norm2."""
    model = _model("bn", depth=14, skipinit=True)  # two blocks per stage
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    running = model.layer1[0].norm1.running_mean.clone()
    order = forward_order(model, lambda: F.cross_entropy(model(x), y))
    assert torch.equal(model.layer1[0].norm1.running_mean, running)  # the forward left no trace
    assert order["conv1.weight"] == 0 and set(order) == {n for n, _ in model.named_parameters()}
    before = set(layers_before(order, "layer1.0.conv2.weight"))
    assert {"conv1.weight", "layer1.0.conv1.weight", "layer1.0.norm1.weight", "layer1.0.norm1.bias"} <= before
    assert "layer1.0.skip_gain" not in before and "layer1.0.norm2.weight" not in before
    assert "layer1.0.conv2.weight" not in before  # its own layer stays at w_t
    assert "layer1.0.skip_gain" in layers_before(order, "layer1.1.conv1.weight")
    assert "layer1.1.skip_gain" not in layers_before(order, "layer1.1.conv2.weight")
