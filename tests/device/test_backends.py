"""One backend class per runtime (issue 27): every backend keeps the registry's protocol, the backends agree on the
same model, and the profiler, run.py's core and the study reach a backend only through the registry (a backend a
test registers is the one that runs)."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

import edgeprune.profiling  # noqa: F401 - registers the torch backend
from edgeprune.errors import EdgepruneError
from edgeprune.export.runtime import registry

SHIPPED = ("onnxruntime", "tensorrt", "torch")


def test_every_backend_here_keeps_the_protocol_and_they_agree(toy_checkpoint):
    """torch on the checkpoint and onnxruntime on its ONNX export: the same methods, and the same logits."""
    from edgeprune.profiling.model_files import resolve_model

    assert set(SHIPPED) <= set(registry.names())
    assert [registry.model_kind(n) for n in SHIPPED] == ["onnx", "engine", "checkpoint"]
    x = np.random.default_rng(0).standard_normal((3, 2, 64)).astype(np.float32)
    out = {}
    src = resolve_model(toy_checkpoint)
    try:
        files = {"onnx": src.onnx_path("fp32"), "checkpoint": toy_checkpoint}
        for name in SHIPPED:
            if registry.availability(name) is not None:
                continue   # tensorrt here: no TensorRT, no GPU (tests/device/test_trt_versions.py runs its class)
            with registry.open_backend(name, str(files[registry.model_kind(name)]), threads=1) as be:
                assert be.name == name and list(be.input_shape())[1:] == [2, 64]
                out[name] = be.infer(x)
                assert out[name].dtype == np.float32 and out[name].shape == (3, 4)
                np.testing.assert_allclose(be.bind(x), out[name], rtol=1e-5, atol=1e-6)
                assert isinstance(be.timed(), int) and isinstance(be.extras, dict)
                d = be.describe()
                assert d["on"] == "cpu" and d["timing"] == "wall" and d["input_shape"] == [3, 2, 64] and d["io"]
    finally:
        src.close()
    assert set(out) >= {"onnxruntime", "torch"}
    assert np.abs(out["torch"]).max() > 1e-3   # not a degenerate all-zero output
    np.testing.assert_allclose(out["torch"], out["onnxruntime"], rtol=1e-4, atol=1e-4)


PLUGIN = '''
"""A backend of the test's own: numpy runs a flatten + linear ONNX model from its initializers."""
import time

import numpy as np

NAME = "numpy-linear"
MODEL_KIND = "onnx"
TIMED = []


def availability():
    return None


def version():
    return "np-" + np.__version__


class NumpyLinear(object):
    name = NAME

    def __init__(self, path, threads=None, providers=None, target_providers=None, precision=None,
                 cuda_graphs=False):
        import onnx
        from onnx import numpy_helper

        m = onnx.load(str(path))
        w = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
        self.w, self.b = w["W"], w["b"]
        self.shape = [d.dim_value or None for d in m.graph.input[0].type.tensor_type.shape.dim]
        self.extras = {}
        self.x = None

    def input_shape(self):
        return list(self.shape)

    def infer(self, x):
        x = np.asarray(x, np.float32)
        return (x.reshape(len(x), -1) @ self.w + self.b).astype(np.float32)

    def bind(self, x):
        self.x = np.ascontiguousarray(x, np.float32)
        return self.infer(self.x)

    def timed(self):
        t0 = time.perf_counter_ns()
        self.infer(self.x)
        TIMED.append(len(self.x))
        return time.perf_counter_ns() - t0

    def describe(self):
        return {"providers": ["numpy"], "on": "cpu", "io": "numpy", "timing": "wall",
                "input_shape": list(self.x.shape) if self.x is not None else None}

    def close(self):
        self.x = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def open_backend(model, **options):
    return NumpyLinear(model, **options)
'''


def _linear_onnx(path, length=8, classes=4):
    """iq (N, 2, length) -> Flatten -> MatMul W -> Add b: a model numpy can run from its initializers."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    w = rng.standard_normal((2 * length, classes)).astype(np.float32)
    b = rng.standard_normal(classes).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Flatten", ["iq"], ["f"], axis=1), helper.make_node("MatMul", ["f", "W"], ["m"]),
         helper.make_node("Add", ["m", "b"], ["logits"])], "linear",
        [helper.make_tensor_value_info("iq", TensorProto.FLOAT, ["batch", 2, length])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, str(path))
    return path


@pytest.fixture
def numpy_backend(tmp_path, monkeypatch):
    """The test's backend, registered as a plugin registers one (the registry restored afterwards)."""
    (tmp_path / "numpy_linear_backend.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_EXTRA", dict(registry._EXTRA))
    registry.register_backend("numpy-linear", "numpy_linear_backend")
    yield __import__("numpy_linear_backend")
    sys.modules.pop("numpy_linear_backend", None)


def test_a_registered_backend_is_what_the_profiler_runs(numpy_backend, tmp_path):
    from edgeprune.export.runtime.machine import cpu_label
    from edgeprune.profiling.harness import profile

    path = _linear_onnx(tmp_path / "linear.onnx")
    x = np.random.default_rng(1).standard_normal((5, 2, 8)).astype(np.float32)
    with registry.open_backend("numpy-linear", path) as be, registry.open_backend("onnxruntime", path) as ort:
        np.testing.assert_allclose(be.infer(x), ort.infer(x), rtol=1e-5, atol=1e-5)   # a real backend
    res = profile([path], backends=["numpy-linear", "onnxruntime"], batches=[2], warmup_iters=3, iters=7,
                  show_progress=False)
    rec, ort_rec = res["records"]
    assert rec["backend"] == "numpy-linear" and rec["backend_version"] == "np-" + np.__version__
    assert rec["iterations"] == 7 and numpy_backend.TIMED == [2] * 10   # 3 warm-up + 7 timed calls, all its own
    assert rec["providers"] == ["numpy"] and rec["io"] == "numpy" and rec["input_shape"] == [2, 2, 8]
    assert rec["device"] == cpu_label(res["machine"]) and not res["skipped"]
    assert ort_rec["backend"] == "onnxruntime" and ort_rec["io"] == "iobinding"


def test_the_study_takes_a_registered_backend(numpy_backend):
    from edgeprune.study.config import normalise

    cfg = normalise({"data": {"synth": "rml2016.10a"}, "profile": {"backends": ["numpy-linear", "torch"]}})
    assert cfg["profile"]["backends"] == ["numpy-linear", "torch"]
    with pytest.raises(EdgepruneError, match="unknown backend 'tflite'"):
        normalise({"data": {"synth": "rml2016.10a"}, "profile": {"backends": ["tflite"]}})


def test_an_object_without_the_protocol_is_refused(numpy_backend, tmp_path):
    """A backend whose object cannot be timed is one error line, before anything runs."""
    from edgeprune.profiling.harness import profile

    path = _linear_onnx(tmp_path / "linear.onnx")
    numpy_backend.NumpyLinear.timed = None
    with pytest.raises(EdgepruneError, match=r"'numpy-linear' gives an object without timed \(the backend protocol"):
        profile([path], backends=["numpy-linear"], iters=2, warmup_iters=1, show_progress=False)
