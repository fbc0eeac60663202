"""Every pruning method on networks written as ``nn.Module`` code (module recipes).

Units come from tracing the forward (:mod:`edgeprune.analysis.trace`).
Removing a unit replaces it with identity (a stacked LSTM/GRU loses that
layer); with ``transition="reinit"`` shape-changing entries (not the stem or
the classifier) may be removed too, and every layer whose input shape then
changed is re-initialised for its new input (recorded in the recipe's edits
and the lineage). Channel methods run Torch-Pruning on the live module and
record the widths it set as module attributes (re-applied on load with
``tp.load_state_dict``). Every method lands within the tolerance (2%) of
``--target-macs`` or names the nearest fraction it can reach.

Departures from the spec path (the zoo's ResNet/VGG/CNN1D specs): the
layer method scores each unit with SynFlow computed once on the whole
trained network (sum |theta * dR/dtheta| over the unit's parameters; the
lowest score is kept, as in the reference), not by transplanting the unit
into a random network; the features of one layer of a stacked LSTM/GRU are
the stack's output.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from ..errors import EdgepruneError
from .matching import DEFAULT_TOLERANCE, check_target, check_tolerance, search_ratio, search_unit_set
from .registry import PruneResult

TRANSITIONS = ("keep", "reinit")


def _trace(model, ckpt):
    from ..analysis.trace import discover_module_units

    return discover_module_units(model, (2, ckpt.length))


def candidates(res, transition: str = "keep") -> list:
    """Entries a layer method may remove."""
    if transition not in TRANSITIONS:
        raise EdgepruneError(f"transition must be one of {', '.join(TRANSITIONS)}, got {transition!r}")
    out = [u for u in res.units if u.removable]
    if transition == "reinit":
        out += [u for u in res.units if u.role == "transition" and u.kind in ("conv-group", "linear-group", "block")]
        out.sort(key=lambda u: u.position)
    return out


def remove(ckpt, model, units, seed: int = 0, check: bool = True):
    """Remove ``units`` (ModuleUnits of ``model``) from a copy: ``(recipe, state_dict, live model, report)``."""
    import torch

    from ..models.macs import count_macs
    from ..models.modular import apply_structure, build_recipe, edited, with_stats
    from ..models.surgery import repair_inputs

    net = copy.deepcopy(model)
    rnn_drop: dict[str, set] = {}
    removed: list[str] = []
    for u in units:
        if u.kind == "rnn-layer":
            rnn_drop.setdefault(u.rnn, set()).add(u.rnn_layer)
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
    apply_structure(net, {"rnn_layers": rnn_keep, "removed": removed})
    example = torch.zeros((2, 2, ckpt.length))
    repaired = repair_inputs(net, example, seed=seed)
    net.eval()
    with torch.no_grad():
        y = net(example)
    if tuple(y.shape) != (2, len(ckpt.classes)) or not torch.isfinite(y).all():
        raise EdgepruneError(f"the model without {', '.join(u.name for u in units)} fails its forward check")
    recipe = edited(ckpt.spec, removed=removed, rnn_layers=rnn_keep, reinit=sorted(repaired), attrs=repaired)
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
        raise EdgepruneError(f"model {ckpt.spec['name']!r} has no removable unit (see `edgeprune units`); "
                             f"layer pruning needs units whose output shape equals their input"
                             + ("" if transition == "reinit" else ", or try --transition reinit"))
    return search_unit_set(order, _macs_fn(ckpt, model, base, transition), base, fraction, tol, what=what), base


def _result(ckpt, model, match, base, method, seed, transition, extra, info=None):
    recipe, state, net, rep = remove(ckpt, model, list(match.setting), seed=seed)
    lineage = {"op": "prune", "method": method, "parent_sha256": ckpt.sha256(), "parent_model": ckpt.spec["name"],
               "seed": seed, "target_macs": match.target_macs / base, "macs_before": base,
               "macs_after": rep["macs_after"], "transition": transition, "removed_units": rep["removed_units"],
               "reinit": rep["reinit"], "kept_units": None, **extra}
    return PruneResult(recipe, state, lineage, {"match": match.summary(), **(info or {})})


def _features(model, names, x, batch_size: int = 256):
    """Per name, the flattened outputs (N, F) of that module on frames ``x``."""
    import torch

    from ..models.modular import get_module
    from .dbp import featurize

    store: dict[str, list] = {n: [] for n in names}
    handles = []
    for n in names:
        def hook(mod, inp, out, n=n):
            y = out[0] if isinstance(out, tuple) else out
            store[n].append(featurize(y.detach(), "pool", 8).reshape(y.shape[0], -1).numpy())
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
    """SynFlow saliency of each unit's parameters in one pass over the whole network (see the docstring)."""
    import torch

    from ..models.modular import get_module

    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad()
    with torch.enable_grad():
        net(torch.ones((1, 2, length), dtype=torch.float64)).sum().backward()
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
    return scores


def _removal_order(cands, label: dict[str, int], scores: dict[str, float]) -> list:
    """Highest scores first (the lowest is kept, as in the reference); each segment's last candidate comes at
    the end of the walk, so every segment keeps a unit as long as the target allows."""
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
                    target_macs=None, tolerance=None) -> dict[str, Any]:
    """The layer method's analysis of a plain-module network, as a plan (the same format as a spec plan).

    Units are identified by their position in the traced order (``layer`` = position) and named; similarity
    over the outputs of the stem, units and transitions; Fisher segments; SynFlow scores of the removable
    units. With ``target_macs`` the kept units are those the layer method would keep; without, each
    segment keeps its lowest-scoring unit.
    """
    import time

    from ..analysis.plan import PLAN_FORMAT, spec_hash
    from ..analysis.segmentation import column_sums, segment
    from ..analysis.similarity import similarity_matrix
    from ..data.readers import load_dataset

    t0 = time.perf_counter()
    if data is None:
        raise EdgepruneError("layer pruning needs --data to measure the similarity of the units")
    ds = data if hasattr(data, "x") else load_dataset(data)
    model = ckpt.build()
    res = _trace(model, ckpt)
    cands = candidates(res, transition)
    entries = [u for u in res.units if u.role in ("stem", "unit", "transition")]
    if not cands:
        _match(ckpt, model, [], 0.5, DEFAULT_TOLERANCE, transition, "layer pruning")
    rng = np.random.default_rng(seed)
    n = min(len(ds), max(4, batches * batch_size))
    idx = np.sort(rng.permutation(len(ds))[:n])
    feats = _features(model, sorted({u.output_module for u in entries}), ds.x[idx])
    sim = similarity_matrix([feats[u.output_module] for u in entries], similarity)
    t1 = time.perf_counter()
    seg = segment(column_sums(sim), segments, max_segments or max(1, min(len(entries), 5)))
    label = {u.name: seg.labels()[i] for i, u in enumerate(entries)}
    scores = synflow_unit_scores(model, cands, ckpt.length)
    t2 = time.perf_counter()
    order = _removal_order(cands, label, scores)
    from ..models.macs import count_macs

    base = int(count_macs(model, (2, ckpt.length)))
    if target_macs is not None:
        tol = check_tolerance(DEFAULT_TOLERANCE if tolerance is None else tolerance)
        match, _ = _match(ckpt, model, order, check_target(target_macs), tol, transition, "layer pruning")
        removed = list(match.setting)
    else:
        keep_one = {min(members, key=lambda u: (scores[u.name], u.position)).name
                    for members in _group(cands, label).values()}
        removed = [u for u in cands if u.name not in keep_one]
    params_before = int(sum(p.numel() for p in model.parameters()))
    if removed:
        _, _, net, rep = remove(ckpt, model, removed, check=False)
        after, params_after = rep["macs_after"], int(sum(p.numel() for p in net.parameters()))
    else:
        after, params_after = base, params_before
    pos = {u.name: i for i, u in enumerate(entries)}
    kept = [pos[u.name] for u in cands if u not in removed and u.name in pos]
    return {
        "format": PLAN_FORMAT, "kind": "module", "model": ckpt.spec["name"], "spec_sha256": spec_hash(ckpt.spec),
        "units": [{"layer": i, "position": i, "name": u.name, "role": u.role if u.role != "unit" else "unit",
                   "removable": u in cands, "macs": u.macs} for i, u in enumerate(entries)],
        "similarity": {"metric": similarity, "matrix": sim.tolist(), "frames": int(n)},
        "segments": seg.to_dict(),
        "importance": {"proxy": "synflow-whole-network", "rule": "lowest score kept",
                       "scores": {str(pos[u.name]): scores[u.name] for u in cands if u.name in pos}},
        "kept_units": sorted(kept), "transition": transition, "seed": seed,
        "keep": {"counts": [sum(1 for u in m if u not in removed) for m in _group(cands, label).values()],
                 "mode": "target_macs" if target_macs is not None else "one per segment", "search": "per-unit"},
        "expected": {"macs_before": base, "macs_after": int(after), "macs_reduction": 1 - after / base,
                     "params_before": params_before, "params_after": params_after,
                     "params_reduction": 1 - params_after / params_before},
        "timings": {"similarity_s": round(t1 - t0, 4), "importance_s": round(t2 - t1, 4)},
    }


def _group(cands, label):
    out: dict[int, list] = {}
    for u in cands:
        out.setdefault(label.get(u.name, -1), []).append(u)
    return out


def layer_method(ckpt, data, *, target_macs=None, seed: int = 0, transition: str | None = None,
                 similarity: str = "cka-unbiased", segments="auto", max_segments=None, batches: int = 5,
                 batch_size: int = 128, tolerance=None, importance: str = "synflow", search=None, plan=None,
                 **options) -> PruneResult:
    from pathlib import Path

    fraction = check_target(target_macs)
    tol = check_tolerance(DEFAULT_TOLERANCE if tolerance is None else tolerance)
    _no_options(options, "layer")
    if importance not in (None, "synflow"):
        raise EdgepruneError(f"the layer method on a plain-module network scores units with synflow only, "
                             f"not {importance!r}")
    plan_ref = None
    if plan is not None:
        from ..analysis.plan import check_plan, load_plan
        from ..digest import file_sha256

        if isinstance(plan, (str, Path)):
            plan_ref = {"path": str(plan), "sha256": file_sha256(plan)}
            plan = load_plan(plan)
        if plan.get("kind") != "module":
            raise EdgepruneError("the plan was made for a zoo spec model, not for this plain-module network")
        check_plan(plan, ckpt.spec)
        transition = transition or plan.get("transition") or "keep"
    else:
        transition = transition or "keep"
        plan = module_analysis(ckpt, data, similarity=similarity, segments=segments, max_segments=max_segments,
                               batches=batches, batch_size=batch_size, seed=seed, transition=transition)
    model = ckpt.build()
    res = _trace(model, ckpt)
    cands = candidates(res, transition)
    entries = [u for u in res.units if u.role in ("stem", "unit", "transition")]
    labels = plan["segments"]
    seg_of = []
    for i, (a, b) in enumerate(labels["bounds"]):
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
    order = _removal_order(cands, label, scores)
    match, base = _match(ckpt, model, order, fraction, tol, transition, "layer pruning")
    extra = {"options": {"similarity": plan["similarity"]["metric"], "segments": plan["segments"],
                         "proxy": plan["importance"]["proxy"], "tolerance": tol}, "scores": scores,
             "plan": plan_ref,
             "kept_units": [u.name for u in cands if u.name not in {v.name for v in match.setting}]}
    return _result(ckpt, model, match, base, "layer", seed, transition, extra, info={"plan": plan})


def random_method(ckpt, data=None, *, target_macs=None, seed: int = 0, tolerance=None, transition: str | None = None,
                  **options) -> PruneResult:
    transition = transition or "keep"
    fraction = check_target(target_macs)
    tol = check_tolerance(DEFAULT_TOLERANCE if tolerance is None else tolerance)
    model = ckpt.build()
    cands = candidates(_trace(model, ckpt), transition)
    order = [cands[i] for i in np.random.default_rng(seed).permutation(len(cands))]
    match, base = _match(ckpt, model, order, fraction, tol, transition, "random unit pruning")
    return _result(ckpt, model, match, base, "random", seed, transition, {"options": {"tolerance": tol}})


def dbp_method(ckpt, data, *, target_macs=None, seed: int = 0, tolerance=None, transition: str | None = None,
               probe_train: int = 2048, probe_val: int = 1024, steps: int = 150, **options) -> PruneResult:
    from ..training.finetune import resolve_split
    from .dbp import featurize, probe_accuracy

    transition = transition or "keep"
    fraction = check_target(target_macs)
    tol = check_tolerance(DEFAULT_TOLERANCE if tolerance is None else tolerance)
    if data is None:
        raise EdgepruneError("DBP needs --data for its linear probes")
    (train, val, _), _ = resolve_split(ckpt, data)
    model = ckpt.build()
    res = _trace(model, ckpt)
    entries = [u for u in res.units if u.role in ("stem", "unit", "transition")]
    cands = candidates(res, transition)
    rng = np.random.default_rng([int(seed), 7])
    it = np.sort(rng.permutation(len(train))[:probe_train])
    iv = np.sort(rng.permutation(len(val))[:probe_val])
    names = sorted({u.output_module for u in entries})
    ft, fv = _features(model, names, train.x[it]), _features(model, names, val.x[iv])
    import torch

    def inp(x):
        return featurize(torch.from_numpy(np.ascontiguousarray(x)), "pool", 8).numpy()
    nc = len(ckpt.classes)
    prev = probe_accuracy(inp(train.x[it]), train.y[it], inp(val.x[iv]), val.y[iv], nc, steps=steps, seed=seed)
    gains = {}
    for u in entries:
        acc = probe_accuracy(ft[u.output_module], train.y[it], fv[u.output_module], val.y[iv], nc, steps=steps,
                             seed=seed)
        gains[u.name] = acc - prev
        prev = acc
    order = sorted(cands, key=lambda u: (gains[u.name], -u.position))
    match, base = _match(ckpt, model, order, fraction, tol, transition, "DBP")
    return _result(ckpt, model, match, base, "dbp", seed, transition,
                   {"options": {"tolerance": tol}, "gains": gains})


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


def channel_method(criterion: str, ckpt, data, *, target_macs=None, seed: int = 0, tolerance=None,
                   **options) -> PruneResult:
    import torch
    from torch import nn

    from ..errors import require
    from ..models.macs import count_macs
    from ..models.modular import build_recipe, edited, with_stats
    from .channel import make_importance, tp_prune

    tp = require("torch_pruning", "channel pruning", "pip install torch-pruning")
    fraction = check_target(target_macs)
    tol = DEFAULT_TOLERANCE if tolerance is None else tolerance
    if criterion == "bn":
        raise EdgepruneError("channel-bn (network slimming) is not offered for plain-module networks yet; "
                             "use channel-l1, channel-l2 or channel-fpgm")
    model = ckpt.build()
    shape = (2, ckpt.length)
    base = int(count_macs(model, shape))
    res = _trace(model, ckpt)
    modules = dict(model.named_modules())
    classifier = [u for u in res.units if u.role == "classifier"]
    ignored_names = {m for u in classifier for m in u.members}
    # recurrent layers keep their widths (Torch-Pruning's LSTM support is partial); so do their inputs' producers
    rnns = [n for n, m in modules.items() if isinstance(m, nn.RNNBase)]
    ignored_names.update(rnns)
    weighted = [n for n, m in modules.items() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))
                and n not in ignored_names]
    example = torch.zeros((2,) + shape)

    def prune_copy(r_lo, r_hi, k):
        net = copy.deepcopy(model)
        mods = dict(net.named_modules())
        ignored = [mods[n] for n in ignored_names if n in mods]
        ratio_dict = {mods[n]: r_hi for n in weighted[:k]} if k else None
        if r_lo <= 0 and not ratio_dict:
            return net
        tp_prune(net, example, make_importance(criterion), r_lo, ignored, ratio_dict=ratio_dict)
        return net

    def probe(r_lo, r_hi, k):
        return count_macs(prune_copy(r_lo, r_hi, k), shape)

    widths = [getattr(modules[n], "out_channels", None) or getattr(modules[n], "out_features", 2) for n in weighted]
    top = (min(widths) - 1) / min(widths) if widths else 0.0   # Torch-Pruning keeps at least one channel
    match = search_ratio(probe, base, fraction, len(weighted), top, tol, what=f"channel-{criterion}")
    before = tp.state_dict(model)["attributions"]
    net = prune_copy(*match.setting)
    attrs = attribute_diff(before, tp.state_dict(net)["attributions"])
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    recipe = edited(ckpt.spec, attrs=attrs)
    rebuilt = build_recipe(recipe, state, where="the channel-pruned model")
    with torch.no_grad():
        net.eval()
        if not torch.allclose(rebuilt(example), net(example), atol=1e-5):
            raise EdgepruneError("the channel-pruned model does not rebuild from its recorded widths (internal error)")
    recipe = with_stats(recipe, net)
    r_lo, r_hi, k = match.setting
    lineage = {"op": "prune", "method": f"channel-{criterion}", "parent_sha256": ckpt.sha256(),
               "parent_model": ckpt.spec["name"], "seed": seed, "target_macs": fraction, "macs_before": base,
               "macs_after": match.macs, "ratio": r_lo, "ratio_hi": r_hi, "ratio_hi_layers": k,
               "widths": attrs, "options": {"criterion": criterion, "tolerance": tol}}
    return PruneResult(recipe, state, lineage, {"match": match.summary()})


MODULE_METHODS = {
    "layer": layer_method,
    "dbp": dbp_method,
    "random": random_method,
    "channel-l1": lambda ckpt, data, **kw: channel_method("l1", ckpt, data, **kw),
    "channel-l2": lambda ckpt, data, **kw: channel_method("l2", ckpt, data, **kw),
    "channel-fpgm": lambda ckpt, data, **kw: channel_method("fpgm", ckpt, data, **kw),
    "channel-bn": lambda ckpt, data, **kw: channel_method("bn", ckpt, data, **kw),
}


def module_method(name: str):
    if name not in MODULE_METHODS:
        raise EdgepruneError(f"method {name!r} is not available for plain-module networks; choose one of: "
                             f"{', '.join(MODULE_METHODS)}")
    return MODULE_METHODS[name]
