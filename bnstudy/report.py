"""Assemble the study report: tables, figures and one verdict per claim, from finished runs.

`python -m bnstudy report SWEEP_DIR ... --out DIR` writes into DIR:
  runs.csv        one row per run (config, status, summary metrics)
  curves.csv.gz   every metrics.csv and probes.csv row, with a `run` column
  figures/        one PNG and PDF per figure whose runs are present
  report.md       per claim: numbers with 95% CIs, verdict, the rule behind it, figures
  report.html     the same, figures inline (self-contained)
Nothing is trained; partial sweeps are fine, and the report says what it left out and why.
"""
from __future__ import annotations

import base64
import datetime
import html
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import pandas as pd
from matplotlib.figure import Figure

from . import plots, verdicts as V
from .results import FINISHED, Results, load, study_runs, with_config

# ---------------------------------------------------------------- what the report covers


@dataclass
class Claim:
    key: str
    title: str
    statement: str  # the claim as published, with its source
    checks: Sequence[Callable]  # verdict functions: (runs) or (runs, curves) -> Verdict
    figures: Sequence[str]
    study: str


CLAIMS = [
    Claim("faster_training", "Faster training",
          "BatchNorm networks reach a given accuracy in far fewer training steps (Ioffe & Szegedy 2015, "
          "Sec. 4.2, Fig. 2).", [V.faster_training], ["convergence", "steps_to_target"], "lr_sweep"),
    Claim("higher_lr", "Higher usable learning rates",
          "BatchNorm allows much higher learning rates without divergence (Ioffe & Szegedy 2015, Sec. 3.3; "
          "Bjorck et al. 2018; Santurkar et al. 2018).", [V.higher_lr], ["accuracy_vs_lr"], "lr_sweep"),
    Claim("small_batch", "Small-batch degradation",
          "BatchNorm's accuracy falls at very small batches (2-4 images), where its statistics are noisy; "
          "GroupNorm's does not (Wu & He 2018, Fig. 1).", [V.small_batch], ["accuracy_vs_batch_size"],
          "batch_size_sweep"),
    Claim("covariate_shift", "Internal covariate shift",
          "BatchNorm works by reducing internal covariate shift: layer input distributions stay stable during "
          "training (Ioffe & Szegedy 2015, Fig. 1). Santurkar et al. (2018) measure ICS through gradients, "
          "find BN does not reduce it, and credit a smoother loss landscape instead.",
          [V.ics_activations, V.ics_gradients, V.smoother_landscape],
          ["activation_percentiles", "activation_histograms", "internal_covariate_shift", "loss_landscape"],
          "covariate_shift"),
    Claim("regularization", "Regularization",
          "BatchNorm regularizes the model and reduces the need for dropout (Ioffe & Szegedy 2015, Sec. 3.4).",
          [V.regularization], ["regularization"], "regularization"),
    Claim("init", "Less dependence on initialization",
          "BatchNorm makes training less sensitive to the initial weights' scale and scheme (Ioffe & Szegedy "
          "2015, Sec. 3.3).", [V.init_robustness], ["init_heatmap"], "init_sweep"),
    Claim("depth", "Trainability of deep networks",
          "BatchNorm makes deep networks trainable that do not train without it, above all plain networks "
          "without shortcuts (He et al. 2016, Fig. 1; Bjorck et al. 2018).", [V.deep_trainability],
          ["accuracy_vs_depth"], "depth_sweep"),
    Claim("inference", "Inference with running vs batch statistics",
          "At inference BN must use population (running) statistics: the output must not depend on the other "
          "images in the batch, which matters most for small batches (Ioffe & Szegedy 2015, Sec. 3.1).",
          [V.inference_statistics], ["inference_modes"], "inference"),
    Claim("intensity_shift", "Robustness to an intensity shift",
          "Normalizing activations makes the network robust to a change of input intensity at test time.",
          [V.intensity_robustness], ["intensity_shift"], "intensity_shift"),
]

FIGURE_STUDY = {f: c.study for c in CLAIMS for f in c.figures}
CURVE_COLUMNS = ["norm.name", "optim.lr", "seed", "status", "probes.activations.hist_range"]


def run_checks(res: Results) -> dict[str, list[V.Verdict]]:
    out = {}
    for claim in CLAIMS:
        # probe-based checks also read the curves: their signature says so
        out[claim.key] = [fn(res.runs, res.curves) if len(inspect.signature(fn).parameters) == 2 else fn(res.runs)
                          for fn in claim.checks]
    return out


def _figure(name: str, res: Results, params: dict) -> Figure:
    sel, _ = study_runs(res.runs, FIGURE_STUDY[name])
    if not len(sel):
        raise plots.NotDrawn(f"no finished runs of study {FIGURE_STUDY[name]}")
    fn = getattr(plots, name)
    if name in ("convergence", "activation_percentiles", "activation_histograms", "internal_covariate_shift",
                "loss_landscape"):
        return fn(with_config(res.curves[res.curves.run.isin(sel.run)], sel, CURVE_COLUMNS))
    if name == "steps_to_target":
        return fn(sel[sel["norm.name"].isin(["bn", "none"])], target=params.get("target"))
    return fn(sel)


def draw_figures(res: Results, checks: Optional[dict] = None) -> dict[str, Union[Figure, str]]:
    """Every figure whose runs are present; for the others, why it was not drawn."""
    params = {k: v for vs in (checks or {}).values() for vd in vs for k, v in vd.params.items()}
    out: dict[str, Union[Figure, str]] = {}
    for name in FIGURE_STUDY:
        try:
            out[name] = _figure(name, res, params)
        except plots.NotDrawn as e:
            out[name] = str(e)
    return out


def write_figures(figs: dict, fig_dir: Path) -> list[Path]:
    written = []
    for name, fig in figs.items():
        if isinstance(fig, Figure):
            written += plots.save(fig, fig_dir / name)
    return written


# ---------------------------------------------------------------- a tiny document model: md and html

Block = tuple  # ("h1"|"h2"|"h3"|"p"|"list", text or items) | ("table", DataFrame) | ("fig", name, caption)


def _md_cell(v) -> str:
    if isinstance(v, float):
        v = f"{v:g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def md_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(_md_cell(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def to_markdown(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + b[1])
        elif kind == "p":
            out.append(b[1])
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in b[1]))
        elif kind == "table":
            out.append(md_table(b[1]))
        elif kind == "fig":
            out.append(f"![{b[2]}](figures/{b[1]}.png)\n\n*{b[2]}* ([PDF](figures/{b[1]}.pdf))")
    return "\n\n".join(out) + "\n"


def _inline_html(text: str) -> str:
    t = html.escape(text, quote=False)
    t = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)
    t = re.sub(r"`(.+?)`", r"<code>\1</code>", t)
    return re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", t)


CSS = """body{font-family:system-ui,sans-serif;max-width:62rem;margin:2rem auto;padding:0 1rem;line-height:1.45;color:#222}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}figure{margin:1rem 0}figcaption{font-size:.85rem;color:#555}
code{background:#f3f3f3;padding:0 .2rem}.reproduced{color:#17702a}.not-reproduced{color:#a31515}.inconclusive{color:#a36a00}.not-tested{color:#666}"""


def to_html(blocks: list[Block], fig_dir: Path, title: str) -> str:
    body = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{_inline_html(b[1])}</{kind}>")
        elif kind == "p":
            cls = ""
            m = re.match(r"\*\*Verdict: (.+?)\*\*", b[1])
            if m:
                cls = f' class="{m.group(1).split(" (")[0].replace(" ", "-")}"'
            body.append(f"<p{cls}>{_inline_html(b[1])}</p>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b[1]) + "</ul>")
        elif kind == "table":
            body.append(b[1].to_html(index=False, border=0, na_rep="—", float_format=lambda x: f"{x:g}"))
        elif kind == "fig":
            png = fig_dir / f"{b[1]}.png"
            data = base64.b64encode(png.read_bytes()).decode() if png.exists() else ""
            body.append(f'<figure><img alt="{html.escape(b[2])}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{_inline_html(b[2])}</figcaption></figure>")
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


# ---------------------------------------------------------------- the report

FIGURE_CAPTIONS = {
    "convergence": "Train loss and test accuracy vs step at learning rates both norms ran (mean over seeds, 95% CI band).",
    "steps_to_target": "Steps until the test accuracy first reached the target, vs learning rate.",
    "accuracy_vs_lr": "Final and best test accuracy vs learning rate; x: a diverged seed.",
    "accuracy_vs_batch_size": "Final test accuracy vs batch size (Wu & He 2018, Fig. 1 style).",
    "activation_percentiles": "15th/50th/85th activation percentiles over training (Ioffe & Szegedy 2015, Fig. 1 style).",
    "activation_histograms": "Activation histograms over training.",
    "internal_covariate_shift": "Santurkar et al. ICS: gradient change from updating earlier layers.",
    "loss_landscape": "Loss range, gradient predictiveness and β-smoothness along the gradient.",
    "init_heatmap": "Final test accuracy over init scheme x scale.",
    "accuracy_vs_depth": "Final test accuracy vs depth, plain and residual.",
    "regularization": "Test accuracy and train/test gap vs dropout rate.",
    "inference_modes": "Accuracy with running vs batch statistics vs evaluation batch size.",
    "intensity_shift": "Clean vs intensity-shifted test accuracy.",
}


def _status_table(runs: pd.DataFrame) -> pd.DataFrame:
    t = runs.groupby(["study", "status"]).size().unstack("status", fill_value=0)
    t.columns.name = None
    return t.reset_index()


def _unfinished(runs: pd.DataFrame) -> pd.DataFrame:
    u = runs[~runs.status.isin(FINISHED)]
    why = u.get("error", pd.Series("", index=u.index)).fillna("")
    cols = [c for c in ("run", "study", "norm.name", "optim.lr", "seed") if c in u]
    return u[cols].assign(status=u.status, why=why.str.slice(0, 120)).reset_index(drop=True)


def shown_claims(runs: pd.DataFrame) -> list[Claim]:
    """The claims whose study has run folders here (all of them when none has): a claim of
    another study gets one line in the report, not a section."""
    present = set(runs.get("study", pd.Series(dtype=str)).dropna())
    return [c for c in CLAIMS if c.study in present] or list(CLAIMS)


def build(res: Results, checks: dict, figs: dict, sources: Sequence[str]) -> list[Block]:
    runs = res.runs
    shown = shown_claims(runs)
    absent = [c for c in CLAIMS if c not in shown]
    blocks: list[Block] = [("h1", "BatchNorm claims: what these runs show")]
    version = ", ".join(sorted(map(str, runs.get("git_commit", pd.Series(dtype=str)).dropna().unique()))) or "unknown"
    blocks.append(("p", f"Made by `python -m bnstudy report {' '.join(map(str, sources))}` on "
                        f"{datetime.date.today().isoformat()} from {len(runs)} run folders "
                        f"(code commit {version}). Nothing was retrained."))
    blocks.append(("table", _status_table(runs)))
    blocks.append(("h2", "Summary"))
    blocks.append(("table", pd.DataFrame([{"claim": c.title, "check": v.title, "verdict": v.verdict}
                                          for c in shown for v in checks[c.key]])))
    if absent:
        blocks.append(("p", "Not tested here (no runs of their study among these folders): " + "; ".join(
            f"{c.title.lower()} (`python -m bnstudy run +exp={c.study}`)" for c in absent) + "."))
    blocks.append(("p", "How to read it: numbers are means over seeds with a 95% Student-t interval "
                        "(`mean ± half-width (n=seeds)`; with one seed, no interval). A diverged run counts as "
                        "chance accuracy. Each verdict follows the rule printed beside it; a verdict needs "
                        f"at least {V.MIN_SEEDS} seeds per compared cell, and a compared cell at least "
                        f"{100 * V.TRAINED_MARGIN:.0f} points above chance; otherwise it is inconclusive. "
                        "Only finished runs (completed or diverged) enter the numbers; each study is read at its "
                        "largest scale present."))
    for i, claim in enumerate(shown, 1):
        blocks.append(("h2", f"{i}. {claim.title}"))
        blocks.append(("p", f"*Claim.* {claim.statement}"))
        for v in checks[claim.key]:
            if len(checks[claim.key]) > 1:
                blocks.append(("h3", v.title))
            blocks.append(("p", f"**Verdict: {v.verdict}**" + (f" — {v.title}." if len(checks[claim.key]) == 1 else "")))
            blocks.append(("p", f"*Rule.* {v.rule}"))
            if v.missing:
                blocks.append(("p", f"*Not tested:* {v.missing}."))
            if v.finding:
                blocks.append(("p", f"*Finding.* {v.finding}"))
            if v.notes:
                blocks.append(("list", v.notes))
            if len(v.numbers):
                blocks.append(("table", v.numbers))
        for name in claim.figures:
            if isinstance(figs.get(name), Figure):
                blocks.append(("fig", name, FIGURE_CAPTIONS.get(name, name)))
    blocks.append(("h2", "Left out"))
    unfinished = _unfinished(runs)
    blocks.append(("p", f"{len(unfinished)} runs not finished (running, failed or interrupted) were left out"
                   + (":" if len(unfinished) else ".")))
    if len(unfinished):
        blocks.append(("table", unfinished))
    if res.skipped:
        blocks.append(("p", "Unreadable run folders:"))
        blocks.append(("list", [f"`{d}`: {why}" for d, why in res.skipped]))
    studies = {c.study for c in shown}
    not_drawn = [f"`{n}`: {why}" for n, why in figs.items() if not isinstance(why, Figure) and FIGURE_STUDY[n] in studies]
    if not_drawn:
        blocks.append(("p", "Figures not drawn:"))
        blocks.append(("list", not_drawn))
    return blocks


def write_tables(res: Results, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    res.runs.to_csv(out / "runs.csv", index=False)
    cols = ["run"] + [c for c in res.curves.columns if c != "run"]
    res.curves[cols].to_csv(out / "curves.csv.gz", index=False, compression="gzip")


def plot(sources: Sequence[Path], out: Path) -> dict[str, Union[Path, str]]:
    """Figures only: `out`/figures/*.png|pdf. Returns name -> PNG path, or why it was not drawn."""
    res = load(sources)
    checks = run_checks(res)
    figs = draw_figures(res, checks)
    write_figures(figs, Path(out) / "figures")
    return {n: (Path(out) / "figures" / f"{n}.png" if isinstance(f, Figure) else f) for n, f in figs.items()}


def report(sources: Sequence[Path], out: Path) -> dict[str, list[V.Verdict]]:
    """Tables, figures, report.md and report.html into `out`; returns the verdicts of the
    claims whose study is among the runs."""
    out = Path(out)
    res = load(sources)
    write_tables(res, out)
    checks = run_checks(res)
    figs = draw_figures(res, checks)
    write_figures(figs, out / "figures")
    blocks = build(res, checks, figs, sources)
    (out / "report.md").write_text(to_markdown(blocks))
    (out / "report.html").write_text(to_html(blocks, out / "figures", "BatchNorm claims report"))
    return {c.key: checks[c.key] for c in shown_claims(res.runs)}
