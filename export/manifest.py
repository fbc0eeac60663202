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

import re
from pathlib import Path
from typing import Any

from edgeprune.errors import EdgepruneError

SCHEMA_VERSION = 1
KIND = "edgeprune-bundle"
MANIFEST = "manifest.json"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
FORMATS = ("onnx", "tensorrt")



from edgeprune.digest import file_sha256 as sha256_file  # noqa: E402,F401  (torch-free)


def file_entry(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    return {"sha256": sha256_file(p), "size": p.stat().st_size}


def check_file_name(name: str, where: str = "manifest") -> str:
    """Bundle files are flat, plain names: no folders, no '..', no absolute paths."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise EdgepruneError(f"{where}: unsafe or invalid file name {name!r} (bundle files are plain names)")
    return name


def validate_manifest(m: Any, where: str = "manifest.json") -> dict[str, Any]:
    """Check a parsed manifest; raise EdgepruneError naming the first problem."""
    if not isinstance(m, dict):
        raise EdgepruneError(f"{where}: not a JSON object")
    if m.get("kind") != KIND:
        raise EdgepruneError(f"{where}: not an edgeprune bundle manifest (kind {m.get('kind')!r})")
    v = m.get("schema_version")
    if v != SCHEMA_VERSION:
        raise EdgepruneError(f"{where}: unknown schema_version {v!r}; this edgeprune reads version {SCHEMA_VERSION} "
                             f"(upgrade edgeprune on this machine or re-bundle)")
    for key, typ in (("classes", list), ("input", dict), ("preprocessing", dict), ("variants", list), ("files", dict)):
        if not isinstance(m.get(key), typ):
            raise EdgepruneError(f"{where}: '{key}' is missing or not a {typ.__name__}")
    if not m["classes"] or not all(isinstance(c, str) for c in m["classes"]):
        raise EdgepruneError(f"{where}: 'classes' must be a non-empty list of names")
    inp = m["input"]
    if not isinstance(inp.get("length"), int) or inp.get("channels") != 2 or inp.get("layout") != "NCL":
        raise EdgepruneError(f"{where}: 'input' must give layout NCL, channels 2 and an integer length")
    from .preprocess import check_normalization

    check_normalization(m["preprocessing"].get("normalization"))
    for name, entry in m["files"].items():
        check_file_name(name, where)
        if name == MANIFEST:
            raise EdgepruneError(f"{where}: the manifest cannot list itself")
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) or len(entry["sha256"]) != 64 \
                or not isinstance(entry.get("size"), int):
            raise EdgepruneError(f"{where}: file entry {name!r} needs a sha256 and a size")
    if not m["variants"]:
        raise EdgepruneError(f"{where}: the bundle has no model variants")
    for i, var in enumerate(m["variants"]):
        if not isinstance(var, dict) or not isinstance(var.get("file"), str) or var["file"] not in m["files"]:
            raise EdgepruneError(f"{where}: variant {i} names a file that is not in 'files'")
        if var.get("format") not in FORMATS:
            raise EdgepruneError(f"{where}: variant {i} has unknown format {var.get('format')!r}")
        if var.get("precision") not in ("fp32", "fp16", "int8"):
            raise EdgepruneError(f"{where}: variant {i} has unknown precision {var.get('precision')!r}")
    return m
