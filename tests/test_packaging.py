"""The wheel built from pyproject.toml (and setup.py) ships the PEP 561 ``py.typed`` markers (and the packages they
mark), and the compiled HisarMod parser where this checkout could build it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("edgeprune", "export", "profiling")


def test_the_built_wheel_holds_py_typed_for_each_package(tmp_path):
    # build from a copy, so the checkout gets no build/ or *.egg-info folder
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "*.so", "*.pyd")  # the wheel builds its own
    for name in (*PACKAGES, "targets", "configs"):
        shutil.copytree(REPO / name, src / name, ignore=skip)
    for pkg in PACKAGES:
        assert (REPO / pkg / "py.typed").is_file(), f"{pkg}/py.typed is missing from the source tree"
    # the PEP 517 backend pyproject.toml names, called as `pip wheel --no-build-isolation` calls it
    res = subprocess.run([sys.executable, "-c", "import setuptools.build_meta as b; print(b.build_wheel('dist'))"],
                         cwd=src, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    wheel = src / "dist" / res.stdout.strip().splitlines()[-1]
    names = set(zipfile.ZipFile(wheel).namelist())
    for pkg in PACKAGES:
        assert f"{pkg}/py.typed" in names
        assert f"{pkg}/__init__.py" in names
    assert "edgeprune/training/trainer.py" in names and "export/runtime/stats.py" in names
    from edgeprune.data import hisar

    if hisar._hisarparse is not None:  # built here (setup.py, a C compiler): the wheel carries it too
        assert any(n.startswith("edgeprune/data/_hisarparse.") and n.endswith((".so", ".pyd")) for n in names), names
