"""What the probes cost: ResNet-20 BN training throughput with probes=none, the default
set, and each costly probe alone at its probes=all cadence, alternating in one process.

    python scripts/probe_overhead.py [--steps 201] [--batch-size 128] [--reps 4] [--device auto]

Synthetic data, no evaluation or checkpoint inside the timed loop. Two measures per run:
  images/s    the loop's steady-state throughput (TrainResult.train_images_per_s: steps
              after the first 3; with --steps 201 the window holds t = 100 and 200 of a
              100-step cadence). Overhead = none's images/s / this one's - 1, medians over
              reps. On a shared machine the load drifts: the second measure is steadier.
  probe time  seconds spent inside the probes' hooks in that window / the rest of the
              window's time: the overhead as measured within the same run.
Targets: default <= 10%; ics and landscape <= 25% each.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from bnstudy.config import CONF_DIR
from bnstudy.config import Config, register_configs
from bnstudy.validation import to_config
from bnstudy.data import load_data
from bnstudy.nets.resnet import build_model
from bnstudy.optim import build_optimizer, peak_lr
from bnstudy.outputs import MetricsLog, device_name
from bnstudy.probes import Probe, ProbeContext, build_probes
from bnstudy.run import resolve_device
from bnstudy.train import THROUGHPUT_WARMUP_STEPS, train
from bnstudy.nets.init import init_weights


class Timed(Probe):
    """A probe's hooks, timed inside the throughput window (evaluation hooks are outside it)."""

    def __init__(self, probe: Probe, device: torch.device):
        self.probe, self.every, self.device, self.seconds = probe, probe.every, device, 0.0

    def due(self, step: int) -> bool:
        return self.probe.due(step)

    def _timed(self, hook: str, ctx: ProbeContext):
        t = time.perf_counter()
        rows = getattr(self.probe, hook)(ctx)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if ctx.step >= THROUGHPUT_WARMUP_STEPS:
            self.seconds += time.perf_counter() - t
        return rows

    def before_update(self, ctx):
        return self._timed("before_update", ctx)

    def after_update(self, ctx):
        return self._timed("after_update", ctx)

    def on_eval(self, ctx):
        return self.probe.on_eval(ctx)


def one_run(cfg: Config, data, device: torch.device, folder: Path) -> tuple[float, float]:
    """(images/s, probe seconds / other seconds) of one training run."""
    torch.manual_seed(cfg.seed)
    model = init_weights(build_model(cfg.model, cfg.norm), cfg.init).to(device)
    lr = peak_lr(cfg.optim, cfg.data.batch_size)
    optimizer = build_optimizer(model, cfg.optim, lr)
    probes = [Timed(p, device) for p in build_probes(cfg.probes, model, data.x_test, data.y_test,
                                                     cfg.data.eval_batch_size)]
    folder.mkdir(parents=True)
    with MetricsLog(folder / "metrics.csv") as metrics, MetricsLog(folder / "probes.csv") as probe_metrics:
        res = train(model, data, optimizer, trainer=cfg.trainer, schedule=cfg.schedule, base_lr=lr,
                    batch_size=cfg.data.batch_size, eval_batch_size=cfg.data.eval_batch_size,
                    augment=cfg.data.augment, seed=cfg.seed, metrics=metrics, checkpoint_path=None,
                    probes=probes, probe_metrics=probe_metrics)
    window = (res.steps - THROUGHPUT_WARMUP_STEPS) * cfg.data.batch_size / res.train_images_per_s
    probe_s = sum(p.seconds for p in probes)
    return res.train_images_per_s, probe_s / (window - probe_s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=201)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    register_configs()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        every = to_config(compose("config", overrides=["probes=all"])).probes
        variants = {
            "none": ["probes=none"],
            "default": ["probes=default"],
            f"ics (every {every.ics.every})": ["probes=none", f"probes.ics.every={every.ics.every}"],
            f"landscape (every {every.landscape.every})":
                ["probes=none", f"probes.landscape.every={every.landscape.every}"],
        }
        common = ["model=resnet20", "norm=bn", "data=synthetic", "data.train_subset=null", "data.test_subset=null",
                  "data.synthetic_train_size=5000", "data.synthetic_test_size=500",
                  f"data.batch_size={args.batch_size}", f"trainer.max_steps={args.steps}", "trainer.epochs=1000",
                  f"trainer.eval_every={10 ** 9}", "trainer.checkpoint=false", f"trainer.log_every={args.steps}",
                  "trainer.progress=false", f"device={args.device}", "seed=0"]
        cfgs = {name: to_config(compose("config", overrides=common + ov)) for name, ov in variants.items()}

    first = next(iter(cfgs.values()))
    device = resolve_device(first.device)
    data = load_data(first.data).to(device)
    speed: dict[str, list[float]] = {name: [] for name in variants}
    share: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for name, cfg in cfgs.items():  # alternating, so drifts in machine load reach every variant
                s, f = one_run(cfg, data, device, Path(tmp) / f"{rep}-{name.split()[0]}")
                speed[name].append(s)
                share[name].append(f)
                print(f"rep {rep} {name:<22} {s:8.1f} images/s  probe time {100 * f:5.1f}%", flush=True)

    base = statistics.median(speed["none"])
    print(f"\nResNet-20 BN, batch {args.batch_size}, {args.steps} steps x {args.reps} reps, "
          f"on {device_name(device)}")
    print(f"{'probes':<24}{'images/s':>10}{'ratio to none':>15}{'overhead':>10}{'probe time':>12}   images/s per rep")
    for name in variants:
        med = statistics.median(speed[name])
        print(f"{name:<24}{med:>10.1f}{med / base:>15.3f}{100 * (base / med - 1):>9.1f}%"
              f"{100 * statistics.median(share[name]):>11.1f}%   " + " ".join(f"{x:.0f}" for x in speed[name]))


if __name__ == "__main__":
    main()
