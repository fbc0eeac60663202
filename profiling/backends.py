"""Runners: one model, one backend, one batch size, ready to be called repeatedly.

Every runner has ``run()`` (one synchronous inference of a batch) and
``timed()`` (one run, returning its latency in nanoseconds and recording
any extra timings, such as GPU compute vs host-device copies, in
``extras``). Only :class:`TorchRunner` imports torch, and only when built.

- ONNX Runtime: ``intra_op_num_threads`` fixed, ``inter_op_num_threads`` 1,
  ``session.intra_op.allow_spinning = 0``, all graph optimisations, named
  execution providers. Inputs and outputs are bound once (IOBinding with
  preallocated OrtValues), as an embedded receiver with fixed buffers runs
  it, so no numpy conversion or output allocation is timed (``io`` in the
  record; ``session.run`` with numpy feeds costs a few microseconds more
  per call, which matters for models that take tens of microseconds).
- PyTorch: ``torch.set_num_threads``, eval + ``inference_mode``; on CUDA,
  timed with CUDA events, optionally replayed from a CUDA graph.
- TensorRT: an engine run by ``export.trt_runtime.TrtRunner`` (``execute_async_v3``
  on a CUDA stream); CUDA events separate the host-to-device copy, the GPU
  compute and the device-to-host copy.
"""

from __future__ import annotations

import time

import numpy as np

from edgeprune.errors import EdgepruneError, MissingDependency, require

BACKENDS = ("torch", "onnxruntime", "tensorrt")
_ORT_NUMPY = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def check_backend(name: str) -> str | None:
    """None if ``name`` can run here, else the reason it cannot (one line). Unknown names raise."""
    if name not in BACKENDS:
        raise EdgepruneError(f"unknown backend {name!r}; choose from: {', '.join(BACKENDS)}")
    try:
        if name == "torch":
            require("torch", "the torch backend")
        elif name == "onnxruntime":
            require("onnxruntime", "the onnxruntime backend")
        else:
            from export.trt_runtime import cuda_api, import_tensorrt

            import_tensorrt()
            cuda_api()
    except MissingDependency as exc:
        return str(exc)
    return None


def backend_version(name: str) -> str | None:
    mod = {"torch": "torch", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt"}[name]
    try:
        return __import__(mod).__version__
    except Exception:  # noqa: BLE001
        return None


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


def _input_array(shape, dtype, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(dtype)


def ort_session_options(threads: int, profile_prefix: str | None = None):
    """SessionOptions for comparable measurements (fixed threads, no spinning, all optimisations)."""
    ort = require("onnxruntime", "the onnxruntime backend")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return opts


def ort_session(onnx_path, threads: int, providers=None, profile_prefix: str | None = None):
    ort = require("onnxruntime", "the onnxruntime backend")
    available = ort.get_available_providers()
    providers = list(providers or ["CPUExecutionProvider"])
    for p in providers:
        if p not in available:
            raise EdgepruneError(f"ONNX Runtime execution provider {p!r} is not available here "
                                 f"(available: {', '.join(available)})")
    from export.onnx_external import check_model_file

    check_model_file(onnx_path)  # external data: only files a bundle manifest beside it lists
    try:
        return ort.InferenceSession(str(onnx_path), ort_session_options(threads, profile_prefix), providers=providers)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise EdgepruneError(f"ONNX Runtime cannot load {onnx_path}: {msg}") from exc


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
    """ONNX Runtime inference session on one ONNX file."""

    backend = "onnxruntime"

    def __init__(self, onnx_path, batch: int, threads: int = 1, providers=None, seed: int = 0,
                 io_binding: bool = True):
        super().__init__()
        self.session = ort_session(onnx_path, threads, providers)
        self.feed = ort_feed(self.session, batch, seed)
        self.providers = self.session.get_providers()
        self.batch, self.threads = batch, threads
        self.binding = self._bind() if io_binding else None
        self.io = "iobinding" if self.binding is not None else "run"

    def _bind(self):
        """Bind the frames and preallocated outputs (shapes from one ordinary run) to the session."""
        ort = require("onnxruntime", "the onnxruntime backend")
        outs = self.session.run(None, self.feed)
        binding = self.session.io_binding()
        self._values = []                       # keep the bound buffers alive
        for name, arr in self.feed.items():
            v = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr))
            binding.bind_ortvalue_input(name, v)
            self._values.append(v)
        for meta, ref in zip(self.session.get_outputs(), outs):
            ref = np.asarray(ref)
            v = ort.OrtValue.ortvalue_from_shape_and_type(list(ref.shape), ref.dtype)
            binding.bind_ortvalue_output(meta.name, v)
            self._values.append(v)
        self._reference = outs
        return binding

    def run(self) -> None:
        if self.binding is not None:
            self.session.run_with_iobinding(self.binding)
        else:
            self.session.run(None, self.feed)

    def outputs(self) -> list[np.ndarray]:
        """The outputs of the last run (the bound buffers, or a fresh run without binding)."""
        if self.binding is not None:
            return [v.numpy() for v in self._values[len(self.feed):]]
        return self.session.run(None, self.feed)

    def describe(self) -> dict:
        first = self.providers[0] if self.providers else "CPUExecutionProvider"
        return {"providers": self.providers,
                "on": "cpu" if first == "CPUExecutionProvider" else first.replace("ExecutionProvider", "").lower(),
                "input_shape": list(next(iter(self.feed.values())).shape), "io": self.io}


class TorchRunner(Runner):
    """An edgeprune checkpoint in PyTorch eager mode (CUDA when available and asked for)."""

    backend = "torch"

    def __init__(self, checkpoint, batch: int, threads: int = 1, precision: str = "fp32", device: str = "auto",
                 cuda_graphs: bool = False, seed: int = 0):
        super().__init__()
        torch = require("torch", "the torch backend")
        from edgeprune.checkpoint import load_checkpoint

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise EdgepruneError("the torch backend was asked for CUDA, but no CUDA device is available")
        if precision not in ("fp32", "fp16"):
            raise EdgepruneError(f"the torch backend runs fp32 (and fp16 on CUDA), not {precision}")
        if precision == "fp16" and device != "cuda":
            raise EdgepruneError("the torch backend runs fp16 on CUDA only (no GPU here)")
        if cuda_graphs and device != "cuda":
            raise EdgepruneError("CUDA graphs need a CUDA device (no GPU here)")
        self.torch = torch
        torch.set_num_threads(int(threads))
        ck = load_checkpoint(checkpoint)
        model = ck.build().eval()
        dtype = torch.float16 if precision == "fp16" else torch.float32
        self.device = device
        self.model = model.to(device=device, dtype=dtype)
        x = _input_array((batch, 2, ck.length), np.float32, seed)
        self.x = torch.from_numpy(x).to(device=device, dtype=dtype)
        self.batch, self.threads = batch, threads
        self.graph = None
        self.gpu_name = None
        if device == "cuda":
            self.timing = "cuda-events"
            self.gpu_name = torch.cuda.get_device_name(0)
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)
            if cuda_graphs:
                self._capture()

    def _capture(self) -> None:
        """Record one forward pass into a CUDA graph (warm-up on a side stream first, as CUDA graphs need)."""
        torch = self.torch
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):
                self.model(self.x)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            self.static_out = self.model(self.x)
        self.timing = "cuda-events+cuda-graph"

    def run(self) -> None:
        if self.graph is not None:
            self.graph.replay()
            self.torch.cuda.synchronize()
            return
        with self.torch.inference_mode():
            self.model(self.x)
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def timed(self) -> int:
        if self.device != "cuda":
            return super().timed()
        torch = self.torch
        self._start.record()
        if self.graph is not None:
            self.graph.replay()
        else:
            with torch.inference_mode():
                self.model(self.x)
        self._end.record()
        self._end.synchronize()
        return int(self._start.elapsed_time(self._end) * 1e6)

    def describe(self) -> dict:
        return {"providers": [self.device], "on": self.gpu_name or "cpu", "input_shape": list(self.x.shape)}


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
        from export.trt_runtime import TrtRunner as EngineRunner

        self.runner = EngineRunner(engine_path)
        shape = list(self.runner.engine.get_tensor_shape(self.runner.input_name))
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
