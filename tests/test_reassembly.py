import pytest
import torch

from edgeprune.errors import EdgepruneError
from edgeprune.models import build_model, make_spec
from edgeprune.pruning.reassembly import reassemble

# the outcomes below come from trained or analysed networks: .ci/run runs them again on ATen's plain kernels
pytestmark = pytest.mark.numerics


def _model(name, length=64, classes=4):
    torch.manual_seed(0)
    spec = make_spec(name, length, classes)
    return spec, build_model(spec).state_dict()


def test_resnet_keeps_trained_weights_and_transitions():
    spec, sd = _model("resnet20-1d")
    new, nsd, rep = reassemble(spec, sd, [2, 6, 9])
    assert new["name"] == "resnet20-1d-L5"
    origins = [l["origin"] for l in new["layers"]]
    assert origins == [0, 2, 4, 6, 7, 9, 10, 11]     # transitions 4 and 7 kept (trained)
    assert not any(l.get("reinit") for l in new["layers"])
    for j, o in enumerate(origins):
        for k, v in nsd.items():
            if k.startswith(f"layers.{j}."):
                assert torch.equal(v, sd[f"layers.{o}." + k[len(f'layers.{j}.'):]])
    assert rep["macs_after"] < rep["macs_before"]
    m = build_model(new)
    m.load_state_dict(nsd)
    assert m(torch.randn(3, 2, 64)).shape == (3, 4)


def test_transition_reinit_reference_mode():
    spec, sd = _model("resnet20-1d")
    new, nsd, rep = reassemble(spec, sd, [2, 6, 9], transition="reinit", seed=1)
    reinit = [l["origin"] for l in new["layers"] if l.get("reinit")]
    assert reinit == [4, 7]
    j = [l["origin"] for l in new["layers"]].index(4)
    assert not torch.equal(nsd[f"layers.{j}.conv1.weight"], sd["layers.4.conv1.weight"])
    again = reassemble(spec, sd, [2, 6, 9], transition="reinit", seed=1)[1]
    assert all(torch.equal(nsd[k], again[k]) for k in nsd)    # seeded


def test_every_stage_keeps_a_unit_and_vgg_reinit():
    spec, sd = _model("resnet20-1d")
    new, _, rep = reassemble(spec, sd, [9])
    assert any(f["layer"] == 1 for f in rep["forced"])
    spec, sd = _model("vgg16-1d", 128)
    new, nsd, rep = reassemble(spec, sd, [4])
    flagged = {l["origin"] for l in new["layers"] if l.get("reinit")}
    assert 4 in flagged                   # its input width changed (the conv before it was removed)
    m = build_model(new)
    m.load_state_dict(nsd)
    m.eval()
    assert m(torch.randn(2, 2, 128)).shape == (2, 4)
    spec, sd = _model("cnn1d", 64)
    new, _, _ = reassemble(spec, sd, [1, 3])
    assert [l["type"] for l in new["layers"] if l.get("reinit")] == ["res_stack", "linear"]


def test_bad_keep_layers():
    spec, sd = _model("resnet20-1d")
    with pytest.raises(EdgepruneError, match="not a prunable unit"):
        reassemble(spec, sd, [11])
    with pytest.raises(EdgepruneError, match="transition must be"):
        reassemble(spec, sd, [2], transition="zero")
    with pytest.raises(EdgepruneError, match="weights lack|shape"):
        reassemble(spec, {k: v for k, v in sd.items() if "layers.2." not in k}, [2])
