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
from edgeprune.schema import integer, mapping, number, obj, opt, seq, text, validate

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


_PRECISIONS = ("fp32", "fp16", "int8")


def _normalization(name) -> bool:
    from .preprocess import check_normalization

    check_normalization(name)
    return True


# Every field the bundle, the Predictor, the profiler and the runner read, with its type.
MANIFEST_SCHEMA = obj(
    kind=text(choices=(KIND,), doc="always " + KIND),
    schema_version=integer(doc="the manifest format version"),
    model=opt(text()),
    classes=seq(text(nonempty=True), nonempty=True, hi=1 << 16, doc="class names, index order"),
    input=obj(name=opt(text()), layout=text(choices=("NCL",)), channels=integer(choices=(2,)),
              length=integer(lo=1, hi=1 << 24), dtype=opt(text(choices=("float32",)))),
    output=opt(obj(name=opt(text()))),
    preprocessing=obj(normalization=text(check=_normalization, doc="none, l1, l2 or max"),
                      description=opt(text())),
    default_precision=opt(text(choices=_PRECISIONS, nullable=True)),
    opset=opt(integer(lo=1, hi=1000, nullable=True)),
    macs=opt(number(lo=0, nullable=True)),
    params=opt(number(lo=0, nullable=True)),
    weight_layers=opt(number(lo=0, nullable=True)),
    units=opt(number(lo=0, nullable=True)),
    variants=seq(obj(file=text(), format=text(choices=FORMATS), precision=text(choices=_PRECISIONS),
                     accuracy=opt(number(lo=0, hi=1, nullable=True))),
                 nonempty=True, doc="the model files"),
    files=mapping(obj(sha256=text(pattern="[0-9a-f]{64}"), size=integer(lo=0)), doc="every file with its hash"),
)


def validate_manifest(m: Any, where: str = "manifest.json") -> dict[str, Any]:
    """Check a parsed manifest against MANIFEST_SCHEMA and its cross-references; raise EdgepruneError naming the first problem."""
    if not isinstance(m, dict):
        raise EdgepruneError(f"{where}: not a JSON object")
    if m.get("kind") != KIND:
        raise EdgepruneError(f"{where}: not an edgeprune bundle manifest (kind {m.get('kind')!r})")
    v = m.get("schema_version")
    if v != SCHEMA_VERSION:
        raise EdgepruneError(f"{where}: unknown schema_version {v!r}; this edgeprune reads version {SCHEMA_VERSION} "
                             f"(upgrade edgeprune on this machine or re-bundle)")
    validate(m, MANIFEST_SCHEMA, where)
    for name in m["files"]:
        check_file_name(name, where)
        if name == MANIFEST:
            raise EdgepruneError(f"{where}: the manifest cannot list itself")
    for i, var in enumerate(m["variants"]):
        if var["file"] not in m["files"]:
            raise EdgepruneError(f"{where}: variant {i} names a file that is not in 'files'")
    return m
