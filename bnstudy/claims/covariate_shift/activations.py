"""Activation drift (Ioffe & Szegedy 2015, Fig. 1): does BN keep each layer's input distribution
stable over training? Its check and its figures."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from ...analysis import style as S
from ...analysis.cells import EDGE_RULE
from ...analysis.rules import decision_text, Effect, has_norms, missing, Verdict
from ...analysis.stats import aggregate, fmt_ci
from .common import EACH_MODEL, PROTOCOL, RATIO, STUDY, act_table, judge_by_model, per_model, read_study

DRIFT = Effect("none's activation drift / BN's (geometric mean over seeds)", "ratio", RATIO)

ACT_RULE = (PROTOCOL + "Drift of a layer's activation distribution = the range over training of its 15th, 50th and "
            "85th percentiles, averaged, divided by the mean 15-85 spread (scale-free). Layers: those probed in both "
            "nets that are inputs to a nonlinearity, the norm layers' outputs (identity in the unnormalized net), as "
            "in Ioffe & Szegedy; only where no norm layer is probed, every probed output, else every probed layer. "
            "Per run, drift is averaged over layers; effect = mean "
            "log2(drift) of none minus that of BN (Welch t over seeds), shown as a ratio. " + EACH_MODEL
            + decision_text(DRIFT) + " (Ioffe & Szegedy 2015, Fig. 1b-c.) " + EDGE_RULE)


def activation_drift(act: pd.DataFrame) -> pd.DataFrame:
    """Per (run, layer): scale-free drift of the p15/p50/p85 percentiles over training: their
    range over training, averaged, over the mean 15-85 spread."""
    wide = act.pivot_table(index=["run", "layer", "step"], columns="stat", values="value").reset_index()
    rows = []
    for (run, layer), g in wide.groupby(["run", "layer"]):
        if g.step.nunique() < 2:
            continue
        spread = (g.p85 - g.p15).abs()
        rng = np.mean([g[s].max() - g[s].min() for s in ("p15", "p50", "p85")])
        rows.append((run, layer, rng / spread.mean() if spread.mean() > 0 else math.nan))
    return pd.DataFrame(rows, columns=["run", "layer", "drift"])


def drift_by_run(drift: pd.DataFrame, sel: pd.DataFrame) -> pd.DataFrame:
    """(run, norm.name, value): each run's drift (a (run, layer, drift) table) averaged over its layers."""
    drift = drift.merge(sel[["run", "norm.name"]], on="run")
    return drift.groupby(["run", "norm.name"], as_index=False).drift.mean().rename(columns={"drift": "value"})


def check_activations(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict:
    claim, title = "ics_activations", "BN keeps activation distributions stable during training"
    sel, c, notes = read_study(runs, curves)
    act = act_table(c, "act") if len(c) else c
    if len(act):
        act = act[act.stat.isin(["p15", "p50", "p85"])]
    if not len(act) or not has_norms(act, ("bn", "none")):
        return missing(claim, title, ACT_RULE, "covariate_shift runs with norm=bn and norm=none and activation "
                       "probes (`act/*.p15|p50|p85` rows in probes.csv)", STUDY, notes)
    layers = choose_layers({n: set(act.loc[act["norm.name"] == n, "layer"]) for n in ("bn", "none")}, k=10 ** 6)
    drift = activation_drift(act[act.layer.isin(layers)]).merge(sel[["run", "norm.name"]], on="run")
    if not len(drift):
        return missing(claim, title, ACT_RULE, "activation probes at >= 2 steps per run", STUDY, notes)
    per_run = drift.groupby(["run", "norm.name"], as_index=False).drift.mean().rename(columns={"drift": "value"})
    verdict, finding, _, estimates, fields = judge_by_model(sel, {"activation drift": per_run},
                                                            {"activation drift": DRIFT}, notes=notes)
    by_layer = aggregate(drift, ["layer", "norm.name"], "drift")
    wide = by_layer.pivot(index="layer", columns="norm.name", values="mean")
    if {"bn", "none"} <= set(wide.columns):
        finding += (f" Beside the rule: BN's mean drift is smaller at {int((wide.bn < wide.none).sum())} of "
                    f"{len(wide)} layers.")
    numbers = by_layer.assign(drift=[fmt_ci(m, h, n) for m, h, n in zip(by_layer["mean"], by_layer.ci, by_layer.n)]).pivot(
        index="layer", columns="norm.name", values="drift").reset_index()
    numbers.columns.name = None
    return Verdict(claim, title, verdict, ACT_RULE, finding, numbers, notes=notes, estimates=estimates, **fields)


def choose_layers(layers_by_norm: dict[str, set], k: int = 3) -> list[str]:
    """Up to k probed layers present for every norm, spread over depth; the input to a
    nonlinearity (a norm layer's output, identity in the unnormalized net) first, as in Ioffe & Szegedy."""
    common = sorted(set.intersection(*layers_by_norm.values())) if layers_by_norm else []
    for pick in (lambda l: "norm" in l and l.endswith(".out"), lambda l: l.endswith(".out"), lambda l: True):
        chosen = [l for l in common if pick(l)]
        if chosen:
            return S.spread_pick(chosen, k)
    return []


@S.figure
def activation_percentiles(curves: pd.DataFrame, layers: Optional[Sequence[str]] = None) -> Figure:
    """15th/50th/85th activation percentiles over training, per layer, with and without BN
    (in the style of Ioffe & Szegedy 2015, Fig. 1b-c)."""
    S.need(curves, ["norm.name", "metric"], "activation percentiles")
    act = act_table(curves, "act")
    act = act[act.stat.isin(["p15", "p50", "p85"])]
    if not len(act):
        raise S.NotDrawn("activation percentiles: no act/*.p15|p50|p85 probe rows")
    norms = S.norms_of(act)
    rows = []  # (title prefix, that net's rows, layer): each net's own layers
    for prefix, a in per_model(act):
        picked = list(layers) if layers else choose_layers({n: set(a.loc[a["norm.name"] == n, "layer"])
                                                            for n in S.norms_of(a)})
        rows += [(prefix, a, layer) for layer in picked]
    if not rows:
        raise S.NotDrawn("activation percentiles: no probed layer common to every norm")
    fig = Figure(figsize=(2.9 * len(norms) + 0.4, 2.2 * len(rows) + 0.8), layout="constrained")
    axes = fig.subplots(len(rows), len(norms), squeeze=False, sharex="row")
    shades = {"p15": "C9", "p50": "C1", "p85": "C6"}
    for i, (prefix, a, layer) in enumerate(rows):
        for j, norm in enumerate(norms):
            ax = axes[i, j]
            sub = a[(a.layer == layer) & (a["norm.name"] == norm)]
            for stat in ("p85", "p50", "p15"):
                s = sub[sub.stat == stat]
                if len(s):
                    S.line_ci(ax, aggregate(s, ["step"], "value"), "step", shades[stat],
                             f"{stat[1:]}th percentile")
            ax.set_title(f"{prefix}{S.label(norm)}: {layer}", fontsize=8)
            if j == 0:
                ax.set_ylabel("activation value")
    for ax in axes[-1]:
        ax.set_xlabel("step (SGD updates)")
    S.legend_outside(fig, axes)
    fig.suptitle("Activation distribution over training (15th, 50th, 85th percentiles)")
    return fig


def hist_edges(n_bins: int, half_range: float) -> np.ndarray:
    """Bin edges of the probes' fixed histograms: n_bins equal bins over [-half_range, half_range]
    (the end bins also hold the tails)."""
    return np.linspace(-half_range, half_range, n_bins + 1)


@S.figure
def activation_histograms(curves: pd.DataFrame, layer: Optional[str] = None) -> Figure:
    """Histograms of one layer's activations over training, one panel per norm."""
    S.need(curves, ["norm.name", "metric"], "activation histograms")
    h = act_table(curves, "hist")
    if not len(h):
        raise S.NotDrawn("activation histograms: no hist/* probe rows")
    h["bin"] = pd.to_numeric(h.stat.str.removeprefix("bin"), errors="coerce")
    norms = S.norms_of(h)
    rows = []  # (title prefix, that net's rows of its layer): each net its own layer
    for prefix, g in per_model(h):
        picked = layer or (choose_layers({n: set(g.loc[g["norm.name"] == n, "layer"]) for n in S.norms_of(g)},
                                         k=3) or [None])[-1]
        if picked is not None and (g.layer == picked).any():
            rows.append((prefix, g[g.layer == picked]))
    if not rows:
        raise S.NotDrawn("activation histograms: no probed layer common to every norm")
    h = pd.concat([g for _, g in rows])
    n_bins = int(h.bin.max()) + 1
    half = float(h["probes.activations.hist_range"].dropna().iloc[0]) \
        if "probes.activations.hist_range" in h and h["probes.activations.hist_range"].notna().any() else 5.0
    edges = hist_edges(n_bins, half)
    fig = Figure(figsize=(3.4 * len(norms) + 0.8, 3.2 * len(rows)), layout="constrained")
    grid_axes = fig.subplots(len(rows), len(norms), squeeze=False, sharey=True)
    mesh = None
    # counts -> fractions per (run, step), then mean over seeds; one colour scale for all panels
    frac = lambda d: d.assign(frac=d.value / d.groupby(["run", "step"]).value.transform("sum"))  # noqa: E731
    rows = [(prefix, frac(g)) for prefix, g in rows]
    vmax = max(float(g.groupby(["norm.name", "step", "bin"]).frac.mean().max()) for _, g in rows)
    for axes, (prefix, g) in zip(grid_axes, rows):
        for ax, norm in zip(axes, norms):
            sub = g[g["norm.name"] == norm]
            ax.grid(False)
            if not len(sub):
                continue
            grid = sub.groupby(["step", "bin"]).frac.mean().unstack("bin").reindex(columns=range(n_bins)).fillna(0)
            steps = grid.index.to_numpy(float)
            step_edges = np.concatenate([[steps[0] - (steps[1] - steps[0]) / 2 if len(steps) > 1 else steps[0] - 0.5],
                                         (steps[1:] + steps[:-1]) / 2,
                                         [steps[-1] + (steps[-1] - steps[-2]) / 2 if len(steps) > 1
                                          else steps[-1] + 0.5]])
            mesh = ax.pcolormesh(step_edges, edges, grid.to_numpy().T, cmap="viridis",
                                 norm=PowerNorm(0.5, vmin=0, vmax=vmax), shading="flat")
            ax.set_title(f"{prefix}{S.label(norm)}: {sub.layer.iloc[0]}", fontsize=8)
            ax.set_xlabel("step (SGD updates)")
        axes[0].set_ylabel(f"activation value (end bins include |x| > {half:g})")
    if mesh is not None:
        fig.colorbar(mesh, ax=list(grid_axes.ravel()), label="fraction of activations (sqrt scale)")
    fig.suptitle("Activation histograms over training")
    return fig
