"""TensorBoard event files for runs: the rows of metrics.csv as scalars, the activation
histograms of probes.csv (`hist/...`) as histograms, the rest of probes.csv as scalars, and
the run's config against its final accuracy in the HParams plugin's format, so TensorBoard's
HParams table compares a whole sweep.

Written live by a run with `trainer.tensorboard=true` (into RUN_DIR/tensorboard/, a tee of the
rows the run writes to its CSVs, so nothing else about the run changes), or afterwards from
finished run folders or a published study (`python -m bnstudy tensorboard SWEEP_DIR`). Needs
the `tb` extra: pip install -e ".[tb]".
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

FOLDER = "tensorboard"  # in a run folder
HIST = re.compile(r"^hist/(?P<position>.+)\.bin(?P<k>\d+)$")
DEFAULT_HIST_RANGE = 5.0  # probes.activations.hist_range's default: bins over [-R, R]
# the config keys the HParams table shows, where a run has them (the ones studies sweep)
HPARAMS = ("study", "scale.name", "norm.name", "model.skipinit", "norm._target_", "norm.ghost_batch_size",
           "norm.groups", "optim.lr", "data.batch_size", "model.name", "model.depth", "model.plain",
           "model.dropout", "init.name", "init.scale", "data.intensity_shift", "trainer.precision", "seed")
FINAL = {"final_test_acc": "hparams/final_test_acc", "best_test_acc": "hparams/best_test_acc",
         "final_test_acc_precise": "hparams/final_test_acc_precise"}


class MissingExtra(ImportError):
    """TensorBoard is not installed."""


def _writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise MissingExtra("TensorBoard logging needs the tensorboard package: pip install -e \".[tb]\"") from e
    return SummaryWriter


class EventLog:
    """One run's event files. `rows` takes what MetricsLog writes, (step, epoch, metric, value);
    `hparams` takes the run's flat config and summary at the end. `purge_step`: a resumed run
    drops the events at and after the step it resumes from, as its CSVs are cut back there."""

    def __init__(self, logdir: Path, hist_range: float = DEFAULT_HIST_RANGE, purge_step: Optional[int] = None):
        self.logdir = Path(logdir)
        self.hist_range = hist_range
        self.writer = _writer_class()(str(self.logdir), purge_step=purge_step)

    def rows(self, rows: Iterable[tuple[int, float, str, float]]) -> None:
        hists: dict[tuple[int, str], dict[int, float]] = defaultdict(dict)
        for step, _epoch, metric, value in rows:
            m = HIST.match(metric)
            if m:
                hists[(int(step), m["position"])][int(m["k"])] = float(value)
            elif math.isfinite(float(value)):
                self.writer.add_scalar(metric, float(value), int(step))
        for (step, position), bins in hists.items():
            self._histogram(position, bins, step)
        self.writer.flush()

    def _histogram(self, position: str, bins: dict[int, float], step: int) -> None:
        """A probe's histogram (the fraction of elements in each of n equal bins over [-R, R], the
        end bins holding the tails) as TensorBoard's buckets, in fractions of the elements."""
        n, r = max(bins) + 1, self.hist_range
        width = 2 * r / n
        counts = [bins.get(k, 0.0) for k in range(n)]
        centres = [-r + (k + 0.5) * width for k in range(n)]
        self.writer.add_histogram_raw(
            f"activations/{position}", min=-r, max=r, num=sum(counts),
            sum=sum(c * x for c, x in zip(counts, centres)), sum_squares=sum(c * x * x for c, x in zip(counts, centres)),
            bucket_limits=[-r + (k + 1) * width for k in range(n)], bucket_counts=counts, global_step=step)

    def hparams(self, config: dict, summary: dict) -> None:
        """The run's swept config keys against its final metrics, for the HParams table."""
        h = {k: _hparam(config[k]) for k in HPARAMS if k in config and _hparam(config[k]) is not None}
        metrics = {tag: float(summary[k]) for k, tag in FINAL.items()
                   if isinstance(summary.get(k), (int, float)) and math.isfinite(summary[k])}
        h["status"] = str(summary.get("status", ""))
        self.writer.add_hparams(h, metrics, run_name=".")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _hparam(v):
    """A value HParams takes (bool, int, float, str), or None to leave the key out."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v == "":
        return None
    return v if isinstance(v, (bool, int, float, str)) else str(v)


# ---------------------------------------------------------------- export of finished runs

def export_runs(runs: pd.DataFrame, curves: pd.DataFrame, out: Path) -> list[Path]:
    """Event files for each run of `runs` (results.load's table) from its curves rows, into
    out/RUN/; returns the folders written."""
    written = []
    by_run = dict(tuple(curves.groupby("run"))) if len(curves) else {}
    for r in runs.to_dict("records"):
        logdir = Path(out) / str(r["run"])
        hist_range = r.get("probes.activations.hist_range")
        log = EventLog(logdir, float(hist_range) if _hparam(hist_range) is not None else DEFAULT_HIST_RANGE)
        c = by_run.get(r["run"])
        if c is not None:
            c = c.dropna(subset=["value"]).sort_values("step", kind="stable")
            for _, g in c.groupby("step", sort=True):
                log.rows(zip(g.step, g.epoch.fillna(0), g.metric, g.value))
        log.hparams(r, r)
        log.close()
        written.append(logdir)
    return written


def main(args: list[str]) -> None:
    import argparse

    from .analysis.results import is_published, load

    p = argparse.ArgumentParser(prog="python -m bnstudy tensorboard",
                                description="TensorBoard event files from finished run folders or a published study.")
    p.add_argument("sources", nargs="+", type=Path, metavar="SWEEP_DIR")
    p.add_argument("--out", type=Path, help="where the event files go (default: SWEEP_DIR/tensorboard)")
    a = p.parse_args(args)
    res = load(a.sources)
    for line in res.warnings():
        print(f"bnstudy: warning: {line}")
    out = a.out or a.sources[0] / FOLDER
    written = export_runs(res.runs, res.curves, out)
    no_curves = sorted(set(res.runs.run) - set(res.curves.run)) if len(res.curves) else list(res.runs.run)
    print(f"wrote event files for {len(written)} runs into {out}")
    if no_curves:
        print(f"{len(no_curves)} runs have no curves here (a published study may hold runs.csv alone): HParams only")
    if any(is_published(s) for s in a.sources):
        print("a published study's curves.csv.gz may be cut to the rows its checks read: its README says which")
    print(f"tensorboard --logdir {out}")
