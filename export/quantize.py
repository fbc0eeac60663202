"""Precision variants of an fp32 ONNX model: fp16 (float32 I/O) and int8 Q/DQ.

INT8 is explicit quantization: QuantizeLinear/DequantizeLinear pairs around
weights (per channel) and activations (per tensor, symmetric, calibrated on
real frames), the form ONNX Runtime and TensorRT 8.5 to 11 all accept.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np

from edgeprune.errors import EdgepruneError, require


def to_fp16(model):
    """An fp16 copy of ``model`` (onnx.ModelProto) whose inputs and outputs stay float32.

    Uses onnxruntime's converter (``onnxruntime.transformers.float16``): weights
    and compute become float16, Cast nodes are inserted at the graph inputs
    and outputs.
    """
    require("onnx", "fp16 conversion")
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as exc:
        raise EdgepruneError("fp16 conversion needs onnxruntime's converter (onnxruntime.transformers.float16), "
                             "which this onnxruntime lacks; upgrade onnxruntime") from exc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    topological_sort(half)  # the converter appends its output Casts last; onnx.checker wants graph order
    return half


def topological_sort(model) -> None:
    """Reorder ``model.graph.node`` in place so every node follows the producers of its inputs."""
    graph = model.graph
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise EdgepruneError("the graph has a cycle or an input no node produces")
        pending = rest
    copies = [type(n)() for n in ordered]
    for c, n in zip(copies, ordered):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)


class FrameReader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over frames (N, 2, L)."""

    def __init__(self, frames: np.ndarray, input_name: str = "iq", batch_size: int = 64):
        self.frames = np.ascontiguousarray(frames, dtype=np.float32)
        self.input_name = input_name
        self.batch_size = batch_size
        self._i = 0

    def get_next(self):
        if self._i >= len(self.frames):
            return None
        xb = self.frames[self._i:self._i + self.batch_size]
        self._i += self.batch_size
        return {self.input_name: xb}

    def rewind(self):
        self._i = 0


def quantize_int8(model, calib_frames: np.ndarray, per_channel: bool = True, method: str = "minmax"):
    """Static INT8 Q/DQ quantization of an fp32 ``model`` (onnx.ModelProto), calibrated on ``calib_frames``.

    Activations and weights are signed int8 with zero point 0 (symmetric),
    weights per output channel; ``method`` is the calibration: minmax,
    entropy or percentile.
    """
    onnx = require("onnx", "int8 quantization")
    q = require("onnxruntime.quantization", "int8 quantization", "pip install onnxruntime")
    if calib_frames is None or len(calib_frames) == 0:
        raise EdgepruneError("int8 quantization needs calibration frames (give --calib-data FILE)")
    methods = {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
               "percentile": q.CalibrationMethod.Percentile}
    if method not in methods:
        raise EdgepruneError(f"unknown calibration method {method!r}; choose one of {', '.join(methods)}")
    with tempfile.TemporaryDirectory(prefix="edgeprune-q-") as tmp:
        src = Path(tmp) / "fp32.onnx"
        pre = Path(tmp) / "pre.onnx"
        dst = Path(tmp) / "int8.onnx"
        onnx.save(model, str(src))
        try:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            quant_pre_process(str(src), str(pre), skip_optimization=True, skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - pre-processing is an optimisation; quantize the plain model
            pre = src

        logging.getLogger().setLevel(logging.ERROR)
        q.quantize_static(
            str(pre), str(dst), FrameReader(calib_frames),
            quant_format=q.QuantFormat.QDQ,
            activation_type=q.QuantType.QInt8,
            weight_type=q.QuantType.QInt8,
            per_channel=per_channel,
            calibrate_method=methods[method],
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
        return onnx.load(str(dst))
