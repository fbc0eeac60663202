"""Matched-MACs searches: make every pruning method hit the same MACs budget.

``--target-macs F`` asks for ``F x`` the unpruned model's MACs (the one MAC
definition, :func:`edgeprune.models.macs.count_macs`), within a relative
tolerance (2% by default) of that target.

Two searches:

- :func:`search_ratio` for channel methods. A probe prunes a fresh copy with a
  Torch-Pruning ratio and counts MACs. It bisects a uniform ratio first; when
  the widths jump over the tolerance window (one channel less in every block
  of a stage at once), it refines by giving the next ratio step to the first
  ``k`` layers only and bisects ``k``.
- :func:`search_unit_set` for depth methods (DBP, random units, ...). Units
  are visited in the method's removal order; a unit is removed unless that
  would take the MACs below the window, and the walk stops once the MACs are
  inside the window. So the most "removable" units go first and the budget is
  met as closely as the unit sizes allow.

Both raise :class:`EdgepruneError` naming the nearest achievable fraction when
the window cannot be reached; the depth search, asked for ``nearest``, instead
takes the nearest model whole units allow at or below the target (targets mean
"as close as whole units allow", see docs/own-models-units.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..errors import EdgepruneError

DEFAULT_TOLERANCE = 0.02


def check_target(fraction: Any) -> float:
    """Validate a ``--target-macs`` fraction: a number in (0, 1]."""
    if fraction is None:
        raise EdgepruneError("a MACs target is required (--target-macs F, a fraction of the model's MACs in (0, 1])")
    if isinstance(fraction, bool):
        raise EdgepruneError(f"--target-macs must be a number in (0, 1], got {fraction!r}")
    try:
        f = float(fraction)
    except (TypeError, ValueError):
        raise EdgepruneError(f"--target-macs must be a number in (0, 1], got {fraction!r}") from None
    if not math.isfinite(f) or f <= 0 or f > 1:
        raise EdgepruneError(f"--target-macs must be a fraction in (0, 1] of the model's MACs, got {fraction!r}")
    return f


def check_tolerance(tol: Any) -> float:
    try:
        t = float(tol)
    except (TypeError, ValueError):
        raise EdgepruneError(f"MACs tolerance must be a number, got {tol!r}") from None
    if not math.isfinite(t) or t <= 0 or t >= 1:
        raise EdgepruneError(f"MACs tolerance must be in (0, 1), got {tol!r}")
    return t


def within(macs: float, target: float, tol: float = DEFAULT_TOLERANCE) -> bool:
    """True when ``macs`` lies within ``tol`` (relative) of ``target``."""
    return abs(macs - target) <= tol * target


@dataclass
class MatchResult:
    """The outcome of a search: the chosen setting, its MACs and the probes made."""

    setting: Any
    macs: int
    base_macs: int
    target_macs: float
    steps: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None        # set when the window was out of reach and the nearest model was taken
    rule: str | None = None        # what chose the setting (recorded with the match)
    must_meet: float | None = None  # a tolerance the built network's MACs must meet (no nearest model taken)

    @property
    def fraction(self) -> float:
        return self.macs / self.base_macs

    @property
    def error(self) -> float:
        """Relative distance to the target (signed)."""
        return (self.macs - self.target_macs) / self.target_macs

    def summary(self) -> dict[str, Any]:
        return {"base_macs": self.base_macs, "target_macs": self.target_macs, "macs": self.macs,
                "fraction": self.fraction, "relative_error": self.error, "probes": len(self.steps),
                **({"note": self.note} if self.note else {}), **({"rule": self.rule} if self.rule else {}),
                **({"tolerance": self.must_meet} if self.must_meet is not None else {})}

    def inside(self, macs: float) -> bool:
        """Whether ``macs`` lies in the window this match must meet (always, when it has none)."""
        if self.must_meet is None:
            return True
        return self.target_macs * (1 - self.must_meet) <= macs <= self.target_macs * (1 + self.must_meet)


class TargetUnreachable(EdgepruneError):
    """A MACs target no setting of the method reaches; ``nearest`` is the closest fraction found."""

    def __init__(self, message: str, nearest: float):
        super().__init__(message)
        self.nearest = float(nearest)


def _unreachable(what: str, fraction: float, nearest: float, tol: float, hint: str = "") -> TargetUnreachable:
    return TargetUnreachable(
        f"{what} cannot reach {fraction:g} x MACs within {tol:.0%}: the nearest achievable is "
        f"{nearest:.4f} x{hint}", nearest)


def ratio_resolution(widest: int) -> float:
    """A ratio spacing that no two width changes of layers of at most ``widest`` channels come closer than.

    A layer of ``n`` channels pruned at ratio ``r`` keeps a count that changes only where ``n * r`` (or
    ``n * (1 - r)``) crosses a whole or half number, whatever the rounding: at ratios ``a / (2n)``. Two different
    such fractions with ``n, m <= W`` differ by ``|a m - b n| / (2 n m) >= 1 / (2 W^2)``; half of that is
    returned, to leave room for float error and for the caps that keep one channel."""
    w = max(int(widest), 1)
    return 1.0 / (4.0 * w * w)


def search_ratio(probe: Callable[[float, float, int], int], base_macs: int, fraction: float, n_sets: int,
                 max_ratio: float, tol: float = DEFAULT_TOLERANCE, what: str = "channel pruning",
                 iters: int = 24, max_hint: Callable[[], str] | None = None,
                 resolution: float = 1e-7) -> MatchResult:
    """Find pruning ratios whose MACs are within ``tol`` of ``fraction x base_macs``.

    ``max_hint()``, when given, explains (from the network at ``max_ratio``) why the target is out of reach.
    ``probe(r_lo, r_hi, k)`` prunes a fresh copy with ratio ``r_hi`` on the
    first ``k`` of ``n_sets`` layer sets and ``r_lo`` on the rest, and returns
    its MACs (non-increasing in the ratios and in ``k``). The returned
    ``setting`` is ``(r_lo, r_hi, k)``.

    ``resolution``: the bisection of the uniform ratio stops once the two ratios are closer than this. For
    layers of at most ``W`` channels, :func:`ratio_resolution` gives a spacing below which two ratios cannot lie
    on two sides of more than one width change, so bisecting further only probes the same two networks again.
    """
    fraction = check_target(fraction)
    tol = check_tolerance(tol)
    target = fraction * base_macs
    steps: list[dict[str, Any]] = []
    cache: dict[tuple, int] = {}

    def run(r_lo: float, r_hi: float, k: int) -> int:
        key = (round(r_lo, 12), round(r_hi, 12), k)
        if key not in cache:
            cache[key] = int(probe(r_lo, r_hi, k))
            steps.append({"ratio": r_lo, "ratio_hi": r_hi, "k": k, "macs": cache[key]})
        return cache[key]

    m0 = run(0.0, 0.0, 0)
    if within(m0, target, tol):
        return MatchResult((0.0, 0.0, 0), m0, base_macs, target, steps)
    m_max = run(max_ratio, max_ratio, 0)
    if m_max > target * (1 + tol):
        raise _unreachable(what, fraction, m_max / base_macs, tol,
                           max_hint() if max_hint else " (every prunable layer is down to one channel; stem, "
                           "classifier and coupled channels are not pruned)")
    if within(m_max, target, tol):
        return MatchResult((max_ratio, max_ratio, 0), m_max, base_macs, target, steps)
    lo, hi = 0.0, max_ratio          # macs(lo) > target >= macs(hi)
    m_lo, m_hi = m0, m_max
    for _ in range(iters):
        mid = (lo + hi) / 2
        m = run(mid, mid, 0)
        if within(m, target, tol):
            return MatchResult((mid, mid, 0), m, base_macs, target, steps)
        if m > target:
            lo, m_lo = mid, m
        else:
            hi, m_hi = mid, m
        if hi - lo < resolution:
            break
    # the MACs jump from m_lo to m_hi between lo and hi: move layer sets one at a time
    a, b = 0, n_sets                 # macs(lo, hi, a) = m_lo > target ; macs(lo, hi, b) = m_hi
    best = min(((m_lo, (lo, lo, 0)), (m_hi, (hi, hi, 0))), key=lambda t: abs(t[0] - target))
    while b - a > 1:
        k = (a + b) // 2
        m = run(lo, hi, k)
        if abs(m - target) < abs(best[0] - target):
            best = (m, (lo, hi, k))
        if within(m, target, tol):
            return MatchResult((lo, hi, k), m, base_macs, target, steps)
        if m > target:
            a = k
        else:
            b = k
    raise _unreachable(what, fraction, best[0] / base_macs, tol,
                       " (the channel widths cannot be set finer; try a nearby target or a looser tolerance)")


class _Budget(Exception):
    pass


def search_unit_set(order: Sequence[Any], macs_without: Callable[[list[Any]], int], base_macs: int,
                    fraction: float, tol: float = DEFAULT_TOLERANCE, what: str = "depth pruning",
                    budget: int = 400, nearest: bool = False, start: int | None = None,
                    skip_idle: bool = False) -> MatchResult:
    """Choose units to remove, in ``order``, so the MACs land within ``tol`` of the target.

    ``macs_without(removed)`` returns the real MACs of the model without the
    listed units (so re-initialised or forced layers are accounted for).
    The result is the first feasible removal set in the method's priority
    order: a depth-first walk that removes the next unit in ``order`` unless
    that would take the MACs below ``(1 - tol) x target``, stops as soon as
    the MACs are within the window, and backtracks when a branch cannot reach
    it (its first path is the plain greedy walk). At most ``budget`` MACs
    evaluations are made. The returned ``setting`` is the list of removed
    units, in removal order.

    ``start``: the MACs with no unit removed, when they are not ``base_macs`` (a reassembly that changes the
    network whatever is removed, e.g. ``--transition replace``); ``skip_idle``: a removal that does not lower
    the MACs is not taken. When no set lands in the window: with ``nearest`` the nearest achievable model at or
    below the target (:func:`nearest_unit_set`, a ``note`` on the result says so); without,
    :class:`TargetUnreachable`.
    """
    fraction = check_target(fraction)
    tol = check_tolerance(tol)
    target = fraction * base_macs
    order = list(order)
    floor, ceil = target * (1 - tol), target * (1 + tol)
    steps: list[dict[str, Any]] = []
    memo: dict[tuple, int] = {}
    start = base_macs if start is None else int(start)
    near = [start]

    def cost(removed: list[Any]) -> int:
        key = tuple(sorted(map(str, removed)))
        if key not in memo:
            if len(memo) >= budget:
                raise _Budget()
            memo[key] = int(macs_without(list(removed)))
            steps.append({"removed": list(removed), "macs": memo[key]})
            if abs(memo[key] - target) < abs(near[0] - target):
                near[0] = memo[key]
        return memo[key]

    def walk(i: int, removed: list[Any], macs: int):
        if macs <= ceil:
            return removed, macs if macs >= floor else None
        if i >= len(order) or cost(removed + order[i:]) > ceil:
            return None             # even removing everything left is not enough
        for j in range(i, len(order)):
            after = cost(removed + [order[j]])
            if after < floor or (skip_idle and after >= macs):
                continue
            found = walk(j + 1, removed + [order[j]], after)
            if found is not None and found[1] is not None:
                return found
        return None

    smallest = cost(order)
    try:
        found = walk(0, [], start) if smallest <= ceil else None
    except _Budget:
        found = None
    if found is not None and found[1] is not None:
        return MatchResult(list(found[0]), int(found[1]), base_macs, target, steps)
    if nearest and order:
        res = nearest_unit_set(order, macs_without, base_macs, fraction, start=start)
        res.steps = steps + res.steps
        res.note = (f"{what}: whole units cannot reach {fraction:g} x MACs within {tol:.0%}; "
                    + ("took the nearest achievable at or below it, " if res.macs <= target else
                       "every unit set stays above it; took the smallest, ")
                    + f"{res.fraction:.4f} x ({len(res.setting)} unit(s) removed)")
        return res
    if smallest > ceil:
        hint = (" (every removable unit is already removed; the stem, the head and the units the "
                "reassembly must keep stay)")
        closest = smallest
    else:
        hint = " (the units are too coarse for this target; try a nearby target or a looser tolerance)"
        closest = near[0]
    raise _unreachable(what, fraction, closest / base_macs, tol, hint)


def _subset_sums(savings: Sequence[int], need: int, cap: int = 50000) -> dict[int, tuple[int, ...]]:
    """Achievable total savings (each once, first found in ``savings``' order) below ``need``, and the smallest
    ones at or above it. Sums below ``need`` are thinned to ``cap`` (one per bucket of need/cap) on large inputs."""
    sums: dict[int, tuple[int, ...]] = {0: ()}
    for i, s in enumerate(savings):
        for total, idx in list(sums.items()):
            t = total + int(s)
            if t not in sums:
                sums[t] = idx + (i,)
        over = sorted(t for t in sums if t >= need)
        for t in over[32:]:
            del sums[t]                  # only the few smallest sums over the need can be the answer
        if len(sums) > cap:
            width, kept = max(1, need // cap), {}
            for t in sorted(sums):
                key = t if t >= need else t // width
                kept.setdefault(key, t)
            sums = {t: sums[t] for t in kept.values()}
    return sums


def nearest_unit_set(order: Sequence[Any], macs_without: Callable[[list[Any]], int], base_macs: int,
                     fraction: float, checks: int = 24, start: int | None = None) -> MatchResult:
    """The removal set whose MACs are the largest at or below ``fraction x base_macs`` (the nearest model at or
    below the target); when every set stays above, removing every unit. Each unit's saving alone
    (``base - macs_without([u])``) makes a subset-sum problem solved over achievable sums; candidates are then
    checked with the real ``macs_without`` (savings need not add up exactly, e.g. after re-initialisation),
    and among equal MACs the set found first in ``order``'s priority wins. ``start``: the MACs with no unit
    removed, when they are not ``base_macs`` (savings are counted from there)."""
    order = list(order)
    start = base_macs if start is None else int(start)
    target = check_target(fraction) * base_macs
    steps: list[dict[str, Any]] = []

    def real(removed):
        m = int(macs_without(list(removed)))
        steps.append({"removed": list(removed), "macs": m})
        return m

    savings = [max(0, start - real([u])) for u in order]
    need = int(math.ceil(start - target))
    if need <= 0:
        return MatchResult([], start, base_macs, target, steps)
    sums = _subset_sums(savings, need)
    best = None
    for total in sorted(t for t in sums if t >= need)[:checks]:
        removed = [order[i] for i in sums[total]]
        m = real(removed)
        if m <= target and (best is None or m > best[1]):
            best = (removed, m)
    if best is None:                      # nothing at or below the target: the smallest model
        best = (order, real(order))
    return MatchResult(list(best[0]), int(best[1]), base_macs, target, steps)


