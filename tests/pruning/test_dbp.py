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


def _trained_ckpt(ds):
    from edgeprune.training.trainer import TrainConfig, fit
    from edgeprune.data.split import split_dataset

    spec = make_spec("resnet20-1d", 64, 4)
    torch.manual_seed(0)
    model = build_model(spec)
    train, val, _ = split_dataset(ds)
    fit(model, spec, train, val, TrainConfig(epochs=2, batch_size=32, seed=0), None, make_meta(spec, ds.classes))
    return Checkpoint(spec, model.state_dict(), make_meta(spec, ds.classes))


def test_dbp_needs_data_and_target():
    from edgeprune.pruning.registry import get_method

    spec = make_spec("resnet20-1d", 64, 4)
    ck = Checkpoint(spec, build_model(spec).state_dict(), make_meta(spec, ["a", "b", "c", "d"]))
    with pytest.raises(EdgepruneError, match="needs data"):
        get_method("dbp")(ck, None, target_macs=0.5, seed=0)
    with pytest.raises(EdgepruneError, match=r"\(0, 1\]"):
        get_method("dbp")(ck, object(), target_macs=1.5, seed=0)


def test_dbp_gain_threshold_without_a_target(toy_dataset):
    """Without --target-macs, gain_threshold removes the removable units whose probe gain is below it: a gain is
    an accuracy difference (in [-1, 1]), so 1.5 removes every removable unit and -1.5 none (one error line)."""
    from edgeprune.checkpoint import checkpoint_as_recipe
    from edgeprune.pruning.modular import traced_candidates
    from edgeprune.pruning.registry import get_method

    spec = make_spec("resnet20-1d", 64, 4)
    torch.manual_seed(0)
    ck = Checkpoint(spec, build_model(spec).state_dict(), make_meta(spec, toy_dataset.classes))
    res = get_method("dbp")(ck, toy_dataset, seed=0, probe_steps=20, gain_threshold=1.5)
    removable = {u.name for u in traced_candidates(checkpoint_as_recipe(ck))}
    assert removable and set(res.lineage["removed_units"]) == removable
    assert res.lineage["target_macs"] is None and res.lineage["options"]["gain_threshold"] == 1.5
    with pytest.raises(EdgepruneError, match="nothing to prune"):
        get_method("dbp")(ck, toy_dataset, seed=0, probe_steps=20, gain_threshold=-1.5)
