"""Config schema: dataclasses registered with Hydra's ConfigStore, plus value checks.

The YAML files under bnstudy/conf/ supply values; these dataclasses say which keys exist and
their types, so a typo fails at composition. `validate` then checks what types
cannot (ranges, names, combinations) and raises ConfigError naming the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

# The YAML config groups ship inside the package, so a wheel install finds them too.
CONF_DIR = Path(__file__).resolve().parent / "conf"


@dataclass
class DataConfig:
    name: str = "synthetic"  # synthetic | cifar10 | cifar10_folder
    root: str = "data/cifar10"
    cache_dir: Optional[str] = None  # cifar10_folder cache; default: <root>/.bnstudy_cache
    download: bool = True
    batch_size: int = 128
    # the test batch of train-mode (batch-statistics) evaluations; in eval mode, where the batch
    # changes nothing but speed, a CPU forwards at most evaluation.CPU_EVAL_CHUNK images at a time
    eval_batch_size: int = 1000
    train_subset: Optional[int] = None  # class-balanced, seeded; None = all
    test_subset: Optional[int] = None
    augment: bool = True  # 4-pixel padded random crop + horizontal flip
    # synthetic only
    synthetic_train_size: int = 5000
    synthetic_test_size: int = 1000
    synthetic_noise: float = 0.6
    # intensity shift (as from different scanners): with intensity_shift, each training image
    # is multiplied by a random gain in [1/(1+g), 1+g] and shifted by an offset in [-o, o]
    # (pixel range 0-1); evaluation.shifted_test uses the same ranges on test images.
    # intensity_per_image: each image draws its own gain and offset (scanners and patients
    # differ image by image); false: one draw per batch (what every run did before 2026-11-29)
    intensity_shift: bool = False
    intensity_gain: float = 0.5
    intensity_offset: float = 0.2
    intensity_per_image: bool = True


@dataclass
class ModelConfig:
    name: str = "resnet"  # resnet | mlp
    depth: int = 20  # resnet: 6n+2; mlp: number of hidden layers
    width: int = 1  # resnet: channel multiplier on (16, 32, 64); mlp: units per hidden layer
    num_classes: int = 10
    plain: bool = False  # resnet: no shortcut connections ("plain" nets of He et al. 2016)
    skipinit: bool = False  # resnet: a scalar gain, initialized at 0, on each residual branch (De & Smith 2020)
    dropout: float = 0.0  # resnet: dropout between the two convs of each block


@dataclass
class NormConfig:
    name: str = "bn"  # bn | none | gn | ln | ghost_bn | running_bn | noisy_bn | custom
    eps: float = 1e-5
    momentum: float = 0.1  # bn: running-statistics momentum (torch convention)
    affine: bool = True
    groups: int = 8  # gn
    ghost_batch_size: int = 32  # ghost_bn: examples per virtual batch (Hoffer et al. 2017)
    burn_in: int = 50  # running_bn: training steps of plain BN before it normalizes with running statistics
    noise_shift: float = 0.5  # noisy_bn: per-step channel shift ~ U(-noise_shift, noise_shift)
    noise_scale: float = 1.5  # noisy_bn: per-step channel scale ~ U(1, noise_scale)
    noise_seed: int = 0  # noisy_bn: seeds the noise stream (set to the run seed by the studies)
    # custom: your own layer, built by Hydra's instantiate as `_target_`(num_channels, **kwargs)
    _target_: str = ""  # e.g. mypkg.norms.MyNorm (importable from where you run)
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class InitConfig:
    name: str = "default"  # default | kaiming | xavier | orthogonal | normal
    distribution: str = "normal"  # kaiming/xavier: normal | uniform
    mode: str = "fan_out"  # kaiming: fan_in | fan_out
    std: float = 0.01  # normal
    scale: float = 1.0  # multiplies every conv and hidden linear weight after init (not the classifier)
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
    name: str = "cosine"  # constant | step | cosine | linear | range
    warmup_steps: int = 0  # linear warmup from 0
    warmup_fraction: float = 0.0  # or a fraction of the run's steps (the larger of the two counts)
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # step: fractions of the run
    gamma: float = 0.1  # step: factor at each milestone
    final_lr_fraction: float = 0.0  # cosine: lr at the end / peak lr
    range_decades: float = 5.0  # range: an exponential ramp from optim.lr / 10**range_decades up to optim.lr


@dataclass
class TrainerConfig:
    epochs: int = 1
    max_steps: Optional[int] = None  # stop after this many steps
    log_every: int = 10
    eval_every: Optional[int] = None  # steps; None = every epoch
    diverge_loss: float = 1e3  # a loss above this (or non-finite) ends the run as diverged
    # steps between host syncs that read the divergence flag (kept on the device meanwhile);
    # None = 1 on the CPU (a sync costs nothing there), log_every on a GPU (no sync in the step)
    check_every: Optional[int] = None
    acc_thresholds: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.7, 0.8, 0.9])
    # each evaluation also re-evaluates a fixed slice of the training set (train_eval/*: the
    # regularization study's gap); off where no claim reads it, which halves an evaluation's cost
    train_eval: bool = True
    checkpoint: bool = True  # last.pt at every epoch's end
    checkpoint_every: Optional[int] = None  # also every this many steps, inside epochs
    # fp32 | bf16 (autocast, with channels_last) | auto: bf16 where the device computes it
    # natively, else fp32 (bnstudy/precision.py). The default is fp32: bf16 was not faithful on
    # the real data under the rule fixed before its runs (results/bench/precision.md)
    precision: str = "fp32"
    channels_last: Optional[bool] = None  # None: with bf16
    compile: bool = False  # torch.compile the training forward (the model's weights are shared)
    tensorboard: bool = False  # also write TensorBoard event files into RUN_DIR/tensorboard (the tb extra)
    progress: Optional[bool] = None  # tqdm bar; None = when stderr is a terminal


@dataclass
class ActivationsProbeConfig:
    every: Optional[int] = 200  # steps; None or 0 = off
    batch_size: int = 128  # the fixed probe batch: the first batch_size test images
    hist_bins: int = 20
    hist_range: float = 5.0  # bins span [-hist_range, hist_range]; the end bins also hold the tails
    channels: int = 0  # per-unit rows (`chan/*`) for the first `channels` channels of each norm layer's input


@dataclass
class SigpropProbeConfig:
    every: Optional[int] = 200
    batch_size: int = 128


@dataclass
class GradientsProbeConfig:
    every: Optional[int] = 50


@dataclass
class BatchNormProbeConfig:
    every: Optional[int] = 200
    batch_size: int = 128
    acc_batchstats: bool = True  # at every evaluation: test accuracy with batch statistics


@dataclass
class ICSProbeConfig:
    every: Optional[int] = None
    params: list[str] = field(default_factory=list)  # parameter names; empty = num_params evenly spaced weights
    num_params: int = 4


@dataclass
class LandscapeProbeConfig:
    every: Optional[int] = None
    lr_multiples: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0])  # step sizes / current lr


@dataclass
class ProbesConfig:
    activations: ActivationsProbeConfig = field(default_factory=ActivationsProbeConfig)
    sigprop: SigpropProbeConfig = field(default_factory=SigpropProbeConfig)
    gradients: GradientsProbeConfig = field(default_factory=GradientsProbeConfig)
    bn: BatchNormProbeConfig = field(default_factory=BatchNormProbeConfig)
    ics: ICSProbeConfig = field(default_factory=ICSProbeConfig)
    landscape: LandscapeProbeConfig = field(default_factory=LandscapeProbeConfig)


@dataclass
class EvaluationConfig:
    """Measurements after training (bnstudy/evaluation.py); off unless a study asks."""
    inference_modes: bool = False  # running vs batch statistics over test batch sizes, precise BN
    batch_sizes: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64, 128, 256, 1000])
    precise_bn_images: int = 10000  # training images for the recomputed ("precise") statistics
    # at the end of a completed run, test accuracy with BN statistics recomputed over
    # precise_bn_images training images (summary: final_test_acc_precise); cheap, unlike inference_modes
    precise_bn: bool = False
    # the recomputed statistics over training batches augmented as the run's training batches are
    # (data.augment): the distribution the net trained on. false: the images as they are (the
    # harness before 2026-12-08; zero-padded crops make augmented statistics differ from them)
    precise_bn_augment: bool = True
    shifted_test: bool = False  # test accuracy under random intensity shifts (data.intensity_gain/offset)


@dataclass
class ScaleConfig:
    name: str = "smoke"  # smoke | cpu | medium | full
    seeds: str = "0"  # the seeds a study sweeps at this scale (a Hydra sweep value: "0,1,2")
    # the seeds that choose each arm's rate where a study selects before it measures (medium);
    # disjoint from `seeds`, so the measuring seeds chose nothing
    selection_seeds: str = ""  # none but at medium (scale/medium.yaml)


@dataclass
class Config:
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    norm: NormConfig = MISSING
    init: InitConfig = MISSING
    optim: OptimConfig = MISSING
    schedule: ScheduleConfig = MISSING
    trainer: TrainerConfig = MISSING
    probes: ProbesConfig = field(default_factory=ProbesConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    study: str = "run"  # the named study this run belongs to (set by bnstudy/conf/exp/*)
    rerun: bool = False  # recompute a finished run (its earlier files move to attempts/)
    # a folder where each run of this sweep notes its run folder's name (an empty file named after
    # it), so a report can read this sweep's grid alone (bnstudy reproduce sets it)
    sweep_list: Optional[str] = None


# The keys that say where or how a run executes and is kept, not what it computes: two runs
# that differ only in these are the same experiment. Run folders resume across them
# (runfolder.same_config), the report counts such runs once (analysis/results.experiment_columns),
# and a sweep's run folders are not named by them (conf/config.yaml's exclude_keys, with the
# groups a sweep folder is named by; tests/test_config.py checks that list against this one).
NOT_THE_EXPERIMENT = (
    "data.root", "data.cache_dir", "data.download", "device", "rerun", "sweep_list",
    "scale.seeds", "scale.selection_seeds",  # which seeds a sweep runs; a run's own is `seed`
    "trainer.progress", "trainer.tensorboard", "trainer.checkpoint", "trainer.checkpoint_every",
    "trainer.check_every",  # how often the loop reads its divergence flag, not what it trains
)


GROUP_SCHEMAS = {
    "data": DataConfig,
    "model": ModelConfig,
    "norm": NormConfig,
    "init": InitConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "trainer": TrainerConfig,
    "probes": ProbesConfig,
}


SCALES = ("smoke", "cpu", "medium", "full")  # the files of conf/scale/
_NO_VALUE = object()


def _by_scale(smoke: Any, cpu: Any, full: Any, medium: Any = _NO_VALUE, *, _root_: DictConfig) -> Any:
    """`${by_scale:SMOKE,CPU,FULL[,MEDIUM]}` in a study file: the value for the run's scale. A study
    that gives no MEDIUM value has no medium protocol, and says so at composition."""
    name = _root_.scale.name
    if name == "medium" and medium is _NO_VALUE:
        raise ValueError(f"study {_root_.study!r} has no scale=medium protocol (scales: smoke, cpu, full)")
    return {"smoke": smoke, "cpu": cpu, "full": full, "medium": medium}[name]


def _by_model(mlp: Any, resnet: Any, *, _root_: DictConfig) -> Any:
    """`${by_model:MLP,RESNET}` in a study file: the value for the run's model.name, for a study
    that sweeps both nets but trains each its own way (covariate_shift)."""
    return {"mlp": mlp, "resnet": resnet}[_root_.model.name]


def _by_arm(bn: Any, none: Any, skipinit: Any, *, _root_: DictConfig) -> Any:
    """`${by_arm:BN,NONE,SKIPINIT}` in a study file: the value for the run's arm, norm=bn,
    norm=none or norm=skipinit (none with model.skipinit), for a study that gives each arm a
    setting of its own rather than a grid (steps_to_target: each arm's own learning rate)."""
    if _root_.model.get("skipinit"):
        if _root_.norm.name != "none":
            raise ValueError(f"by_arm: norm={_root_.norm.name} with model.skipinit is no arm here (arms: bn, none, "
                             "skipinit)")
        return skipinit
    arms = {"bn": bn, "none": none}
    if _root_.norm.name not in arms:
        raise ValueError(f"by_arm: norm={_root_.norm.name} has no value here (arms: bn, none, skipinit)")
    return arms[_root_.norm.name]


def _run_dirname(overrides: str, max_len: int = 120) -> str:
    """`${run_dirname:${hydra.job.override_dirname}}`: a run's folder name from its overrides,
    shortened with a hash of the whole when long (file names stop at 255 bytes)."""
    import hashlib

    name = overrides or "defaults"
    if len(name) <= max_len:
        return name
    return f"{name[:max_len - 13]}~{hashlib.sha1(name.encode()).hexdigest()[:12]}"


def register_configs() -> None:
    OmegaConf.register_new_resolver("by_scale", _by_scale, replace=True)
    OmegaConf.register_new_resolver("by_model", _by_model, replace=True)
    OmegaConf.register_new_resolver("by_arm", _by_arm, replace=True)
    OmegaConf.register_new_resolver("run_dirname", _run_dirname, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for group, schema in GROUP_SCHEMAS.items():
        cs.store(group=group, name=f"base_{group}", node=schema)
