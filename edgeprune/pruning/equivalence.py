"""Equivalence checks: a pruned network must compute what the original computes with the pruned parts taken out.

Layer pruning (``layer``, ``dbp``, ``random`` on traced networks): the pruned model must equal the ORIGINAL model
run with forward hooks that bypass each removed unit (its output replaced by its input), without using the
pruning code's own surgery (:mod:`edgeprune.models.surgery`):

- a unit (one module, or a chain such as Conv-BN-ReLU): the last module's output is replaced by the first
  module's input;
- a removed stack that shortens its input: the output is replaced by an adaptive average pool of its input to
  the output size;
- a removed LSTM/GRU (all of it): its output becomes ``(input, hidden)`` with the hidden state of the last step
  (zeros for an LSTM's cell state);
- one layer of a stacked LSTM/GRU: the stack's output is recomputed from its kept layers, run one by one with
  their own weights.

A layer whose weights were re-initialised (``--transition reinit``) has no original to compare with: the check
says so and is skipped. Channel pruning's masked check is a separate function of this module (see its issue).
"""

from __future__ import annotations

from typing import Any

from ..errors import EdgepruneError

ATOL = 1e-4


def _unit_hooks(model, unit, handles: list) -> None:
    import torch
    from torch import nn
    import torch.nn.functional as F

    from ..models.modular import get_module

    if unit.kind == "rnn-layer":
        mod = get_module(model, unit.rnn)
        handles.append(mod.register_forward_hook(lambda m, args, out, u=unit: _stack_without(m, args[0], u.rnn_layer)))
        return
    first, last = get_module(model, unit.members[0]), get_module(model, unit.members[-1])
    seen: dict[str, Any] = {}

    def grab(m, args, kwargs):
        seen["x"] = args[0] if args else next(iter(kwargs.values()))

    handles.append(first.register_forward_pre_hook(grab, with_kwargs=True))

    def replace(m, args, out):
        x = seen["x"]
        if isinstance(first, nn.RNNBase):
            last_step = x[:, -1] if first.batch_first else x[-1]
            dirs = 2 if first.bidirectional else 1
            h = last_step.reshape(last_step.shape[0], dirs, -1).transpose(0, 1).repeat(first.num_layers, 1, 1)
            return (x, (h, torch.zeros_like(h))) if isinstance(first, nn.LSTM) else (x, h)
        if unit.bypass == "pool":
            size = list(unit.out_shape[1:])
            pool = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}[len(size)]
            return pool(x, size if len(size) > 1 else size[0])
        return x

    handles.append(last.register_forward_hook(replace))


def _stack_without(mod, x, drop: int):
    """The output of the stacked LSTM/GRU ``mod`` on ``x`` without its layer ``drop`` (fresh one-layer modules,
    each loaded with the weights of one kept layer)."""
    import torch
    from torch import nn

    h_all, c_all, y = [], [], x
    for j in range(mod.num_layers):
        if j == drop:
            continue
        kw = dict(input_size=y.shape[-1], hidden_size=mod.hidden_size, num_layers=1, bias=mod.bias,
                  batch_first=mod.batch_first, bidirectional=mod.bidirectional)
        if isinstance(mod, nn.LSTM):
            kw["proj_size"] = mod.proj_size
        one = type(mod)(**kw).to(x.dtype)
        own = dict(mod.named_parameters())
        with torch.no_grad():
            for name, p in one.named_parameters():
                p.copy_(own[name.replace("_l0", f"_l{j}")])
        one.eval()
        out = one(y)
        y = out[0]
        if isinstance(mod, nn.LSTM):
            h_all.append(out[1][0])
            c_all.append(out[1][1])
        else:
            h_all.append(out[1])
    h = torch.cat(h_all, 0)
    return (y, (h, torch.cat(c_all, 0))) if isinstance(mod, nn.LSTM) else (y, h)


def bypassed_output(model, units, x):
    """``model(x)`` (eval mode, no gradients) with every unit of ``units`` (traced ModuleUnits) bypassed by hooks."""
    import torch

    handles: list = []
    was = model.training
    try:
        for u in units:
            _unit_hooks(model, u, handles)
        model.eval()
        with torch.no_grad():
            return model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was)


def layer_equivalence(original, pruned, units, frame_shape, seed: int = 0, batch: int = 4,
                      atol: float = ATOL) -> dict[str, Any]:
    """Compare ``pruned`` with ``original`` whose ``units`` are bypassed, on ``batch`` seeded random frames:
    ``{"checked", "max_abs_diff", "ok"}``."""
    import torch

    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn((batch,) + tuple(frame_shape), generator=g)
    ref = bypassed_output(original, units, x)
    was = pruned.training
    pruned.eval()
    try:
        with torch.no_grad():
            got = pruned(x)
    finally:
        pruned.train(was)
    if tuple(got.shape) != tuple(ref.shape):
        return {"checked": True, "max_abs_diff": float("inf"), "ok": False}
    diff = float((got - ref).abs().max()) if got.numel() else 0.0
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    return {"checked": True, "max_abs_diff": diff, "ok": diff <= atol * max(1.0, scale)}


def check_layer_pruned(original, pruned, units, frame_shape, reinit=(), seed: int = 0) -> dict[str, Any]:
    """:func:`layer_equivalence`, raising one EdgepruneError when the pruned model differs (the result is then
    refused). Skipped (``checked`` false) when layers were re-initialised."""
    if reinit:
        return {"checked": False, "reason": f"re-initialised layers ({', '.join(sorted(reinit))}) have no original"}
    rep = layer_equivalence(original, pruned, units, frame_shape, seed=seed)
    if not rep["ok"]:
        raise EdgepruneError(
            f"the pruned model does not equal the original with {', '.join(u.name for u in units)} bypassed "
            f"(max |difference| {rep['max_abs_diff']:.3g} on random frames): refusing this result; a functional "
            f"operation between a unit's modules, or code that reads a removed module's attributes, can cause this")
    return rep
