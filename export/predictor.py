"""Classify I/Q frames with a bundle, an ONNX file or a TensorRT engine (torch-free).

    from export import Predictor
    p = Predictor("bundle.tar.gz")
    out = p.predict(frames)          # frames (N, 2, L) or (2, L)
    out["names"], out["confidence"]

The bundle's preprocessing (normalisation) is applied to the frames.
ONNX Runtime sessions are thread-safe for run(); the TensorRT runner
serialises calls with a lock, so one Predictor may be shared by threads.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from edgeprune.errors import EdgepruneError

from .preprocess import check_normalization, normalize

BACKENDS = ("auto", "onnxruntime", "tensorrt")


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


class Predictor:
    """A loaded model ready to classify frames; see the module docstring."""

    def __init__(self, model, backend: str = "auto", precision: str | None = None, threads: int | None = None,
                 providers=None):
        if backend not in BACKENDS:
            raise EdgepruneError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.source = Path(model)
        self._bundle = None
        self._lock = threading.Lock()
        if not self.source.exists():
            raise EdgepruneError(f"{self.source} does not exist")
        if not self.source.is_dir():
            from edgeprune.safeio import check_input

            check_input(self.source, "model", "bundle")  # a regular file: never a FIFO or a device
        if self.source.is_dir() or str(self.source).endswith((".tar.gz", ".tgz")):
            from .bundle import open_bundle

            self._bundle = b = open_bundle(self.source)
            self.classes = b.classes
            self.normalization = b.normalization
            self.length = b.length
            engines = b.variants("tensorrt")
            use_trt = backend == "tensorrt" or (backend == "auto" and engines and _tensorrt_available()
                                                and (precision is None or any(v["precision"] == precision for v in engines)))
            if use_trt:
                var = b.variant(precision, "tensorrt")
            else:
                var = b.variant(precision, "onnx")
            self.precision = var["precision"]
            self._init_backend(b.path(var["file"]), "tensorrt" if use_trt else "onnxruntime", threads, providers)
        elif self.source.suffix == ".onnx":
            if backend == "tensorrt":
                raise EdgepruneError("an .onnx file runs on onnxruntime; build an engine first (edgeprune build)")
            self._init_backend(self.source, "onnxruntime", threads, providers)
            meta = self._onnx_meta()
            classes = meta.get("edgeprune.classes")
            if classes is not None and (not isinstance(classes, list) or not classes
                                        or not all(isinstance(c, str) for c in classes)):
                raise EdgepruneError(f"{self.source}: its edgeprune.classes metadata is not a list of class names")
            self.classes = classes or [str(i) for i in range(self._n_out())]
            self.normalization = check_normalization(meta.get("edgeprune.normalization", "none"))
            inp = meta.get("edgeprune.input") or {}
            length = inp.get("length") if isinstance(inp, dict) else None
            if length is not None and (isinstance(length, bool) or not isinstance(length, int)
                                       or not 1 <= length <= 1 << 24):
                raise EdgepruneError(f"{self.source}: its edgeprune.input metadata has no valid frame length")
            self.length = int(length or self._in_len())
            self.precision = meta.get("edgeprune.precision")
        elif self.source.suffix in (".engine", ".plan", ".trt"):
            if backend == "onnxruntime":
                raise EdgepruneError("a TensorRT engine runs on the tensorrt backend")
            self._init_backend(self.source, "tensorrt", threads, providers)
            meta = self._runner.metadata
            if not meta.get("classes"):
                raise EdgepruneError(f"{self.source}.json (written by edgeprune build) is missing; "
                                     f"it gives the class names and preprocessing")
            self.classes = list(meta["classes"])
            self.normalization = check_normalization(meta.get("normalization", "none"))
            self.length = int(meta["input_length"])
            self.precision = meta.get("precision")
        else:
            raise EdgepruneError(f"{self.source}: give a bundle (folder or .tar.gz), an .onnx file or an .engine")
        if self.precision is None and self.backend == "onnxruntime":
            self.precision = "fp32"
        if self._session is not None:
            self._check_model_io()

    def _check_model_io(self) -> None:
        """The manifest's or metadata's frame length and classes must be what the model itself takes and gives."""
        where = f"{self.source}" + (" (manifest.json)" if self._bundle is not None else " (its metadata)")
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise EdgepruneError(f"{self.source}: the model has {len(inputs)} inputs and {len(outputs)} outputs; "
                                 f"an edgeprune model has one input (frames) and one output (logits)")
        ishape, oshape = inputs[0].shape, outputs[0].shape
        if len(ishape) != 3 or (isinstance(ishape[1], int) and ishape[1] != 2):
            raise EdgepruneError(f"{self.source}: the model's input has shape {ishape}, not (N, 2, L) I/Q frames")
        if isinstance(ishape[2], int) and ishape[2] != self.length:
            raise EdgepruneError(f"{where} says frames of {self.length} samples but the model takes {ishape[2]}")
        if oshape and isinstance(oshape[-1], int) and oshape[-1] != len(self.classes):
            raise EdgepruneError(f"{where} names {len(self.classes)} classes but the model has {oshape[-1]} outputs")

    # backends ----------------------------------------------------------
    def _init_backend(self, path: Path, backend: str, threads, providers) -> None:
        self.backend = backend
        self.model_path = path
        if backend == "onnxruntime":
            from .verify import make_session

            self._session = make_session(str(path), threads=threads, providers=providers)
            self._input = self._session.get_inputs()[0].name
            self._runner = None
            self.providers = self._session.get_providers()
        else:
            from .trt_runtime import TrtRunner

            self._session = None
            self._runner = TrtRunner(path)
            self.providers = ["TensorRT"]

    def _onnx_meta(self) -> dict[str, Any]:
        try:
            raw = self._session.get_modelmeta().custom_metadata_map
        except UnicodeDecodeError as exc:
            raise EdgepruneError(f"{self.source}: the model's metadata is not valid UTF-8 (damaged file?)") from exc
        out = {}
        for k, v in raw.items():
            try:
                out[k] = json.loads(v)
            except json.JSONDecodeError:
                out[k] = v
        return out

    def _n_out(self) -> int:
        shape = self._session.get_outputs()[0].shape
        return int(shape[-1]) if isinstance(shape[-1], int) else 0

    def _in_len(self) -> int:
        shape = self._session.get_inputs()[0].shape
        if not isinstance(shape[-1], int):
            raise EdgepruneError(f"{self.source}: cannot tell the frame length (no edgeprune metadata)")
        return int(shape[-1])

    # inference ----------------------------------------------------------
    def check_frames(self, frames) -> np.ndarray:
        """Validate and return frames as float32 (N, 2, L); (2, L) becomes (1, 2, L)."""
        try:
            x = np.asarray(frames)
        except (ValueError, TypeError) as exc:  # ragged nested lists and the like
            raise EdgepruneError(f"frames must be a numeric array of shape (N, 2, {self.length}) "
                                 f"(got something numpy cannot make one array of)") from exc
        if x.dtype == object or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise EdgepruneError(f"frames must be real numbers (float32), got dtype {x.dtype}")
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1] != 2:
            raise EdgepruneError(f"frames must have shape (N, 2, {self.length}) or (2, {self.length}) "
                                 f"(rows I and Q), got {tuple(np.shape(frames))}")
        if x.shape[2] != self.length:
            raise EdgepruneError(f"frames have {x.shape[2]} samples but the model takes {self.length}")
        x = x.astype(np.float32, copy=False)
        if x.size and not np.isfinite(x).all():
            bad = int((~np.isfinite(x).reshape(len(x), -1).all(axis=1)).sum())
            raise EdgepruneError(f"{bad} frame(s) contain NaN or Inf samples")
        return x

    def logits(self, frames, preprocess: bool = True) -> np.ndarray:
        x = self.check_frames(frames)
        if preprocess:
            x = normalize(x, self.normalization)
        if len(x) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        if self._session is not None:
            z = np.asarray(self._session.run(None, {self._input: np.ascontiguousarray(x)})[0], np.float32)
        else:
            with self._lock:
                z = self._runner.infer(x)
        if z.size and not np.isfinite(z).all():
            bad = int((~np.isfinite(z).reshape(len(z), -1).all(axis=1)).sum())
            raise EdgepruneError(f"the model's scores are NaN or Inf for {bad} frame(s): their samples are too large "
                                 f"for it (normalisation {self.normalization!r}; values near the float32 limit?)")
        return z

    def predict(self, frames, preprocess: bool = True) -> dict[str, Any]:
        """Class index, name, confidence and probabilities for each frame."""
        z = self.logits(frames, preprocess)
        probs = _softmax(z) if len(z) else z
        labels = probs.argmax(axis=1) if len(z) else np.zeros(0, np.int64)
        return {
            "labels": labels.astype(np.int64),
            "names": [self.classes[i] for i in labels],
            "confidence": probs.max(axis=1) if len(z) else np.zeros(0, np.float32),
            "probs": probs,
        }

    def predict_stream(self, chunks: Iterable[np.ndarray], batch: int = 256) -> Iterator[dict[str, Any]]:
        """Predict over an iterable of frame chunks, ``batch`` frames at a time (bounded memory)."""
        if batch < 1:
            raise EdgepruneError("batch must be >= 1")
        for chunk in chunks:
            for i in range(0, len(chunk), batch):
                yield self.predict(chunk[i:i + batch])

    def info(self) -> dict[str, Any]:
        return {"source": str(self.source), "backend": self.backend, "providers": self.providers,
                "model_file": str(self.model_path), "precision": self.precision, "classes": self.classes,
                "length": self.length, "normalization": self.normalization}

    def close(self) -> None:
        if self._bundle is not None:
            self._bundle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
