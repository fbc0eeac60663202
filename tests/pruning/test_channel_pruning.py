"""Channel pruning through Torch-Pruning: spec read-back, checkpoints, the classifier, errors."""

from __future__ import annotations

import pytest
import torch

from edgeprune.errors import EdgepruneError
from edgeprune.models import build_model, make_spec

# the outcomes below come from trained or analysed networks: .ci/run runs them again on ATen's plain kernels
pytestmark = pytest.mark.numerics


def _state(spec, seed=0):
    torch.manual_seed(seed)
    return build_model(spec).state_dict()


def test_channel_pruned_checkpoint_roundtrip(tmp_path, toy_dataset):
    from edgeprune.checkpoint import Checkpoint, load_checkpoint, make_meta, save_checkpoint
    from edgeprune.pruning.registry import get_method
    from edgeprune.training.trainer import accuracy

    spec = make_spec("resnet20-1d", 64, 4)
    classes = toy_dataset.classes
    ck = Checkpoint(spec, _state(spec), make_meta(spec, classes))
    res = get_method("channel-fpgm")(ck, None, target_macs=0.5, seed=0)
    path = tmp_path / "pruned.pt"
    meta = make_meta(res.spec, classes, lineage=[res.lineage])
    save_checkpoint(path, res.spec, res.state_dict, meta)
    back = load_checkpoint(path)
    assert back.spec == res.spec
    model = back.build()
    assert back.meta["macs"] == res.lineage["macs_after"]
    acc = accuracy(model, toy_dataset)
    assert 0.0 <= acc <= 1.0
    assert model(torch.from_numpy(toy_dataset.x[:5])).shape == (5, 4)


def test_untraceable_model_is_a_clear_error():
    from edgeprune.pruning.channel import make_importance, tp_prune

    class Weird(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(2, 8, 3)
            self.fc = torch.nn.Linear(8, 4)

        def forward(self, x):
            raise RuntimeError("data-dependent control flow")

    m = Weird()
    with pytest.raises(EdgepruneError, match="Torch-Pruning cannot trace"):
        tp_prune(m, torch.randn(2, 2, 16), make_importance("l1"), 0.5, [m.fc])


def test_unknown_criterion():
    from edgeprune.pruning.channel import make_importance

    with pytest.raises(EdgepruneError, match="unknown channel-pruning criterion"):
        make_importance("l3")


def test_channel_bn_sparsity_then_prune(toy_dataset):
    """Network slimming on the traced network."""
    from edgeprune.checkpoint import Checkpoint, make_meta
    from edgeprune.pruning.registry import get_method

    spec = make_spec("resnet20-1d", 64, 4)
    ck = Checkpoint(spec, _state(spec), make_meta(spec, toy_dataset.classes))
    with pytest.raises(EdgepruneError, match="needs data"):
        get_method("channel-bn")(ck, None, target_macs=0.5, seed=0)
    res = get_method("channel-bn")(ck, toy_dataset, target_macs=0.5, seed=0, sparsity_epochs=1, sparsity=1e-3)
    base = ck.meta["macs"]
    assert abs(res.lineage["macs_after"] - 0.5 * base) <= 0.02 * 0.5 * base
    assert res.info["sparsity_training"]["epochs"] == 1
    assert res.lineage["method"] == "channel-bn"
