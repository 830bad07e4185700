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
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from bnstudy.analysis import report, style
from bnstudy.analysis.results import NoRunsError, load, variant_names, with_config
from bnstudy.analysis.rules import MISSING, REPRODUCED
from bnstudy.claims import (batch_noise, covariate_shift, depth, faster_training, higher_lr, inference, init,
                            init_rates, intensity_shift, norm_batch, regularization, small_batch, steps_to_target,
                            zero_init)
from bnstudy.cli import main
from bnstudy.runfolder import RunLock
from conftest import run_cli
from test_claim_batch_noise import runs_noise
from test_claim_init_rates import FRAGILE, runs_rates
from test_claim_norm_batch import runs_norm_batch, runs_with_gn
from test_claim_stable_lr import study as range_study
from test_claim_zero_init import runs_zero
from test_claims import (runs_batch, runs_depth, runs_infer, runs_init, runs_lr, runs_probes, runs_reg, runs_shift,
                         runs_steps)


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


def write_run(folder: Path, r: dict, probes: pd.DataFrame | None = None, metrics: pd.DataFrame | None = None) -> None:
    """A run folder as bnstudy.run writes it, from one factory row (see test_claims); `metrics`,
    if given, are its metrics.csv rows (step, metric, value) in place of the made-up ones."""
    folder.mkdir(parents=True)
    r = {k: (None if isinstance(v, float) and pd.isna(v) else v) for k, v in r.items()}
    config = {k: v for k, v in r.items() if (("." in k and not k.startswith(("final.", "steps_to_test_acc.")))
                                             or k in ("seed", "study"))}
    (folder / "config.yaml").write_text(yaml.safe_dump(nest(config)))
    summary = {"status": r["status"], "steps": r["steps"], "epochs": r["epochs"], "final_test_acc": r["final_test_acc"],
               "best_test_acc": r["best_test_acc"],
               "steps_to_test_acc": {k.split(".", 1)[1]: r[k] for k in r if k.startswith("steps_to_test_acc.")}}
    if r.get("final_test_acc_precise") is not None:
        summary["final_test_acc_precise"] = r["final_test_acc_precise"]
    (folder / "summary.json").write_text(json.dumps(summary))
    rows = [(r["steps"], 1.0, k[len("final."):], v) for k, v in r.items() if k.startswith("final.") and v is not None]
    if r["final_test_acc"] is not None:
        rows += [(r["steps"] // 2, 0.5, "train/loss", 1.5), (r["steps"], 1.0, "train/loss", 1.0),
                 (r["steps"], 1.0, "test/acc", r["final_test_acc"])]
    rows = pd.DataFrame(rows, columns=["step", "epoch", "metric", "value"])
    if metrics is not None:
        rows = metrics.assign(epoch=0.0)[["step", "epoch", "metric", "value"]]
    rows.to_csv(folder / "metrics.csv", index=False)
    if probes is not None and len(probes):
        probes[["step", "epoch", "metric", "value"]].to_csv(folder / "probes.csv", index=False)


@pytest.fixture(scope="module")
def every_study(tmp_path_factory) -> Path:
    """Run folders for every study, where each claim holds."""
    root = tmp_path_factory.mktemp("studies")
    tables = [runs_lr(), runs_steps(), runs_batch(), runs_with_gn(gn_acc=0.77), runs_init(), runs_depth(), runs_reg(), runs_infer(),
              runs_shift(), runs_noise(), runs_zero(), runs_rates(skip=FRAGILE)]
    for i, r in enumerate(pd.concat(tables, ignore_index=True).to_dict("records")):
        write_run(root / r["study"] / str(i), r)
    rruns, rcurves = range_study()
    for i, r in enumerate(rruns.to_dict("records")):
        write_run(root / "lr_range" / str(i), r, metrics=rcurves[rcurves.run == r["run"]])
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

    with RunLock(running):  # its process lives (a "running" run whose process is gone reads interrupted)
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


def test_a_seed_in_two_sweep_folders_counts_once(tmp_path, capsys):
    """The same (config, seed) under two sweep folders (a resumed sweep copied elsewhere, say) is
    one replicate: counted once, the other named in a warning, its interval not narrowed."""
    base = runs_batch(seeds=2)
    for i, r in enumerate(base.to_dict("records")):
        write_run(tmp_path / "a" / str(i), r)
        write_run(tmp_path / "b" / str(i), {**r, "data.root": "/elsewhere"})  # where the data lay: same experiment
    write_run(tmp_path / "b" / "new", {**base.iloc[0].to_dict(), "seed": 7})  # a new seed is kept
    res = load([tmp_path / "a", tmp_path / "b"])
    assert len(res.runs) == len(base) + 1 and len(res.duplicates) == len(base)
    assert res.runs.groupby(["norm.name", "data.batch_size", "optim.lr", "seed"]).size().max() == 1
    assert all("the same config and seed as" in w for w in res.warnings())
    assert set(res.curves.run) == set(res.runs.run)
    main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.splitlines()
    assert len([l for l in err if l.startswith("bnstudy: warning: skipped")]) == len(base)


def test_a_truncated_summary_is_skipped_with_one_line_and_the_report_is_written(tmp_path, capsys):
    for i, r in enumerate(runs_batch(seeds=2).to_dict("records")):
        write_run(tmp_path / "sweep" / str(i), r)
    (tmp_path / "sweep" / "0" / "summary.json").write_text('{"status": "comp')  # a run killed mid-write
    (tmp_path / "sweep" / "1" / "summary.json").write_text('["not", "a", "summary"]')
    main(["report", str(tmp_path / "sweep"), "--out", str(tmp_path / "out")])
    out = capsys.readouterr()
    warnings = [l for l in out.err.splitlines() if l.strip()]
    assert len(warnings) == 2 and all(l.startswith("bnstudy: warning: skipped ") for l in warnings), warnings
    assert "/sweep/0: unreadable" in warnings[0] or "/sweep/0: unreadable" in warnings[1]
    assert (tmp_path / "out" / "report.md").exists() and "Small-batch" in out.out + (tmp_path / "out" / "report.md").read_text()


@pytest.mark.slow  # rebuilds every published study's report: ~25 s
def test_a_published_report_folder_rebuilds_the_same_report(every_study, tmp_path):
    """`report` over the folder an earlier report wrote (runs.csv, curves.csv.gz) gives the same
    verdicts without the run folders: how results/ is regenerated after a rule changes."""
    first = report.report([every_study], tmp_path / "first")
    again = report.report([tmp_path / "first"], tmp_path / "again")
    assert {k: [v.verdict for v in vs] for k, vs in first.items()} == \
           {k: [v.verdict for v in vs] for k, vs in again.items()}
    assert pd.read_csv(tmp_path / "again" / "runs.csv").shape == pd.read_csv(tmp_path / "first" / "runs.csv").shape


# ---------------------------------------------------------------- figures

def _probe_curves():
    runs, curves = runs_probes()
    return with_config(curves, runs, ["norm.name", "seed"])


def _lr_curves():
    """Train loss and test accuracy every 10 steps for runs_lr's runs that trained, config attached."""
    runs = runs_lr()
    rows = [(run, step, metric, value) for run in runs.loc[runs.status == "completed", "run"]
            for step in range(10, 50, 10) for metric, value in (("train/loss", 2.3 / step ** 0.3),
                                                                 ("test/acc", 0.7 * step / 40))]
    curves = pd.DataFrame(rows, columns=["run", "step", "metric", "value"]).assign(epoch=0.0, source="metrics")
    return with_config(curves, runs, report.CURVE_COLUMNS)


def _steps_curves():
    """Test accuracy every 8 steps for runs_steps' runs, rising to 30% at each run's step, config attached."""
    runs = runs_steps()
    rows = [(r.run, step, "test/acc", min(0.3 * step / r["steps_to_test_acc.0.3"], 0.5))
            for _, r in runs.iterrows() for step in range(8, 320, 8)]
    curves = pd.DataFrame(rows, columns=["run", "step", "metric", "value"]).assign(epoch=0.0, source="metrics")
    return with_config(curves, runs, report.CURVE_COLUMNS)


def _steps_with_a_diverged_seed():
    runs = runs_steps()
    first_none = runs.index[runs["norm.name"] == "none"][0]
    runs.loc[first_none, ["status", "final_acc"]] = ["diverged", 0.1]
    return runs


FIGURES = {
    "accuracy_vs_lr": lambda: higher_lr.accuracy_vs_lr(runs_lr()),
    "convergence": lambda: faster_training.convergence(_lr_curves()),
    "steps_to_target": lambda: faster_training.steps_to_target(runs_lr()),
    "accuracy_vs_step": lambda: steps_to_target.accuracy_vs_step(_steps_curves(), target=0.3),
    "steps_per_seed": lambda: steps_to_target.steps_per_seed(_steps_with_a_diverged_seed(), target=0.3),
    "accuracy_vs_batch_size": lambda: small_batch.accuracy_vs_batch_size(runs_batch()),
    "accuracy_vs_norm_batch": lambda: norm_batch.accuracy_vs_norm_batch(runs_norm_batch()),
    "init_heatmap": lambda: init.init_heatmap(runs_init()),
    "accuracy_vs_depth": lambda: depth.accuracy_vs_depth(runs_depth()),
    "regularization": lambda: regularization.regularization(runs_reg()),
    "inference_modes": lambda: inference.inference_modes(runs_infer()),
    "intensity_shift": lambda: intensity_shift.intensity_shift(runs_shift()),
    "activation_percentiles": lambda: covariate_shift.activation_percentiles(_probe_curves()),
    "activation_histograms": lambda: covariate_shift.activation_histograms(_probe_curves()),
    "internal_covariate_shift": lambda: covariate_shift.internal_covariate_shift(_probe_curves()),
    "loss_landscape": lambda: covariate_shift.loss_landscape(_probe_curves()),
    "gap_by_noise": lambda: batch_noise.gap_by_noise(runs_noise()),
    "cost_by_seed": lambda: zero_init.cost_by_seed(runs_zero()),
    "init_best_rates_heatmap": lambda: init_rates.FIGURES["init_best_rates_heatmap"][0](runs_rates(), None, None),
}
ALL_FIGURES = [name for c in report.CLAIMS for name in c.FIGURES]


@pytest.mark.parametrize("name", FIGURES)
def test_each_figure_draws_with_labelled_axes(name, tmp_path):
    fig = FIGURES[name]()
    assert isinstance(fig, Figure)
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert any(ax.get_xlabel() for ax in axes) and any(ax.get_ylabel() for ax in axes)
    assert fig.legends or any(ax.get_legend() for ax in axes) or name.endswith(("heatmap", "histograms"))
    paths = style.save(fig, tmp_path / name)
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)


def test_log_axes_where_the_sweep_is_logarithmic():
    assert higher_lr.accuracy_vs_lr(runs_lr()).axes[0].get_xscale() == "log"
    assert small_batch.accuracy_vs_batch_size(runs_batch()).axes[0].get_xscale() == "log"


@pytest.mark.parametrize("name", ["accuracy_vs_lr", "convergence", "steps_to_target"])
def test_lr_sweep_figures_draw_skipinit_as_an_arm_of_its_own(name):
    """none + SkipInit (norm.name none) has its own line, color and legend entry, not none's."""
    fig = FIGURES[name]()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"BatchNorm", "no normalization", "no normalization + SkipInit"} <= set(labels), labels
    colors = {to_hex(line.get_color()) for ax in fig.axes for line in ax.get_lines()}
    arms = [to_hex(style.color(n)) for n in ("bn", "none", "none + SkipInit")]
    assert len(set(arms)) == 3 and set(arms) <= colors


@pytest.mark.parametrize("fn", [higher_lr.accuracy_vs_lr, small_batch.accuracy_vs_batch_size, init.init_heatmap,
                                depth.accuracy_vs_depth, inference.inference_modes, intensity_shift.intensity_shift],
                         ids=lambda f: f.__name__)
def test_figure_without_its_rows_is_not_drawn(fn):
    with pytest.raises(style.NotDrawn):
        fn(runs_lr().iloc[:1])


@pytest.mark.parametrize("fn", [covariate_shift.activation_percentiles, covariate_shift.activation_histograms,
                                covariate_shift.internal_covariate_shift, covariate_shift.loss_landscape],
                         ids=lambda f: f.__name__)
def test_probe_figure_without_probe_rows_is_not_drawn(fn):
    c = _probe_curves()
    with pytest.raises(style.NotDrawn):
        fn(c[c.metric.str.startswith("nothing/")])


# ---------------------------------------------------------------- the report

def test_report_with_every_study_present(every_study, tmp_path):
    out = tmp_path / "out"
    checks = report.report([every_study], out)
    verdicts = [v for vs in checks.values() for v in vs]
    assert len(verdicts) == sum(len(c.CHECKS) for c in report.CLAIMS) == 29 \
        and all(v.verdict == REPRODUCED for v in verdicts), \
        [(v.claim, v.verdict, v.finding) for v in verdicts if v.verdict != REPRODUCED]
    pngs = sorted(p.stem for p in (out / "figures").glob("*.png"))
    assert pngs == sorted(ALL_FIGURES) and len(list((out / "figures").glob("*.pdf"))) == len(pngs)
    md = (out / "report.md").read_text()
    assert md.count("**Verdict: reproduced**") == len(verdicts) and "runs missing" not in md
    assert md.count("![") == len(pngs)
    assert "(n=3)" in md and "±" in md  # numbers carry their CIs


def test_report_says_what_is_missing_and_skipped(tmp_path):
    sweep = tmp_path / "sweep"
    for i, r in enumerate(runs_batch(seeds=1).to_dict("records")):
        write_run(sweep / str(i), r)
    (sweep / "late").mkdir()
    (sweep / "late" / "summary.json").write_text(json.dumps({"status": "running"}))
    (sweep / "late" / "config.yaml").write_text(yaml.safe_dump({"study": "batch_size_sweep", "norm": {"name": "gn"}}))
    with RunLock(sweep / "late"):  # still going
        report.report([sweep], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    sections = [s for s in re.split(r"\n## ", md) if re.match(r"\d+\. ", s)]
    # one study's folders: one section, for its claim; the others named once, with their command
    assert len(sections) == 1 and sections[0].startswith("1. Small-batch degradation")
    assert "**Verdict: " in sections[0]
    assert f"**Verdict: {MISSING}**" not in md
    assert md.count("Not tested here") == 1 and "`python -m bnstudy run +exp=lr_sweep`" in md
    assert all(f"+exp={c.STUDY}`" in md for c in report.CLAIMS if c.STUDY != "batch_size_sweep")
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
    assert f"**Verdict: {MISSING}**" in md and "norm=gn" in md


@pytest.mark.slow
def test_report_from_a_real_smoke_lr_sweep(tmp_path):
    """The one slow test: a real (tiny) lr_sweep, then the report through the command line."""
    sweep = tmp_path / "sweep"
    r = run_cli(["run", "+exp=lr_sweep", "scale=smoke", "scale.seeds='0,1'", "model.depth=8",
                 "trainer.max_steps=4", "trainer.log_every=2", "data.train_subset=256", "data.test_subset=100",
                 f"hydra.sweep.dir={sweep}"], cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    # one more run still going, as in a sweep that is not finished
    first = next(p.parent for p in sweep.rglob("summary.json"))
    shutil.copytree(first, sweep / "still_running")
    s = json.loads((sweep / "still_running" / "summary.json").read_text())
    (sweep / "still_running" / "summary.json").write_text(json.dumps({**s, "status": "running"}))
    config = yaml.safe_load((sweep / "still_running" / "config.yaml").read_text())  # another seed: not a copy
    (sweep / "still_running" / "config.yaml").write_text(yaml.safe_dump({**config, "seed": 7}))

    out = tmp_path / "report"
    with RunLock(sweep / "still_running"):  # its process lives, so `report` reads it as running
        r = run_cli(["report", str(sweep), "--out", str(out)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    # lr_sweep's claims' checks, then one line for the claims of the studies not run
    lr_checks = sum(len(c.CHECKS) for c in report.CLAIMS if c.STUDY == "lr_sweep")
    assert "wrote" in r.stdout and r.stdout.count("  BN ") == lr_checks == 3, r.stdout
    assert f"{len(report.CLAIMS) - 2} other claims not tested here" in r.stdout

    runs = pd.read_csv(out / "runs.csv")
    # norm {bn, none, skipinit} x lr {0.1, 3.2} x 2 seeds, and the copy still running
    assert len(runs) == 13 and set(runs.status) <= {"completed", "diverged", "running"}
    assert {"optim.lr", "data.batch_size", "norm.name", "seed", "study", "scale.name", "status", "run_dir",
            "final_test_acc", "best_test_acc", "steps", "wall_time_s", "train_images_per_s",
            "steps_to_test_acc.0.3"} <= set(runs.columns)
    assert set(runs["optim.lr"]) == {0.1, 3.2} and set(runs.seed) == {0, 1, 7}
    finished = variant_names(runs[runs.status != "running"]).value_counts().to_dict()
    assert finished == {"bn": 4, "none": 4, "none + SkipInit": 4}, finished
    with gzip.open(out / "curves.csv.gz", "rt") as f:
        curves = pd.read_csv(f)
    assert {"run", "step", "epoch", "metric", "value", "source"} <= set(curves.columns)
    assert {"train/loss", "test/acc"} <= set(curves.metric) and curves.run.nunique() == 13

    for name in ("convergence", "accuracy_vs_lr"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000 and (out / "figures" / f"{name}.pdf").exists()
    md = (out / "report.md").read_text()
    for claim in report.CLAIMS:  # lr_sweep's claims get sections; the others one line
        if claim.STUDY == "lr_sweep":
            section = md.split(f". {claim.TITLE}\n", 1)[1].split("\n## ", 1)[0]
            assert section.count("**Verdict: ") == len(claim.CHECKS), claim.TITLE
        else:
            assert f". {claim.TITLE}\n" not in md and f"+exp={claim.STUDY}`" in md
    assert "(n=2)" in md and "still_running" in md and "| none + SkipInit |" in md
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


def _sweep(folder: Path, seeds, scale="cpu", data="cifar10_folder") -> Path:
    from test_claims import row
    for s in seeds:
        write_run(folder / f"seed={s}", row("lr_sweep", "bn", s, 0.7, **{"optim.lr": 0.1, "scale.name": scale,
                                                                        "data.name": data}))
    return folder


def test_report_never_replaces_a_report_of_other_runs_without_force(tmp_path, capsys):
    from bnstudy.cli import main
    out = tmp_path / "out"
    main(["report", str(_sweep(tmp_path / "a", [0, 1, 2])), "--out", str(out)])
    published = (out / "runs.csv").read_bytes()
    (out / "figures").mkdir(exist_ok=True)
    (out / "figures" / "stale.png").write_bytes(b"a figure the old report drew")
    (out / "README.md").write_text("hand-written")
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["report", str(_sweep(tmp_path / "b", [5, 6])), "--out", str(out)])
    assert e.value.code == 2 and "--force" in capsys.readouterr().err
    assert (out / "runs.csv").read_bytes() == published  # nothing written
    main(["report", str(tmp_path / "b"), "--out", str(out), "--force"])
    assert sorted(pd.read_csv(out / "runs.csv").seed) == [5, 6]
    assert not (out / "figures" / "stale.png").exists() and (out / "README.md").read_text() == "hand-written"
    # the same sweep, grown by a run, replaces its own report without --force
    main(["report", str(_sweep(tmp_path / "b", [7])), "--out", str(out)])
    assert sorted(pd.read_csv(out / "runs.csv").seed) == [5, 6, 7]


def test_a_report_of_smoke_or_synthetic_runs_says_it_tests_the_plumbing(tmp_path):
    out = tmp_path / "out"
    report.report([_sweep(tmp_path / "smoke", [0, 1], scale="smoke", data="synthetic")], out)
    blocks = (out / "report.md").read_text().split("\n\n")
    assert blocks[1].startswith("> **")  # the banner, right under the title
    assert report.plumbing_only(pd.read_csv(out / "runs.csv"))
    real = tmp_path / "real"
    report.report([_sweep(tmp_path / "cpu", [0, 1])], real)
    assert not (real / "report.md").read_text().split("\n\n")[1].startswith("> **")


def test_a_sweep_of_no_named_study_gets_a_comparison_of_its_arms(tmp_path):
    """`run -m norm=bn,gn` then `report`: each arm's accuracy over seeds with an interval, and its
    curve; no claim is listed as untested in its place."""
    from bnstudy.analysis import compare
    from test_claims import row
    for norm, acc in (("bn", 0.8), ("gn", 0.7)):
        for s in range(3):
            write_run(tmp_path / "sweep" / f"{norm}-{s}", row("run", norm, s, acc + 0.01 * s,
                                                              **{"optim.lr": 0.1, "scale.name": "cpu"}))
    res = report.load([tmp_path / "sweep"])
    t = compare.table(res.runs).set_index("arm")
    assert list(t.index) == ["norm=bn", "norm=gn"] and set(t.seeds) == {3}
    assert t.loc["norm=bn", "final test accuracy (%)"].startswith("81.0 ±")
    shown = report.report([tmp_path / "sweep"], tmp_path / "out")
    assert shown == {}  # no claim's study: no claim sections
    assert (tmp_path / "out" / "figures" / "arm_curves.png").exists()
    assert "arm_curves" in report.plot([tmp_path / "sweep"], tmp_path / "plots")


def test_the_summary_leads_with_each_verdict_its_effect_and_interval(every_study, tmp_path):
    out = tmp_path / "out"
    checks = report.report([every_study], out)
    shown = report.shown_claims(report.load([every_study]).runs)
    table = report.summary_table(shown, checks)
    assert len(table) == sum(len(v) for v in checks.values())
    assert table.verdict.eq(REPRODUCED).all(), table
    with_effect = table[table.effect != "—"]  # covariate_shift's checks judge two nets each: numbers in their findings
    assert len(with_effect) >= 17 and (with_effect["95% interval"] != "—").all()
    assert all(int(n) >= 2 for n in with_effect.seeds)
    md = (out / "report.md").read_text().split("\n\n")
    first_table = next(i for i, b in enumerate(md) if b.startswith("|"))
    assert first_table <= 2 and md[first_table].startswith("| claim | check | verdict | effect | 95% interval |")
    html_text = (out / "report.html").read_text()
    assert html_text.count("<details><summary>Rule</summary>") < len(table)  # shared rules printed once
