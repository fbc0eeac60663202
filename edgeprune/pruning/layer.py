"""The paper's layer pruning as the ``layer`` method of ``edgeprune prune``.

With a plan (from ``edgeprune analyze``) its kept units are used, or, when a
budget option is given, re-chosen from its segments and importance scores.
Without a plan the analysis runs first (it needs data).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import EdgepruneError
from .registry import PruneResult, builtin_method


@builtin_method("layer")   # help and options: edgeprune.pruning.catalogue
def layer_prune(ckpt, data=None, **kwargs) -> PruneResult:
    """Prune whole units of ``ckpt``; returns the reassembled spec, weights and lineage.

    Takes the options of :func:`_layer_prune`. A given ``plan`` (a path or a
    dict) is user input: a malformed one gives one EdgepruneError, never a
    KeyError or TypeError from deep inside.
    """
    if kwargs.get("plan") is None:
        return _layer_prune(ckpt, data, **kwargs)
    try:
        return _layer_prune(ckpt, data, **kwargs)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise EdgepruneError(f"the plan is damaged or malformed ({type(exc).__name__}: {first}); "
                             f"make a new one with 'edgeprune analyze'") from exc


def _layer_prune(ckpt, data=None, *, target_macs: float | None = None, seed: int = 0, plan=None, keep=None,
                keep_units: int | None = None, transition: str | None = None, similarity: str = "cka-unbiased",
                segments="auto", max_segments: int | None = None, importance: str | None = None,
                search: str = "per-unit", batches: int = 5, batch_size: int = 128, tolerance: float | None = None,
                reference: bool = False, **options) -> PruneResult:
    """Prune whole units of ``ckpt``; returns the reassembled spec, weights and lineage.

    ``target_macs`` lands within ``tolerance`` (default 2%) of the target or
    raises naming the nearest achievable fraction, like the other methods.
    """
    from .plan import analyze, blocks_of, check_plan, choose_counts, load_plan, select_for_budget
    from .macs_target import DEFAULT_TOLERANCE, TargetUnreachable, check_tolerance
    from .reassembly import reassemble

    if options:
        raise EdgepruneError(f"the layer method does not take the option(s) {', '.join(sorted(options))}")
    tolerance = check_tolerance(DEFAULT_TOLERANCE if tolerance is None else tolerance)
    plan_ref = None
    budget_given = any(v is not None for v in (keep, keep_units, target_macs))
    if reference:
        if plan is not None:
            raise EdgepruneError("--reference makes its own plan: give --data (and --keep), not --plan")
        if data is None:
            raise EdgepruneError("layer pruning without --plan needs --data to analyse the model")
        if keep_units is not None or target_macs is not None:
            raise EdgepruneError("--reference takes the reference's budget, --keep (units per block), "
                                 "not --keep-units or --target-macs")
        if transition not in (None, "replace"):
            raise EdgepruneError("--reference builds the reference's transitions (replace); do not give --transition")
        plan = analyze(ckpt, data, keep=keep, segments=segments, max_segments=max_segments, seed=seed,
                       reference=True)
        budget_given = False
        transition = plan["transition"]
    elif plan is not None:
        if isinstance(plan, (str, Path)):
            from ..checkpoint import file_sha256

            plan_ref = {"path": str(plan), "sha256": file_sha256(plan)}
            plan = load_plan(plan)
        check_plan(plan, ckpt.spec)
        if plan.get("reference") and budget_given:
            raise EdgepruneError("this plan was made by --reference: its budget is fixed; run "
                                 "'edgeprune analyze --reference --keep ...' for another one")
        transition = transition or plan.get("transition") or "keep"
    else:
        transition = transition or "keep"
        if data is None:
            raise EdgepruneError("layer pruning without --plan needs --data to analyse the model")
        plan = analyze(ckpt, data, similarity=similarity, segments=segments, max_segments=max_segments,
                       importance=importance, batches=batches, batch_size=batch_size, seed=seed,
                       transition=transition, search=search)
    resegmented = match = None
    if budget_given:
        scores = {int(k): float(v) for k, v in plan["importance"]["scores"].items()}
        bounds = [tuple(b) for b in plan["segments"]["bounds"]]
        try:
            counts, mode, match = choose_counts(ckpt.spec, blocks_of(plan, bounds), scores, keep=keep,
                                                keep_units=keep_units, target_macs=target_macs,
                                                transition=transition, tolerance=tolerance)
        except TargetUnreachable as exc:
            # A MACs target can be out of reach because every block keeps a unit (low targets) or because
            # the blocks' units cannot sum to the window: segment the plan's similarity sequence into fewer
            # blocks (the same Fisher programme) until it fits; else name the nearest over all segmentations.
            if target_macs is None:
                raise
            counts, nearest = None, exc.nearest
            from .plan import as_array
            from ..analysis.segmentation import column_sums, segment as fisher_segment

            seq = column_sums(as_array(plan["similarity"]["matrix"]))
            for k in range(len(bounds) - 1, 0, -1):
                trial = [tuple(b) for b in fisher_segment(seq, k).bounds]
                try:
                    counts, mode, match = choose_counts(ckpt.spec, blocks_of(plan, trial), scores,
                                                        target_macs=target_macs, transition=transition,
                                                        tolerance=tolerance)
                except TargetUnreachable as inner:
                    nearest = min(nearest, inner.nearest, key=lambda f: abs(f - float(target_macs)))
                    continue
                resegmented = {"from": len(bounds), "to": k}
                bounds = trial
                break
            if counts is None:
                f = float(target_macs)
                if nearest > f * (1 + tolerance):
                    raise TargetUnreachable(
                        f"--target-macs {f:g} is unreachable for layer pruning: the smallest network it can build "
                        f"(one unit per block, 1 to {len(bounds)} blocks tried, plus stem, head and stage "
                        f"transitions) has {nearest:.4f} x the baseline MACs; use a larger target", nearest) from None
                raise TargetUnreachable(
                    f"layer pruning cannot reach {f:g} x MACs within {tolerance:.0%} (1 to {len(bounds)} blocks "
                    f"tried): the nearest achievable is {nearest:.4f} x; whole units are coarse steps of the MACs, "
                    f"so try a nearby target or a looser tolerance (--opt tolerance=0.05)", nearest) from None
        plan = dict(plan, segments=dict(plan["segments"], bounds=[list(b) for b in bounds], k=len(bounds)))
        scorer = None
        if search == "exhaustive":
            from .plan import make_combo_scorer

            scorer = make_combo_scorer(ckpt, plan["importance"].get("criterion", plan["importance"]["proxy"]),
                                       seed=plan["seed"], data=data)
        chosen, _ = select_for_budget(ckpt.spec, ckpt.state_dict, plan, counts, match, search=search,
                                      scorer=scorer, transition=transition)
        kept = sorted(u for b in chosen for u in b)
    else:
        counts, mode = plan["keep"]["counts"], plan["keep"]["mode"]
        kept = list(plan["kept_units"])
    new_spec, new_state, rep = reassemble(ckpt.spec, ckpt.state_dict, kept, transition=transition, seed=seed)
    summary = {k: plan[k] for k in ("model", "spec_sha256", "seed", "kept_units", "transition") if k in plan}
    if plan.get("reference"):
        summary["reference"] = {"chosen": plan["reference"]["chosen"],
                                "reference_shortcut": plan["reference"]["reference_shortcut"]}
    summary.update({"similarity": plan["similarity"]["metric"], "importance": plan["importance"]["proxy"],
                    "segments": plan["segments"]["bounds"], "counts": counts, "mode": mode})
    lineage = {
        "op": "prune", "method": "layer", "parent_sha256": ckpt.sha256(), "parent_model": ckpt.spec["name"],
        "plan": plan_ref if plan_ref else summary, "plan_summary": summary, "kept_units": rep["kept_units"],
        "forced": rep["forced"], "reinit": rep["reinit"], "transition": transition, "seed": seed,
        "resegmented": resegmented,
        "target_macs": None if target_macs is None else float(target_macs),
        "match": match.summary() if match is not None else None,
        "macs_before": rep["macs_before"], "macs_after": rep["macs_after"],
        "params_before": rep["params_before"], "params_after": rep["params_after"],
    }
    return PruneResult(spec=new_spec, state_dict=new_state, lineage=lineage, info={"plan": plan, "report": rep})
