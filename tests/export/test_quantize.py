"""INT8 Q/DQ static quantization and the fp16 converter helpers."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgeprune.errors import EdgepruneError
from edgeprune.export.onnx_export import export_checkpoint, read_metadata
from edgeprune.export.quantize import FrameReader, topological_sort
from edgeprune.export.verify import make_session, run_logits
from export_fixtures import LENGTH, shared_trained


@pytest.fixture(scope="module")
def int8(tmp_path_factory):
    ckpt, data = shared_trained(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("int8")
    rep32 = export_checkpoint(ckpt, tmp / "m32.onnx", verify_data=data)
    rep8 = export_checkpoint(ckpt, tmp / "m8.onnx", precision="int8", calib_data=data, verify_data=data,
                             calib_frames=96)
    return tmp, rep32, rep8


def test_qdq_structure(int8):
    tmp, _, rep = int8
    m = onnx.load(str(tmp / "m8.onnx"))
    ops = [n.op_type for n in m.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert "QLinearConv" not in ops and "ConvInteger" not in ops  # QDQ format, not QOperator
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    conv_w = [n for n in m.graph.node if n.op_type == "Conv"]
    per_channel = 0
    for conv in conv_w:
        w_producer = next(n for n in m.graph.node if conv.input[1] in n.output)
        assert w_producer.op_type == "DequantizeLinear"
        scale = inits[w_producer.input[1]]
        zp = inits[w_producer.input[2]] if len(w_producer.input) > 2 else np.zeros(1)
        assert zp.dtype == np.int8 and not zp.any()  # symmetric: zero point 0, signed int8 (TensorRT's form)
        per_channel += scale.ndim == 1 and scale.size > 1
    assert per_channel == len(conv_w)  # per-channel weights
    # activations quantized symmetric int8 too
    for n in m.graph.node:
        if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits:
            assert inits[n.input[2]].dtype == np.int8 and not inits[n.input[2]].any()
    assert rep["layer_named_nodes"] == 1.0


def test_int8_runs_and_keeps_accuracy(int8):
    tmp, rep32, rep8 = int8
    sess = make_session(str(tmp / "m8.onnx"), threads=1)
    y = run_logits(sess, np.zeros((3, 2, LENGTH), np.float32))
    assert y.shape == (3, 4) and np.isfinite(y).all()
    assert rep8["parity"]["tolerance"] is None  # int8 is judged by accuracy, not logit parity
    assert rep8["parity"]["argmax_agreement"] >= 0.85
    assert rep8["accuracy"]["onnxruntime"] >= rep32["accuracy"]["onnxruntime"] - 0.1
    assert rep8["calibration"]["frames"] == 96 and rep8["calibration"]["split"] == "train"
    meta = read_metadata(tmp / "m8.onnx")
    assert meta["edgeprune.precision"] == "int8"
    assert meta["edgeprune.accuracy"] == pytest.approx(rep8["accuracy"]["onnxruntime"])
    assert (tmp / "m8.onnx").stat().st_size < (tmp / "m32.onnx").stat().st_size / 2


def test_calibration_is_deterministic(int8, tmp_path_factory):
    tmp, _, _ = int8
    ckpt, data = shared_trained(tmp_path_factory)
    export_checkpoint(ckpt, tmp / "again.onnx", precision="int8", calib_data=data, calib_frames=96)
    a, b = onnx.load(str(tmp / "m8.onnx")), onnx.load(str(tmp / "again.onnx"))
    sa = {t.name: numpy_helper.to_array(t) for t in a.graph.initializer if "scale" in t.name}
    sb = {t.name: numpy_helper.to_array(t) for t in b.graph.initializer if "scale" in t.name}
    assert sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)


def test_frame_reader_batches():
    r = FrameReader(np.zeros((10, 2, 8), np.float32), batch_size=4)
    sizes = []
    while (item := r.get_next()) is not None:
        sizes.append(len(item["iq"]))
    assert sizes == [4, 4, 2]
    r.rewind()
    assert len(r.get_next()["iq"]) == 4


def test_topological_sort_and_cycle():
    from onnx import TensorProto, helper

    a = helper.make_node("Relu", ["x"], ["a"], name="a")
    b = helper.make_node("Relu", ["a"], ["y"], name="b")
    g = helper.make_graph([b, a], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    m = helper.make_model(g)
    topological_sort(m)
    assert [n.name for n in m.graph.node] == ["a", "b"]
    onnx.checker.check_model(m)
    c = helper.make_node("Relu", ["y"], ["a2"], name="c")
    d = helper.make_node("Relu", ["a2"], ["y2"], name="d")
    e = helper.make_node("Add", ["y2", "z"], ["zz"], name="e")
    g2 = helper.make_graph([e, c, d], "g2", [], [])
    with pytest.raises(EdgepruneError, match="cycle"):
        topological_sort(helper.make_model(g2))


def test_int8_without_frames_is_an_error():
    from edgeprune.export.quantize import quantize_int8

    with pytest.raises(EdgepruneError, match="calibration"):
        quantize_int8(None, np.zeros((0, 2, 8), np.float32))
