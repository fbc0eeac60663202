"""Importance criteria that measure what a unit contributes, on any network.

Generic interface: a model (``nn.Module`` mapping frames to logits) and its
units as ``{key: module}``, where each module is a child whose removal is
modelled by replacing its output, or ``{key: (module, ..., module)}``, a
chain of modules the forward runs one after another (a Conv-BN-ReLU group
of a user's network): the chain's input is the first module's input, its
output the last module's output, its parameters those of every member. A unit whose output shape equals its
input shape is replaced by the identity (its input passes through, exactly
what layer pruning does to it); a shape-changing unit (a widening VGG conv,
a pooling residual stack) cannot be, and is replaced by its mean output over
the frames instead (recorded as ``"mean"`` in :data:`LAST_REPLACEMENT`).
Nothing here depends on the zoo: a user's ``nn.Module`` with units found by
:func:`~edgeprune.analysis.units.trace_units` works the same way.

Every criterion returns ``{key: value}`` where a HIGHER value means a MORE
important unit (kept first):

- :func:`ablation_scores`: the increase of the validation loss (or the drop
  of accuracy) when the unit alone is replaced; one pass over the frames per
  unit. :func:`ablation_of_set` removes several units at once.
- :func:`taylor_scores`: first-order Taylor estimate of that loss change,
  ``|mean over frames of <dL/dy, r - y>|`` (``y`` the unit's output, ``r``
  its replacement), for all units from one forward and backward pass.
- :func:`block_influence_scores`: ``1 - cos(input, output)`` per frame,
  averaged (Men et al., ShortGPT), one forward pass.
- :func:`synflow_scores`: SynFlow saliency of the unit's own parameters in
  the trained network (Tanaka et al. 2020): parameters made non-negative,
  float64, an all-ones input, BatchNorm in train mode (batch statistics, so
  activations stay normalised instead of growing through the depth),
  ``R = sum(output)``, score = ``sum |theta * dR/dtheta|`` over the unit.
- :func:`reverse_scores`: deepest first: the earlier a unit, the higher.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import EdgepruneError

LAST_REPLACEMENT: dict[Any, str] = {}


def _tensor(x, dtype=None):
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    return t.to(dtype or torch.float32)


def _batches(n: int, batch_size: int):
    for a in range(0, n, batch_size):
        yield a, min(n, a + batch_size)


def _chain(m) -> tuple:
    """A unit's modules in forward order (one module, or a chain given as a tuple/list)."""
    return tuple(m) if isinstance(m, (tuple, list)) else (m,)


def _span_hooks(units: dict, on_output) -> list:
    """Hooks calling ``on_output(key, chain input, chain output)`` for every unit; its return value, when not
    None, replaces the chain's output. Returns the handles (remove them when done)."""
    held: dict = {}
    handles = []
    for key, m in units.items():
        chain = _chain(m)

        def pre(_m, inp, key=key):
            held[key] = inp[0]

        def post(_m, _inp, out, key=key):
            return on_output(key, held.pop(key), out)
        handles.append(chain[0].register_forward_pre_hook(pre))
        handles.append(chain[-1].register_forward_hook(post))
    return handles


def _unit_io(model, units: dict, x, batch_size: int) -> tuple[dict, dict]:
    """Per-unit (in_shape, out_shape) and the mean output of shape-changing units over ``x``."""
    shapes: dict = {}
    sums: dict = {}
    count = 0

    def record(key, inp, out):
        shapes[key] = (tuple(inp.shape[1:]), tuple(out.shape[1:]))
        if tuple(inp.shape[1:]) != tuple(out.shape[1:]):
            s = out.detach().sum(0)
            sums[key] = s if key not in sums else sums[key] + s

    handles = _span_hooks(units, record)
    try:
        with torch.no_grad():
            for a, b in _batches(len(x), batch_size):
                model(x[a:b])
                count += b - a
    finally:
        for h in handles:
            h.remove()
    means = {k: v / max(count, 1) for k, v in sums.items()}
    return shapes, means


def _replacement(key, inp, out, means):
    if tuple(inp.shape) == tuple(out.shape):
        LAST_REPLACEMENT[key] = "identity"
        return inp
    LAST_REPLACEMENT[key] = "mean"
    return means[key].unsqueeze(0).expand_as(out).to(out.dtype)


def _evaluate(model, x, y, batch_size: int) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on ``x, y``."""
    loss = 0.0
    correct = 0
    with torch.no_grad():
        for a, b in _batches(len(x), batch_size):
            out = model(x[a:b])
            loss += float(F.cross_entropy(out.double(), y[a:b], reduction="sum"))
            correct += int((out.argmax(1) == y[a:b]).sum())
    return loss / len(x), correct / len(x)


def _prepare(model, units, x, y):
    if not units:
        raise EdgepruneError("no units to score")
    if x is None or len(x) == 0:
        raise EdgepruneError("this importance criterion needs validation frames")
    x = _tensor(x)
    y = None if y is None else torch.as_tensor(np.asarray(y), dtype=torch.int64)
    model.eval()
    return x, y


def ablation_of_set(model, modules, x, y, means=None, batch_size: int = 256) -> tuple[float, float]:
    """(loss, accuracy) of ``model`` on ``x, y`` with every module in ``modules`` replaced (see module doc)."""
    means = means or {}
    handles = _span_hooks(modules, lambda key, inp, out: _replacement(key, inp, out, means))
    try:
        return _evaluate(model, x, y, batch_size)
    finally:
        for h in handles:
            h.remove()


def ablation_scores(model, units: dict, x, y, metric: str = "loss", batch_size: int = 256) -> dict:
    """Per unit: validation loss increase (``metric="loss"``) or accuracy drop (``"acc"``) when it is replaced."""
    if metric not in ("loss", "acc"):
        raise EdgepruneError(f"ablation metric must be loss or acc, got {metric!r}")
    x, y = _prepare(model, units, x, y)
    if y is None:
        raise EdgepruneError("the ablation criterion needs labelled frames")
    _, means = _unit_io(model, units, x, batch_size)
    base_loss, base_acc = _evaluate(model, x, y, batch_size)
    out = {}
    for k, m in units.items():
        loss, acc = ablation_of_set(model, {k: m}, x, y, means, batch_size)
        out[k] = loss - base_loss if metric == "loss" else base_acc - acc
    return out


def taylor_scores(model, units: dict, x, y, batch_size: int = 256) -> dict:
    """First-order Taylor estimate of each unit's ablation loss change, from one forward/backward pass."""
    x, y = _prepare(model, units, x, y)
    if y is None:
        raise EdgepruneError("the taylor criterion needs labelled frames")
    _, means = _unit_io(model, units, x, batch_size)
    totals = {k: 0.0 for k in units}
    store: dict = {}

    def keep(key, inp, out):
        o = out.clone()
        o.retain_grad()
        store[key] = (inp.detach(), o)
        return o

    handles = _span_hooks(units, keep)
    try:
        for a, b in _batches(len(x), batch_size):
            store.clear()
            model.zero_grad(set_to_none=True)
            out = model(x[a:b])
            F.cross_entropy(out, y[a:b], reduction="sum").backward()
            for k, (inp, o) in store.items():
                r = _replacement(k, inp, o.detach(), means)
                totals[k] += float(((r - o.detach()) * o.grad).sum())
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
    return {k: abs(v) / len(x) for k, v in totals.items()}


def _match_shape(inp, out):
    """``inp`` brought to ``out``'s shape: pooled over space, channels zero-padded or cut (for the cosine)."""
    if inp.shape == out.shape:
        return inp
    if inp.dim() >= 3 and inp.shape[2:] != out.shape[2:]:
        pool = F.adaptive_avg_pool1d if inp.dim() == 3 else F.adaptive_avg_pool2d
        inp = pool(inp, out.shape[2:])
    if inp.shape[1] < out.shape[1]:
        pad = [0, 0] * (inp.dim() - 2) + [0, out.shape[1] - inp.shape[1]]
        inp = F.pad(inp, pad)
    elif inp.shape[1] > out.shape[1]:
        inp = inp[:, : out.shape[1]]
    return inp


def block_influence_scores(model, units: dict, x, batch_size: int = 256) -> dict:
    """``1 - cos(input, output)`` of each unit, per frame (flattened), averaged over ``x``."""
    x, _ = _prepare(model, units, x, None)
    totals = {k: 0.0 for k in units}

    def record(key, inp, out):
        i = _match_shape(inp.detach(), out.detach())
        cos = F.cosine_similarity(i.reshape(len(i), -1).double(), out.detach().reshape(len(out), -1).double(),
                                  dim=1, eps=1e-12)
        totals[key] += float((1 - cos).sum())

    handles = _span_hooks(units, record)
    try:
        with torch.no_grad():
            for a, b in _batches(len(x), batch_size):
                model(x[a:b])
    finally:
        for h in handles:
            h.remove()
    return {k: v / len(x) for k, v in totals.items()}


def synflow_backward(work, input_shape, batch: int = 2) -> None:
    """SynFlow's pass on ``work`` in place (a copy: it is changed): float64, parameters and floating buffers made
    non-negative, BatchNorm in train mode (batch statistics; other modules, dropout included, in eval mode),
    ``R = sum(output)`` of ``batch`` all-ones frames backpropagated; the gradients are then in ``work``."""
    work.double().eval()
    for m in work.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
    with torch.no_grad():
        for p in work.parameters():
            p.abs_()
        for b in work.buffers():
            if b.is_floating_point():
                b.abs_()
    work.zero_grad(set_to_none=True)
    with torch.enable_grad():
        work(torch.ones((batch,) + tuple(input_shape), dtype=torch.float64)).sum().backward()


def synflow_scores(model, units: dict, input_shape, batch: int = 2) -> dict:
    """SynFlow saliency of each unit's own parameters in (a copy of) the trained ``model``.

    BatchNorm runs in train mode on ``batch`` identical all-ones frames (its
    statistics are those of one frame; ``batch`` >= 2 so that BatchNorm1d after a
    linear layer is defined). The model passed in is not modified.
    """
    if not units:
        raise EdgepruneError("no units to score")
    work = copy.deepcopy(model)
    names = {id(c): k for k, m in units.items() for c in _chain(m)}
    unit_of_param: dict[int, Any] = {}
    # the copy's unit modules, found by their names in the original
    orig = dict(model.named_modules())
    copy_mods = dict(work.named_modules())
    for name, m in orig.items():
        if id(m) in names:
            for p in copy_mods[name].parameters():
                unit_of_param[id(p)] = names[id(m)]
    synflow_backward(work, input_shape, batch)
    totals = {k: 0.0 for k in units}
    for p in work.parameters():
        k = unit_of_param.get(id(p))
        if k is not None and p.grad is not None:
            totals[k] += float((p.detach() * p.grad).abs().sum())
    if not all(math.isfinite(v) for v in totals.values()):
        raise EdgepruneError("the synflow score overflowed for this model; choose another --importance criterion")
    return totals


def reverse_scores(order: list) -> dict:
    """Deepest first: the unit at position ``i`` of ``order`` (shallow to deep) scores ``len(order) - i``."""
    return {k: float(len(order) - i) for i, k in enumerate(order)}


def iterative_ablation_scores(model, units: dict, x, y, order=None, batch_size: int = 256,
                              trace: list | None = None) -> dict:
    """Greedy backward elimination on the validation loss: at each step every remaining unit is removed in turn
    (together with those already removed), the one whose removal raises the loss least goes, and the loss is
    re-measured; repeat until one unit is left. Value = the step at which a unit went (0 = first), so the unit
    removed last is the most important. Unlike :func:`ablation_scores` this sees interactions: of two
    redundant copies, removing either alone is harmless, but once one is gone the other is not.

    Cost: one pass over ``x`` per remaining unit per step (n (n + 1) / 2 - 1 passes for n units). Ties go to
    the unit earlier in ``order``. ``trace``: if a list, one ``(unit, loss after its removal)`` per step.
    """
    x, y = _prepare(model, units, x, y)
    if y is None:
        raise EdgepruneError("the iterative-ablation criterion needs labelled frames")
    keys = list(order if order is not None else units)
    _, means = _unit_io(model, units, x, batch_size)
    gone: dict = {}
    values: dict = {}
    remaining = list(keys)
    while remaining:
        if len(remaining) == 1:
            pick, loss = remaining[0], float("nan")
        else:
            trials = [(ablation_of_set(model, {**gone, k: units[k]}, x, y, means, batch_size)[0], i, k)
                      for i, k in enumerate(remaining)]
            loss, _, pick = min(trials)
        values[pick] = float(len(values))
        gone[pick] = units[pick]
        remaining.remove(pick)
        if trace is not None:
            trace.append((pick, loss))
    return values
