"""A bundle's own runner (run.py): the embedded runtime is the package's code, and it runs for real on
Python 3.6 (numpy 1.19.5 + onnxruntime 1.10.0, as on JetPack 4.6), 3.8 (JetPack 5) and this Python,
giving the answers of ``edgeprune predict`` and records in the schema of ``edgeprune profile``."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edgeprune_run import run_edgeprune

from edgeprune.export.runner_file import RUNTIME_DIR, embedded_sources, render, runtime_sources
from export_fixtures import LENGTH, embedded_module, shared_bundle, shared_trained
from venvs import clean_env, device_venv

PYTHONS = ["3.6.15", "3.8.18", "3.10.13", "this"]  # JetPack 4.6, 5.1, 6.x, and this Python


# ------------------------------------------------------------ the embedded code is the package

def test_run_py_embeds_the_runtime_byte_for_byte(tmp_path_factory):
    out, _, _ = shared_bundle(tmp_path_factory)
    text = (out / "run.py").read_text(encoding="utf-8")
    assert text == render()
    emb = embedded_sources(text)
    on_disk = {p.stem: p.read_text(encoding="utf-8") for p in RUNTIME_DIR.glob("*.py")}
    assert emb == on_disk == runtime_sources()  # every module of export/runtime, and nothing else


_FORBIDDEN_MODULES = {"dataclasses", "importlib.metadata", "typing"}
_ALLOWED_TOP = {"numpy", "onnxruntime", "tensorrt", "pycuda", "cuda", "sigmf"}


def test_runtime_is_python36_code():
    """Parsed by Python 3.6's own compiler; no 3.7+ library calls; only stdlib, numpy and the lazy backends."""
    py36 = None
    try:
        from venvs import pyenv_python

        py36 = pyenv_python("3.6.15")
    except Exception:  # noqa: BLE001
        pass
    stdlib = set(sys.stdlib_module_names)
    for name, src in runtime_sources().items():
        tree = ast.parse(src)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module != "__future__", f"{name}: __future__ import"
                assert node.module not in _FORBIDDEN_MODULES, f"{name}: imports {node.module}"
                top = node.module.split(".")[0]
                assert top in stdlib or top in _ALLOWED_TOP, f"{name}: imports {node.module}"
            if isinstance(node, ast.Import):
                for a in node.names:
                    assert a.name not in _FORBIDDEN_MODULES, f"{name}: imports {a.name}"
                    assert a.name.split(".")[0] in stdlib | _ALLOWED_TOP, f"{name}: imports {a.name}"
            if isinstance(node, ast.keyword):
                assert node.arg not in ("capture_output", "text"), f"{name}: subprocess keyword {node.arg}"
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("perf_counter_ns", "removeprefix", "removesuffix") or name == "compat", \
                    f"{name}: uses .{node.attr} (Python 3.7+)"
            if isinstance(node, (ast.AnnAssign, ast.NamedExpr)):
                raise AssertionError(f"{name}: annotated assignment or walrus")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                annotated = [a for a in args.args + args.kwonlyargs + args.posonlyargs if a.annotation is not None]
                assert not annotated and node.returns is None, f"{name}.{node.name}: annotations"
                assert not args.posonlyargs, f"{name}.{node.name}: positional-only parameters"
    if py36 is None:
        pytest.skip("Python 3.6.15 is not installed; the AST checks above ran")
    code = ("import sys\nfor p in sys.argv[1:]:\n    compile(open(p).read(), p, 'exec')\n")
    r = subprocess.run([str(py36), "-c", code, *map(str, sorted(RUNTIME_DIR.glob("*.py")))],
                       capture_output=True, text=True, timeout=60, env=clean_env())
    assert r.returncode == 0, r.stderr


def _mutations(m):
    """(name, damaged manifest) pairs: each should be refused."""
    import copy

    def mut(fn):
        d = copy.deepcopy(m)
        fn(d)
        return d

    first = next(iter(m["files"]))
    yield "not an object", [1, 2]
    yield "kind", mut(lambda d: d.update(kind="other"))
    yield "schema 2", mut(lambda d: d.update(schema_version=2))
    yield "schema missing", mut(lambda d: d.pop("schema_version"))
    for key in ("classes", "input", "preprocessing", "variants", "files"):
        yield f"{key} missing", mut(lambda d, k=key: d.pop(k))
        yield f"{key} wrong type", mut(lambda d, k=key: d.update({k: "x"}))
    yield "classes empty", mut(lambda d: d.update(classes=[]))
    yield "class not a string", mut(lambda d: d.update(classes=[1, 2]))
    yield "length not int", mut(lambda d: d["input"].update(length="64"))
    yield "channels 3", mut(lambda d: d["input"].update(channels=3))
    yield "layout NHWC", mut(lambda d: d["input"].update(layout="NHWC"))   # NCL, N1CL and NLC are layouts
    yield "normalisation", mut(lambda d: d["preprocessing"].update(normalization="zscore"))
    yield "unsafe name", mut(lambda d: d["files"].update({"../x": d["files"][first]}))
    yield "folder name", mut(lambda d: d["files"].update({"a/b": d["files"][first]}))
    yield "lists itself", mut(lambda d: d["files"].update({"manifest.json": d["files"][first]}))
    yield "short sha", mut(lambda d: d["files"][first].update(sha256="ab"))
    yield "size not int", mut(lambda d: d["files"][first].update(size="1"))
    yield "no variants", mut(lambda d: d.update(variants=[]))
    yield "variant file unlisted", mut(lambda d: d["variants"][0].update(file="other.onnx"))
    yield "variant format", mut(lambda d: d["variants"][0].update(format="tflite"))
    yield "variant precision", mut(lambda d: d["variants"][0].update(precision="bf16"))


def _board_check(out):
    """run.py's manifest check as the bundle's own run.py serves it (its embedded sources, its error class)."""
    run_py = (out / "run.py").read_text(encoding="utf-8")
    return embedded_module("manifest", run_py).check_manifest, embedded_module("errors", run_py).EdgepruneError


def test_runner_refuses_what_open_bundle_refuses(tmp_path_factory):
    from edgeprune.errors import EdgepruneError
    from edgeprune.export.runtime.manifest import check_manifest

    out, _, _ = shared_bundle(tmp_path_factory)
    board_check, BoardError = _board_check(out)
    m = json.loads((out / "manifest.json").read_text())
    assert check_manifest(m) is m and board_check(m) is m
    n = 0
    for name, bad in _mutations(m):
        verdicts = []
        for check, error in ((check_manifest, EdgepruneError), (board_check, BoardError)):
            try:
                check(bad)
                verdicts.append("accepted")
            except error:
                verdicts.append("refused")
        assert verdicts == ["refused", "refused"], f"{name}: open_bundle {verdicts[0]}, run.py {verdicts[1]}"
        n += 1
    assert n > 25


def test_random_manifest_damage_refused_by_both(tmp_path_factory):
    """Any key of the manifest replaced by a random JSON value or removed: whatever open_bundle's check refuses,
    run.py's check refuses too (it may be stricter, e.g. a boolean schema_version)."""
    import copy

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from edgeprune.errors import EdgepruneError
    from edgeprune.export.runtime.manifest import check_manifest

    out, _, _ = shared_bundle(tmp_path_factory)
    board_check, BoardError = _board_check(out)
    base = json.loads((out / "manifest.json").read_text())
    paths = [(k,) for k in base] + [("input", k) for k in base["input"]] + \
        [("preprocessing", k) for k in base["preprocessing"]] + [("variants", 0, k) for k in base["variants"][0]] + \
        [("files", k) for k in base["files"]] + [("files", next(iter(base["files"])), k) for k in ("sha256", "size")]
    values = st.recursive(st.none() | st.booleans() | st.integers(-3, 100) | st.text(max_size=70),
                          lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                          max_leaves=6)

    def refused(check, m):
        try:
            check(m)
        except (EdgepruneError, BoardError):
            return True
        return False

    @settings(max_examples=300, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(paths), st.one_of(st.just("<delete>"), values))
    def check(path, value):
        m = copy.deepcopy(base)
        parent = m
        for k in path[:-1]:
            parent = parent[k]
        if value == "<delete>":
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = value
        if refused(check_manifest, m):
            assert refused(board_check, m), (path, value)

    check()


# ------------------------------------------------------------ real runs on each Python

@pytest.fixture(scope="module")
def boards(tmp_path_factory):
    """A Jetson Nano bundle (ONNX opset 13: what onnxruntime 1.10 on Python 3.6 loads), frames, a SigMF capture."""
    from edgeprune.data.dataset import load_npz
    from edgeprune.export.bundle import make_bundle

    ckpt, data = shared_trained(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("runner")
    nano = tmp / "nano"
    make_bundle(ckpt, "jetson-nano", nano)
    x = load_npz(data).x[:20]
    np.save(tmp / "frames.npy", x)
    z = (x[:, 0] + 1j * x[:, 1]).reshape(-1).astype(np.complex64)  # the frames back to back
    (tmp / "cap.sigmf-data").write_bytes(z.tobytes())
    (tmp / "cap.sigmf-meta").write_text(json.dumps({"global": {"core:datatype": "cf32_le", "core:version": "1.0.0",
                                                                "core:sample_rate": 1e6},
                                                     "captures": [{"core:sample_start": 0}], "annotations": []}))
    return {"nano": nano, "tmp": tmp, "frames": tmp / "frames.npy", "sigmf": tmp / "cap.sigmf-meta"}


def _python(which: str) -> str:
    return sys.executable if which == "this" else str(device_venv(which))


def _run(py, bundle, *args, env=None, cwd=None):
    return subprocess.run([py, str(Path(bundle) / "run.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env or clean_env(), cwd=cwd or "/")


def _edgeprune_predict(bundle, inp, *extra):
    r = run_edgeprune("predict", bundle, "--input", inp, "--json", *extra, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def expected(boards):
    return {(inp, prec): _edgeprune_predict(boards["nano"], boards[inp], "--precision", prec)
            for inp in ("frames", "sigmf") for prec in ("fp32", "fp16")}


@pytest.mark.parametrize("which", PYTHONS)
def test_predict_matches_edgeprune_predict(boards, expected, which):
    py = _python(which)
    for inp in ("frames", "sigmf"):
        for prec in ("fp32", "fp16"):
            r = _run(py, boards["nano"], "predict", "--input", boards[inp], "--precision", prec, "--json",
                     "--batch-size", "7")
            assert r.returncode == 0, r.stderr
            got, ref = json.loads(r.stdout), expected[(inp, prec)]
            assert got["frames"] == ref["frames"] == 20 and got["windowed"] == (inp == "sigmf")
            assert [p["label"] for p in got["predictions"]] == [p["label"] for p in ref["predictions"]]
            assert [p.get("offset") for p in got["predictions"]] == [p.get("offset") for p in ref["predictions"]]
            np.testing.assert_allclose([p["confidence"] for p in got["predictions"]],
                                       [p["confidence"] for p in ref["predictions"]], atol=2e-3 if prec == "fp16" else 1e-5)
            assert got["model"]["precision"] == prec and got["model"]["backend"] == "onnxruntime"
    text = _run(py, boards["nano"], "predict", "--input", boards["frames"])
    assert text.returncode == 0 and text.stdout.splitlines()[-1].startswith("# 20 frame(s): ")


@pytest.mark.parametrize("which", PYTHONS)
def test_bench_and_check(boards, which, tmp_path):
    from edgeprune.profiling.harness import profile
    from edgeprune.profiling.results_file import REQUIRED

    py = _python(which)
    out = tmp_path / "r.json"
    r = _run(py, boards["nano"], "bench", "--batch-size", "1,3", "--precision", "fp32", "--iters", "15", "--warmup", "4",
             "--out", out)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["kind"] == "edgeprune-latency-results" and res["schema"] == 1
    recs = res["records"]
    assert [(x["batch"], x["iterations"], x["warmup_iters"]) for x in recs] == [(1, 15, 4), (3, 15, 4)]
    ref = profile([boards["nano"]], precisions=["fp32"], batches=[1], iters=3, warmup_iters=1,
                  show_progress=False)["records"][0]
    for rec in recs:
        assert set(REQUIRED) <= set(rec)
        assert set(rec) == set(ref) - {"dropped_providers"}, set(rec) ^ set(ref)
        for key in ("model", "sha256", "kind", "macs", "params", "layers", "units", "backend", "precision",
                    "threads", "io", "timing"):
            assert rec[key] == ref[key], key
        assert rec["min_ms"] <= rec["median_ms"] <= rec["p90_ms"] <= rec["p99_ms"] <= rec["max_ms"]
        assert rec["throughput_fps"] == pytest.approx(rec["batch"] * 1000 / rec["mean_ms"])
    assert recs[0]["machine"]["python"] == (which if which != "this" else sys.version.split()[0])
    r = _run(py, boards["nano"], "check", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["verified"] and rep["can_run"] and rep["versions"]["python"] == recs[0]["machine"]["python"]
    assert rep["versions"]["numpy"] and rep["versions"]["onnxruntime"] and rep["versions"]["tensorrt"] is None
    assert {(x["file"], x["can_run"]) for x in rep["runnable"]} == {("model-fp16.onnx", True), ("model-fp32.onnx", True)}
    assert rep["build"]["can_build"] is False and "trtexec" in rep["build"]["reason"]


BLOCK_ORT = '''
import sys
class _Block:
    def find_module(self, name, path=None):
        if name == "onnxruntime" or name.startswith("onnxruntime."):
            return self
    def load_module(self, name):
        raise ImportError("onnxruntime is blocked for this test")
    def find_spec(self, name, path=None, target=None):
        if name == "onnxruntime" or name.startswith("onnxruntime."):
            raise ImportError("onnxruntime is blocked for this test")
sys.meta_path.insert(0, _Block())
'''


@pytest.mark.parametrize("which", PYTHONS)
def test_bad_input_is_one_line_on_every_python(boards, which, tmp_path):
    py = _python(which)
    cases = []

    def copy(name):
        return shutil.copytree(boards["nano"], tmp_path / name)

    b = copy("tampered")
    f = b / "model-fp32.onnx"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 1
    f.write_bytes(bytes(data))
    cases.append(("tampered", b, ["check"], "does not match its sha256"))
    b = copy("runner-tampered")
    (b / "run.py").write_text((b / "run.py").read_text() + "\n# edited\n")
    cases.append(("run.py edited", b, ["check"], "'run.py' has"))
    b = copy("missing")
    (b / "model-fp16.onnx").unlink()
    cases.append(("missing", b, ["predict", "--input", boards["frames"]], "is missing"))
    b = copy("extra")
    (b / "evil.py").write_text("print('hi')")
    cases.append(("extra", b, ["bench", "--iters", "2"], "does not list: 'evil.py'"))
    b = copy("schema")
    m = json.loads((b / "manifest.json").read_text())
    m["schema_version"] = 7
    (b / "manifest.json").write_text(json.dumps(m))
    cases.append(("schema", b, ["check"], "unknown schema_version 7"))
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(boards["nano"] / "run.py", alone / "run.py")
    cases.append(("outside its bundle", alone, ["check"], "must stay in its bundle folder"))
    shape = tmp_path / "shape.npy"
    np.save(shape, np.zeros((3, 2, LENGTH + 1), np.float32))
    cases.append(("wrong length", boards["nano"], ["predict", "--input", shape], f"model takes {LENGTH}"))
    rows = tmp_path / "rows.npy"
    np.save(rows, np.zeros((3, 3, LENGTH), np.float32))
    cases.append(("three rows", boards["nano"], ["predict", "--input", rows], "rows I and Q"))
    dtype = tmp_path / "dtype.npy"
    np.save(dtype, np.zeros((3, 2, LENGTH), dtype="U1"))
    cases.append(("strings", boards["nano"], ["predict", "--input", dtype], "real numbers"))
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((2, 2, LENGTH), np.nan, np.float32))
    cases.append(("NaN", boards["nano"], ["predict", "--input", nan], "NaN or Inf"))
    cases.append(("no such input", boards["nano"], ["predict", "--input", tmp_path / "none.npy"], "does not exist"))
    cases.append(("no engine", boards["nano"], ["predict", "--input", boards["frames"], "--backend", "tensorrt"],
                  "no TensorRT engine"))
    for name, bundle, args, expect in cases:
        r = _run(py, bundle, *args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode != 0, f"{name}: exit 0"
        assert len(lines) == 1 and lines[0].startswith("edgeprune: error: ") and expect in lines[0], (name, r.stderr)
        assert "Traceback" not in r.stderr
    # neither onnxruntime nor tensorrt: says what to install
    site = tmp_path / "block"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_ORT)
    r = _run(py, boards["nano"], "predict", "--input", boards["frames"], env=clean_env(PYTHONPATH=str(site)))
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1, r.stderr
    assert "neither ONNX Runtime nor TensorRT" in lines[0] and "pip install onnxruntime" in lines[0]
    r = _run(py, boards["nano"], "check", env=clean_env(PYTHONPATH=str(site)))
    assert r.returncode != 0 and r.stderr.strip().splitlines()[-1].startswith("edgeprune: error: nothing in this")


FAKE_TRTEXEC = """#!/bin/sh
# stands in for /usr/src/tensorrt/bin/trtexec: records its arguments, writes an engine file
echo "$@" > "$(dirname "$0")/args.txt"
for a in "$@"; do case "$a" in --saveEngine=*) printf 'plan' > "${a#--saveEngine=}";; esac; done
echo "&&&& PASSED TensorRT.trtexec"
"""


@pytest.mark.parametrize("which", ["3.6.15", "this"])
def test_build_runs_trtexec_with_the_targets_flags(boards, which, tmp_path):
    """No trtexec here: a stand-in script records the command; the flags are TensorRT 8.2's (JetPack 4.6.1)."""
    from edgeprune.export.bundle import open_bundle

    py = _python(which)
    b = shutil.copytree(boards["nano"], tmp_path / "nano")
    r = _run(py, b, "build", "--print", "--json")
    assert r.returncode == 0, r.stderr
    line = json.loads(r.stdout)["trtexec"]
    assert f"--saveEngine={b}/board-fp16.engine" in line and f"--timingCacheFile={b}/board-timing.cache" in line
    assert "--fp16" in line and "--workspace=512" in line and "--memPoolSize" not in line  # TensorRT 8.2 flags
    assert f"--minShapes=iq:1x2x{LENGTH}" in line and f"--maxShapes=iq:64x2x{LENGTH}" in line
    r = _run(py, b, "build")
    assert r.returncode != 0 and "trtexec not found" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    fake = tmp_path / "bin" / "trtexec"
    fake.parent.mkdir()
    fake.write_text(FAKE_TRTEXEC)
    fake.chmod(0o755)
    r = _run(py, b, "build", "--trtexec", fake)
    assert r.returncode == 0, r.stderr
    assert (b / "board-fp16.engine").read_bytes() == b"plan" and not (b / "board-fp16.engine.partial").exists()
    meta = json.loads((b / "board-fp16.engine.json").read_text())
    assert meta["precision"] == "fp16" and meta["source_onnx"] == "model-fp32.onnx" and meta["engine_sha256"]
    assert "--fp16" in (fake.parent / "args.txt").read_text()
    with open_bundle(b) as opened:  # the board's own build outputs do not make the bundle "tampered"
        assert "board-fp16.engine" not in opened.manifest["files"]
    from edgeprune.profiling.model_files import resolve_model

    with resolve_model(b) as src:  # edgeprune profile finds the board's engine as run.py does
        assert src.engines == {"fp16": b / "board-fp16.engine"}
    r = _run(py, b, "check", "--json")
    assert r.returncode == 0, r.stderr
    eng = [x for x in json.loads(r.stdout)["runnable"] if x["backend"] == "tensorrt"]
    assert eng == [{"file": "board-fp16.engine", "precision": "fp16", "backend": "tensorrt", "can_run": False,
                    "reason": eng[0]["reason"]}] and "tensorrt" in eng[0]["reason"]
    (b / "board-fp16.engine").write_bytes(b"pla9")  # damaged after the build
    r = _run(py, b, "predict", "--input", boards["frames"], "--backend", "tensorrt")
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1
    assert "does not match the sha256 its build recorded" in r.stderr
