"""The numbers the hand-written results/STUDY/README.md files give beside report.md, recomputed
from the published runs.csv (means ± 95% Student-t half-widths over seeds; differences Welch).

    python scripts/readme_numbers.py STUDY [RUNS_CSV ...]

RUNS_CSV: other tables than results/STUDY/runs.csv (a superseded protocol's, or a follow-up's
with the study's own), read as one.

STUDY: lr_sweep, lr_range, batch_size_sweep, norm_batch, steps_to_target, inference,
regularization, init_sweep, intensity_shift, covariate_shift or depth_sweep.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from bnstudy.analysis.results import at_best_rate
from bnstudy.analysis.stats import difference, mean_ci

RESULTS = Path(__file__).resolve().parents[1] / "results"


def pm(values: pd.Series) -> str:
    m, h = mean_ci(100 * values)[:2]
    return f"{m:.1f} ± {h:.1f}"


def welch(a: pd.Series, b: pd.Series) -> str:
    e = difference(100 * a, 100 * b)
    return f"{e.value:+.1f} ± {e.half:.1f}"


def arms(d: pd.DataFrame) -> pd.Series:
    """norm, with ' + SkipInit' where the unnormalized net had it."""
    skip = d["model.skipinit"].astype(bool) if "model.skipinit" in d else False
    return d["norm.name"] + pd.Series(skip, index=d.index).map({True: " + SkipInit", False: ""})


def wall(d: pd.DataFrame, by: str) -> None:
    """Median wall time and training throughput of the completed runs, per `by`."""
    done = d[d.status == "completed"]
    for k, g in done.groupby(by):
        print(f"{by} {k}: wall median {g.wall_time_s.median() / 60:.1f} min (range "
              f"{g.wall_time_s.min() / 60:.1f}-{g.wall_time_s.max() / 60:.1f}), "
              f"{g.train_images_per_s.median():.0f} img/s median")


def lr_sweep(d: pd.DataFrame) -> None:
    d = d.assign(arm=arms(d))
    for (a, lr), g in d.groupby(["arm", "optim.lr"]):
        g = g.sort_values("seed")
        print(f"{a} lr {lr:g}: final {pm(g.final_acc)}; per seed {list((100 * g.final_acc).round(1))}; "
              f"steps to 30% {list(g['steps_to_test_acc.0.3'])}; statuses {list(g.status)}")
    best = d.groupby(["arm", "optim.lr"]).final_acc.mean()
    top = best.groupby(level=0).max()
    print(f"best cell per arm (%): {(100 * top).round(2).to_dict()}; usable bar "
          f"(chance + the best arm's best) / 2 = {100 * (0.1 + top.max()) / 2:.2f}%")
    print("resumed runs:", d[d.resumed_from_step.notna()][["run", "resumed_from_step"]].to_dict("records"))
    wall(d, "arm")


def lr_range(d: pd.DataFrame) -> None:
    for (b, n), g in d.groupby(["data.batch_size", "norm.name"]):
        print(f"batch {b} {n}: wall {g.wall_time_s.min() / 60:.1f}-{g.wall_time_s.max() / 60:.1f} min, "
              f"{g.train_images_per_s.min():.0f}-{g.train_images_per_s.max():.0f} img/s")
    c = pd.read_csv(RESULTS / "lr_range" / "curves.csv.gz", low_memory=False)
    loss = c[c.metric == "train/loss"].groupby("run").value.min()
    for r, v in loss.items():
        print(f"{r}: lowest logged training loss {v:.2f}")
    print("runs per code commit:", d.git_commit.str[:7].value_counts().to_dict())


def batch_size_sweep(d: pd.DataFrame) -> None:
    t = d[d["optim.lr"] == 0.2]  # every cell's best rate
    for (n, b), g in t.groupby(["norm.name", "data.batch_size"]):
        gain = "" if n != "bn" else \
            f", precise BN {pm(g.final_acc_precise)} (gain {100 * (g.final_acc_precise - g.final_acc).mean():+.1f})"
        print(f"{n} batch {b} lr 0.2: {pm(g.final_acc)}{gain}")
    wall(d, "data.batch_size")


def norm_batch(d: pd.DataFrame) -> None:
    for lr, g in d.groupby("optim.lr"):
        a, b = (g[g["norm.ghost_batch_size"] == nb] for nb in (128, 2))
        print(f"lr {lr:g}: 128 {pm(a.final_acc)}, 2 {pm(b.final_acc)}, 128 minus 2 {welch(a.final_acc, b.final_acc)}; "
              f"precise minus running, mean over cells {100 * (g.final_acc_precise - g.final_acc).mean():+.2f}")
    print(f"accuracy range over cells {100 * d.groupby(['norm.ghost_batch_size', 'optim.lr']).final_acc.mean().min():.1f}"
          f"-{100 * d.groupby(['norm.ghost_batch_size', 'optim.lr']).final_acc.mean().max():.1f}%")
    wall(d, "norm.ghost_batch_size")


def steps_to_target(d: pd.DataFrame) -> None:
    d = d.assign(arm=arms(d))
    none, skip = d[d.arm == "none"], d[d.arm == "none + SkipInit"]
    print(f"final accuracy per arm: {(100 * d.groupby('arm').final_acc.mean()).round(1).to_dict()}")
    print(f"SkipInit minus none: {welch(skip.final_acc, none.final_acc)}; without none's seed 14 "
          f"{welch(skip.final_acc, none[none.seed != 14].final_acc)}")
    print("resumed runs:", d[d.resumed_from_step.notna()][["run", "resumed_from_step"]].to_dict("records"))
    c = pd.read_csv(RESULTS / "steps_to_target" / "curves.csv.gz", low_memory=False)
    r = c[c.run.str.contains("norm=none") & c.run.str.contains("seed=14") & ~c.run.str.contains("skipinit")]
    p = r.pivot_table(index="step", columns="metric", values="value")
    print("none seed 14, train loss by step:", p["train/loss"].dropna().round(3).to_dict())
    print("none seed 14, test accuracy by step:", (100 * p["test/acc"].dropna()).round(1).to_dict())
    wall(d, "arm")


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
              f"({(done.status == 'diverged').sum()} of {len(done)} diverged; per seed "
              f"{list((100 * done.sort_values('seed').final_acc).round(1))}); varied test: {extra}; "
              f"wall median {g.wall_time_s.median():.0f} s")


def cell(g: pd.DataFrame) -> str:
    """A cell's final accuracy: mean ± half-width, per seed, and its runs' statuses."""
    g = g.sort_values("seed")
    return (f"test {pm(g.final_acc)} (per seed {list((100 * g.final_acc).round(1))}); "
            f"statuses {g.status.value_counts().to_dict()}")


def covariate_shift(d: pd.DataFrame) -> None:
    train = "final.train/acc"  # train mode, noise on, over the last log_every steps
    for (m, n, lr), g in d.groupby(["model.name", "norm.name", "optim.lr"]):
        print(f"{m} {n} lr {lr:g}: {cell(g)}; train {pm(g[train])}")
    wall(d.assign(arm=d["model.name"] + " " + d["norm.name"]), "arm")


def depth_sweep(d: pd.DataFrame) -> None:
    net = d["model.plain"].astype(bool).map({True: "plain", False: "residual"})
    d = d.assign(arm=net + " " + d["model.depth"].astype(str) + " " + d["norm.name"])
    for (a, lr), g in d.groupby(["arm", "optim.lr"]):
        print(f"{a} lr {lr:g}: {cell(g)}; final training loss {g['final.train/loss'].mean():.2f} "
              f"(per seed {list(g.sort_values('seed')['final.train/loss'].round(2))})")
    plain = d[d["model.plain"].astype(bool)]
    deep = plain[plain["model.depth"] == plain["model.depth"].max()]
    best = at_best_rate(deep[deep["norm.name"] == "bn"], ["model.depth"])  # the claim's choice of BN's rate
    if len(best):
        for nlr, none in deep[deep["norm.name"] == "none"].groupby("optim.lr").final_acc:
            print(f"plain depth {deep['model.depth'].iloc[0]}: bn at lr {best['optim.lr'].iloc[0]:g} minus none "
                  f"at lr {nlr:g}: {welch(best.final_acc, none)} points (Welch)")
    wall(d, "arm")


if __name__ == "__main__":
    study = sys.argv[1] if len(sys.argv) > 1 else ""
    studies = {f.__name__: f for f in (lr_sweep, lr_range, batch_size_sweep, norm_batch, steps_to_target, inference,
                                       regularization, init_sweep, intensity_shift,
                                       covariate_shift, depth_sweep)}
    if study not in studies:
        sys.exit(f"usage: python scripts/readme_numbers.py {'|'.join(studies)} [RUNS_CSV ...]")
    show = studies[study]
    tables = [Path(a) for a in sys.argv[2:]] or [RESULTS / study / "runs.csv"]
    show(pd.concat([pd.read_csv(t, low_memory=False) for t in tables], ignore_index=True).copy())  # copy: one block per dtype
