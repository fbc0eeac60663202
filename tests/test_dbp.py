"""DBP: probe accuracy, the gain ordering, matched MACs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeprune.checkpoint import Checkpoint, make_meta
from edgeprune.errors import EdgepruneError
from edgeprune.models import build_model, make_spec

# the outcomes below come from trained or analysed networks: .ci/run runs them again on ATen's plain kernels
pytestmark = pytest.mark.numerics


def test_probe_separable_beats_noise():
    from edgeprune.pruning.dbp import probe_accuracy

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    good = np.eye(3)[y] * 3 + rng.normal(size=(300, 3)) * 0.3
    noise = rng.normal(size=(300, 3))
    a = probe_accuracy(good[:200], y[:200], good[200:], y[200:], 3, seed=0)
    b = probe_accuracy(noise[:200], y[:200], noise[200:], y[200:], 3, seed=0)
    assert a > 0.95 and b < 0.6
    assert a == probe_accuracy(good[:200], y[:200], good[200:], y[200:], 3, seed=0)


def test_removal_order_follows_gains():
    from edgeprune.pruning.dbp import removal_order

    accs = [0.30, 0.50, 0.52, 0.80, 0.79, 0.90]      # input, then units at layers 0..4 (0 = stem)
    rows = [{"layer": i, "removable": i > 0, "accuracy": accs[i + 1], "gain": accs[i + 1] - accs[i]}
            for i in range(5)]
    # gains: stem .20 (never), 1: .02, 2: .28, 3: -.01, 4: .11
    assert removal_order(rows) == [3, 1, 4, 2]


def _trained_ckpt(ds):
    from edgeprune.training.trainer import TrainConfig, fit
    from edgeprune.data.split import split_dataset

    spec = make_spec("resnet20-1d", 64, 4)
    torch.manual_seed(0)
    model = build_model(spec)
    train, val, _ = split_dataset(ds)
    fit(model, spec, train, val, TrainConfig(epochs=2, batch_size=32, seed=0), None, make_meta(spec, ds.classes))
    return Checkpoint(spec, model.state_dict(), make_meta(spec, ds.classes))


def test_dbp_probes_units_and_matches_macs(toy_dataset):
    from edgeprune.analysis.units import discover_units
    from edgeprune.pruning.dbp import removal_order
    from edgeprune.pruning.registry import get_method

    ck = _trained_ckpt(toy_dataset)
    res = get_method("dbp")(ck, toy_dataset, target_macs=0.6, seed=0, probe_steps=60, traced=False)
    rows = res.info["probes"]
    assert [r["layer"] for r in rows] == [u.layer for u in discover_units(ck.spec)]
    assert all(0 <= r["accuracy"] <= 1 for r in rows)
    # the first removed units are the lowest-gain ones that fit the budget, in order
    order = removal_order(rows)
    assert res.info["order"] == order
    removed = res.lineage["removed_units"]
    assert removed == [u for u in order if u in set(removed)]
    assert removed[0] == order[0]
    base = ck.meta["macs"]
    assert abs(res.lineage["macs_after"] - 0.6 * base) <= 0.02 * 0.6 * base
    net = build_model(res.spec)
    net.load_state_dict(res.state_dict, strict=True)
    # deterministic for a seed
    again = get_method("dbp")(ck, toy_dataset, target_macs=0.6, seed=0, probe_steps=60, traced=False)
    assert again.lineage["removed_units"] == removed


def test_dbp_on_a_2d_model(toy_dataset):
    from edgeprune.pruning.registry import get_method

    spec = make_spec("resnet20", 64, 4)
    torch.manual_seed(0)
    ck = Checkpoint(spec, build_model(spec).state_dict(), make_meta(spec, toy_dataset.classes))
    from edgeprune.pruning.reassembly import spec_macs

    base = ck.meta["macs"]
    keep = [i for i, l in enumerate(spec["layers"]) if l.get("role") == "unit" and i not in (5, 8, 9)]
    fraction = spec_macs(spec, keep) / base          # 2-D ResNet20 units are 1/9 of the MACs: a reachable target
    res = get_method("dbp")(ck, toy_dataset, target_macs=fraction, seed=0, probe_steps=30, probe_train=64,
                            probe_val=32)
    assert abs(res.lineage["macs_after"] - fraction * base) <= 0.02 * fraction * base


def test_dbp_needs_data_and_target():
    from edgeprune.pruning.registry import get_method

    spec = make_spec("resnet20-1d", 64, 4)
    ck = Checkpoint(spec, build_model(spec).state_dict(), make_meta(spec, ["a", "b", "c", "d"]))
    with pytest.raises(EdgepruneError, match="needs data"):
        get_method("dbp")(ck, None, target_macs=0.5, seed=0)
    with pytest.raises(EdgepruneError, match=r"\(0, 1\]"):
        get_method("dbp")(ck, object(), target_macs=1.5, seed=0)
