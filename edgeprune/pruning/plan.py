"""The layer-pruning plan: analysis of a trained checkpoint, and the choice of units to keep.

:func:`analyze` runs representations -> similarity -> Fisher segmentation ->
importance -> budget and returns the plan (a JSON-able dict) that
``edgeprune analyze`` writes and ``edgeprune prune --plan`` reads. A plan
records the model name and spec hash it was made for, so it cannot be
applied to another model.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import read_json
from ..errors import EdgepruneError
from edgeprune.export.runtime.schema import anything, boolean, integer, mapping, number, obj, opt, seq, text, validate

PLAN_FORMAT = "edgeprune-plan"
PLAN_VERSION = 1

_INDEX = integer(lo=0, hi=1 << 20)
# Every field that pruning, plots, summaries and the latency ladder read from a plan, with its type.
PLAN_SCHEMA = obj(
    format=text(choices=(PLAN_FORMAT,)),
    version=opt(integer()),
    kind=opt(text(choices=("module",))),    # "module": a plan of the traced-module path; absent: the spec path
    model=text(), spec_sha256=text(pattern="[0-9a-f]{64}"),
    seed=integer(),
    units=seq(obj(layer=_INDEX, position=_INDEX, removable=boolean(), role=text(), transition=opt(boolean())),
              nonempty=True, hi=1 << 16),
    similarity=obj(metric=text(), matrix=seq(seq(number())), batches=opt(integer(lo=0)),
                   batch_size=opt(integer(lo=0))),
    segments=obj(k=integer(lo=1), bounds=seq(seq(_INDEX, lo=2, hi=2), nonempty=True), auto=boolean()),
    importance=obj(proxy=text(), criterion=opt(text()), rule=opt(text()),
                   scores=mapping(number(), keys=lambda k: k.lstrip("-").isdigit())),
    keep=obj(counts=seq(integer(lo=0)), mode=text(), search=text()),
    kept_units=seq(_INDEX),
    transition=text(choices=("keep", "reinit", "replace")),   # replace: a --reference plan (resnet56)
    expected=obj(name=opt(text()), macs_before=number(lo=0), macs_after=number(lo=0),
                 params_before=number(lo=0), params_after=number(lo=0),
                 macs_reduction=number(), params_reduction=number()),
    timings=mapping(number()),
    checkpoint=opt(anything()), created=opt(text()),
)


def spec_hash(spec: dict[str, Any]) -> str:
    """sha256 of the spec's canonical JSON."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def blocks_of(plan_or_units, bounds) -> list[list[int]]:
    """Candidate (removable) unit layers of each block, in order."""
    units = plan_or_units["units"] if isinstance(plan_or_units, dict) else [u.to_dict() for u in plan_or_units]
    out = []
    for a, b in bounds:
        out.append([u["layer"] for u in units[a:b] if u["removable"]])
    return out


def choose_counts(spec, blocks, scores, *, keep=None, keep_units=None, target_macs=None, transition="keep",
                  tolerance=None):
    """(counts, mode, match) from at most one budget option; one unit per block by default.

    ``target_macs`` lands within ``tolerance`` (default 2%) of the target, as
    for every method of ``edgeprune prune``; ``match`` is then the
    :class:`~edgeprune.pruning.budget.MacsChoice` (its ``chosen`` units are
    the ones to keep), else None.
    """
    from .budget import check_counts, counts_for_macs_matched, counts_for_units, parse_keep
    from .macs_target import DEFAULT_TOLERANCE

    given = [n for n, v in (("--keep", keep), ("--keep-units", keep_units), ("--target-macs", target_macs)) if v is not None]
    if len(given) > 1:
        raise EdgepruneError(f"give only one of {', '.join(given)}")
    ranked = [sorted(b, key=lambda i: (scores[i], i)) for b in blocks]
    if keep is not None:
        return check_counts(parse_keep(keep), blocks), "keep", None
    if keep_units is not None:
        return counts_for_units(int(keep_units), blocks), "keep-units", None
    if target_macs is not None:
        tol = DEFAULT_TOLERANCE if tolerance is None else tolerance
        match = counts_for_macs_matched(spec, target_macs, ranked, scores, transition, tol)
        return match.counts, "target-macs", match
    return check_counts([1 if b else 0 for b in blocks], blocks), "default", None


def select_units(spec, state_dict, plan, counts, *, search="per-unit", scorer=None):
    """Kept unit layers per block for ``counts`` (per-unit ranking or the exhaustive search)."""
    from ..analysis.importance import SEARCHES, select_exhaustive, select_per_unit

    if search not in SEARCHES:
        raise EdgepruneError(f"unknown search {search!r}; choose one of: {', '.join(SEARCHES)}")
    blocks = blocks_of(plan, plan["segments"]["bounds"])
    scores = {int(k): float(v) for k, v in plan["importance"]["scores"].items()}
    if search == "per-unit" or not combination_search(plan["importance"].get("criterion", plan["importance"]["proxy"])):
        return select_per_unit(blocks, counts, scores), None
    if scorer is None:
        raise EdgepruneError("the exhaustive search needs the checkpoint and data to score combinations")
    chosen, best = select_exhaustive(blocks, counts, scorer)
    return chosen, best


def combination_search(criterion: str) -> bool:
    """Whether the exhaustive search scores combinations differently from summing unit scores."""
    from ..analysis.importance import PROXIES

    return criterion in PROXIES or criterion == "ablation"


def make_combo_scorer(ckpt, criterion: str, *, seed: int = 0, data=None, split=None, max_frames: int = 1024,
                      batch_size: int = 128):
    """The scorer of combinations for ``--search exhaustive`` (None for additive criteria)."""
    from ..analysis.importance import PROXIES, TransplantScorer, check_criterion

    check_criterion(criterion)
    if criterion in PROXIES:
        if criterion == "synflow-transplant":
            return TransplantScorer(ckpt.spec, ckpt.state_dict, criterion, seed=seed)
        if data is None:
            raise EdgepruneError(f"the exhaustive search with {criterion} needs --data")
        from ..data.split import resolve_split
        from ..analysis.representations import sample_batches

        (train, _, _), _ = resolve_split(ckpt, data, split)
        idx = sample_batches(len(train), 1, batch_size, seed)[0]
        return TransplantScorer(ckpt.spec, ckpt.state_dict, criterion, seed=seed, data_x=train.x[idx],
                                data_y=train.y[idx])
    if criterion != "ablation":
        return None
    if data is None:
        raise EdgepruneError("the exhaustive search with the ablation criterion needs --data")
    from ..data.split import resolve_split

    (train, val, _), _ = resolve_split(ckpt, data, split)
    part = val if len(val) else train
    return AblationComboScorer(ckpt.build(), part.x[:max_frames], part.y[:max_frames])


class AblationComboScorer:
    """Scores keeping ``combo`` of a block: the validation loss with the block's other units replaced."""

    def __init__(self, model, x, y, batch_size: int = 256):
        from ..analysis.criteria import _prepare

        self.model = model
        self.x, self.y = _prepare(model, {None: None}, x, y)
        self.batch_size = batch_size
        self.calls = 0

    def combo_key(self, combo, block) -> float:
        from ..analysis.criteria import ablation_of_set

        gone = {u: self.model.layers[u] for u in block if u not in combo}
        self.calls += 1
        return ablation_of_set(self.model, gone, self.x, self.y, None, self.batch_size)[0]


def select_for_budget(spec, state_dict, plan, counts, match, *, search="per-unit", scorer=None, transition="keep"):
    """Kept units per block for ``counts``; with a MACs ``match`` its units, unless the exhaustive search's
    choice (same counts, possibly other units) also lands in the MACs window."""
    from .macs_target import within
    from .reassembly import spec_macs

    if match is None:
        return select_units(spec, state_dict, plan, counts, search=search, scorer=scorer)
    if search == "per-unit" or match.rule == "units":
        return match.chosen, None
    chosen, best = select_units(spec, state_dict, plan, counts, search=search, scorer=scorer)
    macs = spec_macs(spec, [u for b in chosen for u in b], transition)
    if within(macs, match.target * match.base_macs, match.tolerance):
        return chosen, best
    return match.chosen, None


def analyze(ckpt, data=None, *, similarity: str = "cka-unbiased", segments="auto", max_segments: int | None = None,
            importance: str | None = None, batches: int = 5, batch_size: int = 128, seed: int = 0,
            keep=None, keep_units=None, target_macs=None, transition: str = "keep", search: str = "per-unit",
            split=None, max_frames: int = 1024, reference: bool = False, traced: bool | None = None) -> dict[str, Any]:
    """Analyse a checkpoint and return the plan.

    ``ckpt``: a Checkpoint or path; ``data``: a SignalDataset or path (the
    checkpoint's recorded split is reproduced). Similarity uses training
    frames; data-driven importance criteria use up to ``max_frames`` frames of
    the validation split (the training split when it is empty).
    ``reference=True``: the reference code's procedure
    (:mod:`edgeprune.pruning.reference`); it takes ``keep`` (counts per block)
    as its only budget. ``traced``: which implementation analyses a zoo spec model (see
    :func:`edgeprune.pruning.registry.route`; by default the traced-module path, as for the user's networks,
    unless a spec-only option is given).
    """
    if reference:
        from .reference import analyze_reference

        extra = [n for n, v in (("--keep-units", keep_units), ("--target-macs", target_macs),
                                ("--importance", importance), ("--similarity", None if similarity == "cka-unbiased"
                                                                 else similarity)) if v is not None]
        if extra:
            raise EdgepruneError(f"--reference runs the reference's own procedure and budget (--keep); "
                                 f"it does not take {', '.join(extra)}")
        return analyze_reference(ckpt, data, keep=keep, segments=segments, max_segments=max_segments, seed=seed,
                                 split=split)
    from ..importing import load_model_arg
    from .registry import route

    ck0 = load_model_arg(ckpt, "the model", data)
    if route("layer", ck0.spec, traced, {"search": search, "importance": importance, "transition": transition}):
        # the traced units, the same similarity, segmentation, criteria and budgets (user networks and the zoo)
        from ..checkpoint import checkpoint_as_recipe
        from .modular import module_analysis

        return module_analysis(checkpoint_as_recipe(ck0), data, split=split, similarity=similarity,
                               segments=segments, max_segments=max_segments, batches=batches,
                               batch_size=batch_size, seed=seed, transition=transition, importance=importance,
                               keep=keep, keep_units=keep_units, target_macs=target_macs, max_frames=max_frames)
    return _analyze_spec(ck0, data, similarity=similarity, segments=segments, max_segments=max_segments,
                         importance=importance, batches=batches, batch_size=batch_size, seed=seed, keep=keep,
                         keep_units=keep_units, target_macs=target_macs, transition=transition, search=search,
                         split=split, max_frames=max_frames)


def _spec_similarity(model, units, train, similarity, batches, batch_size, seed, timings):
    """(similarity matrix, the sampled batches) of the units' outputs on training frames."""
    from ..analysis.representations import iter_unit_features, sample_batches
    from ..analysis.similarity import SimilarityAccumulator

    t0 = time.perf_counter()
    idx = sample_batches(len(train), batches, batch_size, seed)
    acc = SimilarityAccumulator(similarity)
    t_sim = 0.0
    for feats in iter_unit_features(model, [model.layers[u.layer] for u in units], train.x, idx):
        t1 = time.perf_counter()
        acc.add(feats)
        t_sim += time.perf_counter() - t1
    sim = acc.result()
    timings["representations_s"] = time.perf_counter() - t0 - t_sim
    timings["similarity_s"] = t_sim
    return sim, idx


def _spec_importance(ckpt, model, cand, importance, train, val, idx, seed, search, max_frames, batch_size):
    """The criterion's values, the keep keys, the exhaustive search's scorer (or None), and what it read."""
    from ..analysis.importance import PROXIES, TransplantScorer, criterion_values, keep_keys, unit_scores

    spec = ckpt.spec
    scorer = None
    if importance in PROXIES:
        data_idx = idx[0]
        scorer = TransplantScorer(spec, ckpt.state_dict, importance, seed=seed,
                                  data_x=train.x[data_idx], data_y=train.y[data_idx])
        values = unit_scores(scorer, cand)
        imp_split, imp_frames = ("none", 0) if importance == "synflow-transplant" else ("train", len(data_idx))
    else:
        part, imp_split = (val, "val") if len(val) else (train, "train")
        xs, ys = part.x[:max_frames], part.y[:max_frames]
        values = criterion_values(importance, model, {u: model.layers[u] for u in cand}, order=cand, x=xs, y=ys,
                                  input_shape=tuple(spec["input"]), batch_size=batch_size)
        imp_frames = 0 if importance in ("synflow", "reverse") else len(xs)
        if search == "exhaustive" and importance == "ablation":
            scorer = AblationComboScorer(model, xs, ys)
    return values, keep_keys(importance, values), scorer, imp_split, imp_frames


def _spec_budget(ckpt, plan, seg, scores, scorer, *, keep, keep_units, target_macs, transition, search):
    """The plan's keep/blocks/kept_units/expected fields under the budget option."""
    from ..models.macs import model_stats
    from .reassembly import plan_layers

    spec = ckpt.spec
    blocks = blocks_of(plan, seg.bounds)
    counts, mode, match = choose_counts(spec, blocks, scores, keep=keep, keep_units=keep_units,
                                        target_macs=target_macs, transition=transition)
    chosen, best = select_for_budget(spec, ckpt.state_dict, plan, counts, match, search=search, scorer=scorer,
                                     transition=transition)
    kept = sorted(u for b in chosen for u in b)
    before = model_stats(spec)
    new_spec, _, rep = plan_layers(spec, kept, transition)
    after = model_stats(new_spec)
    return {
        "keep": {"mode": mode, "counts": counts, "search": search, "target_macs": target_macs,
                 "exhaustive_scores": best, "match": match.summary() if match is not None else None},
        "blocks": [{"bounds": list(b), "candidates": c, "kept": k} for b, c, k in zip(seg.bounds, blocks, chosen)],
        "kept_units": kept,
        "transition": transition,
        "expected": {"name": new_spec["name"], "macs_before": before["macs"], "macs_after": after["macs"],
                     "params_before": before["params"], "params_after": after["params"],
                     "macs_reduction": 1 - after["macs"] / before["macs"],
                     "params_reduction": 1 - after["params"] / before["params"],
                     "units_after": rep["units_after"], "forced": rep["forced"], "reinit": rep["reinit"]},
    }


def _analyze_spec(ckpt, data, *, similarity, segments, max_segments, importance, batches, batch_size, seed, keep,
                  keep_units, target_macs, transition, search, split, max_frames) -> dict[str, Any]:
    """The spec path's analysis (the zoo's own implementation): similarity, segmentation, importance, budget."""
    from ..analysis.importance import CRITERIA, DEFAULT_CRITERION, check_criterion
    from ..analysis.segmentation import column_sums, default_max_segments, segment
    from ..analysis.similarity import check_metric
    from ..analysis.units import discover_units
    from ..data.split import resolve_split
    from .reassembly import TRANSITION_MODES

    check_metric(similarity)
    importance = check_criterion(importance or DEFAULT_CRITERION)
    if transition not in TRANSITION_MODES:
        raise EdgepruneError(f"transition must be one of {', '.join(TRANSITION_MODES)}")
    spec = ckpt.spec
    units = discover_units(spec)
    if not any(u.removable for u in units):
        raise EdgepruneError(f"model {spec['name']!r} has no removable units")
    if data is None:
        raise EdgepruneError("the analysis needs data (--data)")
    (train, val, _), split_info = resolve_split(ckpt, data, split)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    model = ckpt.build()
    sim, idx = _spec_similarity(model, units, train, similarity, batches, batch_size, seed, timings)

    t0 = time.perf_counter()
    if max_segments is None:
        max_segments = default_max_segments(len(units), spec["name"])
    seg = segment(column_sums(sim), segments, max_segments)
    timings["segmentation_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    cand = [u.layer for u in units if u.removable]
    values, scores, scorer, imp_split, imp_frames = _spec_importance(ckpt, model, cand, importance, train, val, idx,
                                                                     seed, search, max_frames, batch_size)
    timings["importance_s"] = time.perf_counter() - t0

    plan: dict[str, Any] = {
        "format": PLAN_FORMAT, "version": PLAN_VERSION,
        "model": spec["name"], "spec_sha256": spec_hash(spec),
        "checkpoint": {"path": str(ckpt.path) if ckpt.path else None, "sha256": ckpt.sha256()},
        "seed": int(seed),
        "units": [u.to_dict() for u in units],
        "similarity": {"metric": similarity, "batches": len(idx), "batch_size": int(len(idx[0])),
                       "split": split_info, "matrix": sim.round(6).tolist()},
        "segments": seg.to_dict(),
        "importance": {"criterion": importance, "proxy": importance, "measures": CRITERIA[importance][0],
                       "rule": "highest value kept" if CRITERIA[importance][1] else "lowest value kept",
                       "split": imp_split, "frames": int(imp_frames),
                       "values": {str(k): float(v) for k, v in values.items()},
                       "scores": {str(k): v for k, v in scores.items()}},
    }
    t0 = time.perf_counter()
    plan.update(_spec_budget(ckpt, plan, seg, scores, scorer, keep=keep, keep_units=keep_units,
                             target_macs=target_macs, transition=transition, search=search))
    timings["selection_s"] = time.perf_counter() - t0
    timings["analysis_s"] = time.perf_counter() - t_all - timings["selection_s"]
    plan.update({"timings": {k: round(v, 4) for k, v in timings.items()},
                 "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return plan


def save_plan(path, plan: dict[str, Any]) -> None:
    from ..atomic import write_json

    write_json(path, plan)


def load_plan(path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise EdgepruneError(f"plan {path} does not exist")
    plan = read_json(path, f"plan {path}")
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        raise EdgepruneError(f"{path} is not an edgeprune plan")
    return validate_plan(plan, f"plan {path}")


def validate_plan(plan: Any, where: str = "plan") -> dict[str, Any]:
    """Check ``plan`` against PLAN_SCHEMA and its cross-references (segments cover the units in order,
    kept units are units, at least one, each once); raise EdgepruneError naming the first problem."""
    validate(plan, PLAN_SCHEMA, where)
    n = len(plan["units"])
    pos = 0
    for a, b in plan["segments"]["bounds"]:
        if a != pos or b <= a or b > n:
            raise EdgepruneError(f"{where}: 'segments.bounds' must cover the {n} units in order with non-empty "
                                 f"blocks (got {plan['segments']['bounds']})")
        pos = b
    if pos != n:
        raise EdgepruneError(f"{where}: 'segments.bounds' end at {pos}, not at the last unit ({n})")
    if not plan["kept_units"]:
        # edgeprune never writes such a plan (--keep refuses to keep no unit): it would prune every removable
        # unit, a network no budget asked for
        raise EdgepruneError(f"{where}: 'kept_units' is empty: a plan keeps at least one unit (edgeprune plans "
                             f"never keep none; re-run edgeprune analyze)")
    if len(set(plan["kept_units"])) != len(plan["kept_units"]):
        raise EdgepruneError(f"{where}: 'kept_units' names a unit twice")
    layers = {u["layer"] for u in plan["units"]}
    stray = [u for u in plan["kept_units"] if u not in layers]
    if stray:
        raise EdgepruneError(f"{where}: 'kept_units' names layers that are not units: {stray[:5]}")
    return plan


def check_plan(plan: dict[str, Any], spec: dict[str, Any], where: str = "plan") -> None:
    """A clear error when ``plan`` is damaged or was made for another model."""
    validate_plan(plan, where)
    if plan["model"] != spec["name"] or plan["spec_sha256"] != spec_hash(spec):
        raise EdgepruneError(f"the plan was made for model {plan['model']!r} (spec {plan['spec_sha256'][:12]}), "
                             f"not for this checkpoint's {spec['name']!r} (spec {spec_hash(spec)[:12]})")


def plan_summary(plan: dict[str, Any]) -> str:
    e = plan["expected"]
    lines = [f"plan for {plan['model']}: {len(plan['units'])} units, similarity {plan['similarity']['metric']}, "
             f"importance {plan['importance']['proxy']} ({plan['keep']['search']})",
             f"segments (K={plan['segments']['k']}{', auto' if plan['segments']['auto'] else ''}): "
             + " ".join(f"[{a}-{b - 1}]" for a, b in plan["segments"]["bounds"]),
             f"keep {plan['keep']['counts']} ({plan['keep']['mode']}) -> units {plan['kept_units']} "
             f"(transition {plan['transition']})",
             f"MACs {e['macs_before']:,} -> {e['macs_after']:,} (-{100 * e['macs_reduction']:.1f}%), "
             f"params {e['params_before']:,} -> {e['params_after']:,} (-{100 * e['params_reduction']:.1f}%)",
             "time " + ", ".join(f"{k[:-2]} {v:.2f}s" for k, v in plan["timings"].items())]
    return "\n".join(lines)


def as_array(matrix) -> np.ndarray:
    return np.asarray(matrix, dtype=np.float64)
