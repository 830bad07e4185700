"""Values the schema's types cannot check (bnstudy/config.py holds the schema): allowed names,
ranges, combinations. `to_config` types a composed config by the schema and validates it; a bad
value is a ConfigError whose one-line message names the key."""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .config import SCALES, Config, ProbesConfig
from .nets.norms import NORMS


class ConfigError(ValueError):
    """A config value that is not allowed; the message is one line naming the key."""

    def __init__(self, key: str, value: Any, allowed: str):
        super().__init__(f"{key}={value!r} is not allowed: {allowed}")
        self.key = key


ALLOWED = {
    "data.name": ("synthetic", "cifar10", "cifar10_folder"),
    "model.name": ("resnet", "mlp"),
    "init.name": ("default", "kaiming", "xavier", "orthogonal", "normal"),
    "init.distribution": ("normal", "uniform"),
    "init.mode": ("fan_in", "fan_out"),
    "optim.name": ("sgd",),
    "schedule.name": ("constant", "step", "cosine", "linear", "range"),
    "trainer.precision": ("auto", "fp32", "bf16"),
}


def _get(cfg: Config, key: str) -> Any:
    obj: Any = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def validate(cfg: Config) -> Config:
    """Check values that the schema's types cannot; raise ConfigError on the first bad one."""
    for key, allowed in ALLOWED.items():
        value = _get(cfg, key)
        if value not in allowed:
            raise ConfigError(key, value, "one of " + ", ".join(allowed))
    if cfg.norm.name not in NORMS:  # the registry, bnstudy/nets/norms.py
        raise ConfigError("norm.name", cfg.norm.name, "one of " + ", ".join(NORMS))

    def positive(key: str, allow_none: bool = False, strict: bool = True, allow_inf: bool = False) -> None:
        value = _get(cfg, key)
        if value is None and allow_none:
            return
        bound = "> 0" if strict else ">= 0"
        # NaN fails every comparison, so `value <= 0` alone let optim.lr=nan through to a
        # run recorded as diverged; inf is no rate, scale, eps or size either
        if value is None or math.isnan(value) or (math.isinf(value) and not allow_inf):
            raise ConfigError(key, value, f"must be a finite number {bound}" if not allow_inf else f"must be {bound}")
        if value <= 0 if strict else value < 0:
            raise ConfigError(key, value, f"must be {bound}")

    def within(key: str, low: float, high: float, high_open: bool = False) -> None:
        value = _get(cfg, key)
        if not (low <= value < high if high_open else low <= value <= high):  # False for NaN
            raise ConfigError(key, value, f"must be in [{low}, {high}{')' if high_open else ']'}")

    for key in ("data.batch_size", "data.eval_batch_size", "optim.lr", "optim.lr_batch_size",
                "norm.eps", "init.scale", "init.std", "trainer.epochs", "trainer.log_every",
                "model.width", "model.num_classes", "data.synthetic_train_size", "data.synthetic_test_size",
                "schedule.gamma", "schedule.range_decades", "evaluation.precise_bn_images"):
        positive(key)
    positive("trainer.diverge_loss", allow_inf=True)  # inf: only a non-finite loss ends the run
    for key in ("data.train_subset", "data.test_subset", "trainer.max_steps", "trainer.eval_every",
                "trainer.checkpoint_every", "trainer.check_every"):
        positive(key, allow_none=True)
    for key in ("optim.weight_decay", "optim.momentum", "schedule.warmup_steps",
                "data.synthetic_noise", "schedule.final_lr_fraction"):
        positive(key, strict=False)

    within("norm.momentum", 0, 1)
    within("schedule.warmup_fraction", 0, 1, high_open=True)
    if cfg.schedule.name == "range" and (cfg.schedule.warmup_steps or cfg.schedule.warmup_fraction):
        raise ConfigError("schedule.warmup_steps", cfg.schedule.warmup_steps,
                          "schedule=range starts low by itself: no warmup (0)")
    if cfg.trainer.tensorboard:
        if importlib.util.find_spec("tensorboard") is None:
            raise ConfigError("trainer.tensorboard", True, 'needs the tensorboard package: pip install -e ".[tb]"')
    if (cfg.norm.name == "custom") != bool(cfg.norm._target_):
        raise ConfigError("norm._target_", cfg.norm._target_, "norm=custom needs the class of your layer "
                          "(norm._target_=mypkg.MyNorm), and only norm=custom reads it")
    if cfg.norm.name == "custom":
        module, _, name = cfg.norm._target_.rpartition(".")
        try:
            if not callable(getattr(importlib.import_module(module), name)):
                raise TypeError(f"{name} is not a class")
        except (ImportError, AttributeError, TypeError, ValueError) as e:
            raise ConfigError("norm._target_", cfg.norm._target_, f"no class to import there ({e})")
    if cfg.model.name == "mlp":
        if NORMS[cfg.norm.name].build_1d is None:
            raise ConfigError("norm.name", cfg.norm.name, "model=mlp has a 1-d norm: "
                              + ", ".join(n for n, spec in NORMS.items() if spec.build_1d is not None))
        positive("model.depth")
    elif cfg.model.depth < 8 or (cfg.model.depth - 2) % 6 != 0:
        raise ConfigError("model.depth", cfg.model.depth, "must be 6n+2 with n >= 1 (20, 32, 44, 56, 110, ...)")
    if cfg.model.name == "resnet" and cfg.norm.name == "gn" and any(
            (16 * cfg.model.width * k) % cfg.norm.groups for k in (1, 2, 4)):
        raise ConfigError("norm.groups", cfg.norm.groups,
                          f"must divide every stage's channels ({16 * cfg.model.width}, "
                          f"{32 * cfg.model.width}, {64 * cfg.model.width})")
    for probe in dataclasses.fields(ProbesConfig):  # every probe's cadence, whichever probes there are
        positive(f"probes.{probe.name}.every", allow_none=True, strict=False)
    for key in ("probes.activations.batch_size", "probes.activations.hist_bins", "probes.activations.hist_range",
                "probes.sigprop.batch_size", "probes.bn.batch_size", "probes.ics.num_params"):
        positive(key)
    positive("probes.activations.channels", strict=False)
    if not cfg.probes.landscape.lr_multiples or any(not 0 < m < math.inf for m in cfg.probes.landscape.lr_multiples):
        raise ConfigError("probes.landscape.lr_multiples", list(cfg.probes.landscape.lr_multiples),
                          "a non-empty list of step sizes > 0 (multiples of the current lr)")
    for key in ("data.intensity_gain", "data.intensity_offset"):
        positive(key, strict=False)
    if any(b < 1 for b in cfg.evaluation.batch_sizes):
        raise ConfigError("evaluation.batch_sizes", list(cfg.evaluation.batch_sizes), "batch sizes >= 1")
    within("model.dropout", 0, 1, high_open=True)
    if cfg.model.name == "mlp" and cfg.init.zero_init_residual:
        raise ConfigError("init.zero_init_residual", True, "needs residual blocks (model=resnet)")
    if cfg.model.plain and cfg.model.skipinit:
        raise ConfigError("model.skipinit", True, "needs residual connections (model.plain=false)")
    if cfg.norm.ghost_batch_size < 2:
        raise ConfigError("norm.ghost_batch_size", cfg.norm.ghost_batch_size, "must be >= 2")
    if not 1 <= cfg.norm.noise_scale < math.inf:
        raise ConfigError("norm.noise_scale", cfg.norm.noise_scale, "noise_scale >= 1 and noise_shift >= 0")
    if not 0 <= cfg.norm.noise_shift < math.inf:
        raise ConfigError("norm.noise_shift", cfg.norm.noise_shift, "noise_scale >= 1 and noise_shift >= 0")
    if cfg.optim.nesterov and cfg.optim.momentum == 0:
        raise ConfigError("optim.nesterov", True, "needs optim.momentum > 0")
    if any(not 0 < m < 1 for m in cfg.schedule.milestones) or list(cfg.schedule.milestones) != sorted(cfg.schedule.milestones):
        raise ConfigError("schedule.milestones", list(cfg.schedule.milestones),
                          "increasing fractions of the run, each in (0, 1)")
    if any(not 0 < t <= 1 for t in cfg.trainer.acc_thresholds):
        raise ConfigError("trainer.acc_thresholds", list(cfg.trainer.acc_thresholds), "accuracies in (0, 1]")
    if cfg.scale.name not in SCALES:
        raise ConfigError("scale.name", cfg.scale.name, "one of " + ", ".join(SCALES))
    if not (cfg.device in ("auto", "cpu", "cuda", "mps") or cfg.device.startswith("cuda:")):
        raise ConfigError("device", cfg.device, "one of auto, cpu, cuda, cuda:N, mps")
    return cfg


def to_config(cfg: DictConfig) -> Config:
    """Hydra's composed DictConfig -> a validated Config dataclass."""
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, Config)
    return validate(obj)
