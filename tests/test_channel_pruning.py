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


@pytest.mark.parametrize("name", ["resnet20-1d", "resnet20", "cnn1d", "vgg16-1d"])
def test_pruned_widths_live_in_the_spec(name):
    from edgeprune.pruning.channel import prune_channels

    spec = make_spec(name, 64, 4)
    new_spec, net = prune_channels(spec, _state(spec), "l1", 0.5)
    # rebuilt from the spec alone, the weights load strictly and the outputs agree
    fresh = build_model(new_spec)
    fresh.load_state_dict(net.state_dict(), strict=True)
    x = torch.randn(3, 2, 64)
    with torch.no_grad():
        assert torch.allclose(fresh.eval()(x), net.eval()(x), atol=1e-5)
    # the classifier keeps all its outputs; something actually got narrower
    assert new_spec["layers"][-1]["out"] == 4
    assert fresh.layers[-1].fc.out_features == 4
    before = sum(p.numel() for p in build_model(spec).parameters())
    after = sum(p.numel() for p in fresh.parameters())
    assert after < 0.8 * before


def test_resnet_prunes_only_block_mid_channels():
    from edgeprune.pruning.channel import prune_channels

    spec = make_spec("resnet20-1d", 64, 4)
    new_spec, _ = prune_channels(spec, _state(spec), "l2", 0.5)
    for old, new in zip(spec["layers"], new_spec["layers"]):
        if old["type"] == "basic_block":
            assert (new["in"], new["out"]) == (old["in"], old["out"])
            assert new["mid"] == old["mid"] // 2
        elif old["type"] == "conv":
            assert new["out"] == old["out"]


def test_l1_keeps_the_largest_filters():
    from edgeprune.pruning.channel import prune_channels

    spec = make_spec("resnet20-1d", 64, 4)
    state = _state(spec)
    w = state["layers.1.conv1.weight"]
    norms = w.abs().flatten(1).sum(1) + state["layers.1.conv2.weight"].abs().transpose(0, 1).flatten(1).sum(1)
    _, net = prune_channels(spec, state, "l1", 0.5)
    kept = net.state_dict()["layers.1.conv1.weight"]
    # every kept filter is one of the original filters with the largest group L1 norms
    top = set(torch.argsort(norms, descending=True)[: kept.shape[0]].tolist())
    idx = {int(torch.nonzero((w == k).flatten(1).all(1))[0]) for k in kept}
    assert idx == top


def test_channel_pruned_checkpoint_roundtrip(tmp_path, toy_dataset):
    from edgeprune.checkpoint import Checkpoint, load_checkpoint, make_meta, save_checkpoint
    from edgeprune.pruning.registry import get_method
    from edgeprune.training.trainer import accuracy

    spec = make_spec("resnet20-1d", 64, 4)
    classes = toy_dataset.classes
    ck = Checkpoint(spec, _state(spec), make_meta(spec, classes))
    res = get_method("channel-fpgm")(ck, None, target_macs=0.5, seed=0, traced=False)   # the spec path's widths
    path = tmp_path / "pruned.pt"
    meta = make_meta(res.spec, classes, lineage=[res.lineage])
    save_checkpoint(path, res.spec, res.state_dict, meta)
    back = load_checkpoint(path)
    assert back.spec == res.spec
    assert [l.get("mid") for l in back.spec["layers"]] == [w.get("mid") for w in res.spec["layers"]]
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


@pytest.mark.parametrize("traced", [None, False])
def test_channel_bn_sparsity_then_prune(toy_dataset, traced):
    """Network slimming on the default (traced) path and on the spec path."""
    from edgeprune.checkpoint import Checkpoint, make_meta
    from edgeprune.pruning.registry import get_method

    spec = make_spec("resnet20-1d", 64, 4)
    ck = Checkpoint(spec, _state(spec), make_meta(spec, toy_dataset.classes))
    with pytest.raises(EdgepruneError, match="needs data"):
        get_method("channel-bn")(ck, None, target_macs=0.5, seed=0)
    res = get_method("channel-bn")(ck, toy_dataset, target_macs=0.5, seed=0, sparsity_epochs=1, sparsity=1e-3,
                                   traced=traced)
    base = ck.meta["macs"]
    assert abs(res.lineage["macs_after"] - 0.5 * base) <= 0.02 * 0.5 * base
    assert res.info["sparsity_training"]["epochs"] == 1
    assert res.lineage["method"] == "channel-bn"
    if traced is False:
        assert res.spec["layers"][-1]["out"] == 4
