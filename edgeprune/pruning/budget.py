"""Budgets for layer pruning: how many units each block (segment) keeps.

- ``--keep 1,1,1,1``: explicit counts per block;
- ``--keep-units N``: N units in all, spread over blocks in proportion to
  their number of candidates (largest remainders), at least one per block.

``--target-macs F`` is met by the layer method's removal walk
(:func:`edgeprune.pruning.modular.choose_removal`).
"""

from __future__ import annotations

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


