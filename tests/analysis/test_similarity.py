import numpy as np
import pytest

from edgeprune.analysis.similarity import (SimilarityAccumulator, cosine_matrix, linear_cka, similarity_matrix)
from edgeprune.errors import EdgepruneError


def _feats(seed=0, n=24):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 10))
    b = a @ rng.normal(size=(10, 7)) + 0.5 * rng.normal(size=(n, 7))
    c = rng.normal(size=(n, 13))
    return [a, b, c]


@pytest.mark.parametrize("metric,unbiased", [("cka-unbiased", True), ("cka", False)])
def test_vectorised_cka_matches_direct_formula(metric, unbiased):
    f = _feats()
    m = similarity_matrix(f, metric)
    for i in range(3):
        for j in range(3):
            want = 1.0 if i == j else linear_cka(f[i], f[j], unbiased=unbiased)
            assert m[i, j] == pytest.approx(want, abs=1e-9)
    assert np.allclose(m, m.T)
    assert np.allclose(np.diag(m), 1.0)


@pytest.mark.parametrize("unbiased", [True, False])
def test_cka_invariances(unbiased):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 8))
    y = x @ rng.normal(size=(8, 6)) + rng.normal(size=(30, 6))
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    base = linear_cka(x, y, unbiased)
    assert linear_cka(x, y @ q, unbiased) == pytest.approx(base, abs=1e-9)      # orthogonal transform
    assert linear_cka(3.7 * x, y, unbiased) == pytest.approx(base, abs=1e-9)    # isotropic scaling
    assert linear_cka(x, x, unbiased) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(y, x, unbiased) == pytest.approx(base, abs=1e-12)
    # and the vectorised version agrees on the transformed features
    m = similarity_matrix([x, y @ q, 2 * x], "cka-unbiased" if unbiased else "cka")
    assert m[0, 1] == pytest.approx(base, abs=1e-9)
    assert m[0, 2] == pytest.approx(1.0, abs=1e-9)
    # unrelated features are far less similar than related ones
    z = rng.normal(size=(30, 6))
    assert abs(linear_cka(x, z, unbiased)) < base


def test_cosine_matches_definition():
    f = _feats(2)
    m = cosine_matrix(f)
    for i in range(3):
        for j in range(3):
            if i == j:
                continue
            a = f[i] / np.linalg.norm(f[i], axis=1, keepdims=True)
            b = f[j] / np.linalg.norm(f[j], axis=1, keepdims=True)
            w = max(a.shape[1], b.shape[1])
            a = np.pad(a, ((0, 0), (0, w - a.shape[1])))
            b = np.pad(b, ((0, 0), (0, w - b.shape[1])))
            assert m[i, j] == pytest.approx(np.mean(np.diag(a @ b.T)), abs=1e-12)
    assert np.allclose(m, m.T)


def test_accumulator_averages_batches_and_checks_metric():
    acc = SimilarityAccumulator("cka")
    m1 = acc.add(_feats(3))
    m2 = acc.add(_feats(4))
    assert np.allclose(acc.result(), (m1 + m2) / 2)
    with pytest.raises(EdgepruneError, match="unknown similarity"):
        SimilarityAccumulator("pearson")
    with pytest.raises(EdgepruneError, match="at least 4 samples"):
        similarity_matrix([np.ones((3, 2)), np.ones((3, 2))], "cka-unbiased")
