"""The Predictor (bundle / ONNX), its input checks, preprocessing, threads, and `edgeprune predict`."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from edgeprune.cli.main import main
from edgeprune.data.dataset import load_npz
from edgeprune.errors import EdgepruneError
from edgeprune.export import Predictor
from edgeprune.export.bundle import make_bundle
from edgeprune.export.verify import make_session, run_logits
from export_fixtures import LENGTH, shared_bundle, shared_trained


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return shared_bundle(tmp_path_factory)


@pytest.fixture(scope="module")
def frames(bundle):
    ds = load_npz(bundle[2])
    return ds.x[::9][:20], ds.y[::9][:20]


def test_bundle_predict_matches_onnxruntime(bundle, frames):
    out, _, _ = bundle
    x, y = frames
    with Predictor(out) as p:
        assert p.backend == "onnxruntime" and p.precision == "fp32" and p.classes[0] == "tone0"
        r = p.predict(x)
        ref = run_logits(make_session(str(out / "model-fp32.onnx")), x)
        assert np.array_equal(r["labels"], ref.argmax(1))
        assert r["names"] == [p.classes[i] for i in r["labels"]]
        assert r["probs"].shape == (len(x), 4) and np.allclose(r["probs"].sum(1), 1, atol=1e-5)
        assert np.allclose(r["confidence"], r["probs"].max(1))
        assert (r["labels"] == y).mean() >= 0.5  # the trained toy model beats chance (0.25)
        single = p.predict(x[0])
        assert single["labels"][0] == r["labels"][0]
        assert p.predict(np.zeros((0, 2, LENGTH), np.float32))["labels"].shape == (0,)


def test_int8_variant_and_onnx_file(bundle, frames):
    out, _, _ = bundle
    x, _ = frames
    p8 = Predictor(out, precision="int8")
    assert p8.precision == "int8" and p8.model_path.name == "model-int8.onnx"
    p = Predictor(out / "model-fp32.onnx", threads=1)
    assert p.classes == ["tone0", "tone1", "tone2", "tone3"] and p.length == LENGTH and p.normalization == "none"
    assert (p8.predict(x)["labels"] == p.predict(x)["labels"]).mean() >= 0.8
    with pytest.raises(EdgepruneError, match="no fp16"):
        Predictor(out, precision="fp16")


@pytest.mark.parametrize("bad, msg", [
    (np.zeros((3, 2, 10), np.float32), "samples but the model takes"),
    (np.zeros((3, 3, LENGTH), np.float32), "shape"),
    (np.zeros((LENGTH,), np.float32), "shape"),
    (np.array([["a"] * LENGTH] * 2), "real numbers"),
    (np.zeros((2, 2, LENGTH), np.complex64), "real numbers"),
])
def test_bad_frames(bundle, bad, msg):
    p = Predictor(bundle[0])
    with pytest.raises(EdgepruneError, match=msg):
        p.predict(bad)


def test_nan_frames(bundle):
    p = Predictor(bundle[0])
    x = np.zeros((3, 2, LENGTH), np.float32)
    x[1, 0, 5] = np.nan
    with pytest.raises(EdgepruneError, match="1 frame"):
        p.predict(x)


def test_bad_sources(tmp_path, bundle):
    with pytest.raises(EdgepruneError, match="does not exist"):
        Predictor(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"garbage")
    with pytest.raises(EdgepruneError, match="cannot load"):
        Predictor(junk)
    other = tmp_path / "x.txt"
    other.write_text("x")
    with pytest.raises(EdgepruneError, match="give a bundle"):
        Predictor(other)
    with pytest.raises(EdgepruneError, match="unknown backend"):
        Predictor(bundle[0], backend="tpu")


def test_thread_safe(bundle, frames):
    x, _ = frames
    p = Predictor(bundle[0], threads=1)
    ref = p.predict(x)["probs"]
    results, errors = [], []

    def work(k):
        try:
            for _ in range(5):
                results.append(np.array_equal(p.predict(x)["probs"], ref))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 20 and all(results)


def test_bundle_preprocessing_is_applied(tmp_path_factory, tmp_path):
    """A model trained on L1-normalised frames classifies raw, rescaled frames the same way."""
    ckpt, data = shared_trained(tmp_path_factory, normalization="l1")
    out = tmp_path / "b"
    m = make_bundle(ckpt, "x86-cpu", out, precisions=["fp32"])
    assert m["preprocessing"]["normalization"] == "l1"
    ds = load_npz(data)
    from conftest import make_toy_dataset

    raw = make_toy_dataset(n_per_key=24, classes=4, length=LENGTH).x[::13]
    p = Predictor(out)
    a = p.predict(raw * 37.0)
    b = p.predict(ds.x[::13])  # already normalised: normalising again changes nothing
    assert np.array_equal(a["labels"], b["labels"])
    assert np.allclose(a["probs"], b["probs"], atol=1e-5)
    assert not np.allclose(p.logits(raw * 37.0, preprocess=False), p.logits(raw * 37.0))


def test_cli_predict_npy(bundle, frames, tmp_path, capsys):
    x, _ = frames
    f = tmp_path / "f.npy"
    np.save(f, x)
    assert main(["predict", str(bundle[0]), "--input", str(f), "--batch-size", "7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["frames"] == len(x) and [r["frame"] for r in out["predictions"]] == list(range(len(x)))
    labels = Predictor(bundle[0]).predict(x)["labels"]
    assert [r["label"] for r in out["predictions"]] == labels.tolist()
    assert main(["predict", str(bundle[0]), "--input", str(f)]) == 0
    text = capsys.readouterr().out
    assert "tone" in text and text.count("\n") == len(x) + 2
    # complex (N, L) input
    c = tmp_path / "c.npy"
    np.save(c, (x[:, 0] + 1j * x[:, 1]).astype(np.complex64))
    assert main(["predict", str(bundle[0]), "--input", str(c), "--json"]) == 0
    assert [r["label"] for r in json.loads(capsys.readouterr().out)["predictions"]] == labels.tolist()
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"nope")
    assert main(["predict", str(bundle[0]), "--input", str(bad)]) != 0
    assert "edgeprune: error:" in capsys.readouterr().err


def test_cli_predict_sigmf(bundle, frames, tmp_path, capsys):
    sigmf_io = pytest.importorskip("edgeprune.data.sigmf_io")
    x, _ = frames
    z = (x[:, 0] + 1j * x[:, 1]).reshape(-1).astype(np.complex64)  # frames back to back
    sigmf_io.write_sigmf(tmp_path / "rec", z)
    meta = next(tmp_path.glob("rec*.sigmf-meta"))
    assert main(["predict", str(bundle[0]), "--input", str(meta), "--batch-size", "6", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["windowed"] and out["frames"] == len(x)
    assert [r["offset"] for r in out["predictions"]] == [i * LENGTH for i in range(len(x))]
    labels = Predictor(bundle[0]).predict(x)["labels"]
    assert [r["label"] for r in out["predictions"]] == labels.tolist()
    assert main(["predict", str(bundle[0]), "--input", str(meta), "--hop", str(LENGTH // 2), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 2 * len(x) - 1
