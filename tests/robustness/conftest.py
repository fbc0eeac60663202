"""Shared, session-built artifacts for the robustness suite: a small trained checkpoint, its
dataset, a bundle folder, a bundle archive and its ONNX file (all in the real formats)."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.robustness)


@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    """dict with ckpt, data (npz), bundle (folder), archive (.tar.gz), onnx, classes, length."""
    from edgeprune.export.bundle import make_bundle
    from export_fixtures import CLASSES, LENGTH, make_trained

    base = tmp_path_factory.mktemp("robust-shared")
    ckpt, data = make_trained(base, epochs=2)
    bundle = base / "bundle"
    make_bundle(ckpt, "x86-cpu", bundle, precisions=["fp32"])
    archive = base / "bundle.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for p in sorted(bundle.iterdir()):
            tar.add(p, arcname=p.name)
    return {"ckpt": ckpt, "data": data, "bundle": bundle, "archive": archive,
            "onnx": bundle / "model-fp32.onnx", "classes": CLASSES, "length": LENGTH, "base": base}


@pytest.fixture
def work(tmp_path):
    """A clean folder for one test's inputs and outputs."""
    return tmp_path


def copy_bundle(shared, dst: Path) -> Path:
    shutil.copytree(shared["bundle"], dst)
    return dst
