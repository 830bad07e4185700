"""The training loop: plain PyTorch, every phase visible (lr, forward, backward, step, log, eval)."""
from __future__ import annotations

import logging
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .config import ScheduleConfig, TrainerConfig
from .data import TensorData, normalize, train_batches
from .optim import lr_at, set_lr
from .outputs import MetricsLog, atomic_torch_save
from .probes.base import Probe, ProbeContext, run_probes

log = logging.getLogger("bnstudy")

THROUGHPUT_WARMUP_STEPS = 3  # first steps excluded from the steady-state throughput


@dataclass
class TrainResult:
    status: str  # completed | diverged
    steps: int
    epochs: float
    final_test_acc: Optional[float] = None
    best_test_acc: Optional[float] = None
    final_test_loss: Optional[float] = None
    final_train_loss: Optional[float] = None
    steps_to_test_acc: dict[str, Optional[int]] = field(default_factory=dict)
    train_images_per_s: Optional[float] = None
    message: str = ""


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
             train_mode: bool = False, autocast=nullcontext) -> tuple[float, float]:
    """(mean loss, accuracy) over uint8 images `x`; eval mode (running statistics) unless
    `train_mode`. The model's mode is restored afterwards; in train mode BN running
    statistics would be updated, so that mode is only for probes that save them."""
    was_training = model.training
    model.train(train_mode)
    total_loss = torch.zeros((), device=x.device, dtype=torch.float64)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    for i in range(0, len(x), batch_size):
        xb, yb = normalize(x[i:i + batch_size]), y[i:i + batch_size]
        with autocast():
            logits = model(xb)
        total_loss += F.cross_entropy(logits.float(), yb, reduction="sum").double()
        correct += (logits.argmax(1) == yb).sum()
    model.train(was_training)
    n = len(x)
    return total_loss.item() / n, correct.item() / n


def checkpoint_state(model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                     step: int, total_steps: int, base_lr: float, schedule: ScheduleConfig) -> dict:
    """Everything needed to continue the run; loadable with torch.load(weights_only=True)."""
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": {"name": schedule.name, "base_lr": base_lr, "total_steps": total_steps,
                     "warmup_steps": schedule.warmup_steps, "step": step},
        "rng": {"torch": torch.get_rng_state(), "data": generator.get_state()},
    }
    if torch.cuda.is_available():
        state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
    return state


def train(model: nn.Module, data: TensorData, optimizer: torch.optim.Optimizer, *,
          trainer: TrainerConfig, schedule: ScheduleConfig, base_lr: float, batch_size: int,
          eval_batch_size: int, augment: bool, seed: int, metrics: MetricsLog,
          checkpoint_path: Optional[Path] = None, probes: Sequence[Probe] = (),
          probe_metrics: Optional[MetricsLog] = None) -> TrainResult:
    """Train `model` in place. `probes` measure without changing the run (bnstudy/probes/);
    their rows go to `probe_metrics` (probes.csv)."""
    if probes and probe_metrics is None:
        raise ValueError("train(probes=...) needs probe_metrics, the log their rows go to")
    device = data.x_train.device
    steps_per_epoch = len(data.x_train) // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"data.batch_size={batch_size} is larger than the training set ({len(data.x_train)})")
    total_steps = trainer.epochs * steps_per_epoch
    if trainer.max_steps is not None:
        total_steps = min(total_steps, trainer.max_steps)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if trainer.bf16 else nullcontext
    generator = torch.Generator(device).manual_seed(seed)
    memory_format = torch.channels_last if trainer.channels_last else torch.preserve_format

    show_bar = trainer.progress if trainer.progress is not None else sys.stderr.isatty()
    bar = tqdm(total=total_steps, disable=not show_bar, unit="step", dynamic_ncols=True, leave=False)
    res = TrainResult(status="completed", steps=0, epochs=0.0,
                      steps_to_test_acc={f"{t:g}": None for t in trainer.acc_thresholds})
    thru_images, thru_time = 0, 0.0
    loss_sum = torch.zeros((), device=device)
    correct_sum = torch.zeros((), device=device, dtype=torch.int64)
    seen, last_eval_step = 0, -1

    def run_eval(step: int) -> None:
        nonlocal last_eval_step
        loss, acc = evaluate(model, data.x_test, data.y_test, eval_batch_size, autocast=autocast)
        metrics.log(step, step / steps_per_epoch, {"test/loss": loss, "test/acc": acc})
        res.final_test_acc, res.final_test_loss = acc, loss
        res.best_test_acc = max(acc, res.best_test_acc or 0.0)
        for t in trainer.acc_thresholds:
            if acc >= t and res.steps_to_test_acc[f"{t:g}"] is None:
                res.steps_to_test_acc[f"{t:g}"] = step
        last_eval_step = step
        run_probes(probes, "on_eval", ProbeContext(step, step / steps_per_epoch, model, optimizer,
                                                   autocast=autocast), probe_metrics)
        if not show_bar:
            log.info(f"step {step}/{total_steps} test/loss {loss:.4f} test/acc {acc:.4f}")

    def batch_loss(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:  # the training forward, for probes
        with autocast():
            return F.cross_entropy(model(xb).float(), yb)

    step = 0
    model.train()
    while step < total_steps and res.status == "completed":
        t_last = time.perf_counter()
        for xb, yb in train_batches(data.x_train, data.y_train, batch_size, generator, augment):
            xb = xb.contiguous(memory_format=memory_format)
            lr = lr_at(step, total_steps, base_lr, schedule)
            set_lr(optimizer, lr)
            with autocast():
                logits = model(xb)
                loss = F.cross_entropy(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            due = [p for p in probes if p.due(step)]
            if due:  # probe rows are labelled with the updates done so far: step t measures w_t
                ctx = ProbeContext(step, step / steps_per_epoch, model, optimizer, lr, loss.detach(),
                                   partial(batch_loss, xb, yb), autocast)
                run_probes(due, "before_update", ctx, probe_metrics)
            optimizer.step()
            if due:
                run_probes(due, "after_update", ctx, probe_metrics)
            step += 1

            loss_v = loss.item()  # one host sync per step: divergence is caught at the step it happens
            if not math.isfinite(loss_v) or loss_v > trainer.diverge_loss:
                metrics.log(step, step / steps_per_epoch, {"train/loss": loss_v})
                res.status = "diverged"
                res.message = f"train loss {loss_v:.4g} at step {step} (bound trainer.diverge_loss={trainer.diverge_loss:g})"
                break
            loss_sum += loss.detach()
            correct_sum += (logits.argmax(1) == yb).sum()
            seen += 1

            now = time.perf_counter()
            if step > THROUGHPUT_WARMUP_STEPS:
                thru_images += len(xb)
                thru_time += now - t_last
            t_last = now
            bar.update(1)

            if step % trainer.log_every == 0 or step == total_steps:
                train_loss = loss_sum.item() / seen
                train_acc = correct_sum.item() / (seen * batch_size)
                metrics.log(step, step / steps_per_epoch, {"train/loss": train_loss, "train/acc": train_acc, "train/lr": lr})
                res.final_train_loss = train_loss
                loss_sum.zero_(); correct_sum.zero_(); seen = 0
                bar.set_postfix(loss=f"{train_loss:.3f}", acc=f"{train_acc:.3f}", lr=f"{lr:.3g}")
                if not show_bar:
                    log.info(f"step {step}/{total_steps} train/loss {train_loss:.4f} train/acc {train_acc:.4f} lr {lr:.4g}")
            if trainer.eval_every is not None and step % trainer.eval_every == 0:
                run_eval(step)
                t_last = time.perf_counter()
            if step >= total_steps:
                break
        # end of an epoch (or of the run)
        if res.status == "completed":
            if last_eval_step != step and (trainer.eval_every is None or step == total_steps):
                run_eval(step)
            if checkpoint_path is not None and trainer.checkpoint:
                atomic_torch_save(checkpoint_state(model, optimizer, generator, step, total_steps,
                                                   base_lr, schedule), checkpoint_path)
    bar.close()
    res.steps = step
    res.epochs = step / steps_per_epoch
    res.train_images_per_s = thru_images / thru_time if thru_time > 0 else None
    return res
