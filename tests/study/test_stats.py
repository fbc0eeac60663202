import math

import numpy as np
import pytest

from edgeprune.errors import EdgepruneError


def test_mean_ci_matches_the_textbook_t_interval():
    from edgeprune.study.stats import mean_ci

    vals = [0.61, 0.64, 0.58, 0.66]
    r = mean_ci(vals)
    # t(0.975, 3) = 3.182446 (tables); sd by hand
    m = sum(vals) / 4
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / 3)
    assert r["mean"] == pytest.approx(m) and r["sd"] == pytest.approx(sd)
    assert r["ci"] == pytest.approx(3.182446 * sd / 2, rel=1e-5)
    assert mean_ci([0.5])["ci"] is None and mean_ci([])["mean"] is None


def test_paired_difference_to_random_cancels_the_seed_effect():
    """Seeds shift every method alike: the paired difference is tight even when accuracies spread widely."""
    from edgeprune.study.stats import markdown, summarise

    rng = np.random.default_rng(0)
    per_seed = {}
    for s in range(5):
        shift = rng.normal(0, 0.05)                      # the seed moves everything
        per_seed[s] = [{"method": "baseline", "target": 1.0, "accuracy": 0.70 + shift},
                       {"method": "random", "target": 0.5, "accuracy": 0.60 + shift + rng.normal(0, 0.002)},
                       {"method": "layer", "target": 0.5, "accuracy": 0.63 + shift + rng.normal(0, 0.002)}]
    summ = summarise(per_seed, {s: {"epochs": 30, "epochs_run": 12, "stopped_early": True, "best_epoch": 9}
                                for s in per_seed})
    rows = {(r["method"], r["target"]): r for r in summ["rows"]}
    layer = rows[("layer", 0.5)]
    assert layer["accuracy"]["ci"] > 0.03                  # wide: the seeds differ
    d = layer["vs_random"]
    assert d["mean"] == pytest.approx(0.03, abs=0.004) and d["ci"] < 0.01 and d["excludes_zero"]
    assert "vs_random" not in rows[("random", 0.5)] and "vs_random" not in rows[("baseline", 1.0)]
    md = markdown(summ)
    assert "| layer | 0.5 | 5 |" in md and "12 of 30 epochs (early stopping)" in md


@pytest.mark.parametrize("section,key,value,msg", [
    ("study", "seeds", [1, "2"], "seeds must list integers"),
    ("study", "seeds", [1, 1.5], "seeds must list integers"),
    ("study", "seeds", [1, True], "seeds must list integers"),
    ("study", "seeds", [3, 3], "must not repeat"),
    ("train", "patience", 0, "patience must be a positive"),
    ("train", "patience", -2, "patience must be a positive"),
    ("train", "patience", 2.5, "expected int"),
])
def test_config_rejects_bad_seeds_and_patience(section, key, value, msg):
    from edgeprune.study.config import normalise

    raw = {"data": {"synth": "rml2016.10a"}, section: {key: value}}
    with pytest.raises(EdgepruneError, match=msg):
        normalise(raw)


def test_config_accepts_seeds_and_patience():
    from edgeprune.study.config import normalise

    cfg = normalise({"data": {"synth": "rml2016.10a"}, "study": {"seeds": [0, 1, 2]}, "train": {"patience": 3}})
    assert cfg["study"]["seeds"] == [0, 1, 2] and cfg["train"]["patience"] == 3


def test_patience_stops_when_validation_loss_stalls(toy_dataset):
    """Validation labels shuffled: the better the model learns the true classes, the worse its validation
    loss, so it stops improving after the first epochs and training must stop `patience` epochs later;
    without patience it runs all epochs. The epochs used are recorded."""
    import torch

    from edgeprune.checkpoint import make_meta
    from edgeprune.data.dataset import SignalDataset
    from edgeprune.data.split import split_dataset
    from edgeprune.models import build_model, make_spec
    from edgeprune.training.trainer import TrainConfig, _stale_epochs, fit

    train, val, _ = split_dataset(toy_dataset, (0.6, 0.2, 0.2), 0)
    noisy = SignalDataset(train.x[:64], np.random.default_rng(0).permutation(train.y[:64]), train.snr[:64],
                          train.classes, dict(train.meta))
    spec = make_spec("resnet20-1d", 64, 4)
    runs = {}
    for pat in (0, 2):
        torch.manual_seed(0)
        cfg = TrainConfig(epochs=6, seed=0, patience=pat, batch_size=32)
        runs[pat] = fit(build_model(spec), spec, train, noisy, cfg, None, make_meta(spec, toy_dataset.classes, "none"))
    assert runs[0]["epochs_run"] == 6 and not runs[0]["stopped_early"]
    hist = runs[2]["history"]
    e = runs[2]["epochs_run"]
    assert runs[2]["stopped_early"] and e < 6
    assert _stale_epochs(hist) == 2 and all(_stale_epochs(hist[:j]) < 2 for j in range(1, e))
    # the rule itself, on hand-made histories
    assert _stale_epochs([{"val_loss": 1.0}, {"val_loss": 0.9}, {"val_loss": 0.95}, {"val_loss": 0.93}]) == 2
    assert _stale_epochs([{"val_loss": 1.0}, {"val_loss": 0.8}]) == 0
    with pytest.raises(EdgepruneError, match="patience"):
        fit(build_model(spec), spec, train, val, TrainConfig(epochs=1, patience=-1), None,
            make_meta(spec, toy_dataset.classes, "none"))


def test_study_over_seeds_end_to_end(tmp_path):
    """Two seeds of a tiny study: the summary's means and paired differences are those of the per-seed results."""
    import json

    from edgeprune.study.runner import run_study

    cfg = {"study": {"name": "seeds", "seeds": [0, 1]},
           "data": {"synth": "rml2016.10a", "per_key": 6, "snrs": [10, 18], "length": 64},
           "model": {"name": "resnet20-1d"}, "train": {"epochs": 3, "patience": 1},
           "prune": {"methods": ["layer", "random"], "targets": [0.6]}, "finetune": {"epochs": 1},
           "export": {"precisions": ["fp32"]},
           "profile": {"backends": ["onnxruntime"], "batch": [1], "iters": 3, "warmup": 1}}
    res = run_study(cfg, tmp_path / "s")
    acc = {}
    for s in (0, 1):
        r = json.loads((tmp_path / "s" / f"seed-{s}" / "results.json").read_text())
        for m in r["models"]:
            acc.setdefault(m["id"], {})[s] = m["accuracy"]
    rows = {(r["method"], r["target"]): r for r in res["summary"]["rows"]}
    lay = rows[("layer", 0.6)]
    assert lay["accuracy"]["mean"] == pytest.approx(np.mean([acc["layer@0.6"][s] for s in (0, 1)]))
    assert lay["vs_random"]["mean"] == pytest.approx(np.mean([acc["layer@0.6"][s] - acc["random@0.6"][s]
                                                              for s in (0, 1)]))
    assert lay["accuracy"]["n"] == 2 and lay["accuracy"]["ci"] is not None
    assert set(res["summary"]["baseline_epochs"]) == {0, 1}
    assert all(1 <= e["epochs_run"] <= 3 for e in res["summary"]["baseline_epochs"].values())
    assert (tmp_path / "s" / "summary.md").read_text().count("| layer | 0.6 | 2 |") == 1
    # the report over seeds: mean accuracies, and the verdict judges accuracy by a paired test over the seeds
    over = json.loads((tmp_path / "s" / "results.json").read_text())
    lay_m = next(m for m in over["models"] if m["id"] == "layer@0.6")
    assert lay_m["accuracy_runs"] == [acc["layer@0.6"][s] for s in (0, 1)] and lay_m["seeds"] == [0, 1]
    assert lay_m["accuracy"] == pytest.approx(lay["accuracy"]["mean"])
    assert "paired over 2 seeds" in (tmp_path / "s" / "report.md").read_text()
