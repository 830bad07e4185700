"""The training loop: plain PyTorch, every phase visible (lr, forward, backward, step, log, eval)."""
from __future__ import annotations

import dataclasses
import logging
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
from .data import TensorData, train_batches
from .evaluation import evaluate
from .optim import lr_at, set_lr
from .outputs import MetricsLog, atomic_torch_save
from .precision import resolve as resolve_precision
from .probes.base import Probe, ProbeContext, RngState, replayed_rng, rng_state, run_probes

log = logging.getLogger("bnstudy")

THROUGHPUT_WARMUP_STEPS = 3  # first steps excluded from the steady-state throughput
TRAIN_EVAL_IMAGES = 2000  # training images re-evaluated at each evaluation (train_eval/*)


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
    final_train_eval_acc: Optional[float] = None  # eval mode, on a fixed slice of the training set
    train_images_per_s: Optional[float] = None
    message: str = ""


def _module_generators(model: nn.Module) -> dict[str, torch.Generator]:
    """Random streams that live in modules (noisy_bn), so a resumed run draws what it would have."""
    return {name: m.generator for name, m in model.named_modules()
            if isinstance(getattr(m, "generator", None), torch.Generator)}


def checkpoint_state(model: nn.Module, optimizer: torch.optim.Optimizer, *, step: int, total_steps: int,
                     base_lr: float, schedule: ScheduleConfig, epoch_generator_state: torch.Tensor,
                     step_in_epoch: int, result: "TrainResult", accum: dict, rows: dict[str, int]) -> dict:
    """Everything needed to continue the run exactly; loadable with torch.load(weights_only=True).

    `epoch_generator_state` is the data generator at the start of the current epoch and
    `step_in_epoch` the batches of it already trained on: a resume replays the epoch's
    shuffling and augmentation draws up to there. `rows` are the lines metrics.csv and
    probes.csv held at this point; a resume cuts them back to that.
    """
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": {"name": schedule.name, "base_lr": base_lr, "total_steps": total_steps,
                     "warmup_steps": schedule.warmup_steps, "step": step},
        "rng": {"torch": torch.get_rng_state(), "data_epoch_start": epoch_generator_state,
                "modules": {k: g.get_state() for k, g in _module_generators(model).items()}},
        "step_in_epoch": step_in_epoch,
        "result": dataclasses.asdict(result),
        "accum": accum,
        "rows": rows,
    }
    if torch.cuda.is_available():
        state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
    return state


def train(model: nn.Module, data: TensorData, optimizer: torch.optim.Optimizer, *,
          trainer: TrainerConfig, schedule: ScheduleConfig, base_lr: float, batch_size: int,
          eval_batch_size: int, augment: bool, seed: int, metrics: MetricsLog,
          checkpoint_path: Optional[Path] = None, probes: Sequence[Probe] = (),
          probe_metrics: Optional[MetricsLog] = None, resume: Optional[dict] = None,
          intensity: tuple = (0.0, 0.0)) -> TrainResult:
    """Train `model` in place. `probes` measure without changing the run (bnstudy/probes/);
    their rows go to `probe_metrics` (probes.csv). `resume` is a checkpoint_state() to
    continue from (model and optimizer already loaded from it). `intensity` = (gain,
    offset[, per_image]) of a random intensity shift (data.intensity_shift; 0, 0: none)."""
    if probes and probe_metrics is None:
        raise ValueError("train(probes=...) needs probe_metrics, the log their rows go to")
    device = data.x_train.device
    steps_per_epoch = len(data.x_train) // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"data.batch_size={batch_size} is larger than the training set ({len(data.x_train)})")
    total_steps = trainer.epochs * steps_per_epoch
    if trainer.max_steps is not None:
        if trainer.max_steps > total_steps:  # a silent cap once hid a study's budget
            log.warning(f"trainer.max_steps={trainer.max_steps} is more than trainer.epochs={trainer.epochs} x "
                        f"{steps_per_epoch} steps an epoch: the run stops at step {total_steps}")
        total_steps = min(total_steps, trainer.max_steps)
    precision = resolve_precision(trainer.precision, trainer.channels_last, device)  # run.py passes it resolved
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if precision.name == "bf16" else nullcontext
    generator = torch.Generator(device).manual_seed(seed)
    memory_format = torch.channels_last if precision.channels_last else torch.preserve_format
    forward = torch.compile(model) if trainer.compile else model  # the training forward only
    check_every = trainer.check_every or (1 if device.type == "cpu" else trainer.log_every)
    # a fixed slice of the training set (at most TRAIN_EVAL_IMAGES), evaluated like the
    # test set: the train/test gap of the regularization study
    n_train_eval = min(len(data.x_train), len(data.x_test), TRAIN_EVAL_IMAGES)
    x_train_eval, y_train_eval = data.x_train[:n_train_eval], data.y_train[:n_train_eval]

    show_bar = trainer.progress if trainer.progress is not None else sys.stderr.isatty()
    res = TrainResult(status="completed", steps=0, epochs=0.0,
                      steps_to_test_acc={f"{t:g}": None for t in trainer.acc_thresholds})
    thru_images, thru_time = 0, 0.0
    loss_sum = torch.zeros((), device=device)
    correct_sum = torch.zeros((), device=device, dtype=torch.int64)
    seen, last_eval_step = 0, -1
    step, skip_batches = 0, 0
    # divergence, tracked on the device: the step of the first bad loss (-1: none yet) and its value
    step_dev = torch.zeros((), device=device, dtype=torch.int64)
    bad_step = torch.full((), -1, device=device, dtype=torch.int64)
    bad_loss = torch.zeros((), device=device)
    if resume is not None:
        step = resume["step"]
        res = TrainResult(**resume["result"])
        loss_sum += resume["accum"]["loss_sum"].to(device)
        correct_sum += resume["accum"]["correct_sum"].to(device)
        seen, last_eval_step = resume["accum"]["seen"], resume["accum"]["last_eval_step"]
        torch.set_rng_state(resume["rng"]["torch"])
        if "cuda" in resume["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(resume["rng"]["cuda"])
        for name, g in _module_generators(model).items():
            g.set_state(resume["rng"]["modules"][name])
        generator.set_state(resume["rng"]["data_epoch_start"])
        skip_batches = resume["step_in_epoch"]
        step_dev += step
    bar = tqdm(total=total_steps, initial=step, disable=not show_bar, unit="step", dynamic_ncols=True, leave=False)

    def run_eval(step: int) -> None:
        nonlocal last_eval_step
        loss, acc = evaluate(model, data.x_test, data.y_test, eval_batch_size, autocast=autocast)
        row = {"test/loss": loss, "test/acc": acc}
        if trainer.train_eval:
            tr_loss, tr_acc = evaluate(model, x_train_eval, y_train_eval, eval_batch_size, autocast=autocast)
            row.update({"train_eval/loss": tr_loss, "train_eval/acc": tr_acc})
            res.final_train_eval_acc = tr_acc
        metrics.log(step, step / steps_per_epoch, row)
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

    def save_checkpoint(epoch_state: torch.Tensor, step_in_epoch: int) -> None:
        if checkpoint_path is None or not trainer.checkpoint:
            return
        accum = {"loss_sum": loss_sum.detach().cpu(), "correct_sum": correct_sum.detach().cpu(),
                 "seen": seen, "last_eval_step": last_eval_step}
        rows = {"metrics": metrics.rows, "probes": probe_metrics.rows if probe_metrics is not None else 0}
        res.steps, res.epochs = step, step / steps_per_epoch
        atomic_torch_save(checkpoint_state(model, optimizer, step=step, total_steps=total_steps, base_lr=base_lr,
                                           schedule=schedule, epoch_generator_state=epoch_state,
                                           step_in_epoch=step_in_epoch, result=res, accum=accum, rows=rows),
                          checkpoint_path)

    def diverged() -> bool:
        """One host sync: end the run as diverged if a loss since the last check was bad."""
        nonlocal step
        first = int(bad_step.item())
        if first < 0:
            return False
        value = bad_loss.item()
        metrics.log(first, first / steps_per_epoch, {"train/loss": value})
        res.status, step = "diverged", first
        res.message = f"train loss {value:.4g} at step {first} (bound trainer.diverge_loss={trainer.diverge_loss:g})"
        return True

    def batch_loss(xb: torch.Tensor, yb: torch.Tensor, rng: RngState) -> torch.Tensor:
        """The training forward, for probes: it draws the training forward's dropout masks and
        noisy_bn noise again (`rng`, taken before it), and leaves the run's streams untouched.
        It runs eagerly: under trainer.compile, compiled dropout draws other masks from the same state."""
        with replayed_rng(model, rng), autocast():
            return F.cross_entropy(model(xb).float(), yb)

    model.train()
    while step < total_steps and res.status == "completed":
        epoch_state = generator.get_state()  # replayed by a resume from inside this epoch
        t_last = time.perf_counter()
        batches = train_batches(data.x_train, data.y_train, batch_size, generator, augment, *intensity)
        for i, (xb, yb) in enumerate(batches):
            if i < skip_batches:  # resuming: these batches were trained on before the checkpoint
                continue
            xb = xb.contiguous(memory_format=memory_format)
            lr = lr_at(step, total_steps, base_lr, schedule)
            set_lr(optimizer, lr)
            due = [p for p in probes if p.due(step)]
            rng = rng_state(model) if due else None  # what this forward draws, replayed by the probes'
            with autocast():
                logits = forward(xb)
                loss = F.cross_entropy(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if due:  # probe rows are labelled with the updates done so far: step t measures w_t
                ctx = ProbeContext(step, step / steps_per_epoch, model, optimizer, lr, loss.detach(),
                                   partial(batch_loss, xb, yb, rng), autocast)
                run_probes(due, "before_update", ctx, probe_metrics)
            optimizer.step()
            if due:
                run_probes(due, "after_update", ctx, probe_metrics)
            step += 1
            step_dev += 1
            lv = loss.detach()
            new_bad = (~torch.isfinite(lv) | (lv > trainer.diverge_loss)) & (bad_step < 0)
            bad_step.copy_(torch.where(new_bad, step_dev, bad_step))
            bad_loss.copy_(torch.where(new_bad, lv, bad_loss))
            # the flag is read every check_every steps and before anything is logged or saved
            due_log = step % trainer.log_every == 0 or step == total_steps
            due_eval = trainer.eval_every is not None and step % trainer.eval_every == 0
            due_ckpt = bool(trainer.checkpoint_every) and step % trainer.checkpoint_every == 0
            if (step % check_every == 0 or due_log or due_eval or due_ckpt or i + 1 == steps_per_epoch) \
                    and diverged():
                break
            loss_sum += loss.detach()
            correct_sum += (logits.argmax(1) == yb).sum()
            seen += 1

            now = time.perf_counter()
            if step > THROUGHPUT_WARMUP_STEPS + (resume["step"] if resume else 0):
                thru_images += len(xb)
                thru_time += now - t_last
            t_last = now
            bar.update(1)

            if due_log:
                train_loss = loss_sum.item() / seen
                train_acc = correct_sum.item() / (seen * batch_size)
                metrics.log(step, step / steps_per_epoch, {"train/loss": train_loss, "train/acc": train_acc, "train/lr": lr})
                res.final_train_loss = train_loss
                loss_sum.zero_(); correct_sum.zero_(); seen = 0
                bar.set_postfix(loss=f"{train_loss:.3f}", acc=f"{train_acc:.3f}", lr=f"{lr:.3g}")
                if not show_bar:
                    log.info(f"step {step}/{total_steps} train/loss {train_loss:.4f} train/acc {train_acc:.4f} lr {lr:.4g}")
            if due_eval:
                run_eval(step)
                t_last = time.perf_counter()  # evaluation is not training time
            if step >= total_steps:
                break
            if due_ckpt and i + 1 < steps_per_epoch:
                save_checkpoint(epoch_state, i + 1)
                t_last = time.perf_counter()
        skip_batches = 0
        # end of an epoch (or of the run)
        if res.status == "completed":
            if last_eval_step != step and (trainer.eval_every is None or step == total_steps):
                run_eval(step)
            save_checkpoint(generator.get_state(), 0)
    bar.close()
    res.steps = step
    res.epochs = step / steps_per_epoch
    res.train_images_per_s = thru_images / thru_time if thru_time > 0 else None
    return res
