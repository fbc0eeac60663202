import itertools

import numpy as np
import pytest

from edgeprune.analysis.segmentation import auto_k, default_max_segments, diameters, segment
from edgeprune.errors import EdgepruneError


def _brute(x, k):
    n = len(x)
    best = (np.inf, None)
    for cuts in itertools.combinations(range(1, n), k - 1):
        edges = (0,) + cuts + (n,)
        loss = sum(((x[a:b] - x[a:b].mean()) ** 2).sum() for a, b in zip(edges, edges[1:]))
        if loss < best[0] - 1e-12:
            best = (loss, [(a, b) for a, b in zip(edges, edges[1:])])
    return best


@pytest.mark.parametrize("seed", range(6))
def test_dp_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=int(rng.integers(5, 10))) * 3
    for k in range(1, min(5, len(x)) + 1):
        loss, bounds = _brute(x, k)
        s = segment(x, k)
        assert s.bounds == bounds
        assert s.losses[k - 1] == pytest.approx(loss, abs=1e-9)
        assert sum(s.sizes) == len(x)


def test_diameters_prefix_sums():
    x = np.array([1.0, 4.0, 2.0, 8.0])
    d = diameters(x)
    assert d[1, 4] == pytest.approx(((x[1:] - x[1:].mean()) ** 2).sum())
    assert d[2, 3] == 0.0 and np.isinf(d[3, 3])


def test_auto_k_reference_rule():
    assert auto_k([100.0, 50.0, 49.0, 10.0]) == 4        # the last >5% drop wins, not the first small one
    assert auto_k([100.0, 99.0, 98.0]) == 1
    assert auto_k([10.0, 0.0, 0.0]) == 2                 # zero loss stops the scan
    x = np.r_[np.full(4, 1.0), np.full(5, 5.0), np.full(3, 9.0)] + np.linspace(0, 0.01, 12)
    s = segment(x, "auto", max_k=3)
    assert s.auto and s.k == 3 and s.bounds == [(0, 4), (4, 9), (9, 12)]
    assert segment(np.full(6, 2.0), "auto", max_k=4).k == 1   # flat sequence: one block
    assert default_max_segments(28, "resnet56") == 5 and default_max_segments(55, "resnet110") == 7


def test_bad_k():
    with pytest.raises(EdgepruneError, match="between 1 and"):
        segment([1.0, 2.0], 3)
    with pytest.raises(EdgepruneError, match="integer or 'auto'"):
        segment([1.0, 2.0], "two")
