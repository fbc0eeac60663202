"""Budgets for layer pruning: how many units each block keeps.

- ``--keep 1,1,1,1``: explicit counts per block;
- ``--keep-units N``: N units in all, spread over blocks in proportion to
  their number of candidates (largest remainders), at least one per block;
- ``--target-macs F``: land within 2% (the tolerance) of F x the baseline
  MACs, like every other method of ``edgeprune prune``
  (:func:`counts_for_macs_matched`). The paper's fill rule comes first
  (:func:`counts_for_macs` with the budget F x 1.02): every block starts with
  its best unit; then units are added one at a time, to the block with the
  smallest kept fraction first (ties: the lower importance score), while the
  reassembled network stays under the budget. When that fill stops below
  F x 0.98 (the units are coarse: one unit can be several percent of the
  MACs), the per-block counts nearest to the fill's (fewest units moved
  between blocks, then the MACs nearest F) that land in the window are
  taken; failing that, the matched-MACs removal walk over the fill order
  reversed, which may keep a lower-ranked unit of another size. Targets
  nothing reaches are an error naming the nearest achievable fraction
  (``edgeprune prune`` then also tries fewer Fisher blocks).

Candidates of a block are its removable units (not the stem, not the ResNet
stage transitions that the reassembly keeps anyway), ranked by importance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import EdgepruneError


def parse_keep(text) -> list[int]:
    """'1,1,1,1' -> [1, 1, 1, 1]."""
    if isinstance(text, (list, tuple)):
        parts = list(text)
    else:
        parts = [p for p in str(text).replace(" ", "").split(",") if p != ""]
    try:
        counts = [int(p) for p in parts]
    except (TypeError, ValueError) as exc:
        raise EdgepruneError(f"--keep must be comma-separated non-negative integers like 1,1,1,1, got {text!r}") from exc
    if not counts or any(c < 0 for c in counts):
        raise EdgepruneError(f"--keep must be comma-separated non-negative integers like 1,1,1,1, got {text!r}")
    return counts


def check_counts(counts: list[int], blocks: list[list[int]]) -> list[int]:
    """Validate per-block keep counts against the blocks' candidates."""
    if len(counts) != len(blocks):
        raise EdgepruneError(f"--keep gives {len(counts)} counts but the plan has {len(blocks)} blocks "
                             f"(sizes {[len(b) for b in blocks]})")
    for i, (c, b) in enumerate(zip(counts, blocks)):
        if c > len(b):
            raise EdgepruneError(f"--keep asks block {i + 1} to keep {c} units but it has only {len(b)} removable "
                                 f"unit(s) (block sizes {[len(b) for b in blocks]})")
    if sum(counts) == 0:
        raise EdgepruneError("--keep keeps no unit at all")
    return list(counts)


def counts_for_units(n: int, blocks: list[list[int]]) -> list[int]:
    """Spread ``n`` kept units over blocks in proportion to their sizes, >= 1 per non-empty block."""
    sizes = [len(b) for b in blocks]
    total = sum(sizes)
    nonempty = sum(1 for s in sizes if s)
    if not isinstance(n, int) or n < nonempty or n > total:
        raise EdgepruneError(f"--keep-units must lie between {nonempty} (one per block) and {total} "
                             f"(every removable unit), got {n}")
    counts = [1 if s else 0 for s in sizes]
    rest = n - sum(counts)
    extra = [s - c for s, c in zip(sizes, counts)]
    pool = sum(extra)
    if rest and pool:
        share = [rest * e / pool for e in extra]
        add = [int(v) for v in share]
        order = sorted(range(len(sizes)), key=lambda i: (-(share[i] - add[i]), i))
        for i in order[:rest - sum(add)]:
            add[i] += 1
        counts = [c + a for c, a in zip(counts, add)]
    return counts


def counts_for_macs(spec: dict[str, Any], target: float, ranked_blocks: list[list[int]], scores: dict[int, float],
                    transition: str = "keep", baseline_macs: int | None = None) -> tuple[list[int], int]:
    """Per-block counts keeping at most ``target`` x baseline MACs; returns (counts, MACs).

    The paper's fill rule (see the module docstring). It is the "at most"
    budget used by the latency ladder; ``--target-macs`` uses
    :func:`counts_for_macs_matched`, which starts from it.
    """
    from .reassembly import spec_macs

    try:
        target = float(target)
    except (TypeError, ValueError) as exc:
        raise EdgepruneError(f"--target-macs must be a fraction like 0.15, got {target!r}") from exc
    if not 0 < target <= 1:
        raise EdgepruneError(f"--target-macs is the fraction of the baseline MACs to keep, in (0, 1]; got {target}")
    if baseline_macs is None:
        from ..models.macs import model_stats

        baseline_macs = model_stats(spec)["macs"]
    budget = target * baseline_macs

    def kept(counts):
        return [u for b, c in zip(ranked_blocks, counts) for u in b[:c]]

    counts = [1 if b else 0 for b in ranked_blocks]
    macs = spec_macs(spec, kept(counts), transition)
    if macs > budget:
        raise EdgepruneError(
            f"--target-macs {target:g} is unreachable: the smallest network with one unit per block "
            f"(plus stem, head and stage transitions) has {macs:,} MACs = {macs / baseline_macs:.3f} of the baseline "
            f"{baseline_macs:,}; use a larger target or fewer blocks (--segments)")
    full = [len(b) == c for b, c in zip(ranked_blocks, counts)]
    while not all(full):
        order = sorted((i for i in range(len(counts)) if not full[i]),
                       key=lambda i: (counts[i] / len(ranked_blocks[i]), scores.get(ranked_blocks[i][counts[i]], 0.0), i))
        added = False
        for i in order:
            trial = list(counts)
            trial[i] += 1
            m = spec_macs(spec, kept(trial), transition)
            if m <= budget:
                counts, macs, added = trial, m, True
                full[i] = counts[i] == len(ranked_blocks[i])
                break
            full[i] = True
        if not added and all(full):
            break
    return counts, macs


@dataclass
class MacsChoice:
    """What ``--target-macs`` chose for the layer method.

    ``chosen``: the kept candidates of each block; ``rule``: ``fill`` (the
    paper's fill rule landed in the window), ``counts`` (the nearest per-block
    counts, each block keeping its best units) or ``units`` (the removal
    walk, which may keep a lower-ranked unit of a block in place of a
    higher-ranked one of another size).
    """

    counts: list[int]
    chosen: list[list[int]]
    macs: int
    base_macs: int
    target: float
    tolerance: float
    rule: str
    evaluations: int

    def summary(self) -> dict[str, Any]:
        return {"target_macs": self.target, "tolerance": self.tolerance, "macs": self.macs,
                "fraction": self.macs / self.base_macs, "relative_error": self.macs / (self.target * self.base_macs) - 1,
                "rule": self.rule, "evaluations": self.evaluations}


def fill_sequence(ranked_blocks: list[list[int]], scores: dict[int, float]) -> list[int]:
    """The order in which the fill rule adds units when the budget is unlimited (first: one per block)."""
    counts = [1 if b else 0 for b in ranked_blocks]
    seq = [b[0] for b in ranked_blocks if b]
    while True:
        open_ = [i for i in range(len(counts)) if counts[i] < len(ranked_blocks[i])]
        if not open_:
            return seq
        i = min(open_, key=lambda i: (counts[i] / len(ranked_blocks[i]), scores.get(ranked_blocks[i][counts[i]], 0.0), i))
        seq.append(ranked_blocks[i][counts[i]])
        counts[i] += 1


def counts_for_macs_matched(spec: dict[str, Any], target: float, ranked_blocks: list[list[int]],
                            scores: dict[int, float], transition: str = "keep", tolerance: float = 0.02,
                            max_evals: int = 3000) -> MacsChoice:
    """Kept units whose MACs lie within ``tolerance`` of ``target`` x baseline.

    1. The paper's fill rule with the budget ``target x (1 + tolerance)``.
    2. If that lands below the window: the per-block counts nearest to the
       fill's (breadth-first in the number of units moved, at most
       ``max_evals`` networks), each block keeping its best units; the vector
       in the window with the MACs nearest the target.
    3. If no counts land in the window: the matched-MACs removal walk
       (:func:`edgeprune.pruning.macs_target.search_unit_set`) over the fill
       order reversed (last added, first removed), every block keeping its
       best unit.

    Raises :class:`~edgeprune.pruning.macs_target.TargetUnreachable` naming the
    nearest achievable fraction when nothing lands in the window.
    """
    from ..models.macs import model_stats
    from .macs_target import TargetUnreachable, check_target, check_tolerance, search_unit_set
    from .reassembly import spec_macs

    target = check_target(target)
    tol = check_tolerance(tolerance)
    base = int(model_stats(spec)["macs"])
    goal = target * base
    floor, ceil = goal * (1 - tol), goal * (1 + tol)
    evals = [0]

    def macs_of(kept_units) -> int:
        evals[0] += 1
        return spec_macs(spec, list(kept_units), transition)

    def top(counts):
        return [b[:c] for b, c in zip(ranked_blocks, counts)]

    def choice(counts, chosen, macs, rule):
        return MacsChoice(list(counts), [sorted(c) for c in chosen], int(macs), base, target, tol, rule, evals[0])

    smallest = [1 if b else 0 for b in ranked_blocks]
    m_small = macs_of(u for b in top(smallest) for u in b)
    if m_small > ceil:
        raise TargetUnreachable(
            f"--target-macs {target:g} is unreachable: the smallest network with one unit per block "
            f"(plus stem, head and stage transitions) has {m_small:,} MACs = {m_small / base:.3f} of the baseline "
            f"{base:,}; use a larger target or fewer blocks (--segments)", m_small / base)
    start, m_start = counts_for_macs(spec, min(1.0, target * (1 + tol)), ranked_blocks, scores, transition,
                                     baseline_macs=base)
    if m_start >= floor:
        return choice(start, top(start), m_start, "fill")

    # 2. breadth-first over count vectors by L1 distance from the fill's counts
    sizes = [len(b) for b in ranked_blocks]
    seen = {tuple(start): m_start}
    nearest = m_start
    frontier = [tuple(start)]
    while frontier and evals[0] < max_evals:
        level: list[tuple[int, ...]] = []
        for c in frontier:
            for i in range(len(c)):
                for d in (1, -1):
                    v = c[i] + d
                    if v < smallest[i] or v > sizes[i]:
                        continue
                    t = c[:i] + (v,) + c[i + 1:]
                    if t not in seen:
                        seen[t] = macs_of(u for b in top(t) for u in b)
                        level.append(t)
        hits = [t for t in level if floor <= seen[t] <= ceil]
        if hits:
            best = min(hits, key=lambda t: (abs(seen[t] - goal), t))
            return choice(best, top(best), seen[best], "counts")
        nearest = min([nearest] + [seen[t] for t in level], key=lambda m: abs(m - goal))
        frontier = level

    # 3. the removal walk in the fill's reverse order; every block keeps its best unit
    candidates = [u for b in ranked_blocks for u in b]
    firsts = {b[0] for b in ranked_blocks if b}
    order = [u for u in reversed(fill_sequence(ranked_blocks, scores)) if u not in firsts]

    def without(removed) -> int:
        gone = set(removed)
        return macs_of(u for u in candidates if u not in gone)

    try:
        match = search_unit_set(order, without, base, target, tol, what="layer pruning")
    except TargetUnreachable as exc:
        near = min((nearest / base, exc.nearest), key=lambda f: abs(f - target))
        raise TargetUnreachable(
            f"layer pruning cannot reach {target:g} x MACs within {tol:.0%}: the nearest achievable with this "
            f"plan's blocks is {near:.4f} x (whole units are coarse steps of the MACs; try a nearby target or a "
            f"looser tolerance, --opt tolerance=0.05)", near) from None
    gone = set(match.setting)
    chosen = [[u for u in b if u not in gone] for b in ranked_blocks]
    return choice([len(c) for c in chosen], chosen, match.macs, "units")
