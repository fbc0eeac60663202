"""Is a pruned network what it claims to be? Checks that use only the original network, the pruned one and a
record of what was removed, never the pruning code's own reasoning.

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

from ..errors import EdgepruneError

DEFAULT_TOL = 1e-4


def _zero_cols(weight, idx, dim: int = 1) -> None:
    import torch

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
    from torch import nn

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
    import torch

    net = copy.deepcopy(original).eval()
    mods = dict(net.named_modules())
    with torch.no_grad():
        for name, rem in removed.items():
            if name in mods:
                _mask_module(mods[name], rem)
    return net


def random_frames(shape: tuple[int, ...], n: int = 4, seed: int = 1234):
    """``n`` deterministic standard-normal frames of ``shape`` (the check's inputs)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn((n,) + tuple(shape), generator=g)


def _outputs(net, x):
    import torch

    with torch.no_grad():
        y = net.eval()(x)
    if isinstance(y, (tuple, list)):
        y = y[0]
    return y


def channel_mask_mismatch(original, pruned, removed: dict[str, dict[str, list[int]]], frames,
                          tol: float = DEFAULT_TOL) -> str | None:
    """None when ``pruned`` equals ``original`` with the ``removed`` channels masked (within ``tol``), else why not."""
    import torch

    ref = _outputs(masked_copy(original, removed), frames)
    try:
        out = _outputs(pruned, frames)
    except Exception as exc:  # the pruned network's own forward failing is a finding, not a crash
        return f"the pruned forward fails ({type(exc).__name__}: {_first_line(exc)})"
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
    from torch import nn

    if isinstance(mod, nn.modules.conv._ConvNd):
        return {"in": mod.in_channels, "out": mod.out_channels}
    if isinstance(mod, nn.Linear):
        return {"in": mod.in_features, "out": mod.out_features}
    if isinstance(mod, nn.RNNBase):
        return {"in": mod.input_size, "out": mod.hidden_size}
    if isinstance(mod, nn.MultiheadAttention):
        return {"in": mod.embed_dim, "out": mod.embed_dim}
    return None
