"""Latency-targeted layer pruning (prune --target-latency): structure and errors, no timing assertions."""

import json

import pytest

from edgeprune.checkpoint import load_checkpoint
from edgeprune.cli.main import main
from edgeprune.errors import EdgepruneError


@pytest.fixture
def lm_file(tmp_path):
    """A latency model for onnxruntime, batch 1, 1 thread: 1 ms per MMAC + 0.01 ms per layer + 0.05 ms."""
    from edgeprune.profiling.latency_model import LatencyModel

    recs = []
    for macs, layers in ((1e6, 10), (2e6, 14), (3e6, 20), (4e6, 24), (0.5e6, 6)):
        recs.append({"backend": "onnxruntime", "batch": 1, "threads": 1, "precision": "fp32", "device": "cpu",
                     "macs": macs, "layers": layers, "median_ms": macs / 1e6 + 0.01 * layers + 0.05,
                     "model": f"m{macs}"})
    lm = LatencyModel.fit(recs)
    path = tmp_path / "lm.json"
    lm.save(path)
    return path


def test_ladder_is_monotone_and_budget_is_met_by_prediction(toy_checkpoint, toy_dataset, lm_file):
    from edgeprune.pruning.latency_target import prune_to_latency

    ck = load_checkpoint(toy_checkpoint)
    base_pred = ck.meta["macs"] / 1e6 + 0.01 * ck.meta["weight_layers"] + 0.05
    budget = 0.6 * base_pred
    res = prune_to_latency(ck, toy_dataset, budget, "x86-cpu", latency_model=lm_file, batches=1, batch_size=32,
                           iters=20)
    info = res.info["latency"]
    cands = info["candidates"]
    assert [c["macs"] for c in cands] == sorted(c["macs"] for c in cands)
    assert info["predicted_ms"] <= budget
    # the chosen model is the largest candidate predicted to fit under the budget less the 3% margin
    assert info["margin"] == 0.03 and info["aim_ms"] == pytest.approx(0.97 * budget)
    fitting = [c for c in cands if c["predicted_ms"] <= info["aim_ms"]]
    assert res.lineage["macs_after"] == max(c["macs"] for c in fitting)
    # without a margin the choice is the largest predicted under the budget itself (never smaller)
    res0 = prune_to_latency(ck, toy_dataset, budget, "x86-cpu", latency_model=lm_file, batches=1, batch_size=32,
                            iters=20, margin=0.0)
    assert res0.lineage["macs_after"] == max(c["macs"] for c in cands if c["predicted_ms"] <= budget)
    assert res0.lineage["macs_after"] >= res.lineage["macs_after"]
    assert info["measured_ms"] > 0 and info["batch"] == 1 and info["backend"] == "onnxruntime"
    assert res.lineage["target_latency"] == pytest.approx(budget)


def test_cli_target_latency_writes_a_checkpoint(tmp_path, toy_checkpoint, toy_npz, lm_file, capsys):
    out = tmp_path / "lat.pt"
    ck = load_checkpoint(toy_checkpoint)
    budget = 0.7 * (ck.meta["macs"] / 1e6 + 0.01 * ck.meta["weight_layers"] + 0.05)
    rc = main(["prune", "--method", "layer", "--model", str(toy_checkpoint), "--data", str(toy_npz),
               "--target-latency", str(budget), "--target", "x86-cpu", "--latency-model", str(lm_file),
               "--batches", "1", "--batch-size", "32", "--out", str(out), "--json", "-q"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["latency"]["predicted_ms"] <= budget
    pruned = load_checkpoint(out)
    assert pruned.meta["macs"] < ck.meta["macs"]
    assert pruned.meta["lineage"][-1]["latency_target"] == "x86-cpu"


def test_unreachable_budget_and_bad_options(tmp_path, toy_checkpoint, toy_dataset, toy_npz, lm_file, capsys):
    from edgeprune.pruning.latency_target import prune_to_latency

    ck = load_checkpoint(toy_checkpoint)
    # a budget no candidate meets: the fastest model whole units allow (the smallest MACs), with one note
    res = prune_to_latency(ck, toy_dataset, 1e-4, "x86-cpu", latency_model=lm_file, batches=1, batch_size=32)
    cands = res.info["latency"]["candidates"]
    assert len(res.info["notes"]) == 1 and "is predicted to meet" in res.info["notes"][0]
    assert "took the fastest" in res.info["notes"][0]
    assert res.info["latency"]["predicted_ms"] == min(c["predicted_ms"] for c in cands) > 1e-4
    with pytest.raises(EdgepruneError, match="positive number"):
        prune_to_latency(ck, toy_dataset, -1.0, "x86-cpu", latency_model=lm_file)
    for bad in (-0.1, 1.0, "x", True):
        with pytest.raises(EdgepruneError, match="latency-margin"):
            prune_to_latency(ck, toy_dataset, 1.0, "x86-cpu", latency_model=lm_file, margin=bad)
    out = tmp_path / "x.pt"
    for extra, msg in ((["--target-latency", "1"], "needs --target"),
                       (["--target-latency", "1", "--target", "x86-cpu", "--method", "random"], "works with --method layer"),
                       (["--target-latency", "1", "--target", "no-such-board"], "no-such-board"),
                       (["--target-macs", "0.5", "--latency-margin", "0.1"], "works with --target-latency")):
        rc = main(["prune", "--model", str(toy_checkpoint), "--data", str(toy_npz), "--out", str(out), *extra])
        err = capsys.readouterr().err
        assert rc != 0 and msg in err and "Traceback" not in err, err
        assert not out.exists()


