"""Analysis end to end: run folders -> tables, figures, report; partial sweeps; the CLI.

Fast except `test_report_from_a_real_smoke_lr_sweep`, which trains a tiny lr_sweep first.
"""
from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from matplotlib.figure import Figure

from bnstudy import plots, report, verdicts as V
from bnstudy.cli import main
from bnstudy.results import NoRunsError, load, with_config
from conftest import run_cli
from test_verdicts import (runs_batch, runs_depth, runs_infer, runs_init, runs_lr, runs_probes, runs_reg,
                           runs_shift)


# ---------------------------------------------------------------- hand-made run folders

def nest(flat: dict) -> dict:
    out: dict = {}
    for key, v in flat.items():
        *parents, leaf = key.split(".")
        d = out
        for p in parents:
            d = d.setdefault(p, {})
        d[leaf] = v
    return out


def write_run(folder: Path, r: dict, probes: pd.DataFrame | None = None) -> None:
    """A run folder as bnstudy.run writes it, from one factory row (see test_verdicts)."""
    folder.mkdir(parents=True)
    r = {k: (None if isinstance(v, float) and pd.isna(v) else v) for k, v in r.items()}
    config = {k: v for k, v in r.items() if (("." in k and not k.startswith(("final.", "steps_to_test_acc.")))
                                             or k in ("seed", "study"))}
    (folder / "config.yaml").write_text(yaml.safe_dump(nest(config)))
    summary = {"status": r["status"], "steps": r["steps"], "final_test_acc": r["final_test_acc"],
               "best_test_acc": r["best_test_acc"],
               "steps_to_test_acc": {k.split(".", 1)[1]: r[k] for k in r if k.startswith("steps_to_test_acc.")}}
    (folder / "summary.json").write_text(json.dumps(summary))
    rows = [(r["steps"], 1.0, k[len("final."):], v) for k, v in r.items() if k.startswith("final.") and v is not None]
    if r["final_test_acc"] is not None:
        rows += [(r["steps"] // 2, 0.5, "train/loss", 1.5), (r["steps"], 1.0, "train/loss", 1.0),
                 (r["steps"], 1.0, "test/acc", r["final_test_acc"])]
    pd.DataFrame(rows, columns=["step", "epoch", "metric", "value"]).to_csv(folder / "metrics.csv", index=False)
    if probes is not None and len(probes):
        probes[["step", "epoch", "metric", "value"]].to_csv(folder / "probes.csv", index=False)


@pytest.fixture(scope="module")
def every_study(tmp_path_factory) -> Path:
    """Run folders for every study, where each claim holds."""
    root = tmp_path_factory.mktemp("studies")
    tables = [runs_lr(), runs_batch(), runs_init(), runs_depth(), runs_reg(), runs_infer(), runs_shift()]
    for i, r in enumerate(pd.concat(tables, ignore_index=True).to_dict("records")):
        write_run(root / r["study"] / str(i), r)
    pruns, pcurves = runs_probes(bn_less_ics=True)
    for i, r in enumerate(pruns.to_dict("records")):
        write_run(root / "covariate_shift" / str(i), r, pcurves[pcurves.run == r["run"]].assign(epoch=0.0))
    return root


# ---------------------------------------------------------------- loading

def test_load_flattens_config_and_summary_and_keeps_partial_runs(tmp_path):
    base = runs_lr(seeds=1, lrs=(0.1, 3.0))
    for i, r in enumerate(base.to_dict("records")):
        write_run(tmp_path / "sweep" / str(i), r)
    (tmp_path / "sweep" / "0" / ".hydra").mkdir()
    (tmp_path / "sweep" / "0" / ".hydra" / "summary.json").write_text("{}")  # not a run
    running = tmp_path / "sweep" / "running"
    running.mkdir()
    (running / "config.yaml").write_text(yaml.safe_dump({"study": "lr_sweep", "norm": {"name": "bn"}}))
    (running / "summary.json").write_text(json.dumps({"status": "running", "steps": 0}))
    (running / "metrics.csv").write_text("step,epoch,metric,value\n4,0.25,train/loss,2.3\n8,0.5,train/lo")  # torn
    failed = tmp_path / "sweep" / "failed"
    failed.mkdir()
    (failed / "summary.json").write_text(json.dumps({"status": "failed", "error": "RuntimeError: boom",
                                                     "traceback": "Traceback...\n" * 50}))

    res = load([tmp_path / "sweep"])
    runs = res.runs.set_index("run")
    assert len(runs) == len(base) + 2 and not res.skipped
    assert {"optim.lr", "norm.name", "seed", "study", "scale.name", "status", "run_dir", "steps_to_test_acc.0.3",
            "final.train/loss", "final_acc"} <= set(runs.columns)
    assert "traceback" not in runs.columns and runs.loc["failed", "error"] == "RuntimeError: boom"
    assert runs.loc["running", "status"] == "running" and pd.isna(runs.loc["running", "final_acc"])
    diverged = runs[runs.status == "diverged"]
    assert len(diverged) and (diverged.final_acc == 0.1).all()  # chance, not missing
    assert set(res.curves.run) >= {"0", "running"} and (res.curves.run == "running").sum() >= 1


def test_missing_or_empty_sweep_dir(tmp_path):
    with pytest.raises(NoRunsError, match="does not exist"):
        load([tmp_path / "nope"])
    with pytest.raises(NoRunsError, match="no run folders"):
        load([tmp_path])


# ---------------------------------------------------------------- figures

def _probe_curves():
    runs, curves = runs_probes()
    return with_config(curves, runs, ["norm.name", "seed"])


FIGURES = {
    "accuracy_vs_lr": lambda: plots.accuracy_vs_lr(runs_lr()),
    "steps_to_target": lambda: plots.steps_to_target(runs_lr()),
    "accuracy_vs_batch_size": lambda: plots.accuracy_vs_batch_size(runs_batch()),
    "init_heatmap": lambda: plots.init_heatmap(runs_init()),
    "accuracy_vs_depth": lambda: plots.accuracy_vs_depth(runs_depth()),
    "regularization": lambda: plots.regularization(runs_reg()),
    "inference_modes": lambda: plots.inference_modes(runs_infer()),
    "intensity_shift": lambda: plots.intensity_shift(runs_shift()),
    "activation_percentiles": lambda: plots.activation_percentiles(_probe_curves()),
    "activation_histograms": lambda: plots.activation_histograms(_probe_curves()),
    "internal_covariate_shift": lambda: plots.internal_covariate_shift(_probe_curves()),
    "loss_landscape": lambda: plots.loss_landscape(_probe_curves()),
}


@pytest.mark.parametrize("name", FIGURES)
def test_each_figure_draws_with_labelled_axes(name, tmp_path):
    fig = FIGURES[name]()
    assert isinstance(fig, Figure)
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert any(ax.get_xlabel() for ax in axes) and any(ax.get_ylabel() for ax in axes)
    assert fig.legends or any(ax.get_legend() for ax in axes) or name.endswith(("heatmap", "histograms"))
    paths = plots.save(fig, tmp_path / name)
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)


def test_log_axes_where_the_sweep_is_logarithmic():
    assert plots.accuracy_vs_lr(runs_lr()).axes[0].get_xscale() == "log"
    assert plots.accuracy_vs_batch_size(runs_batch()).axes[0].get_xscale() == "log"


@pytest.mark.parametrize("fn", [plots.accuracy_vs_lr, plots.accuracy_vs_batch_size, plots.init_heatmap,
                                plots.accuracy_vs_depth, plots.inference_modes, plots.intensity_shift],
                         ids=lambda f: f.__name__)
def test_figure_without_its_rows_is_not_drawn(fn):
    with pytest.raises(plots.NotDrawn):
        fn(runs_lr().iloc[:1])


@pytest.mark.parametrize("fn", [plots.activation_percentiles, plots.activation_histograms,
                                plots.internal_covariate_shift, plots.loss_landscape], ids=lambda f: f.__name__)
def test_probe_figure_without_probe_rows_is_not_drawn(fn):
    c = _probe_curves()
    with pytest.raises(plots.NotDrawn):
        fn(c[c.metric.str.startswith("nothing/")])


# ---------------------------------------------------------------- the report

def test_report_with_every_study_present(every_study, tmp_path):
    out = tmp_path / "out"
    checks = report.report([every_study], out)
    verdicts = [v for vs in checks.values() for v in vs]
    assert len(verdicts) == 11 and all(v.verdict == V.REPRODUCED for v in verdicts), \
        [(v.claim, v.verdict, v.finding) for v in verdicts if v.verdict != V.REPRODUCED]
    pngs = sorted(p.stem for p in (out / "figures").glob("*.png"))
    assert pngs == sorted(report.FIGURE_STUDY) and len(list((out / "figures").glob("*.pdf"))) == len(pngs)
    md = (out / "report.md").read_text()
    assert md.count("**Verdict: reproduced**") == 11 and "runs missing" not in md
    assert md.count("![") == len(pngs)
    assert "(n=3)" in md and "±" in md  # numbers carry their CIs


def test_report_says_what_is_missing_and_skipped(tmp_path):
    sweep = tmp_path / "sweep"
    for i, r in enumerate(runs_batch(seeds=1).to_dict("records")):
        write_run(sweep / str(i), r)
    (sweep / "late").mkdir()
    (sweep / "late" / "summary.json").write_text(json.dumps({"status": "running"}))
    (sweep / "late" / "config.yaml").write_text(yaml.safe_dump({"study": "batch_size_sweep", "norm": {"name": "gn"}}))
    report.report([sweep], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    sections = [s for s in re.split(r"\n## ", md) if re.match(r"\d+\. ", s)]
    # one study's folders: one section, for its claim; the others named once, with their command
    assert len(sections) == 1 and sections[0].startswith("1. Small-batch degradation")
    assert "**Verdict: " in sections[0]
    assert f"**Verdict: {V.MISSING}**" not in md
    assert md.count("Not tested here") == 1 and "`python -m bnstudy run +exp=lr_sweep`" in md
    assert all(f"+exp={c.study}`" in md for c in report.CLAIMS if c.study != "batch_size_sweep")
    assert "**Verdict: inconclusive**" in md and "n=1" in md  # one seed: no verdict, point estimate shown
    assert "1 runs not finished" in md and "| late |" in md and "left out 1 unfinished runs (1 running)" in md
    assert "no finished runs of study lr_sweep" not in md  # only this study's figures are accounted for


def test_report_of_runs_missing_a_claim_keeps_its_section(tmp_path):
    """A study that is present but lacks the runs a claim needs still gets the claim's section,
    with the runs to make."""
    sweep = tmp_path / "sweep"
    for i, r in enumerate(runs_batch(seeds=2).query("`norm.name` == 'bn'").to_dict("records")):
        write_run(sweep / str(i), r)
    report.report([sweep], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert f"**Verdict: {V.MISSING}**" in md and "norm=gn" in md


def test_report_from_a_real_smoke_lr_sweep(tmp_path):
    """The one slow test: a real (tiny) lr_sweep, then the report through the command line."""
    sweep = tmp_path / "sweep"
    r = run_cli(["run", "+exp=lr_sweep", "scale=smoke", "optim.lr=0.03,3.0", "scale.seeds='0,1'", "model.depth=8",
                 "trainer.max_steps=4", "trainer.log_every=2", "data.train_subset=256", "data.test_subset=100",
                 f"hydra.sweep.dir={sweep}"], cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    # one more run still going, as in a sweep that is not finished
    first = next(p.parent for p in sweep.rglob("summary.json"))
    shutil.copytree(first, sweep / "still_running")
    s = json.loads((sweep / "still_running" / "summary.json").read_text())
    (sweep / "still_running" / "summary.json").write_text(json.dumps({**s, "status": "running"}))

    out = tmp_path / "report"
    r = run_cli(["report", str(sweep), "--out", str(out)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    # lr_sweep's two claims, then one line for the claims of the studies not run
    assert "wrote" in r.stdout and r.stdout.count("  BN ") + r.stdout.count("  Inference") == 2
    assert f"{len(report.CLAIMS) - 2} other claims not tested here" in r.stdout

    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 9 and set(runs.status) <= {"completed", "diverged", "running"}
    assert {"optim.lr", "data.batch_size", "norm.name", "seed", "study", "scale.name", "status", "run_dir",
            "final_test_acc", "best_test_acc", "steps", "wall_time_s", "train_images_per_s",
            "steps_to_test_acc.0.3"} <= set(runs.columns)
    assert set(runs["optim.lr"]) == {0.03, 3.0} and set(runs.seed) == {0, 1}
    with gzip.open(out / "curves.csv.gz", "rt") as f:
        curves = pd.read_csv(f)
    assert {"run", "step", "epoch", "metric", "value", "source"} <= set(curves.columns)
    assert {"train/loss", "test/acc"} <= set(curves.metric) and curves.run.nunique() == 9

    for name in ("convergence", "accuracy_vs_lr"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000 and (out / "figures" / f"{name}.pdf").exists()
    md = (out / "report.md").read_text()
    for claim in report.CLAIMS:  # lr_sweep's claims get sections; the others one line
        if claim.study == "lr_sweep":
            section = md.split(f". {claim.title}\n", 1)[1].split("\n## ", 1)[0]
            assert section.count("**Verdict: ") == len(claim.checks), claim.title
        else:
            assert f". {claim.title}\n" not in md and f"+exp={claim.study}`" in md
    assert "(n=2)" in md and "still_running" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == md.count("![") >= 2


def test_cli_missing_or_empty_sweep_dir_is_one_line(tmp_path, capsys):
    for args in (["report", str(tmp_path / "nope")], ["plot", str(tmp_path)]):
        with pytest.raises(SystemExit) as e:
            main(args)
        lines = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
        assert e.value.code == 2 and len(lines) == 1 and lines[0].startswith("bnstudy: error: "), lines


def test_cli_plot_writes_figures_only(every_study, tmp_path, capsys):
    main(["plot", str(every_study / "lr_sweep"), "--out", str(tmp_path / "o")])
    assert "wrote 3 figures" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "o").iterdir()} == {"figures"}
    assert (tmp_path / "o" / "figures" / "accuracy_vs_lr.png").exists()
