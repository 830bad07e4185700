"""Precise-BN test accuracy of trained runs recomputed both ways: over the training images as
they are (the harness before 2026-12-08) and over training batches augmented as the run's were.

    python scripts/precise_bn_recheck.py SWEEP_DIR OUT_CSV [GLOB]

For every completed run folder under SWEEP_DIR (whose name matches GLOB, if given) with BN layers, a last.pt and
evaluation.precise_bn, rebuild the model from its config.yaml, load the checkpoint and read
test accuracy with its running statistics (which must equal the run's final_test_acc: the
check that the checkpoint is the final net), with precise statistics over unaugmented images
(which must equal the run's recorded precise accuracy) and over augmented batches
(bnstudy/evaluation.py precise_bn_, augment_seed = the run's seed, as runs now do). One row a
run, in points; results/norm_batch-medium/README.md quotes its output.
"""
import fnmatch
import sys
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import torch
from omegaconf import OmegaConf

from bnstudy.analysis.results import find_run_dirs
from bnstudy.config import Config
from bnstudy.data import load_data
from bnstudy.evaluation import bn_layers, evaluate, precise_bn_accuracy
from bnstudy.nets.resnet import build_model
from bnstudy.runfolder import read_summary
from bnstudy.validation import to_config


def recheck(run_dir: Path, data_cache: dict) -> dict | None:
    summary = read_summary(run_dir) or {}
    if summary.get("status") != "completed" or not (run_dir / "last.pt").exists():
        return None
    cfg = to_config(OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.load(run_dir / "config.yaml")))
    if not cfg.evaluation.precise_bn:
        return None
    model = build_model(cfg.model, cfg.norm)
    if not bn_layers(model):
        return None
    key = OmegaConf.to_yaml(OmegaConf.structured(cfg.data))
    data = data_cache.setdefault(key, load_data(cfg.data))
    if summary.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    model.load_state_dict(torch.load(run_dir / "last.pt", weights_only=True)["model"])
    autocast = ((lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if summary.get("precision") == "bf16"
                else nullcontext)
    ebs = cfg.data.eval_batch_size
    row = {"run": run_dir.name, "seed": cfg.seed,
           "final_test_acc": 100 * summary["final_test_acc"],
           "final_test_acc_precise": 100 * summary.get("final_test_acc_precise", float("nan")),
           "running": 100 * evaluate(model, data.x_test, data.y_test, ebs, autocast=autocast)[1]}
    for name, seed in (("precise_unaugmented", None), ("precise_augmented", cfg.seed if cfg.data.augment else None)):
        row[name] = 100 * precise_bn_accuracy(model, data.x_test, data.y_test, data.x_train,
                                              cfg.evaluation.precise_bn_images, ebs, autocast, seed)
    return row


def main(sweep_dir: Path, out_csv: Path, pattern: str = "*") -> None:
    torch.set_num_threads(1)
    rows, cache = [], {}
    for d in (d for d in find_run_dirs([sweep_dir]) if fnmatch.fnmatch(d.name, pattern)):
        row = recheck(d, cache)
        if row:
            print(", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
            rows.append(row)
    pd.DataFrame(rows).to_csv(out_csv, index=False, float_format="%.2f")
    print(f"wrote {out_csv} ({len(rows)} runs)")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:4])
