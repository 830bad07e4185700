"""Is the fast path faithful? The rule of bnstudy/conf/exp/precision.yaml, on its runs.

    python scripts/precision_check.py SWEEP_DIR [--out results/bench/precision.md]

For each norm at the lowest rate: bf16 (autocast + channels_last) minus fp32 final test
accuracy over seeds, with a 95% Welch interval (rule v1) and, on the seeds both precisions ran,
a paired 95% t interval of the per-seed differences (rule v2, added 2026-11-29). Faithful when the interval includes 0 and lies
within +-2 points; not faithful when it excludes 0 or lies wholly outside +-2 points;
inconclusive otherwise, with the seeds per arm the observed spread would need to decide. At the
highest rate (where the sweep has two): the number of seeds that diverged in each precision,
which must agree. The fast path is faithful when every row is; not faithful when any row is;
inconclusive otherwise. The default may become auto only when v2 says faithful, v1 does not say
not faithful and divergence agrees (bnstudy/conf/exp/precision.yaml).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from bnstudy.analysis.results import load, study_runs
from bnstudy.analysis.rules import points
from bnstudy.analysis.stats import MAX_SEEDS, difference, one_sample, seeds_needed

BOUND = 2.0  # points


FAITHFUL, NOT_FAITHFUL, INCONCLUSIVE = "faithful", "not faithful", "inconclusive"


def judge(e) -> tuple[str, str]:
    """The outcome for one interval of bf16 - fp32, and why."""
    if not e.has_interval:
        return INCONCLUSIVE, "fewer than 2 seeds in an arm"
    if e.lo <= 0 <= e.hi and -BOUND <= e.lo and e.hi <= BOUND:
        return FAITHFUL, f"includes 0, within ±{BOUND:g}"
    if e.lo > 0 or e.hi < 0 or e.lo > BOUND or e.hi < -BOUND:
        return NOT_FAITHFUL, "excludes 0" if (e.lo > 0 or e.hi < 0) else f"outside ±{BOUND:g}"
    # decided when the interval would fit inside +-BOUND: its half-width below BOUND - |estimate|
    need = [n for n in (seeds_needed(e, e.value + s * (BOUND - abs(e.value))) for s in (1, -1))
            if n is not None] if abs(e.value) < BOUND else []
    n = max(need) if need else None
    more = (f"~{n} seeds per arm would settle it" if n and n <= MAX_SEEDS
            else "no practical number of seeds would settle it at this spread")
    return INCONCLUSIVE, f"wider than ±{BOUND:g} ({more})"


def _row(norm, lr, rule, a, b, e) -> tuple[str, str]:
    outcome, why = judge(e)
    return outcome, (f"| {norm} | {lr:g} | {rule} | {b.mean():.1f}% (n={len(b)}) | {a.mean():.1f}% (n={len(a)}) | "
                     f"{e.value:+.2f} [{e.lo:+.2f}, {e.hi:+.2f}] | {outcome}: {why} |")


def check(runs: pd.DataFrame) -> tuple[str, str]:
    sel, notes = study_runs(runs, "precision")
    col = "trainer.precision"
    lines = ["| norm | lr | rule | fp32 | bf16 | bf16 - fp32 (95% interval) | outcome |",
             "|---|---|---|---|---|---|---|"]
    v1, v2, diverge = [], [], []
    low, high = sel["optim.lr"].min(), sel["optim.lr"].max()
    for norm, g in sel[sel["optim.lr"] == low].groupby("norm.name"):
        a, b = (points(g.loc[g[col] == p, "final_acc"]) for p in ("bf16", "fp32"))
        outcome, line = _row(norm, low, "v1: Welch", a, b, difference(a, b))
        v1.append(outcome)
        lines.append(line)
        pair = g.pivot_table(index="seed", columns=col, values="final_acc").dropna()
        pa, pb = (points(pair[p]) if p in pair else points(pd.Series(dtype=float)) for p in ("bf16", "fp32"))
        outcome, line = _row(norm, low, f"v2: paired over {len(pair)} seeds", pa, pb, one_sample(pa - pb))
        v2.append(outcome)
        lines.append(line)
    if high != low:
        lines += ["", "| norm | lr | seeds diverged, fp32 | seeds diverged, bf16 | agree |", "|---|---|---|---|---|"]
        for norm, g in sel[sel["optim.lr"] == high].groupby("norm.name"):
            d = {p: f"{int((g.loc[g[col] == p, 'status'] == 'diverged').sum())}/{int((g[col] == p).sum())}"
                 for p in ("fp32", "bf16")}
            diverge.append(FAITHFUL if d["fp32"] == d["bf16"] else NOT_FAITHFUL)
            lines.append(f"| {norm} | {high:g} | {d['fp32']} | {d['bf16']} | "
                         f"{'yes' if d['fp32'] == d['bf16'] else 'no'} |")
    lines += [""] + [f"- {n}" for n in notes]

    def overall(outcomes: list[str]) -> str:
        return (NOT_FAITHFUL if NOT_FAITHFUL in outcomes else
                FAITHFUL if outcomes and all(o == FAITHFUL for o in outcomes) else INCONCLUSIVE)

    result = {"v1": overall(v1 + diverge), "v2": overall(v2 + diverge)}
    final = (FAITHFUL if result["v2"] == FAITHFUL and result["v1"] != NOT_FAITHFUL else
             NOT_FAITHFUL if NOT_FAITHFUL in result.values() else INCONCLUSIVE)
    lines.append(f"\n**bf16 + channels_last: {final}** under the rules of bnstudy/conf/exp/precision.yaml "
                 f"(v1, Welch: {result['v1']}; v2, paired: {result['v2']}"
                 + ("" if diverge else "; divergence not in these runs") + ").")
    return final, "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweep_dirs", nargs="+", type=Path)
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    res = load(a.sweep_dirs)
    for line in res.warnings():
        print(f"warning: {line}", file=sys.stderr)
    _, text = check(res.runs)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
