"""Device buffers, streams and events for TensorRT: pycuda, cuda-python, or ctypes on libcudart.

Whichever is present, in that order. JetPack always has libcudart, so the
board never has to compile pycuda. Each API offers the same methods:
``stream()``, ``stream_handle(s)``, ``malloc(n)``, ``ptr(buf)``, ``free(buf)``,
``h2d(dst, host, stream)``, ``d2h(host, src, stream)``, ``event()``,
``record(ev, stream)``, ``sync(stream)``, ``elapsed_ms(a, b)``.

Not run by this project (no GPU here); the ctypes signatures are tested
against the CUDA runtime's documented ones.
"""

import ctypes
import os

from .errors import EdgepruneError, MissingDependency

# cudaMemcpyKind
H2D, D2H = 1, 2
# sonames per JetPack / CUDA major: JP4 (CUDA 10.2), JP5 (CUDA 11.x: soname 11.0), JP6 (CUDA 12)
CUDART_NAMES = ("libcudart.so.12", "libcudart.so.11.0", "libcudart.so.10.2", "libcudart.so.13", "libcudart.so")
CUDART_DIRS = ("/usr/local/cuda/targets/aarch64-linux/lib", "/usr/local/cuda/lib64",
               "/usr/local/cuda-10.2/targets/aarch64-linux/lib")
CUDA_INSTALL = ("nothing to build on a Jetson: libcudart comes with JetPack (check /usr/local/cuda); elsewhere "
                "pip install cuda-python, or pycuda (which compiles against the CUDA toolkit)")

# name -> (argtypes, restype); the CUDA runtime's C signatures
_P = ctypes.POINTER
CUDART_SIGNATURES = {
    "cudaMalloc": ([_P(ctypes.c_void_p), ctypes.c_size_t], ctypes.c_int),
    "cudaFree": ([ctypes.c_void_p], ctypes.c_int),
    "cudaMemcpyAsync": ([ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p], ctypes.c_int),
    "cudaStreamCreate": ([_P(ctypes.c_void_p)], ctypes.c_int),
    "cudaStreamSynchronize": ([ctypes.c_void_p], ctypes.c_int),
    "cudaStreamDestroy": ([ctypes.c_void_p], ctypes.c_int),
    "cudaEventCreate": ([_P(ctypes.c_void_p)], ctypes.c_int),
    "cudaEventRecord": ([ctypes.c_void_p, ctypes.c_void_p], ctypes.c_int),
    "cudaEventElapsedTime": ([_P(ctypes.c_float), ctypes.c_void_p, ctypes.c_void_p], ctypes.c_int),
    "cudaEventDestroy": ([ctypes.c_void_p], ctypes.c_int),
    "cudaGetErrorString": ([ctypes.c_int], ctypes.c_char_p),
    "cudaRuntimeGetVersion": ([_P(ctypes.c_int)], ctypes.c_int),
}


def load_cudart():
    """ctypes.CDLL of the first libcudart found (by soname, then in JetPack's CUDA folders), or None."""
    for name in CUDART_NAMES:
        for folder in ("",) + CUDART_DIRS:
            path = os.path.join(folder, name) if folder else name
            if folder and not os.path.exists(path):
                continue
            try:
                return ctypes.CDLL(path)
            except OSError:
                continue
    return None


class CtypesCudart(object):
    """The CUDA runtime through ctypes: cudaMalloc, cudaMemcpyAsync, streams and events."""

    name = "ctypes-libcudart"

    def __init__(self, lib=None):
        lib = lib if lib is not None else load_cudart()
        if lib is None:
            raise ImportError("libcudart not found (" + ", ".join(CUDART_NAMES) + ")")
        for fname, (argtypes, restype) in CUDART_SIGNATURES.items():
            fn = getattr(lib, fname)
            fn.argtypes = argtypes
            fn.restype = restype
        self.lib = lib

    def _ok(self, err, what):
        if err != 0:
            msg = self.lib.cudaGetErrorString(err)
            text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)
            raise EdgepruneError("CUDA {} failed: error {} ({})".format(what, err, text))

    def version(self):
        v = ctypes.c_int(0)
        self._ok(self.lib.cudaRuntimeGetVersion(ctypes.byref(v)), "cudaRuntimeGetVersion")
        return "{}.{}".format(v.value // 1000, (v.value % 1000) // 10)

    def stream(self):
        s = ctypes.c_void_p()
        self._ok(self.lib.cudaStreamCreate(ctypes.byref(s)), "cudaStreamCreate")
        return s

    def stream_handle(self, s):
        return s.value or 0

    def malloc(self, nbytes):
        p = ctypes.c_void_p()
        self._ok(self.lib.cudaMalloc(ctypes.byref(p), max(int(nbytes), 1)), "cudaMalloc")
        return p

    def ptr(self, buf):
        return buf.value or 0

    def free(self, buf):
        self.lib.cudaFree(buf)

    def h2d(self, dst, host, stream):
        self._ok(self.lib.cudaMemcpyAsync(dst, ctypes.c_void_p(host.ctypes.data), host.nbytes, H2D, stream),
                 "cudaMemcpyAsync (host to device)")

    def d2h(self, host, src, stream):
        self._ok(self.lib.cudaMemcpyAsync(ctypes.c_void_p(host.ctypes.data), src, host.nbytes, D2H, stream),
                 "cudaMemcpyAsync (device to host)")

    def event(self):
        e = ctypes.c_void_p()
        self._ok(self.lib.cudaEventCreate(ctypes.byref(e)), "cudaEventCreate")
        return e

    def record(self, ev, stream):
        self._ok(self.lib.cudaEventRecord(ev, stream), "cudaEventRecord")

    def sync(self, stream):
        self._ok(self.lib.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def elapsed_ms(self, a, b):
        ms = ctypes.c_float(0.0)
        self._ok(self.lib.cudaEventElapsedTime(ctypes.byref(ms), a, b), "cudaEventElapsedTime")
        return float(ms.value)


class CudaPython(object):
    """cuda-python's runtime bindings: every call returns (err, *values)."""

    name = "cuda-python"

    def __init__(self, rt=None):
        if rt is None:
            try:
                from cuda.bindings import runtime as rt  # cuda-python >= 12.6 (the only form from 13.0)
            except ImportError:
                from cuda import cudart as rt  # older cuda-python
        self.rt = rt

    def _ok(self, res):
        if not isinstance(res, tuple):
            res = (res,)
        err, rest = res[0], res[1:]
        if int(err) != 0:
            raise EdgepruneError("CUDA error {}".format(err))
        if not rest:
            return None
        return rest[0] if len(rest) == 1 else rest

    def version(self):
        v = int(self._ok(self.rt.cudaRuntimeGetVersion()))
        return "{}.{}".format(v // 1000, (v % 1000) // 10)

    def stream(self):
        return self._ok(self.rt.cudaStreamCreate())

    def stream_handle(self, s):
        return int(s)

    def malloc(self, nbytes):
        return self._ok(self.rt.cudaMalloc(max(int(nbytes), 1)))

    def ptr(self, buf):
        return int(buf)

    def free(self, buf):
        self.rt.cudaFree(buf)

    def h2d(self, dst, host, stream):
        self._ok(self.rt.cudaMemcpyAsync(dst, host.ctypes.data, host.nbytes,
                                         self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))

    def d2h(self, host, src, stream):
        self._ok(self.rt.cudaMemcpyAsync(host.ctypes.data, src, host.nbytes,
                                         self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))

    def event(self):
        return self._ok(self.rt.cudaEventCreate())

    def record(self, ev, stream):
        self._ok(self.rt.cudaEventRecord(ev, stream))

    def sync(self, stream):
        self._ok(self.rt.cudaStreamSynchronize(stream))

    def elapsed_ms(self, a, b):
        return float(self._ok(self.rt.cudaEventElapsedTime(a, b)))


class PyCuda(object):
    """pycuda (the classic Jetson way, when it is already installed)."""

    name = "pycuda"

    def __init__(self):
        import pycuda.autoinit  # noqa: F401 - creates the context
        import pycuda.driver as cuda

        self.cuda = cuda

    def version(self):
        v = self.cuda.get_version()
        return "{}.{}".format(v[0], v[1])

    def stream(self):
        return self.cuda.Stream()

    def stream_handle(self, s):
        return int(s.handle)

    def malloc(self, nbytes):
        return self.cuda.mem_alloc(max(int(nbytes), 1))

    def ptr(self, buf):
        return int(buf)

    def free(self, buf):
        buf.free()

    def h2d(self, dst, host, stream):
        self.cuda.memcpy_htod_async(dst, host, stream)

    def d2h(self, host, src, stream):
        self.cuda.memcpy_dtoh_async(host, src, stream)

    def event(self):
        return self.cuda.Event()

    def record(self, ev, stream):
        ev.record(stream)

    def sync(self, stream):
        stream.synchronize()

    def elapsed_ms(self, a, b):
        return float(b.time_since(a))


APIS = (PyCuda, CudaPython, CtypesCudart)


def cuda_api():
    """The first device-buffer API that loads here; MissingDependency (one line) when none does."""
    for cls in APIS:
        try:
            return cls()
        except ImportError:
            continue
        except Exception:  # noqa: BLE001 - e.g. pycuda present but no GPU: try the next one
            continue
    raise MissingDependency("cuda-python", "running TensorRT engines (device buffers)", CUDA_INSTALL)
