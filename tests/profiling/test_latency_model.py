"""The latency model latency ~ a*MACs + b*layers + c: fitting, quality, persistence, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeprune.errors import EdgepruneError

A, B, C = 2.5e-8, 0.004, 0.03  # ms per MAC, ms per layer, ms

MODELS = [(3.8e6, 20), (12.1e6, 56), (24.1e6, 110), (1.0e6, 20), (5.4e6, 38), (0.9e6, 56), (54.6e6, 13),
          (3.3e6, 33)]


def synth(backend="onnxruntime", batch=1, threads=1, noise=0.0, seed=0, a=A, b=B, c=C, models=MODELS):
    rng = np.random.default_rng(seed)
    recs = []
    for i, (macs, layers) in enumerate(models):
        ms = a * macs + b * layers + c
        ms *= 1 + noise * rng.standard_normal()
        recs.append({"model": f"m{i}", "sha256": f"{i:064x}", "macs": int(macs), "layers": layers,
                     "median_ms": ms, "mean_ms": ms * 1.05, "backend": backend, "batch": batch,
                     "threads": threads, "precision": "fp32", "device": "test-cpu"})
    return recs


def test_recovers_known_coefficients():
    from edgeprune.profiling.latency_model import LatencyModel

    lm = LatencyModel.fit(synth())
    assert lm.a == pytest.approx(A, rel=1e-6)
    assert lm.b == pytest.approx(B, rel=1e-6)
    assert lm.c == pytest.approx(C, rel=1e-6)
    q = lm.quality
    assert q["r2"] == pytest.approx(1.0) and q["n"] == len(MODELS) and q["rank"] == 3
    assert q["max_abs_pct_err"] < 1e-6 and q["loo_max_abs_pct_err"] < 1e-6
    assert lm.predict(10e6, 40) == pytest.approx(A * 10e6 + B * 40 + C)
    assert lm.key == {"device": "test-cpu", "backend": "onnxruntime", "batch": 1, "precision": "fp32", "threads": 1}
    assert len(lm.points) == len(MODELS)


def test_noisy_fit_reports_quality():
    from edgeprune.profiling.latency_model import LatencyModel

    lm = LatencyModel.fit(synth(noise=0.05, seed=1))
    q = lm.quality
    assert 0.9 < q["r2"] < 1.0
    assert 0 < q["mean_abs_pct_err"] <= q["max_abs_pct_err"]
    assert q["loo_mean_abs_pct_err"] >= q["mean_abs_pct_err"] * 0.5 and q["loo_max_abs_pct_err"] > 0
    assert lm.a == pytest.approx(A, rel=0.3)
    other = LatencyModel.fit(synth(), stat="mean_ms")  # another statistic: every coefficient x 1.05
    assert other.a == pytest.approx(A * 1.05, rel=1e-6) and other.c == pytest.approx(C * 1.05, rel=1e-6) and other.stat == "mean_ms"


def test_groups_keys_and_dedup():
    from edgeprune.profiling.latency_model import LatencyModel, fit_groups

    recs = synth(batch=1) + synth(batch=64, a=A * 50) + synth(backend="torch", models=MODELS[:2])
    with pytest.raises(EdgepruneError, match="span 3"):
        LatencyModel.fit(recs)
    lm64 = LatencyModel.fit(recs, key={"batch": 64, "backend": "onnxruntime"})
    assert lm64.a == pytest.approx(A * 50, rel=1e-6)
    models, skipped = fit_groups(recs)
    assert sorted((m.key["backend"], m.key["batch"]) for m in models) == [("onnxruntime", 1), ("onnxruntime", 64)]
    assert skipped[0]["backend"] == "torch" and "at least 3" in skipped[0]["reason"]
    # the same model measured twice counts once (the last record)
    dup = synth() + [dict(synth()[0], median_ms=999.0)]
    lm = LatencyModel.fit(dup)
    assert lm.quality["n"] == len(MODELS) and any(p["measured_ms"] == 999.0 for p in lm.points)
    with pytest.raises(EdgepruneError, match="no records match"):
        LatencyModel.fit(recs, key={"batch": 8})


def test_degenerate_inputs():
    from edgeprune.profiling.latency_model import LatencyModel

    # layers proportional to MACs: not identifiable, still a usable fit with a note
    lm = LatencyModel.fit(synth(models=[(1e6, 10), (2e6, 20), (3e6, 30), (4e6, 40)]))
    assert lm.quality["rank"] < 3 and "note" in lm.quality
    assert lm.predict(2.5e6, 25) == pytest.approx(A * 2.5e6 + B * 25 + C, rel=1e-6)
    # exactly three models: fitted, no leave-one-out
    lm = LatencyModel.fit(synth(models=MODELS[:3]))
    assert lm.quality["loo_mean_abs_pct_err"] is None
    bad = synth()
    bad[0]["macs"] = None
    with pytest.raises(EdgepruneError, match="lacks a numeric 'macs'"):
        LatencyModel.fit(bad)
    with pytest.raises(EdgepruneError, match="non-negative"):
        LatencyModel.fit(synth()).predict(-1, 3)


def test_save_load_roundtrip(tmp_path):
    from edgeprune.profiling.latency_model import LatencyModel, fit_groups, load_models, save_models

    models, _ = fit_groups(synth(batch=1) + synth(batch=64, a=A * 40))
    path = tmp_path / "lm.json"
    save_models(path, models)
    back = load_models(path)
    assert [m.to_dict() for m in back] == json.loads(json.dumps([m.to_dict() for m in models]))
    one = LatencyModel.load(path, batch=64)
    assert one.predict(1e6, 10) == pytest.approx(models[1].predict(1e6, 10) if models[1].key["batch"] == 64
                                                 else models[0].predict(1e6, 10))
    with pytest.raises(EdgepruneError, match="2 latency models"):
        LatencyModel.load(path)
    with pytest.raises(EdgepruneError, match="no latency model"):
        LatencyModel.load(path, batch=8)
    single = tmp_path / "one.json"
    models[0].save(single)
    assert LatencyModel.load(single).a == models[0].a
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(EdgepruneError, match="not valid JSON"):
        load_models(tmp_path / "junk.json")
    (tmp_path / "other.json").write_text('{"records": []}')
    with pytest.raises(EdgepruneError, match="not an edgeprune latency model"):
        load_models(tmp_path / "other.json")


def test_cli_fit_and_predict(tmp_path, capsys):
    from edgeprune.atomic import write_json
    from edgeprune.cli.main import main

    res = tmp_path / "res.json"
    write_json(res, {"schema": 1, "records": synth(batch=1) + synth(batch=8, a=A * 6), "machine": {}})
    lm = tmp_path / "lm.json"
    assert main(["latency-model", "fit", str(res), "--out", str(lm), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["models"]) == 2 and doc["models"][0]["quality"]["r2"] == pytest.approx(1.0)
    assert main(["latency-model", "predict", str(lm), "--macs", "1e7", "--layers", "40", "--batch-size", "1",
                 "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["predictions"]
    assert row["predicted_ms"] == pytest.approx(A * 1e7 + B * 40 + C, rel=1e-6)
    assert main(["latency-model", "fit", str(res), "--out", str(lm), "--batch-size", "2"]) != 0
    assert "cannot fit" in capsys.readouterr().err
    assert main(["latency-model", "predict", str(lm), "--macs", "5"]) != 0
    assert "--layers" in capsys.readouterr().err
    assert main(["latency-model", "fit", str(tmp_path / "none.json"), "--out", str(lm)]) != 0
    assert "does not exist" in capsys.readouterr().err


def test_fit_on_measured_onnx_models(tmp_path):
    """End to end on real measurements: three tiny models on ONNX Runtime, a model that predicts them."""
    from edgeprune.profiling.harness import profile
    from edgeprune.profiling.latency_model import LatencyModel
    from export_fixtures import export_onnx

    paths = [export_onnx(n, tmp_path / f"{n}.onnx", 32, 3) for n in ("resnet20-1d", "cnn1d", "resnet56-1d")]
    res = profile(paths, warmup_iters=3, iters=20, show_progress=False)
    lm = LatencyModel.fit(res["records"])
    assert lm.quality["n"] == 3 and np.isfinite([lm.a, lm.b, lm.c]).all()
    for p in lm.points:
        assert p["predicted_ms"] == pytest.approx(lm.predict(p["macs"], p["layers"]))
