"""One run, start to finish: build everything from a Config, train, record the outcome.

A run never raises for its own failure: it records `failed` (with the error) or
`diverged` in summary.json, so a sweep goes on. Errors that are the user's
(bad config, missing data) are raised for the CLI to print as one line.
"""
from __future__ import annotations

import dataclasses
from contextlib import nullcontext
import logging
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from .config import Config
from .data import DataError, load_data
from .nets.resnet import build_model, count_parameters
from .optim import build_optimizer, peak_lr
from .evaluation import bn_layers, inference_modes, precise_bn_accuracy, shifted_test_accuracy
from .outputs import MetricsLog, atomic_write_json, atomic_write_text, flatten, provenance, truncate_rows
from .precision import require_native, resolve as resolve_precision
from .probes import build_probes
from .runfolder import RunLock, claim, note_in_sweep
from .train import train
from .nets.init import init_weights

log = logging.getLogger("bnstudy")


class RunFolderError(RuntimeError):
    """The output folder already holds results, or cannot be written."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DataError(f"device={name!r}: no CUDA device is available here; use device=cpu or device=auto")
    return device


def run(cfg: Config, out_dir: Path) -> dict[str, Any]:
    """Train one configuration into `out_dir`; return the summary that was written.

    A finished run there is skipped (its summary returned), an interrupted one resumed
    from last.pt, a failed one started over with its files kept under attempts/
    (bnstudy/runfolder.py). Raises RunBusy if another process is working in `out_dir`, and
    ConfigError for bf16 pinned on a device that only emulates it, before touching `out_dir`.
    """
    require_native(cfg.trainer.precision, resolve_device(cfg.device), cfg.study)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunFolderError(f"cannot create the run folder {out_dir}: {e.strerror}") from None
    if cfg.sweep_list:
        try:
            note_in_sweep(out_dir, Path(cfg.sweep_list))
        except OSError as e:
            raise RunFolderError(f"cannot note this run in sweep_list={cfg.sweep_list}: {e.strerror}") from None
    config_text = OmegaConf.to_yaml(OmegaConf.structured(cfg))
    with RunLock(out_dir):
        found = claim(out_dir, config_text, rerun=cfg.rerun)
        if found.action == "skip":
            log.info(f"skipped: {out_dir} already {found.summary['status']} (rerun=true to recompute)")
            return {**found.summary, "skipped": True}
        if found.note:
            log.info(found.note)
        return _run_locked(cfg, out_dir, config_text, found.checkpoint)


def _run_locked(cfg: Config, out_dir: Path, config_text: str, resume: dict | None) -> dict[str, Any]:
    device = resolve_device(cfg.device)
    # wall_time_s counts the earlier starts of a resumed run too (their training up to the checkpoint)
    t0 = time.perf_counter() - (resume["result"].get("train_wall_s", 0.0) if resume else 0.0)
    try:
        atomic_write_text(out_dir / "config.yaml", config_text)
        summary: dict[str, Any] = {"status": "running", "steps": resume["step"] if resume else 0,
                                   "epochs": 0.0}
        summary.update(provenance(device, cfg.seed))
        atomic_write_json(out_dir / "summary.json", summary)
    except OSError as e:
        raise RunFolderError(f"cannot write to the run folder {out_dir}: {e.strerror}") from None

    torch.manual_seed(cfg.seed)
    events = None
    try:
        data = load_data(cfg.data).to(device)
    except (DataError, OSError) as e:  # the user's to fix: recorded in the run folder, then raised
        summary.update(status="failed", error=f"{type(e).__name__}: {e}", wall_time_s=time.perf_counter() - t0)
        atomic_write_json(out_dir / "summary.json", _ordered(summary))
        raise
    try:
        model = init_weights(build_model(cfg.model, cfg.norm), cfg.init).to(device)
        precision = resolve_precision(cfg.trainer.precision, cfg.trainer.channels_last, device)
        summary.update(precision.summary())
        trainer = dataclasses.replace(cfg.trainer, precision=precision.name, channels_last=precision.channels_last)
        if precision.channels_last:
            model = model.to(memory_format=torch.channels_last)
        lr = peak_lr(cfg.optim, cfg.data.batch_size)
        optimizer = build_optimizer(model, cfg.optim, lr)
        if resume is not None:
            model.load_state_dict(resume["model"])
            optimizer.load_state_dict(resume["optimizer"])
            truncate_rows(out_dir / "metrics.csv", resume["rows"]["metrics"])
            truncate_rows(out_dir / "probes.csv", resume["rows"]["probes"])
            summary["resumed_from_step"] = resume["step"]
        summary.update(n_params=count_parameters(model), n_train=len(data.x_train),
                       n_test=len(data.x_test), peak_lr=lr)
        arm = cfg.norm.name + (" + SkipInit" if cfg.model.skipinit else "")
        log.info(f"{cfg.model.name}-{cfg.model.depth} norm={arm} lr={lr:g} "
                 f"batch={cfg.data.batch_size} seed={cfg.seed} on {device} -> {out_dir}"
                 + (f" (resuming at step {resume['step']})" if resume else ""))
        probes = build_probes(cfg.probes, model, data.x_test, data.y_test, cfg.data.eval_batch_size)
        intensity = ((cfg.data.intensity_gain, cfg.data.intensity_offset, cfg.data.intensity_per_image)
                     if cfg.data.intensity_shift else (0.0, 0.0))
        events = _event_log(cfg, out_dir, resume)
        tee = events.rows if events else None
        with MetricsLog(out_dir / "metrics.csv", tee) as metrics, MetricsLog(out_dir / "probes.csv", tee) as probe_metrics:
            result = train(model, data, optimizer, trainer=trainer, schedule=cfg.schedule,
                           base_lr=lr, batch_size=cfg.data.batch_size,
                           eval_batch_size=cfg.data.eval_batch_size, augment=cfg.data.augment,
                           seed=cfg.seed, metrics=metrics, checkpoint_path=out_dir / "last.pt",
                           probes=probes, probe_metrics=probe_metrics, resume=resume,
                           intensity=intensity)
            summary.update(dataclasses.asdict(result))
            if result.status == "completed":
                after = after_training(cfg, model, data, result.final_test_acc, precision)
                metrics.log(result.steps, result.epochs, after)
                summary.update(after)
                if "test/acc_precise" in after:
                    summary["final_test_acc_precise"] = after["test/acc_precise"]
    except KeyboardInterrupt:
        summary.update(status="interrupted", wall_time_s=time.perf_counter() - t0)
        atomic_write_json(out_dir / "summary.json", _ordered(summary))
        raise
    except Exception as e:  # the run failed; record it and let the sweep go on
        summary.update(status="failed", error=f"{type(e).__name__}: {e}",
                       traceback=traceback.format_exc())
        log.error(f"run failed: {type(e).__name__}: {e}")
    summary["wall_time_s"] = time.perf_counter() - t0
    atomic_write_json(out_dir / "summary.json", _ordered(summary))
    if events is not None:  # the HParams entry: this run's config against its final accuracy
        events.hparams(flatten(OmegaConf.to_container(OmegaConf.structured(cfg))), summary)
        events.close()
    log.info(f"status={summary['status']} steps={summary.get('steps')} "
             f"final_test_acc={summary.get('final_test_acc')} "
             f"images/s={summary.get('train_images_per_s') or 0:.0f}")
    return summary


def _event_log(cfg: Config, out_dir: Path, resume: dict | None):
    """The TensorBoard event log of a run with trainer.tensorboard, else None (bnstudy/tensorboard.py)."""
    if not cfg.trainer.tensorboard:
        return None
    from .tensorboard import FOLDER, EventLog
    return EventLog(out_dir / FOLDER, cfg.probes.activations.hist_range, purge_step=resume["step"] if resume else None)


def after_training(cfg: Config, model: torch.nn.Module, data, final_test_acc: float | None = None,
                   precision=None) -> dict[str, float]:
    """The studies' measurements on the trained model (bnstudy/evaluation.py)."""
    out: dict[str, float] = {}
    bf16 = precision is not None and precision.name == "bf16"
    autocast = (lambda: torch.autocast(next(model.parameters()).device.type, dtype=torch.bfloat16)) if bf16 \
        else nullcontext
    # precise BN over training batches augmented as the run's were (a seed of its own, fixed per run)
    augment_seed = cfg.seed if cfg.data.augment and cfg.evaluation.precise_bn_augment else None
    if cfg.evaluation.precise_bn:
        # a net without BN keeps no statistics to recompute: its accuracy is the final one
        out["test/acc_precise"] = (precise_bn_accuracy(model, data.x_test, data.y_test, data.x_train,
                                                       cfg.evaluation.precise_bn_images, cfg.data.eval_batch_size,
                                                       autocast, augment_seed)
                                   if bn_layers(model) else final_test_acc)
    if cfg.evaluation.inference_modes:
        out.update(inference_modes(model, data.x_test, data.y_test, data.x_train,
                                   list(cfg.evaluation.batch_sizes), cfg.evaluation.precise_bn_images,
                                   augment_seed))
    if cfg.evaluation.shifted_test:
        for key, batch_stats in (("test_shifted/acc", False), ("test_shifted/acc_batchstats", True)):
            out[key] = shifted_test_accuracy(model, data.x_test, data.y_test, cfg.data.intensity_gain,
                                             cfg.data.intensity_offset, seed=cfg.seed, batch_stats=batch_stats,
                                             per_image=cfg.data.intensity_per_image)
    return out


_FIRST = ("status", "steps", "epochs", "final_test_acc", "best_test_acc", "steps_to_test_acc",
          "wall_time_s", "train_images_per_s")


def _ordered(summary: dict[str, Any]) -> dict[str, Any]:
    return {**{k: summary[k] for k in _FIRST if k in summary},
            **{k: v for k, v in summary.items() if k not in _FIRST}}
