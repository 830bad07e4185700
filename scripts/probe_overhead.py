"""What the probes cost: ResNet-20 BN training throughput with probes=none, the default
set, and each costly probe alone at its probes=all cadence, alternating in one process.

    python scripts/probe_overhead.py [--steps 401] [--batch-size 128] [--reps 2] [--device auto]

Synthetic data, no evaluation until the end, no checkpoints. Throughput is the loop's own
steady-state images/s (summary.json's train_images_per_s: steps after the first 3), so with
--steps 401 the measured window holds 4 events of a 100-step cadence (t = 100 ... 400).
Targets: default <= 10% slower than none; ics, landscape <= 25% each.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir

from bnstudy.cli import CONF_DIR
from bnstudy.config import register_configs, to_config
from bnstudy.run import run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=401)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    register_configs()
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        every = to_config(compose("config", overrides=["probes=all"])).probes
        variants = {
            "none": ["probes=none"],
            "default": ["probes=default"],
            f"ics (every {every.ics.every})": ["probes=none", f"probes.ics.every={every.ics.every}"],
            f"landscape (every {every.landscape.every})": ["probes=none", f"probes.landscape.every={every.landscape.every}"],
        }
        common = ["model=resnet20", "norm=bn", "data=synthetic", "data.train_subset=null", "data.test_subset=null",
                  "data.synthetic_train_size=5000", "data.synthetic_test_size=500",
                  f"data.batch_size={args.batch_size}", f"trainer.max_steps={args.steps}", "trainer.epochs=1000",
                  f"trainer.eval_every={10 ** 9}", "trainer.checkpoint=false", f"trainer.log_every={args.steps}",
                  "trainer.progress=false", f"device={args.device}", "seed=0"]
        cfgs = {name: to_config(compose("config", overrides=common + ov)) for name, ov in variants.items()}

    speeds: dict[str, list[float]] = {name: [] for name in variants}
    device = ""
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for name, cfg in cfgs.items():  # alternating, so drifts in machine load hit every variant
                summary = run(cfg, Path(tmp) / f"{rep}-{len(speeds[name])}-{name.split()[0]}")
                if summary["status"] != "completed":
                    sys.exit(f"{name}: run {summary['status']}: {summary.get('error')}")
                speeds[name].append(summary["train_images_per_s"])
                device = summary["device_name"]
                print(f"rep {rep} {name:<22} {speeds[name][-1]:8.1f} images/s", flush=True)

    base = statistics.median(speeds["none"])
    print(f"\nResNet-20 BN, batch {args.batch_size}, {args.steps} steps, {args.reps} reps, on {device}")
    print(f"{'probes':<24}{'images/s (median)':>18}{'ratio to none':>15}{'overhead':>10}   per rep")
    for name, v in speeds.items():
        med = statistics.median(v)
        print(f"{name:<24}{med:>18.1f}{med / base:>15.3f}{(base / med - 1) * 100:>9.1f}%   "
              + " ".join(f"{x:.1f}" for x in v))


if __name__ == "__main__":
    main()
