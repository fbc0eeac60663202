"""The bundle manifest (``manifest.json``): schema, validation, file hashing. Torch-free.

    {"schema_version": 1, "kind": "edgeprune-bundle", "model": "resnet20-1d",
     "classes": [...], "input": {"name": "iq", "layout": "NCL", "channels": 2, "length": 128,
     "dtype": "float32"}, "output": {"name": "logits"},
     "preprocessing": {"normalization": "l1", "description": "..."},
     "default_precision": "fp16", "opset": 17, "macs": ..., "params": ..., "mac_definition": "...",
     "target": {...}, "variants": [{"file": "model-fp32.onnx", "format": "onnx", "precision": "fp32",
     "accuracy": 0.91, ...}], "files": {"model-fp32.onnx": {"sha256": "...", "size": 123}},
     "source": {...}, "tools": {...}, "created": "2026-..."}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .runtime.manifest import (FORMATS, KIND, MANIFEST, MANIFEST_SCHEMA, SCHEMA_VERSION,  # noqa: F401
                               check_file_name, check_manifest)

from edgeprune.digest import file_sha256 as sha256_file  # noqa: E402,F401  (torch-free)


def file_entry(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    return {"sha256": sha256_file(p), "size": p.stat().st_size}


def validate_manifest(m: Any, where: str = "manifest.json") -> dict[str, Any]:
    """Check a parsed manifest (see export.runtime.manifest.MANIFEST_SCHEMA); raise EdgepruneError naming the first problem."""
    return check_manifest(m, where)
