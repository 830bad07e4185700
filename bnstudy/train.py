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
from typing import Callable, Optional, Sequence

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
from .probes.base import Probe, ProbeContext, RngState, module_generators, replayed_rng, rng_state, run_probes

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
    # seconds inside train() over every start of the run: an earlier start's up to its last checkpoint
    train_wall_s: float = 0.0


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
                "modules": {k: g.get_state() for k, g in module_generators(model).items()}},
        "step_in_epoch": step_in_epoch,
        "result": dataclasses.asdict(result),
        "accum": accum,
        "rows": rows,
    }
    if torch.cuda.is_available():
        state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _run_length(trainer: TrainerConfig, n_train: int, batch_size: int) -> tuple[int, int]:
    """(steps an epoch, steps of the run): trainer.epochs, cut to trainer.max_steps."""
    steps_per_epoch = n_train // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"data.batch_size={batch_size} is larger than the training set ({n_train})")
    total_steps = trainer.epochs * steps_per_epoch
    if trainer.max_steps is not None:
        if trainer.max_steps > total_steps:  # a silent cap once hid a study's budget
            log.warning(f"trainer.max_steps={trainer.max_steps} is more than trainer.epochs={trainer.epochs} x "
                        f"{steps_per_epoch} steps an epoch: the run stops at step {total_steps}")
        total_steps = min(total_steps, trainer.max_steps)
    return steps_per_epoch, total_steps


class _Throughput:
    """Training images a second, steady state: steps after `from_step` only, and the clock
    restarted after anything that is not training (an evaluation, a checkpoint, an epoch's start)."""

    def __init__(self, from_step: int):
        self.from_step, self.images, self.seconds, self.t_last = from_step, 0, 0.0, time.perf_counter()

    def restart(self) -> None:
        self.t_last = time.perf_counter()

    def tick(self, step: int, images: int) -> None:
        now = time.perf_counter()
        if step > self.from_step:
            self.images += images
            self.seconds += now - self.t_last
        self.t_last = now

    def rate(self) -> Optional[float]:
        return self.images / self.seconds if self.seconds > 0 else None


@dataclass
class _Loop:
    """What the phases of train()'s loop share: the run's fixed parts and its running state."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    data: TensorData
    trainer: TrainerConfig
    metrics: MetricsLog
    probe_metrics: Optional[MetricsLog]
    probes: Sequence[Probe]
    autocast: Callable
    steps_per_epoch: int
    total_steps: int
    eval_batch_size: int
    batch_size: int
    show_bar: bool
    save: Optional[Callable[..., None]]  # writes a checkpoint_state(); None: no checkpoints
    res: Optional[TrainResult] = None
    step: int = 0
    last_eval_step: int = -1
    seen: int = 0  # batches summed into loss_sum and correct_sum since the last train/ row
    started: float = field(default_factory=time.perf_counter)  # this start's

    def __post_init__(self) -> None:
        self.res = self.res or TrainResult(status="completed", steps=0, epochs=0.0,
                                           steps_to_test_acc={f"{t:g}": None for t in self.trainer.acc_thresholds})
        device = self.data.x_train.device
        self.loss_sum = torch.zeros((), device=device)
        self.correct_sum = torch.zeros((), device=device, dtype=torch.int64)
        # divergence, tracked on the device: the step of the first bad loss (-1: none yet) and its value
        self.step_dev = torch.zeros((), device=device, dtype=torch.int64)
        self.bad_step = torch.full((), -1, device=device, dtype=torch.int64)
        self.bad_loss = torch.zeros((), device=device)
        # a fixed slice of the training set, evaluated like the test set: the regularization study's gap
        n = min(len(self.data.x_train), len(self.data.x_test), TRAIN_EVAL_IMAGES)
        self.train_eval = self.data.x_train[:n], self.data.y_train[:n]

    @property
    def epoch(self) -> float:
        return self.step / self.steps_per_epoch

    def wall(self) -> float:
        """TrainResult.train_wall_s now."""
        return time.perf_counter() - self.started

    def restore(self, resume: dict, generator: torch.Generator) -> int:
        """Continue from a checkpoint_state(); returns the batches of its epoch already trained on."""
        self.step, self.res = resume["step"], TrainResult(**resume["result"])
        self.started -= self.res.train_wall_s  # the earlier starts' seconds count on
        self.loss_sum += resume["accum"]["loss_sum"].to(self.loss_sum.device)
        self.correct_sum += resume["accum"]["correct_sum"].to(self.correct_sum.device)
        self.seen, self.last_eval_step = resume["accum"]["seen"], resume["accum"]["last_eval_step"]
        torch.set_rng_state(resume["rng"]["torch"])
        if "cuda" in resume["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(resume["rng"]["cuda"])
        for name, g in module_generators(self.model).items():
            g.set_state(resume["rng"]["modules"][name])
        generator.set_state(resume["rng"]["data_epoch_start"])
        self.step_dev += self.step
        return resume["step_in_epoch"]

    def batch_loss(self, xb: torch.Tensor, yb: torch.Tensor, rng: RngState) -> torch.Tensor:
        """The training forward, for probes: it draws the training forward's dropout masks and
        noisy_bn noise again (`rng`, taken before it), and leaves the run's streams untouched.
        It runs eagerly: under trainer.compile, compiled dropout draws other masks from the same state."""
        with replayed_rng(self.model, rng), self.autocast():
            return F.cross_entropy(self.model(xb).float(), yb)

    def watch(self, loss: torch.Tensor) -> None:
        """Note a bad loss of the step just taken, on the device (no host sync)."""
        self.step_dev += 1
        lv = loss.detach()
        new_bad = (~torch.isfinite(lv) | (lv > self.trainer.diverge_loss)) & (self.bad_step < 0)
        self.bad_step.copy_(torch.where(new_bad, self.step_dev, self.bad_step))
        self.bad_loss.copy_(torch.where(new_bad, lv, self.bad_loss))

    def diverged(self) -> bool:
        """One host sync: end the run as diverged if a loss since the last check was bad."""
        first = int(self.bad_step.item())
        if first < 0:
            return False
        value = self.bad_loss.item()
        self.metrics.log(first, first / self.steps_per_epoch, {"train/loss": value})
        self.res.status, self.step = "diverged", first
        self.res.message = (f"train loss {value:.4g} at step {first} "
                            f"(bound trainer.diverge_loss={self.trainer.diverge_loss:g})")
        return True

    def accumulate(self, loss: torch.Tensor, logits: torch.Tensor, yb: torch.Tensor) -> None:
        self.loss_sum += loss.detach()
        self.correct_sum += (logits.argmax(1) == yb).sum()
        self.seen += 1

    def log_train(self, lr: float, bar: tqdm) -> None:
        """A train/ row: the mean loss and accuracy of the batches since the last one."""
        train_loss = self.loss_sum.item() / self.seen
        train_acc = self.correct_sum.item() / (self.seen * self.batch_size)
        self.metrics.log(self.step, self.epoch, {"train/loss": train_loss, "train/acc": train_acc, "train/lr": lr})
        self.res.final_train_loss = train_loss
        self.loss_sum.zero_(), self.correct_sum.zero_()
        self.seen = 0
        bar.set_postfix(loss=f"{train_loss:.3f}", acc=f"{train_acc:.3f}", lr=f"{lr:.3g}")
        if not self.show_bar:
            log.info(f"step {self.step}/{self.total_steps} train/loss {train_loss:.4f} train/acc {train_acc:.4f} "
                     f"lr {lr:.4g}")

    def evaluate(self) -> None:
        """Test (and train-slice) loss and accuracy in eval mode, the thresholds reached, the
        probes' on_eval rows."""
        loss, acc = evaluate(self.model, self.data.x_test, self.data.y_test, self.eval_batch_size,
                             autocast=self.autocast)
        row = {"test/loss": loss, "test/acc": acc}
        if self.trainer.train_eval:
            tr_loss, tr_acc = evaluate(self.model, *self.train_eval, self.eval_batch_size, autocast=self.autocast)
            row.update({"train_eval/loss": tr_loss, "train_eval/acc": tr_acc})
            self.res.final_train_eval_acc = tr_acc
        self.metrics.log(self.step, self.epoch, row)
        self.res.final_test_acc, self.res.final_test_loss = acc, loss
        self.res.best_test_acc = max(acc, self.res.best_test_acc or 0.0)
        for t in self.trainer.acc_thresholds:
            if acc >= t and self.res.steps_to_test_acc[f"{t:g}"] is None:
                self.res.steps_to_test_acc[f"{t:g}"] = self.step
        self.last_eval_step = self.step
        run_probes(self.probes, "on_eval", ProbeContext(self.step, self.epoch, self.model, self.optimizer,
                                                        autocast=self.autocast), self.probe_metrics)
        if not self.show_bar:
            log.info(f"step {self.step}/{self.total_steps} test/loss {loss:.4f} test/acc {acc:.4f}")

    def save_checkpoint(self, epoch_state: torch.Tensor, step_in_epoch: int) -> None:
        if self.save is None:
            return
        accum = {"loss_sum": self.loss_sum.detach().cpu(), "correct_sum": self.correct_sum.detach().cpu(),
                 "seen": self.seen, "last_eval_step": self.last_eval_step}
        rows = {"metrics": self.metrics.rows, "probes": self.probe_metrics.rows if self.probe_metrics else 0}
        self.res.steps, self.res.epochs, self.res.train_wall_s = self.step, self.epoch, self.wall()
        self.save(self.model, self.optimizer, step=self.step, total_steps=self.total_steps,
                  epoch_generator_state=epoch_state, step_in_epoch=step_in_epoch, result=self.res,
                  accum=accum, rows=rows)


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
    steps_per_epoch, total_steps = _run_length(trainer, len(data.x_train), batch_size)
    precision = resolve_precision(trainer.precision, trainer.channels_last, device)  # run.py passes it resolved
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if precision.name == "bf16" else nullcontext
    memory_format = torch.channels_last if precision.channels_last else torch.preserve_format
    forward = torch.compile(model) if trainer.compile else model  # the training forward only
    check_every = trainer.check_every or (1 if device.type == "cpu" else trainer.log_every)
    save = (partial(_save_checkpoint, checkpoint_path, base_lr=base_lr, schedule=schedule)
            if checkpoint_path is not None and trainer.checkpoint else None)
    show_bar = trainer.progress if trainer.progress is not None else sys.stderr.isatty()
    run = _Loop(model, optimizer, data, trainer, metrics, probe_metrics, probes, autocast, steps_per_epoch,
                total_steps, eval_batch_size, batch_size, show_bar, save)
    generator = torch.Generator(device).manual_seed(seed)
    skip_batches = run.restore(resume, generator) if resume is not None else 0
    speed = _Throughput(from_step=THROUGHPUT_WARMUP_STEPS + run.step)
    bar = tqdm(total=total_steps, initial=run.step, disable=not show_bar, unit="step", dynamic_ncols=True, leave=False)

    model.train()
    while run.step < total_steps and run.res.status == "completed":
        epoch_state = generator.get_state()  # replayed by a resume from inside this epoch
        speed.restart()
        batches = train_batches(data.x_train, data.y_train, batch_size, generator, augment, *intensity)
        for i, (xb, yb) in enumerate(batches):
            if i < skip_batches:  # resuming: these batches were trained on before the checkpoint
                continue
            xb = xb.contiguous(memory_format=memory_format)
            lr = lr_at(run.step, total_steps, base_lr, schedule)
            set_lr(optimizer, lr)
            due = [p for p in probes if p.due(run.step)]
            rng = rng_state(model) if due else None  # what this forward draws, replayed by the probes'
            with autocast():
                logits = forward(xb)
                loss = F.cross_entropy(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if due:  # probe rows are labelled with the updates done so far: step t measures w_t
                ctx = ProbeContext(run.step, run.epoch, model, optimizer, lr, loss.detach(),
                                   partial(run.batch_loss, xb, yb, rng), autocast)
                run_probes(due, "before_update", ctx, probe_metrics)
            optimizer.step()
            if due:
                run_probes(due, "after_update", ctx, probe_metrics)
            run.step += 1
            run.watch(loss)
            # the divergence flag is read every check_every steps and before anything is logged or saved
            due_log = run.step % trainer.log_every == 0 or run.step == total_steps
            due_eval = trainer.eval_every is not None and run.step % trainer.eval_every == 0
            due_ckpt = bool(trainer.checkpoint_every) and run.step % trainer.checkpoint_every == 0
            if (run.step % check_every == 0 or due_log or due_eval or due_ckpt or i + 1 == steps_per_epoch) \
                    and run.diverged():
                break
            run.accumulate(loss, logits, yb)
            speed.tick(run.step, len(xb))
            bar.update(1)
            if due_log:
                run.log_train(lr, bar)
            if due_eval:
                run.evaluate()
                speed.restart()  # evaluation is not training time
            if run.step >= total_steps:
                break
            if due_ckpt and i + 1 < steps_per_epoch:
                run.save_checkpoint(epoch_state, i + 1)
                speed.restart()
        skip_batches = 0
        if run.res.status == "completed":  # the end of an epoch (or of the run)
            if run.last_eval_step != run.step and (trainer.eval_every is None or run.step == total_steps):
                run.evaluate()
            run.save_checkpoint(generator.get_state(), 0)
    bar.close()
    run.res.steps, run.res.epochs, run.res.train_images_per_s = run.step, run.epoch, speed.rate()
    run.res.train_wall_s = run.wall()
    return run.res


def _save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, **state) -> None:
    atomic_torch_save(checkpoint_state(model, optimizer, **state), path)
