import json

import pytest
import torch

from edgeprune.errors import EdgepruneError
from edgeprune.models import build_model, make_spec, zoo_names
from edgeprune.models.macs import count_macs, count_params, model_stats
from edgeprune.models.spec import infer_shapes, unit_indices, validate_spec

# The paper's numbers (../shared/reference/method.md): input (1, 2, 128), 11 classes.
PAPER = {"resnet56": (852_795, 41.6e6, 28), "resnet110": (1_727_739, 84.1e6, 55), "vgg16": (8_854_475, 917.7e6, 9)}


@pytest.mark.parametrize("name", list(PAPER))
def test_paper_models_exact(name):
    params, macs, units = PAPER[name]
    st = model_stats(make_spec(name, 128, 11))
    assert st["params"] == params
    assert abs(st["macs"] - macs) / macs < 0.001
    # ResNets: units for similarity are stem + blocks; prunable units exclude the stem
    expected_prunable = units - 1 if name.startswith("resnet") else units
    assert st["units"] == expected_prunable


@pytest.mark.parametrize("name", zoo_names())
def test_macs_cross_checked_with_torch_flop_counter(name):
    """Independent counter: torch.utils.flop_counter counts FLOPs = 2 x MACs for conv and matmul."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(make_spec(name, 128, 11)).eval()
    with FlopCounterMode(display=False) as fc:
        model(torch.zeros(1, 2, 128))
    assert count_macs(model) == fc.get_total_flops() // 2


@pytest.mark.parametrize("name", zoo_names())
def test_forward_shapes_and_spec_roundtrip(name):
    spec = make_spec(name, 128, 11)
    spec2 = json.loads(json.dumps(spec))
    assert spec2 == spec
    model = build_model(spec2).eval()
    out = model(torch.randn(3, 2, 128))
    assert out.shape == (3, 11)


def test_other_lengths_and_classes():
    for name in ("resnet56-1d", "cnn1d", "vgg16"):
        spec = make_spec(name, 1024, 24)
        model = build_model(spec).eval()
        assert model(torch.randn(2, 2, 1024)).shape == (2, 24)


def test_per_layer_macs_sum_to_total():
    model = build_model(make_spec("resnet20", 128, 11))
    total, per = count_macs(model, per_layer=True)
    assert sum(per.values()) == total
    assert set(per) == {i for i, l in enumerate(model.spec["layers"]) if l["type"] not in ("gap", "flatten", "maxpool")}


def test_narrowed_spec_is_just_another_spec():
    spec = make_spec("resnet20-1d", 128, 11)
    for i in unit_indices(spec):
        spec["layers"][i]["mid"] = 4
    model = build_model(validate_spec(spec))
    assert count_params(model) < count_params(build_model(make_spec("resnet20-1d", 128, 11)))
    assert model(torch.randn(1, 2, 128)).shape == (1, 11)


def test_bad_specs():
    with pytest.raises(EdgepruneError, match="unknown model"):
        make_spec("resnet57")
    spec = make_spec("resnet20-1d")
    spec["layers"][2]["in"] = 7
    with pytest.raises(EdgepruneError, match="takes 7 channels but receives 16"):
        validate_spec(spec)
    spec = make_spec("resnet20-1d")
    spec["layers"][1]["bogus"] = 1
    with pytest.raises(EdgepruneError, match="unknown field"):
        validate_spec(spec)
    with pytest.raises(EdgepruneError, match="collapsed"):
        infer_shapes(dict(make_spec("cnn1d", 64, 11), input=[2, 16]))


def _narrow(spec, frac=0.5):
    for l in spec["layers"]:
        if l["type"] == "basic_block":
            l["mid"] = max(1, int(l["mid"] * frac))
    return spec


@pytest.mark.parametrize("name", zoo_names())
def test_analytic_costs_match_the_built_model(name):
    """spec_stats (analytic, torch-free) == the hook counter and torch's parameter count, per layer too."""
    from edgeprune.models.spec import layer_costs, spec_stats

    for length, classes in ((128, 11), (1024, 24)):
        for spec in (make_spec(name, length, classes), _narrow(make_spec(name, length, classes))):
            model = build_model(spec)
            st = spec_stats(spec)
            total, per = count_macs(model, per_layer=True)
            assert st["macs"] == total
            assert st["params"] == count_params(model)
            assert st["weight_layers"] == sum(
                1 for m in model.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)))
            for i, c in enumerate(layer_costs(spec)):
                assert c["macs"] == per.get(i, 0)
                assert c["params"] == count_params(model.layers[i])
