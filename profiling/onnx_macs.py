"""MACs counted from an ONNX graph, with edgeprune's MAC definition.

Conv / Gemm / MatMul (and their quantized forms QLinearConv, ConvInteger,
QLinearMatMul, MatMulInteger) multiply-accumulates per frame, shapes from
ONNX shape inference with the batch fixed to 1. BN, activations, pooling and
additions are not counted, as in ``edgeprune.models.macs.count_macs``.

Nodes are grouped by the top-level model layer in their name (legacy torch
export names them like ``/layers.3/conv1/Conv``; the dynamo exporter keeps the
module path in the node's ``pkg.torch.onnx.name_scopes`` metadata).
Needs the ``onnx`` package (not torch).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from edgeprune.errors import EdgepruneError, require
from edgeprune.export.runtime.onnx_external import check_model_file

_LAYER_RE = re.compile(r"(?<![\w])layers\.(\d+)(?!\d)")
# op type -> (index of the activation input, index of the weight input)
_CONV_OPS = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3)}
_MATMUL_OPS = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3)}


def layer_index(name: str, scopes: str | None = None) -> int | None:
    """The top-level layer index ``i`` of a node named like ``/layers.i/...`` (None if there is none)."""
    for text in (name or "", scopes or ""):
        m = _LAYER_RE.search(text)
        if m:
            return int(m.group(1))
    return None


def _node_scopes(node) -> str | None:
    for prop in getattr(node, "metadata_props", []):
        if "name_scopes" in prop.key or prop.key == "namespace":
            return prop.value
    return None


def _dims(type_proto) -> list | None:
    t = type_proto.tensor_type
    if not t.HasField("shape"):
        return None
    out = []
    for d in t.shape.dim:
        out.append(d.dim_value if d.HasField("dim_value") else None)
    return out


def _load(model):
    onnx = require("onnx", "counting MACs from an ONNX graph")
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.exists():
            raise EdgepruneError(f"ONNX file {path} does not exist")

        check_model_file(path)  # external data: only files a bundle manifest beside it lists
        try:
            model = onnx.load(str(path))
        except Exception as exc:  # noqa: BLE001 - protobuf raises several types
            raise EdgepruneError(f"{path} is not a readable ONNX model ({type(exc).__name__})") from exc
    return onnx, model


def _shapes_by_running(model, names: list[str]) -> dict[str, list]:
    """Shapes of intermediate tensors from one ONNX Runtime run at batch 1 on zeros."""
    import numpy as np

    onnx = require("onnx", "counting MACs from an ONNX graph")
    ort = require("onnxruntime", "counting MACs of an ONNX graph with dynamic shapes")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    present = {o.name for o in m.graph.output}
    for n in names:
        if n not in present:
            m.graph.output.append(onnx.ValueInfoProto(name=n))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise EdgepruneError(f"cannot count MACs: ONNX Runtime cannot load the graph ({str(exc).splitlines()[0]})") from exc
    dtypes = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8}
    feed = {}
    for inp in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
        feed[inp.name] = np.zeros(shape, dtypes.get(inp.type, np.float32))
    outs = sess.run(names, feed)
    return {n: list(o.shape) for n, o in zip(names, outs)}


_RNN_OPS = ("LSTM", "GRU", "RNN")


def count_onnx_macs(model) -> dict:
    """Count MACs of an ONNX model (a path or a ModelProto).

    Returns ``{"macs": total per frame, "per_layer": {layer index: MACs},
    "other": MACs outside any ``layers.i``, "weight_layers": number of
    Conv/Gemm/MatMul/LSTM/GRU/RNN nodes (an LSTM/GRU/RNN node counts its input
    and recurrent weights at every step, in every direction), "nodes": [{"name", "op", "layer", "macs"}]}``.
    """
    onnx, model = _load(model)
    model_copy = onnx.ModelProto()
    model_copy.CopyFrom(model)
    graph, shapes, batch0 = _tensor_shapes(onnx, model_copy)

    def shape_of(name: str, node) -> list:
        s = shapes.get(name)
        if s is None or any(v is None for v in s):
            raise EdgepruneError(f"cannot count MACs: the shape of {name!r} (node {node.name or node.op_type}) "
                                 f"is unknown")
        return s

    nodes = []
    for node in graph.node:
        macs = _node_macs(node, shape_of, batch0)
        if macs is None:
            continue
        nodes.append({"name": node.name, "op": node.op_type, "layer": layer_index(node.name, _node_scopes(node)),
                      "macs": int(macs)})
    per_layer: dict[int, int] = {}
    other = 0
    for n in nodes:
        if n["layer"] is None:
            other += n["macs"]
        else:
            per_layer[n["layer"]] = per_layer.get(n["layer"], 0) + n["macs"]
    return {"macs": sum(n["macs"] for n in nodes), "per_layer": dict(sorted(per_layer.items())),
            "other": other, "weight_layers": len(nodes), "nodes": nodes}


def _tensor_shapes(onnx, model_copy):
    """(the shape-inferred graph, {tensor name: shape}, the batch size the shapes hold) for ``model_copy``.

    A dynamic batch axis is fixed to 1 first (``model_copy`` is changed).
    Shapes of counted nodes that static inference leaves unknown are read
    off one run of the graph on a zero frame.
    """
    graph = model_copy.graph
    inits = {i.name for i in graph.initializer}
    batch0 = 1
    for inp in graph.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        if len(dims):
            if dims[0].HasField("dim_value") and dims[0].dim_value > 0:
                batch0 = dims[0].dim_value
            else:
                dims[0].Clear()
                dims[0].dim_value = 1
    try:
        inferred = onnx.shape_inference.infer_shapes(model_copy, data_prop=True)
    except Exception as exc:  # noqa: BLE001
        raise EdgepruneError(f"ONNX shape inference failed, cannot count MACs ({str(exc).splitlines()[0]})") from exc
    g = inferred.graph
    shapes: dict[str, list | None] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        shapes[vi.name] = _dims(vi.type)
    for init in g.initializer:
        shapes[init.name] = list(init.dims)

    def known(name: str) -> bool:
        s = shapes.get(name)
        return s is not None and all(v is not None for v in s)

    wanted = []
    for node in g.node:
        if node.op_type in _CONV_OPS or node.op_type in _MATMUL_OPS or node.op_type == "Gemm":
            idx = {0, 1, 3} & set(range(len(node.input)))
            wanted += [node.input[i] for i in idx if node.input[i]] + [node.output[0]]
        elif node.op_type in _RNN_OPS:
            wanted += [n for n in node.input[:3] if n]
    missing = sorted({n for n in wanted if not known(n)})
    if missing:
        # shapes that static inference cannot resolve (e.g. a Pad whose pads come from Shape ops):
        # run the graph once on a zero frame and read them off
        shapes.update(_shapes_by_running(model_copy, missing))
    return g, shapes, batch0


def _node_macs(node, shape_of, batch0: int) -> int | None:
    """MACs per frame of one Conv/Gemm/MatMul/RNN node (None for other ops); ``shape_of(name, node)`` gives shapes."""
    op = node.op_type
    if op in _CONV_OPS:
        _, wi = _CONV_OPS[op]
        w = shape_of(node.input[wi], node)
        out = shape_of(node.output[0], node)
        return math.prod(map(int, out[1:])) * w[1] * math.prod(map(int, w[2:])) * out[0] // batch0
    if op == "Gemm":
        a = shape_of(node.input[0], node)
        out = shape_of(node.output[0], node)
        trans_a = next((at.i for at in node.attribute if at.name == "transA"), 0)
        k = a[0] if trans_a else a[1]
        return math.prod(map(int, out)) * k // batch0
    if op in _MATMUL_OPS:
        ai, _ = _MATMUL_OPS[op]
        a = shape_of(node.input[ai], node)
        out = shape_of(node.output[0], node)
        return math.prod(map(int, out)) * a[-1] // batch0
    if op in _RNN_OPS:
        # X [seq, batch, in] (layout 0) or [batch, seq, in] (layout 1); W [dirs, gates*H, in]; R [dirs, gates*H, H]:
        # every step multiplies the input and the hidden state by all gate weights, in every direction
        x = shape_of(node.input[0], node)
        w = shape_of(node.input[1], node)
        r = shape_of(node.input[2], node)
        layout = next((at.i for at in node.attribute if at.name == "layout"), 0)
        seq, batch = (x[1], x[0]) if layout else (x[0], x[1])
        return seq * batch * w[0] * (w[1] * w[2] + r[1] * r[2]) // batch0
    return None
