"""The TensorRT engine runner across TensorRT 8.0 to 10.x, without TensorRT.

No TensorRT or GPU exists here, so the runner runs against stand-ins: each
exposes exactly the engine/context method names of one TensorRT release
(TensorRT's pyCore.cpp per release branch, as listed in the project's Jetson
reference), and a fake device memory. The runner must pick the API each
release has, move the frames through the buffers it binds and return the
stand-in's logits. What this cannot show: that real TensorRT engines run.
"""

from __future__ import annotations

import ctypes
import json

import numpy as np
import pytest

from edgeprune.errors import EdgepruneError
from edgeprune.export.runtime import backend_tensorrt as bt
from edgeprune.export.runtime import cuda as rc

WEIGHTS = np.array([1.0, -2.0, 0.5, 3.0], np.float32)


def _logits(x):
    """The stand-in network: logits[n, c] = sum(I samples of frame n) * w[c] + mean(Q) ."""
    return (x[:, 0, :].sum(axis=1)[:, None] * WEIGHTS[None, :] + x[:, 1, :].mean(axis=1)[:, None]).astype(np.float32)


class FakeMemory:
    """Device memory: integer addresses -> bytearrays."""

    def __init__(self):
        self.blocks, self.next = {}, 0x1000

    def alloc(self, n):
        addr = self.next
        self.blocks[addr] = bytearray(n)
        self.next += n + 0x100
        return addr


class FakeCuda:
    """The runtime's device-buffer interface over FakeMemory (what pycuda / cuda-python / libcudart do)."""

    name = "fake"

    def __init__(self, mem):
        self.mem = mem

    def stream(self):
        return "stream"

    def stream_handle(self, s):
        return 77

    def malloc(self, n):
        return self.mem.alloc(n)

    def ptr(self, buf):
        return buf

    def free(self, buf):
        self.mem.blocks.pop(buf, None)

    def h2d(self, dst, host, stream):
        self.mem.blocks[dst][:host.nbytes] = host.tobytes()

    def d2h(self, host, src, stream):
        host[...] = np.frombuffer(bytes(self.mem.blocks[src][:host.nbytes]), host.dtype).reshape(host.shape)

    def event(self):
        return object()

    def record(self, ev, stream):
        pass

    def sync(self, stream):
        pass

    def elapsed_ms(self, a, b):
        return 0.01


class _Engine:
    """Shared state of the stand-in engines (not an API: subclasses expose one release's names)."""

    def __init__(self, mem, order, length):
        self._mem, self._order, self._length = mem, order, length


class _Context:
    def __init__(self, engine):
        self._e = engine
        self._shape = None

    def _run(self, ptr_of):
        n = self._shape[0]
        x = np.frombuffer(bytes(self._e._mem.blocks[ptr_of("iq")][:n * 2 * self._e._length * 4]),
                          np.float32).reshape(n, 2, self._e._length)
        y = _logits(x)
        self._e._mem.blocks[ptr_of("logits")][:y.nbytes] = y.tobytes()
        return True


# ---- TensorRT 8.0 / 8.2 / 8.4: bindings only
class Context82(_Context):
    def set_binding_shape(self, index, shape):
        assert self._e._order[index] == "iq"
        self._shape = tuple(shape)
        return 1 <= shape[0] <= 64

    def get_binding_shape(self, index):
        name = self._e._order[index]
        return (self._shape[0], len(WEIGHTS)) if name == "logits" else self._shape

    def execute_async_v2(self, bindings, stream_handle):
        assert stream_handle == 77 and len(bindings) == len(self._e._order)
        return self._run(lambda n: bindings[self._e._order.index(n)])

    def execute_v2(self, bindings):
        raise AssertionError("the synchronous path is not used")

    def execute_async(self, batch_size, bindings, stream_handle):
        raise AssertionError("implicit batch is not used")


class Engine82(_Engine):
    max_batch_size = 1

    @property
    def num_bindings(self):
        return len(self._order)

    def get_binding_name(self, i):
        return self._order[i]

    def get_binding_index(self, name):
        return self._order.index(name)

    def binding_is_input(self, i):
        return self._order[i] == "iq"

    def get_binding_shape(self, i):
        return (-1, 2, self._length) if self._order[i] == "iq" else (-1, len(WEIGHTS))

    def get_binding_dtype(self, i):
        return "float"

    def create_execution_context(self):
        return Context82(self)


# ---- TensorRT 10.x: tensors only
class Context10(_Context):
    def __init__(self, engine):
        super().__init__(engine)
        self._addr = {}

    def set_input_shape(self, name, shape):
        assert name == "iq"
        self._shape = tuple(shape)
        return 1 <= shape[0] <= 64

    def get_tensor_shape(self, name):
        return (self._shape[0], len(WEIGHTS)) if name == "logits" else self._shape

    def set_tensor_address(self, name, ptr):
        assert isinstance(ptr, int)
        self._addr[name] = ptr
        return True

    def execute_async_v3(self, stream_handle):
        assert stream_handle == 77
        return self._run(lambda n: self._addr[n])

    def execute_v2(self, bindings):
        raise AssertionError("the synchronous path is not used")


class Engine10(_Engine):
    @property
    def num_io_tensors(self):
        return len(self._order)

    def get_tensor_name(self, i):
        return self._order[i]

    def get_tensor_mode(self, name):
        return FakeTrt.TensorIOMode.INPUT if name == "iq" else FakeTrt.TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        return (-1, 2, self._length) if name == "iq" else (-1, len(WEIGHTS))

    def get_tensor_dtype(self, name):
        return "float"

    def create_execution_context(self):
        return Context10(self)


# ---- TensorRT 8.5 / 8.6: both (the binding API deprecated)
class Context85(Context10, Context82):
    pass


class Engine85(Engine10, Engine82):
    def create_execution_context(self):
        return Context85(self)


class FakeTrt:
    """The module-level names the runner uses: __version__, Logger, Runtime, TensorIOMode, nptype."""

    class Logger:
        WARNING = 2

        def __init__(self, level):
            self.level = level

    class TensorIOMode:
        INPUT, OUTPUT = "INPUT", "OUTPUT"

    def __init__(self, version, engine_cls, order=("iq", "logits"), length=32):
        self.__version__ = version
        self.mem = FakeMemory()
        trt = self

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, blob):
                return engine_cls(trt.mem, list(order), length) if blob == b"plan:" + version.encode() else None

        self.Runtime = Runtime

    @staticmethod
    def nptype(dtype):
        assert dtype == "float"
        return np.float32


RELEASES = [("8.0.1", Engine82, "binding"), ("8.2.1", Engine82, "binding"), ("8.4.1", Engine82, "binding"),
            ("8.5.2", Engine85, "tensor"), ("8.6.2", Engine85, "tensor"), ("10.3.0", Engine10, "tensor")]


def _engine_file(tmp_path, version, meta=None):
    p = tmp_path / "m.engine"
    p.write_bytes(b"plan:" + version.encode())
    if meta is not None:
        (tmp_path / "m.engine.json").write_text(json.dumps(meta))
    return p


@pytest.mark.parametrize("version, engine_cls, api", RELEASES)
@pytest.mark.parametrize("order", [("iq", "logits"), ("logits", "iq")])
def test_each_release_runs_through_its_own_api(tmp_path, version, engine_cls, api, order):
    trt = FakeTrt(version, engine_cls, order)
    be = bt.TensorRTBackend(_engine_file(tmp_path, version), trt=trt, cuda=FakeCuda(trt.mem))
    assert be.io.api == api
    x = np.random.default_rng(0).standard_normal((5, 2, 32)).astype(np.float32)
    np.testing.assert_allclose(be.infer(x), _logits(x), rtol=1e-6)
    y = be.infer(x[:2])  # a smaller batch reuses the buffers
    np.testing.assert_allclose(y, _logits(x[:2]), rtol=1e-6)
    assert set(be.last_timing) == {"h2d_ms", "compute_ms", "d2h_ms", "total_ms"}
    with pytest.raises(EdgepruneError, match="outside the engine's optimization profile"):
        be.infer(np.zeros((65, 2, 32), np.float32))
    be.close()
    assert not trt.mem.blocks  # buffers freed


def test_stand_ins_expose_only_their_release_names():
    """The stand-ins would hide a wrong dispatch if they offered both APIs everywhere."""
    e82, e10 = Engine82(None, [], 1), Engine10(None, [], 1)
    assert not hasattr(e82, "num_io_tensors") and not hasattr(Context82(e82), "execute_async_v3")
    assert not hasattr(e10, "num_bindings") and not hasattr(Context10(e10), "execute_async_v2")
    assert not hasattr(Context10(e10), "set_binding_shape")


def test_engine_from_another_tensorrt_says_how_to_rebuild(tmp_path):
    trt = FakeTrt("10.3.0", Engine10)
    p = tmp_path / "m.engine"
    p.write_bytes(b"plan:8.5.2")  # built elsewhere: the runtime returns None, as TensorRT does
    (tmp_path / "m.engine.json").write_text(json.dumps({"tensorrt_version": "8.5.2", "device": "Xavier NX"}))
    with pytest.raises(EdgepruneError) as exc:
        bt.TensorRTBackend(p, trt=trt, cuda=FakeCuda(trt.mem))
    msg = str(exc.value)
    assert "TensorRT 10.3.0 cannot load" in msg and "TensorRT 8.5.2 on Xavier NX" in msg
    assert "python3 run.py build" in msg and "edgeprune build" in msg and "\n" not in msg


def test_no_known_api_is_an_error():
    class Nothing:
        pass

    with pytest.raises(EdgepruneError, match="neither execute_async_v3 nor execute_async_v2"):
        bt.engine_io(FakeTrt("7.1.3", Engine10), Nothing(), Nothing())


# ---------------------------------------------------------------- device buffers

def test_ctypes_cudart_signatures_are_the_cuda_runtime_ones():
    """argtypes/restype as documented for the CUDA runtime (cudaMalloc(void**, size_t), ...)."""
    P, vp = ctypes.POINTER, ctypes.c_void_p
    expect = {
        "cudaMalloc": [P(vp), ctypes.c_size_t], "cudaFree": [vp],
        "cudaMemcpyAsync": [vp, vp, ctypes.c_size_t, ctypes.c_int, vp],
        "cudaStreamCreate": [P(vp)], "cudaStreamSynchronize": [vp], "cudaStreamDestroy": [vp],
    }
    for name, args in expect.items():
        assert rc.CUDART_SIGNATURES[name][0] == args and rc.CUDART_SIGNATURES[name][1] is ctypes.c_int, name
    assert rc.CUDART_SIGNATURES["cudaGetErrorString"][1] is ctypes.c_char_p
    assert (rc.H2D, rc.D2H) == (1, 2)  # cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost
    assert {"libcudart.so.10.2", "libcudart.so.11.0", "libcudart.so.12"} <= set(rc.CUDART_NAMES)


def test_ctypes_cudart_calls(tmp_path):
    calls = []

    class Lib:
        pass

    lib = Lib()
    for name in rc.CUDART_SIGNATURES:
        def fn(*args, _n=name):
            calls.append((_n, args))
            return b"no error" if _n == "cudaGetErrorString" else (2 if _n == "cudaEventRecord" else 0)
        setattr(lib, name, fn)
    api = rc.CtypesCudart(lib)
    assert all(getattr(lib, n).argtypes == rc.CUDART_SIGNATURES[n][0] for n in rc.CUDART_SIGNATURES)
    host = np.arange(6, dtype=np.float32)
    dev, s = ctypes.c_void_p(0x500), ctypes.c_void_p(0x9)
    api.h2d(dev, host, s)
    api.d2h(host, dev, s)
    (n1, a1), (n2, a2) = calls[-2:]
    assert n1 == n2 == "cudaMemcpyAsync"
    assert a1[0] is dev and a1[1].value == host.ctypes.data and a1[2:4] == (24, 1) and a1[4] is s
    assert a2[0].value == host.ctypes.data and a2[1] is dev and a2[2:4] == (24, 2)
    with pytest.raises(EdgepruneError, match="cudaEventRecord failed: error 2"):
        api.record(ctypes.c_void_p(1), s)


def test_cuda_python_returns_tuples():
    class Kind:
        cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost = 1, 2

    log = []

    class Rt:
        cudaMemcpyKind = Kind

        def cudaMalloc(self, n):
            log.append(("malloc", n))
            return 0, 4096

        def cudaMemcpyAsync(self, dst, src, n, kind, stream):
            log.append(("copy", dst, src, n, kind, stream))
            return (0,)

        def cudaStreamCreate(self):
            return 0, 55

    api = rc.CudaPython(Rt())
    buf, s = api.malloc(10), api.stream()
    host = np.zeros(3, np.float32)
    api.h2d(buf, host, s)
    assert (buf, api.ptr(buf), api.stream_handle(s)) == (4096, 4096, 55)
    assert log == [("malloc", 10), ("copy", 4096, host.ctypes.data, 12, 1, 55)]
    with pytest.raises(EdgepruneError, match="CUDA error 1"):
        api._ok((1, None))


def test_cuda_api_order_is_pycuda_cuda_python_libcudart(monkeypatch):
    seen = []

    def make(name, ok):
        class Api:
            def __init__(self):
                seen.append(name)
                if not ok:
                    raise ImportError(name)
        Api.name = name
        return Api

    monkeypatch.setattr(rc, "APIS", (make("pycuda", False), make("cuda-python", False), make("ctypes", True)))
    assert rc.cuda_api().name == "ctypes" and seen == ["pycuda", "cuda-python", "ctypes"]
    monkeypatch.setattr(rc, "APIS", (make("pycuda", False),))
    with pytest.raises(EdgepruneError, match="libcudart comes with JetPack"):
        rc.cuda_api()


# ---------------------------------------------------------------- which JetPack, what to install

def test_jetpack_from_l4t_release(tmp_path):
    """/etc/nv_tegra_release line 1 -> L4T -> JetPack, as NVIDIA's release table maps them."""
    from edgeprune.export.runtime import jetpack as jp

    f = tmp_path / "nv_tegra_release"
    f.write_text("# R35 (release), REVISION: 3.1, GCID: 32790763, BOARD: t186ref, EABI: aarch64, DATE: Thu\n")
    assert jp.l4t_release(str(f)) == "35.3.1" and jp.jetpack_version("35.3.1") == "5.1.1"
    table = {"32.6.1": "4.6", "32.7.1": "4.6.1", "35.2.1": "5.1", "35.4.1": "5.1.2", "36.3.0": "6.0",
             "36.4.0": "6.1", "36.4.3": "6.2"}
    assert {k: jp.jetpack_version(k) for k in table} == table
    assert jp.l4t_release(str(tmp_path / "absent")) is None
    assert jp.JETPACK_STACK["4.6"][:2] == ("3.6", "8.0") and jp.JETPACK_STACK["4.6.1"][:2] == ("3.6", "8.2")
    assert jp.JETPACK_STACK["5.1"][:2] == ("3.8", "8.5") and jp.JETPACK_STACK["6.2"][:2] == ("3.10", "10.3")


def test_what_to_install_follows_the_jetpack():
    from edgeprune.export.runtime.jetpack import install_hint, tensorrt_hint

    assert "cp36" in install_hint("4.6.1") and "python3-libnvinfer" in install_hint("4.6.1")
    assert "cp38" in install_hint("5.1") and "JetPack 5.1" in install_hint("5.1")
    assert "jetson-ai-lab" in install_hint("6.2") and "cp36" not in install_hint("6.2")
    assert "JetPack 6.2" in tensorrt_hint("6.2")
    assert "pip install onnxruntime" in install_hint(None) or "JetPack" in install_hint(None)


@pytest.mark.parametrize("version, engine_cls, api", [RELEASES[0], RELEASES[-1]])
def test_the_backend_keeps_the_registry_protocol(tmp_path, version, engine_cls, api):
    """bind + timed on the stand-ins: the bound frames run, each timed call adds one CUDA-event split to extras."""
    from edgeprune.export.runtime import registry
    from edgeprune.export.runtime.bench import bench_backend, bench_frames

    trt = FakeTrt(version, engine_cls)
    with bt.TensorRTBackend(_engine_file(tmp_path, version), trt=trt, cuda=FakeCuda(trt.mem), threads=4) as be:
        assert all(callable(getattr(be, m)) for m in registry.PROTOCOL) and registry.model_kind("tensorrt") == "engine"
        x = bench_frames(be, 3, seed=2)
        assert x.shape == (3, 2, 32)
        np.testing.assert_allclose(be.bind(x), _logits(x), rtol=1e-6)
        times, warm = bench_backend(be, 3, seed=2, warmup_iters=2, iters=5)
        assert len(times) == 5 and warm == 2
        assert {k: len(v) for k, v in be.extras.items()} == {"h2d": 5, "gpu_compute": 5, "d2h": 5}  # warm-up's cleared
        assert be.extras["gpu_compute"] == [10000] * 5   # the stand-in's 0.01 ms per event interval, in ns
        d = be.describe()
        assert d["io"] == "device-buffers" and d["timing"] == "wall+cuda-events" and d["input_shape"] == [3, 2, 32]
        assert d["api"] == api
    assert not trt.mem.blocks
