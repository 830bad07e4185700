"""The configs ship inside the package: a wheel (non-editable) install finds them."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile

import pytest

from conftest import EXPERIMENTS, REPO


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="needs setuptools to build a wheel")
def test_wheel_contains_every_config(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            str(REPO), "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("bnstudy-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "bnstudy/conf/config.yaml" in names
    assert {f"bnstudy/conf/exp/{exp}.yaml" for exp in EXPERIMENTS} <= names
    shipped = {n for n in names if n.startswith("bnstudy/conf/") and n.endswith(".yaml")}
    on_disk = {str(p.relative_to(REPO)) for p in (REPO / "bnstudy" / "conf").rglob("*.yaml")}
    assert shipped == on_disk
