"""The timed training loops the benchmark compares (bnstudy/bench.py runs them round-robin):
  (a) `bare_loop`: a bare PyTorch loop over pre-normalized in-memory tensors (the ceiling);
  (b)/(c)/(e) `harness`: bnstudy's own train(), probes off, on, or with TensorBoard event files;
  (d) `classic_loop`: a CIFAR10-style Dataset of PIL images with per-sample transforms in a
      DataLoader, the recipe users write instead (`classic_loader_only`: its loader alone);
and the same bare loop and harness in each precision (`precision_variants`) or with each norm
layer (`norm_variants`); and `evaluate` in eval mode at each chunk size (`eval_chunk_variants`).
SPEED holds the speed options every variant of one table shares.
"""
from __future__ import annotations

import contextlib
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .config import ModelConfig, NormConfig, OptimConfig, ScheduleConfig, TrainerConfig
from .data import CIFAR10_MEAN, CIFAR10_STD, TensorData, normalize
from .nets.resnet import build_model
from .optim import build_optimizer
from .outputs import MetricsLog


# speed options, the same for every variant of one table: channels_last, bf16 autocast, compile
SPEED = {"channels_last": False, "bf16": False, "compile": False}


PRECISIONS = {"fp32": {}, "channels_last": {"channels_last": True}, "bf16": {"bf16": True},
              "bf16+channels_last": {"bf16": True, "channels_last": True}}
EVAL_PRECISIONS = ("fp32", "bf16+channels_last")  # eval_chunk_variants': the default and the fast path


def _model_and_opt(device: torch.device, seed: int = 0, norm: NormConfig | None = None):
    """The model (BN unless `norm`) and optimizer, plus the forward the loops call (compiled with
    --compile) and their autocast context (bf16 with --bf16)."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(depth=20), norm or NormConfig(name="bn")).to(device)
    if SPEED["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if SPEED["compile"] else model
    autocast = ((lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if SPEED["bf16"]
                else contextlib.nullcontext)
    return model, build_optimizer(model, OptimConfig(lr=0.05), 0.05), forward, autocast


def _memory_format():
    return torch.channels_last if SPEED["channels_last"] else torch.contiguous_format


def bare_loop(data: TensorData, batch: int, steps: int, device: torch.device,
              norm: NormConfig | None = None) -> float:
    """(a) images/s of the simplest loop: normalized float tensors in memory, no augmentation."""
    model, opt, forward, autocast = _model_and_opt(device, norm=norm)
    x = normalize(data.x_train[: batch * 8].to(device)).contiguous(memory_format=_memory_format())
    y = data.y_train[: batch * 8].to(device)
    model.train()
    t0 = None
    for i in range(steps + 3):
        if i == 3:
            t0 = time.perf_counter()
        j = (i % 8) * batch
        with autocast():
            loss = F.cross_entropy(forward(x[j:j + batch]).float(), y[j:j + batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()  # the one sync per step the harness makes on a CPU (on a GPU it makes fewer)
    return steps * batch / (time.perf_counter() - t0)


def probe_period() -> int:
    """Steps after which the default probes' pattern of calls repeats (lcm of their cadences)."""
    from .config import ProbesConfig

    cfg = ProbesConfig()
    everies = [getattr(cfg, f).every for f in vars(cfg) if getattr(getattr(cfg, f), "every", None)]
    return math.lcm(*everies)


def harness(data: TensorData, batch: int, steps: int, device: torch.device, probes: bool,
            tensorboard: bool = False, writer_share: Optional[list] = None) -> float:
    """(b)/(c)/(e) images/s that bnstudy's own loop reports over `steps` timed steps (after its 3
    warm-up steps; evaluation excluded, probe calls included); with `tensorboard`, its rows also
    go to TensorBoard event files, as with trainer.tensorboard=true, and `writer_share` gets the
    seconds spent in the event writer's calls (its final flush included) over the timed seconds:
    a share measured inside one run, which shared cores slow alike on both sides."""
    from .config import ProbesConfig
    from .probes import build_probes
    from .train import THROUGHPUT_WARMUP_STEPS, train

    model, opt, _, _ = _model_and_opt(device)
    data = data.to(device)
    probe_list = build_probes(ProbesConfig(), model, data.x_test, data.y_test, 500) if probes else []
    total = steps + THROUGHPUT_WARMUP_STEPS  # probes due at step 0 fall in the warm-up; one period is timed
    epochs = math.ceil(total / (len(data.x_train) // batch))
    with tempfile.TemporaryDirectory() as tmp:
        events, tee, spent = None, None, [0.0]
        if tensorboard:
            from .tensorboard import EventLog
            events = EventLog(Path(tmp) / "tb")

            def timed(rows):  # the live tee, its seconds counted
                t0 = time.perf_counter()
                events.rows(rows)
                spent[0] += time.perf_counter() - t0
            tee = timed
        m, p = (MetricsLog(Path(tmp) / f, tee) for f in ("m.csv", "p.csv"))
        trainer = TrainerConfig(epochs=epochs, max_steps=total, log_every=10, checkpoint=False, progress=False,
                                precision="bf16" if SPEED["bf16"] else "fp32", channels_last=SPEED["channels_last"],
                                compile=SPEED["compile"])
        res = train(model, data, opt, trainer=trainer,
                    schedule=ScheduleConfig(name="constant"), base_lr=0.05, batch_size=batch,
                    eval_batch_size=500, augment=True, seed=0, metrics=m, probes=probe_list,
                    probe_metrics=p)
        m.close(), p.close()
        if events is not None:
            t0 = time.perf_counter()
            events.close()
            spent[0] += time.perf_counter() - t0
            if writer_share is not None and res.train_images_per_s:  # None: no step was timed
                writer_share.append(spent[0] / (steps * batch / res.train_images_per_s))
    return res.train_images_per_s


class _ClassicCIFAR(torch.utils.data.Dataset):
    """What a torchvision CIFAR10 dataset does per sample: numpy HWC -> PIL -> transforms."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        import torchvision.transforms as T

        self.x = x.permute(0, 2, 3, 1).numpy()  # (N, H, W, C) like torchvision's CIFAR10.data
        self.y = y.tolist()
        self.transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                                    T.Normalize(CIFAR10_MEAN, CIFAR10_STD)])

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), self.y[i]


def _epochs(loader):
    """the loader's batches, epoch after epoch, as a training loop reads them."""
    while True:
        yield from loader


def classic_loop(data: TensorData, batch: int, steps: int, device: torch.device, workers: int = 2) -> float:
    """(d) images/s of the per-sample PIL + DataLoader recipe."""
    model, opt, forward, autocast = _model_and_opt(device)
    loader = torch.utils.data.DataLoader(_ClassicCIFAR(data.x_train, data.y_train), batch_size=batch,
                                         shuffle=True, num_workers=workers, drop_last=True,
                                         persistent_workers=False)
    model.train()
    it = _epochs(loader)
    t0 = None
    for i in range(steps + 3):
        if i == 3:
            t0 = time.perf_counter()
        xb, yb = next(it)
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        with autocast():
            loss = F.cross_entropy(forward(xb.contiguous(memory_format=_memory_format())).float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
    rate = steps * batch / (time.perf_counter() - t0)
    del it
    return rate


def classic_loader_only(data: TensorData, batch: int, steps: int, workers: int = 2) -> float:
    """images/s the classic per-sample pipeline delivers with no model to feed."""
    loader = torch.utils.data.DataLoader(_ClassicCIFAR(data.x_train, data.y_train), batch_size=batch,
                                         shuffle=True, num_workers=workers, drop_last=True)
    it = _epochs(loader)
    for _ in range(3):
        next(it)
    t0 = time.perf_counter()
    for _ in range(steps):
        next(it)
    rate = steps * batch / (time.perf_counter() - t0)
    del it
    return rate


def precision_variants(data: TensorData, batch: int, steps: int, reps: int, device: torch.device, say) -> dict:
    """The bare loop and the harness in each precision (PRECISIONS), round-robin in one process:
    what bf16 autocast and channels_last buy here, and whether the harness keeps up with the
    bare loop in the fast path."""
    saved = dict(SPEED)
    rates: dict[str, list[float]] = {f"{loop} {p}": [] for p in PRECISIONS for loop in ("bare", "harness")}
    try:
        for r in range(reps):
            for p, opts in PRECISIONS.items():
                SPEED.update({**saved, "channels_last": False, "bf16": False, **opts})
                for loop in ("bare", "harness"):
                    fn = bare_loop if loop == "bare" else (lambda *a: harness(*a, probes=False))
                    rates[f"{loop} {p}"].append(fn(data, batch, steps, device))
                    say(f"  rep {r + 1}/{reps} {loop:>7} {p:<18}: {rates[f'{loop} {p}'][-1]:7.1f} images/s")
    finally:
        SPEED.update(saved)
    med = {k: statistics.median(v) for k, v in rates.items()}
    fast = "bf16+channels_last"
    ratios = {"harness fast / bare fast": med[f"harness {fast}"] / med[f"bare {fast}"],
              "harness fast / harness fp32": med[f"harness {fast}"] / med["harness fp32"],
              **{f"bare {p} / bare fp32": med[f"bare {p}"] / med["bare fp32"] for p in PRECISIONS}}
    return {"images_per_s": rates, "median_images_per_s": med, "ratios": ratios,
            "targets": {"harness fast / bare fast": 0.95, "harness fast / harness fp32": 2.0}}


def parse_norm(spec: str) -> NormConfig:
    """'bn', 'gn', 'ghost_bn:4' (4 images a virtual batch), 'gn:16' (16 groups)."""
    name, _, size = spec.partition(":")
    sized = {"ghost_bn": "ghost_batch_size", "gn": "groups"}
    if size and name not in sized:
        raise ValueError(f"--norms {spec!r}: a size only for {' and '.join(sized)}")
    return NormConfig(name=name, **({sized[name]: int(size)} if size else {}))


def norm_variants(data: TensorData, batch: int, steps: int, reps: int, device: torch.device, specs: list[str],
                  say) -> dict:
    """The bare loop with each norm layer in `specs`, round-robin in one process; ratios to the first."""
    norms = {s: parse_norm(s) for s in specs}
    rates = round_robin({s: (lambda n=n: bare_loop(data, batch, steps, device, n)) for s, n in norms.items()},
                         reps, say)
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"images_per_s": rates, "median_images_per_s": med,
            "ratios": {f"{s} / {specs[0]}": med[s] / med[specs[0]] for s in specs}}


def eval_chunk_variants(data: TensorData, chunks: list[int], reps: int, device: torch.device, say) -> dict:
    """`evaluate` in eval mode over data.x_test with the forward in chunks of each size, in fp32 and
    in bf16 autocast + channels_last, round-robin in one process (the model is untrained: eval
    mode's cost does not depend on the weights); ratios to the largest chunk, per precision. The
    chunk evaluation.CPU_EVAL_CHUNK caps a CPU's eval batch at was chosen from these."""
    from . import evaluation

    model, _, _, _ = _model_and_opt(device)
    x, y = data.x_test.to(device), data.y_test.to(device)
    bf16 = lambda: torch.autocast(device.type, dtype=torch.bfloat16)  # noqa: E731

    def timed(chunk: int, fast: bool) -> float:
        model.to(memory_format=torch.channels_last if fast else torch.contiguous_format)
        t0 = time.perf_counter()
        evaluation.evaluate(model, x, y, chunk, autocast=bf16 if fast else contextlib.nullcontext, cpu_chunk=chunk)
        return len(x) / (time.perf_counter() - t0)

    variants = {f"{p} {c}": (lambda c=c, fast=p != "fp32": timed(c, fast)) for p in EVAL_PRECISIONS for c in chunks}
    for fn in variants.values():  # one untimed pass each: allocator and kernel warm-up
        fn()
    rates = round_robin(variants, reps, say)
    med = {k: statistics.median(v) for k, v in rates.items()}
    top = max(chunks)
    return {"images": len(x), "chunks": chunks, "images_per_s": rates, "median_images_per_s": med,
            "ratios": {f"{p} {c} / {p} {top}": med[f"{p} {c}"] / med[f"{p} {top}"]
                       for p in EVAL_PRECISIONS for c in chunks},
            "cpu_eval_chunk": evaluation.CPU_EVAL_CHUNK}


def round_robin(variants: dict[str, Callable[[], float]], reps: int, say) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(reps):
        for name, fn in variants.items():
            out[name].append(fn())
            say(f"  rep {r + 1}/{reps} {name:>8}: {out[name][-1]:7.1f} images/s")
    return out
