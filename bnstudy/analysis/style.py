"""The figure style and the drawing helpers every claim's figures share.

A figure is one function: a tidy DataFrame in, a matplotlib Figure out (the figures live
with their claims, bnstudy/claims/). Run-level figures take the runs table (one row per run,
dotted config columns, `final_acc` with diverged runs at chance); curve figures take curves
rows with the run's config columns attached (`results.with_config`). Every figure shows the
mean over seeds and a 95% t-interval (band or bar; none where n=1). A function raises
NotDrawn, saying which rows are missing, rather than draw an empty or misleading figure.
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display, no pyplot global state
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..nets.norms import NORMS
from .results import SKIPINIT

STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False, "savefig.bbox": "tight",
    "legend.frameon": False, "lines.linewidth": 1.6, "lines.markersize": 5,
}
# each norm's label, colour and place come from the norm registry (bnstudy/nets/norms.py); a
# SkipInit variant (results.variant_names) is another network: a colour of its own, never its norm's
SKIPINIT_COLOR = "C8"
PCT = 100.0  # accuracies are stored as fractions and drawn in percent


class NotDrawn(ValueError):
    """The rows a figure needs are not in the data; the message says which."""



def figure(fn: Callable[..., Figure]) -> Callable[..., Figure]:
    """Draw under the house style, without touching matplotlib's global rcParams."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> Figure:
        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)
    return wrapper



def norms_of(df: pd.DataFrame, column: str = "norm.name") -> list[str]:
    """The norms present in the house order; column='variant' (results.variant_names) puts each
    SkipInit variant right after its norm."""
    order = list(NORMS)

    def key(n: str):
        base = n[: -len(SKIPINIT)] if n.endswith(SKIPINIT) else n
        return order.index(base) if base in order else 99, base, n.endswith(SKIPINIT)
    return sorted(df[column].dropna().unique(), key=key)



def label(norm: str) -> str:
    if norm.endswith(SKIPINIT):  # a variant name (results.variant_names)
        return label(norm[: -len(SKIPINIT)]) + SKIPINIT
    spec = NORMS.get(norm)
    return spec.label if spec is not None and spec.label else norm



def color(norm: str) -> str:
    if norm == "none" + SKIPINIT:
        return SKIPINIT_COLOR
    spec = NORMS.get(norm)
    return spec.color if spec is not None and spec.color else "C7"



def need(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing or not len(df):
        raise NotDrawn(f"{what}: no rows" if not len(df) else f"{what}: no column(s) {', '.join(missing)}")



def line_ci(ax, agg: pd.DataFrame, x: str, color, label, scale: float = 1.0, errorbars: bool = False,
             **kw) -> None:
    """Mean line with its 95% CI as a band (curves) or error bars (sweeps)."""
    agg = agg.sort_values(x)
    xs, m = agg[x].to_numpy(float), agg["mean"].to_numpy(float) * scale
    ci = agg["ci"].to_numpy(float) * scale
    if scale == PCT:  # an accuracy interval stops at 0% and 100% (two seeds give t = 12.7)
        lo, hi = np.clip(m - ci, 0, PCT), np.clip(m + ci, 0, PCT)
    else:
        lo, hi = m - ci, m + ci
    if errorbars or len(xs) <= 2:  # a band needs a few points to be seen
        yerr = np.nan_to_num(np.vstack([m - lo, hi - m]))
        ax.errorbar(xs, m, yerr=yerr, color=color, label=label, marker="o", capsize=3, **kw)
        return
    ax.plot(xs, m, color=color, label=label, marker="o" if len(xs) <= 12 else None, **kw)
    if np.isfinite(ci).any():
        ax.fill_between(xs, lo, hi, color=color, alpha=0.2, linewidth=0)



def log2_axis(ax, values) -> None:
    ax.set_xscale("log", base=2)
    ticks = sorted(set(int(v) for v in values))
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())



def log10_axis(ax, axis: str = "x", subs=(1.0, 3.0)) -> None:
    """Log scale with plain-number labels (0.03, 1, 300) instead of 3x10^-2."""
    getattr(ax, f"set_{axis}scale")("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(LogLocator(base=10, subs=subs))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())



def chance_line(ax, runs: pd.DataFrame) -> float:
    c = 1.0 / float(runs.get("model.num_classes", pd.Series([10])).dropna().iloc[0]) if len(runs) else 0.1
    ax.axhline(c * PCT, color="0.5", linestyle=":", linewidth=1, label="chance")
    return c



def caption_n(runs: pd.DataFrame, ci: bool = True) -> str:
    """'mean of 3 seeds, 95% CI' (the most seeds any cell has), or '1 seed, no CI'."""
    keys = [c for c in runs.columns if c in ("norm.name", "optim.lr", "data.batch_size", "model.depth")]
    n = runs.groupby(keys, dropna=False)["seed"].nunique().max() if "seed" in runs and keys and len(runs) else 1
    n = int(n) if pd.notna(n) else 1
    if n == 1:
        return "1 seed, no CI"
    return f"mean of {n} seeds" + (", 95% CI" if ci else "")



def legend_outside(fig: Figure, axes, ncols: int = 4) -> None:
    """One legend for all panels, below them; the norms first, markers (chance, diverged) after."""
    handles = {}
    for ax in np.ravel(axes):
        for h, l in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(l, h)
    order = sorted(handles, key=lambda l: (l == "chance" or l.startswith(("diverged", "not reached")), ))
    if handles:
        fig.legend([handles[l] for l in order], order, loc="outside lower center", ncols=min(len(order), ncols))



def shared_values(df: pd.DataFrame, column: str, norms: Sequence[str] = ("bn", "none"), by: str = "norm.name") -> list:
    """Values of `column` at which every one of `norms` (values of `by`) has rows."""
    sets = [set(df.loc[df[by] == n, column].dropna()) for n in norms]
    return sorted(set.intersection(*sets)) if sets else []



def spread_pick(values: list, k: int) -> list:
    if len(values) <= k:
        return values
    idx = np.unique(np.round(np.linspace(0, len(values) - 1, k)).astype(int))
    return [values[i] for i in idx]



def save(fig: Figure, path_stem, formats: Sequence[str] = ("png", "pdf"), dpi: int = 150) -> list:
    """Write `path_stem`.png and .pdf; return the paths."""
    from pathlib import Path
    out = []
    for ext in formats:
        p = Path(f"{path_stem}.{ext}")
        p.parent.mkdir(parents=True, exist_ok=True)
        # no creation date in the PDF: a figure regenerated from the same runs is the same file
        fig.savefig(p, dpi=dpi, metadata={"CreationDate": None} if ext == "pdf" else None)
        out.append(p)
    return out
