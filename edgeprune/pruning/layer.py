"""The paper's layer pruning as the ``layer`` method of ``edgeprune prune``, on the traced units of any network.

With a plan (from ``edgeprune analyze``) its kept units are used, or, when a budget option is given, re-chosen
from its segments and importance scores (:func:`edgeprune.pruning.modular.plan_layer_method`). Without a plan the
analysis runs first (it needs data). ``reference``, or a plan made with it, runs the reference's procedure and
reassembly (:mod:`edgeprune.pruning.reference`).
"""

from __future__ import annotations

from ..errors import EdgepruneError
from .macs_target import DEFAULT_TOLERANCE, check_tolerance
from .modular import _no_options, given_plan, plan_layer_method
from .reference import reference_plan, reference_result
from .registry import PruneResult, builtin_method


@builtin_method("layer")   # help and options: edgeprune.pruning.catalogue
def layer_method(ckpt, data, *, target_macs=None, seed: int = 0, transition: str | None = None,
                 similarity: str = "cka-unbiased", segments="auto", max_segments=None, batches: int = 5,
                 batch_size: int = 128, tolerance=None, importance: str | None = None, search=None, plan=None,
                 keep=None, keep_units=None, reference: bool = False, **options) -> PruneResult:
    """Prune whole units of ``ckpt`` (a module recipe). A given ``plan`` (a path or a dict) is user input: a
    malformed one gives one EdgepruneError, never a KeyError or TypeError from deep inside."""
    tol = check_tolerance(DEFAULT_TOLERANCE if tolerance is None else tolerance)
    _no_options(options, "layer")
    if reference:
        plan = reference_plan(ckpt, data, plan=plan, keep=keep, keep_units=keep_units, target_macs=target_macs,
                              transition=transition, segments=segments, max_segments=max_segments, seed=seed)
        return reference_result(ckpt, plan, None, seed, tol)
    if plan is None:
        return plan_layer_method(ckpt, data, target_macs=target_macs, seed=seed, transition=transition,
                                 similarity=similarity, segments=segments, max_segments=max_segments,
                                 batches=batches, batch_size=batch_size, tol=tol, importance=importance,
                                 search=search, keep=keep, keep_units=keep_units)
    try:
        plan, plan_ref = given_plan(ckpt, plan, importance)
        if plan.get("reference"):
            if any(v is not None for v in (keep, keep_units, target_macs)):
                raise EdgepruneError("this plan was made by --reference: its budget is fixed; run "
                                     "'edgeprune analyze --reference --keep ...' for another one")
            return reference_result(ckpt, plan, plan_ref, seed, tol)
        return plan_layer_method(ckpt, data, plan=plan, plan_ref=plan_ref, target_macs=target_macs, seed=seed,
                                 transition=transition, tol=tol, search=search, keep=keep, keep_units=keep_units)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise EdgepruneError(f"the plan is damaged or malformed ({type(exc).__name__}: {first}); "
                             f"make a new one with 'edgeprune analyze'") from exc
