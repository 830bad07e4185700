"""Shared test helpers: compose configs like the CLI does, and run the CLI in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from bnstudy.config import CONF_DIR, Config, register_configs
from bnstudy.validation import to_config

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "exp").glob("*.yaml"))

register_configs()


def compose_config(overrides: list[str] = ()) -> Config:
    """The validated Config that `python -m bnstudy run OVERRIDES` would train."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return to_config(compose("config", overrides=list(overrides)))


def run_cli(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": "0", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", "bnstudy", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def tiny_overrides() -> list[str]:
    """A run of a few seconds on synthetic data."""
    return ["scale=smoke", "data.synthetic_train_size=256", "data.synthetic_test_size=100",
            "data.train_subset=null", "data.test_subset=null", "data.batch_size=32",
            "trainer.max_steps=6", "trainer.log_every=2"]


def untrained_arms(verdict) -> set[str]:
    """The arms a verdict's blockers say did not train (rules.Blocker, kind UNTRAINED)."""
    from bnstudy.analysis.rules import UNTRAINED

    return {b.subject for b in verdict.blockers if getattr(b, "kind", "") == UNTRAINED}


def blockers_of(verdict, kind: str) -> list:
    """The blockers of a verdict of one kind (rules.Blocker, e.g. rules.UNTRAINED)."""
    return [b for b in verdict.blockers if getattr(b, "kind", "") == kind]


def notes_of(verdict, kind: str) -> list:
    """The notes of a verdict of one kind (rules.Note, e.g. rules.EDGE)."""
    return [n for n in verdict.notes if getattr(n, "kind", "") == kind]


def estimate_of(verdict, label: str, effect=None):
    """The Estimate a verdict carries under `label` (and, where a label carries several, of
    `effect`) in Verdict.estimates (KeyError naming the labels it has otherwise)."""
    found = [est for lab, e, est in verdict.estimates if lab == label and (effect is None or e is effect)]
    if len(found) != 1:
        raise KeyError(f"{label!r}: {len(found)} estimates among {sorted({lab for lab, _, _ in verdict.estimates})}")
    return found[0]
