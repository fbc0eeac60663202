"""A verified bundle folder opened on a backend: which model file runs, and frames -> classes (Python 3.6+).

``edgeprune.export.Predictor`` (for bundles) and a bundle's run.py both open models here,
so they pick the same file, preprocess the same way and give the same answers.

Which file runs (``choose``): with ``backend="auto"``, a TensorRT engine when
TensorRT can run here and the bundle has one of the precision asked for
(an engine ``run.py build`` made on this board first, then one shipped in
the bundle); otherwise the ONNX variant (the bundle's default precision
unless one is asked for) on ONNX Runtime.
"""

import os

import numpy as np

from . import registry
from .errors import EdgepruneError
from .frames import (check_frames, check_layout, check_normalization, classify, layout_shape, normalize,
                     padded_batch, to_layout)
from .jetpack import install_hint
from .manifest import file_sha256, pick_variant
from .backend_tensorrt import read_engine_metadata


def board_engine(root, precision):
    return os.path.join(str(root), "board-{}.engine".format(precision))


def engine_candidates(root, manifest):
    """{precision: engine path}: engines built on this board by run.py build, then engines in the bundle."""
    out = {}
    for prec in ("fp16", "int8", "fp32"):
        p = board_engine(root, prec)
        if os.path.isfile(p):
            out[prec] = p
    for v in manifest["variants"]:
        if v["format"] == "tensorrt":
            out.setdefault(v["precision"], os.path.join(str(root), v["file"]))
    return out


def _check_board_engine(path):
    """An engine run.py built must still match the sha256 its build recorded."""

    if not os.path.basename(path).startswith("board-"):
        return
    meta = read_engine_metadata(path)
    if not meta.get("engine_sha256"):
        raise EdgepruneError("{} has no build record ({}.json); rebuild it with python3 run.py build".format(
            path, os.path.basename(path)))
    if file_sha256(path) != meta["engine_sha256"]:
        raise EdgepruneError("{} does not match the sha256 its build recorded (damaged?); rebuild it with "
                             "python3 run.py build".format(path))


def choose(root, manifest, backend="auto", precision=None, source=None):
    """(backend name, model path, precision) for this bundle here; see the module docstring."""
    source = source or root
    if backend not in ("auto", "onnxruntime", "tensorrt"):
        raise EdgepruneError("unknown backend {!r}; choose one of auto, onnxruntime, tensorrt".format(backend))
    engines = engine_candidates(root, manifest)
    if backend == "tensorrt" or (backend == "auto" and engines and registry.availability("tensorrt") is None
                                 and (precision is None or precision in engines)):
        if not engines:
            raise EdgepruneError("bundle {} has no TensorRT engine; build one on this board: python3 run.py build "
                                 "(or edgeprune build)".format(source))
        if precision is None:
            default = manifest.get("default_precision")
            precision = default if default in engines else sorted(engines)[0]
        if precision not in engines:
            raise EdgepruneError("bundle {} has no {} TensorRT engine (it has {}); build one: python3 run.py build "
                                 "--precision {}".format(source, precision, ", ".join(sorted(engines)), precision))
        return "tensorrt", engines[precision], precision
    var = pick_variant(manifest, precision, "onnx", source)
    if backend == "auto" and registry.availability("onnxruntime") is not None \
            and registry.availability("tensorrt") is not None:
        raise EdgepruneError("neither ONNX Runtime nor TensorRT can run here; install one: " + install_hint())
    return "onnxruntime", os.path.join(str(root), var["file"]), var["precision"]


class Model(object):
    """An opened model: ``predict(frames)``, ``logits(frames)``, ``info()``, ``close()``."""

    def __init__(self, backend, path, classes, normalization, length, precision, source=None, where=None,
                 layout="NCL", min_batch=None):
        self.backend = backend
        self.model_path = path
        self.source = source or path
        where = where or str(self.source)
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
            raise EdgepruneError("{}: the class names are not a non-empty list of names".format(where))
        if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= 1 << 24:
            raise EdgepruneError("{}: no valid frame length ({!r})".format(where, length))
        self.classes = list(classes)
        self.normalization = check_normalization(normalization)
        self.length = int(length)
        self.layout = check_layout(layout)   # how the model takes its frames; they arrive as (N, 2, L)
        self.min_batch = int(min_batch or 1)   # a graph that runs only on that many frames: smaller batches padded
        self.precision = precision
        self.providers = list(backend.describe().get("providers") or [])
        self._check_model_io(where)

    def _check_model_io(self, where):
        """The manifest's or metadata's frame length and classes must be what the model itself takes and gives."""
        shapes = getattr(self.backend, "input_shape", None), getattr(self.backend, "output_shape", None)
        if not all(callable(f) for f in shapes):
            return
        ishape, oshape = shapes[0](), shapes[1]()
        if ishape is None or oshape is None:
            return
        want = layout_shape(self.layout, None, None)
        if len(ishape) != len(want) or any(isinstance(a, int) and b is not None and a != b
                                           for a, b in zip(ishape, want)):
            raise EdgepruneError("{}: the model's input has shape {}, not {} I/Q frames (its layout {})".format(
                self.source, list(ishape), "(" + ", ".join(str(v) for v in layout_shape(self.layout, "N", "L")) + ")",
                self.layout))
        at = want.index(None, 1)
        if isinstance(ishape[at], int) and ishape[at] != self.length:
            raise EdgepruneError("{} says frames of {} samples but the model takes {}".format(
                where, self.length, ishape[at]))
        if oshape and isinstance(oshape[-1], int) and oshape[-1] != len(self.classes):
            raise EdgepruneError("{} names {} classes but the model has {} outputs".format(
                where, len(self.classes), oshape[-1]))

    @property
    def backend_name(self):
        return self.backend.name

    def check_frames(self, frames):
        return check_frames(frames, self.length)

    def logits(self, frames, preprocess=True):
        x = self.check_frames(frames)
        if preprocess:
            x = normalize(x, self.normalization)
        if len(x) == 0:
            return np.zeros((0, len(self.classes)), np.float32)

        xb, n = padded_batch(to_layout(x, self.layout), self.min_batch)
        z = self.backend.infer(xb)[:n]
        if z.size and not np.isfinite(z).all():
            bad = int((~np.isfinite(z).reshape(len(z), -1).all(axis=1)).sum())
            raise EdgepruneError("the model's scores are NaN or Inf for {} frame(s): their samples are too large for "
                                 "it (normalisation {!r}; values near the float32 limit?)".format(bad,
                                                                                               self.normalization))
        return z

    def predict(self, frames, preprocess=True):
        return classify(self.logits(frames, preprocess), self.classes)

    def info(self):
        return {"source": str(self.source), "backend": self.backend.name, "providers": self.providers,
                "model_file": str(self.model_path), "precision": self.precision, "classes": self.classes,
                "length": self.length, "layout": self.layout, "min_batch": self.min_batch,
                "normalization": self.normalization}

    def close(self):
        self.backend.close()


def open_model(root, manifest, backend="auto", precision=None, threads=None, providers=None, source=None):
    """Open the model ``choose`` picks for this verified bundle folder."""
    name, path, prec = choose(root, manifest, backend, precision, source)
    if registry.model_kind(name) == "engine":
        _check_board_engine(path)
    be = registry.open_backend(name, path, threads=threads, providers=providers,
                               target_providers=(manifest.get("target") or {}).get("providers"))
    return Model(be, path, manifest["classes"], manifest["preprocessing"].get("normalization"),
                 manifest["input"]["length"], prec, source, where="{} (manifest.json)".format(source or root),
                 layout=manifest["input"].get("layout"), min_batch=manifest["input"].get("min_batch"))
