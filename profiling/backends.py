"""Runners: one model, one backend, one batch size, ready to be called repeatedly.

Every runner has ``run()`` (one synchronous inference of a batch) and
``timed()`` (one run, returning its latency in nanoseconds and recording
any extra timings, such as GPU compute vs host-device copies, in
``extras``).

The backends themselves come from the one registry of the device runtime
(``edgeprune.export.runtime.registry``), shared with ``edgeprune.export.Predictor`` and a
bundle's run.py: one file per backend, each with the same life cycle (open,
warm up, run, close):

- ONNX Runtime (``edgeprune.export.runtime.backend_onnxruntime``): ``intra_op_num_threads``
  fixed, ``inter_op_num_threads`` 1, ``session.intra_op.allow_spinning = 0``,
  all graph optimisations, named execution providers (one policy: a provider
  named and absent is an error; ``auto`` takes the target's list and drops
  what is absent, saying so in the record). Inputs and outputs are bound once
  (IOBinding with preallocated OrtValues), as an embedded receiver with fixed
  buffers runs it, so no numpy conversion or output allocation is timed (``io``
  in the record; ``session.run`` with numpy feeds costs a few microseconds more
  per call, which matters for models that take tens of microseconds).
- TensorRT (``edgeprune.export.runtime.backend_tensorrt``): ``execute_async_v2`` on
  TensorRT 8.0-8.4, ``execute_async_v3`` from 8.5, on a CUDA stream; CUDA events
  separate the host-to-device copy, the GPU compute and the device-to-host copy.
- PyTorch (``edgeprune.profiling.backend_torch``, registered here; the board never
  imports it): ``torch.set_num_threads``, eval + ``inference_mode``; on CUDA,
  timed with CUDA events, optionally replayed from a CUDA graph.
"""

from __future__ import annotations

import time

import numpy as np

from edgeprune.errors import EdgepruneError, require
from edgeprune.export.runtime import registry
from edgeprune.export.runtime.backend_onnxruntime import OnnxRuntimeBackend
from edgeprune.export.runtime.bench import input_array as _input_array

registry.add_backend("torch", "edgeprune.profiling.backend_torch")

BACKENDS = ("torch", "onnxruntime", "tensorrt")
_ORT_NUMPY = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def known_backends() -> tuple[str, ...]:
    """The built-in backends, then those registered with ``edgeprune.export.runtime.registry.register_backend``."""
    return BACKENDS + tuple(n for n in registry.names() if n not in BACKENDS)


def check_backend(name: str) -> str | None:
    """None if ``name`` can run here, else the reason it cannot (one line). Unknown names raise."""
    if name not in known_backends():
        raise EdgepruneError(f"unknown backend {name!r}; choose from: {', '.join(known_backends())}")
    return registry.availability(name)


def backend_version(name: str) -> str | None:
    return registry.version(name)


class Runner:
    """Base class: ``timed()`` is wall time around ``run()`` with time.perf_counter_ns."""

    backend = ""
    timing = "wall"

    def __init__(self):
        self.extras: dict[str, list[int]] = {}

    def run(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def timed(self) -> int:
        t0 = time.perf_counter_ns()
        self.run()
        return time.perf_counter_ns() - t0

    def describe(self) -> dict:
        return {}

    def close(self) -> None:
        pass


def ort_session_options(threads: int, profile_prefix: str | None = None):
    """SessionOptions for comparable measurements (the runtime's: fixed threads, no spinning, all optimisations)."""
    from edgeprune.export.runtime.backend_onnxruntime import session_options

    return session_options(require("onnxruntime", "the onnxruntime backend"), threads, profile_prefix)


def ort_session(onnx_path, threads: int, providers=None, profile_prefix: str | None = None):
    """An InferenceSession opened by the runtime's ONNX Runtime backend (its provider policy)."""
    return OnnxRuntimeBackend(str(onnx_path), threads=threads, providers=providers,
                              profile_prefix=profile_prefix).session


def ort_feed(session, batch: int, seed: int = 0) -> dict:
    """Random frames for every input of ``session`` with the batch dimension set to ``batch``."""
    feed = {}
    for i, inp in enumerate(session.get_inputs()):
        dims = list(inp.shape)
        if not dims:
            raise EdgepruneError(f"ONNX input {inp.name!r} is a scalar; a batch of frames is expected")
        if isinstance(dims[0], int) and dims[0] > 0 and dims[0] != batch:
            raise EdgepruneError(f"the ONNX model has a fixed batch of {dims[0]} (input {inp.name!r}); "
                                 f"it cannot run batch {batch} (export it with a dynamic batch)")
        rest = dims[1:]
        if not all(isinstance(d, int) and d > 0 for d in rest):
            raise EdgepruneError(f"ONNX input {inp.name!r} has a non-static frame shape {dims}; cannot make test frames")
        dtype = _ORT_NUMPY.get(inp.type)
        if dtype is None:
            raise EdgepruneError(f"ONNX input {inp.name!r} has type {inp.type}; expected float frames")
        feed[inp.name] = _input_array([batch] + rest, dtype, seed + i)
    return feed


class OrtRunner(Runner):
    """ONNX Runtime on one ONNX file, through the runtime's ONNX Runtime backend."""

    backend = "onnxruntime"

    def __init__(self, onnx_path, batch: int, threads: int = 1, providers=None, seed: int = 0,
                 io_binding: bool = True):
        super().__init__()
        self.engine = OnnxRuntimeBackend(str(onnx_path), threads=threads, providers=providers)
        self.session = self.engine.session
        self.feed = ort_feed(self.session, batch, seed)
        self.providers = self.session.get_providers()
        self.batch, self.threads = batch, threads
        self.binding = None
        if io_binding:
            self._reference = self.engine.bind(self.feed)
            self.binding = self.engine._binding
        self.io = "iobinding" if self.binding is not None else "run"

    def run(self) -> None:
        if self.binding is not None:
            self.engine.run_bound()
        else:
            self.session.run(None, self.feed)

    def outputs(self) -> list[np.ndarray]:
        """The outputs of the last run (the bound buffers, or a fresh run without binding)."""
        if self.binding is not None:
            return self.engine.bound_outputs()
        return self.session.run(None, self.feed)

    def describe(self) -> dict:
        d = self.engine.describe()
        d.update({"input_shape": list(next(iter(self.feed.values())).shape), "io": self.io})
        return d

    def close(self) -> None:
        self.engine.close()


class RegistryRunner(Runner):
    """A backend registered from outside the package, on one ONNX file: ``infer`` on random frames, wall time."""

    def __init__(self, name: str, onnx_path, batch: int, threads: int = 1, seed: int = 0):
        super().__init__()
        self.backend = name
        self.engine = registry.open_backend(name, str(onnx_path), threads=threads)
        shape = [int(d) if isinstance(d, int) and d > 0 else -1 for d in self.engine.input_shape()]
        if any(d < 1 for d in shape[1:]):
            self.engine.close()
            raise EdgepruneError(f"the {name} backend gives a dynamic frame shape {shape}; cannot make test frames")
        self.x = _input_array([batch] + shape[1:], np.float32, seed)

    def run(self) -> None:
        self.engine.infer(self.x)

    def describe(self) -> dict:
        d = dict(self.engine.describe() or {})
        d.setdefault("input_shape", list(self.x.shape))
        return d

    def close(self) -> None:
        self.engine.close()


class TrtRunner(Runner):
    """A serialized TensorRT engine, run through the export package's engine runner.

    That runner calls ``execute_async_v3`` on a CUDA stream and times the
    host-to-device copy, the GPU compute and the device-to-host copy with CUDA
    events; ``timed()`` returns the host wall time of the whole call and keeps
    the three GPU parts in ``extras`` (``h2d``, ``gpu_compute``, ``d2h``).
    """

    backend = "tensorrt"
    timing = "wall+cuda-events"

    def __init__(self, engine_path, batch: int, seed: int = 0):
        super().__init__()
        self.runner = registry.open_backend("tensorrt", str(engine_path))
        shape = list(self.runner.input_shape())
        if shape[0] not in (-1, batch):
            raise EdgepruneError(f"the engine has a fixed batch of {shape[0]}; it cannot run batch {batch}")
        if any(d < 1 for d in shape[1:]):
            raise EdgepruneError(f"the engine's input has a dynamic frame shape {shape}; cannot make test frames")
        self.x = _input_array([batch] + shape[1:], np.float32, seed)
        self.extras = {"h2d": [], "gpu_compute": [], "d2h": []}
        self.gpu_name = (self.runner.metadata or {}).get("device") or "cuda"

    def run(self) -> None:
        self.runner.infer(self.x)

    def timed(self) -> int:
        t0 = time.perf_counter_ns()
        self.runner.infer(self.x)
        wall = time.perf_counter_ns() - t0
        t = self.runner.last_timing
        for key, src in (("h2d", "h2d_ms"), ("gpu_compute", "compute_ms"), ("d2h", "d2h_ms")):
            self.extras[key].append(int(float(t[src]) * 1e6))
        return wall

    def describe(self) -> dict:
        return {"providers": ["tensorrt"], "on": str(self.gpu_name), "input_shape": list(self.x.shape)}

    def close(self) -> None:
        self.runner.close()
