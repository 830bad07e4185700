"""Eval-mode test accuracy of trained noisy_bn runs, with and without the noise's mean scale.

    python scripts/noisy_bn_eval.py SWEEP_DIR

For every `*norm=noisy_bn*` run folder under SWEEP_DIR with a last.pt, rebuild the model
from its config.yaml, load the checkpoint and evaluate it on the run's test set twice:
as NoisyBatchNorm2d does now (eval applies the mean scale (1 + noise_scale) / 2) and as it
did before commit a8fa3f3 (plain BN in eval mode; noise_scale set to 1 gives exactly that).
results/covariate_shift/README.md quotes its output for /work/runs/covariate_shift-v2-cpu.
"""
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from bnstudy.config import Config
from bnstudy.validation import to_config
from bnstudy.data import load_data
from bnstudy.nets.resnet import build_model
from bnstudy.nets.norms import NoisyBatchNorm2d
from bnstudy.evaluation import evaluate


def main(sweep_dir: Path) -> None:
    torch.set_num_threads(1)
    for d in sorted(p.parent for p in sweep_dir.glob("*norm=noisy_bn*/last.pt")):
        cfg = to_config(OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.load(d / "config.yaml")))
        data = load_data(cfg.data)
        model = build_model(cfg.model, cfg.norm)
        model.load_state_dict(torch.load(d / "last.pt", weights_only=True)["model"])
        model.eval()
        _, now = evaluate(model, data.x_test, data.y_test, cfg.data.eval_batch_size)
        for m in model.modules():
            if isinstance(m, NoisyBatchNorm2d):
                m.noise_scale = 1.0  # mean scale 1: eval is plain BN, the old behaviour
        _, before = evaluate(model, data.x_test, data.y_test, cfg.data.eval_batch_size)
        print(f"{d.name}: eval-mode test acc {100 * before:.1f}% without the mean noise scale, "
              f"{100 * now:.1f}% with it")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
