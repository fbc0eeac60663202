"""The latency harness: records, results files, backends, bad input, and the torch-free device side."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeprune.errors import EdgepruneError
from export_fixtures import CLASSES, LENGTH, export_onnx

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    return {n: export_onnx(n, d / f"{n}.onnx") for n in ("resnet20-1d", "cnn1d")}


def _check_record(rec: dict, batch: int):
    from edgeprune.profiling.results_file import REQUIRED

    for key in REQUIRED:
        assert key in rec, key
    assert rec["batch"] == batch
    assert rec["min_ms"] <= rec["median_ms"] <= rec["max_ms"]
    assert rec["min_ms"] <= rec["p90_ms"] <= rec["p99_ms"] <= rec["max_ms"]
    assert rec["min_ms"] <= rec["mean_ms"] <= rec["max_ms"]
    assert rec["min_ms"] > 0 and rec["std_ms"] >= 0
    assert rec["throughput_fps"] == pytest.approx(batch * 1000.0 / rec["mean_ms"])
    for k in ("cpu", "logical_cores", "os", "python", "hostname_sha256"):
        assert rec["machine"][k]
    import socket

    assert socket.gethostname() not in json.dumps(rec["machine"])


def test_onnx_records_have_all_fields(onnx_files):
    import onnxruntime as ort

    from edgeprune.models import build_model, make_spec
    from edgeprune.models.macs import count_macs, model_stats
    from edgeprune.profiling.harness import profile
    from edgeprune.profiling.model_files import file_sha256

    path = onnx_files["resnet20-1d"]
    res = profile([path], batches=[1, 4], threads=[1, 2], warmup_iters=2, iters=12, show_progress=False)
    assert res["schema"] == 1 and res["machine"]["cpu"]
    assert len(res["records"]) == 4 and not res["skipped"]
    spec = make_spec("resnet20-1d", LENGTH, CLASSES)
    for rec in res["records"]:
        _check_record(rec, rec["batch"])
        assert rec["iterations"] == 12 and rec["warmup_iters"] == 2
        assert rec["backend"] == "onnxruntime" and rec["backend_version"] == ort.__version__
        assert rec["providers"] == ["CPUExecutionProvider"]
        assert rec["precision"] == "fp32"
        assert rec["input_shape"] == [rec["batch"], 2, LENGTH]
        assert rec["sha256"] == file_sha256(path)
        assert rec["macs"] == count_macs(build_model(spec)) and rec["macs_source"] == "onnx-graph"
        assert rec["layers"] == model_stats(spec)["weight_layers"]
    assert {(r["batch"], r["threads"]) for r in res["records"]} == {(1, 1), (1, 2), (4, 1), (4, 2)}


def test_duration_mode_runs_at_least_min_iters(onnx_files):
    from edgeprune.profiling.harness import profile

    res = profile([onnx_files["cnn1d"]], warmup_ms=5, duration_ms=20, min_iters=7, show_progress=False)
    rec = res["records"][0]
    _check_record(rec, 1)
    assert rec["iterations"] >= 7 and rec["warmup_iters"] >= 1


def test_results_roundtrip_and_append(onnx_files, tmp_path):
    from edgeprune.profiling.harness import profile
    from edgeprune.profiling.results_file import load_results, save_results

    out = tmp_path / "res.json"
    a = profile([onnx_files["cnn1d"]], batches=[1, 2], warmup_iters=1, iters=5, show_progress=False)
    save_results(out, a)
    back = load_results(out)
    assert back == json.loads(json.dumps(a))
    b = profile([onnx_files["resnet20-1d"], onnx_files["cnn1d"]], batches=[2], warmup_iters=1, iters=5,
                show_progress=False)
    merged = save_results(out, b, append=True)
    # cnn1d batch 2 replaced, cnn1d batch 1 kept, resnet20-1d batch 2 added
    keys = sorted((r["model"], r["batch"]) for r in load_results(out)["records"])
    assert keys == [("cnn1d", 1), ("cnn1d", 2), ("resnet20-1d", 2)]
    assert merged["records"][-1]["model"] == "cnn1d" and merged["records"][-1]["batch"] == 2
    assert not list(tmp_path.glob(".res.json.*"))  # no temporary files left


def test_checkpoint_on_torch_and_onnxruntime(toy_checkpoint):
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.profiling.harness import profile

    meta = load_checkpoint(toy_checkpoint).meta
    res = profile([toy_checkpoint], backends=["torch", "onnxruntime"], batches=[2], warmup_iters=1, iters=5,
                  show_progress=False)
    assert [r["backend"] for r in res["records"]] == ["torch", "onnxruntime"]
    for rec in res["records"]:
        _check_record(rec, 2)
        assert rec["kind"] == "checkpoint" and rec["macs_source"] == "checkpoint"
        assert rec["macs"] == meta["macs"] and rec["params"] == meta["params"]
        assert rec["layers"] == meta["weight_layers"] and rec["units"] == 9
    torch_rec = res["records"][0]
    assert torch_rec["providers"] == ["cpu"] and torch_rec["timing"] == "wall"  # no GPU here: CPU path only
    assert not Path(res["records"][1]["file"]).exists()  # the temporary ONNX export was cleaned up


def test_tensorrt_absent_is_skipped_with_reason(onnx_files):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    from edgeprune.profiling.harness import profile

    res = profile([onnx_files["cnn1d"]], backends=["onnxruntime", "tensorrt"], warmup_iters=1, iters=3,
                  show_progress=False)
    assert len(res["records"]) == 1
    (skip,) = res["skipped"]
    assert skip["backend"] == "tensorrt" and "tensorrt" in skip["reason"]
    with pytest.raises(EdgepruneError, match="nothing could be profiled.*tensorrt"):
        profile([onnx_files["cnn1d"]], backends=["tensorrt"], iters=3, show_progress=False)
    empty = profile([onnx_files["cnn1d"]], backends=["tensorrt"], iters=3, show_progress=False, allow_empty=True)
    assert empty["records"] == [] and empty["skipped"][0]["backend"] == "tensorrt"
    # an ONNX file is not run by the torch backend: skipped, not crashed
    res = profile([onnx_files["cnn1d"]], backends=["onnxruntime", "torch"], warmup_iters=1, iters=3,
                  show_progress=False)
    assert "checkpoints" in res["skipped"][0]["reason"]


@pytest.mark.parametrize("kwargs, message", [
    ({"backends": ["tflite"]}, "unknown backend 'tflite'"),
    ({"batches": [0]}, "batch sizes must be >= 1"),
    ({"threads": [-1]}, "thread counts must be >= 1"),
    ({"precisions": ["fp8"]}, "unknown precision"),
])
def test_bad_options(onnx_files, kwargs, message):
    from edgeprune.profiling.harness import profile

    with pytest.raises(EdgepruneError, match=message):
        profile([onnx_files["cnn1d"]], iters=2, show_progress=False, **kwargs)


def test_bad_model_files(tmp_path):
    from edgeprune.profiling.harness import profile

    with pytest.raises(EdgepruneError, match="does not exist"):
        profile([tmp_path / "missing.onnx"], iters=2, show_progress=False)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf \x00\xff\x12" * 10)
    with pytest.raises(EdgepruneError, match="not a readable ONNX model"):
        profile([junk], iters=2, show_progress=False)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(EdgepruneError, match="empty"):
        profile([empty], iters=2, show_progress=False)


def test_cli_profile_json_out_append_and_errors(onnx_files, tmp_path, capsys):
    from edgeprune.cli.main import main

    out = tmp_path / "r.json"
    rc = main(["profile", str(onnx_files["cnn1d"]), "--batch-size", "1,2", "--warmup", "1", "--iters", "4",
               "--out", str(out), "--json", "--seed", "3"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["batch"] for r in doc["records"]] == [1, 2] and doc["records"][0]["seed"] == 3
    rc = main(["profile", str(onnx_files["resnet20-1d"]), "--warmup", "1", "--iters", "4", "--out", str(out),
               "--append"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "resnet20-1d" in text and "median" in text and "3 records" in text
    assert len(json.loads(out.read_text())["records"]) == 3
    for argv, msg in ([["--backend", "nope"], "unknown backend"], [["--batch-size", "0"], "must be >= 1"],
                      [["--batch-size", "x"], "positive integers"]):
        rc = main(["profile", str(onnx_files["cnn1d"]), "--iters", "2", *argv])
        err = capsys.readouterr().err
        assert rc != 0 and err.startswith("edgeprune: error:") and msg in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    rc = main(["profile", str(tmp_path / "nope.onnx")])
    assert rc != 0 and "does not exist" in capsys.readouterr().err


_NO_TORCH = """
import sys, json
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, _Block())
try:
    import torch  # noqa
    raise SystemExit("torch imported")
except ImportError:
    pass
"""


def _run_without_torch(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, EDGEPRUNE_QUIET="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", _NO_TORCH + code], capture_output=True, text=True, env=env,
                          cwd=str(REPO), timeout=120)


def test_profile_onnx_without_torch(onnx_files, toy_checkpoint, tmp_path):
    out = tmp_path / "r.json"
    code = f"""
from edgeprune.profiling.harness import profile
from edgeprune.profiling.results_file import save_results
res = profile([{str(onnx_files['resnet20-1d'])!r}], batches=[1, 2], warmup_iters=1, iters=4, per_layer=True,
              per_layer_iters=3, show_progress=False)
save_results({str(out)!r}, res)
assert "torch" not in sys.modules, "torch was imported"
from edgeprune.cli.main import main
rc = main(["profile", {str(onnx_files['cnn1d'])!r}, "--iters", "3", "--warmup", "1", "--per-layer", "--json"])
assert "torch" not in sys.modules, "torch was imported by the CLI"
sys.exit(rc)
"""
    proc = _run_without_torch(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert len(res["records"]) == 2
    assert res["records"][0]["macs"] > 0 and res["records"][0]["per_layer"]["layers"]
    assert json.loads(proc.stdout)["records"][0]["model"] == "cnn1d"
    # a checkpoint on a torch-less device: one clear line naming torch
    proc = _run_without_torch(f"""
from edgeprune.errors import EdgepruneError
from edgeprune.profiling.harness import profile
try:
    profile([{str(toy_checkpoint)!r}], iters=2)
except EdgepruneError as exc:
    print(exc)
""")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "needs the optional package 'torch'" in proc.stdout


def test_profile_bundle(toy_checkpoint, tmp_path):
    pytest.importorskip("edgeprune.export.bundle")
    from edgeprune.export.bundle import make_bundle

    bundle = tmp_path / "b.tar.gz"
    make_bundle(toy_checkpoint, "x86-cpu", bundle, precisions=["fp32"])
    from edgeprune.profiling.harness import profile

    res = profile([bundle], batches=[1], warmup_iters=1, iters=3, show_progress=False)
    (rec,) = res["records"]
    _check_record(rec, 1)
    assert rec["kind"] == "bundle" and rec["macs_source"] == "bundle-manifest" and rec["layers"] == 20
    # and on a device without torch
    proc = _run_without_torch(f"""
from edgeprune.profiling.harness import profile
res = profile([{str(bundle)!r}], warmup_iters=1, iters=3, show_progress=False)
assert "torch" not in sys.modules
print(json.dumps(res["records"][0]["macs"]))
""")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.strip()) == rec["macs"]


@pytest.mark.parametrize("batch", [1, 5])
def test_ort_backend_binds_buffers_and_computes_the_same(onnx_files, batch):
    """The timed ORT call runs on preallocated, bound buffers and gives what session.run gives."""
    import numpy as np

    from edgeprune.export.runtime import registry
    from edgeprune.export.runtime.bench import bench_frames

    with registry.open_backend("onnxruntime", onnx_files["resnet20-1d"], threads=1) as be:
        x = bench_frames(be, batch, seed=3)
        first = be.bind(x)
        assert be.describe()["io"] == "iobinding" and be.describe()["input_shape"] == [batch, 2, LENGTH]
        assert be.timed() > 0
        a = be.bound_logits()
        assert a.shape == (batch, CLASSES)
        expected = be.session.run(None, {"iq": x})[0]
    np.testing.assert_allclose(a, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(first, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(a, 0)                          # the bound output buffer was really written


def test_ort_records_say_how_io_was_done(onnx_files):
    from edgeprune.profiling.harness import profile

    res = profile([str(onnx_files["cnn1d"])], backends=("onnxruntime",), batches=(2,), threads=(1,),
                  warmup_iters=2, iters=5, duration_ms=None, show_progress=False)
    assert res["records"][0]["io"] == "iobinding"


def test_rounds_figure_is_the_median_round(onnx_files):
    """profile(rounds=3): every measurement timed in 3 rounds; its figure is the round with the median median."""
    from edgeprune.profiling.harness import profile

    models = [onnx_files["resnet20-1d"], onnx_files["cnn1d"]]
    res = profile(models, threads=[1, 2], warmup_iters=1, iters=5, show_progress=False, rounds=3)
    assert len(res["records"]) == 4 and not res["skipped"]
    for rec in res["records"]:
        assert len(rec["rounds"]) == 3 and rec["iterations"] == 5  # timing options apply to each round
        assert rec["median_ms"] == sorted(rec["rounds"])[1]
        assert rec["min_ms"] <= min(rec["rounds"]) and rec["max_ms"] >= max(rec["rounds"])
    with pytest.raises(EdgepruneError, match="rounds"):
        profile(models, iters=5, show_progress=False, rounds=0)


def test_combine_rounds_by_hand():
    """The one combine rule on hand-made rounds: upper median round, round medians in order, min/max overall."""
    from edgeprune.profiling.harness import combine_rounds

    def rec(threads, med, lo, hi, tag):
        return {"path": "m.onnx", "backend": "onnxruntime", "precision": "fp32", "batch": 1, "threads": threads,
                "median_ms": med, "min_ms": lo, "max_ms": hi, "mean_ms": med, "tag": tag}

    runs = [rec(1, 3.0, 2.5, 9.0, "a"), rec(2, 1.0, 0.9, 1.1, "x"),
            rec(1, 1.0, 0.8, 1.5, "b"), rec(2, 2.0, 1.9, 2.1, "y"),
            rec(1, 2.0, 1.7, 2.2, "c"),
            rec(1, 4.0, 3.9, 4.1, "d")]
    out = {r["threads"]: r for r in combine_rounds(runs)}
    assert out[1]["rounds"] == [3.0, 1.0, 2.0, 4.0]
    assert out[1]["tag"] == "a" and out[1]["median_ms"] == 3.0 and out[1]["mean_ms"] == 3.0  # rounds 1,2,3,4: upper
    assert (out[1]["min_ms"], out[1]["max_ms"]) == (0.8, 9.0)
    assert out[2]["tag"] == "y" and out[2]["rounds"] == [1.0, 2.0]


def test_stop_rule_ends_rounds_once_they_agree(onnx_files):
    """stop_spread: rounds end after the second once every figure's rounds agree within the given fraction.

    With two rounds the figure is the upper round, so (slowest - fastest) / figure < 1 always: a stop_spread of 1
    must stop after round 2, whatever the timings; without the rule every round runs."""
    from edgeprune.profiling.harness import profile

    models = [onnx_files["cnn1d"]]
    res = profile(models, warmup_iters=1, iters=3, show_progress=False, rounds=4, stop_spread=1.0)
    assert res["rounds_run"] == 2 and all(len(r["rounds"]) == 2 for r in res["records"])
    res = profile(models, warmup_iters=1, iters=3, show_progress=False, rounds=4)
    assert res["rounds_run"] == 4 and all(len(r["rounds"]) == 4 for r in res["records"])
    for bad in (0, -1, float("nan"), True):
        with pytest.raises(EdgepruneError, match="stop_spread"):
            profile(models, iters=3, show_progress=False, rounds=2, stop_spread=bad)


def test_rounds_agree_by_hand():
    from edgeprune.profiling.harness import rounds_agree

    def rec(rounds):
        return {"median_ms": sorted(rounds)[len(rounds) // 2], "rounds": rounds}

    assert rounds_agree([rec([1.0, 1.04]), rec([2.0, 2.0, 2.02])], 0.05)
    assert not rounds_agree([rec([1.0, 1.04]), rec([2.0, 2.2])], 0.05)      # one figure still spread
    assert not rounds_agree([rec([1.0])], 0.05)                             # one round says nothing of noise
