"""Streaming for receivers: Predictor.stream, `edgeprune predict --input - --format ...` reading raw I/Q from a
pipe, and `--annotate` writing SigMF annotations (checked with the sigmf package)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from edgeprune_run import run_edgeprune

from edgeprune.export.runtime.stream import Windower, decode
from export_fixtures import LENGTH, shared_bundle


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from edgeprune.data.readers import load_npz

    bundle, _, data = shared_bundle(tmp_path_factory)
    x = load_npz(data).x[:20].astype(np.float32)
    x = 0.9 * x / np.abs(x).max()  # in range for the integer formats
    z = (x[:, 0] + 1j * x[:, 1]).reshape(-1).astype(np.complex64)  # the frames back to back
    return bundle, x, z, tmp_path_factory.mktemp("stream")


def _sigmf(folder, name, datatype, raw, rate=1e6):
    (folder / f"{name}.sigmf-data").write_bytes(raw)
    meta = {"global": {"core:datatype": datatype, "core:version": "1.0.0", "core:sample_rate": rate},
            "captures": [{"core:sample_start": 0}], "annotations": []}
    (folder / f"{name}.sigmf-meta").write_text(json.dumps(meta))
    return folder / f"{name}.sigmf-meta"


def _predict_json(bundle, inp, *extra):
    r = run_edgeprune("predict", bundle, "--input", inp, "--json", *extra, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["predictions"]


def _stream(bundle, raw, *extra):
    r = run_edgeprune("predict", bundle, "--input", "-", *extra, input=raw, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(ln) for ln in r.stdout.splitlines()]
    stats = json.loads(r.stderr.strip().splitlines()[-1][2:])
    return rows, stats


def _interleave(z, dtype, scale, offset=0.0):
    iq = np.empty(2 * len(z), np.float64)
    iq[0::2], iq[1::2] = z.real, z.imag
    return np.clip(np.round(iq * scale + offset), np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)


def test_windower_matches_slicing_in_bounded_memory():
    rng = np.random.default_rng(0)
    z = (rng.standard_normal(5000) + 1j * rng.standard_normal(5000)).astype(np.complex64)
    for length, hop in ((64, 64), (64, 16), (64, 100)):
        w, got, starts = Windower(length, hop), [], []
        pos, biggest = 0, 0
        while pos < len(z):
            n = int(rng.integers(1, 300))
            s, f = w.push(z[pos:pos + n])
            pos += n
            biggest = max(biggest, n)
            starts += s
            got.append(f)
        frames = np.concatenate(got)
        ref = [z[s:s + length] for s in range(0, len(z) - length + 1, hop)]
        assert starts == list(range(0, len(z) - length + 1, hop))
        np.testing.assert_array_equal(frames[:, 0] + 1j * frames[:, 1], np.array(ref))
        assert w.max_buffered <= length + biggest  # one window plus one chunk, whatever the stream's length
        assert w.partial() == len(z) - (starts[-1] + hop)


def test_stream_cf32_pipe_equals_predict_on_frames(setup):
    bundle, x, z, tmp = setup
    np.save(tmp / "frames.npy", x)
    ref = _predict_json(bundle, tmp / "frames.npy")
    extra = (0.1 * np.ones(37, np.complex64)).tobytes() + b"\x01\x02\x03"  # 37 samples, then a cut-off sample
    rows, st = _stream(bundle, z.tobytes() + extra, "--format", "cf32", "--rate", "2e6")
    assert [r["label"] for r in rows] == [r["label"] for r in ref] and len(rows) == 20
    np.testing.assert_allclose([r["confidence"] for r in rows], [r["confidence"] for r in ref], atol=1e-5)
    assert [r["offset"] for r in rows] == [i * LENGTH for i in range(20)]
    assert [r["time"] for r in rows] == [i * LENGTH / 2e6 for i in range(20)]
    assert all(r["latency_ms"] > 0 for r in rows)
    assert st["windows"] == 20 and st["partial_windows_dropped"] == 1 and st["partial_window_samples"] == 37
    assert st["trailing_bytes"] == 3 and st["batch"] == 1 and st["latency_ms_per_call"]["median_ms"] > 0


@pytest.mark.parametrize("fmt,datatype,dtype,scale,offset", [("ci16", "ci16_le", np.int16, 32768, 0),
                                                              ("cu8", "cu8", np.uint8, 128, 128),
                                                              ("ci8", "ci8", np.int8, 128, 0)])
def test_integer_formats_equal_the_sigmf_reader(setup, fmt, datatype, dtype, scale, offset):
    """Raw bytes from a pipe classify like the same bytes read as a SigMF recording (the host reader)."""
    bundle, _, z, tmp = setup
    raw = _interleave(z, dtype, scale, offset).tobytes()
    ref = _predict_json(bundle, _sigmf(tmp, fmt, datatype, raw), "--hop", "32")
    rows, st = _stream(bundle, raw, "--format", fmt, "--hop", "32", "--batch-size", "5")
    assert [(r["offset"], r["label"]) for r in rows] == [(r["offset"], r["label"]) for r in ref]
    np.testing.assert_allclose([r["confidence"] for r in rows], [r["confidence"] for r in ref], atol=1e-5)
    assert st["windows"] == len(ref) == 39 and st["partial_windows_dropped"] == 1  # 1280 samples, hop 32
    assert np.allclose(decode(raw[:4 * np.dtype(dtype).itemsize], fmt), np.round(z[:2] * scale) / scale, atol=1.5 / scale)


def test_predictor_stream_any_chunking(setup):
    from edgeprune.export.predictor import Predictor

    bundle, x, z, _ = setup
    with Predictor(bundle) as p:
        ref = p.predict(x)
        cuts = [0, 1, 65, 66, 500, 777, 1279, len(z)]
        s = p.stream((z[a:b] for a, b in zip(cuts, cuts[1:])), batch=3)
        rows = list(s)
    assert [r["label"] for r in rows] == ref["labels"].tolist() and s.stats["windows"] == 20
    assert s.stats["partial_windows_dropped"] == 0


def test_annotate_writes_valid_sigmf(setup):
    sigmf = pytest.importorskip("sigmf")
    from sigmf import sigmffile

    bundle, _, z, tmp = setup
    src = _sigmf(tmp, "cap", "cf32_le", z.tobytes())
    out = tmp / "out" / "labelled.sigmf-meta"
    r = run_edgeprune("predict", bundle, "--input", src, "--annotate", out, "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    preds = json.loads(r.stdout)["predictions"]
    f = sigmffile.fromfile(str(out))  # reads metadata and its data file
    f.validate()
    anns = f.get_annotations()
    assert [(a["core:sample_start"], a["core:sample_count"], a["core:label"]) for a in anns] == \
        [(p["offset"], LENGTH, p["class"]) for p in preds]
    assert [a["edgeprune:confidence"] for a in anns] == pytest.approx([p["confidence"] for p in preds], abs=1e-6)
    assert {"name": "edgeprune", "version": "1.0.0", "optional": True} in f.get_global_field("core:extensions")
    assert f.read_samples().shape == (len(z),) and sigmf.__version__


def test_stream_bad_input(setup):
    bundle, _, _, _ = setup
    r = run_edgeprune("predict", bundle, "--input", "-", input=b"", timeout=60)
    assert r.returncode != 0 and "give its --format" in r.stderr
    rows, st = _stream(bundle, b"\x00" * 10, "--format", "cf32")
    assert rows == [] and st["windows"] == 0 and st["partial_window_samples"] == 1 and st["trailing_bytes"] == 2


@pytest.fixture(scope="module")
def nano(tmp_path_factory):
    """A bundle for JetPack 4.6's target: opset 13, which ONNX Runtime 1.10 (the last for Python 3.6) loads."""
    from edgeprune.export.bundle import make_bundle

    _, ckpt, _ = shared_bundle(tmp_path_factory)
    out = tmp_path_factory.mktemp("nano") / "nano"
    make_bundle(ckpt, "jetson-nano", out)
    return out


@pytest.mark.parametrize("which", ["3.6.15", "this"])
def test_run_py_streams_like_edgeprune_predict(setup, nano, which):
    """The bundle's own runner reads the same pipe on the board's Python (3.6 on JetPack 4.6) with the same result."""
    import sys

    from venvs import clean_env, device_venv

    _, _, z, _ = setup
    bundle = nano
    raw = _interleave(z, np.uint8, 128, 128).tobytes() + b"\x80" * 50  # cu8 (rtl_sdr), 25 samples left over
    ref, ref_st = _stream(bundle, raw, "--format", "cu8", "--hop", "48", "--rate", "1e6")
    py = sys.executable if which == "this" else str(device_venv(which))
    r = subprocess.run([py, str(bundle / "run.py"), "predict", "--input", "-", "--format", "cu8", "--hop", "48",
                        "--rate", "1e6"], input=raw, capture_output=True, timeout=120, env=clean_env(), cwd="/")
    assert r.returncode == 0, r.stderr.decode()
    rows = [json.loads(ln) for ln in r.stdout.decode().splitlines()]
    st = json.loads(r.stderr.decode().strip().splitlines()[-1][2:])
    assert [(x["offset"], x["time"], x["label"]) for x in rows] == [(x["offset"], x["time"], x["label"]) for x in ref]
    np.testing.assert_allclose([x["confidence"] for x in rows], [x["confidence"] for x in ref], atol=1e-5)
    for key in ("windows", "samples", "partial_windows_dropped", "partial_window_samples", "batch"):
        assert st[key] == ref_st[key], key


def _stored_items(obj, seen=None) -> int:
    """How many items ``obj``'s state holds: every element of its lists, deques, dicts and arrays, nested objects
    included (the predictor and the chunk source excluded: they are the stream's inputs)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return obj.size
    if isinstance(obj, dict):
        return len(obj) + sum(_stored_items(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple, set, frozenset)) or type(obj).__name__ == "deque":
        return len(obj) + sum(_stored_items(v, seen) for v in obj)
    if hasattr(obj, "__dict__") and type(obj).__module__.startswith("edgeprune.export."):
        return sum(_stored_items(v, seen) for k, v in vars(obj).items() if k not in ("predict", "chunks"))
    return 0


def test_stream_state_stays_bounded_over_many_windows(setup):
    """A long stream (10,000 windows, one call each) holds no more state at its end than half-way:
    the per-call latencies kept are a bounded window, while the statistics still count every call."""
    from edgeprune.export.predictor import Predictor

    bundle, _, z, _ = setup
    windows = 10000
    chunk = np.resize(z, LENGTH * 10)  # ten windows per chunk, the same samples over and over

    with Predictor(bundle) as p:
        s = p.stream((chunk for _ in range(windows // 10)), batch=1)
        held = {}
        for row in s:
            if row["window"] + 1 in (windows // 2, windows):
                held[row["window"] + 1] = _stored_items(s)
    assert held[windows // 2] > 1000 and held[windows] == held[windows // 2], held  # constant, and not trivially small
    st = s.stats
    assert st["windows"] == windows and st["latency_ms_per_call"]["calls"] == windows
    assert 0 < st["latency_ms_per_call"]["median_ms"] <= st["latency_ms_per_call"]["max_ms"]
