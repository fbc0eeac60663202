"""Classify I/Q frames with a bundle, an ONNX file or a TensorRT engine (torch-free).

    from edgeprune.export import Predictor
    p = Predictor("bundle.tar.gz")
    out = p.predict(frames)          # frames (N, 2, L) or (2, L)
    out["names"], out["confidence"]

The bundle's preprocessing (normalisation) is applied to the frames.
ONNX Runtime sessions are thread-safe for run(); the TensorRT backend
serialises calls with a lock, so one Predictor may be shared by threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from edgeprune.errors import EdgepruneError

from .runtime import frames as _frames
from .runtime import registry
from .runtime.manifest import decode_metadata
from .runtime.model import Model, open_model
from .runtime.stream import Stream
from .bundle import open_bundle

PREDICTOR_BACKENDS = ("auto", "onnxruntime", "tensorrt")


class Predictor:
    """A loaded model ready to classify frames; see the module docstring.

    Built on the device runtime (``edgeprune.export.runtime``): the same backend
    registry, file choice, preprocessing and softmax as a bundle's run.py.
    ``providers``: ONNX Runtime providers by name (each must be present here),
    ``"auto"`` (the bundle target's, those present here), or None (the CPU).
    """

    def __init__(self, model, backend: str = "auto", precision: str | None = None, threads: int | None = None,
                 providers=None):
        if backend not in PREDICTOR_BACKENDS:
            raise EdgepruneError(f"unknown backend {backend!r}; choose one of {', '.join(PREDICTOR_BACKENDS)}")
        self.source = Path(model)
        self._bundle = None
        if not self.source.exists():
            raise EdgepruneError(f"{self.source} does not exist")
        if self.source.is_dir() or str(self.source).endswith((".tar.gz", ".tgz")):
            self._bundle = b = open_bundle(self.source)
            try:
                self._model = open_model(str(b.root), b.manifest, backend, precision, threads, providers,
                                         source=str(self.source))
            except BaseException:
                b.close()
                raise
        elif self.source.suffix == ".onnx":
            if backend == "tensorrt":
                raise EdgepruneError("an .onnx file runs on onnxruntime; build an engine first (edgeprune build)")
            be = registry.open_backend("onnxruntime", str(self.source), threads=threads, providers=providers)
            try:
                meta = decode_metadata(be.metadata(), f"{self.source} (its metadata)")
            except BaseException:
                be.close()
                raise
            classes = meta.get("edgeprune.classes") or [str(i) for i in range(_last_dim(be.output_shape()))]
            inp = meta.get("edgeprune.input") if isinstance(meta.get("edgeprune.input"), dict) else {}
            layout = inp.get("layout") or _frames.layout_of_shape(be.input_shape()) or "NCL"
            length = inp.get("length") or _length_dim(be.input_shape(), layout)
            if not length:
                be.close()
                raise EdgepruneError(f"{self.source}: cannot tell the frame length (no edgeprune metadata)")
            try:
                self._model = Model(be, self.source, classes, meta.get("edgeprune.normalization", "none"), length,
                                    meta.get("edgeprune.precision") or "fp32", str(self.source),
                                    where=f"{self.source} (its metadata)", layout=layout,
                                    min_batch=inp.get("min_batch"))
            except BaseException:
                be.close()
                raise
        elif self.source.suffix in (".engine", ".plan", ".trt"):
            if backend == "onnxruntime":
                raise EdgepruneError("a TensorRT engine runs on the tensorrt backend")
            be = registry.open_backend("tensorrt", str(self.source))
            meta = be.metadata
            if not meta.get("classes"):
                be.close()
                raise EdgepruneError(f"{self.source}.json (written by edgeprune build) is missing; "
                                     f"it gives the class names and preprocessing")
            self._model = Model(be, self.source, meta["classes"], meta.get("normalization", "none"),
                                meta["input_length"], meta.get("precision"), str(self.source),
                                layout=meta.get("input_layout") or "NCL")
        else:
            raise EdgepruneError(f"{self.source}: give a bundle (folder or .tar.gz), an .onnx file or an .engine")
        m = self._model
        self.classes = m.classes
        self.normalization = m.normalization
        self.length = m.length
        self.precision = m.precision
        self.backend = m.backend_name
        self.model_path = Path(m.model_path)
        self.providers = m.providers

    # inference ----------------------------------------------------------
    def check_frames(self, frames) -> np.ndarray:
        """Validate and return frames as float32 (N, 2, L); (2, L) becomes (1, 2, L)."""
        return _frames.check_frames(frames, self.length)

    def logits(self, frames, preprocess: bool = True) -> np.ndarray:
        return self._model.logits(frames, preprocess)

    def predict(self, frames, preprocess: bool = True) -> dict[str, Any]:
        """Class index, name, confidence and probabilities for each frame."""
        return _frames.classify(self.logits(frames, preprocess), self.classes)

    def predict_stream(self, chunks: Iterable[np.ndarray], batch: int = 256) -> Iterator[dict[str, Any]]:
        """Predict over an iterable of frame chunks, ``batch`` frames at a time (bounded memory)."""
        if batch < 1:
            raise EdgepruneError("batch must be >= 1")
        for chunk in chunks:
            for i in range(0, len(chunk), batch):
                yield self.predict(chunk[i:i + batch])

    def stream(self, chunks: Iterable[np.ndarray], hop: int | None = None, batch: int = 1,
               rate: float | None = None):
        """Classify a stream of complex64 sample chunks (any sizes) window by window, in bounded memory.

        Returns an iterator of dicts (window, offset, time, label, class,
        confidence, latency_ms); its ``stats`` (windows, samples, partial
        window dropped, latency per call) is final once it is exhausted.
        ``hop`` defaults to the frame length; ``rate`` (Hz) gives ``time``.
        """

        return Stream(self.predict, chunks, self.length, hop, batch, rate)

    def info(self) -> dict[str, Any]:
        return {"source": str(self.source), "backend": self.backend, "providers": self.providers,
                "model_file": str(self.model_path), "precision": self.precision, "classes": self.classes,
                "length": self.length, "normalization": self.normalization}

    def close(self) -> None:
        self._model.close()
        if self._bundle is not None:
            self._bundle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _length_dim(shape, layout: str) -> int:
    """The frame length an input of ``shape`` in ``layout`` takes (0 when it is not a number)."""
    try:
        at = _frames.layout_shape(layout, None, None).index(None, 1)
        return int(shape[at]) if shape and isinstance(shape[at], int) else 0
    except (IndexError, EdgepruneError):
        return 0


def _last_dim(shape) -> int:
    return int(shape[-1]) if shape and isinstance(shape[-1], int) else 0
