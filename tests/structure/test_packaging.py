"""The wheel built from pyproject.toml and setup.py: the repository's ``export/`` and ``profiling/`` are installed
as ``edgeprune.export`` and ``edgeprune.profiling`` (no generic top-level name in site-packages), every package
ships its PEP 561 ``py.typed`` marker, and the compiled HisarMod parser is in it where this checkout could build it.
The unpacked wheel imports by those names, outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("edgeprune", "export", "profiling")     # folders in the repository, installed as:
INSTALLED = {"edgeprune": "edgeprune", "export": "edgeprune/export", "profiling": "edgeprune/profiling"}


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
        assert f"{INSTALLED[pkg]}/py.typed" in names
        assert f"{INSTALLED[pkg]}/__init__.py" in names
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"edgeprune"}, f"the wheel claims top-level names besides edgeprune: {sorted(tops)}"
    assert "edgeprune/training/trainer.py" in names and "edgeprune/export/runtime/stats.py" in names
    assert "edgeprune/export/grblocks/edgeprune_classifier.block.yml" in names
    _installed_wheel_imports(wheel, tmp_path)
    from edgeprune.data import hisar

    if hisar._hisarparse is not None:  # built here (setup.py, a C compiler): the wheel carries it too
        assert any(n.startswith("edgeprune/data/_hisarparse.") and n.endswith((".so", ".pyd")) for n in names), names


def _installed_wheel_imports(wheel: Path, tmp_path: Path) -> None:
    """The wheel unpacked as pip installs it, run from outside the checkout: the device side imports as
    ``edgeprune.export`` and ``edgeprune.profiling`` from the installed files, and ``export`` is not one of them."""
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(target)
    code = ("import importlib.util, edgeprune.export.runtime.frames as f, edgeprune.profiling.results_file as r; "
            "from edgeprune.export import Predictor; "
            "s = importlib.util.find_spec('export'); "
            "print(f.__file__); print(r.__file__); print(Predictor.__module__); print(s.origin if s else None)")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(target)})
    assert res.returncode == 0, res.stderr[-2000:]
    frames, results, predictor, plain = res.stdout.split()
    assert frames == str(target / "edgeprune/export/runtime/frames.py")
    assert results == str(target / "edgeprune/profiling/results_file.py")
    assert predictor == "edgeprune.export.predictor"
    assert plain == "None" or not plain.startswith(str(target)), plain
