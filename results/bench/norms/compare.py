"""Norm layers before and after a change to bnstudy/nets/norms.py, side by side in one process.

    OMP_NUM_THREADS=1 python results/bench/norms/compare.py BEFORE_COMMIT [--reps 5] [--steps 20] [--out F.json]

The bare loop of `python -m bnstudy bench` (ResNet-20, batch 128, bf16 autocast + channels_last),
round-robin over each norm with the registry as it was at BEFORE_COMMIT and as it is now, so that
ratios hold on a machine shared with other jobs. Run from the repo root.
"""
import argparse
import json
import statistics
import subprocess
import sys
import types

import torch

from bnstudy import throughput
from bnstudy.data import synthetic_cifar
from bnstudy.outputs import git_commit
from bnstudy.nets import norms


def registry_at(commit: str) -> dict:
    src = subprocess.run(["git", "show", f"{commit}:bnstudy/nets/norms.py"], capture_output=True, text=True,
                         check=True).stdout.replace("from ..config import", "from bnstudy.config import")
    module = sys.modules["norms_before"] = types.ModuleType("norms_before")
    exec(compile(src, f"{commit}:bnstudy/nets/norms.py", "exec"), module.__dict__)
    return module.NORMS


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("before")
    p.add_argument("--norms", default="bn,ghost_bn:2,ghost_bn:4,ghost_bn:16,gn,ln")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    throughput.SPEED.update(bf16=True, channels_last=True)
    device = torch.device("cpu")
    data = synthetic_cifar(5000, 1000)
    registries = {"before": registry_at(a.before), "after": dict(norms.NORMS)}
    specs = a.norms.split(",")

    def timed(spec: str, version: str):
        def run() -> float:
            norms.NORMS.clear()
            norms.NORMS.update(registries[version])
            try:
                return throughput.bare_loop(data, 128, a.steps, device, throughput.parse_norm(spec))
            finally:
                norms.NORMS.clear()
                norms.NORMS.update(registries["after"])
        return run

    print(f"before {a.before}, after: the working tree at {git_commit()}; {torch.get_num_threads()} threads; "
          f"{a.steps} steps x {a.reps} reps", flush=True)
    variants = {f"{s} {v}": timed(s, v) for s in specs for v in ("before", "after")}
    rates = throughput.round_robin(variants, a.reps, lambda s: print(s, flush=True))
    med = {k: statistics.median(v) for k, v in rates.items()}
    bn = med["bn after"]
    print("\n| norm | before, images/s | after, images/s | after / before | before / BN | after / BN |")
    print("|---|---|---|---|---|---|")
    for s in specs:
        b, f = med[f"{s} before"], med[f"{s} after"]
        print(f"| {s} | {b:.0f} | {f:.0f} | {f / b:.2f} | {b / bn:.2f} | {f / bn:.2f} |")
    if a.out:
        with open(a.out, "w") as fh:
            json.dump({"before": a.before, "after": git_commit(), "threads": torch.get_num_threads(),
                       "steps": a.steps, "reps": a.reps, "images_per_s": rates, "median_images_per_s": med}, fh,
                      indent=2)
            fh.write("\n")


if __name__ == "__main__":
    main()
