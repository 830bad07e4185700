"""The medium scale's precision guard (bnstudy/analysis/equivalence.py, PRECISION_RULE): the
BN-minus-none effect of lr_sweep's bf16 measuring runs against their fp32 twins, paired by seed.

    python scripts/precision_twins.py BF16_SWEEP_DIR FP32_SWEEP_DIR [--out DIR]

Prints the rule, the per-seed table and the outcome (equivalent, different or inconclusive);
with --out, also writes them to DIR: twins.csv (each run of both: precision, norm, seed, rate,
final accuracy, status, wall time, commit, steps to each test accuracy), effects.csv (the
per-seed table) and outcome.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pandas as pd

from bnstudy.analysis.equivalence import PRECISION_RULE, precision_guard
from bnstudy.analysis.cells import study_runs
from bnstudy.analysis.results import load


def plain(runs: pd.DataFrame) -> pd.DataFrame:
    """The guard's runs: bn and none, without SkipInit."""
    return runs[runs["norm.name"].isin(["bn", "none"]) & ~runs["model.skipinit"].fillna(False).astype(bool)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bf16", type=Path)
    p.add_argument("fp32", type=Path)
    p.add_argument("--out", type=Path, default=None, help="folder for twins.csv, effects.csv and outcome.json")
    a = p.parse_args()
    arms = {}
    for name, folder in (("bf16", a.bf16), ("fp32", a.fp32)):
        runs, notes = study_runs(load([folder]).runs, "lr_sweep")
        got = set(runs.get("precision", []))
        if got != {name}:
            raise SystemExit(f"precision_twins: {folder} holds runs in {sorted(got) or 'no'} precision, not {name}")
        arms[name] = runs
    rates = {name: plain(runs).groupby("norm.name")["optim.lr"].unique().map(sorted).to_dict()
             for name, runs in arms.items()}
    if rates["bf16"] != rates["fp32"] or any(len(r) != 1 for r in rates["bf16"].values()):
        raise SystemExit(f"precision_twins: each of bn and none must run at one rate, the same in both: {rates}")
    t, table = precision_guard(arms["bf16"], arms["fp32"])
    print(PRECISION_RULE, "\n")
    print(table.round(2).to_string())
    print(f"\nd = bf16 effect - fp32 effect: {t.value:+.2f} points, 90% interval [{t.lo:+.2f}, {t.hi:+.2f}] "
          f"over {t.n} seeds (sd {t.sd:.2f}), margin ±{t.margin:g}: {t.outcome}"
          + (f" (~{t.pairs_needed} pairs would settle it)" if t.outcome == "inconclusive" else ""))
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        cols = ["precision", "norm.name", "model.skipinit", "seed", "optim.lr", "final_acc", "status",
                "wall_time_s", "git_commit"]
        both = pd.concat([plain(r) for r in arms.values()])
        cols += sorted((c for c in both if c.startswith("steps_to_test_acc.")),
                       key=lambda c: float(c.split(".", 1)[1]))
        both[[c for c in cols if c in both]].sort_values(["norm.name", "seed", "precision"]).to_csv(
            a.out / "twins.csv", index=False)
        table.to_csv(a.out / "effects.csv")
        outcome = {k: (None if v != v else v) for k, v in dataclasses.asdict(t).items()}  # NaN -> null
        (a.out / "outcome.json").write_text(json.dumps(
            outcome | {"rule": PRECISION_RULE, "bf16": str(a.bf16), "fp32": str(a.fp32)}, indent=2, default=str) + "\n")
        print(f"wrote {a.out}/twins.csv, effects.csv, outcome.json")


if __name__ == "__main__":
    main()
