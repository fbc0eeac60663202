"""The one MAC definition of edgeprune.

MACs = multiply-accumulates of convolutions, linear layers, recurrent layers
(LSTM/GRU/RNN: input and recurrent weights at every time step) and matrix
products (matmul/bmm, attention); BN, ReLU, pooling, additions and gate
arithmetic are not counted; per single input frame. FLOPs, where a
report needs them, are 2 x MACs. This is the convention the pruning papers
call "FLOPs" (thop), minus its BN term.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .layout import min_batch_of
from .spec import spec_stats

MAC_DEFINITION = "MACs: conv + linear + LSTM/GRU + matmul multiply-accumulates per frame (FLOPs = 2 x MACs)"


def count_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_LEAVES = _CONV + (nn.Linear, nn.RNNBase)


def rnn_macs(mod: nn.RNNBase, steps: int) -> int:
    """Multiply-accumulates of an LSTM/GRU/RNN over ``steps`` time steps, one sequence.

    Per layer, direction and step: gates x hidden x (input + recurrent) weights
    (4 gates for an LSTM, 3 for a GRU, 1 for an Elman RNN), plus the hidden
    projection of an LSTM with ``proj_size``. Element-wise gate arithmetic is
    not counted, like BN and ReLU elsewhere.
    """
    gates = 4 if isinstance(mod, nn.LSTM) else 3 if isinstance(mod, nn.GRU) else 1
    dirs = 2 if mod.bidirectional else 1
    proj = int(getattr(mod, "proj_size", 0) or 0)
    rec = proj or mod.hidden_size
    total = 0
    for layer in range(mod.num_layers):
        fin = mod.input_size if layer == 0 else rec * dirs
        per_step = gates * mod.hidden_size * (fin + rec) + (mod.hidden_size * proj if proj else 0)
        total += per_step * dirs * int(steps)
    return total


def rnn_layer_macs(mod: nn.RNNBase, steps: int, layer: int) -> int:
    """The share of :func:`rnn_macs` that layer ``layer`` of ``mod`` costs."""
    gates = 4 if isinstance(mod, nn.LSTM) else 3 if isinstance(mod, nn.GRU) else 1
    dirs = 2 if mod.bidirectional else 1
    proj = int(getattr(mod, "proj_size", 0) or 0)
    rec = proj or mod.hidden_size
    fin = mod.input_size if layer == 0 else rec * dirs
    return (gates * mod.hidden_size * (fin + rec) + (mod.hidden_size * proj if proj else 0)) * dirs * int(steps)


def _leaf_macs(mod, inp, out) -> int:
    if isinstance(mod, _CONV):
        return out.numel() * (mod.in_channels // mod.groups) * math.prod(map(int, mod.kernel_size))
    if isinstance(mod, nn.Linear):
        return out.numel() * mod.in_features
    # recurrent: the time axis of the input
    x = inp[0] if inp else None
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"cannot count the MACs of a {type(mod).__name__} fed a packed sequence")
    if x.dim() == 2:
        steps, batch = x.shape[0], 1
    else:
        steps, batch = (x.shape[1], x.shape[0]) if mod.batch_first else (x.shape[0], x.shape[1])
    return rnn_macs(mod, steps) * batch


def _function_macs(func, args, kwargs, out) -> int | None:
    """MACs of a functional matrix product / convolution / attention call made outside Conv/Linear/RNN modules."""
    def t(i, key=None):
        if len(args) > i:
            return args[i]
        return kwargs.get(key) if key else None

    if func in (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm, torch.Tensor.bmm,
                torch.mm, torch.Tensor.mm):
        a = t(0, "input")
        if isinstance(out, torch.Tensor) and isinstance(a, torch.Tensor):
            return out.numel() * int(a.shape[-1])
    elif func in (torch.addmm, torch.baddbmm):
        a = t(1, "mat1") if func is torch.addmm else t(1, "batch1")
        if isinstance(out, torch.Tensor) and isinstance(a, torch.Tensor):
            return out.numel() * int(a.shape[-1])
    elif func is F.linear:
        w = t(1, "weight")
        if isinstance(out, torch.Tensor) and isinstance(w, torch.Tensor):
            return out.numel() * int(w.shape[-1])
    elif func in (F.conv1d, F.conv2d, F.conv3d):
        w = t(1, "weight")
        if isinstance(out, torch.Tensor) and isinstance(w, torch.Tensor):
            return out.numel() * math.prod(map(int, w.shape[1:]))
    elif func is F.multi_head_attention_forward:
        # a composite: its inner products do not reach the mode, so count it whole
        q, k, v = t(0, "query"), t(1, "key"), t(2, "value")
        if all(isinstance(z, torch.Tensor) for z in (q, k, v)):
            e = int(q.shape[-1])
            lq, s = int(q.shape[0]), int(k.shape[0])
            n = math.prod(map(int, q.shape[1:-1]))
            return n * (lq * e * e + s * e * int(k.shape[-1]) + s * e * int(v.shape[-1]) + 2 * lq * s * e + lq * e * e)
    elif func is F.scaled_dot_product_attention:
        q, k, v = t(0, "query"), t(1, "key"), t(2, "value")
        if all(isinstance(z, torch.Tensor) for z in (q, k, v)):
            lead = math.prod(map(int, q.shape[:-2]))
            return lead * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])
    return None


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...] | None = None, per_layer: bool = False,
               per_module: bool = False):
    """MACs of one forward pass for a single frame.

    Counted: convolutions, linear layers, LSTM/GRU/RNN layers (input and
    recurrent weights, every time step), and matrix products made outside
    those modules (``matmul``/``bmm``/``F.linear``, attention, including
    ``nn.MultiheadAttention`` and ``scaled_dot_product_attention``).

    ``input_shape`` is the per-sample shape (defaults to the spec's (2, L) frame
    for edgeprune models). With ``per_layer`` a dict {top-level layer index:
    MACs} is returned too (for EdgeNet models), so reports can put per-layer
    latency beside per-layer MACs. With ``per_module`` a dict {module name:
    MACs} (the innermost module that ran the operation) is returned instead.
    """
    if input_shape is None:
        spec = getattr(model, "spec", None)
        if spec is None:
            raise ValueError("input_shape is required for models without a spec")
        input_shape = tuple(spec["input"][-2:]) if spec["dim"] == 2 else tuple(spec["input"])
    counts: dict[str, int] = {}
    stack: list[str] = []
    inside = [0]   # > 0 while a Conv/Linear/RNN module runs (its own hook counts it)
    handles = []

    def add(name: str, v: int) -> None:
        counts[name] = counts.get(name, 0) + int(v)

    def pre(name, leaf):
        def fn(mod, inp):
            stack.append(name)
            if leaf:
                inside[0] += 1
        return fn

    def post(name, leaf):
        def fn(mod, inp, out):
            if stack and stack[-1] == name:
                stack.pop()
            if leaf:
                inside[0] -= 1
                y = out[0] if isinstance(out, tuple) else out
                add(name, _leaf_macs(mod, inp, y))
        return fn

    class _Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            if inside[0] == 0:
                m = _function_macs(func, args, kwargs, out)
                if m:
                    add(stack[-1] if stack else "", m)
            return out

    for name, mod in model.named_modules():
        leaf = isinstance(mod, _LEAVES)
        handles.append(mod.register_forward_pre_hook(pre(name, leaf)))
        handles.append(mod.register_forward_hook(post(name, leaf)))
    was_training = model.training
    model.eval()
    batch = min_batch_of(model)   # a network that needs a few frames runs on that many; its counts are divided
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else "cpu"
        x = torch.zeros((batch,) + tuple(input_shape), device=device)
        with _Mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    counts = {k: v // batch for k, v in counts.items()}
    total = sum(counts.values())
    if per_module:
        return total, counts
    if not per_layer:
        return total
    layers: dict[int, int] = {}
    for name, v in counts.items():
        parts = name.split(".")
        if len(parts) > 1 and parts[0] == "layers" and parts[1].isdigit():
            layers[int(parts[1])] = layers.get(int(parts[1]), 0) + v
    return total, layers


def model_stats(spec: dict[str, Any]) -> dict[str, int]:
    """Params, MACs, prunable units and weight layers of a zoo spec (of a module recipe too:
    :func:`edgeprune.models.modular.network_stats`).

    Computed analytically from the spec (see ``spec.layer_costs``); the
    tests check it against :func:`count_macs` and :func:`count_params` on
    built models.
    """
    return spec_stats(spec)
