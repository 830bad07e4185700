"""The numbers the hand-written results/STUDY/README.md files give beside report.md, recomputed
from the published runs.csv (means ± 95% Student-t half-widths over seeds; differences Welch).

    python scripts/readme_numbers.py inference|regularization|init_sweep|intensity_shift
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from bnstudy.analysis.stats import difference, mean_ci

RESULTS = Path(__file__).resolve().parents[1] / "results"


def pm(values: pd.Series) -> str:
    m, h = mean_ci(100 * values)[:2]
    return f"{m:.1f} ± {h:.1f}"


def welch(a: pd.Series, b: pd.Series) -> str:
    e = difference(100 * a, 100 * b)
    return f"{e.value:+.1f} ± {e.half:.1f}"


def inference(d: pd.DataFrame) -> None:
    for nb, g in d.groupby("norm.ghost_batch_size"):
        one = g[g["norm.momentum"] == 0.1]  # the momenta of a seed share their weights
        for m, x in g.groupby("norm.momentum"):
            print(f"norm batch {nb} momentum {m:g}: running {pm(x['final.infer/acc_running.bs1'])}, "
                  f"running minus own statistics at test batch 1 "
                  f"{pm(x['final.infer/acc_running.bs1'] - x['final.infer/acc_batch.bs1'])}")
        print(f"norm batch {nb}: precise {pm(one['final.infer/acc_precise'])}, own statistics at test batch 1 "
              f"{pm(one['final.infer/acc_batch.bs1'])}, at test batch {nb} {pm(one[f'final.infer/acc_batch.bs{nb}'])}")
    a, b = (d[(d["norm.ghost_batch_size"] == nb) & (d["norm.momentum"] == 0.1)] for nb in (16, 128))
    for t in (1, 2):
        print(f"own statistics at test batch {t}, norm batch 16 minus 128: "
              f"{welch(a[f'final.infer/acc_batch.bs{t}'], b[f'final.infer/acc_batch.bs{t}'])}")
    print(f"batch independence gap: max {d['final.infer/batch_independence_gap'].max():.2g}")


def regularization(d: pd.DataFrame) -> None:
    for (n, p, lr), g in d.groupby(["norm.name", "model.dropout", "optim.lr"]):
        done = g[g.status == "completed"]
        print(f"{n} dropout {p:g} lr {lr:g}: test {pm(done.final_test_acc)} ({len(done)} of {len(g)} completed), "
              f"train slice min {100 * done['final.train_eval/acc'].min():.1f}%, wall median "
              f"{g.wall_time_s.median() / 60:.2f} min")


def init_sweep(d: pd.DataFrame) -> None:
    arm = d["norm.name"] + d["model.skipinit"].astype(bool).map({True: " + SkipInit", False: ""})
    g = d.assign(arm=arm).groupby(["arm", "seed"]).final_acc
    spread = g.max() - g.min()
    for a in spread.index.get_level_values("arm").unique():
        print(f"{a}: spread {pm(spread[a])} points, wall median {d.wall_time_s[arm == a].median():.0f} s")


def intensity_shift(d: pd.DataFrame) -> None:
    varied = [c for c in ("final.test_shifted/acc", "final.test_shifted/acc_batchstats") if c in d]
    for (n, shift, lr), g in d.groupby(["norm.name", "data.intensity_shift", "optim.lr"]):
        done = g[g.status.isin(["completed", "diverged"])]
        extra = ", ".join(f"{c.split('/')[-1]} {pm(done[c])}" for c in varied)
        print(f"{n} trained {'with variation' if shift else 'clean'} lr {lr:g}: clean test {pm(done.final_acc)} "
              f"({(done.status == 'diverged').sum()} of {len(done)} diverged); varied test: {extra}; "
              f"wall median {g.wall_time_s.median():.0f} s")


if __name__ == "__main__":
    study = sys.argv[1] if len(sys.argv) > 1 else ""
    show = {"inference": inference, "regularization": regularization, "init_sweep": init_sweep,
            "intensity_shift": intensity_shift}.get(study)
    if show is None:
        sys.exit("usage: python scripts/readme_numbers.py inference|regularization|init_sweep|intensity_shift")
    show(pd.read_csv(RESULTS / study / "runs.csv", low_memory=False))
