"""`pip install ".[device]"` on Python 3.8 (JetPack 5's Python): the device commands, never torch."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from edgeprune_run import run_edgeprune

from export_fixtures import BLOCK_TORCH, REPO, shared_bundle
from venvs import _pip, clean_env, device_install_venv


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    py = device_install_venv("3.8.18")
    tmp = tmp_path_factory.mktemp("devinstall")
    src = tmp / "src"  # a clean copy: building in the checkout would leave build/ and *.egg-info there
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        p = REPO / f
        if p.is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            (src / f).write_bytes(p.read_bytes())
    r = _pip(py, "--no-build-isolation", f"{src}[device]")
    if r.returncode != 0:
        err = (r.stderr or r.stdout).strip()
        if "NewConnectionError" in err or "Could not fetch URL" in err:
            pytest.skip("pip cannot reach the package index")
        pytest.fail(f'pip install ".[device]" failed on Python 3.8: {err[-600:]}')
    block = tmp / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(BLOCK_TORCH)
    return {"py": str(py), "bin": Path(py).parent, "env": clean_env(PYTHONPATH=str(block), EDGEPRUNE_QUIET="1"),
            "tmp": tmp}


def _run(inst, *args):
    return subprocess.run([str(inst["bin"] / "edgeprune"), *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=inst["env"], cwd=str(inst["tmp"]))


def test_no_torch_installed_and_torch_blocked(installed):
    r = subprocess.run([installed["py"], "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                       env=installed["env"])
    names = {d["name"].lower() for d in json.loads(r.stdout)}
    assert {"edgeprune", "numpy", "onnxruntime"} <= names
    assert not names & {"torch", "onnx", "onnxsim", "torch-pruning", "scipy", "matplotlib", "h5py"}
    r = subprocess.run([installed["py"], "-c", "import torch"], capture_output=True, text=True, env=installed["env"])
    assert r.returncode != 0 and "blocked" in r.stderr
    r = subprocess.run([installed["py"], "-c", "import sys, edgeprune.export, edgeprune.profiling, importlib.util; "
                        "print(sys.version_info[:2], edgeprune.export.__file__, importlib.util.find_spec('export'))"],
                       capture_output=True, text=True, env=installed["env"], cwd="/")
    assert r.returncode == 0 and r.stdout.startswith("(3, 8)"), r.stderr
    assert "site-packages/edgeprune/export/__init__.py" in r.stdout and r.stdout.rstrip().endswith("None"), r.stdout


def test_device_commands_on_python38(installed, tmp_path_factory):
    bundle, _, data = shared_bundle(tmp_path_factory)
    from edgeprune.data.dataset import load_npz

    frames = installed["tmp"] / "f.npy"
    np.save(frames, load_npz(data).x[:10])
    r = _run(installed, "targets", "--json")
    assert r.returncode == 0, r.stderr
    assert {"jetson-nano", "xavier-nx", "orin-nx"} <= {t["name"] for t in json.loads(r.stdout)["targets"]}
    r = _run(installed, "doctor", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["python"].startswith("3.8") and rep["packages"]["torch"]["ok"] is False
    assert rep["commands"]["predict"]["usable"] and not rep["commands"]["export"]["usable"]
    r = _run(installed, "predict", bundle, "--input", frames, "--json")
    assert r.returncode == 0, r.stderr
    ref = run_edgeprune("predict", bundle, "--input", frames, "--json", timeout=300)
    assert [p["label"] for p in json.loads(r.stdout)["predictions"]] == \
        [p["label"] for p in json.loads(ref.stdout)["predictions"]]
    out = installed["tmp"] / "r.json"
    r = _run(installed, "profile", bundle, "--iters", "5", "--warmup", "1", "--out", out)
    assert r.returncode == 0, r.stderr
    recs = json.loads(out.read_text())["records"]
    assert recs and recs[0]["machine"]["python"].startswith("3.8") and recs[0]["backend"] == "onnxruntime"
    r = _run(installed, "export", "--model", "x.pt", "--out", "x.onnx")
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and "torch" in lines[0]
