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

from bnstudy.analysis.cells import study_runs
from bnstudy.analysis.results import load
from bnstudy.analysis.rules import points
from bnstudy.analysis.stats import MAX_SEEDS, difference, one_sample, seeds_needed

BOUND = 2.0  # points


FAITHFUL, NOT_FAITHFUL, INCONCLUSIVE = "faithful", "not faithful", "inconclusive"


def judge(e, unit: str = "seeds per arm") -> tuple[str, str]:
    """The outcome for one interval of bf16 - fp32, and why."""
    if not e.has_interval:
        return INCONCLUSIVE, "fewer than 2 seeds in an arm"
    if e.lo <= 0 <= e.hi and -BOUND <= e.lo and e.hi <= BOUND:
        return FAITHFUL, f"includes 0, within ±{BOUND:g}"
    if e.lo > 0 or e.hi < 0:  # an interval wholly outside +-BOUND excludes 0 too
        return NOT_FAITHFUL, "excludes 0"
    # settled either way once the half-width, at this spread and estimate, falls below
    # BOUND - |estimate| (then inside +-BOUND) or |estimate| (then 0 is excluded)
    gap = max(abs(e.value), BOUND - abs(e.value))
    n = seeds_needed(e, e.value + gap)
    more = (f"~{n} {unit} would settle it" if n and n <= MAX_SEEDS
            else "no practical number of seeds would settle it at this spread")
    return INCONCLUSIVE, f"wider than ±{BOUND:g} ({more})"


def _row(norm, lr, rule, a, b, e, unit) -> tuple[str, str]:
    outcome, why = judge(e, unit)
    return outcome, (f"| {norm} | {lr:g} | {rule} | {b.mean():.1f}% (n={len(b)}) | {a.mean():.1f}% (n={len(a)}) | "
                     f"{e.value:+.2f} [{e.lo:+.2f}, {e.hi:+.2f}] | {outcome}: {why} |")


def overall(outcomes: list[str]) -> str:
    return (NOT_FAITHFUL if NOT_FAITHFUL in outcomes else
            FAITHFUL if outcomes and all(o == FAITHFUL for o in outcomes) else INCONCLUSIVE)


def check(runs: pd.DataFrame) -> tuple[str, str]:
    """The rules of bnstudy/conf/exp/precision.yaml on the runs of one or more sweeps. Runs under
    different schedules are never pooled: accuracy is judged per schedule, the decision on the
    annealed (linear) schedule's where present, else the other's; divergence on the sweep with a
    second, higher rate. Without divergence rows the fast path cannot be called faithful."""
    sel, notes = study_runs(runs.reset_index(drop=True), "precision")
    col = "trainer.precision"
    sched = sel["schedule.name"] if "schedule.name" in sel else pd.Series("constant", index=sel.index)
    lines = ["| schedule | norm | lr | rule | fp32 | bf16 | bf16 - fp32 (95% interval) | outcome |",
             "|---|---|---|---|---|---|---|---|"]
    v1, v2, diverge = {}, {}, []
    low = sel["optim.lr"].min()
    for (name, norm), g in sel[sel["optim.lr"] == low].groupby([sched, "norm.name"]):
        if g.duplicated(["seed", col]).any():
            raise SystemExit(f"precision_check: the same seed and precision twice under schedule {name}, norm {norm}")
        a, b = (points(g.loc[g[col] == p, "final_acc"]) for p in ("bf16", "fp32"))
        outcome, line = _row(norm, low, "v1: Welch", a, b, difference(a, b), "seeds per arm")
        v1.setdefault(name, []).append(outcome)
        lines.append(f"| {name} {line}")
        pair = g.pivot(index="seed", columns=col, values="final_acc").dropna()
        pa, pb = (points(pair[p]) if p in pair else points(pd.Series(dtype=float)) for p in ("bf16", "fp32"))
        outcome, line = _row(norm, low, f"v2: paired over {len(pair)} seeds", pa, pb, one_sample(pa - pb), "pairs")
        v2.setdefault(name, []).append(outcome)
        lines.append(f"| {name} {line}")
    high = sel.loc[sel["optim.lr"] > low, "optim.lr"]
    if len(high):
        lines += ["", "| schedule | norm | lr | seeds diverged, fp32 | seeds diverged, bf16 | agree |",
                  "|---|---|---|---|---|---|"]
        for (name, norm, lr), g in sel[sel["optim.lr"] > low].groupby([sched, "norm.name", "optim.lr"]):
            d = {p: f"{int((g.loc[g[col] == p, 'status'] == 'diverged').sum())}/{int((g[col] == p).sum())}"
                 for p in ("fp32", "bf16")}
            diverge.append(FAITHFUL if d["fp32"] == d["bf16"] else NOT_FAITHFUL)
            lines.append(f"| {name} | {norm} | {lr:g} | {d['fp32']} | {d['bf16']} | "
                         f"{'yes' if d['fp32'] == d['bf16'] else 'no'} |")
    lines += [""] + [f"- {n}" for n in notes]
    decided = "linear" if "linear" in v1 else next(iter(v1), None)
    result = {"v1": overall(v1.get(decided, [])), "v2": overall(v2.get(decided, [])),
              "divergence": overall(diverge) if diverge else INCONCLUSIVE}
    final = (FAITHFUL if result["v2"] == FAITHFUL and result["v1"] != NOT_FAITHFUL
             and result["divergence"] == FAITHFUL else
             NOT_FAITHFUL if NOT_FAITHFUL in result.values() else INCONCLUSIVE)
    lines.append(f"\n**bf16 + channels_last: {final}** under the rules of bnstudy/conf/exp/precision.yaml "
                 f"(accuracy decided on the {decided} schedule's runs: v1, Welch: {result['v1']}; v2, paired: "
                 f"{result['v2']}; divergence at the higher rate: "
                 + ({FAITHFUL: "agrees", NOT_FAITHFUL: "disagrees"}.get(result["divergence"], "not in these runs"))
                 + ").")
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
