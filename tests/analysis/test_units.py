import pytest
import torch
from torch import nn

from edgeprune.analysis.units import discover_units, removable_units, trace_units
from edgeprune.errors import EdgepruneError
from edgeprune.models import make_spec


def test_resnet_units_match_the_paper():
    units = discover_units(make_spec("resnet56", 128, 11))
    assert len(units) == 28                      # stem + 3 x 9 blocks
    assert units[0].role == "stem" and not units[0].removable and units[0].position == 0
    assert [u.layer for u in units] == list(range(28))
    trans = [u.layer for u in units if u.transition and u.role == "unit"]
    assert trans == [10, 19]
    assert all(not units[t].removable for t in trans)
    assert all(u.removable for u in units[1:] if u.layer not in trans)
    assert sum(u.macs for u in units) > 0 and units[1].macs == units[2].macs


def test_vgg_and_cnn1d_units():
    vgg = discover_units(make_spec("vgg16", 128, 11))
    assert len(vgg) == 10 and sum(u.removable for u in vgg) == 9   # first conv excluded
    cnn = discover_units(make_spec("cnn1d", 128, 11))
    assert len(cnn) == 6 and all(u.removable and u.transition for u in cnn)


def test_no_removable_units_is_an_error():
    spec = make_spec("resnet20-1d", 64, 4)
    for l in spec["layers"]:
        if l.get("role") == "unit":
            l["role"] = "head"
    with pytest.raises(EdgepruneError, match="no removable units"):
        removable_units(spec)


def test_trace_units_on_a_user_module():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv1d(2, 8, 3, padding=1), nn.ReLU(),
                nn.Conv1d(8, 8, 3, padding=1), nn.ReLU(),
                nn.Conv1d(8, 8, 3, padding=1, stride=2), nn.ReLU(),
                nn.Conv1d(8, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 16, 3))

        def forward(self, x):
            return self.body(x)

    units = trace_units(Net(), torch.zeros(2, 2, 32))
    # Conv+ReLU groups are one unit each; the stem (first conv) and the classifier are never removable
    assert [u.name for u in units] == ["body.0+body.1", "body.2+body.3", "body.4+body.5", "body.6", "body.8"]
    assert [u.removable for u in units] == [False, True, False, True, False]
    assert units[2].transition and units[2].out_shape == (8, 16)
    with pytest.raises(EdgepruneError, match="cannot trace"):
        trace_units(Net(), torch.zeros(2, 3, 32))
