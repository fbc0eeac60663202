"""ONNX Runtime sessions, parity checks and accuracy of ONNX models (torch-free)."""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from edgeprune.errors import EdgepruneError, require

from .runtime.frames import padded_batch, to_layout
from .runtime.onnx_external import check_model_file

INPUT_NAME = "iq"
OUTPUT_NAME = "logits"


def make_session(model, threads: int | None = None, providers=None, spinning: bool = False):
    """An ``onnxruntime.InferenceSession`` for a path or serialized model bytes.

    ``threads`` fixes intra-op threads (inter-op is 1); spinning is off by
    default so measured latencies are comparable.
    """
    ort = require("onnxruntime", "running ONNX models", "pip install onnxruntime")
    ort.set_default_logger_severity(3)  # the environment's own log lines (before session options apply) too
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.inter_op_num_threads = 1
    if threads:
        so.intra_op_num_threads = int(threads)
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.log_severity_level = 4  # a failing run is raised as an exception (and reported as one line), not logged
    available = ort.get_available_providers()
    if providers:
        chosen = [p for p in providers if p in available]
        if not chosen:
            raise EdgepruneError(f"none of the providers {list(providers)} is available in this onnxruntime "
                                 f"(available: {', '.join(available)})")
    else:
        chosen = ["CPUExecutionProvider"]
    if isinstance(model, (str, os.PathLike)):
        if not os.path.isfile(model):
            raise EdgepruneError(f"ONNX file {model} does not exist")

        check_model_file(model)  # external data: only files a bundle manifest beside it lists
        src = str(model)
    else:
        src = model
    try:
        return ort.InferenceSession(src, sess_options=so, providers=chosen)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/InvalidProtobuf types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        name = model if isinstance(model, (str, os.PathLike)) else "the ONNX model"
        raise EdgepruneError(f"ONNX Runtime cannot load {name}: {first}") from exc


def run_logits(session, x: np.ndarray, batch_size: int = 256, layout: str = "NCL", min_batch: int = 1) -> np.ndarray:
    """Logits for frames ``x`` (N, 2, L) float32, in batches, fed to the model in its ``layout`` (a batch smaller
    than ``min_batch`` padded, the padding's logits dropped). A failing run is one EdgepruneError naming the batch
    size and the node (ONNX Runtime's own exception types otherwise surface as 'unexpected')."""
    name = session.get_inputs()[0].name
    out = []
    for i in range(0, len(x), batch_size):
        xb, n = padded_batch(to_layout(np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32), layout),
                             min_batch)
        try:
            res = session.run(None, {name: xb})[0]
        except Exception as exc:  # noqa: BLE001 - ORT raises Fail, InvalidArgument, RuntimeException ...
            raise EdgepruneError(f"ONNX Runtime fails at batch {len(xb)}: {ort_failure(exc)}") from exc
        out.append(np.asarray(res, dtype=np.float32)[:n])
    if not out:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(out)


def ort_failure(exc) -> str:
    """ONNX Runtime's error in one line: the node (name and op) and its status message."""
    text = " ".join(str(exc).split())
    m = re.search(r"running (\S+) node\. Name:'([^']*)' Status Message: (.*)", text)
    if m:
        return f"node '{m.group(2)}' ({m.group(1)}): {m.group(3)[:300]}"
    return (text or type(exc).__name__)[:300]


def compare_logits(ref: np.ndarray, got: np.ndarray) -> dict[str, Any]:
    """Max/mean absolute difference and argmax agreement of two logit arrays."""
    if ref.shape != got.shape:
        raise EdgepruneError(f"output shapes differ: {ref.shape} vs {got.shape}")
    diff = np.abs(ref.astype(np.float64) - got.astype(np.float64))
    return {
        "frames": int(len(ref)),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "logit_scale": float(np.abs(ref).max()) if ref.size else 0.0,
        "argmax_agreement": float((ref.argmax(1) == got.argmax(1)).mean()) if len(ref) else 1.0,
    }


# max |diff| allowed, relative to max(1, max |logit|), per precision (compared with PyTorch fp32)
PARITY_TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2}


def check_parity(stats: dict[str, Any], precision: str, what: str = "the ONNX model") -> dict[str, Any]:
    """Raise EdgepruneError when ``stats`` (from compare_logits) exceed the tolerance for ``precision``."""
    tol = PARITY_TOLERANCE.get(precision)
    stats = dict(stats)
    if tol is None:  # int8: accuracy is the measure, not logit parity
        stats["tolerance"] = None
        stats["within_tolerance"] = None
        return stats
    limit = tol * max(1.0, stats["logit_scale"])
    stats["tolerance"] = limit
    stats["within_tolerance"] = stats["max_abs_diff"] <= limit
    if not stats["within_tolerance"]:
        raise EdgepruneError(
            f"{what} ({precision}) does not match PyTorch: max |diff| {stats['max_abs_diff']:.3g} > tolerance "
            f"{limit:.3g} (argmax agreement {stats['argmax_agreement']:.4f} on {stats['frames']} frames)")
    return stats


def onnx_accuracy(session, x: np.ndarray, y: np.ndarray, batch_size: int = 256, layout: str = "NCL",
                  min_batch: int = 1) -> float:
    if len(x) == 0:
        return float("nan")
    return float((run_logits(session, x, batch_size, layout, min_batch).argmax(1) == y).mean())
