import numpy as np
import pytest
import torch

from edgeprune.analysis.importance import (TransplantScorer, select_exhaustive, select_per_unit, unit_scores)
from edgeprune.errors import EdgepruneError
from edgeprune.models import build_model, make_spec


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(3)
    spec = make_spec("resnet20-1d", 32, 3)
    sd = build_model(spec).state_dict()
    return spec, sd


def test_synflow_transplant_scores(trained):
    spec, sd = trained
    sc = TransplantScorer(spec, sd, "synflow", seed=0)
    s = unit_scores(sc, [1, 2, 3, 5])
    assert all(np.isfinite(v) and v > 0 for v in s.values())
    assert len(set(s.values())) == 4
    # scoring leaves the random copy untouched: the same call gives the same number
    assert sc.score([2]) == s[2]
    assert unit_scores(TransplantScorer(spec, sd, "synflow", seed=0), [1, 2]) == {1: s[1], 2: s[2]}


@pytest.mark.parametrize("proxy", ["gradnorm", "snip"])
def test_data_proxies(trained, proxy):
    spec, sd = trained
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 2, 32)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    s = unit_scores(TransplantScorer(spec, sd, proxy, seed=0, data_x=x, data_y=y), [1, 2, 3])
    assert all(np.isfinite(v) and v > 0 for v in s.values())
    with pytest.raises(EdgepruneError, match="needs a data batch"):
        TransplantScorer(spec, sd, proxy)


def test_per_unit_equals_exhaustive_for_one_unit_and_picks_lowest(trained):
    spec, sd = trained
    sc = TransplantScorer(spec, sd, "synflow", seed=0)
    blocks = [[1, 2, 3], [5, 6]]
    s = unit_scores(sc, [1, 2, 3, 5, 6])
    per = select_per_unit(blocks, [1, 1], s)
    ex, best = select_exhaustive(blocks, [1, 1], sc)
    assert per == ex
    assert per[0] == [min(blocks[0], key=s.get)]
    ex2, best2 = select_exhaustive(blocks, [2, 1], sc)
    assert len(ex2[0]) == 2 and best2[0] == min(sc.score(c) for c in ([1, 2], [1, 3], [2, 3]))
    with pytest.raises(EdgepruneError, match="exhaustive search would score"):
        select_exhaustive([list(range(1, 4))], [1], sc, max_combinations=2)
    with pytest.raises(EdgepruneError, match="unknown importance"):
        TransplantScorer(spec, sd, "fisher")


@pytest.mark.parametrize("name", ["resnet20-1d", "resnet20", "vgg16-1d", "cnn1d"])
def test_batched_synflow_equals_one_transplant_at_a_time(name):
    """The linear-cost batched SynFlow gives exactly the per-transplant scores of the reference procedure."""
    import torch

    from edgeprune.analysis.importance import TransplantScorer, batched_synflow_scores
    from edgeprune.analysis.units import discover_units
    from edgeprune.models import build_model, make_spec

    spec = make_spec(name, 64, 5)
    torch.manual_seed(3)
    trained = build_model(spec)
    # give the "trained" BN layers non-trivial statistics, as training would
    with torch.no_grad():
        for m in trained.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(-1, 1)
                m.bias.uniform_(-0.2, 0.2)
    scorer = TransplantScorer(spec, trained.state_dict(), "synflow", seed=1)
    layers = [u.layer for u in discover_units(spec) if u.removable]
    fast = batched_synflow_scores(scorer, layers)
    for i in layers:
        assert fast[i] == pytest.approx(scorer.score([i]), rel=1e-9), i
