"""Is a pruned network what it claims to be? Checks that use only the original network, the pruned one and a
record of what was removed, never the pruning code's own reasoning.

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
says so and is skipped. 

Channel pruning (:func:`check_channel_masked`): a channel-pruned network, before fine-tuning, must compute
what the ORIGINAL network computes with the pruned channels masked to zero. "Masked" means: every layer that
reads a removed channel reads a zero there instead. That is done on a copy of the original by zeroing the
matching input slices of the weights of the layers that mix channels (convolutions, linear layers, recurrent
layers' input and hidden-to-hidden weights, attention input projections). Layers that act on each channel
alone (BatchNorm, activations, pooling) need no masking. Anything else that mixes channels without weights
(a LayerNorm over channels, a zero-padding shortcut that places channels by the current width, a concatenation
whose offsets moved) is not masked, so the two networks then differ and the check says so: that is the point.

The pruned network's outputs on random frames are compared with the masked original's; they must agree within
``tol`` (absolute, scaled by the output's magnitude when that exceeds 1).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgeprune.export.runtime.errors import first_line

from ..errors import EdgepruneError
from ..models.modular import get_module

ATOL = 1e-4


def _unit_hooks(model, unit, handles: list) -> None:
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


DEFAULT_TOL = ATOL   # the channel check's tolerance: the layer check's


def _zero_cols(weight, idx, dim: int = 1) -> None:
    if len(idx):
        weight.data.index_fill_(dim, torch.as_tensor(sorted(idx), dtype=torch.long), 0.0)


def _mask_conv(mod, idx) -> None:
    """Zero a convolution's reading of input channels ``idx`` (grouped convolutions included)."""
    w = mod.weight.data
    if "Transpose" in type(mod).__name__:      # weight (in, out/groups, ...)
        _zero_cols(mod.weight, idx, 0)
        return
    per_group_in = w.shape[1]
    per_group_out = w.shape[0] // mod.groups
    for c in idx:
        g, local = divmod(int(c), per_group_in)
        w[g * per_group_out:(g + 1) * per_group_out, local] = 0.0


def _mask_rnn(mod, removed_in, removed_hidden) -> None:
    """Zero an RNN's reading of removed input features (first layer) and of removed hidden units (its own
    recurrence and, in a stack, the next layer's input)."""
    suffixes = ["", "_reverse"] if mod.bidirectional else [""]
    hidden = list(removed_hidden)
    for layer in range(mod.num_layers):
        for sfx in suffixes:
            if layer == 0:
                _zero_cols(getattr(mod, f"weight_ih_l0{sfx}"), removed_in)
            else:
                both = hidden + [h + mod.hidden_size for h in hidden] if mod.bidirectional else hidden
                _zero_cols(getattr(mod, f"weight_ih_l{layer}{sfx}"), both)
            _zero_cols(getattr(mod, f"weight_hh_l{layer}{sfx}"), hidden)


def _mask_module(mod, removed: dict[str, list[int]]) -> None:
    r_in, r_out = removed.get("in", []), removed.get("out", [])
    if isinstance(mod, nn.modules.conv._ConvNd) and r_in:
        _mask_conv(mod, r_in)
    elif isinstance(mod, nn.Linear) and r_in:
        _zero_cols(mod.weight, r_in)
    elif isinstance(mod, nn.RNNBase):
        _mask_rnn(mod, r_in, r_out)
    elif isinstance(mod, nn.MultiheadAttention) and r_in:
        if mod.in_proj_weight is not None:
            _zero_cols(mod.in_proj_weight, r_in)
        else:
            for w in (mod.q_proj_weight, mod.k_proj_weight, mod.v_proj_weight):
                _zero_cols(w, r_in)


def masked_copy(original, removed: dict[str, dict[str, list[int]]]):
    """A copy of ``original`` in which every removed channel is read as zero (see the module docstring).

    ``removed`` maps a module name to ``{"in": [...], "out": [...]}``: the indices, in the ORIGINAL module's
    numbering, of its input and output channels that pruning removed.
    """
    net = copy.deepcopy(original).eval()
    mods = dict(net.named_modules())
    with torch.no_grad():
        for name, rem in removed.items():
            if name in mods:
                _mask_module(mods[name], rem)
    return net


def random_frames(shape: tuple[int, ...], n: int = 4, seed: int = 1234):
    """``n`` deterministic standard-normal frames of ``shape`` (the check's inputs)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n,) + tuple(shape), generator=g)


def _outputs(net, x):
    with torch.no_grad():
        y = net.eval()(x)
    if isinstance(y, (tuple, list)):
        y = y[0]
    return y


def channel_mask_mismatch(original, pruned, removed: dict[str, dict[str, list[int]]], frames,
                          tol: float = DEFAULT_TOL) -> str | None:
    """None when ``pruned`` equals ``original`` with the ``removed`` channels masked (within ``tol``), else why not."""
    ref = _outputs(masked_copy(original, removed), frames)
    try:
        out = _outputs(pruned, frames)
    except Exception as exc:  # the pruned network's own forward failing is a finding, not a crash
        return f"the pruned forward fails ({type(exc).__name__}: {first_line(exc)})"
    if tuple(out.shape) != tuple(ref.shape):
        return f"the pruned output has shape {list(out.shape)}, the original {list(ref.shape)}"
    diff = float((out - ref).abs().max())
    scale = max(1.0, float(ref.abs().max()))
    if not diff <= tol * scale:
        return f"it is not the original with those channels masked (max output difference {diff:.3g})"
    return None


def check_channel_masked(original, pruned, removed: dict[str, dict[str, list[int]]], frames,
                         tol: float = DEFAULT_TOL) -> None:
    """Raise an EdgepruneError unless ``pruned`` equals the masked ``original`` (see :func:`channel_mask_mismatch`)."""
    why = channel_mask_mismatch(original, pruned, removed, frames, tol)
    if why:
        raise EdgepruneError(f"refusing the channel-pruned model: {why}")


def width_changes(original, pruned) -> dict[str, dict[str, Any]]:
    """Per weighted module whose widths changed: ``{"kind": ..., "in": [before, after], "out": [before, after]}``
    (read from the two networks, so messages say what the checkpoint records)."""
    mods = dict(pruned.named_modules())
    out: dict[str, dict[str, Any]] = {}
    for name, a in original.named_modules():
        b = mods.get(name)
        wa, wb = _widths(a), _widths(b) if b is not None else None
        if wa is None or wb is None:
            continue
        change = {k: [wa[k], wb[k]] for k in ("in", "out") if wa[k] != wb[k]}
        if change:
            out[name] = {"kind": type(a).__name__, "in": [wa["in"], wb["in"]], "out": [wa["out"], wb["out"]]}
    return out


def _widths(mod) -> dict[str, int] | None:
    if isinstance(mod, nn.modules.conv._ConvNd):
        return {"in": mod.in_channels, "out": mod.out_channels}
    if isinstance(mod, nn.Linear):
        return {"in": mod.in_features, "out": mod.out_features}
    if isinstance(mod, nn.RNNBase):
        return {"in": mod.input_size, "out": mod.hidden_size}
    if isinstance(mod, nn.MultiheadAttention):
        return {"in": mod.embed_dim, "out": mod.embed_dim}
    return None
