"""One runtime layer: Predictor, the profiler and run.py open models through one backend registry,
with one policy for execution providers that are not there."""

from __future__ import annotations

import numpy as np
import pytest

from edgeprune.errors import EdgepruneError
from edgeprune.export.runtime import registry
from edgeprune.export.runtime.backend_onnxruntime import OnnxRuntimeBackend, resolve_providers
from export_fixtures import LENGTH, shared_bundle

AVAILABLE = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_provider_policy():
    assert resolve_providers(None, AVAILABLE) == (["CPUExecutionProvider"], [])
    assert resolve_providers(["CUDAExecutionProvider"], AVAILABLE) == (["CUDAExecutionProvider"], [])
    with pytest.raises(EdgepruneError, match="'TensorrtExecutionProvider' is not available here"):
        resolve_providers("TensorrtExecutionProvider,CPUExecutionProvider", AVAILABLE)
    target = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers("auto", AVAILABLE, target) == (["CUDAExecutionProvider", "CPUExecutionProvider"],
                                                            ["TensorrtExecutionProvider"])
    assert resolve_providers("auto", ["CPUExecutionProvider"], ["TensorrtExecutionProvider"]) == \
        (["CPUExecutionProvider"], ["TensorrtExecutionProvider"])


def test_predictor_profiler_and_runner_share_the_backends(tmp_path_factory):
    from edgeprune.export import Predictor
    from edgeprune.profiling.harness import profile

    out, _, _ = shared_bundle(tmp_path_factory)
    assert set(registry.names()) >= {"onnxruntime", "tensorrt", "torch"}
    with Predictor(out) as p:
        assert isinstance(p._model.backend, OnnxRuntimeBackend)
        x = np.random.default_rng(1).standard_normal((3, 2, LENGTH)).astype(np.float32)
        with registry.open_backend("onnxruntime", out / "model-fp32.onnx", threads=1) as be:
            assert isinstance(be, OnnxRuntimeBackend)
            np.testing.assert_allclose(p.logits(x, preprocess=False), be.infer(x), rtol=1e-6)
    assert registry.availability("onnxruntime") is None and registry.availability("torch") is None
    assert "tensorrt" in registry.availability("tensorrt")  # not installed here: the registry's one-line reason
    # the same policy everywhere: a provider named and absent is an error in Predictor and profile alike
    with pytest.raises(EdgepruneError, match="not available here"):
        Predictor(out, providers=["TensorrtExecutionProvider"])
    with pytest.raises(EdgepruneError, match="not available here"):
        profile([out], providers=["TensorrtExecutionProvider"], iters=2, warmup_iters=1, show_progress=False)
    # "auto": the bundle target's providers that exist here (x86-cpu: the CPU)
    with Predictor(out, providers="auto") as p:
        assert p.providers == ["CPUExecutionProvider"]
