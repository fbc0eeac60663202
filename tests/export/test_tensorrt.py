"""TensorRT: what works without it (trtexec line, one-line install hint, input checks) and,
where tensorrt + a GPU are present, a real build and run (skipped otherwise)."""

from __future__ import annotations

import importlib.util
import json
import shlex

import numpy as np
import pytest

from edgeprune.cli.main import main
from edgeprune.errors import EdgepruneError
from edgeprune.export.onnx_export import export_checkpoint
from edgeprune.export.tensorrt_build import trtexec_command
from export_fixtures import LENGTH, shared_trained

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    ckpt, data = shared_trained(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("trt")
    export_checkpoint(ckpt, tmp / "m16.onnx", precision="fp16", target="xavier-nx")
    export_checkpoint(ckpt, tmp / "m32.onnx", precision="fp32")
    return tmp


def test_trtexec_line_for_dla_target(onnx_files):
    cmd = trtexec_command(onnx_files / "m16.onnx", "xavier-nx", "m.engine")
    args = shlex.split(cmd)
    assert args[0] == "trtexec" and f"--onnx={onnx_files / 'm16.onnx'}" in args
    assert "--saveEngine=m.engine" in args and "--fp16" in args
    assert f"--minShapes=iq:1x2x{LENGTH}" in args and f"--maxShapes=iq:256x2x{LENGTH}" in args
    assert f"--optShapes=iq:32x2x{LENGTH}" in args
    assert "--useDLACore=0" in args and "--allowGPUFallback" in args
    assert "--memPoolSize=workspace:1024" in args
    gpu = shlex.split(trtexec_command(onnx_files / "m32.onnx", "orin-nano", "o.engine", timing_cache="t.cache"))
    assert "--fp16" not in gpu and not any(a.startswith("--useDLACore") for a in gpu)
    assert "--timingCacheFile=t.cache" in gpu


def test_print_trtexec_cli_needs_no_tensorrt(onnx_files, capsys):
    rc = main(["build", "--onnx", str(onnx_files / "m16.onnx"), "--target", "agx-orin", "--out", "a.engine",
               "--print-trtexec", "--json"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["trtexec"].startswith("trtexec --onnx=")


def test_build_input_checks(onnx_files, tmp_path):
    with pytest.raises(EdgepruneError, match="not TensorRT"):
        trtexec_command(onnx_files / "m32.onnx", "x86-cpu", "x.engine")
    with pytest.raises(EdgepruneError, match="int8 engines are built from an int8"):
        trtexec_command(onnx_files / "m32.onnx", "xavier-nx", "x.engine", precision="int8")
    with pytest.raises(EdgepruneError, match="does not support int8"):
        trtexec_command(onnx_files / "m16.onnx", "jetson-nano", "x.engine", precision="int8")
    with pytest.raises(EdgepruneError, match="does not exist"):
        trtexec_command(tmp_path / "none.onnx", "xavier-nx", "x.engine")


@pytest.mark.skipif(HAVE_TRT, reason="tensorrt is installed here")
def test_build_without_tensorrt_says_what_to_install(onnx_files, tmp_path, capsys):
    out = tmp_path / "m.engine"
    rc = main(["build", "--onnx", str(onnx_files / "m16.onnx"), "--target", "xavier-nx", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc != 0 and not out.exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "tensorrt" in lines[0] and "python3-libnvinfer" in lines[0] and "pip install" in lines[0]


@pytest.mark.skipif(HAVE_TRT, reason="tensorrt is installed here")
def test_engine_runner_without_tensorrt(tmp_path):
    from edgeprune.errors import MissingDependency
    from edgeprune.export.runtime.backend_tensorrt import TensorRTBackend

    with pytest.raises(MissingDependency, match="tensorrt"):
        TensorRTBackend(tmp_path / "m.engine")


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAVE_TRT, reason="needs the tensorrt Python package and an NVIDIA GPU")
def test_build_and_run_engine(onnx_files, tmp_path):
    from edgeprune.export import Predictor
    from edgeprune.export.tensorrt_build import build_engine
    from edgeprune.export.runtime.backend_tensorrt import TensorRTBackend
    from edgeprune.export.verify import make_session, run_logits

    out = tmp_path / "m.engine"
    meta = build_engine(onnx_files / "m32.onnx", "orin-nano", out, precision="fp16",
                        timing_cache=tmp_path / "t.cache")
    assert out.exists() and (tmp_path / "m.engine.json").exists() and meta["precision"] == "fp16"
    runner = TensorRTBackend(out)
    x = np.random.default_rng(0).standard_normal((8, 2, LENGTH)).astype(np.float32)
    y = runner.infer(x)
    ref = run_logits(make_session(str(onnx_files / "m32.onnx")), x)
    assert y.shape == ref.shape and (y.argmax(1) == ref.argmax(1)).mean() >= 0.9
    assert set(runner.last_timing) >= {"h2d_ms", "compute_ms", "d2h_ms"}
    assert Predictor(out).predict(x)["labels"].shape == (8,)
