"""Run a serialized TensorRT engine: execute_async_v3 with device buffers (torch-free).

Device memory and streams come from pycuda or cuda-python
(``cuda.bindings.runtime``), whichever is importable. TensorRT 8.5 to 11.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.errors import EdgepruneError, MissingDependency

TRT_INSTALL = ("sudo apt install python3-libnvinfer on a Jetson (it comes with JetPack), "
               "or pip install tensorrt --extra-index-url https://pypi.nvidia.com on x86 with an NVIDIA GPU")
CUDA_INSTALL = "pip install cuda-python (or pycuda, which compiles against the CUDA toolkit)"


def import_tensorrt():
    """Import tensorrt or raise MissingDependency with one line on what to install."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise MissingDependency("tensorrt", "building or running TensorRT engines", TRT_INSTALL) from exc
    return trt


def trt_major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


class _CudaPython:
    """Device buffers/streams/events through cuda-python's runtime bindings."""

    name = "cuda-python"

    def __init__(self):
        try:
            from cuda.bindings import runtime as rt
        except ImportError:
            from cuda import cudart as rt  # cuda-python < 12.6
        self.rt = rt

    def _ok(self, res):
        """cuda-python returns (err, *values): raise on an error, return the value(s)."""
        if not isinstance(res, tuple):
            res = (res,)
        err, rest = res[0], res[1:]
        if int(err) != 0:
            raise EdgepruneError(f"CUDA error {err}")
        if not rest:
            return None
        return rest[0] if len(rest) == 1 else rest

    def stream(self):
        return self._ok(self.rt.cudaStreamCreate())

    def stream_handle(self, s) -> int:
        return int(s)

    def malloc(self, nbytes: int):
        return self._ok(self.rt.cudaMalloc(max(int(nbytes), 1)))

    def ptr(self, buf) -> int:
        return int(buf)

    def free(self, buf) -> None:
        self.rt.cudaFree(buf)

    def h2d(self, dst, host: np.ndarray, stream) -> None:
        self._ok(self.rt.cudaMemcpyAsync(dst, host.ctypes.data, host.nbytes,
                                         self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))

    def d2h(self, host: np.ndarray, src, stream) -> None:
        self._ok(self.rt.cudaMemcpyAsync(host.ctypes.data, src, host.nbytes,
                                         self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))

    def event(self):
        return self._ok(self.rt.cudaEventCreate())

    def record(self, ev, stream) -> None:
        self._ok(self.rt.cudaEventRecord(ev, stream))

    def sync(self, stream) -> None:
        self._ok(self.rt.cudaStreamSynchronize(stream))

    def elapsed_ms(self, a, b) -> float:
        return float(self._ok(self.rt.cudaEventElapsedTime(a, b)))


class _PyCuda:
    """Device buffers/streams/events through pycuda (the classic Jetson way)."""

    name = "pycuda"

    def __init__(self):
        import pycuda.autoinit  # noqa: F401 - creates the context
        import pycuda.driver as cuda

        self.cuda = cuda

    def stream(self):
        return self.cuda.Stream()

    def stream_handle(self, s) -> int:
        return int(s.handle)

    def malloc(self, nbytes: int):
        return self.cuda.mem_alloc(max(int(nbytes), 1))

    def ptr(self, buf) -> int:
        return int(buf)

    def free(self, buf) -> None:
        buf.free()

    def h2d(self, dst, host, stream) -> None:
        self.cuda.memcpy_htod_async(dst, host, stream)

    def d2h(self, host, src, stream) -> None:
        self.cuda.memcpy_dtoh_async(host, src, stream)

    def event(self):
        return self.cuda.Event()

    def record(self, ev, stream) -> None:
        ev.record(stream)

    def sync(self, stream) -> None:
        stream.synchronize()

    def elapsed_ms(self, a, b) -> float:
        return float(b.time_since(a))


def cuda_api():
    """pycuda if importable, else cuda-python; MissingDependency when neither is."""
    errors = []
    for cls in (_PyCuda, _CudaPython):
        try:
            return cls()
        except ImportError as exc:
            errors.append(str(exc))
    raise MissingDependency("cuda-python", "running TensorRT engines (device buffers)", CUDA_INSTALL)


def read_engine_metadata(engine_path: str | Path) -> dict[str, Any]:
    """The ``<engine>.json`` written beside an engine by ``edgeprune build`` ({} when absent)."""
    p = Path(str(engine_path) + ".json")
    if not p.is_file():
        return {}
    from edgeprune.safeio import read_bytes

    try:
        return json.loads(read_bytes(p, "engine metadata", "doc").decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise EdgepruneError(f"engine metadata {p} is not readable JSON: {exc}") from exc


class TrtRunner:
    """A deserialized engine with one execution context: ``infer(x) -> logits``.

    ``last_timing`` holds the H2D, compute and D2H milliseconds of the last
    call (CUDA events). Calls are serialised by a lock (one context).
    """

    def __init__(self, engine_path: str | Path, input_name: str = "iq", output_name: str = "logits"):
        trt = import_tensorrt()
        self.trt = trt
        self.major = trt_major(trt)
        self.cuda = cuda_api()
        path = Path(engine_path)
        if not path.is_file():
            raise EdgepruneError(f"engine {path} does not exist")
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        from edgeprune.safeio import read_bytes

        self.engine = self.runtime.deserialize_cuda_engine(read_bytes(path, "engine", "checkpoint"))
        if self.engine is None:
            raise EdgepruneError(f"TensorRT could not deserialize {path} (built with another TensorRT version or "
                                 f"for another GPU? engines are not portable)")
        self.context = self.engine.create_execution_context()
        self.input_name, self.output_name = input_name, output_name
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        for n in (input_name, output_name):
            if n not in names:
                raise EdgepruneError(f"engine {path} has no tensor {n!r} (it has {', '.join(names)})")
        self.out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(output_name)))
        self.in_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(input_name)))
        self.stream = self.cuda.stream()
        self._events = [self.cuda.event() for _ in range(4)]
        self._buffers: dict[str, tuple[Any, int]] = {}
        self._lock = threading.Lock()
        self.last_timing: dict[str, float] = {}
        self.metadata = read_engine_metadata(path)

    def _buffer(self, name: str, nbytes: int):
        buf = self._buffers.get(name)
        if buf is None or buf[1] < nbytes:
            if buf is not None:
                self.cuda.free(buf[0])
            buf = (self.cuda.malloc(nbytes), nbytes)
            self._buffers[name] = buf
        return buf[0]

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Logits for frames ``x`` (N, 2, L) float32 (N within the engine's profile)."""
        x = np.ascontiguousarray(x, dtype=self.in_dtype)
        with self._lock:
            if not self.context.set_input_shape(self.input_name, tuple(x.shape)):
                raise EdgepruneError(f"input shape {tuple(x.shape)} is outside the engine's optimization profile")
            out_shape = tuple(self.context.get_tensor_shape(self.output_name))
            out = np.empty(out_shape, dtype=self.out_dtype)
            d_in = self._buffer(self.input_name, x.nbytes)
            d_out = self._buffer(self.output_name, out.nbytes)
            self.context.set_tensor_address(self.input_name, self.cuda.ptr(d_in))
            self.context.set_tensor_address(self.output_name, self.cuda.ptr(d_out))
            e0, e1, e2, e3 = self._events
            s = self.stream
            self.cuda.record(e0, s)
            self.cuda.h2d(d_in, x, s)
            self.cuda.record(e1, s)
            if not self.context.execute_async_v3(self.cuda.stream_handle(s)):
                raise EdgepruneError("TensorRT execute_async_v3 failed")
            self.cuda.record(e2, s)
            self.cuda.d2h(out, d_out, s)
            self.cuda.record(e3, s)
            self.cuda.sync(s)
            self.last_timing = {"h2d_ms": self.cuda.elapsed_ms(e0, e1), "compute_ms": self.cuda.elapsed_ms(e1, e2),
                                "d2h_ms": self.cuda.elapsed_ms(e2, e3), "total_ms": self.cuda.elapsed_ms(e0, e3)}
            return out.astype(np.float32, copy=False)

    def close(self) -> None:
        for buf, _ in getattr(self, "_buffers", {}).values():
            try:
                self.cuda.free(buf)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
        getattr(self, "_buffers", {}).clear()

    def __del__(self):
        self.close()
