"""Random-units baseline: remove uniformly random removable units to the same MACs budget.

The removal order is a permutation of the removable units drawn from
``numpy.random.default_rng(seed)``; the matched-MACs walk
(:func:`edgeprune.pruning.macs_target.search_unit_set`) removes units in that
order, skipping any whose removal would undershoot the budget. The kept units
are reassembled by the layer-pruning machinery (trained weights kept), so the
only difference from the informed methods is which units go.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import EdgepruneError
from .macs_target import DEFAULT_TOLERANCE, check_target, match_depth
from .registry import PruneResult, builtin_method


def random_order(spec: dict[str, Any], seed: int = 0) -> list[int]:
    """The removable units' layer indices in a seeded random order."""
    from ..analysis.units import removable_units

    layers = [u.layer for u in removable_units(spec)]
    perm = np.random.default_rng(int(seed)).permutation(len(layers))
    return [layers[i] for i in perm]


@builtin_method("random")   # help and options: edgeprune.pruning.catalogue
def random_units(ckpt, data=None, *, target_macs=None, seed: int = 0, tolerance: float | None = None,
                 transition: str | None = None, **options) -> PruneResult:
    """Remove random units until ``target_macs x`` the MACs (within the tolerance)."""
    if target_macs is None:
        raise EdgepruneError("random needs --target-macs F (a fraction of the model's MACs in (0, 1])")
    fraction = check_target(target_macs)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise EdgepruneError(f"seed must be an integer, got {seed!r}")
    tol = DEFAULT_TOLERANCE if tolerance is None else tolerance
    transition = transition or "keep"
    order = random_order(ckpt.spec, seed)
    new_spec, new_state, report, match = match_depth(ckpt.spec, ckpt.state_dict, order, fraction, tol,
                                                     transition, seed, what="random units")
    info: dict[str, Any] = {"order": order, "match": match.summary(), "search": match.steps, "reassembly": report}
    if match.note:
        info["notes"] = [match.note]
    unused = sorted(k for k, v in options.items() if v is not None)
    if unused:
        info["ignored_options"] = unused
    lineage = {
        "method": "random",
        "options": {"tolerance": tol, "transition": transition},
        "seed": int(seed),
        "target_macs": fraction,
        "macs_before": int(report["macs_before"]),
        "macs_after": int(report["macs_after"]),
        "removed_units": list(match.setting),
        "kept_units": report.get("kept_units"),
    }
    return PruneResult(new_spec, new_state, lineage, info)
