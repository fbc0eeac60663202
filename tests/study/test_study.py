"""The comparison study: config validation, headline maths, and a tiny end-to-end run that resumes."""

import json

import pytest

from edgeprune.cli.main import main
from edgeprune.errors import EdgepruneError
from edgeprune.study.config import normalise
from edgeprune.study.report import headline, pareto_front
from edgeprune.study.config import split_method
from study_configs import tiny_study

TINY = tiny_study(prune={"methods": ["layer", "layer+kd", "channel-l1"]}, profile={"iters": 5, "min_time_ms": 5, "rounds": 2})


def test_config_validation():
    ok = normalise({"data": {"synth": "rml2016.10a"}})
    assert ok["prune"]["methods"] and ok["export"]["precisions"][0] == "fp32"
    for bad, msg in (({"data": {"synth": "x"}, "model": {"nme": "a"}}, "unknown key 'nme'"),
                     ({"data": {"synth": "x"}, "extra": {}}, "unknown section"),
                     ({"data": {"synth": "x", "file": "y"}}, "exactly one of"),
                     ({"data": {"synth": "x"}, "prune": {"targets": [1.5]}}, "in \\(0, 1\\]"),
                     ({"data": {"synth": "x"}, "train": {"epochs": "ten"}}, "expected int"),
                     ({"data": {"synth": "x"}, "profile": {"backends": ["tflite"]}}, "unknown backend")):
        with pytest.raises(EdgepruneError, match=msg):
            normalise(bad)
    assert split_method("layer+kd") == ("layer", True) and split_method("dbp") == ("dbp", False)
    with pytest.raises(EdgepruneError, match="variant"):
        split_method("layer+xx")


def test_headline_speedups_and_pareto():
    res = {"models": [{"id": "baseline", "method": "baseline", "target": 1.0, "macs": 100, "params": 10, "layers": 8,
                       "accuracy": 0.9},
                      {"id": "layer@0.5", "method": "layer", "target": 0.5, "macs": 50, "params": 6, "layers": 4,
                       "accuracy": 0.88}],
           "latency": [{"model_id": "baseline", "backend": "onnxruntime", "precision": "fp32", "batch": 1,
                        "threads": 1, "median_ms": 2.0},
                       {"model_id": "layer@0.5", "backend": "onnxruntime", "precision": "fp32", "batch": 1,
                        "threads": 1, "median_ms": 0.8}]}
    _, rows = headline(res)
    lay = rows[1]
    assert lay["macs_ratio"] == 2.0
    assert lay["speedup"]["onnxruntime fp32 b1, 1 thr"] == pytest.approx(2.5)
    assert lay["speedup_per_macs_ratio"]["onnxruntime fp32 b1, 1 thr"] == pytest.approx(1.25)
    assert pareto_front([(2.0, 0.9, "a"), (0.8, 0.88, "b"), (1.0, 0.8, "c")]) == ["a", "b"]


def test_compare_end_to_end_and_resume(tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    out = tmp_path / "study"
    assert main(["compare", "--config", str(cfg), "--out", str(out), "--json", "-q"]) == 0
    doc = json.loads(capsys.readouterr().out)
    for name in ("report.md", "report.html", "results.json", "latency_vs_macs.png", "accuracy_vs_latency.png",
                 "accuracy_vs_snr.png", "similarity.png"):
        assert (out / name).exists(), name
    ids = [r["id"] for r in doc["headline"]]
    assert ids == ["baseline", "layer@0.6", "layer+kd@0.6", "channel-l1@0.6"]
    res = json.loads((out / "results.json").read_text())
    models = {m["id"]: m for m in res["models"]}
    base = models["baseline"]["macs"]
    for mid in ids[1:]:
        assert abs(models[mid]["macs"] / base - 0.6) <= 0.6 * 0.02 + 1e-9, mid   # every method within 2%
        assert 0 <= models[mid]["accuracy"] <= 1
    # what the report's verdict and warnings read: test frames, the split and file scored, what was kept
    from edgeprune.checkpoint import load_checkpoint

    assert [t["target"] for t in doc["verdict"]["targets"]] == [0.6]
    assert (out / "report.md").read_text().startswith("# edgeprune study: tiny\n\n## Verdict")
    for mid in ids:
        ck = load_checkpoint(models[mid]["checkpoint"])
        assert models[mid]["frames"] == ck.meta["dataset"]["split"]["frames"]["test"]
        assert models[mid]["eval"]["split"] == "test" and models[mid]["eval"]["same_as_training"] is True
    for mid in ("layer@0.6", "layer+kd@0.6"):
        kept = models[mid]["pruning"]["kept_units"]
        assert len(kept) == models[mid]["units"] and set(models[mid]["pruning"]["forced"]) <= set(kept)
    assert models["channel-l1@0.6"]["pruning"]["kept_units"] is None   # channel pruning keeps every unit
    # layer and layer+kd share the pruned network; they differ only in fine-tuning
    assert models["layer@0.6"]["macs"] == models["layer+kd@0.6"]["macs"]
    assert {r["model_id"] for r in res["latency"]} == set(ids)
    # each figure is the median of the interleaved rounds
    for r in res["latency"]:
        assert len(r["rounds"]) == 2 and r["median_ms"] in r["rounds"]
    assert doc["stages"]["reused"] == ["prune layer@0.6"]  # layer+kd reuses the pruned network of layer
    # a second run reuses every stage
    assert main(["compare", "--config", str(cfg), "--out", str(out), "--json", "-q"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["stages"]["ran"] == []
    assert set(again["stages"]["reused"]) == set(doc["stages"]["ran"])
    # changed pruning code reruns the plan (pruning.plan), pruning and what follows it, not the data or the baseline
    from edgeprune.study import stages

    real = stages.code_fingerprint
    monkeypatch.setattr(stages, "code_fingerprint",
                        lambda *pk: "changed" if "edgeprune.pruning" in pk else real(*pk))
    assert main(["compare", "--config", str(cfg), "--out", str(out), "--json", "-q"]) == 0
    third = json.loads(capsys.readouterr().out)
    assert {"data", "baseline", "evaluate baseline", "export baseline fp32"} <= set(third["stages"]["reused"])
    assert {"analyze", "prune layer@0.6", "prune channel-l1@0.6", "finetune layer@0.6", "profile"} <= set(third["stages"]["ran"])


def test_compare_bad_config_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(TINY.replace('methods = ["layer", "layer+kd", "channel-l1"]', 'methods = ["pruneit"]'))
    rc = main(["compare", "--config", str(cfg), "--out", str(tmp_path / "s"), "-q"])
    err = capsys.readouterr().err
    assert rc != 0 and "unknown method 'pruneit'" in err and "Traceback" not in err
