"""Similarity between unit representations: unbiased / biased linear CKA and cosine ("CS").

All matrices are units x units, symmetric, with the diagonal set to 1, and
averaged over batches by :class:`SimilarityAccumulator` (what
``edgeprune analyze`` keeps in the plan). Inputs are per-batch feature
matrices (samples x features); CKA needs only their Gram matrices.

- ``cka-unbiased``: linear CKA from the unbiased HSIC estimator (Song et al.
  2012), the reference code's default. Needs at least 4 samples per batch.
- ``cka``: linear CKA from the biased HSIC (centred Gram matrices).
- ``cosine``: rows L2-normalised, features zero-padded to equal width,
  mean over samples of the per-sample dot product (the diagonal of X Y^T).
"""

from __future__ import annotations

import numpy as np

from ..errors import EdgepruneError

METRICS = ("cka-unbiased", "cka", "cosine")


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise EdgepruneError(f"unknown similarity {metric!r}; choose one of: {', '.join(METRICS)}")
    return metric


def gram(x: np.ndarray) -> np.ndarray:
    """Linear-kernel Gram matrix of a (samples, features) matrix, in float64."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return x @ x.T


def _normalise(h: np.ndarray) -> np.ndarray:
    d = np.clip(np.diag(h).copy(), 0.0, None)
    denom = np.sqrt(np.outer(d, d))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(denom > 0, h / np.where(denom > 0, denom, 1.0), 0.0)
    np.fill_diagonal(out, 1.0)
    return out


def hsic_unbiased_matrix(grams: np.ndarray) -> np.ndarray:
    """Unbiased HSIC between every pair of Gram matrices (units, n, n) -> (units, units)."""
    g = np.array(grams, dtype=np.float64, copy=True)
    u, n, _ = g.shape
    if n < 4:
        raise EdgepruneError(f"unbiased CKA needs at least 4 samples per batch, got {n}")
    idx = np.arange(n)
    g[:, idx, idx] = 0.0
    flat = g.reshape(u, -1)
    tr = flat @ flat.T                              # tr(K~ L~) (symmetric Gram matrices)
    s = flat.sum(1)                                 # 1' K~ 1
    r = g.sum(2)                                    # K~ 1
    return (tr + np.outer(s, s) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (r @ r.T)) / (n * (n - 3))


def cka_unbiased_from_grams(grams: np.ndarray) -> np.ndarray:
    return _normalise(hsic_unbiased_matrix(grams))


def cka_biased_from_grams(grams: np.ndarray) -> np.ndarray:
    g = np.asarray(grams, dtype=np.float64)
    gc = g - g.mean(1, keepdims=True) - g.mean(2, keepdims=True) + g.mean((1, 2), keepdims=True)
    flat = gc.reshape(len(g), -1)
    return _normalise(flat @ flat.T)


def cosine_matrix(features: list[np.ndarray]) -> np.ndarray:
    """The "CS" similarity of the reference between every pair of (samples, features) matrices."""
    feats = []
    for f in features:
        f = np.asarray(f, dtype=np.float64).reshape(len(f), -1)
        norm = np.linalg.norm(f, axis=1, keepdims=True)
        feats.append(f / np.where(norm > 0, norm, 1.0))
    u = len(feats)
    n = len(feats[0])
    out = np.zeros((u, u))
    widths = sorted({f.shape[1] for f in feats})
    groups = {w: [i for i, f in enumerate(feats) if f.shape[1] == w] for w in widths}
    for wa in widths:
        for wb in widths:
            if wb > wa:
                continue
            # zero padding to equal width = truncating the wider one to the narrower width
            a = np.stack([feats[i][:, :wb] for i in groups[wa]]).reshape(len(groups[wa]), -1)
            b = np.stack([feats[i] for i in groups[wb]]).reshape(len(groups[wb]), -1)
            block = a @ b.T / n
            for ii, i in enumerate(groups[wa]):
                for jj, j in enumerate(groups[wb]):
                    out[i, j] = out[j, i] = block[ii, jj]
    np.fill_diagonal(out, 1.0)
    return out


def similarity_matrix(features: list[np.ndarray], metric: str = "cka-unbiased") -> np.ndarray:
    """One batch: the units x units similarity of a list of (samples, features) matrices."""
    check_metric(metric)
    if metric == "cosine":
        return cosine_matrix(features)
    grams = np.stack([gram(f) for f in features])
    return cka_unbiased_from_grams(grams) if metric == "cka-unbiased" else cka_biased_from_grams(grams)


class SimilarityAccumulator:
    """Averages a similarity matrix over batches; holds one units x units matrix, never the features."""

    def __init__(self, metric: str = "cka-unbiased"):
        self.metric = check_metric(metric)
        self.total: np.ndarray | None = None
        self.batches = 0

    def add(self, features: list[np.ndarray]) -> np.ndarray:
        m = similarity_matrix(features, self.metric)
        self.total = m if self.total is None else self.total + m
        self.batches += 1
        return m

    def result(self) -> np.ndarray:
        if self.total is None:
            raise EdgepruneError("no batches were added to the similarity")
        out = self.total / self.batches
        np.fill_diagonal(out, 1.0)
        return out


# direct single-pair definitions (the textbook formulas; used to check the vectorised ones)
def linear_cka(x: np.ndarray, y: np.ndarray, unbiased: bool = True) -> float:
    """Linear CKA between two (samples, features) matrices."""
    k, l = gram(x), gram(y)
    n = len(k)

    def hsic(a, b):
        if not unbiased:
            h = np.eye(n) - 1.0 / n
            return float(np.trace(a @ h @ b @ h)) / (n - 1) ** 2
        a = a - np.diag(np.diag(a))
        b = b - np.diag(np.diag(b))
        one = np.ones(n)
        return float(np.trace(a @ b) + (one @ a @ one) * (one @ b @ one) / ((n - 1) * (n - 2))
                     - 2.0 / (n - 2) * (one @ a @ b @ one)) / (n * (n - 3))

    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))
