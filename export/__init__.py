"""Export and deploy: torch -> ONNX (fp32/fp16/int8 Q/DQ), TensorRT engines,
deploy bundles, and a Predictor that runs them without torch.

Importing ``export`` imports no torch, onnx or onnxruntime; the names below
load their modules on first use.
"""

from __future__ import annotations

__all__ = ["Predictor", "open_bundle", "make_bundle", "export_checkpoint", "load_target", "list_targets"]

_LAZY = {
    "Predictor": ("export.predictor", "Predictor"),
    "open_bundle": ("export.bundle", "open_bundle"),
    "make_bundle": ("export.bundle", "make_bundle"),
    "export_checkpoint": ("export.onnx_export", "export_checkpoint"),
    "load_target": ("export.targets", "load_target"),
    "list_targets": ("export.targets", "list_targets"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'export' has no attribute {name!r}")
