"""The device side runs where `import torch` fails: predict, the Predictor, targets, doctor."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgeprune.data.dataset import load_npz
from edgeprune.export.bundle import make_bundle
from export_fixtures import edgeprune_cmd, no_torch_env, shared_bundle, shared_trained


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    out, ckpt, data = shared_bundle(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("notorch")
    arc = tmp / "b.tar.gz"
    make_bundle(ckpt, "x86-cpu", arc, precisions=["fp32"])
    x = load_npz(data).x[:12]
    np.save(tmp / "f.npy", x)
    return out, arc, tmp, no_torch_env(tmp)


def _run(cmd, env, cwd):
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_torch_is_really_blocked(setup):
    _, _, tmp, env = setup
    r = _run([sys.executable, "-c", "import torch"], env, tmp)
    assert r.returncode != 0 and "blocked" in r.stderr


def test_predict_cli_without_torch(setup):
    out, arc, tmp, env = setup
    from edgeprune.export import Predictor

    expected = Predictor(out).predict(np.load(tmp / "f.npy"))["labels"].tolist()
    for bundle in (out, arc):
        r = _run(edgeprune_cmd("predict", bundle, "--input", tmp / "f.npy", "--json"), env, tmp)
        assert r.returncode == 0, r.stderr
        res = json.loads(r.stdout)
        assert [p["label"] for p in res["predictions"]] == expected


def test_predictor_api_without_torch(setup):
    out, arc, tmp, env = setup
    code = (
        "import sys, numpy as np\n"
        "from export import Predictor, open_bundle\n"
        f"x = np.load({str(tmp / 'f.npy')!r})\n"
        f"p = Predictor({str(arc)!r})\n"
        "r = p.predict(x)\n"
        f"q = Predictor({str(out / 'model-int8.onnx')!r})\n"
        "q.predict(x[:2])\n"
        f"b = open_bundle({str(out)!r})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(len(r['labels']), b.manifest['target']['name'])\n"
    )
    r = _run([sys.executable, "-c", code], env, tmp)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["12", "x86-cpu"]


def test_targets_and_doctor_without_torch(setup):
    _, _, tmp, env = setup
    r = _run(edgeprune_cmd("targets", "--json"), env, tmp)
    assert r.returncode == 0, r.stderr
    assert "xavier-nx" in [t["name"] for t in json.loads(r.stdout)["targets"]]
    r = _run(edgeprune_cmd("doctor", "--json"), env, tmp)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["packages"]["torch"]["ok"] is False and "blocked" in rep["packages"]["torch"]["error"]
    assert rep["commands"]["export"]["usable"] is False and "torch" in rep["commands"]["export"]["reason"]
    assert rep["commands"]["predict"]["usable"] is True


def test_export_without_torch_is_one_clear_line(setup, tmp_path_factory):
    _, _, tmp, env = setup
    ckpt, _ = shared_trained(tmp_path_factory)
    r = _run(edgeprune_cmd("export", "--model", ckpt, "--out", tmp / "x.onnx"), env, tmp)
    assert r.returncode != 0
    assert r.stderr.strip().startswith("edgeprune: error:") and "torch" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
