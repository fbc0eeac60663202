"""Small virtual environments of older Pythons (the JetPack ones), cached outside the repository.

``device_venv("3.6.15")`` returns the python of a venv with numpy and
onnxruntime only (3.6: numpy 1.19.5 + onnxruntime 1.10.0, the last wheels
for it; 3.8: the newest numpy and onnxruntime that support it), under
``$EDGEPRUNE_VENV_CACHE`` (default ``~/.cache/edgeprune-venvs``), keyed by
version. Built on first use with pyenv's interpreter; the calling test is
skipped, with the reason, when that interpreter is missing or pip cannot
reach the package index.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGES = {"3.6": ["numpy==1.19.5", "onnxruntime==1.10.0"], "3.8": ["numpy", "onnxruntime"],
            "3.10": ["numpy", "onnxruntime"]}


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEPRUNE_VENV_CACHE", Path.home() / ".cache" / "edgeprune-venvs"))


def pyenv_python(version: str) -> Path | None:
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        root = str(Path.home() / ".pyenv")
    p = Path(root or Path.home() / ".pyenv") / "versions" / version / "bin" / "python"
    return p if p.is_file() else None


def _pip(py: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=900)


def _venv(version: str, folder: Path) -> tuple[Path, Path, bool]:
    """(python, ready stamp, whether it is ready): the cached venv in ``folder``, or a new empty one of ``version``
    (skips when pyenv lacks that Python)."""
    py = folder / "bin" / "python"
    stamp = folder / ".edgeprune-ready"
    if stamp.is_file() and py.is_file():
        return py, stamp, True
    base = pyenv_python(version)
    if base is None:
        pytest.skip(f"Python {version} is not installed (pyenv install {version})")
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([str(base), "-m", "venv", str(folder)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"cannot make a Python {version} venv: {r.stderr.strip()[-300:]}")
    return py, stamp, False


def device_venv(version: str) -> Path:
    """The python of the cached numpy + onnxruntime venv for ``version`` (built when missing)."""
    short = ".".join(version.split(".")[:2])
    folder = cache_dir() / f"py{version}-ort"
    py, stamp, ready = _venv(version, folder)
    if ready:
        return py
    steps = ([["pip>=21.3,<22"]] if short == "3.6" else []) + [PACKAGES[short]]
    for pkgs in steps:
        r = _pip(py, *pkgs)
        if r.returncode != 0:
            err = (r.stderr or r.stdout).strip()
            shutil.rmtree(folder, ignore_errors=True)
            if any(s in err for s in ("NewConnectionError", "Temporary failure", "Could not fetch URL",
                                      "Network is unreachable", "ConnectionError", "timed out")):
                pytest.skip(f"pip cannot reach the package index to build the Python {version} venv")
            pytest.fail(f"pip install {' '.join(pkgs)} failed on Python {version}: {err[-400:]}")
    stamp.write_text("ok\n")
    return py


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without PYTHONPATH (a venv python must not see this checkout or its site packages)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def device_install_venv(version: str = "3.8.18") -> Path:
    """A cached venv of ``version`` with pip and setuptools only, to ``pip install ".[device]"`` into."""
    folder = cache_dir() / f"py{version}-device-install"
    py, stamp, ready = _venv(version, folder)
    if ready:
        return py
    r = _pip(py, "setuptools>=61", "wheel")
    if r.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"pip cannot install setuptools on Python {version}: {(r.stderr or r.stdout).strip()[-200:]}")
    stamp.write_text("ok\n")
    return py
