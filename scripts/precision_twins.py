"""The medium scale's precision guard (bnstudy/analysis/equivalence.py, PRECISION_RULE): the
BN-minus-none effect of lr_sweep's bf16 measuring runs against their fp32 twins, paired by seed.

    python scripts/precision_twins.py BF16_SWEEP_DIR FP32_SWEEP_DIR

Prints the rule, the per-seed table and the outcome (equivalent, different or inconclusive).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from bnstudy.analysis.equivalence import PRECISION_RULE, precision_guard
from bnstudy.analysis.cells import study_runs
from bnstudy.analysis.results import load


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bf16", type=Path)
    p.add_argument("fp32", type=Path)
    a = p.parse_args()
    arms = {}
    for name, folder in (("bf16", a.bf16), ("fp32", a.fp32)):
        runs, notes = study_runs(load([folder]).runs, "lr_sweep")
        got = set(runs.get("precision", []))
        if got != {name}:
            raise SystemExit(f"precision_twins: {folder} holds runs in {sorted(got) or 'no'} precision, not {name}")
        arms[name] = runs
    rates = {name: runs[runs["norm.name"].isin(["bn", "none"]) & ~runs["model.skipinit"].fillna(False).astype(bool)]
             .groupby("norm.name")["optim.lr"].unique().map(sorted).to_dict() for name, runs in arms.items()}
    if rates["bf16"] != rates["fp32"] or any(len(r) != 1 for r in rates["bf16"].values()):
        raise SystemExit(f"precision_twins: each of bn and none must run at one rate, the same in both: {rates}")
    t, table = precision_guard(arms["bf16"], arms["fp32"])
    print(PRECISION_RULE, "\n")
    print(table.round(2).to_string())
    print(f"\nd = bf16 effect - fp32 effect: {t.value:+.2f} points, 90% interval [{t.lo:+.2f}, {t.hi:+.2f}] "
          f"over {t.n} seeds (sd {t.sd:.2f}), margin ±{t.margin:g}: {t.outcome}"
          + (f" (~{t.pairs_needed} pairs would settle it)" if t.outcome == "inconclusive" else ""))


if __name__ == "__main__":
    main()
