"""The TensorRT backend: a serialized engine on one execution context, the registry's protocol (Python 3.6+;
tensorrt imported on open).

Two I/O APIs, chosen by what the engine and context expose:

- TensorRT 8.5 and later (8.5, 8.6, 10.x): ``engine.num_io_tensors``,
  ``get_tensor_name(i)``, ``get_tensor_mode(name)``, ``get_tensor_shape``,
  ``get_tensor_dtype``, ``context.set_input_shape(name, shape)``,
  ``context.get_tensor_shape(name)``, ``context.set_tensor_address(name, ptr)``,
  ``context.execute_async_v3(stream_handle)``;
- TensorRT 8.0 to 8.4 (JetPack 4.6 / 4.6.1): ``engine.num_bindings``,
  ``get_binding_name(i)``, ``binding_is_input(i)``, ``get_binding_shape(i)``,
  ``get_binding_dtype(i)``, ``context.set_binding_shape(i, shape)``,
  ``context.get_binding_shape(i)``, ``context.execute_async_v2(bindings, stream_handle)``.

Device buffers come from ``cuda.cuda_api()`` (pycuda, cuda-python or ctypes
on libcudart). CUDA events split each call into host-to-device copy, GPU
compute and device-to-host copy (``last_timing``); ``timed()`` returns the
host wall time of the whole call and appends the three parts to ``extras``
(``h2d``, ``gpu_compute``, ``d2h``, in ns).

This has not run: no TensorRT and no GPU where it was written. The version
dispatch is tested against stand-ins that expose exactly each version's
method names.
"""

import os
import threading

import numpy as np

from .compat import installed_version, perf_counter_ns, unavailable_reason
from .errors import EdgepruneError, MissingDependency
from .cuda import cuda_api
from .jetpack import tensorrt_hint
from .manifest import CLASS_NAME
from .safeio import read_bytes
from .schema import integer, obj, opt, parse_json, seq, text

NAME = "tensorrt"
MODEL_KIND = "engine"


def import_tensorrt(purpose="building or running TensorRT engines"):
    try:
        import tensorrt as trt
    except ImportError:
        raise MissingDependency("tensorrt", purpose, tensorrt_hint())
    return trt


def _engines_can_run():
    import_tensorrt()

    cuda_api()


def availability():
    """None when engines can run here, else the reason (one line)."""
    return unavailable_reason(_engines_can_run)


def version():
    return installed_version("tensorrt")


def version_tuple(v):
    out = []
    for part in str(v).split(".")[:2]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out + [0] * (2 - len(out)))


def engine_metadata_schema():
    """The fields of an engine's ``.json`` record (run.py build, edgeprune build) that its readers use."""

    return obj(classes=opt(seq(CLASS_NAME, nonempty=True)), normalization=opt(text(nullable=True)),
               input_length=opt(integer(lo=1, nullable=True)), precision=opt(text(nullable=True)),
               engine_sha256=opt(text(pattern="[0-9a-f]{64}", nullable=True)),
               tensorrt_version=opt(text(nullable=True)), device=opt(text(nullable=True)))


def read_engine_metadata(engine_path):
    """The ``<engine>.json`` written beside an engine by its build ({} when absent), its fields checked."""
    p = str(engine_path) + ".json"
    if not os.path.isfile(p):
        return {}

    return parse_json(read_bytes(p, "engine metadata", "doc"), "engine metadata " + p, engine_metadata_schema())


class TensorIO(object):
    """I/O through the tensor-name API (TensorRT 8.5+)."""

    api = "tensor"

    def __init__(self, trt, engine, context):
        self.trt, self.engine, self.context = trt, engine, context
        self.names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]

    def is_input(self, name):
        return self.engine.get_tensor_mode(name) == self.trt.TensorIOMode.INPUT

    def engine_shape(self, name):
        return [int(d) for d in self.engine.get_tensor_shape(name)]

    def dtype(self, name):
        return np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))

    def set_input_shape(self, name, shape):
        return bool(self.context.set_input_shape(name, tuple(shape)))

    def output_shape(self, name):
        return tuple(int(d) for d in self.context.get_tensor_shape(name))

    def execute(self, ptrs, stream_handle):
        for name, ptr in ptrs.items():
            self.context.set_tensor_address(name, int(ptr))
        return bool(self.context.execute_async_v3(stream_handle))


class BindingIO(object):
    """I/O through the binding-index API (TensorRT 8.0 to 8.4; still present, deprecated, in 8.5/8.6)."""

    api = "binding"

    def __init__(self, trt, engine, context):
        self.trt, self.engine, self.context = trt, engine, context
        self.names = [engine.get_binding_name(i) for i in range(engine.num_bindings)]

    def _index(self, name):
        return self.names.index(name)

    def is_input(self, name):
        return bool(self.engine.binding_is_input(self._index(name)))

    def engine_shape(self, name):
        return [int(d) for d in self.engine.get_binding_shape(self._index(name))]

    def dtype(self, name):
        return np.dtype(self.trt.nptype(self.engine.get_binding_dtype(self._index(name))))

    def set_input_shape(self, name, shape):
        return bool(self.context.set_binding_shape(self._index(name), tuple(shape)))

    def output_shape(self, name):
        return tuple(int(d) for d in self.context.get_binding_shape(self._index(name)))

    def execute(self, ptrs, stream_handle):
        bindings = [int(ptrs[n]) for n in self.names]
        return bool(self.context.execute_async_v2(bindings=bindings, stream_handle=stream_handle))


def engine_io(trt, engine, context):
    """The I/O API this TensorRT offers: the tensor API where engine and context have it, else bindings."""
    if hasattr(engine, "num_io_tensors") and hasattr(context, "execute_async_v3"):
        return TensorIO(trt, engine, context)
    if hasattr(engine, "num_bindings") and hasattr(context, "execute_async_v2"):
        return BindingIO(trt, engine, context)
    raise EdgepruneError("this TensorRT ({}) offers neither execute_async_v3 nor execute_async_v2; "
                         "supported: TensorRT 8.0 to 10.x".format(getattr(trt, "__version__", "?")))


def rebuild_hint(engine_path, meta, trt_version):
    built = []
    if meta.get("tensorrt_version"):
        built.append("TensorRT " + str(meta["tensorrt_version"]))
    if meta.get("device"):
        built.append("on " + str(meta["device"]))
    what = ("it was built with " + " ".join(built) + ", ") if built else ""
    return ("TensorRT {} cannot load engine {}: {}engines only load under the TensorRT version and GPU they "
            "were built for. Rebuild it on this board: python3 run.py build (in the bundle folder), "
            "or edgeprune build --onnx MODEL.onnx --target TARGET --out {}".format(
                trt_version, engine_path, what, os.path.basename(str(engine_path))))


class TensorRTBackend(object):
    """A deserialized engine with one execution context: ``infer(x) -> logits``. Calls are serialised by a lock."""

    name = NAME
    timing = "wall+cuda-events"

    def __init__(self, engine_path, input_name="iq", output_name="logits", trt=None, cuda=None, threads=None,
                 providers=None, target_providers=None, precision=None, cuda_graphs=False):
        # the registry's shared options: an engine fixed them (or has none) when it was built
        path = str(engine_path)
        self.trt = trt if trt is not None else import_tensorrt()
        if cuda is None:
            cuda = cuda_api()
        self.cuda = cuda
        if not os.path.isfile(path):
            raise EdgepruneError("engine {} does not exist".format(path))
        self.path = path
        self.metadata = read_engine_metadata(path)
        self._buffers = {}
        trt = self.trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)

        blob = read_bytes(path, "TensorRT engine", "checkpoint")
        self.engine = self.runtime.deserialize_cuda_engine(blob)  # None, not an exception, on a mismatch
        if self.engine is None:
            raise EdgepruneError(rebuild_hint(path, self.metadata, getattr(trt, "__version__", "?")))
        self.context = self.engine.create_execution_context()
        self.io = engine_io(trt, self.engine, self.context)
        for n in (input_name, output_name):
            if n not in self.io.names:
                raise EdgepruneError("engine {} has no tensor {!r} (it has {})".format(path, n, ", ".join(self.io.names)))
        self.input_name, self.output_name = input_name, output_name
        self.in_dtype = self.io.dtype(input_name)
        self.out_dtype = self.io.dtype(output_name)
        self.stream = self.cuda.stream()
        self._events = [self.cuda.event() for _ in range(4)]
        self._lock = threading.Lock()
        self.last_timing = {}
        self.extras = {"h2d": [], "gpu_compute": [], "d2h": []}
        self._bound = None

    def input_shape(self):
        return self.io.engine_shape(self.input_name)

    def _buffer(self, name, nbytes):
        buf = self._buffers.get(name)
        if buf is None or buf[1] < nbytes:
            if buf is not None:
                self.cuda.free(buf[0])
            buf = (self.cuda.malloc(nbytes), nbytes)
            self._buffers[name] = buf
        return buf[0]

    def infer(self, x):
        """Logits for frames ``x`` (N, 2, L) (N within the engine's optimization profile)."""
        x = np.ascontiguousarray(x, dtype=self.in_dtype)
        with self._lock:
            if not self.io.set_input_shape(self.input_name, x.shape):
                raise EdgepruneError("input shape {} is outside the engine's optimization profile".format(tuple(x.shape)))
            out = np.empty(self.io.output_shape(self.output_name), dtype=self.out_dtype)
            d_in = self._buffer(self.input_name, x.nbytes)
            d_out = self._buffer(self.output_name, out.nbytes)
            ptrs = {self.input_name: self.cuda.ptr(d_in), self.output_name: self.cuda.ptr(d_out)}
            for n in self.io.names:
                if n not in ptrs:
                    raise EdgepruneError("engine {} has an extra I/O tensor {!r}; edgeprune engines have iq and "
                                         "logits only".format(self.path, n))
            e0, e1, e2, e3 = self._events
            s = self.stream
            self.cuda.record(e0, s)
            self.cuda.h2d(d_in, x, s)
            self.cuda.record(e1, s)
            if not self.io.execute(ptrs, self.cuda.stream_handle(s)):
                raise EdgepruneError("TensorRT execution failed ({} API)".format(self.io.api))
            self.cuda.record(e2, s)
            self.cuda.d2h(out, d_out, s)
            self.cuda.record(e3, s)
            self.cuda.sync(s)
            self.last_timing = {"h2d_ms": self.cuda.elapsed_ms(e0, e1), "compute_ms": self.cuda.elapsed_ms(e1, e2),
                                "d2h_ms": self.cuda.elapsed_ms(e2, e3), "total_ms": self.cuda.elapsed_ms(e0, e3)}
            return out.astype(np.float32, copy=False)

    def bind(self, x):
        """Keep frames ``x`` for ``timed()`` (the device buffers are reused from call to call); their logits."""
        self._bound = np.ascontiguousarray(x, dtype=self.in_dtype)
        return self.infer(self._bound)

    def timed(self):
        """One call on the bound frames: its host wall time in ns; the CUDA-event split goes to ``extras``."""
        t0 = perf_counter_ns()
        self.infer(self._bound)
        wall = perf_counter_ns() - t0
        t = self.last_timing
        for key, src in (("h2d", "h2d_ms"), ("gpu_compute", "compute_ms"), ("d2h", "d2h_ms")):
            self.extras[key].append(int(float(t[src]) * 1e6))
        return wall

    def describe(self):
        return {"providers": ["tensorrt"], "dropped_providers": [], "api": self.io.api, "cuda": self.cuda.name,
                "on": str(self.metadata.get("device") or "cuda"), "io": "device-buffers", "timing": self.timing,
                "input_shape": list(self._bound.shape) if self._bound is not None else None}

    def close(self):
        for buf, _ in list(getattr(self, "_buffers", {}).values()):
            try:
                self.cuda.free(buf)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
        getattr(self, "_buffers", {}).clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        self.close()


def open_backend(engine_path, **options):
    return TensorRTBackend(engine_path, **options)
