"""Every pruning method on the traced units of a network (a module recipe: the user's code, or a zoo spec made a
module on load; there is no other path).

Units come from tracing the forward (:mod:`edgeprune.models.trace`).
Removing a unit replaces it with identity (a stacked LSTM/GRU loses that
layer); with ``transition="reinit"`` shape-changing entries (not the stem or
the classifier) may be removed too, and every layer whose input shape then
changed is re-initialised for its new input (recorded in the recipe's edits
and the lineage). Channel methods run Torch-Pruning on the live module and
record the widths it set as module attributes (re-applied on load with
``tp.load_state_dict``). Every method lands within the tolerance (2%) of
``--target-macs`` or names the nearest fraction it can reach.

The layer method scores units with the importance criteria (default ``ablation``, see :func:`unit_values`; the
reference's transplant proxies too, :func:`transplant_scorer`), searches per unit or exhaustively per segment
(:func:`combo_scorer`), takes the budget options (``--keep``, ``--keep-units``, ``--target-macs``) and the
transitions ``keep``, ``reinit`` and ``replace`` (:func:`replace_rule`, the reference's reassembly). The features
of one layer of a stacked LSTM/GRU are the stack's output (for similarity), and ``taylor``/``block-influence``
and the transplant proxies refuse such layers.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeprune.export.runtime.safeio import file_sha256

from ..analysis import criteria as C
from ..analysis.criteria import _prepare, ablation_of_set, synflow_backward
from ..analysis.importance import (
    CRITERIA, DEFAULT_CRITERION, SEARCHES, TransplantScorer, check_criterion, criterion_values, get_criterion,
    keep_keys, select_exhaustive, unit_scores)
from ..analysis.segmentation import column_sums, segment
from ..analysis.similarity import check_metric, similarity_matrix
from ..data.split import resolve_split
from ..errors import EdgepruneError
from ..models.macs import count_macs
from ..models.modular import apply_structure, base_model, build_recipe, edited, get_module, model_stats_of, with_stats
from ..models.surgery import repair_inputs
from ..models.trace import discover_module_units
from .budget import check_counts, counts_for_units, parse_keep
from .channel import sparsity_train
from .dbp import featurize, probe_accuracy
from .equivalence import check_layer_pruned
from .macs_target import (
    DEFAULT_TOLERANCE, MatchResult, TargetUnreachable, _subset_sums, check_target, check_tolerance, search_unit_set)
from .plan_file import PLAN_FORMAT, check_plan, load_plan, spec_hash
from .registry import PruneResult, builtin_method

TRACED_TRANSITIONS = ("keep", "reinit", "replace")
ENTRY_ROLES = ("stem", "unit", "stack", "transition")   # traced entries a plan lists (similarity, segments)


def _trace(model, ckpt):
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
    try:
        _, _, net, rep = remove(ckpt, model, [unit], check=False)
        check_layer_pruned(model, net, [unit], (2, ckpt.length), reinit=rep["reinit"])
    except EdgepruneError as exc:
        return str(exc)
    return None


_PROBED: dict[str, tuple[frozenset, list[str]]] = {}   # network + transition -> (units that pass, notes)
_PROBED_MAX = 8


def _network_key(ckpt, res, transition: str) -> str:
    """What a probe's outcome depends on: the spec (a user's network by its code's sha256), the weights, the traced
    units and the transition."""
    h = hashlib.sha256(json.dumps(ckpt.spec, sort_keys=True, default=str).encode())
    for k in sorted(ckpt.state_dict):
        v = ckpt.state_dict[k]
        h.update(k.encode())
        if isinstance(v, torch.Tensor):
            h.update(str((v.dtype, tuple(v.shape))).encode())
            h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(repr(v).encode())
    h.update(repr([(u.name, u.kind, tuple(u.members), u.removable) for u in res.units]).encode())
    h.update(transition.encode())
    return h.hexdigest()


def probed_candidates(ckpt, model, res, transition: str = "keep") -> tuple[list, list[str]]:
    """The candidates whose removal, each alone, was probed with a forward pass (and the equivalence check)
    before any search uses them; those that break are dropped, each with one note. The outcome is kept for the
    process (keyed by the network's spec, weights, traced units and transition): a study's layer, DBP and random
    arms, and a method that lists the candidates before it prunes, probe each network once."""
    key = _network_key(ckpt, res, transition)
    cands = candidates(res, transition)
    if key in _PROBED:
        passed, notes = _PROBED[key]
        return [u for u in cands if u.name in passed], list(notes)
    out, notes = [], []
    for u in cands:
        why = probe_removal(ckpt, model, u)
        if why is None:
            out.append(u)
        else:
            notes.append(f"unit {u.name} dropped: removing it breaks the model ({why.split(': ', 1)[-1][:160]})")
    while len(_PROBED) >= _PROBED_MAX:
        _PROBED.pop(next(iter(_PROBED)))
    _PROBED[key] = (frozenset(u.name for u in out), list(notes))
    return out, notes


def remove(ckpt, model, units, seed: int = 0, check: bool = True, reinit_units=()):
    """Remove ``units`` (ModuleUnits of ``model``) from a copy: ``(recipe, state_dict, live model, report)``.
    ``reinit_units`` stay but get fresh random weights (the network's own initialisation, drawn from ``seed``):
    ``--transition replace``'s stage transitions."""
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
        n = get_module(net, name).num_layers
        keep = [i for i in range(n) if i not in drop]
        if keep:
            rnn_keep[name] = keep
        else:
            removed.append(name)
    apply_structure(net, {"rnn_layers": rnn_keep, "removed": removed, "pooled": pooled})
    fresh_names = _fresh_weights(ckpt, net, reinit_units, seed)
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
    reinit = sorted(set(repaired) | set(fresh_names))
    recipe = edited(ckpt.spec, removed=removed, rnn_layers=rnn_keep, reinit=reinit, attrs=repaired,
                    **({"pooled": pooled} if pooled else {}))
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    report = {"removed_units": [u.name for u in units], "reinit": reinit,
              "macs_after": int(count_macs(net, (2, ckpt.length)))}
    if check:
        rebuilt = build_recipe(recipe, state, where="the pruned model")
        with torch.no_grad():
            if not torch.allclose(rebuilt(example), y, atol=1e-5):
                raise EdgepruneError("the pruned model does not rebuild from its recipe (internal error)")
        recipe = with_stats(recipe, net)
    return recipe, state, net, report


def _fresh_weights(ckpt, net, units, seed: int) -> list[str]:
    """Give the members of ``units`` in ``net`` the weights of a freshly initialised network (seed ``seed``)."""
    names = [m for u in units for m in u.members]
    if not names:
        return []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        fresh = base_model(ckpt.spec)
    for n in names:
        try:
            get_module(net, n).load_state_dict(get_module(fresh, n).state_dict())
        except RuntimeError as exc:
            raise EdgepruneError(f"unit {n} cannot be re-initialised: its shape changed since the network "
                                 f"was built") from exc
    return names


def replace_rule(entries, cands, kept: set) -> tuple[list, list, list]:
    """The reference's reassembly (``--transition replace``) on traced entries: ``(removed, reinit, forced)``.

    ``cands``: the units that may be removed; ``kept``: the names chosen. A stage (the units after the stem, or
    after a stage transition, up to the next transition) whose transition was not chosen keeps it re-initialised
    in place of its first kept unit (so a stage has as many units as were chosen in it; the re-initialised
    transition alone when none was); the stem's stage keeps its first unit when none was chosen.
    """
    names = {u.name for u in cands}
    stages, head, members = [], None, []
    for u in entries:
        if u.role == "transition" and u.name not in names:
            stages.append((head, members))
            head, members = u, []
        elif u.name in names:
            members.append(u)
    stages.append((head, members))
    removed = [u for u in cands if u.name not in kept]
    reinit, forced = [], []
    for head, members in stages:
        chosen = [u for u in members if u.name in kept]
        if head is not None and head.name not in kept:
            reinit.append(head)
            if chosen:
                removed.append(chosen[0])
            forced.append({"unit": head.name, "reason": "stage transition (re-initialised, replaces "
                           + (f"unit {chosen[0].name})" if chosen else "nothing: no unit chosen in the stage)")})
        elif head is None and members and not chosen:
            removed.remove(members[0])
            forced.append({"unit": members[0].name, "reason": "the stage keeps at least one unit"})
    return sorted(removed, key=lambda u: u.position), reinit, forced


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
    base = int(count_macs(model, (2, ckpt.length)))
    if transition == "reinit":
        # keep the entries whose removal alone leaves a working network that is cheaper
        fn = _macs_fn(ckpt, model, base, transition)
        order = [u for u in order if fn([u]) < base]
    if not order:
        _no_units(ckpt, transition)
    return search_unit_set(order, _macs_fn(ckpt, model, base, transition), base, fraction, tol, what=what,
                           nearest=True), base


def _built_macs_fn(ckpt, model, cands, base: int, transition: str):
    """MACs of the network the transition really builds without a set of units: under ``replace`` the
    reference's reassembly (:func:`replace_rule`: each stage's transition, re-initialised, takes the place of
    the stage's first kept unit) is applied and the result counted (fresh weights leave the structure as it
    is, so they are not drawn here); otherwise :func:`_macs_fn`."""
    if transition != "replace":
        return _macs_fn(ckpt, model, base, transition)
    entries = [u for u in _trace(model, ckpt).units if u.role in ENTRY_ROLES]
    memo: dict[frozenset, int] = {}

    def built(removed):
        key = frozenset(u.name for u in removed)
        if key not in memo:
            gone, _ = _assembly(entries, cands, list(removed), "replace")
            try:
                memo[key] = int(remove(ckpt, model, gone, check=False)[3]["macs_after"])
            except EdgepruneError:
                memo[key] = base   # not a working network: counts as no reduction, so it is never chosen
        return memo[key]
    return built


def _match_built(ckpt, model, cands, order, fraction, tol, transition, what):
    """The per-unit removal walk (:func:`search_unit_set` in ``order``) on the MACs of the network the
    transition builds, which must land in the window: ``(match, MACs function)``. When no unit set does, one
    :class:`TargetUnreachable` naming what the built networks reach (their range and the nearest at or below
    the target) instead of taking the nearest model."""
    base = int(count_macs(model, (2, ckpt.length)))
    fn = _built_macs_fn(ckpt, model, cands, base, transition)
    if transition == "reinit":
        order = [u for u in order if fn([u]) < base]
    if not order:
        _no_units(ckpt, transition)
    start = fn([])
    match = search_unit_set(order, fn, base, fraction, tol, what=what, nearest=True, start=start, skip_idle=True)
    if match.note is None:
        match.must_meet = tol
        return match, fn
    lo, hi = fn(order) / base, start / base
    below = f"the nearest at or below it is {match.fraction:.4f} x" if match.fraction <= fraction else \
        "none is at or below it"
    raise TargetUnreachable(f"{what} cannot reach {fraction:g} x MACs within {tol:.0%}: the networks it builds "
                            f"range from {lo:.4f} x to {hi:.4f} x the MACs and {below} (give a reachable "
                            f"--target-macs or loosen --opt tolerance)", match.fraction)


def _no_units(ckpt, transition):
    raise EdgepruneError(f"model {ckpt.spec['name']!r} has no removable unit (see `edgeprune units`); "
                         f"layer pruning needs units whose output shape equals their input"
                         + ("" if transition == "reinit" else ", or try --transition reinit"))


def reach(cands, base: int, fraction, tol) -> dict[str, Any]:
    """What whole units can reach for ``fraction`` of ``base`` MACs, from the units' own MACs (before any
    analysis): ``{"window": bool, "nearest": fraction at or below the target (or the smallest), "note"}``.
    An error when there is no unit to remove."""
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


def _result(ckpt, model, removed, match, method, seed, transition, extra, info=None, reinit=()):
    """The PruneResult of removing ``removed`` (and re-initialising ``reinit``); ``match`` is the MACs search (None
    under --keep/--keep-units). The pruned model must equal the original with the removed units bypassed (checked
    with hooks; refused if not) unless units were re-initialised."""
    recipe, state, net, rep = remove(ckpt, model, list(removed), seed=seed, reinit_units=reinit)
    equivalence = check_layer_pruned(model, net, list(removed), (2, ckpt.length), reinit=rep["reinit"], seed=seed)
    info = dict(info or {})
    notes = list(info.pop("notes", []))
    if match is not None and match.note and match.note not in notes:
        notes.append(match.note)
    if notes:
        info["notes"] = notes
    extra = {**extra, "equivalence": equivalence, **({"notes": notes} if notes else {})}
    if match is not None:
        _check_built(match, rep["macs_after"])
        extra["match"] = match.summary()

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


def _check_built(match, macs_after) -> None:
    """A match that must meet its window (``--search exhaustive``, ``--transition replace``) is checked on the
    MACs of the network really built."""
    if not match.inside(macs_after):
        raise EdgepruneError(f"the built network has {macs_after / match.base_macs:.4f} x the MACs, outside "
                             f"{match.must_meet:.0%} of the target {match.target_macs / match.base_macs:g} x "
                             f"(internal error)")


def _features(model, names, x, batch_size: int = 256, feature: str = "pool", bins: int = 8):
    """Per name, the outputs (N, F) of that module on frames ``x``, featurised like DBP's probes. A module that
    runs more than once per forward (one activation module used twice) gives its first output, the one the trace
    took the unit's shape from."""
    store: dict[str, list] = {n: [] for n in names}
    seen: set[str] = set()   # the modules already recorded in this forward
    handles = [model.register_forward_pre_hook(lambda mod, inp: seen.clear())]
    for n in names:
        def hook(mod, inp, out, n=n):
            if n in seen:
                return
            seen.add(n)
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


def unit_values(criterion: str, ckpt, model, units, x=None, y=None, batch_size: int = 256,
                seed: int = 0) -> dict[str, float]:
    """The values of importance criterion ``criterion`` (``edgeprune analyze --importance``) for traced ``units``.

    The same criteria as for zoo models (:mod:`edgeprune.analysis.criteria`): a unit that is a chain of modules
    (a Conv-BN-ReLU group) is replaced as one piece, from its first module's input to its last module's output.
    For ``ablation`` one layer of a stacked LSTM/GRU is really removed (the stack loses that layer, as layer
    pruning does) and the loss measured; ``taylor`` and ``block-influence`` need a unit's own input and output,
    which a fused LSTM/GRU stack does not expose per layer, so they refuse such units. The reference's transplant
    proxies (``synflow-transplant``, ``gradnorm``, ``snip``) score a random copy of the network carrying the unit's
    trained weights (:func:`transplant_scorer`; gradnorm and snip on the first ``batch_size`` of the frames).
    """
    if get_criterion(criterion).transplant:
        return unit_scores(transplant_scorer(criterion, ckpt, units, x, y, seed=seed, batch_size=batch_size),
                           [u.name for u in units])

    names = [u.name for u in units]
    if criterion == "reverse":
        return C.reverse_scores(sorted(names, key=lambda n: next(u.position for u in units if u.name == n)))
    if criterion == "synflow":
        return synflow_unit_scores(model, units, ckpt.length)

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


def transplant_scorer(criterion: str, ckpt, units, x=None, y=None, *, seed: int = 0, batch_size: int = 128):
    """The :class:`~edgeprune.analysis.importance.TransplantScorer` of traced ``units`` (keyed by unit name): a
    random copy of ``ckpt``'s network (seed ``seed``), each unit carrying its members' trained weights."""
    odd = [u for u in units if u.kind == "rnn-layer" or getattr(u, "bypass", "identity") == "pool"]
    if odd:
        raise EdgepruneError(f"the transplant proxy {criterion} moves a unit's own modules, which the unit "
                             f"{odd[0].name} (one layer of an LSTM/GRU stack or a pooling stack) does not have; "
                             f"use ablation (the default), synflow or reverse")
    recipe = ckpt.spec
    if recipe["edits"].get("attrs"):
        raise EdgepruneError(f"the transplant proxy {criterion} needs a random copy of the network, which a "
                             f"channel-pruned network does not have; use ablation (the default), synflow or reverse")
    n = int(batch_size)
    return TransplantScorer(lambda: build_recipe(recipe),
                            ckpt.state_dict, criterion, {u.name: list(u.members) for u in units}, (2, ckpt.length),
                            seed=seed, data_x=None if x is None else x[:n], data_y=None if y is None else y[:n])


class AblationComboScorer:
    """Scores keeping ``combo`` of a block: the loss on ``x, y`` with the block's other units replaced
    (``chains``: unit key -> its module or chain of modules, as for the ablation criterion)."""

    def __init__(self, model, chains: dict, x, y, batch_size: int = 256):
        self.model, self.chains = model, chains
        self.x, self.y = _prepare(model, {None: None}, x, y)
        self.batch_size = batch_size
        self.calls = 0

    def combo_key(self, combo, block) -> float:
        gone = {u: self.chains[u] for u in block if u not in combo}
        self.calls += 1
        return ablation_of_set(self.model, gone, self.x, self.y, None, self.batch_size)[0]


def combo_scorer(criterion: str, ckpt, model, cands, x, y, *, seed: int = 0, batch_size: int = 128):
    """What ``--search exhaustive`` scores combinations with (keyed by unit name): the transplant proxy of the
    combination, or, for ablation, the loss with the block's other units replaced; None for the criteria whose
    combinations score as the sum of their units."""
    if get_criterion(criterion).transplant:
        return transplant_scorer(criterion, ckpt, cands, x, y, seed=seed, batch_size=batch_size)
    if criterion != "ablation":
        return None
    odd = [u for u in cands if u.kind == "rnn-layer" or getattr(u, "bypass", "identity") == "pool"]
    if odd:
        raise EdgepruneError(f"the exhaustive search replaces a unit's own modules, which the unit {odd[0].name} "
                             f"(one layer of an LSTM/GRU stack or a pooling stack) does not have; use --search per-unit")
    chains = {u.name: (tuple(get_module(model, m) for m in u.members) if len(u.members) > 1
                       else get_module(model, u.members[0])) for u in cands}
    return AblationComboScorer(model, chains, x, y)


def _blocks(cands, label: dict[str, int], n_segments: int) -> list[list]:
    """Removable units of each segment (possibly empty), in forward order."""
    out: list[list] = [[] for _ in range(n_segments)]
    for u in sorted(cands, key=lambda u: u.position):
        out[label[u.name]].append(u)
    return out


def choose_removal(ckpt, model, cands, label: dict[str, int], n_segments: int, scores: dict[str, float], *,
                   keep=None, keep_units=None, target_macs=None, tolerance=None, transition: str = "keep",
                   scorer=None):
    """The units to remove under at most one budget option: ``(removed, mode, match)``.

    ``scores``: keep keys (lower = kept first). ``keep``: units kept per segment (``1,2,1``); ``keep_units``:
    that many in all, spread over the segments by size (at least one each); ``target_macs``: the fraction of
    the MACs, met within ``tolerance`` (2%) by removing the highest keys first, each segment's last unit
    last (:func:`_target_removal`: under ``replace`` on the network it builds); none: one unit kept per
    segment (the lowest key). ``scorer`` (``--search exhaustive``, see :func:`combo_scorer`): each segment
    keeps the combination of its count of units with the lowest key (under a MACs target, the lowest among
    those that keep the MACs in the window; the keys of the kept combinations are left in ``scorer.best``).
    """
    given = [n for n, v in (("--keep", keep), ("--keep-units", keep_units), ("--target-macs", target_macs))
             if v is not None]
    if len(given) > 1:
        raise EdgepruneError(f"give only one of {', '.join(given)}")
    blocks = _blocks(cands, label, n_segments)
    if target_macs is not None:
        tol = check_tolerance(DEFAULT_TOLERANCE if tolerance is None else tolerance)
        return _target_removal(ckpt, model, cands, blocks, label, scores, check_target(target_macs), tol,
                               transition, scorer)
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
    if scorer is not None:
        chosen, scorer.best = select_exhaustive([[u.name for u in b] for b in blocks], counts, scorer)
        kept.update(n for c in chosen for n in c)
    for c, b in zip(counts, blocks):
        if scorer is None:
            kept.update(u.name for u in sorted(b, key=lambda u: (scores[u.name], u.position))[:c])
    return [u for u in cands if u.name not in kept], mode, None


def _target_removal(ckpt, model, cands, blocks, label, scores, fraction, tol, transition, scorer):
    """``choose_removal`` under ``--target-macs``: ``(removed, "target_macs", match)``.

    The per-unit search walks :func:`_removal_order` (the nearest model, with a note, when whole units cannot
    land in the window). Under ``--transition replace`` the walk counts the MACs of the network the
    reassembly builds, and with a combination ``scorer`` (``--search exhaustive``) the walk's kept count per
    segment is kept and :func:`_exhaustive_in_window` chooses which units; both must land in the window
    (:func:`_match_built`: one error naming what is reachable otherwise)."""
    order = _removal_order(cands, label, scores)
    if scorer is None and transition != "replace":
        match, _ = _match(ckpt, model, order, fraction, tol, transition, "layer pruning")
        match.rule = "per-unit removal walk"
        return list(match.setting), "target_macs", match
    what = "layer pruning (" + " and ".join(
        ([f"--transition {transition}"] if transition != "keep" else [])
        + (["--search exhaustive"] if scorer is not None else [])) + ")"
    match, fn = _match_built(ckpt, model, cands, order, fraction, tol, transition, what)
    if scorer is None:
        match.rule = "per-unit removal walk on the network the replace transition builds"
        return list(match.setting), "target_macs", match
    removed, match = _exhaustive_in_window(blocks, cands, match, fn, scorer)
    return removed, "target_macs", match


def _exhaustive_in_window(blocks, cands, walk, fn, scorer):
    """``--search exhaustive`` under a MACs target: each segment keeps as many units as the per-unit ``walk``
    kept in it; segments in order, each keeps its lowest-key combination among those whose network (this
    combination, the segments before at their choice, those after at the walk's) has MACs in the walk's
    window, counted by ``fn``. The walk's own combination always qualifies, so the target is never missed.
    ``(removed, match)``; the keys of the kept combinations are left in ``scorer.best``."""
    gone = {u.name for u in walk.setting}
    choice = [[u.name for u in b if u.name not in gone] for b in blocks]

    def without(kept):
        return [u for u in cands if u.name not in kept]

    def admit(i, combo):
        trial = choice[:i] + [list(combo)] + choice[i + 1:]
        if not walk.inside(fn(without({n for c in trial for n in c}))):
            return False
        choice[i] = list(combo)
        return True
    chosen, scorer.best = select_exhaustive([[u.name for u in b] for b in blocks], [len(c) for c in choice],
                                            scorer, admit=admit)
    removed = without({n for c in chosen for n in c})
    macs = int(fn(removed))
    if not walk.inside(macs):
        raise EdgepruneError("the exhaustive search left the MACs window (internal error)")
    return removed, MatchResult(removed, macs, walk.base_macs, walk.target_macs, walk.steps, rule=(
        "kept units per segment from the per-unit removal walk, then each segment's lowest-key combination "
        "within the MACs window"), must_meet=walk.must_meet)


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
                    max_frames: int = 1024, split=None, search: str = "per-unit") -> dict[str, Any]:
    """The layer method's analysis of a plain-module network, as a plan (the same format as a spec plan).

    Units are identified by their position in the traced order (``layer`` = position) and named. Similarity
    over the outputs of the stem, units and transitions on training frames; Fisher segments; the importance
    criterion (default ``ablation``) on up to ``max_frames`` validation frames of the checkpoint's split;
    then the kept units under the budget option (:func:`choose_removal`; ``search="exhaustive"``: the best
    combination per segment, see :func:`combo_scorer`).
    """
    t0 = time.perf_counter()
    if data is None:
        raise EdgepruneError("layer pruning needs --data to measure the similarity of the units")
    check_metric(similarity)
    importance = check_criterion(importance or DEFAULT_CRITERION)
    if search not in SEARCHES:
        raise EdgepruneError(f"unknown search {search!r}; choose one of: {', '.join(SEARCHES)}")
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
    values = unit_values(importance, ckpt, model, cands, xs, ys, batch_size=max(batch_size, 256), seed=seed)
    scores = keep_keys(importance, values)
    scorer = (combo_scorer(importance, ckpt, model, cands, xs, ys, seed=seed, batch_size=max(batch_size, 256))
              if search == "exhaustive" else None)
    removed, mode, match = choose_removal(ckpt, model, cands, label, len(seg.bounds), scores, keep=keep,
                                          keep_units=keep_units, target_macs=target_macs, tolerance=tolerance,
                                          transition=transition, scorer=scorer)
    t2 = time.perf_counter()
    if match is not None and match.note:
        notes.append(match.note)
    expected = _expected(ckpt, model, *_assembly(entries, cands, removed, transition))
    if match is not None:
        _check_built(match, expected["macs_after"])
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
        **_blocks_and_counts(seg.bounds, _blocks(cands, label, len(seg.bounds)), pos, gone),
        "expected": expected,
        "keep": {"counts": [sum(1 for u in b if u.name not in gone) for b in _blocks(cands, label, len(seg.bounds))],
                 "mode": mode, "search": search, "exhaustive_scores": getattr(scorer, "best", None),
                 **({"match": match.summary()} if match is not None else {})},
        "timings": {"similarity_s": round(t1 - t0, 4), "importance_s": round(t2 - t1, 4)},
        **({"notes": notes} if notes else {}),
    }


def _blocks_and_counts(bounds, blocks, pos, gone) -> dict[str, Any]:
    """A plan's ``blocks``: each segment's bounds, its candidates and the kept ones, by plan position."""
    return {"blocks": [{"bounds": list(bd), "candidates": [pos[u.name] for u in b],
                        "kept": [pos[u.name] for u in b if u.name not in gone]} for bd, b in zip(bounds, blocks)]}


def _assembly(entries, cands, removed, transition: str) -> tuple[list, list]:
    """(units removed, units re-initialised) for the chosen ``removed``: under ``replace`` the reference's rule
    (:func:`replace_rule`), else as chosen."""
    if transition != "replace":
        return list(removed), []
    gone = {u.name for u in removed}
    out, reinit, _ = replace_rule(entries, cands, {u.name for u in cands if u.name not in gone})
    return out, reinit


def _expected(ckpt, model, removed, reinit=()) -> dict[str, Any]:
    """MACs and params of ``model`` before and after removing ``removed`` (a plan's ``expected``)."""
    base = int(count_macs(model, (2, ckpt.length)))
    params_before = int(sum(p.numel() for p in model.parameters()))
    if removed or reinit:
        _, _, net, rep = remove(ckpt, model, removed, check=False, reinit_units=reinit)
        after, params_after = rep["macs_after"], int(sum(p.numel() for p in net.parameters()))
    else:
        after, params_after = base, params_before
    return {"macs_before": base, "macs_after": int(after), "macs_reduction": 1 - after / base,
            "params_before": params_before, "params_after": params_after,
            "params_reduction": 1 - params_after / params_before}


def plan_layer_method(ckpt, data, *, plan=None, plan_ref=None, target_macs=None, seed: int = 0,
                      transition: str | None = None, similarity: str = "cka-unbiased", segments="auto",
                      max_segments=None, batches: int = 5, batch_size: int = 128, tol=DEFAULT_TOLERANCE,
                      importance: str | None = None, search=None, keep=None, keep_units=None) -> PruneResult:
    """The layer method on a traced network (``ckpt`` a module recipe): a plan (given, checked by
    :func:`given_plan`, or made by :func:`module_analysis`), then the units it keeps, or those re-chosen from its
    segments and scores under a budget option."""
    budget_given = any(v is not None for v in (keep, keep_units, target_macs))
    if plan is not None:
        transition = transition or plan.get("transition") or "keep"
    else:
        transition = transition or "keep"
        check_reach(ckpt, target_macs, tol, transition)      # before the analysis: no units is one early error
        plan = module_analysis(ckpt, data, similarity=similarity, segments=segments, max_segments=max_segments,
                               batches=batches, batch_size=batch_size, seed=seed, transition=transition,
                               importance=importance, search=search or "per-unit")
    search = search or plan["keep"].get("search", "per-unit")
    model, cands, label, pos, scores = _plan_context(ckpt, plan, transition)
    n_seg = len(plan["segments"]["bounds"])
    if budget_given:
        scorer = None
        if search == "exhaustive":
            (train, val, _), _ = resolve_split(ckpt, data)
            part = val if len(val) else train
            scorer = combo_scorer(plan["importance"].get("criterion", plan["importance"]["proxy"]), ckpt, model,
                                  cands, part.x[:1024], part.y[:1024], seed=plan["seed"], batch_size=256)
        removed, mode, match = choose_removal(ckpt, model, cands, label, n_seg, scores, keep=keep,
                                              keep_units=keep_units, target_macs=target_macs, tolerance=tol,
                                              transition=transition, scorer=scorer)
    else:   # the plan's own kept units
        kept = {u["name"] for u in plan["units"] if u["layer"] in set(plan["kept_units"])}
        removed, mode, match = [u for u in cands if u.name not in kept], plan["keep"]["mode"], None
    return _plan_result(ckpt, plan, plan_ref, model, cands, removed, match, mode, scores, seed, transition, tol)


def given_plan(ckpt, plan, importance=None) -> tuple[dict, dict | None]:
    """A plan given to the layer method (a path or a dict), checked against ``ckpt``: ``(plan, its path and
    sha256 or None)``."""
    plan_ref = None
    if isinstance(plan, (str, Path)):
        plan_ref = {"path": str(plan), "sha256": file_sha256(plan)}
        plan = load_plan(plan)
    check_plan(plan, ckpt.spec)
    if importance is not None and importance != plan["importance"].get("criterion", plan["importance"]["proxy"]):
        raise EdgepruneError(f"the plan was scored with {plan['importance'].get('criterion')!r}; make a new "
                             f"plan for --importance {importance}")
    return plan, plan_ref


def _plan_summary(plan, counts, mode) -> dict[str, Any]:
    """What a pruned model's lineage records of its plan."""
    out = {k: plan[k] for k in ("model", "spec_sha256", "seed", "kept_units", "transition") if k in plan}
    out.update({"similarity": plan["similarity"]["metric"], "importance": plan["importance"]["proxy"],
                "segments": plan["segments"]["bounds"], "counts": counts, "mode": mode})
    return out


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
    entries = [u for u in _trace(model, ckpt).units if u.role in ENTRY_ROLES]
    removed, reinit = _assembly(entries, cands, removed, transition)
    extra = {"options": {"similarity": plan["similarity"]["metric"], "segments": plan["segments"],
                         "importance": criterion, "budget": mode, "tolerance": tol, "transition": transition},
             "scores": scores, "plan": plan_ref,
             "plan_summary": _plan_summary(plan, plan["keep"]["counts"], mode),
             "kept_units": [u.name for u in cands if u.name not in gone]}
    return _result(ckpt, model, removed, match, "layer", seed, transition, extra,
                   info={"plan": plan, "notes": list(plan.get("notes", []))}, reinit=reinit)


def latency_ladder(ckpt, plan, transition: str = "keep", points: int = 40) -> list[dict[str, Any]]:
    """Candidate architectures for latency-targeted layer pruning, smallest MACs first.

    Candidate ``k`` removes the first ``k`` units of the layer method's removal order under ``plan`` (the
    order the ``--target-macs`` search walks); each is the live pruned network (``model``) with its MACs,
    weight layers and params, and the names of the units it removes.
    """
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


def traced_candidates(ckpt, transition: str = "keep") -> list:
    """The traced units of ``ckpt``'s network that a layer method may remove (each probed: removing it alone
    leaves a working network), in forward order; each has ``name``, ``position``, ``macs``, ``members``."""
    model = ckpt.build()
    return probed_candidates(ckpt, model, _trace(model, ckpt), transition)[0]


def prune_in_order(ckpt, order, target_macs, *, method: str, seed: int = 0, tolerance=None,
                   transition: str = "keep", options: dict | None = None, info: dict | None = None,
                   what: str | None = None) -> PruneResult:
    """Remove traced units in ``order`` (unit names, or units from :func:`traced_candidates`) to ``target_macs``
    (a fraction of the MACs, met within ``tolerance``, 2% by default; a unit whose removal would undershoot is
    skipped): the PruneResult of method ``method``. The way a plugin method of one's own ranks units."""
    fraction = check_target(target_macs)
    tol = check_tolerance(DEFAULT_TOLERANCE if tolerance is None else tolerance)
    check_reach(ckpt, fraction, tol, transition)
    model = ckpt.build()
    cands, notes = probed_candidates(ckpt, model, _trace(model, ckpt), transition)
    by_name = {u.name: u for u in cands}
    names = [getattr(u, "name", u) for u in order]
    stray = [n for n in names if n not in by_name]
    if stray:
        raise EdgepruneError(f"{method}: {stray[0]!r} is not a removable unit of this network")
    match, _ = _match(ckpt, model, [by_name[n] for n in names], fraction, tol, transition, what or method)
    info = dict(info or {})
    info["notes"] = notes + list(info.get("notes", []))
    return _result(ckpt, model, match.setting, match, method, seed, transition,
                   {"options": {"tolerance": tol, "transition": transition, **(options or {})}}, info=info)


def random_method(ckpt, data=None, *, target_macs=None, seed: int = 0, tolerance=None, transition: str | None = None,
                  **options) -> PruneResult:
    _no_options(options, "random")
    transition = transition or "keep"
    check_target(target_macs)
    cands = traced_candidates(ckpt, transition)
    order = [cands[i] for i in np.random.default_rng(seed).permutation(len(cands))]
    return prune_in_order(ckpt, order, target_macs, method="random", seed=seed, tolerance=tolerance,
                          transition=transition, what="random unit pruning")


def dbp_method(ckpt, data, *, target_macs=None, seed: int = 0, tolerance=None, transition: str | None = None,
               probe_train: int = 2048, probe_val: int = 1024, probe_steps: int = 150, feature: str = "pool",
               bins: int = 8, gain_threshold=None, **options) -> PruneResult:
    """DBP on a traced network: a linear probe on every entry's output features (``feature`` pooled into ``bins``),
    the units with the smallest accuracy gain over the entry before go first, to ``target_macs``; without a target,
    every removable unit whose gain is below ``gain_threshold`` goes (the paper's thresholding form)."""
    _no_options(options, "dbp")
    if target_macs is None and gain_threshold is None:
        raise EdgepruneError("dbp needs --target-macs F (or --opt gain_threshold=T)")
    steps = probe_steps
    transition = transition or "keep"
    fraction = check_target(target_macs) if target_macs is not None else None
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
    if fraction is None:
        match, removed = None, [u for u in order if gains[u.name] < float(gain_threshold)]
        if not removed:
            raise EdgepruneError(f"no removable unit's probe gain is below gain_threshold {gain_threshold}: "
                                 f"nothing to prune")
    else:
        match, _ = _match(ckpt, model, order, fraction, tol, transition, "DBP")
        removed = match.setting
    return _result(ckpt, model, removed, match, "dbp", seed, transition,
                   {"options": {"tolerance": tol, "transition": transition, "feature": feature, "bins": bins,
                                "probe_train": probe_train, "probe_val": probe_val, "probe_steps": steps,
                                "gain_threshold": gain_threshold}, "gains": gains},
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
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise EdgepruneError(f"channel-bn (network slimming) ranks channels by BatchNorm scales, and "
                             f"{ckpt.spec['name']!r} has no BatchNorm layer; use channel-l1, -l2 or -fpgm")
    sparsity = 1e-4 if sparsity is None else float(sparsity)
    sparsity_epochs = 3 if sparsity_epochs is None else int(sparsity_epochs)
    state, metrics = sparsity_train(ckpt, data, sparsity_epochs, sparsity, seed)
    model.load_state_dict(state)
    info["sparsity_training"] = metrics
    lineage_opts.update(sparsity=sparsity, sparsity_epochs=sparsity_epochs)


for _name, _fn in (("dbp", dbp_method), ("random", random_method)):
    builtin_method(_name)(_fn)   # help and options: edgeprune.pruning.catalogue
