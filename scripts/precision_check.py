"""Is the fast path faithful? The rule of bnstudy/conf/exp/precision.yaml, on its runs.

    python scripts/precision_check.py SWEEP_DIR [--out results/bench/precision.md]

For each norm at lr 0.1: bf16 (autocast + channels_last) minus fp32 final test accuracy over
seeds, with a 95% Welch interval; faithful when the interval includes 0 and lies within
+-2 points. At lr 10: the number of seeds that diverged in each precision, which must agree.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from bnstudy.analysis.results import load, study_runs
from bnstudy.analysis.rules import points
from bnstudy.analysis.stats import difference

BOUND = 2.0  # points


def check(runs: pd.DataFrame) -> tuple[bool, str]:
    sel, notes = study_runs(runs, "precision")
    col = "trainer.precision"
    lines, ok = ["| norm | lr | fp32 | bf16 | bf16 - fp32 (95% Welch interval) | within ±2 and includes 0 |",
                 "|---|---|---|---|---|---|"], True
    low, high = sel["optim.lr"].min(), sel["optim.lr"].max()
    for norm, g in sel[sel["optim.lr"] == low].groupby("norm.name"):
        a, b = (points(g.loc[g[col] == p, "final_acc"]) for p in ("bf16", "fp32"))
        e = difference(a, b)
        good = e.has_interval and e.lo <= 0 <= e.hi and -BOUND <= e.lo and e.hi <= BOUND
        ok &= good
        lines.append(f"| {norm} | {low:g} | {b.mean():.1f}% (n={len(b)}) | {a.mean():.1f}% (n={len(a)}) | "
                     f"{e.value:+.2f} [{e.lo:+.2f}, {e.hi:+.2f}] | {'yes' if good else 'no'} |")
    lines += ["", "| norm | lr | seeds diverged, fp32 | seeds diverged, bf16 | agree |", "|---|---|---|---|---|"]
    for norm, g in sel[sel["optim.lr"] == high].groupby("norm.name"):
        d = {p: f"{int((g.loc[g[col] == p, 'status'] == 'diverged').sum())}/{int((g[col] == p).sum())}"
             for p in ("fp32", "bf16")}
        ok &= d["fp32"] == d["bf16"]
        lines.append(f"| {norm} | {high:g} | {d['fp32']} | {d['bf16']} | {'yes' if d['fp32'] == d['bf16'] else 'no'} |")
    lines += [""] + [f"- {n}" for n in notes]
    lines.append(f"\n**bf16 + channels_last is {'faithful' if ok else 'NOT faithful'}** under the rule of "
                 "bnstudy/conf/exp/precision.yaml.")
    return ok, "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweep_dirs", nargs="+", type=Path)
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    res = load(a.sweep_dirs)
    for line in res.warnings():
        print(f"warning: {line}", file=sys.stderr)
    ok, text = check(res.runs)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
