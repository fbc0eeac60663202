"""Export and deploy: torch -> ONNX (fp32/fp16/int8 Q/DQ), TensorRT engines,
deploy bundles, and a Predictor that runs them without torch.

Installed as ``edgeprune.export`` (the repository's ``export/`` folder; see setup.py). Importing it imports no torch, onnx or onnxruntime; the names below
load their modules on first use.
"""

from __future__ import annotations

import importlib

__all__ = ["Predictor", "open_bundle", "make_bundle", "export_checkpoint", "load_target", "list_targets"]

_LAZY = {
    "Predictor": ("edgeprune.export.predictor", "Predictor"),
    "open_bundle": ("edgeprune.export.bundle", "open_bundle"),
    "make_bundle": ("edgeprune.export.bundle", "make_bundle"),
    "export_checkpoint": ("edgeprune.export.onnx_export", "export_checkpoint"),
    "load_target": ("edgeprune.export.targets", "load_target"),
    "list_targets": ("edgeprune.export.targets", "list_targets"),
}


def __getattr__(name):
    if name in _LAZY:
        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'edgeprune.export' has no attribute {name!r}")
