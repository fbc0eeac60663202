"""Every pruning method on networks written as ``nn.Module`` code (module recipes).

Units come from tracing the forward (:mod:`edgeprune.models.trace`).
Removing a unit replaces it with identity (a stacked LSTM/GRU loses that
layer); with ``transition="reinit"`` shape-changing entries (not the stem or
the classifier) may be removed too, and every layer whose input shape then
changed is re-initialised for its new input (recorded in the recipe's edits
and the lineage). Channel methods run Torch-Pruning on the live module and
record the widths it set as module attributes (re-applied on load with
``tp.load_state_dict``). Every method lands within the tolerance (2%) of
``--target-macs`` or names the nearest fraction it can reach.

The layer method scores units with the same importance criteria as zoo
models (default ``ablation``, see :func:`unit_values`) and takes the same
budget options (``--keep``, ``--keep-units``, ``--target-macs``).
Departures from the spec path (the zoo's ResNet/VGG/CNN1D specs): the
reference's transplant proxies, ``--reference`` and the exhaustive search
are spec-only; the features of one layer of a stacked LSTM/GRU are the
stack's output (for similarity), and ``taylor``/``block-influence`` refuse
such layers.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from ..errors import EdgepruneError
from .macs_target import DEFAULT_TOLERANCE, check_target, check_tolerance, search_unit_set
from .registry import PruneResult

TRACED_TRANSITIONS = ("keep", "reinit")
ENTRY_ROLES = ("stem", "unit", "stack", "transition")   # traced entries a plan lists (similarity, segments)


def _trace(model, ckpt):
    from ..models.trace import discover_module_units

    return discover_module_units(model, (2, ckpt.length))


def candidates(res, transition: str = "keep") -> list:
    """Entries a layer method may remove (not yet probed: see :func:`probed_candidates`)."""
    if transition not in TRACED_TRANSITIONS:
        raise EdgepruneError(f"transition must be one of {', '.join(TRACED_TRANSITIONS)}, got {transition!r}")
    out = [u for u in res.units if u.removable]
    if transition == "reinit":
        out += [u for u in res.units if u.role == "transition" and u.kind in ("conv-group", "linear-group", "block")]
        out.sort(key=lambda u: u.position)
    return out


def probe_removal(ckpt, model, unit) -> str | None:
    """Why removing ``unit`` alone breaks ``model`` (its forward fails, or, unless layers are re-initialised, the
    result differs from the original with the unit bypassed); None when it works."""
    from .equivalence import check_layer_pruned

    try:
        _, _, net, rep = remove(ckpt, model, [unit], check=False)
        check_layer_pruned(model, net, [unit], (2, ckpt.length), reinit=rep["reinit"])
    except EdgepruneError as exc:
        return str(exc)
    return None


def probed_candidates(ckpt, model, res, transition: str = "keep") -> tuple[list, list[str]]:
    """The candidates whose removal, each alone, was probed with a forward pass (and the equivalence check)
    before any search uses them; those that break are dropped, each with one note."""
    out, notes = [], []
    for u in candidates(res, transition):
        why = probe_removal(ckpt, model, u)
        if why is None:
            out.append(u)
        else:
            notes.append(f"unit {u.name} dropped: removing it breaks the model ({why.split(': ', 1)[-1][:160]})")
    return out, notes


def remove(ckpt, model, units, seed: int = 0, check: bool = True):
    """Remove ``units`` (ModuleUnits of ``model``) from a copy: ``(recipe, state_dict, live model, report)``."""
    import torch

    from ..models.macs import count_macs
    from ..models.modular import apply_structure, build_recipe, edited, with_stats
    from ..models.surgery import repair_inputs

    net = copy.deepcopy(model)
    rnn_drop: dict[str, set] = {}
    removed: list[str] = []
    pooled: dict[str, list[int]] = {}
    for u in units:
        if u.kind == "rnn-layer":
            rnn_drop.setdefault(u.rnn, set()).add(u.rnn_layer)
        elif getattr(u, "bypass", "identity") == "pool":
            pooled[u.members[0]] = [int(v) for v in u.out_shape[1:]]
        else:
            removed += list(u.members)
    rnn_keep = {}
    for name, drop in rnn_drop.items():
        from ..models.modular import get_module

        n = get_module(net, name).num_layers
        keep = [i for i in range(n) if i not in drop]
        if keep:
            rnn_keep[name] = keep
        else:
            removed.append(name)
    apply_structure(net, {"rnn_layers": rnn_keep, "removed": removed, "pooled": pooled})
    example = torch.zeros((2, 2, ckpt.length))
    what = f"the model without {', '.join(u.name for u in units)}"
    try:
        repaired = repair_inputs(net, example, seed=seed)
        net.eval()
        with torch.no_grad():
            y = net(example)
    except EdgepruneError as exc:
        raise EdgepruneError(f"{what} fails its forward pass ({str(exc).split(' (', 1)[-1].rstrip(')')})") from exc
    except Exception as exc:  # noqa: BLE001 - the user's forward without the unit
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EdgepruneError(f"{what} fails its forward pass ({type(exc).__name__}: {first})") from exc
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != (2, len(ckpt.classes)) or not torch.isfinite(y).all():
        raise EdgepruneError(f"{what} fails its forward check")
    recipe = edited(ckpt.spec, removed=removed, rnn_layers=rnn_keep, reinit=sorted(repaired), attrs=repaired,
                    **({"pooled": pooled} if pooled else {}))
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    report = {"removed_units": [u.name for u in units], "reinit": sorted(repaired),
              "macs_after": int(count_macs(net, (2, ckpt.length)))}
    if check:
        rebuilt = build_recipe(recipe, state, where="the pruned model")
        with torch.no_grad():
            if not torch.allclose(rebuilt(example), y, atol=1e-5):
                raise EdgepruneError("the pruned model does not rebuild from its recipe (internal error)")
        recipe = with_stats(recipe, net)
    return recipe, state, net, report


def _macs_fn(ckpt, model, base_macs: int, transition: str):
    if transition == "keep":
        # identity replacement only: the MACs drop by exactly each unit's own MACs
        return lambda removed: base_macs - sum(u.macs for u in removed)

    def real(removed):
        try:
            return remove(ckpt, model, removed, check=False)[3]["macs_after"]
        except EdgepruneError:
            return base_macs   # not a working network: counts as no reduction, so it is never chosen
    return real


def _match(ckpt, model, order, fraction, tol, transition, what):
    from ..models.macs import count_macs

    base = int(count_macs(model, (2, ckpt.length)))
    if transition == "reinit":
        # keep the entries whose removal alone leaves a working network that is cheaper
        fn = _macs_fn(ckpt, model, base, transition)
        order = [u for u in order if fn([u]) < base]
    if not order:
        _no_units(ckpt, transition)
    return search_unit_set(order, _macs_fn(ckpt, model, base, transition), base, fraction, tol, what=what,
                           nearest=True), base


def _no_units(ckpt, transition):
    raise EdgepruneError(f"model {ckpt.spec['name']!r} has no removable unit (see `edgeprune units`); "
                         f"layer pruning needs units whose output shape equals their input"
                         + ("" if transition == "reinit" else ", or try --transition reinit"))


def reach(cands, base: int, fraction, tol) -> dict[str, Any]:
    """What whole units can reach for ``fraction`` of ``base`` MACs, from the units' own MACs (before any
    analysis): ``{"window": bool, "nearest": fraction at or below the target (or the smallest), "note"}``.
    An error when there is no unit to remove."""
    from .macs_target import _subset_sums

    fraction, tol = check_target(fraction), check_tolerance(tol)
    target = fraction * base
    need = int(np.ceil(base - target))
    macs = [int(u.macs) for u in cands]
    if need <= 0:
        return {"window": True, "nearest": 1.0, "note": None}
    sums = _subset_sums(macs, int(np.floor(base - target * (1 + tol))))
    window = any(target * (1 - tol) <= base - t <= target * (1 + tol) for t in sums)
    over = sorted(t for t in _subset_sums(macs, need) if t >= need)
    nearest = (base - over[0]) / base if over else (base - sum(macs)) / base
    note = None if window else (f"whole units cannot reach {fraction:g} x MACs within {tol:.0%}: the nearest "
                                f"achievable {'at or below it' if over else '(every unit removed)'} is {nearest:.4f} x")
    return {"window": window, "nearest": nearest, "note": note}


def check_reach(ckpt, target_macs, tolerance, transition: str = "keep", probe: bool = False
                ) -> dict[str, Any] | None:
    """:func:`reach` of ``ckpt``'s traced candidates (``probe``: only those whose removal works), before any
    expensive analysis (None without a target). One error when nothing can be removed."""
    from ..models.macs import count_macs

    if target_macs is None:
        return None
    fraction = check_target(target_macs)
    tol = check_tolerance(DEFAULT_TOLERANCE if tolerance is None else tolerance)
    model = ckpt.build()
    res = _trace(model, ckpt)
    cands = probed_candidates(ckpt, model, res, transition)[0] if probe else candidates(res, transition)
    if not cands:
        _no_units(ckpt, transition)
    return reach(cands, int(count_macs(model, (2, ckpt.length))), fraction, tol)


def _result(ckpt, model, removed, match, method, seed, transition, extra, info=None):
    """The PruneResult of removing ``removed``; ``match`` is the MACs search (None under --keep/--keep-units).
    The pruned model must equal the original with the removed units bypassed (checked with hooks; refused if not)."""
    from .equivalence import check_layer_pruned

    recipe, state, net, rep = remove(ckpt, model, list(removed), seed=seed)
    equivalence = check_layer_pruned(model, net, list(removed), (2, ckpt.length), reinit=rep["reinit"], seed=seed)
    info = dict(info or {})
    notes = list(info.pop("notes", []))
    if match is not None and match.note and match.note not in notes:
        notes.append(match.note)
    if notes:
        info["notes"] = notes
    extra = {**extra, "equivalence": equivalence, **({"notes": notes} if notes else {})}
    from ..models.macs import count_macs

    base = int(count_macs(model, (2, ckpt.length)))
    entries = [u for u in _trace(model, ckpt).units if u.role in ENTRY_ROLES]
    gone = {u.name for u in removed}
    # the kept units by their plan position (a plan's "layer"), as the report draws them
    extra = {"kept_positions": [i for i, u in enumerate(entries) if u.removable and u.name not in gone], **extra}
    lineage = {"op": "prune", "method": method, "parent_sha256": ckpt.sha256(), "parent_model": ckpt.spec["name"],
               "seed": seed, "target_macs": None if match is None else match.target_macs / base,
               "macs_before": base, "macs_after": rep["macs_after"], "transition": transition,
               "removed_units": rep["removed_units"], "reinit": rep["reinit"], "kept_units": None, **extra}
    return PruneResult(recipe, state, lineage, {**({"match": match.summary()} if match else {}), **(info or {})})


def _features(model, names, x, batch_size: int = 256, feature: str = "pool", bins: int = 8):
    """Per name, the outputs (N, F) of that module on frames ``x``, featurised like DBP's probes."""
    import torch

    from ..models.modular import get_module
    from .dbp import featurize

    store: dict[str, list] = {n: [] for n in names}
    handles = []
    for n in names:
        def hook(mod, inp, out, n=n):
            y = out[0] if isinstance(out, tuple) else out
            store[n].append(featurize(y.detach(), feature, bins).reshape(y.shape[0], -1).numpy())
        handles.append(get_module(model, n).register_forward_hook(hook))
    model.eval()
    try:
        with torch.no_grad():
            for s in range(0, len(x), batch_size):
                model(torch.from_numpy(np.ascontiguousarray(x[s:s + batch_size])))
    finally:
        for h in handles:
            h.remove()
    return {n: np.concatenate(v) for n, v in store.items()}


def synflow_unit_scores(model, units, length: int) -> dict[str, float]:
    """SynFlow saliency of each unit's parameters in one pass over (a copy of) the whole trained network.

    As the ``synflow`` criterion of zoo models: parameters and floating buffers made non-negative, float64,
    two all-ones frames, BatchNorm in train mode (batch statistics), ``R = sum(output)``, score
    ``sum |theta * dR/dtheta|`` over the unit's parameters (for one layer of a stacked LSTM/GRU, that
    layer's weights). Other modules stay in eval mode, so dropout does not make the score random.
    """
    import math

    from ..analysis.criteria import synflow_backward
    from ..models.modular import get_module

    net = copy.deepcopy(model)
    synflow_backward(net, (2, length))
    scores = {}
    for u in units:
        total = 0.0
        if u.kind == "rnn-layer":
            mod = get_module(net, u.rnn)
            for pn, p in mod.named_parameters():
                if p.grad is not None and pn.split("_l")[-1].split("_")[0] == str(u.rnn_layer):
                    total += float((p.detach() * p.grad).abs().sum())
        else:
            for m in u.members:
                for p in get_module(net, m).parameters():
                    if p.grad is not None:
                        total += float((p.detach() * p.grad).abs().sum())
        scores[u.name] = total
    if not all(math.isfinite(v) for v in scores.values()):
        raise EdgepruneError("the synflow score overflowed for this model; choose another --importance criterion")
    return scores


def unit_values(criterion: str, ckpt, model, units, x=None, y=None, batch_size: int = 256) -> dict[str, float]:
    """The values of importance criterion ``criterion`` (``edgeprune analyze --importance``) for traced ``units``.

    The same criteria as for zoo models (:mod:`edgeprune.analysis.criteria`): a unit that is a chain of modules
    (a Conv-BN-ReLU group) is replaced as one piece, from its first module's input to its last module's output.
    For ``ablation`` one layer of a stacked LSTM/GRU is really removed (the stack loses that layer, as layer
    pruning does) and the loss measured; ``taylor`` and ``block-influence`` need a unit's own input and output,
    which a fused LSTM/GRU stack does not expose per layer, so they refuse such units. The transplant proxies
    (``synflow-transplant``, ``gradnorm``, ``snip``) are the reference's procedure on zoo spec models only.
    """
    from ..analysis import criteria as C
    from ..analysis.importance import criterion_values, get_criterion
    from ..models.modular import get_module

    if get_criterion(criterion).transplant:
        raise EdgepruneError(f"--importance {criterion} is the reference's transplant proxy for zoo spec models; "
                             f"for this network use ablation, taylor, block-influence, synflow or reverse")
    names = [u.name for u in units]
    if criterion == "reverse":
        return C.reverse_scores(sorted(names, key=lambda n: next(u.position for u in units if u.name == n)))
    if criterion == "synflow":
        return synflow_unit_scores(model, units, ckpt.length)
    from torch import nn

    # recurrent units (one layer of a stack, or a whole LSTM/GRU whose output is a tuple) are measured by removal
    rnn = [u for u in units if u.kind == "rnn-layer" or getattr(u, "bypass", "identity") == "pool"
           or any(isinstance(get_module(model, m), nn.RNNBase) for m in u.members)]
    # a unit of one module is that module; a chain of several is their tuple (see analysis.criteria)
    chains = {u.name: (tuple(get_module(model, m) for m in u.members) if len(u.members) > 1
                       else get_module(model, u.members[0])) for u in units if u not in rnn}
    if rnn and criterion != "ablation":
        raise EdgepruneError(f"--importance {criterion} needs each unit's own input and output of one shape, "
                             f"which the unit {rnn[0].name} (an LSTM/GRU layer or a pooling stack) does not have; "
                             f"use ablation (the default), synflow or reverse")
    values = {}
    if chains:
        values.update(criterion_values(criterion, model, chains, order=[n for n in names if n in chains], x=x, y=y,
                                       input_shape=(2, ckpt.length), batch_size=batch_size))
    if rnn:
        xt, yt = C._prepare(model, {u.name: None for u in rnn}, x, y)
        base, _ = C._evaluate(model, xt, yt, batch_size)
        for u in rnn:
            net = remove(ckpt, model, [u], check=False)[2]
            net.eval()
            values[u.name] = C._evaluate(net, xt, yt, batch_size)[0] - base
    return {n: float(values[n]) for n in names}


def _blocks(cands, label: dict[str, int], n_segments: int) -> list[list]:
    """Removable units of each segment (possibly empty), in forward order."""
    out: list[list] = [[] for _ in range(n_segments)]
    for u in sorted(cands, key=lambda u: u.position):
        out[label[u.name]].append(u)
    return out


def choose_removal(ckpt, model, cands, label: dict[str, int], n_segments: int, scores: dict[str, float], *,
                   keep=None, keep_units=None, target_macs=None, tolerance=None, transition: str = "keep"):
    """The units to remove under at most one budget option: ``(removed, mode, match)``.

    ``scores``: keep keys (lower = kept first). ``keep``: units kept per segment (``1,2,1``); ``keep_units``:
    that many in all, spread over the segments by size (at least one each); ``target_macs``: the fraction of
    the MACs, met within ``tolerance`` (2%) by removing the highest keys first, each segment's last unit
    last; none: one unit kept per segment (the lowest key).
    """
    from .budget import check_counts, counts_for_units, parse_keep

    given = [n for n, v in (("--keep", keep), ("--keep-units", keep_units), ("--target-macs", target_macs))
             if v is not None]
    if len(given) > 1:
        raise EdgepruneError(f"give only one of {', '.join(given)}")
    blocks = _blocks(cands, label, n_segments)
    if target_macs is not None:
        tol = check_tolerance(DEFAULT_TOLERANCE if tolerance is None else tolerance)
        match, _ = _match(ckpt, model, _removal_order(cands, label, scores), check_target(target_macs), tol,
                          transition, "layer pruning")
        return list(match.setting), "target_macs", match
    if not cands:
        _match(ckpt, model, [], 0.5, DEFAULT_TOLERANCE, transition, "layer pruning")   # the no-unit error
    ids = [[u.position for u in b] for b in blocks]
    if keep is not None:
        counts, mode = check_counts(parse_keep(keep), ids), "keep"
    elif keep_units is not None:
        if isinstance(keep_units, bool) or not isinstance(keep_units, int):
            raise EdgepruneError(f"--keep-units must be an integer, got {keep_units!r}")
        counts, mode = counts_for_units(int(keep_units), ids), "keep-units"
    else:
        counts, mode = [1 if b else 0 for b in blocks], "one per segment"
    kept = set()
    for c, b in zip(counts, blocks):
        kept.update(u.name for u in sorted(b, key=lambda u: (scores[u.name], u.position))[:c])
    return [u for u in cands if u.name not in kept], mode, None


def _removal_order(cands, label: dict[str, int], scores: dict[str, float]) -> list:
    """Highest keys first (lower = kept first); each segment's last candidate comes at the end of the walk,
    so every segment keeps a unit as long as the target allows."""
    by_seg: dict[int, list] = {}
    for u in cands:
        by_seg.setdefault(label.get(u.name, -1), []).append(u)
    head, tail = [], []
    for members in by_seg.values():
        ranked = sorted(members, key=lambda u: (-scores[u.name], u.position))
        head += ranked[:-1]
        tail += ranked[-1:]
    return sorted(head, key=lambda u: (-scores[u.name], u.position)) + sorted(tail, key=lambda u: -scores[u.name])


def module_analysis(ckpt, data, *, similarity: str = "cka-unbiased", segments="auto", max_segments=None,
                    batches: int = 5, batch_size: int = 128, seed: int = 0, transition: str = "keep",
                    importance: str | None = None, keep=None, keep_units=None, target_macs=None, tolerance=None,
                    max_frames: int = 1024, split=None) -> dict[str, Any]:
    """The layer method's analysis of a plain-module network, as a plan (the same format as a spec plan).

    Units are identified by their position in the traced order (``layer`` = position) and named. Similarity
    over the outputs of the stem, units and transitions on training frames; Fisher segments; the importance
    criterion (default ``ablation``) on up to ``max_frames`` validation frames of the checkpoint's split;
    then the kept units under the budget option (:func:`choose_removal`).
    """
    import time

    from ..analysis.importance import CRITERIA, DEFAULT_CRITERION, check_criterion, get_criterion, keep_keys
    from .plan import PLAN_FORMAT, spec_hash
    from ..analysis.segmentation import column_sums, segment
    from ..analysis.similarity import check_metric, similarity_matrix
    from ..data.split import resolve_split

    t0 = time.perf_counter()
    if data is None:
        raise EdgepruneError("layer pruning needs --data to measure the similarity of the units")
    check_metric(similarity)
    importance = check_criterion(importance or DEFAULT_CRITERION)
    (train, val, _), split_info = resolve_split(ckpt, data, split)
    model = ckpt.build()
    res = _trace(model, ckpt)
    if not candidates(res, transition):
        _no_units(ckpt, transition)
    cands, notes = probed_candidates(ckpt, model, res, transition)
    entries = [u for u in res.units if u.role in ENTRY_ROLES]
    if not cands:
        _no_units(ckpt, transition)
    rng = np.random.default_rng(seed)
    n = min(len(train), max(4, batches * batch_size))
    idx = np.sort(rng.permutation(len(train))[:n])
    feats = _features(model, sorted({u.output_module for u in entries}), train.x[idx])
    sim = similarity_matrix([feats[u.output_module] for u in entries], similarity)
    t1 = time.perf_counter()
    seg = segment(column_sums(sim), segments, max_segments or max(1, min(len(entries), 5)))
    label = {u.name: seg.labels()[i] for i, u in enumerate(entries)}
    part, imp_split = (val, "val") if len(val) else (train, "train")
    xs, ys = part.x[:max_frames], part.y[:max_frames]
    values = unit_values(importance, ckpt, model, cands, xs, ys, batch_size=max(batch_size, 256))
    scores = keep_keys(importance, values)
    t2 = time.perf_counter()
    removed, mode, match = choose_removal(ckpt, model, cands, label, len(seg.bounds), scores, keep=keep,
                                          keep_units=keep_units, target_macs=target_macs, tolerance=tolerance,
                                          transition=transition)
    if match is not None and match.note:
        notes.append(match.note)
    expected = _expected(ckpt, model, removed)
    pos = {u.name: i for i, u in enumerate(entries)}
    gone = {u.name for u in removed}
    kept = [pos[u.name] for u in cands if u.name not in gone and u.name in pos]
    imp_frames = len(xs) if get_criterion(importance).needs_frames else 0
    return {
        "format": PLAN_FORMAT, "kind": "module", "model": ckpt.spec["name"], "spec_sha256": spec_hash(ckpt.spec),
        "units": [{"layer": i, "position": i, "name": u.name, "role": u.role,
                   "removable": u in cands, "macs": u.macs} for i, u in enumerate(entries)],
        "similarity": {"metric": similarity, "matrix": sim.tolist(), "frames": int(n), "split": split_info},
        "segments": seg.to_dict(),
        "importance": {"criterion": importance, "proxy": importance, "measures": CRITERIA[importance][0],
                       "rule": "highest value kept" if CRITERIA[importance][1] else "lowest value kept",
                       "split": imp_split, "frames": int(imp_frames),
                       "values": {str(pos[u.name]): values[u.name] for u in cands if u.name in pos},
                       "scores": {str(pos[u.name]): scores[u.name] for u in cands if u.name in pos}},
        "kept_units": sorted(kept), "transition": transition, "seed": seed,
        "blocks": [{"bounds": list(bd), "candidates": [pos[u.name] for u in b],
                    "kept": [pos[u.name] for u in b if u.name not in gone]}
                   for bd, b in zip(seg.bounds, _blocks(cands, label, len(seg.bounds)))],
        "keep": {"counts": [sum(1 for u in b if u.name not in gone) for b in _blocks(cands, label, len(seg.bounds))],
                 "mode": mode, "search": "per-unit"},
        "expected": expected,
        "timings": {"similarity_s": round(t1 - t0, 4), "importance_s": round(t2 - t1, 4)},
        **({"notes": notes} if notes else {}),
    }


def _expected(ckpt, model, removed) -> dict[str, Any]:
    """MACs and params of ``model`` before and after removing ``removed`` (a plan's ``expected``)."""
    from ..models.macs import count_macs

    base = int(count_macs(model, (2, ckpt.length)))
    params_before = int(sum(p.numel() for p in model.parameters()))
    if removed:
        _, _, net, rep = remove(ckpt, model, removed, check=False)
        after, params_after = rep["macs_after"], int(sum(p.numel() for p in net.parameters()))
    else:
        after, params_after = base, params_before
    return {"macs_before": base, "macs_after": int(after), "macs_reduction": 1 - after / base,
            "params_before": params_before, "params_after": params_after,
            "params_reduction": 1 - params_after / params_before}


def layer_method(ckpt, data, *, target_macs=None, seed: int = 0, transition: str | None = None,
                 similarity: str = "cka-unbiased", segments="auto", max_segments=None, batches: int = 5,
                 batch_size: int = 128, tolerance=None, importance: str | None = None, search=None, plan=None,
                 keep=None, keep_units=None, reference: bool = False, **options) -> PruneResult:
    """The layer method on a traced network: a plan (given, or made by :func:`module_analysis`), then the
    units it keeps, or those re-chosen from its segments and scores under a budget option."""
    from pathlib import Path

    tol = check_tolerance(DEFAULT_TOLERANCE if tolerance is None else tolerance)
    _no_options(options, "layer")
    if reference:
        raise EdgepruneError("--reference runs the reference's procedure on the zoo's spec models (ResNet/VGG); "
                             "this network is traced: leave --reference out")
    if search not in (None, "per-unit"):
        raise EdgepruneError("the layer method on a traced network searches per unit (--search per-unit); the "
                             "exhaustive search is offered for zoo spec models")
    plan_ref = None
    budget_given = any(v is not None for v in (keep, keep_units, target_macs))
    if plan is not None:
        from .plan import check_plan, load_plan
        from edgeprune.export.runtime.safeio import file_sha256

        if isinstance(plan, (str, Path)):
            plan_ref = {"path": str(plan), "sha256": file_sha256(plan)}
            plan = load_plan(plan)
        if plan.get("kind") != "module":
            raise EdgepruneError("the plan was made for a zoo spec model, not for this plain-module network")
        check_plan(plan, ckpt.spec)
        if importance is not None and importance != plan["importance"].get("criterion", plan["importance"]["proxy"]):
            raise EdgepruneError(f"the plan was scored with {plan['importance'].get('criterion')!r}; make a new "
                                 f"plan for --importance {importance}")
        transition = transition or plan.get("transition") or "keep"
    else:
        transition = transition or "keep"
        check_reach(ckpt, target_macs, tol, transition)      # before the analysis: no units is one early error
        plan = module_analysis(ckpt, data, similarity=similarity, segments=segments, max_segments=max_segments,
                               batches=batches, batch_size=batch_size, seed=seed, transition=transition,
                               importance=importance)
    model, cands, label, pos, scores = _plan_context(ckpt, plan, transition)
    n_seg = len(plan["segments"]["bounds"])
    if budget_given:
        removed, mode, match = choose_removal(ckpt, model, cands, label, n_seg, scores, keep=keep,
                                              keep_units=keep_units, target_macs=target_macs, tolerance=tol,
                                              transition=transition)
    else:   # the plan's own kept units
        kept = {int(k) for k in plan["kept_units"]}
        removed, mode, match = [u for u in cands if pos[u.name] not in kept], plan["keep"]["mode"], None
    return _plan_result(ckpt, plan, plan_ref, model, cands, removed, match, mode, scores, seed, transition, tol)


def _plan_context(ckpt, plan, transition):
    """(model, candidates, segment of each unit, position of each entry, keep keys) of ``ckpt`` under ``plan``."""
    model = ckpt.build()
    res = _trace(model, ckpt)
    cands, _ = probed_candidates(ckpt, model, res, transition)
    entries = [u for u in res.units if u.role in ENTRY_ROLES]
    seg_of = []
    for i, (a, b) in enumerate(plan["segments"]["bounds"]):
        seg_of += [i] * (b - a)
    if len(seg_of) != len(entries):
        raise EdgepruneError("the plan does not match this network's traced units; make a new one with analyze")
    label = {u.name: seg_of[i] for i, u in enumerate(entries)}
    pos = {u.name: i for i, u in enumerate(entries)}
    try:
        scores = {u.name: float(plan["importance"]["scores"][str(pos[u.name])]) for u in cands}
    except KeyError as exc:
        raise EdgepruneError(f"the plan lacks a score for unit {exc}; make a new one with analyze "
                             f"(the same --transition)") from exc
    return model, cands, label, pos, scores


def _plan_result(ckpt, plan, plan_ref, model, cands, removed, match, mode, scores, seed, transition, tol):
    if not removed:
        raise EdgepruneError("this budget keeps every removable unit: nothing to prune")
    criterion = plan["importance"].get("criterion", plan["importance"]["proxy"])
    gone = {v.name for v in removed}
    extra = {"options": {"similarity": plan["similarity"]["metric"], "segments": plan["segments"],
                         "importance": criterion, "budget": mode, "tolerance": tol, "transition": transition},
             "scores": scores,
             "plan": plan_ref, "kept_units": [u.name for u in cands if u.name not in gone]}
    return _result(ckpt, model, removed, match, "layer", seed, transition, extra,
                   info={"plan": plan, "notes": list(plan.get("notes", []))})


def latency_ladder(ckpt, plan, transition: str = "keep", points: int = 40) -> list[dict[str, Any]]:
    """Candidate architectures for latency-targeted layer pruning, smallest MACs first.

    Candidate ``k`` removes the first ``k`` units of the layer method's removal order under ``plan`` (the
    order the ``--target-macs`` search walks); each is the live pruned network (``model``) with its MACs,
    weight layers and params, and the names of the units it removes.
    """
    from ..models.modular import model_stats_of

    from ..models.macs import count_macs

    model, cands, label, _, scores = _plan_context(ckpt, plan, transition)
    order = _removal_order(cands, label, scores)
    base = int(count_macs(model, (2, ckpt.length)))
    if transition == "reinit":
        fn = _macs_fn(ckpt, model, base, transition)
        order = [u for u in order if fn([u]) < base]
    ks = sorted(set(np.linspace(1, len(order), min(points, len(order))).round().astype(int).tolist())) if order else []
    out, seen = [], set()
    for k in ks:
        try:
            recipe, _, net, rep = remove(ckpt, model, order[:k], check=False)
        except EdgepruneError:
            continue
        st = model_stats_of(net, recipe)
        key = (st["macs"], st["weight_layers"])
        if key in seen:
            continue
        seen.add(key)
        out.append({"fraction": st["macs"] / base,
                    "removed": [u.name for u in order[:k]], "model": net.eval(), "macs": int(st["macs"]),
                    "layers": int(st["weight_layers"]), "params": int(st["params"])})
    if not out:
        raise EdgepruneError("no candidate architecture could be formed from the plan")
    out.sort(key=lambda c: c["macs"])
    return out


def prune_units(ckpt, plan, removed_names, *, seed: int = 0, transition: str = "keep") -> PruneResult:
    """The layer method's result for removing exactly the named units (the latency-targeted choice)."""
    model, cands, _, _, scores = _plan_context(ckpt, plan, transition)
    names = set(removed_names)
    removed = [u for u in cands if u.name in names]
    if len(removed) != len(names):
        raise EdgepruneError(f"unknown unit(s) {sorted(names - {u.name for u in removed})}")
    return _plan_result(ckpt, plan, None, model, cands, removed, None, "target-latency", scores, seed, transition,
                        DEFAULT_TOLERANCE)


def random_method(ckpt, data=None, *, target_macs=None, seed: int = 0, tolerance=None, transition: str | None = None,
                  **options) -> PruneResult:
    _no_options(options, "random")
    transition = transition or "keep"
    fraction = check_target(target_macs)
    tol = check_tolerance(DEFAULT_TOLERANCE if tolerance is None else tolerance)
    check_reach(ckpt, fraction, tol, transition)
    model = ckpt.build()
    cands, notes = probed_candidates(ckpt, model, _trace(model, ckpt), transition)
    order = [cands[i] for i in np.random.default_rng(seed).permutation(len(cands))]
    match, _ = _match(ckpt, model, order, fraction, tol, transition, "random unit pruning")
    return _result(ckpt, model, match.setting, match, "random", seed, transition,
                   {"options": {"tolerance": tol, "transition": transition}}, info={"notes": notes})


def dbp_method(ckpt, data, *, target_macs=None, seed: int = 0, tolerance=None, transition: str | None = None,
               probe_train: int = 2048, probe_val: int = 1024, probe_steps: int = 150, feature: str = "pool",
               bins: int = 8, gain_threshold=None, **options) -> PruneResult:
    """DBP on a traced network: a linear probe on every entry's output features (``feature`` pooled into ``bins``,
    as for zoo models), the units with the smallest accuracy gain over the entry before go first."""
    from ..data.split import resolve_split
    from .dbp import featurize, probe_accuracy

    _no_options(options, "dbp")
    if gain_threshold is not None:
        raise EdgepruneError("dbp's gain_threshold (no MACs target) is offered for zoo spec models; give "
                             "--target-macs for this network")
    steps = probe_steps
    transition = transition or "keep"
    fraction = check_target(target_macs)
    tol = check_tolerance(DEFAULT_TOLERANCE if tolerance is None else tolerance)
    if data is None:
        raise EdgepruneError("DBP needs data (--data) for its linear probes")
    check_reach(ckpt, fraction, tol, transition)
    (train, val, _), _ = resolve_split(ckpt, data)
    model = ckpt.build()
    res = _trace(model, ckpt)
    entries = [u for u in res.units if u.role in ENTRY_ROLES]
    cands, notes = probed_candidates(ckpt, model, res, transition)
    rng = np.random.default_rng([int(seed), 7])
    it = np.sort(rng.permutation(len(train))[:probe_train])
    iv = np.sort(rng.permutation(len(val))[:probe_val])
    names = sorted({u.output_module for u in entries})
    ft = _features(model, names, train.x[it], feature=feature, bins=bins)
    fv = _features(model, names, val.x[iv], feature=feature, bins=bins)
    import torch

    def inp(x):
        return featurize(torch.from_numpy(np.ascontiguousarray(x)), feature, bins).numpy()
    nc = len(ckpt.classes)
    prev = probe_accuracy(inp(train.x[it]), train.y[it], inp(val.x[iv]), val.y[iv], nc, steps=steps, seed=seed)
    gains = {}
    for u in entries:
        acc = probe_accuracy(ft[u.output_module], train.y[it], fv[u.output_module], val.y[iv], nc, steps=steps,
                             seed=seed)
        gains[u.name] = acc - prev
        prev = acc
    order = sorted(cands, key=lambda u: (gains[u.name], -u.position))
    match, _ = _match(ckpt, model, order, fraction, tol, transition, "DBP")
    return _result(ckpt, model, match.setting, match, "dbp", seed, transition,
                   {"options": {"tolerance": tol, "transition": transition, "feature": feature, "bins": bins,
                                "probe_train": probe_train,
                                "probe_val": probe_val, "probe_steps": steps}, "gains": gains},
                   info={"notes": notes})


def _no_options(options, method):
    unused = sorted(k for k, v in options.items() if v is not None)
    if unused:
        raise EdgepruneError(f"the {method} method on a plain-module network does not take {', '.join(unused)}")


def _plain(v):
    return isinstance(v, (int, float, bool, str)) or v is None or (
        isinstance(v, (tuple, list)) and all(isinstance(x, (int, float, bool, str)) for x in v))


def attribute_diff(before: dict, after: dict) -> dict[str, dict[str, Any]]:
    """Module attributes Torch-Pruning changed (from ``tp.state_dict(model)['attributions']``), plain values only."""
    out: dict[str, dict[str, Any]] = {}
    for name, attrs in after.items():
        old = before.get(name, {})
        diff = {k: (list(v) if isinstance(v, tuple) else v) for k, v in attrs.items()
                if _plain(v) and k in old and old[k] != v}
        if diff:
            out[name] = diff
    return out


def _slimming_start(ckpt, model, data, seed, sparsity, sparsity_epochs, info, lineage_opts) -> None:
    """Network slimming's first step on ``model`` in place: BN-sparsity training (see channel.sparsity_train)."""
    from torch import nn

    from .channel import sparsity_train

    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise EdgepruneError(f"channel-bn (network slimming) ranks channels by BatchNorm scales, and "
                             f"{ckpt.spec['name']!r} has no BatchNorm layer; use channel-l1, -l2 or -fpgm")
    sparsity = 1e-4 if sparsity is None else float(sparsity)
    sparsity_epochs = 3 if sparsity_epochs is None else int(sparsity_epochs)
    state, metrics = sparsity_train(ckpt, data, sparsity_epochs, sparsity, seed)
    model.load_state_dict(state)
    info["sparsity_training"] = metrics
    lineage_opts.update(sparsity=sparsity, sparsity_epochs=sparsity_epochs)


def _channel(criterion: str):
    def method(ckpt, data, **kw):
        from .channel_traced import traced_channel_method

        return traced_channel_method(criterion, ckpt, data, **kw)
    return method


MODULE_METHODS = {
    "layer": layer_method,
    "dbp": dbp_method,
    "random": random_method,
    "channel-l1": _channel("l1"),
    "channel-l2": _channel("l2"),
    "channel-fpgm": _channel("fpgm"),
    "channel-bn": _channel("bn"),
}


def module_method(name: str):
    if name not in MODULE_METHODS:
        raise EdgepruneError(f"method {name!r} is not available for plain-module networks; choose one of: "
                             f"{', '.join(MODULE_METHODS)}")
    return MODULE_METHODS[name]
