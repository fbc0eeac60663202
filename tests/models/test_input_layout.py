"""Networks taking (N, 1, 2, L) or (N, L, 2) import with no flag and run the same everywhere; model prints stay off
stdout; export checks batch 1 and a larger batch and names a traced constant batch (issue 24).

Ground truth is the user's own class (tests/user_models.py) fed its own layout by hand, with the checkpoint's weights.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edgeprune_run import run_edgeprune
import torch

TESTS = Path(__file__).resolve().parents[1]   # tests/: the shared fixture modules (user_models.py)
sys.path.insert(0, str(TESTS))
import user_models as um  # noqa: E402

LENGTH = 64   # the toy dataset's


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from conftest import own_models_folder

    return own_models_folder(tmp_path_factory, "layout")


def _own_forward(cls, state, x: np.ndarray, layout: str) -> np.ndarray:
    """Logits of the user's class, built by hand, fed (N, 2, L) frames laid out as it takes them."""
    torch.manual_seed(0)
    net = cls()
    net.load_state_dict(state)
    net.eval()
    t = torch.from_numpy(x)
    t = t.unsqueeze(1) if layout == "N1CL" else t.transpose(1, 2).contiguous() if layout == "NLC" else t
    with torch.no_grad():
        return net(t).numpy()


@pytest.mark.parametrize("name,layout", [("ZeroPadResNet2d", "N1CL"), ("SeqLSTM", "NLC")])
def test_layout_found_recorded_and_fed_by_export_bundle_and_run_py(cli, work, name, layout):
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.models.usercode import allow
    from edgeprune.export.predictor import Predictor
    from edgeprune.export.verify import make_session

    ck_path = work / f"{name}.pt"
    r = cli("import", f"{work / 'nets.py'}:{name}", "--data", work / "toy.npz", "--out", ck_path, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["input_layout"] == layout
    ck = load_checkpoint(ck_path)
    assert ck.meta["input"]["layout"] == layout and ck.spec["layout"] == layout
    allow(work / "nets.py")
    # random weights with some spread, so the classes differ between frames
    state = {k: (v + 0.5 * torch.randn_like(v) if v.is_floating_point() and "running" not in k else v)
             for k, v in ck.build().state_dict().items()}
    from edgeprune.checkpoint import save_checkpoint

    save_checkpoint(ck_path, ck.spec, state, ck.meta)
    x = np.random.default_rng(1).standard_normal((7, 2, LENGTH)).astype(np.float32)
    want = _own_forward(getattr(um, name), state, x, layout)
    # checkpoint -> model (fed (N, 2, L)) equals the class fed its layout by hand
    got = load_checkpoint(ck_path).build()(torch.from_numpy(x)).detach().numpy()
    assert np.abs(got - want).max() < 1e-4

    code = ["--code", work / "nets.py"]
    r = cli("export", "--model", ck_path, "--out", work / f"{name}.onnx", "--json", *code)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    shape = {"N1CL": ["batch", 1, 2, LENGTH], "NLC": ["batch", LENGTH, 2]}[layout]
    assert rep["input"]["shape"] == shape
    sess = make_session(str(work / f"{name}.onnx"))
    assert [d if isinstance(d, int) else "batch" for d in sess.get_inputs()[0].shape] == shape
    native = x[:, None] if layout == "N1CL" else np.ascontiguousarray(x.transpose(0, 2, 1))
    for b in (1, 5):
        assert np.abs(sess.run(None, {"iq": native[:b]})[0] - want[:b]).max() < 1e-4
    assert np.abs(Predictor(work / f"{name}.onnx").logits(x) - want).max() < 1e-4

    bundle = work / f"{name}-bundle"
    r = cli("bundle", "--model", ck_path, "--target", "x86-cpu", "--out", bundle, "--precision", "fp32", *code)
    assert r.returncode == 0, r.stderr
    assert json.loads((bundle / "manifest.json").read_text())["input"]["layout"] == layout
    np.save(work / "frames.npy", x)
    r = subprocess.run([sys.executable, str(bundle / "run.py"), "predict", "--input", str(work / "frames.npy"),
                        "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["predictions"]
    probs = torch.softmax(torch.from_numpy(want).double(), 1).numpy()
    assert np.abs(np.array([p["confidence"] for p in rows]) - probs.max(1)).max() < 1e-4
    top2 = np.sort(probs, 1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-3
    assert clear.sum() >= 4
    assert [p["label"] for p, c in zip(rows, clear) if c] == list(probs.argmax(1)[clear])
    assert np.abs(Predictor(bundle).logits(x) - want).max() < 1e-4
    # a manifest naming another layout than the model's input is refused when the model is opened
    from edgeprune.errors import EdgepruneError

    m = json.loads((bundle / "manifest.json").read_text())
    m["input"]["layout"] = "NCL"
    (bundle / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EdgepruneError, match=r"not \(N, 2, L\) I/Q frames \(its layout NCL\)"):
        Predictor(bundle)


def test_input_layout_flag_overrides_and_names_the_layout(cli, work):
    r = cli("import", f"{work / 'nets.py'}:SeqLSTM", "--data", work / "toy.npz", "--out", work / "x.pt",
             "--input-layout", "NCL")
    assert r.returncode != 0 and r.stderr.startswith("edgeprune: error:") and r.stderr.count("\n") == 1
    assert "in the layout NCL (N, 2, L)" in r.stderr and not (work / "x.pt").exists()
    # a flatten-first model runs on every layout: NCL is taken and the others are named; the flag picks another
    r = cli("import", f"{work / 'nets.py'}:flat_mlp", "--data", work / "toy.npz", "--out", work / "v.pt", "--json")
    doc = json.loads(r.stdout)
    assert doc["input_layout"] == "NCL" and "N1CL and NLC" in doc["note"]
    r = cli("import", f"{work / 'nets.py'}:flat_mlp", "--data", work / "toy.npz", "--out", work / "v.pt", "--json",
             "--input-layout", "nlc")
    assert json.loads(r.stdout)["input_layout"] == "NLC" and "note" not in json.loads(r.stdout)
    r = cli("import", f"{work / 'nets.py'}:ResNet1d", "--data", work / "toy.npz", "--out", work / "r.pt",
             "--input-layout", "nlc")
    assert r.returncode != 0 and "in the layout NLC (N, L, 2)" in r.stderr


def test_model_prints_go_to_stderr_and_json_stays_one_document(cli, work):
    r = cli("import", f"{work / 'nets.py'}:Chatty", "--data", work / "toy.npz", "--out", work / "c.pt", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["input_layout"] == "NCL"
    assert "building Chatty" in r.stderr and "forward" in r.stderr
    r = cli("export", "--model", work / "c.pt", "--out", work / "c.onnx", "--json", "--code", work / "nets.py")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["path"].endswith("c.onnx") and "forward" in r.stderr
    r = cli("units", work / "c.pt", "--json", "--code", work / "nets.py")
    assert r.returncode == 0 and "units" in json.loads(r.stdout)


def test_transformer_encoder_exports_at_batch_1_and_larger(cli, work):
    from edgeprune.export.verify import make_session

    ck = work / "t.pt"
    assert cli("import", f"{work / 'nets.py'}:LayoutConvTransformer", "--data", work / "toy.npz", "--out", ck).returncode == 0
    x = np.random.default_rng(2).standard_normal((6, 2, LENGTH)).astype(np.float32)
    from edgeprune.checkpoint import load_checkpoint

    want = _own_forward(um.LayoutConvTransformer, load_checkpoint(ck).state_dict, x, "NCL")
    for extra, simplified in (((), True), (("--no-simplify",), False)):
        out = work / f"t{len(extra)}.onnx"
        r = cli("export", "--model", ck, "--out", out, "--json", "--code", work / "nets.py", *extra)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["simplified"] is simplified
        sess = make_session(str(out))
        for b in (1, 6):
            assert np.abs(sess.run(None, {"iq": x[:b]})[0] - want[:b]).max() < 1e-4
    r = cli("bundle", "--model", ck, "--target", "x86-cpu", "--out", work / "tb", "--precision", "fp32",
             "--no-simplify", "--json", "--code", work / "nets.py")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["variants"][0]["simplified"] is False


def test_a_traced_constant_batch_is_one_line_naming_the_op(cli, work):
    ck = work / "bc.pt"
    assert cli("import", f"{work / 'nets.py'}:BatchConstant", "--data", work / "toy.npz", "--out", ck).returncode == 0
    r = cli("export", "--model", ck, "--out", work / "bc.onnx", "--code", work / "nets.py")
    assert r.returncode != 0 and r.stderr.startswith("edgeprune: error:") and r.stderr.count("\n") == 1
    assert "works only at batch 2" in r.stderr and "(Concat)" in r.stderr and "unexpected" not in r.stderr
    assert not (work / "bc.onnx").exists()


def test_what_the_legacy_exporter_cannot_export_goes_through_the_dynamo_exporter(cli, work):
    """SpectrumNet's FFT fails the TorchScript exporter; the dynamo exporter's graph is used, with a note, and
    gives the class's own logits at batch 1 and 6 in ONNX Runtime, through the bundle's run.py too."""
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.export.onnx_export import read_metadata
    from edgeprune.export.verify import make_session

    ck = work / "sp.pt"
    assert cli("import", f"{work / 'nets.py'}:SpectrumNet", "--data", work / "toy.npz", "--out", ck).returncode == 0
    x = np.random.default_rng(3).standard_normal((6, 2, LENGTH)).astype(np.float32)
    want = _own_forward(um.SpectrumNet, load_checkpoint(ck).state_dict, x, "NCL")
    r = cli("export", "--model", ck, "--out", work / "sp.onnx", "--json", "--code", work / "nets.py")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["exporter"] == "dynamo" and rep["opset"] == 17
    assert "the legacy exporter failed" in rep["notes"][0] and "fft" in rep["notes"][0]
    assert read_metadata(work / "sp.onnx")["edgeprune.exporter"] == "dynamo"
    sess = make_session(str(work / "sp.onnx"))
    for b in (1, 6):
        assert np.abs(sess.run(None, {"iq": x[:b]})[0] - want[:b]).max() < 1e-4
    bundle = work / "sp-bundle"
    r = cli("bundle", "--model", ck, "--target", "x86-cpu", "--out", bundle, "--precision", "fp32",
            "--code", work / "nets.py")
    assert r.returncode == 0, r.stderr
    np.save(work / "sp-frames.npy", x)
    r = subprocess.run([sys.executable, str(bundle / "run.py"), "predict", "--input", str(work / "sp-frames.npy"),
                        "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    probs = torch.softmax(torch.from_numpy(want).double(), 1).numpy()
    rows = json.loads(r.stdout)["predictions"]
    assert np.abs(np.array([p["confidence"] for p in rows]) - probs.max(1)).max() < 1e-4


def test_without_onnxscript_the_legacy_failure_says_the_dynamo_exporter_needs_it(cli, work, monkeypatch):
    ck = work / "sp2.pt"
    assert cli("import", f"{work / 'nets.py'}:SpectrumNet", "--data", work / "toy.npz", "--out", ck).returncode == 0
    monkeypatch.setitem(sys.modules, "onnxscript", None)   # what `import onnxscript` meets when it is not installed
    r = cli("export", "--model", ck, "--out", work / "sp2.onnx", "--code", work / "nets.py")
    assert r.returncode != 0 and r.stderr.startswith("edgeprune: error: torch.onnx.export (legacy")
    assert r.stderr.count("\n") == 1 and "pip install onnxscript" in r.stderr
    assert not (work / "sp2.onnx").exists()


def test_an_op_torch_cannot_export_is_one_line_without_the_ir_dump(cli, work):
    ck = work / "cg.pt"
    assert cli("import", f"{work / 'nets.py'}:ComplexGainNet", "--data", work / "toy.npz", "--out", ck).returncode == 0
    # a process of its own: the exporter's C++ side writes the Torch IR graph to the file descriptors themselves
    r = run_edgeprune("export", "--model", ck, "--out", work / "cg.onnx", "--code", work / "nets.py", timeout=600)
    assert r.returncode != 0 and r.stdout == ""
    assert r.stderr.startswith("edgeprune: error: torch.onnx.export (legacy") and r.stderr.count("\n") == 1
    assert "complex" in r.stderr and "the dynamo exporter failed too: torch.onnx.export (dynamo" in r.stderr
    assert "Torch IR graph" not in r.stderr and "Traceback" not in r.stderr
    assert not (work / "cg.onnx").exists()


def test_study_export_stage_takes_simplify_from_the_config(toy_checkpoint, toy_npz, tmp_path):
    from edgeprune.study.config import normalise
    from edgeprune.study.runner import work_export

    cfg = normalise({"data": {"file": str(toy_npz)}, "export": {"simplify": False}})
    assert cfg["export"]["simplify"] is False and normalise({"data": {"file": str(toy_npz)}})["export"]["simplify"]
    for simplify in (True, False):
        rep = work_export(toy_checkpoint, toy_npz, tmp_path / f"m{simplify}.onnx", "fp32", 17, 0, simplify=simplify)
        assert rep["simplified"] is simplify
