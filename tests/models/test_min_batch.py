"""Networks that run on 2+ frames but not on one (an axis-less ``squeeze()`` that also drops the batch axis), and
compute each frame on its own: import records ``min_batch``, MACs stay per frame, training takes a last batch of
one frame, export matches torch at batch 1 and 4, and the bundle's run.py classifies a single frame. A network that
mixes the frames of a batch is refused in one line.

Ground truth is the user's own class (tests/user_models.py) built by hand with the checkpoint's weights and run on
the frame together with a *different* companion frame (not edgeprune's padding), and MACs counted by hand.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

TESTS = Path(__file__).resolve().parents[1]   # tests/: the shared fixture modules (user_models.py)
sys.path.insert(0, str(TESTS))
import user_models as um  # noqa: E402

LENGTH = 64   # the toy dataset's
# by hand, per frame of 64 samples: out elements x (in channels x kernel) per conv/linear; GRU 3 x hidden x
# (input + hidden) per step
HAND_MACS = {
    "SqueezeConv": 8 * 60 * (1 * 2 * 5) + 8 * 60 * (8 * 3) + 4 * 8,          # conv, body conv, head
    "SqueezeGRU": 6 * 62 * (1 * 2 * 3) + 3 * 8 * (6 + 8) * 62 + 4 * 8,      # conv, GRU over 62 steps, fc
}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from conftest import own_models_folder

    return own_models_folder(tmp_path_factory, "minbatch")


def _import(cli, work, name):
    ck = work / f"{name}.pt"
    r = cli("import", f"{work / 'nets.py'}:{name}", "--data", work / "toy.npz", "--out", ck, "--json")
    assert r.returncode == 0, r.stderr
    return ck, json.loads(r.stdout)


def _own_logits(name, state, x: np.ndarray) -> np.ndarray:
    """The class's logits for each frame of ``x``, each run beside a different companion frame (batch of 2)."""
    net = getattr(um, name)()
    net.load_state_dict(state)
    net.eval()
    companion = torch.from_numpy(np.random.default_rng(99).standard_normal((1, 2, LENGTH)).astype(np.float32))
    with torch.no_grad():
        return np.concatenate([net(torch.cat([torch.from_numpy(f[None]), companion]))[:1].numpy() for f in x])


def _fails_on_one_frame(name) -> bool:
    try:
        with torch.no_grad():
            y = getattr(um, name)().eval()(torch.zeros(1, 2, LENGTH))
    except Exception:  # noqa: BLE001 - any failure counts
        return True
    return tuple(y.shape) != (1, 4)


@pytest.mark.parametrize("name", ["SqueezeConv", "SqueezeGRU"])
def test_import_records_min_batch_and_counts_macs_per_frame(cli, work, name):
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.models.usercode import allow

    assert _fails_on_one_frame(name)   # the premise
    ck_path, doc = _import(cli, work, name)
    assert doc["min_batch"] == 2 and "min_batch 2 was recorded" in doc["note"]
    assert doc["macs"] == HAND_MACS[name]
    ck = load_checkpoint(ck_path)
    assert ck.spec["min_batch"] == 2 and ck.meta["input"]["min_batch"] == 2 and ck.meta["macs"] == HAND_MACS[name]
    allow(work / "nets.py")
    model = ck.build()
    from edgeprune.models.macs import count_macs

    assert count_macs(model, (2, LENGTH)) == HAND_MACS[name]
    x = np.random.default_rng(3).standard_normal((3, 2, LENGTH)).astype(np.float32)
    with torch.no_grad():
        one = np.concatenate([model(torch.from_numpy(f[None])).numpy() for f in x])   # batch 1, padded
    assert one.shape == (3, 4)
    assert np.abs(one - _own_logits(name, ck.state_dict, x)).max() < 1e-5


def test_finetune_takes_a_last_batch_of_one_frame(cli, work):
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.models.usercode import allow
    from edgeprune.training.evaluate import eval_data

    ck_path, _ = _import(cli, work, "SqueezeGRU")
    allow(work / "nets.py")
    ck = load_checkpoint(ck_path)
    train, _ = eval_data(ck, work / "toy.npz", split="train")
    n = len(train)
    assert n >= 3
    r = cli("finetune", "--model", ck_path, "--data", work / "toy.npz", "--epochs", "1", "--batch-size", n - 1,
            "--out", work / "ft.pt", "--threads", "1", "--code", work / "nets.py")   # batches of n - 1 and 1 frames
    assert r.returncode == 0, r.stderr
    ft = load_checkpoint(work / "ft.pt")
    assert ft.spec["min_batch"] == 2
    assert any(not torch.equal(ft.state_dict[k], v) for k, v in ck.state_dict.items())


@pytest.mark.parametrize("name,graph_min_batch", [("SqueezeConv", None), ("SqueezeGRU", None),
                                                  ("SqueezeInPlace", 2)])
def test_export_matches_torch_at_batch_1_and_4_and_run_py_classifies_one_frame(cli, work, name, graph_min_batch):
    from edgeprune.checkpoint import load_checkpoint, save_checkpoint
    from edgeprune.models.usercode import allow
    from edgeprune.export.onnx_export import read_metadata
    from edgeprune.export.predictor import Predictor
    from edgeprune.export.verify import make_session

    ck_path, _ = _import(cli, work, name)
    allow(work / "nets.py")
    ck = load_checkpoint(ck_path)
    g = torch.Generator().manual_seed(5)   # weights with some spread, so the classes differ between frames
    state = {k: v + 0.5 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
             for k, v in ck.state_dict.items()}
    save_checkpoint(ck_path, ck.spec, state, ck.meta)
    x = np.random.default_rng(1).standard_normal((8, 2, LENGTH)).astype(np.float32)
    want = _own_logits(name, state, x)

    code = ["--code", work / "nets.py"]
    onnx = work / f"{name}.onnx"
    r = cli("export", "--model", ck_path, "--out", onnx, "--json", *code)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["input"].get("min_batch") == graph_min_batch
    assert read_metadata(onnx)["edgeprune.input"].get("min_batch") == graph_min_batch
    sess = make_session(str(onnx))
    got4 = sess.run(None, {"iq": x[:4]})[0]
    assert np.abs(got4 - want[:4]).max() < 1e-4
    if graph_min_batch is None:
        assert np.abs(sess.run(None, {"iq": x[:1]})[0] - want[:1]).max() < 1e-4
    else:   # the graph itself does not take one frame: Predictor pads
        with pytest.raises(Exception):
            out = sess.run(None, {"iq": x[:1]})[0]
            assert out.shape == (1, 4)
    assert np.abs(Predictor(onnx).logits(x[:1]) - want[:1]).max() < 1e-4

    bundle = work / f"{name}-bundle"
    r = cli("bundle", "--model", ck_path, "--target", "x86-cpu", "--out", bundle, "--precision", "fp32", "--force",
            *code)
    assert r.returncode == 0, r.stderr
    assert json.loads((bundle / "manifest.json").read_text())["input"].get("min_batch") == graph_min_batch
    probs = torch.softmax(torch.from_numpy(want).double(), 1).numpy()
    top2 = np.sort(probs, 1)[:, -2:]
    clear = np.flatnonzero(top2[:, 1] - top2[:, 0] > 1e-3)
    assert len(clear) >= 2
    for i in clear[:2]:   # one frame per run.py call
        np.save(work / "one.npy", x[i:i + 1])
        r = subprocess.run([sys.executable, str(bundle / "run.py"), "predict", "--input", str(work / "one.npy"),
                            "--json"], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        rows = json.loads(r.stdout)["predictions"]
        assert len(rows) == 1 and rows[0]["label"] == probs[i].argmax() and rows[0]["class"] == f"tone{probs[i].argmax()}"


def test_a_network_that_mixes_frames_is_refused_in_one_line(cli, work):
    r = cli("import", f"{work / 'nets.py'}:BatchCentred", "--data", work / "toy.npz", "--out", work / "bc.pt")
    assert r.returncode != 0 and not (work / "bc.pt").exists()
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeprune: error:")
    assert "does not run on a single frame" in lines[0] and "not frame by frame" in lines[0]
    assert "padding a batch would change its logits" in lines[0]


@pytest.mark.parametrize("method", ["layer", "dbp"])
def test_layer_analysis_of_a_module_run_twice_per_forward(cli, work, method):
    """MCformer's one SELU runs after its conv and after fc1: the analysis takes the module's first output per
    forward (the unit's, as traced), so layer and dbp prune it (they crashed on mismatched feature widths)."""
    from edgeprune.checkpoint import load_checkpoint

    ck_path, doc = _import(cli, work, "SharedActivation")
    assert doc["units"] == 2
    out = work / f"shared-{method}.pt"
    r = cli("prune", "--model", ck_path, "--method", method, "--target-macs", "0.7", "--data", work / "toy.npz",
            "--out", out, "--code", work / "nets.py")
    assert r.returncode == 0, r.stderr
    # by hand: stem 8*64*2*3, each block 8*64*8*3, fc1 8*16, fc2 16*4; one block removed is the nearest <= 0.7
    assert doc["macs"] == 3072 + 2 * 12288 + 128 + 64
    assert load_checkpoint(out).meta["macs"] == doc["macs"] - 12288
