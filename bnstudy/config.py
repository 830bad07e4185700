"""Config schema: dataclasses registered with Hydra's ConfigStore, plus value checks.

The YAML files under conf/ supply values; these dataclasses say which keys exist and
their types, so a typo fails at composition. `validate` then checks what types
cannot (ranges, names, combinations) and raises ConfigError naming the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


@dataclass
class DataConfig:
    name: str = "synthetic"  # synthetic | cifar10 | cifar10_folder
    root: str = "data/cifar10"
    cache_dir: Optional[str] = None  # cifar10_folder cache; default: <root>/.bnstudy_cache
    download: bool = True
    batch_size: int = 128
    eval_batch_size: int = 1000
    train_subset: Optional[int] = None  # class-balanced, seeded; None = all
    test_subset: Optional[int] = None
    augment: bool = True  # 4-pixel padded random crop + horizontal flip
    # synthetic only
    synthetic_train_size: int = 5000
    synthetic_test_size: int = 1000
    synthetic_noise: float = 0.6


@dataclass
class ModelConfig:
    name: str = "resnet"  # resnet
    depth: int = 20  # 6n+2
    width: int = 1  # channel multiplier on (16, 32, 64)
    num_classes: int = 10


@dataclass
class NormConfig:
    name: str = "bn"  # bn | none | gn | ln
    eps: float = 1e-5
    momentum: float = 0.1  # bn: running-statistics momentum (torch convention)
    affine: bool = True
    groups: int = 8  # gn


@dataclass
class InitConfig:
    name: str = "default"  # default | kaiming | xavier | orthogonal | normal
    distribution: str = "normal"  # kaiming/xavier: normal | uniform
    mode: str = "fan_out"  # kaiming: fan_in | fan_out
    std: float = 0.01  # normal
    scale: float = 1.0  # multiplies every conv/linear weight after init
    zero_init_residual: bool = False  # gamma = 0 for the last norm of each block


@dataclass
class OptimConfig:
    name: str = "sgd"
    lr: float = 0.1
    lr_batch_size: int = 128  # lr is the rate at this many examples per step
    scale_lr: bool = False  # scale lr linearly to data.batch_size (Goyal et al. 2017)
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    decay_norm_and_bias: bool = True  # false: no weight decay on norm and bias params


@dataclass
class ScheduleConfig:
    name: str = "cosine"  # constant | step | cosine
    warmup_steps: int = 0  # linear warmup from 0
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # step: fractions of the run
    gamma: float = 0.1  # step: factor at each milestone
    final_lr_fraction: float = 0.0  # cosine: lr at the end / peak lr


@dataclass
class TrainerConfig:
    epochs: int = 1
    max_steps: Optional[int] = None  # stop after this many steps
    log_every: int = 10
    eval_every: Optional[int] = None  # steps; None = every epoch
    diverge_loss: float = 1e3  # a loss above this (or non-finite) ends the run as diverged
    acc_thresholds: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.7, 0.8, 0.9])
    checkpoint: bool = True
    channels_last: bool = False  # GPU option
    bf16: bool = False  # GPU option: bf16 autocast
    progress: Optional[bool] = None  # tqdm bar; None = when stderr is a terminal


@dataclass
class ScaleConfig:
    name: str = "smoke"  # smoke | cpu | full
    seeds: str = "0"  # the seeds a study sweeps at this scale (a Hydra sweep value: "0,1,2")


@dataclass
class Config:
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    norm: NormConfig = MISSING
    init: InitConfig = MISSING
    optim: OptimConfig = MISSING
    schedule: ScheduleConfig = MISSING
    trainer: TrainerConfig = MISSING
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    study: str = "run"  # the named study this run belongs to (set by conf/exp/*)


GROUP_SCHEMAS = {
    "data": DataConfig,
    "model": ModelConfig,
    "norm": NormConfig,
    "init": InitConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "trainer": TrainerConfig,
}


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for group, schema in GROUP_SCHEMAS.items():
        cs.store(group=group, name=f"base_{group}", node=schema)


class ConfigError(ValueError):
    """A config value that is not allowed; the message is one line naming the key."""

    def __init__(self, key: str, value: Any, allowed: str):
        super().__init__(f"{key}={value!r} is not allowed: {allowed}")
        self.key = key


ALLOWED = {
    "data.name": ("synthetic", "cifar10", "cifar10_folder"),
    "model.name": ("resnet",),
    "norm.name": ("bn", "none", "gn", "ln"),
    "init.name": ("default", "kaiming", "xavier", "orthogonal", "normal"),
    "init.distribution": ("normal", "uniform"),
    "init.mode": ("fan_in", "fan_out"),
    "optim.name": ("sgd",),
    "schedule.name": ("constant", "step", "cosine"),
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

    def positive(key: str, allow_none: bool = False, strict: bool = True) -> None:
        value = _get(cfg, key)
        if value is None and allow_none:
            return
        if value is None or (value <= 0 if strict else value < 0):
            raise ConfigError(key, value, "must be > 0" if strict else "must be >= 0")

    for key in ("data.batch_size", "data.eval_batch_size", "optim.lr", "optim.lr_batch_size",
                "norm.eps", "init.scale", "init.std", "trainer.epochs", "trainer.log_every",
                "trainer.diverge_loss", "model.width", "model.num_classes",
                "data.synthetic_train_size", "data.synthetic_test_size"):
        positive(key)
    for key in ("data.train_subset", "data.test_subset", "trainer.max_steps", "trainer.eval_every"):
        positive(key, allow_none=True)
    for key in ("optim.weight_decay", "optim.momentum", "schedule.warmup_steps",
                "data.synthetic_noise", "schedule.final_lr_fraction"):
        positive(key, strict=False)

    if not 0.0 <= cfg.norm.momentum <= 1.0:
        raise ConfigError("norm.momentum", cfg.norm.momentum, "must be in [0, 1]")
    if cfg.model.depth < 8 or (cfg.model.depth - 2) % 6 != 0:
        raise ConfigError("model.depth", cfg.model.depth, "must be 6n+2 with n >= 1 (20, 32, 44, 56, 110, ...)")
    if cfg.norm.name == "gn" and any((16 * cfg.model.width * k) % cfg.norm.groups for k in (1, 2, 4)):
        raise ConfigError("norm.groups", cfg.norm.groups,
                          f"must divide every stage's channels ({16 * cfg.model.width}, "
                          f"{32 * cfg.model.width}, {64 * cfg.model.width})")
    if cfg.optim.nesterov and cfg.optim.momentum == 0:
        raise ConfigError("optim.nesterov", True, "needs optim.momentum > 0")
    if any(not 0 < m < 1 for m in cfg.schedule.milestones) or list(cfg.schedule.milestones) != sorted(cfg.schedule.milestones):
        raise ConfigError("schedule.milestones", list(cfg.schedule.milestones),
                          "increasing fractions of the run, each in (0, 1)")
    if any(not 0 < t <= 1 for t in cfg.trainer.acc_thresholds):
        raise ConfigError("trainer.acc_thresholds", list(cfg.trainer.acc_thresholds), "accuracies in (0, 1]")
    if cfg.scale.name not in ("smoke", "cpu", "full"):
        raise ConfigError("scale.name", cfg.scale.name, "one of smoke, cpu, full")
    if not (cfg.device in ("auto", "cpu", "cuda", "mps") or cfg.device.startswith("cuda:")):
        raise ConfigError("device", cfg.device, "one of auto, cpu, cuda, cuda:N, mps")
    return cfg


def to_config(cfg: DictConfig) -> Config:
    """Hydra's composed DictConfig -> a validated Config dataclass."""
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, Config)
    return validate(obj)
