"""Budgets for layer pruning: how many units each block keeps.

- ``--keep 1,1,1,1``: explicit counts per block;
- ``--keep-units N``: N units in all, spread over blocks in proportion to
  their number of candidates (largest remainders), at least one per block;
- ``--target-macs F``: keep at most F x the baseline MACs. Every block starts
  with its best unit; then units are added one at a time, to the block with
  the smallest kept fraction first (ties: the lower importance score), while
  the reassembled network stays within the budget. Unreachable targets (below
  what stem, head, transitions and one unit per block cost) are an error.

Candidates of a block are its removable units (not the stem, not the ResNet
stage transitions that the reassembly keeps anyway), ranked by importance.
"""

from __future__ import annotations

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
    """Per-block counts keeping at most ``target`` x baseline MACs; returns (counts, MACs)."""
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
