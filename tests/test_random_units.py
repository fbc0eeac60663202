"""Random-units baseline: seeded, removable units only, matched MACs."""

from __future__ import annotations

import torch

from edgeprune.checkpoint import Checkpoint, make_meta
from edgeprune.models import build_model, make_spec
import pytest

# the outcomes below come from trained or analysed networks: .ci/run runs them again on ATen's plain kernels
pytestmark = pytest.mark.numerics


def _ckpt(name="resnet20-1d"):
    spec = make_spec(name, 64, 4)
    torch.manual_seed(0)
    return Checkpoint(spec, build_model(spec).state_dict(), make_meta(spec, [f"c{k}" for k in range(4)]))


def test_random_is_seed_deterministic():
    from edgeprune.pruning.random_units import random_order, random_units

    ck = _ckpt()
    a = random_units(ck, None, target_macs=0.6, seed=3)
    b = random_units(ck, None, target_macs=0.6, seed=3)
    assert a.lineage["removed_units"] == b.lineage["removed_units"]
    assert a.spec == b.spec
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    orders = {tuple(random_order(ck.spec, s)) for s in range(6)}
    assert len(orders) > 1          # different seeds draw different orders


def test_random_removes_only_removable_units_and_keeps_weights():
    from edgeprune.analysis.units import removable_units
    from edgeprune.pruning.random_units import random_units

    ck = _ckpt()
    res = random_units(ck, None, target_macs=0.6, seed=1)
    allowed = {u.layer for u in removable_units(ck.spec)}
    assert res.lineage["removed_units"] and set(res.lineage["removed_units"]) <= allowed
    # kept layers carry their trained weights
    for j, layer in enumerate(res.spec["layers"]):
        old = layer["origin"]
        for key, v in res.state_dict.items():
            if key.startswith(f"layers.{j}.") and not layer.get("reinit"):
                assert torch.equal(v, ck.state_dict[f"layers.{old}." + key[len(f'layers.{j}.'):]])


def test_random_on_cnn1d_2d_resnet_forward():
    from edgeprune.pruning.random_units import random_units

    from edgeprune.pruning.reassembly import spec_macs

    for name, gone in (("cnn1d", [1, 2]), ("resnet20", [5, 8, 9])):
        ck = _ckpt(name)
        keep = [i for i, l in enumerate(ck.spec["layers"]) if l.get("role") == "unit" and i not in gone]
        fraction = spec_macs(ck.spec, keep) / ck.meta["macs"]      # reachable with whole units
        res = random_units(ck, None, target_macs=fraction, seed=0)
        assert abs(res.lineage["macs_after"] - fraction * ck.meta["macs"]) <= 0.02 * fraction * ck.meta["macs"]
        net = build_model(res.spec)
        net.load_state_dict(res.state_dict, strict=True)
        assert net.eval()(torch.randn(2, 2, 64)).shape == (2, 4)
