"""One function per figure: a tidy DataFrame in, a matplotlib Figure out.

Run-level figures take the runs table (bnstudy.results: one row per run, dotted config
columns, `final_acc` with diverged runs at chance). Curve figures take curves rows with the
run's config columns attached (`results.with_config`). Every figure shows the mean over seeds
and a 95% t-interval (band or bar; none where n=1). A function raises NotDrawn, saying which
rows are missing, rather than draw an empty or misleading figure.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display, no pyplot global state
import numpy as np
import pandas as pd
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from .results import SKIPINIT, aggregate, steps_column, thresholds, variant_names

STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False, "savefig.bbox": "tight",
    "legend.frameon": False, "lines.linewidth": 1.6, "lines.markersize": 5,
}
NORM_COLORS = {"bn": "C0", "none": "C3", "gn": "C2", "ln": "C4", "ghost_bn": "C1", "noisy_bn": "C5"}
NORM_LABELS = {"bn": "BatchNorm", "none": "no normalization", "gn": "GroupNorm", "ln": "LayerNorm",
               "ghost_bn": "ghost BatchNorm", "noisy_bn": "noisy BatchNorm"}
NORM_ORDER = list(NORM_COLORS)
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


# ---------------------------------------------------------------- helpers

def _norms(df: pd.DataFrame) -> list[str]:
    present = list(df["norm.name"].dropna().unique())
    return sorted(present, key=lambda n: (NORM_ORDER.index(n) if n in NORM_ORDER else 99, n))


def _label(norm: str) -> str:
    if norm.endswith(SKIPINIT):  # a variant name (results.variant_names)
        return _label(norm[: -len(SKIPINIT)]) + SKIPINIT
    return NORM_LABELS.get(norm, norm)


def _color(norm: str) -> str:
    return NORM_COLORS.get(norm, "C7")


def _need(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing or not len(df):
        raise NotDrawn(f"{what}: no rows" if not len(df) else f"{what}: no column(s) {', '.join(missing)}")


def _line_ci(ax, agg: pd.DataFrame, x: str, color, label, scale: float = 1.0, errorbars: bool = False,
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


def _log2_axis(ax, values) -> None:
    ax.set_xscale("log", base=2)
    ticks = sorted(set(int(v) for v in values))
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _log10_axis(ax, axis: str = "x", subs=(1.0, 3.0)) -> None:
    """Log scale with plain-number labels (0.03, 1, 300) instead of 3x10^-2."""
    getattr(ax, f"set_{axis}scale")("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(LogLocator(base=10, subs=subs))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def _chance_line(ax, runs: pd.DataFrame) -> float:
    c = 1.0 / float(runs.get("model.num_classes", pd.Series([10])).dropna().iloc[0]) if len(runs) else 0.1
    ax.axhline(c * PCT, color="0.5", linestyle=":", linewidth=1, label="chance")
    return c


def _caption_n(runs: pd.DataFrame, ci: bool = True) -> str:
    """'mean of 3 seeds, 95% CI' (the most seeds any cell has), or '1 seed, no CI'."""
    keys = [c for c in runs.columns if c in ("norm.name", "optim.lr", "data.batch_size", "model.depth")]
    n = runs.groupby(keys, dropna=False)["seed"].nunique().max() if "seed" in runs and keys and len(runs) else 1
    n = int(n) if pd.notna(n) else 1
    if n == 1:
        return "1 seed, no CI"
    return f"mean of {n} seeds" + (", 95% CI" if ci else "")


def _legend_outside(fig: Figure, axes, ncols: int = 4) -> None:
    """One legend for all panels, below them; the norms first, markers (chance, diverged) after."""
    handles = {}
    for ax in np.ravel(axes):
        for h, l in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(l, h)
    order = sorted(handles, key=lambda l: (l == "chance" or l.startswith(("diverged", "not reached")), ))
    if handles:
        fig.legend([handles[l] for l in order], order, loc="outside lower center", ncols=min(len(order), ncols))


def shared_values(df: pd.DataFrame, column: str, norms: Sequence[str] = ("bn", "none")) -> list:
    """Values of `column` at which every one of `norms` has rows."""
    sets = [set(df.loc[df["norm.name"] == n, column].dropna()) for n in norms]
    return sorted(set.intersection(*sets)) if sets else []


def _spread_pick(values: list, k: int) -> list:
    if len(values) <= k:
        return values
    idx = np.unique(np.round(np.linspace(0, len(values) - 1, k)).astype(int))
    return [values[i] for i in idx]


# ---------------------------------------------------------------- faster training, higher lr

@figure
def convergence(curves: pd.DataFrame, lrs: Optional[Sequence[float]] = None, max_panels: int = 4) -> Figure:
    """Train loss and test accuracy vs step, BN vs none, at learning rates both ran."""
    _need(curves, ["norm.name", "optim.lr", "metric", "step", "value"], "convergence")
    c = curves[curves.metric.isin(["train/loss", "test/acc"])]
    shared = shared_values(c, "optim.lr")
    if not shared:
        raise NotDrawn("convergence: no learning rate at which both bn and none have curves")
    lrs = _spread_pick(shared, max_panels) if lrs is None else list(lrs)
    c = c[c["optim.lr"].isin(lrs) & c["norm.name"].isin(["bn", "none"])].copy()
    c["value"] = c["value"].where(np.isfinite(c["value"]))
    fig = Figure(figsize=(2.6 * len(lrs) + 0.6, 5.0), layout="constrained")
    axes = fig.subplots(2, len(lrs), sharex="col", sharey="row", squeeze=False)
    loss = c[c.metric == "train/loss"]
    first = loss.sort_values("step").groupby("run").value.first()
    top = 1.6 * float(first.median()) if len(first) else None  # diverging losses would flatten the rest
    for j, lr in enumerate(lrs):
        for norm in ("bn", "none"):
            sub = c[(c["optim.lr"] == lr) & (c["norm.name"] == norm)]
            for i, metric in enumerate(("train/loss", "test/acc")):
                m = sub[sub.metric == metric]
                if not len(m):
                    continue
                agg = aggregate(m, ["step"], "value")
                _line_ci(axes[i, j], agg, "step", _color(norm), _label(norm),
                         scale=PCT if metric == "test/acc" else 1.0)
            ends = sub[(sub.metric == "train/loss")].groupby("run").step.max()
            diverged = sub[sub.get("status", pd.Series("", index=sub.index)) == "diverged"].run.unique()
            for r in diverged:
                axes[0, j].plot([ends[r]], [top or 1], marker="x", color=_color(norm), linestyle="none",
                                markersize=8, label="diverged")
        axes[0, j].set_title(f"lr = {lr:g}")
        axes[1, j].set_xlabel("step (SGD updates)")
        axes[1, j].xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[0]:
        _log10_axis(ax, "y", subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0))
        if top:
            ax.set_ylim(top=top * 1.05)
    axes[0, 0].set_ylabel("train loss (cross-entropy, log scale)")
    axes[1, 0].set_ylabel("test accuracy (%)")
    axes[1, 0].set_ylim(0, None)
    _legend_outside(fig, axes)
    fig.suptitle(f"Convergence at learning rates both ran ({_caption_n(c.drop_duplicates('run'))})")
    return fig


@figure
def accuracy_vs_lr(runs: pd.DataFrame) -> Figure:
    """Final and best test accuracy vs learning rate per norm; diverged runs marked."""
    _need(runs, ["norm.name", "optim.lr", "final_acc"], "accuracy vs learning rate")
    if runs["optim.lr"].nunique() < 2:
        raise NotDrawn("accuracy vs learning rate: fewer than 2 learning rates")
    fig = Figure(figsize=(8.0, 3.4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    r = runs.copy()
    # best accuracy before a divergence is real but says little: a diverged run counts as chance
    best = pd.to_numeric(r.get("best_test_acc"), errors="coerce")
    r["best_acc"] = np.where(r.status == "diverged", r["final_acc"], best)
    for ax, col, title in ((axes[0], "final_acc", "final test accuracy"), (axes[1], "best_acc", "best test accuracy")):
        chance = _chance_line(ax, r)
        for norm in _norms(r):
            sub = r[r["norm.name"] == norm]
            _line_ci(ax, aggregate(sub, ["optim.lr"], col), "optim.lr", _color(norm), _label(norm),
                     scale=PCT, errorbars=True)
            div = sub[sub.status == "diverged"]
            if len(div):
                ax.plot(div["optim.lr"], np.full(len(div), chance * PCT * 0.5), marker="x", linestyle="none",
                        color=_color(norm), markersize=8, label=f"diverged ({_label(norm)})")
        _log10_axis(ax)
        ax.set_xlabel("peak learning rate (log scale)")
        ax.set_title(title)
        ax.set_ylim(bottom=0)
    axes[0].set_ylabel("test accuracy (%)")
    _legend_outside(fig, axes, ncols=3)
    fig.suptitle(f"Accuracy vs learning rate ({_caption_n(r)})\ndiverged runs count as chance and are marked x below it",
                 fontsize=10)
    return fig


@figure
def steps_to_target(runs: pd.DataFrame, target: Optional[float] = None) -> Figure:
    """Steps until the test accuracy first reached `target` vs learning rate per norm."""
    _need(runs, ["norm.name", "optim.lr"], "steps to target accuracy")
    ts = thresholds(runs)
    if not ts:
        raise NotDrawn("steps to target accuracy: runs recorded no steps_to_test_acc thresholds")
    if target is None:  # the highest threshold some run of each norm reached
        reached = [t for t in ts if all(runs.loc[runs["norm.name"] == n, steps_column(t)].notna().any()
                                        for n in _norms(runs))]
        if not reached:
            raise NotDrawn("steps to target accuracy: no threshold was reached by every norm")
        target = reached[-1]
    col = steps_column(target)
    fig = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = fig.subplots()
    top = float(np.nanmax([pd.to_numeric(runs.get("steps"), errors="coerce").max(), runs[col].max(), 1.0]))
    for norm in _norms(runs):
        sub = runs[runs["norm.name"] == norm]
        hit = sub[sub[col].notna()]
        if len(hit):
            _line_ci(ax, aggregate(hit, ["optim.lr"], col), "optim.lr", _color(norm), _label(norm), errorbars=True)
        miss = sub[sub[col].isna()]
        if len(miss):
            ax.plot(miss["optim.lr"], np.full(len(miss), top * 1.3), marker="^", linestyle="none",
                    color=_color(norm), markerfacecolor="none", markersize=7,
                    label=f"not reached ({_label(norm)})")
    _log10_axis(ax)
    _log10_axis(ax, "y", subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0))
    ax.set_xlabel("peak learning rate (log scale)")
    ax.set_ylabel(f"steps to {target:.0%} test accuracy (log scale)")
    ax.set_title(f"Steps to {target:.0%} test accuracy\n{_caption_n(runs)}; open triangle: a seed never got there",
                 fontsize=9)
    _legend_outside(fig, [ax], ncols=2)
    return fig


# ---------------------------------------------------------------- small batches

@figure
def accuracy_vs_batch_size(runs: pd.DataFrame) -> Figure:
    """Test accuracy vs batch size per norm (in the style of Wu & He 2018, Fig. 1)."""
    _need(runs, ["norm.name", "data.batch_size", "final_acc"], "accuracy vs batch size")
    if runs["data.batch_size"].nunique() < 2:
        raise NotDrawn("accuracy vs batch size: fewer than 2 batch sizes")
    fig = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = fig.subplots()
    _chance_line(ax, runs)
    for norm in _norms(runs):
        sub = runs[runs["norm.name"] == norm]
        _line_ci(ax, aggregate(sub, ["data.batch_size"], "final_acc"), "data.batch_size", _color(norm),
                 _label(norm), scale=PCT, errorbars=True)
    _log2_axis(ax, runs["data.batch_size"].dropna().unique())
    ax.invert_xaxis()  # Wu & He draw the batch shrinking to the right
    ax.set_xlabel("batch size (images per step, log₂ scale)")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title(f"Accuracy vs batch size\n{_caption_n(runs)}", fontsize=9)
    ax.legend(loc="best")
    return fig


# ---------------------------------------------------------------- covariate shift (probes)

def _act_table(curves: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Rows `act/...` or `hist/...` split into layer (module.in|out) and stat columns."""
    rows = curves[curves.metric.str.startswith(kind + "/")].copy()
    if not len(rows):
        return rows.assign(layer=[], stat=[])
    parts = rows.metric.str[len(kind) + 1:].str.rsplit(".", n=1, expand=True)
    rows["layer"], rows["stat"] = parts[0], parts[1]
    return rows


def choose_layers(layers_by_norm: dict[str, set], k: int = 3) -> list[str]:
    """Up to k probed layers present for every norm, spread over depth; the input to a
    nonlinearity (a norm layer's output, identity in the unnormalized net) first, as in Ioffe & Szegedy."""
    common = sorted(set.intersection(*layers_by_norm.values())) if layers_by_norm else []
    for pick in (lambda l: "norm" in l and l.endswith(".out"), lambda l: l.endswith(".out"), lambda l: True):
        chosen = [l for l in common if pick(l)]
        if chosen:
            return _spread_pick(chosen, k)
    return []


@figure
def activation_percentiles(curves: pd.DataFrame, layers: Optional[Sequence[str]] = None) -> Figure:
    """15th/50th/85th activation percentiles over training, per layer, with and without BN
    (in the style of Ioffe & Szegedy 2015, Fig. 1b-c)."""
    _need(curves, ["norm.name", "metric"], "activation percentiles")
    act = _act_table(curves, "act")
    act = act[act.stat.isin(["p15", "p50", "p85"])]
    if not len(act):
        raise NotDrawn("activation percentiles: no act/*.p15|p50|p85 probe rows")
    norms = _norms(act)
    layers = list(layers) if layers else choose_layers({n: set(act.loc[act["norm.name"] == n, "layer"]) for n in norms})
    if not layers:
        raise NotDrawn("activation percentiles: no probed layer common to every norm")
    fig = Figure(figsize=(2.9 * len(norms) + 0.4, 2.2 * len(layers) + 0.8), layout="constrained")
    axes = fig.subplots(len(layers), len(norms), squeeze=False, sharex=True)
    shades = {"p15": "C9", "p50": "C1", "p85": "C6"}
    for i, layer in enumerate(layers):
        for j, norm in enumerate(norms):
            ax = axes[i, j]
            sub = act[(act.layer == layer) & (act["norm.name"] == norm)]
            for stat in ("p85", "p50", "p15"):
                s = sub[sub.stat == stat]
                if len(s):
                    _line_ci(ax, aggregate(s, ["step"], "value"), "step", shades[stat],
                             f"{stat[1:]}th percentile")
            ax.set_title(f"{_label(norm)}: {layer}", fontsize=8)
            if j == 0:
                ax.set_ylabel("activation value")
        axes[-1, 0].set_xlabel("step (SGD updates)")
    for ax in axes[-1]:
        ax.set_xlabel("step (SGD updates)")
    _legend_outside(fig, axes)
    fig.suptitle("Activation distribution over training (15th, 50th, 85th percentiles)")
    return fig


def hist_edges(n_bins: int, half_range: float) -> np.ndarray:
    """Bin edges of the probes' fixed histograms: n_bins equal bins over [-half_range, half_range]
    (the end bins also hold the tails)."""
    return np.linspace(-half_range, half_range, n_bins + 1)


@figure
def activation_histograms(curves: pd.DataFrame, layer: Optional[str] = None) -> Figure:
    """Histograms of one layer's activations over training, one panel per norm."""
    _need(curves, ["norm.name", "metric"], "activation histograms")
    h = _act_table(curves, "hist")
    if not len(h):
        raise NotDrawn("activation histograms: no hist/* probe rows")
    h["bin"] = pd.to_numeric(h.stat.str.removeprefix("bin"), errors="coerce")
    norms = _norms(h)
    layer = layer or (choose_layers({n: set(h.loc[h["norm.name"] == n, "layer"]) for n in norms}, k=3) or [None])[-1]
    if layer is None:
        raise NotDrawn("activation histograms: no probed layer common to every norm")
    h = h[h.layer == layer]
    n_bins = int(h.bin.max()) + 1
    half = float(h["probes.activations.hist_range"].dropna().iloc[0]) \
        if "probes.activations.hist_range" in h and h["probes.activations.hist_range"].notna().any() else 5.0
    edges = hist_edges(n_bins, half)
    fig = Figure(figsize=(3.4 * len(norms) + 0.8, 3.2), layout="constrained")
    axes = fig.subplots(1, len(norms), squeeze=False, sharey=True)[0]
    mesh = None
    # counts -> fractions per (run, step), then mean over seeds; one colour scale for all panels
    h = h.assign(frac=h.value / h.groupby(["run", "step"]).value.transform("sum"))
    vmax = float(h.groupby(["norm.name", "step", "bin"]).frac.mean().max())
    for ax, norm in zip(axes, norms):
        sub = h[h["norm.name"] == norm]
        grid = sub.groupby(["step", "bin"]).frac.mean().unstack("bin").reindex(columns=range(n_bins)).fillna(0)
        steps = grid.index.to_numpy(float)
        step_edges = np.concatenate([[steps[0] - (steps[1] - steps[0]) / 2 if len(steps) > 1 else steps[0] - 0.5],
                                     (steps[1:] + steps[:-1]) / 2,
                                     [steps[-1] + (steps[-1] - steps[-2]) / 2 if len(steps) > 1 else steps[-1] + 0.5]])
        mesh = ax.pcolormesh(step_edges, edges, grid.to_numpy().T, cmap="viridis",
                             norm=PowerNorm(0.5, vmin=0, vmax=vmax), shading="flat")
        ax.set_title(f"{_label(norm)}: {layer}", fontsize=8)
        ax.set_xlabel("step (SGD updates)")
        ax.grid(False)
    axes[0].set_ylabel(f"activation value (end bins include |x| > {half:g})")
    if mesh is not None:
        fig.colorbar(mesh, ax=list(axes), label="fraction of activations (sqrt scale)")
    fig.suptitle("Activation histograms over training")
    return fig


def _per_param_mean(curves: pd.DataFrame, prefix: str, stat: str) -> pd.DataFrame:
    """`{prefix}/{param}.{stat}` rows averaged over parameters: one value per (run, step)."""
    rows = curves[curves.metric.str.startswith(prefix + "/") & curves.metric.str.endswith("." + stat)]
    keys = [c for c in ("run", "step", "norm.name") if c in rows]
    return rows.groupby(keys, as_index=False).value.mean()


@figure
def internal_covariate_shift(curves: pd.DataFrame) -> Figure:
    """Santurkar et al. (2018) ICS: ||G - G'|| and cos(G, G') over training, per norm."""
    _need(curves, ["norm.name", "metric"], "internal covariate shift")
    l2, cos = _per_param_mean(curves, "ics", "l2"), _per_param_mean(curves, "ics", "cos")
    if not len(l2) and not len(cos):
        raise NotDrawn("internal covariate shift: no ics/* probe rows")
    fig = Figure(figsize=(8.0, 3.2), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True)
    for ax, df, ylabel in ((axes[0], l2, "‖G − G′‖₂ (log scale)"), (axes[1], cos, "cos(G, G′)")):
        for norm in _norms(df) if len(df) else []:
            _line_ci(ax, aggregate(df[df["norm.name"] == norm], ["step"], "value"), "step", _color(norm), _label(norm))
        ax.set_xlabel("step (SGD updates)")
        ax.set_ylabel(ylabel)
    if len(l2):
        _log10_axis(axes[0], "y", subs=(1.0, 2.0, 5.0))
    axes[0].set_title("gradient change from updating earlier layers (lower: less ICS)", fontsize=8)
    axes[1].set_title("direction agreement (higher: less ICS)", fontsize=8)
    _legend_outside(fig, axes)
    fig.suptitle("Internal covariate shift (Santurkar et al. 2018), mean over probed parameters")
    return fig


@figure
def loss_landscape(curves: pd.DataFrame) -> Figure:
    """Loss range along the gradient, gradient predictiveness and beta-smoothness over training."""
    _need(curves, ["norm.name", "metric"], "loss landscape")
    ls = curves[curves.metric.str.startswith("landscape/")]
    if not len(ls):
        raise NotDrawn("loss landscape: no landscape/* probe rows")
    fig = Figure(figsize=(10.5, 3.2), layout="constrained")
    axes = fig.subplots(1, 3, sharex=True)
    for norm in _norms(ls):
        sub = ls[ls["norm.name"] == norm]
        lo = aggregate(sub[sub.metric == "landscape/loss_min"], ["step"], "value")
        hi = aggregate(sub[sub.metric == "landscape/loss_max"], ["step"], "value")
        if len(lo) and len(hi):
            band = lo.merge(hi, on="step", suffixes=("_lo", "_hi"))
            axes[0].fill_between(band.step, band.mean_lo, band.mean_hi, color=_color(norm), alpha=0.3,
                                 label=_label(norm))
        for ax, m in ((axes[1], "landscape/grad_pred"), (axes[2], "landscape/beta_smooth")):
            a = aggregate(sub[sub.metric == m], ["step"], "value")
            if len(a):
                _line_ci(ax, a, "step", _color(norm), _label(norm))
    axes[0].set_ylabel("training loss (cross-entropy)")
    axes[1].set_ylabel("‖∇L(x) − ∇L(x − ηg)‖₂ (log scale)")
    axes[2].set_ylabel("effective β (log scale)")
    axes[0].set_title("loss range along the gradient step", fontsize=9)
    axes[1].set_title("gradient predictiveness (lower: better)", fontsize=9)
    axes[2].set_title("β-smoothness (lower: smoother)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("step (SGD updates)")
    for ax in axes[1:]:
        if ax.has_data():
            _log10_axis(ax, "y", subs=(1.0, 2.0, 5.0))
    _legend_outside(fig, axes)
    fig.suptitle("Loss landscape along the training trajectory (Santurkar et al. 2018, Fig. 4)")
    return fig


# ---------------------------------------------------------------- initialization, depth

@figure
def init_heatmap(runs: pd.DataFrame) -> Figure:
    """Final test accuracy over init scheme x init scale, one panel per norm (and per SkipInit
    variant where model.skipinit was swept: never pooled with the plain network)."""
    _need(runs, ["norm.name", "init.name", "init.scale", "final_acc"], "accuracy over initializations")
    if runs.groupby(["init.name", "init.scale"]).ngroups < 2:
        raise NotDrawn("accuracy over initializations: fewer than 2 (scheme, scale) cells")
    runs = runs.assign(variant=variant_names(runs))
    norms = [v for n in _norms(runs) for v in sorted(runs.loc[runs["norm.name"] == n, "variant"].unique())]
    names = sorted(runs["init.name"].dropna().unique())
    scales = sorted(runs["init.scale"].dropna().unique())
    fig = Figure(figsize=(1.0 + (0.9 * len(scales) + 1.0) * len(norms), 0.5 * len(names) + 1.6), layout="constrained")
    axes = fig.subplots(1, len(norms), squeeze=False, sharey=True)[0]
    chance = 100.0 / float(runs.get("model.num_classes", pd.Series([10])).dropna().iloc[0])
    im = None
    for ax, norm in zip(axes, norms):
        sub = runs[runs.variant == norm]
        agg = aggregate(sub, ["init.name", "init.scale"], "final_acc")
        grid = agg.pivot(index="init.name", columns="init.scale", values="mean").reindex(index=names, columns=scales) * PCT
        div = sub[sub.status == "diverged"].groupby(["init.name", "init.scale"]).size()
        im = ax.imshow(grid.to_numpy(float), cmap="magma", vmin=chance, vmax=max(chance + 1, runs.final_acc.max() * PCT),
                       aspect="auto")
        for (i, n), (j, s) in ((a, b) for a in enumerate(names) for b in enumerate(scales)):
            v = grid.iloc[i, j]
            if np.isfinite(v):
                mark = "†" if div.get((n, s), 0) else ""
                ax.text(j, i, f"{v:.0f}{mark}", ha="center", va="center", fontsize=7,
                        color="white" if v < (chance + grid.max().max()) / 2 else "black")
        ax.set_xticks(range(len(scales)), [f"{s:g}" for s in scales])
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("init scale (× weights after init)")
        ax.set_title(_label(norm))
        ax.grid(False)
    axes[0].set_ylabel("init scheme")
    if im is not None:
        fig.colorbar(im, ax=list(axes), label="final test accuracy (%)")
    fig.suptitle(f"Final test accuracy (%) over initializations ({_caption_n(runs, ci=False)}; "
                 "†: a seed diverged, counted as chance)", fontsize=9)
    return fig


@figure
def accuracy_vs_depth(runs: pd.DataFrame) -> Figure:
    """Final test accuracy vs depth per norm, plain (no shortcuts) and residual."""
    _need(runs, ["norm.name", "model.depth", "final_acc"], "accuracy vs depth")
    if runs["model.depth"].nunique() < 2:
        raise NotDrawn("accuracy vs depth: fewer than 2 depths")
    r = runs.assign(plain=runs["model.plain"].fillna(False).astype(bool) if "model.plain" in runs else False)
    fig = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = fig.subplots()
    _chance_line(ax, r)
    for norm in _norms(r):
        for plain, style in ((False, "-"), (True, "--")):
            sub = r[(r["norm.name"] == norm) & (r.plain == plain)]
            if len(sub):
                _line_ci(ax, aggregate(sub, ["model.depth"], "final_acc"), "model.depth", _color(norm),
                         f"{_label(norm)}, {'plain' if plain else 'residual'}", scale=PCT, errorbars=True,
                         linestyle=style)
    ax.set_xticks(sorted(r["model.depth"].dropna().unique()))
    ax.set_xlabel("depth (weighted layers)")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title(f"Trainability vs depth\n{_caption_n(r)}", fontsize=9)
    ax.legend(loc="best")
    return fig


# ---------------------------------------------------------------- regularization, inference, shift

def train_test_gap(runs: pd.DataFrame) -> pd.Series:
    """Final train accuracy (last logged window, train mode) minus final test accuracy."""
    return pd.to_numeric(runs["final.train/acc"], errors="coerce") - pd.to_numeric(runs["final_test_acc"], errors="coerce")


@figure
def regularization(runs: pd.DataFrame) -> Figure:
    """Test accuracy and train/test gap vs dropout rate, per norm."""
    _need(runs, ["norm.name", "final_acc", "final.train/acc", "final_test_acc"], "regularization")
    r = runs[runs.status == "completed"].copy()
    r["dropout"] = r["model.dropout"].fillna(0.0) if "model.dropout" in r else 0.0
    r["gap"] = train_test_gap(r)
    fig = Figure(figsize=(8.0, 3.4), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True)
    for norm in _norms(r):
        sub = r[r["norm.name"] == norm]
        _line_ci(axes[0], aggregate(sub, ["dropout"], "final_acc"), "dropout", _color(norm), _label(norm),
                 scale=PCT, errorbars=True)
        _line_ci(axes[1], aggregate(sub, ["dropout"], "gap"), "dropout", _color(norm), _label(norm),
                 scale=PCT, errorbars=True)
    for ax in axes:
        ax.set_xlabel("dropout rate")
        ax.set_xticks(sorted(r.dropout.unique()))
    axes[0].set_ylabel("final test accuracy (%)")
    axes[1].set_ylabel("train − test accuracy (percentage points)")
    axes[1].axhline(0, color="0.5", linewidth=0.8)
    axes[0].set_title("test accuracy", fontsize=9)
    axes[1].set_title("generalization gap (lower: less overfitting)", fontsize=9)
    _legend_outside(fig, axes)
    fig.suptitle(f"Regularization: normalization x dropout ({_caption_n(r)})")
    return fig


def inference_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Long rows (run, norm.name, seed, mode, eval_batch, acc) from final.infer/acc_{mode}.bs{B} columns."""
    cols = [c for c in runs.columns if c.startswith("final.infer/acc_") and ".bs" in c]
    keep = [c for c in ("run", "norm.name", "seed") if c in runs]
    if not cols:
        return pd.DataFrame(columns=keep + ["mode", "eval_batch", "acc"])
    long = runs[keep + cols].melt(id_vars=keep, var_name="metric", value_name="acc").dropna(subset=["acc"])
    parts = long.metric.str.extract(r"final\.infer/acc_(?P<mode>\w+)\.bs(?P<eval_batch>\d+)")
    return pd.concat([long[keep + ["acc"]], parts], axis=1).astype({"eval_batch": int})


@figure
def inference_modes(runs: pd.DataFrame) -> Figure:
    """Test accuracy vs evaluation batch size with running vs batch statistics, per norm."""
    long = inference_table(runs)
    if not len(long):
        raise NotDrawn("inference modes: no infer/acc_{running|batch}.bs{B} rows")
    fig = Figure(figsize=(5.4, 3.7), layout="constrained")
    ax = fig.subplots()
    for norm in _norms(long):
        for mode, style in (("running", "-"), ("batch", "--")):
            sub = long[(long["norm.name"] == norm) & (long["mode"] == mode)]
            if len(sub):
                sub = sub.groupby(["eval_batch", "seed"], as_index=False).acc.mean()  # seeds are the replicates
                _line_ci(ax, aggregate(sub, ["eval_batch"], "acc"), "eval_batch", _color(norm),
                         f"{_label(norm)}, {mode} statistics", scale=PCT, errorbars=True, linestyle=style)
        if "final.infer/acc_precise" in runs:
            p = runs.loc[runs["norm.name"] == norm, "final.infer/acc_precise"].dropna()
            if len(p):
                ax.axhline(p.mean() * PCT, color=_color(norm), linestyle=":", linewidth=1.2,
                           label=f"{_label(norm)}, precise statistics")
    _log2_axis(ax, long.eval_batch.unique())
    ax.set_xlabel("evaluation batch size (images, log₂ scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Inference with running vs batch statistics\n{_caption_n(runs)}", fontsize=9)
    ax.legend(loc="best")
    return fig


def shift_column(runs: pd.DataFrame) -> Optional[str]:
    """A swept config column naming the intensity shift (e.g. data.intensity_shift), if any."""
    cands = [c for c in runs.columns if "shift" in c.lower() and not c.startswith("final.")
             and pd.api.types.is_numeric_dtype(runs[c]) and runs[c].nunique() > 1]
    return cands[0] if cands else None


def is_on_off(values: pd.Series) -> bool:
    """A swept switch (e.g. data.intensity_shift false/true) rather than a magnitude."""
    return pd.api.types.is_bool_dtype(values) or set(values.dropna().unique()) <= {0, 1}


def _clean_vs_shifted_bars(ax, r: pd.DataFrame, norms: Sequence[str]) -> None:
    for k, (col_, hatch) in enumerate((("final.test/acc", ""), ("final.test_shifted/acc", "//"))):
        agg = aggregate(r, ["norm.name"], col_).set_index("norm.name").reindex(norms)
        xs = np.arange(len(norms)) + (k - 0.5) * 0.38
        m, ci = agg["mean"].to_numpy(float) * PCT, agg["ci"].fillna(0).to_numpy(float) * PCT
        yerr = np.nan_to_num(np.vstack([np.minimum(ci, m), np.minimum(ci, PCT - m)]))  # within 0-100%
        ax.bar(xs, m, width=0.36, yerr=yerr, capsize=3,
               color=[_color(n) for n in norms], hatch=hatch, edgecolor="white", alpha=1.0 if k == 0 else 0.55)
    ax.set_xticks(range(len(norms)), [_label(n) for n in norms])
    ax.set_xlabel("normalization")


@figure
def intensity_shift(runs: pd.DataFrame) -> Figure:
    """Clean vs intensity-shifted test accuracy per norm: bars (one panel per setting where a
    shift in training was switched on and off), or lines vs the shift's size where swept."""
    _need(runs, ["norm.name", "final.test/acc", "final.test_shifted/acc"], "intensity shift")
    r = runs[runs.status == "completed"].copy()
    col, norms = shift_column(r), _norms(r)
    if col and not is_on_off(r[col]):
        fig = Figure(figsize=(5.2, 3.6), layout="constrained")
        ax = fig.subplots()
        for norm in norms:
            sub = r[r["norm.name"] == norm]
            for metric, style, what in (("final.test/acc", "-", "clean"), ("final.test_shifted/acc", "--", "shifted")):
                _line_ci(ax, aggregate(sub, [col], metric), col, _color(norm), f"{_label(norm)}, {what}",
                         scale=PCT, errorbars=True, linestyle=style)
        ax.set_xlabel(col)
        ax.set_ylabel("test accuracy (%)")
        ax.legend(loc="best", fontsize=7)
        ax.set_title(f"Robustness to an intensity shift of the test images\n{_caption_n(r)}", fontsize=9)
        return fig
    panels = [(r[r[col].astype(bool) == on], f"trained {'with random shifts' if on else 'on clean images'}")
              for on in (False, True) if (r[col].astype(bool) == on).any()] if col else [(r, "")]
    fig = Figure(figsize=(1.2 + 3.4 * len(panels), 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    for ax, (sub, title) in zip(axes, panels):
        _clean_vs_shifted_bars(ax, sub, norms)
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("test accuracy (%)")
    # the bars take each norm's colour; the legend shows only what the hatching means
    axes[0].bar([0], [0], color="0.35", label="clean test images")
    axes[0].bar([0], [0], color="0.35", alpha=0.55, hatch="//", edgecolor="white", label="shifted test images")
    axes[0].legend(loc="best", fontsize=7)
    fig.suptitle(f"Robustness to an intensity shift of the test images ({_caption_n(r)})", fontsize=9)
    return fig


def save(fig: Figure, path_stem, formats: Sequence[str] = ("png", "pdf"), dpi: int = 150) -> list:
    """Write `path_stem`.png and .pdf; return the paths."""
    from pathlib import Path
    out = []
    for ext in formats:
        p = Path(f"{path_stem}.{ext}")
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, dpi=dpi)
        out.append(p)
    return out
