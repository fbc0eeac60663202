"""ONNX export: graph contract, metadata, node names, parity with PyTorch, fp16, errors."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from edgeprune.cli.main import main
from edgeprune.errors import EdgepruneError
from edgeprune.export.onnx_export import export_checkpoint, read_metadata
from edgeprune.export.verify import check_parity, compare_logits, make_session, run_logits
from export_fixtures import CLASSES, LENGTH, shared_trained


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return shared_trained(tmp_path_factory)


@pytest.fixture(scope="module")
def fp32(trained, tmp_path_factory):
    ckpt, data = trained
    out = tmp_path_factory.mktemp("fp32") / "model.onnx"
    return out, export_checkpoint(ckpt, out, verify_data=data)


def test_fp32_graph_contract(fp32):
    out, rep = fp32
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    assert [i.name for i in m.graph.input] == ["iq"]
    assert [o.name for o in m.graph.output] == ["logits"]
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].dim_value  # dynamic batch
    assert [d.dim_value for d in dims[1:]] == [2, LENGTH]
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    # weights inside the file: no external data, no side file
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer)
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx"]
    assert rep["opset"] == 17 and rep["exporter"] == "legacy" and rep["precision"] == "fp32"


def test_fp32_runs_any_batch_and_matches_report(fp32):
    out, rep = fp32
    sess = make_session(str(out), threads=1)
    for n in (1, 7):
        y = run_logits(sess, np.random.default_rng(n).standard_normal((n, 2, LENGTH)).astype(np.float32))
        assert y.shape == (n, CLASSES)
    assert rep["parity"]["within_tolerance"] is True
    assert rep["parity"]["max_abs_diff"] < 1e-3
    assert rep["parity"]["argmax_agreement"] == 1.0
    assert "test split" in rep["parity"]["frames_source"]
    acc = rep["accuracy"]
    assert acc["frames"] > 0 and acc["split"] == "test"
    assert acc["onnxruntime"] == pytest.approx(acc["torch"])  # fp32 predicts the same classes


def test_metadata_props(fp32, trained):
    out, rep = fp32
    meta = read_metadata(out)
    from edgeprune.checkpoint import load_checkpoint

    ck = load_checkpoint(trained[0])
    assert meta["edgeprune.classes"] == ck.classes
    assert meta["edgeprune.input"]["length"] == LENGTH and meta["edgeprune.input"]["name"] == "iq"
    assert meta["edgeprune.normalization"] == "none"
    assert meta["edgeprune.macs"] == ck.meta["macs"] and meta["edgeprune.params"] == ck.meta["params"]
    assert meta["edgeprune.precision"] == "fp32"
    assert meta["edgeprune.source_sha256"] == ck.sha256()
    assert meta["edgeprune.accuracy"] == pytest.approx(rep["accuracy"]["onnxruntime"])
    assert meta["edgeprune.version"]


def test_node_names_keep_layer_paths(fp32):
    """The profiler maps nodes to spec layers by 'layers.<i>' in node names: it must survive onnxsim."""
    out, rep = fp32
    m = onnx.load(str(out))
    convs = [n.name for n in m.graph.node if n.op_type in ("Conv", "Gemm")]
    assert rep["layer_named_nodes"] == 1.0
    assert "/layers.0/conv/Conv" in convs and "/layers.1/conv1/Conv" in convs
    idx = {int(n.split("/layers.")[1].split("/")[0]) for n in convs}
    assert idx == set(range(11)) - {10} | {11}  # stem + 9 blocks + classifier (gap has no weights)


def test_fp16_keeps_float32_io(trained, tmp_path):
    ckpt, data = trained
    out = tmp_path / "m16.onnx"
    rep = export_checkpoint(ckpt, out, precision="fp16", verify_data=data)
    m = onnx.load(str(out))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    big = [t for t in m.graph.initializer if len(t.dims) >= 2]
    assert big and all(t.data_type == onnx.TensorProto.FLOAT16 for t in big)
    assert rep["parity"]["within_tolerance"] and rep["parity"]["argmax_agreement"] >= 0.95
    assert out.stat().st_size < 0.6 * rep["size"] / 0.5  # about half the fp32 size, sanity only
    assert read_metadata(out)["edgeprune.precision"] == "fp16"


def test_dynamo_exporter_opset18_names(trained, tmp_path):
    ckpt, _ = trained
    out = tmp_path / "m18.onnx"
    rep = export_checkpoint(ckpt, out, opset=18)
    assert rep["exporter"] == "dynamo" and rep["opset"] >= 18
    assert rep["layer_named_nodes"] == 1.0
    assert "random" in rep["parity"]["frames_source"] and rep["accuracy"] is None
    assert rep["parity"]["within_tolerance"]
    assert not list(tmp_path.glob("*.data"))


def test_2d_model_exports(tmp_path):
    import torch

    from edgeprune.checkpoint import make_meta, save_checkpoint
    from edgeprune.models import build_model, make_spec

    torch.manual_seed(1)
    spec = make_spec("resnet20", 32, 3)
    path = tmp_path / "r2d.pt"
    save_checkpoint(path, spec, build_model(spec).state_dict(), make_meta(spec, ["a", "b", "c"]))
    rep = export_checkpoint(path, tmp_path / "r2d.onnx", target="x86-cpu")
    assert rep["input"]["shape"] == ["batch", 2, 32] and rep["target"] == "x86-cpu"
    assert rep["parity"]["within_tolerance"]


def test_parity_beyond_tolerance_is_an_error():
    ref = np.array([[1.0, 2.0, 0.5]], np.float32)
    ok = check_parity(compare_logits(ref, ref + 1e-5), "fp32")
    assert ok["within_tolerance"]
    with pytest.raises(EdgepruneError, match="does not match PyTorch"):
        check_parity(compare_logits(ref, ref + np.array([[0.0, 0.1, 0.0]], np.float32)), "fp32")


@pytest.mark.parametrize("kwargs, msg", [
    ({"precision": "fp16", "target": "x86-cpu"}, "does not support fp16"),
    ({"opset": 18, "target": "xavier-nx"}, "opset <= 17"),
    ({"precision": "int8"}, "calibrate"),
    ({"precision": "bf16"}, "unknown precision"),
    ({"opset": 5}, "opset must be"),
    ({"target": "no-such-board"}, "unknown target"),
])
def test_bad_options(trained, tmp_path, kwargs, msg):
    with pytest.raises(EdgepruneError, match=msg):
        export_checkpoint(trained[0], tmp_path / "x.onnx", **kwargs)
    assert not (tmp_path / "x.onnx").exists()


def test_bad_inputs(tmp_path, trained):
    with pytest.raises(EdgepruneError, match="does not exist"):
        export_checkpoint(tmp_path / "missing.pt", tmp_path / "x.onnx")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(EdgepruneError):
        export_checkpoint(junk, tmp_path / "x.onnx")
    with pytest.raises(EdgepruneError, match=r"\.onnx"):
        export_checkpoint(trained[0], tmp_path / "x.bin")


def test_cli_export_json(trained, tmp_path, capsys):
    ckpt, data = trained
    out = tmp_path / "cli.onnx"
    rc = main(["export", "--model", str(ckpt), "--out", str(out), "--data", str(data), "--target", "x86-cpu", "--json"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["path"] == str(out) and out.exists() and rep["target"] == "x86-cpu"
    rc = main(["export", "--model", str(ckpt), "--out", str(tmp_path / "y.onnx"), "--precision", "int8"])
    err = capsys.readouterr().err
    assert rc != 0 and err.startswith("edgeprune: error:") and "Traceback" not in err
