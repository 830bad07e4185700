"""What every probe shares: the hook points of the training loop, and restoring what a probe touches.

The loop (bnstudy/train.py) calls, at a step t where `probe.due(t)`:
  before_update(ctx)  after loss.backward(), before optimizer.step(): the weights are w_t
                      (t updates done; t=0 is the initialization) and p.grad holds the
                      gradient of this step's batch loss;
  after_update(ctx)   right after optimizer.step(): the weights are w_{t+1};
and at every evaluation, whatever `every` says, on_eval(ctx). Rows are labelled with t.

A probe is pure: it returns rows and leaves everything as it found it. `restored` puts
back, bit for bit, the model's mode, parameters, their grads, its buffers (BN running
statistics, which any train-mode forward updates), the optimizer's state, and the random
number generators a train-mode forward may draw from (`rng_state`: torch's global ones,
for dropout, and any torch.Generator a module holds, e.g. noisy_bn's). Probes draw nothing
else; the data generator is the loop's own and never reaches them.

A probe's extra forwards on the step's batch (ctx.batch_loss) replay the training
forward's draws (`replayed_rng`): the same dropout masks and noisy_bn noise, so a
difference they measure comes from the weights, not from fresh noise.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterator, Optional, Sequence

import torch
from torch import nn

from ..data import normalize

Rows = dict[str, float]


@dataclass
class ProbeContext:
    step: int  # optimizer updates done so far: the weights are w_step
    epoch: float
    model: nn.Module
    optimizer: Optional[torch.optim.Optimizer] = None
    lr: float = 0.0  # the learning rate of this step's update
    loss: Optional[torch.Tensor] = None  # this step's training loss (already backpropagated)
    # the loss on this step's batch at the current weights, replaying the training forward's random draws
    batch_loss: Optional[Callable[[], torch.Tensor]] = None
    autocast: Callable = nullcontext


class Probe:
    """Measures every `every` steps (None or 0: never); override the hooks it needs."""

    every: Optional[int] = None

    def due(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0

    def before_update(self, ctx: ProbeContext) -> Rows:
        return {}

    def after_update(self, ctx: ProbeContext) -> Rows:
        return {}

    def on_eval(self, ctx: ProbeContext) -> Rows:
        return {}


@dataclass
class RngState:
    """Where every random stream a train-mode forward draws from stands."""
    cpu: torch.Tensor  # torch's global generator (dropout on the CPU)
    cuda: dict[int, torch.Tensor]  # device index -> its global generator (dropout on a GPU)
    modules: list[torch.Tensor]  # generators held by modules (noisy_bn), in model.modules() order


def module_generators(model: nn.Module) -> dict[str, torch.Generator]:
    """Random streams that live in modules (noisy_bn's `generator`), by module name, in
    model.modules() order: a replayed forward, or a resumed run, draws what it would have."""
    return {name: m.generator for name, m in model.named_modules()
            if isinstance(getattr(m, "generator", None), torch.Generator)}


def rng_state(model: nn.Module) -> RngState:
    devices = sorted({p.device.index for p in model.parameters() if p.device.type == "cuda"})
    return RngState(torch.get_rng_state(), {d: torch.cuda.get_rng_state(d) for d in devices},
                    [g.get_state() for g in module_generators(model).values()])


def set_rng_state(model: nn.Module, state: RngState) -> None:
    torch.set_rng_state(state.cpu)
    for d, s in state.cuda.items():
        torch.cuda.set_rng_state(s, d)
    for g, s in zip(module_generators(model).values(), state.modules):
        g.set_state(s)


@contextmanager
def replayed_rng(model: nn.Module, state: RngState) -> Iterator[None]:
    """Inside, every stream starts at `state`: a forward draws what the forward that ran from
    `state` drew. On exit the streams are back where they were, as if nothing had drawn."""
    current = rng_state(model)
    set_rng_state(model, state)
    try:
        yield
    finally:
        set_rng_state(model, current)


def _copy_optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    return {p: {k: v.clone() if torch.is_tensor(v) else copy.deepcopy(v) for k, v in st.items()}
            for p, st in optimizer.state.items()}


@contextmanager
def restored(model: nn.Module, optimizer: Optional[torch.optim.Optimizer] = None,
             params: bool = True) -> Iterator[None]:
    """On exit, put back bit for bit the model's mode, buffers and random generators, its
    parameters and their grads (unless params=False: for probes that only run forwards
    without grad) and the optimizer's state (when given)."""
    was_training = model.training
    buffers = [b.detach().clone() for b in model.buffers()]
    rng = rng_state(model)
    if params:
        plist = list(model.parameters())
        values = [p.detach().clone() for p in plist]
        grads = [None if p.grad is None else p.grad.detach().clone() for p in plist]
    opt_state = _copy_optimizer_state(optimizer) if optimizer is not None else None
    try:
        yield
    finally:
        with torch.no_grad():
            for b, v in zip(model.buffers(), buffers):
                b.copy_(v)
            if params:
                for p, v, g in zip(plist, values, grads):
                    p.copy_(v)
                    p.grad = g
        set_rng_state(model, rng)
        if opt_state is not None:
            for p in list(optimizer.state):
                if p not in opt_state:
                    del optimizer.state[p]
            for p, st in opt_state.items():
                optimizer.state[p] = st
        model.train(was_training)


@contextmanager
def forward_hooks(modules: dict[str, nn.Module], fn: Callable) -> Iterator[None]:
    """Call fn(name, module, inputs, output) after each named module's forward, while open."""
    handles = [m.register_forward_hook(partial(fn, name)) for name, m in modules.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def norm_positions(model: nn.Module) -> dict[str, nn.Module]:
    """The norm layers by name, in forward order: the modules named `norm*`. Under norm=none
    they are nn.Identity, so bn and none runs have the same positions."""
    return {n: m for n, m in model.named_modules() if n and n.rsplit(".", 1)[-1].startswith("norm")}


def block_positions(model: nn.Module) -> dict[str, nn.Module]:
    """The model's blocks by name (`model.blocks()`: residual blocks, or the MLP's hidden layers)."""
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        return {}
    ids = {id(b) for b in blocks()}
    return {n: m for n, m in model.named_modules() if id(m) in ids}


def channel_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (biased) variance of (N, C, *) features, over all axes but C."""
    dims = [0] + list(range(2, x.ndim))
    x = x.detach().float()
    return x.mean(dims), x.var(dims, correction=0)  # (C,), (C,)


def probe_images(x_test: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The fixed probe batch: the first `batch_size` test images, normalized, no augmentation."""
    return normalize(x_test[:batch_size])  # (B, 3, 32, 32)


def run_probes(probes: Sequence[Probe], hook: str, ctx: ProbeContext, log) -> None:
    """Call `hook` (before_update | after_update | on_eval) of each probe; log its rows at ctx.step."""
    for probe in probes:
        rows = getattr(probe, hook)(ctx)
        if rows:
            log.log(ctx.step, ctx.epoch, rows)
