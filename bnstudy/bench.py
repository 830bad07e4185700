"""`python -m bnstudy bench`: training throughput against its ceilings, measured side by side.

Variants, alternated round-robin in one process with the same model, batch and optimizer:
  (a) bare:      a bare PyTorch loop over pre-normalized in-memory tensors (the ceiling);
  (b) harness:   bnstudy's train() with default logging, probes off;
  (c) probes:    bnstudy's train() with the default probes, timed over one whole probe
                 period (the least common multiple of their cadences, 200 steps) so that
                 every probe's cost is in the figure at its real rate;
  (d) classic:   the recipe users write instead: a CIFAR10-style Dataset of PIL images
                 with per-sample torchvision transforms in a DataLoader (2 workers);
  (e) tensorboard (with --tensorboard): (c) with trainer.tensorboard's event files beside.
Also: time per run vs steps (linearity), probe cost at two data set sizes, the
image-folder cache (first load vs cached load), peak memory of a full-size run, and the
classic recipe's loader alone (what its per-sample pipeline can deliver without the model).
Prints a table and writes the same as JSON.

`--norms bn,ghost_bn:2,gn` instead times only the bare loop with each norm layer, round-robin
(results/bench/norms/); `--tensorboard-replay RUN_DIR` times only the event files of a finished
run; `--eval-chunks 125,250,500,1000` times only eval-mode evaluation at each chunk size
(evaluation.CPU_EVAL_CHUNK). The timed loops themselves are in bnstudy/throughput.py.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from . import throughput
from .data import synthetic_cifar
from .outputs import git_commit
from .throughput import (round_robin, bare_loop, classic_loader_only, classic_loop, harness, norm_variants,
                         precision_variants, probe_period)


def _cache_timing(folder: str | None, say) -> dict:
    """First load (decode + cache write) vs second load (cache) of an image folder."""
    from .data import image_folder_cifar

    with tempfile.TemporaryDirectory() as tmp:
        if folder is None:  # a small folder of PNGs written here
            from PIL import Image

            d = synthetic_cifar(2000, 500)
            folder = os.path.join(tmp, "folder")
            for split, x, y in (("train", d.x_train, d.y_train), ("test", d.x_test, d.y_test)):
                for i in range(len(x)):
                    p = Path(folder, split, f"c{int(y[i])}")
                    p.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(x[i].permute(1, 2, 0).numpy()).save(p / f"{i}.png")
        cache = os.path.join(tmp, "cache")
        t0 = time.perf_counter()
        d1 = image_folder_cifar(folder, cache)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        image_folder_cifar(folder, cache)
        second = time.perf_counter() - t0
    n = len(d1.x_train) + len(d1.x_test)
    say(f"  image folder of {n} images: first load {first:.2f} s, cached {second:.2f} s ({first / second:.0f}x)")
    return {"images": n, "folder": folder, "first_load_s": first, "cached_load_s": second,
            "speedup": first / second}


_MEMORY_CHILD = """
import resource, sys, torch, tempfile
from pathlib import Path
from bnstudy.config import TrainerConfig, ScheduleConfig, OptimConfig, ModelConfig, NormConfig, ProbesConfig
from bnstudy.data import image_folder_cifar, synthetic_cifar
from bnstudy.nets.resnet import build_model
from bnstudy.optim import build_optimizer
from bnstudy.outputs import MetricsLog
from bnstudy.probes import build_probes
from bnstudy.train import train
torch.manual_seed(0)
root = sys.argv[1] if len(sys.argv) > 1 else None
data = image_folder_cifar(root) if root else synthetic_cifar(50000, 10000)  # full CIFAR-10, or its shape
model = build_model(ModelConfig(), NormConfig(name="bn"))
opt = build_optimizer(model, OptimConfig(), 0.1)
probes = build_probes(ProbesConfig(), model, data.x_test, data.y_test, 1000)
with tempfile.TemporaryDirectory() as t, MetricsLog(Path(t) / "m.csv") as m, MetricsLog(Path(t) / "p.csv") as p:
    train(model, data, opt, trainer=TrainerConfig(max_steps=20, log_every=10, eval_every=20, progress=False,
          checkpoint=False), schedule=ScheduleConfig(), base_lr=0.1, batch_size=128, eval_batch_size=1000,
          augment=True, seed=0, metrics=m, probes=probes, probe_metrics=p)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def _peak_memory_mb(data_root: str | None) -> float:
    out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD] + ([data_root] if data_root else []),
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bnstudy bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20, help="timed steps per variant and repetition")
    p.add_argument("--reps", type=int, default=3, help="round-robin repetitions")
    p.add_argument("--probe-steps", type=int, default=None,
                   help="timed steps of the probes variant (default: one whole probe period)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--device", default="auto")
    p.add_argument("--data-root", default=None, help="an image folder (e.g. ../shared/data/cifar10-jpeg) for the cache timing")
    p.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    p.add_argument("--channels-last", action="store_true", help="GPU option, for every variant")
    p.add_argument("--bf16", action="store_true", help="GPU option: bf16 autocast, for every variant")
    p.add_argument("--compile", action="store_true", help="torch.compile the training forward, every variant")
    p.add_argument("--quick", action="store_true", help="skip the scaling, cache and memory checks")
    p.add_argument("--tensorboard", action="store_true",
                   help="also time the probes variant with TensorBoard event files (needs the tb extra)")
    p.add_argument("--precisions", action="store_true",
                   help="also the bare loop and the harness in fp32, channels_last, bf16 and bf16 + channels_last")
    p.add_argument("--norms", default=None,
                   help="only the bare loop with each of these norms, e.g. bn,ghost_bn:2,gn (ghost_bn:SIZE, gn:GROUPS)")
    p.add_argument("--tensorboard-replay", type=Path, default=None, metavar="RUN_DIR",
                   help="only: write a finished run's rows to event files as trainer.tensorboard would have, "
                        "timed, against the run's own wall time")
    p.add_argument("--eval-chunks", default=None, metavar="SIZES",
                   help="only: eval-mode evaluation of the test images at each chunk size, e.g. 125,250,500,1000, "
                        "in fp32 and bf16 + channels_last")
    p.add_argument("--test-images", type=int, default=2000, help="test images for --eval-chunks")
    a = p.parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device)
    say = lambda s: print(s, flush=True)  # noqa: E731
    throughput.SPEED.update(channels_last=a.channels_last, bf16=a.bf16, compile=a.compile)
    if a.norms:
        return _norms_main(a, device, say)
    if a.eval_chunks:
        return _eval_chunks_main(a, device, say)
    if a.tensorboard_replay:
        result = tensorboard_replay(a.tensorboard_replay, say)
        _write(result, a.out, say)
        return result
    period = a.probe_steps or probe_period()
    say(f"bnstudy bench: ResNet-20 BN, batch {a.batch}, {a.steps} steps x {a.reps} reps ({period} for the "
        f"probes variant: one probe period), on {device} ({torch.get_num_threads()} threads)")
    # enough images that no variant's timed steps cross an epoch (the classic loader stops there)
    data = synthetic_cifar(max(5000, a.batch * 40, a.batch * (a.steps + 4)), 1000)
    share: list[float] = []  # (e)'s seconds in the event writer over its timed seconds, a repetition each
    rates = round_robin({
        "bare": lambda: bare_loop(data, a.batch, a.steps, device),
        "harness": lambda: harness(data, a.batch, a.steps, device, probes=False),
        "probes": lambda: harness(data, a.batch, period, device, probes=True),
        "classic": lambda: classic_loop(data, a.batch, a.steps, device),
    } | ({"tensorboard": lambda: harness(data, a.batch, period, device, probes=True, tensorboard=True,
                                         writer_share=share)}
         if a.tensorboard else {}), a.reps, say)
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratios = {"harness/bare": med["harness"] / med["bare"], "probes/bare": med["probes"] / med["bare"],
              "harness/classic": med["harness"] / med["classic"]}
    if a.tensorboard:  # the cost of trainer.tensorboard=true, against the same run without it
        ratios["tensorboard/probes"] = med["tensorboard"] / med["probes"]
        result_tb = {"tensorboard_writer_share": share, "median_tensorboard_writer_share": statistics.median(share)}
    targets = {"harness/bare": 0.95, "probes/bare": 0.90, "harness/classic": 1.2}
    result = {"machine": _machine(device),
              "config": vars(a) | {"out": str(a.out) if a.out else None, "probe_period_steps": period},
              "images_per_s": rates, "median_images_per_s": med, "ratios": ratios, "targets": targets}
    if a.tensorboard:
        result.update(result_tb)
    if a.precisions:
        from .precision import native_bf16

        say(f"precision variants (native bf16 on this device: {native_bf16(device)}):")
        result["precision_variants"] = pv = precision_variants(data, a.batch, a.steps, a.reps, device, say)
        result["precision_variants"]["native_bf16"] = native_bf16(device)
        for k, v in pv["ratios"].items():
            say(f"  {k}: {v:.2f}" + (f" (target >= {pv['targets'][k]:g})" if k in pv["targets"] else ""))
    if not a.quick:
        say("scaling:")
        t = {}
        for k in (a.steps, 2 * a.steps, 4 * a.steps):  # whole runs: model build, training, final evaluation
            t0 = time.perf_counter()
            harness(data, a.batch, k, device, probes=False)
            t[k] = time.perf_counter() - t0
        k1, k2, k4 = t
        per_step = [(t[k2] - t[k1]) / (k2 - k1), (t[k4] - t[k2]) / (k4 - k2)]  # marginal s/step
        fixed = t[k1] - per_step[0] * k1
        result["time_vs_steps"] = {"steps": list(t), "seconds": list(t.values()),
                                   "marginal_s_per_step": per_step, "fixed_s": fixed,
                                   "marginal_ratio": per_step[1] / per_step[0]}
        say(f"  run time at {k1}/{k2}/{k4} steps: {t[k1]:.1f}/{t[k2]:.1f}/{t[k4]:.1f} s; each added step costs "
            f"{per_step[0] * 1e3:.0f} ms then {per_step[1] * 1e3:.0f} ms (x{per_step[1] / per_step[0]:.2f}: "
            f"linear when ~1), plus a fixed {fixed:.1f} s per run")
        big = synthetic_cifar(50000, 1000)
        cost = {f"{len(data.x_train) // 1000}k": {"harness": med["harness"], "probes": med["probes"],
                                                  "ratio": med["probes"] / med["harness"]}}
        b, c = harness(big, a.batch, a.steps, device, False), harness(big, a.batch, period, device, True)
        cost["50k"] = {"harness": b, "probes": c, "ratio": c / b}
        for name, v in cost.items():
            say(f"  probes/harness at {name} training images: {v['ratio']:.3f}")
        result["probe_cost_vs_data_size"] = cost
        result["image_folder_cache"] = _cache_timing(a.data_root, say)
        result["peak_memory_mb_full_size_run"] = _peak_memory_mb(a.data_root)
        result["peak_memory_data"] = a.data_root or "synthetic, CIFAR-10's shape"
        say(f"  peak memory (RSS) of a run on 50,000 + 10,000 images ({result['peak_memory_data']}) with probes: "
            f"{result['peak_memory_mb_full_size_run']:.0f} MB (target < 2048)")
        from .data import train_batches

        gen = torch.Generator(device=device).manual_seed(0)
        x_dev, y_dev = data.x_train.to(device), data.y_train.to(device)
        t0 = time.perf_counter()
        n = sum(1 for _ in train_batches(x_dev, y_dev, a.batch, gen))  # shuffle, crop, flip, normalize
        result["harness_data_ms_per_batch"] = (time.perf_counter() - t0) / n * 1e3
        say(f"  the harness's own data work (shuffle, batched crop + flip, normalize): "
            f"{result['harness_data_ms_per_batch']:.2f} ms a batch; the bare step takes "
            f"{a.batch / med['bare'] * 1e3:.0f} ms")
        loader = classic_loader_only(data, a.batch, a.steps)
        result["classic_loader_only_images_per_s"] = loader
        say(f"  the classic loader alone, no model: {loader:.0f} images/s; its per-sample work takes "
            f"{100 * med['bare'] / loader:.0f}% of the bare step's time from the same {os.cpu_count()} cores")
    say("\n| variant | images/s (median) | ratio | target |\n|---|---|---|---|")
    say(f"| (a) bare loop | {med['bare']:.0f} | 1.00 | ceiling |")
    say(f"| (b) harness | {med['harness']:.0f} | {ratios['harness/bare']:.2f} of (a) | >= 0.95 |")
    say(f"| (c) harness + default probes | {med['probes']:.0f} | {ratios['probes/bare']:.2f} of (a) | >= 0.90 |")
    say(f"| (d) classic DataLoader | {med['classic']:.0f} | (b) is {ratios['harness/classic']:.2f}x (d) | >= 1.2x |")
    if "tensorboard" in med:
        say(f"| (e) (c) + TensorBoard event files | {med['tensorboard']:.0f} | {ratios['tensorboard/probes']:.2f} of (c) | — |")
        say(f"\n(e) spent {100 * result['median_tensorboard_writer_share']:.2f}% of its timed seconds in the event "
            "writer's calls (median over repetitions; measured inside each run)")
    _write(result, a.out, say)
    return result


def _norms_main(a, device: torch.device, say) -> dict:
    specs = a.norms.split(",")
    speed = ", ".join(k for k, v in throughput.SPEED.items() if v) or "fp32"
    say(f"bnstudy bench --norms: ResNet-20 bare loop, batch {a.batch}, {speed}, {a.steps} steps x {a.reps} reps, "
        f"on {device} ({torch.get_num_threads()} threads)")
    data = synthetic_cifar(max(5000, a.batch * 8), 1000)
    nv = norm_variants(data, a.batch, a.steps, a.reps, device, specs, say)
    say(f"\n| norm | images/s (median) | / {specs[0]} |\n|---|---|---|")
    for s in specs:
        say(f"| {s} | {nv['median_images_per_s'][s]:.0f} | {nv['ratios'][f'{s} / {specs[0]}']:.2f} |")
    result = {"machine": _machine(device), "config": vars(a) | {"out": str(a.out) if a.out else None},
              "norm_variants": nv}
    _write(result, a.out, say)
    return result


def _eval_chunks_main(a, device: torch.device, say) -> dict:
    chunks = sorted(int(c) for c in a.eval_chunks.split(","))
    say(f"bnstudy bench --eval-chunks: ResNet-20 BN in eval mode, {a.test_images} test images a pass, chunks "
        f"{chunks}, {a.reps} reps, on {device} ({torch.get_num_threads()} threads)")
    data = synthetic_cifar(8, a.test_images)
    ev = throughput.eval_chunk_variants(data, chunks, a.reps, device, say)
    say(f"\n| precision | chunk | images/s (median) | / chunk {chunks[-1]} |\n|---|---|---|---|")
    for p in throughput.EVAL_PRECISIONS:
        for c in chunks:
            say(f"| {p} | {c} | {ev['median_images_per_s'][f'{p} {c}']:.0f} | "
                f"{ev['ratios'][f'{p} {c} / {p} {chunks[-1]}']:.2f} |")
    result = {"machine": _machine(device), "config": vars(a) | {"out": str(a.out) if a.out else None},
              "eval_chunk_variants": ev}
    _write(result, a.out, say)
    return result


def _machine(device: torch.device) -> dict:
    return {"device": str(device), "processor": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "commit": git_commit(), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


def tensorboard_replay(run_dir: Path, say) -> dict:
    """The cost of trainer.tensorboard=true over a whole real run, measured without the noise of
    two runs side by side: a finished run's metrics.csv and probes.csv rows go to an EventLog in
    the calls the live tee would have had (one per file and step), timed (process CPU and wall),
    against the run's own wall time (summary.json)."""
    import pandas as pd

    from .tensorboard import EventLog

    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    calls = []
    for name in ("metrics.csv", "probes.csv"):
        if (Path(run_dir) / name).exists():
            rows = pd.read_csv(Path(run_dir) / name)
            calls += [list(g.itertuples(index=False, name=None)) for _, g in rows.groupby("step", sort=True)]
    with tempfile.TemporaryDirectory() as tmp:
        cpu0, t0 = time.process_time(), time.perf_counter()
        events = EventLog(Path(tmp) / "tb")
        for rows in calls:
            events.rows(rows)
        events.close()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        size = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
    run_wall = float(summary["wall_time_s"])
    result = {"run_dir": str(run_dir), "machine": _machine(torch.device("cpu")), "calls": len(calls),
              "rows": sum(map(len, calls)), "event_bytes": size, "writer_cpu_s": cpu, "writer_wall_s": wall,
              "run_wall_s": run_wall, "run_steps": summary.get("steps"), "share_of_run_wall": wall / run_wall}
    say(f"tensorboard replay of {run_dir}: {result['rows']} rows in {len(calls)} calls -> {size / 1e6:.1f} MB of "
        f"events in {wall:.1f} s ({cpu:.1f} s CPU), {100 * wall / run_wall:.2f}% of the run's "
        f"{run_wall / 60:.1f} min")
    return result


def _write(result: dict, out: Path | None, say) -> None:
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        say(f"wrote {out}")


if __name__ == "__main__":
    main()
