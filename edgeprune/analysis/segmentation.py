"""Fisher optimal segmentation of the unit sequence into K contiguous blocks.

The similarity matrix is reduced to a 1-D sequence (its column sums). The
diameter of a segment is the sum of squared deviations from its mean; the
optimal K-partition minimises the summed diameters (Fisher 1958). Diameters
come from prefix sums and the dynamic programme is vectorised over split
points: O(K n^2) numpy work, instant for any depth.

Automatic K (reference rule): scanning k = 1 .. max_k - 1, K becomes k + 1
whenever the loss drops by more than 5 % relative from k to k + 1 blocks
(and the scan stops at a zero loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import EdgepruneError

DROP_THRESHOLD = 0.05


def default_max_segments(n_units: int, model_name: str = "") -> int:
    """ResNet56: 5, ResNet110: 7 (the reference); else about 5 % of the depth, between 2 and 8."""
    base = str(model_name).split("-")[0]
    if base == "resnet56":
        return 5
    if base == "resnet110":
        return 7
    return int(max(2, min(8, n_units // 2, round(n_units / 8) + 2)))


def diameters(x: np.ndarray) -> np.ndarray:
    """D[a, b] = sum over x[a:b] of (x_t - mean)^2 (half-open; inf where b <= a)."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    c1 = np.concatenate([[0.0], np.cumsum(x)])
    c2 = np.concatenate([[0.0], np.cumsum(x * x)])
    a = np.arange(n + 1)[:, None]
    b = np.arange(n + 1)[None, :]
    m = b - a
    with np.errstate(invalid="ignore", divide="ignore"):
        s1 = c1[None, :] - c1[:, None]
        d = (c2[None, :] - c2[:, None]) - np.where(m > 0, s1 * s1 / np.where(m > 0, m, 1), 0.0)
    d = np.where(m > 0, np.maximum(d, 0.0), np.inf)
    return d


@dataclass
class Segmentation:
    k: int
    bounds: list[tuple[int, int]]           # half-open position ranges, in order
    losses: list[float]                     # optimal loss for k = 1 .. max_k
    auto: bool
    max_k: int
    sequence: list[float] = field(default_factory=list)

    @property
    def sizes(self) -> list[int]:
        return [b - a for a, b in self.bounds]

    def labels(self) -> list[int]:
        out = []
        for i, (a, b) in enumerate(self.bounds):
            out += [i] * (b - a)
        return out

    def to_dict(self) -> dict:
        """The plan's ``segments``: ``bounds_loss`` is the Fisher loss of the bounds returned, ``optimal_loss``
        the optimum's for the same K (equal here: these bounds are the optimum)."""
        return {"k": self.k, "bounds": [list(b) for b in self.bounds], "sizes": self.sizes,
                "losses": self.losses, "auto": self.auto, "max_k": self.max_k, "sequence": self.sequence,
                "bounds_loss": bounds_loss(self.sequence, self.bounds), "optimal_loss": self.losses[self.k - 1]}


def bounds_loss(sequence, bounds) -> float:
    """The Fisher loss of a partition: the summed diameters of its blocks (sequential sums)."""
    v = [float(a) for a in np.asarray(sequence, dtype=np.float64).reshape(-1)]
    total = 0.0
    for a, b in bounds:
        mean = sum(v[a:b]) / (b - a)
        total += sum((t - mean) ** 2 for t in v[a:b])
    return float(total)


def fisher_dp(x: np.ndarray, max_k: int):
    """Optimal losses L[k, n] and split points for k = 1..max_k blocks of the first n items."""
    n = len(x)
    d = diameters(x)
    loss = np.full((max_k + 1, n + 1), np.inf)
    arg = np.zeros((max_k + 1, n + 1), dtype=np.int64)
    loss[1, 1:] = d[0, 1:]
    for k in range(2, max_k + 1):
        # candidate last block x[a:m] for every a, m at once
        cand = loss[k - 1][:, None] + d
        arg[k] = np.argmin(cand, axis=0)
        loss[k] = cand[arg[k], np.arange(n + 1)]
    return loss, arg


def auto_k(losses: list[float], threshold: float = DROP_THRESHOLD) -> int:
    """The reference rule for K from the optimal losses for k = 1 .. max_k."""
    k_best = 1
    for i in range(len(losses) - 1):
        if losses[i] == 0:
            return i + 1
        if (losses[i] - losses[i + 1]) / losses[i] > threshold:
            k_best = i + 2
    return k_best


def check_k(k, n: int) -> int:
    """A given number of segments ``k`` as an int in [1, n] (n units), or one error line."""
    try:
        k = int(k)
    except (TypeError, ValueError) as exc:
        raise EdgepruneError(f"number of segments must be an integer or 'auto', got {k!r}") from exc
    if not 1 <= k <= n:
        raise EdgepruneError(f"number of segments must be between 1 and the number of units ({n}), got {k}")
    return k


def segment(sequence, k: int | str = "auto", max_k: int | None = None, threshold: float = DROP_THRESHOLD) -> Segmentation:
    """Split ``sequence`` into ``k`` contiguous blocks (``"auto"``: the 5 % rule up to ``max_k``)."""
    x = np.asarray(sequence, dtype=np.float64).reshape(-1)
    n = len(x)
    if n == 0:
        raise EdgepruneError("nothing to segment: no units")
    if not np.isfinite(x).all():
        raise EdgepruneError("the similarity sequence contains NaN or Inf")
    auto = k == "auto" or k is None
    if not auto:
        k = check_k(k, n)
    if max_k is None:
        max_k = default_max_segments(n) if auto else k
    max_k = int(max_k)
    if max_k < 1:
        raise EdgepruneError(f"the maximum number of segments must be >= 1, got {max_k}")
    max_k = min(max(max_k, 1 if auto else k), n)
    loss, arg = fisher_dp(x, max_k)
    losses = [float(v) for v in loss[1:, n]]
    if auto:
        k = auto_k(losses, threshold)
    bounds = []
    end = n
    for kk in range(k, 0, -1):
        start = int(arg[kk, end]) if kk > 1 else 0
        bounds.append((start, end))
        end = start
    bounds.reverse()
    return Segmentation(k=int(k), bounds=bounds, losses=losses, auto=bool(auto), max_k=max_k,
                        sequence=[float(v) for v in x])


def column_sums(similarity: np.ndarray) -> np.ndarray:
    """The 1-D sequence segmented: each unit's total similarity to all units."""
    return np.asarray(similarity, dtype=np.float64).sum(axis=0)


def reference_loss_table(x, max_k: int) -> np.ndarray:
    """The loss table as the reference fills it: T[n, k] for n items in k blocks, 0 where n < k.

    Computed as the reference does, segment by segment with sequential sums
    (not from prefix sums): its back-tracking compares table entries with
    ``<``, so exact ties (a one-item block has diameter exactly 0) must stay
    exact. O(K n^3) Python arithmetic: well under a second for 55 units.
    """
    v = [float(a) for a in np.asarray(x, dtype=np.float64).reshape(-1)]
    n_all = len(v)
    diam = {}
    for a in range(n_all):
        for b in range(a + 1, n_all + 1):
            total = 0.0
            for i in range(a, b):
                total += v[i]
            mean = total / (b - a)
            d = 0.0
            for i in range(a, b):
                d += (v[i] - mean) ** 2
            diam[a, b] = d
    t = np.zeros((n_all + 1, max_k + 1))
    for n in range(1, n_all + 1):
        t[n, 1] = diam[0, n]
    for k in range(2, max_k + 1):
        for n in range(k, n_all + 1):
            t[n, k] = min(t[j, k - 1] + diam[j, n] for j in range(k - 1, n))
    return t


def reference_bounds(sequence, k: int, max_k: int | None = None) -> list[tuple[int, int]]:
    """Block bounds recovered by the reference code's back-tracking heuristic (not the optimum).

    From the last item backwards, for k - 1, k - 2, ..., 1 blocks: the largest
    item count n (not above the previous split) whose table entry T[n, kk] is
    strictly below the running loss becomes a split point, and the running loss
    becomes T[n, kk]. The table is the true Fisher table with zeros where n < kk,
    as the reference initialises it. It can disagree with the optimal partition.
    """
    x = np.asarray(sequence, dtype=np.float64).reshape(-1)
    n_items = len(x)
    t = reference_loss_table(x, max(int(k), int(max_k or k)))
    points: list[int] = []
    n = n_items
    running = t[n_items, k]
    for kk in range(k - 1, 0, -1):
        while n > 0:
            if t[n, kk] < running:
                points.insert(0, n)
                running = t[n, kk]
                break
            n -= 1
    # the reference labels item i with the number of recorded points <= i (one step per item)
    labels, block = [], 0
    marks = points + [n_items]
    for i in range(n_items):
        if i >= marks[block]:
            block += 1
        labels.append(block)
    bounds, start = [], 0
    for b in range(labels[-1] + 1):
        size = labels.count(b)
        if size:
            bounds.append((start, start + size))
            start += size
    return bounds
