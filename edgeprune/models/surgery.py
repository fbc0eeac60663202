"""Module surgery for plain ``nn.Module`` networks: identity for removed units, recurrent-layer removal,
and re-initialisation of a layer whose input shape changed."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import EdgepruneError
from .trace import hooked_forward


class RNNIdentity(nn.Module):
    """Stands in for a removed LSTM/GRU/RNN whose output width equals its input width.

    Returns what the recurrent module returned, in the same structure: the
    input sequence, and a hidden state made from the sequence's last step
    (the cell state of an LSTM is zeros).
    """

    def __init__(self, like: nn.RNNBase):
        super().__init__()
        self.batch_first = bool(like.batch_first)
        self.layers = int(like.num_layers)
        self.dirs = 2 if like.bidirectional else 1
        self.lstm = isinstance(like, nn.LSTM)

    def forward(self, x, hx=None):
        last = x[:, -1] if self.batch_first else x[-1]
        h = last.reshape(last.shape[0], self.dirs, -1).transpose(0, 1)
        h = h.repeat(self.layers, 1, 1)
        if self.lstm:
            return x, (h, torch.zeros_like(h))
        return x, h


class Bypass(nn.Module):
    """Stands in for a removed unit: returns its first input unchanged (any further arguments, such as the masks a
    ``nn.TransformerEncoder`` passes its layers, are ignored)."""

    def forward(self, x, *args, **kwargs):
        return x


class PoolBypass(nn.Module):
    """Stands in for a removed stack that shortens its input (same channels): a parameter-free adaptive average
    pool of the input to the stack's output size."""

    def __init__(self, size):
        super().__init__()
        self.size = [int(v) for v in size]

    def forward(self, x, *args, **kwargs):
        pool = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}.get(len(self.size))
        if pool is None:
            raise EdgepruneError(f"no pooling stands in for a stack of output size {self.size}")
        return pool(x, self.size if len(self.size) > 1 else self.size[0])


def refresh_rnn(mod: nn.RNNBase) -> None:
    """Point an RNN's flat weight list at its current parameters (after they were replaced)."""
    if hasattr(mod, "_init_flat_weights"):
        mod._init_flat_weights()


def keep_rnn_layers(mod: nn.RNNBase, keep: list[int]) -> nn.RNNBase:
    """A copy of ``mod`` with only the layers in ``keep`` (their weights copied)."""
    if not isinstance(mod, nn.RNNBase):
        raise EdgepruneError(f"rnn_layers edit on a {type(mod).__name__}, not an LSTM/GRU/RNN")
    keep = [int(k) for k in keep]
    if not keep or any(k < 0 or k >= mod.num_layers for k in keep) or sorted(set(keep)) != keep:
        raise EdgepruneError(f"cannot keep layers {keep} of a {mod.num_layers}-layer {type(mod).__name__}")
    dirs = 2 if mod.bidirectional else 1
    proj = getattr(mod, "proj_size", 0) or 0
    out_w = (proj or mod.hidden_size) * dirs
    in0 = mod.input_size if keep[0] == 0 else out_w
    kw: dict[str, Any] = dict(input_size=in0, hidden_size=mod.hidden_size, num_layers=len(keep), bias=mod.bias,
                              batch_first=mod.batch_first, dropout=mod.dropout if len(keep) > 1 else 0.0,
                              bidirectional=mod.bidirectional)
    if isinstance(mod, nn.LSTM):
        kw["proj_size"] = proj
    elif type(mod) is nn.RNN:
        kw["nonlinearity"] = mod.nonlinearity
    new = type(mod)(**kw)
    old = dict(mod.named_parameters())
    with torch.no_grad():
        for name, p in new.named_parameters():
            # weight_ih_l{j}[_reverse] <- weight_ih_l{keep[j]}[_reverse]
            base, _, rest = name.partition("_l")
            j = int(rest.split("_")[0])
            suffix = rest[len(str(j)):]
            src = old[f"{base}_l{keep[j]}{suffix}"]
            if src.shape == p.shape:
                p.copy_(src)
    refresh_rnn(new)
    return new


def _reinit_conv(m, cin: int) -> dict[str, Any]:
    if m.groups != 1:
        raise EdgepruneError(f"cannot re-initialise a grouped convolution for a new input width {cin}")
    w = torch.empty((m.out_channels, cin) + tuple(m.kernel_size))
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    m.in_channels = cin
    m.weight = nn.Parameter(w)
    if m.bias is not None:
        nn.init.zeros_(m.bias)
    return {"in_channels": cin}


def _reinit_linear(m, fin: int) -> dict[str, Any]:
    w = torch.empty(m.out_features, fin)
    nn.init.kaiming_uniform_(w, a=5 ** 0.5)
    m.in_features = fin
    m.weight = nn.Parameter(w)
    if m.bias is not None:
        bound = 1 / max(fin, 1) ** 0.5
        nn.init.uniform_(m.bias, -bound, bound)
    return {"in_features": fin}


def _reinit_rnn(m, fin: int) -> dict[str, Any]:
    gates = {"LSTM": 4, "GRU": 3}.get(type(m).__name__, 1)
    k = 1 / m.hidden_size ** 0.5
    for suffix in ("", "_reverse") if m.bidirectional else ("",):
        w = torch.empty(gates * m.hidden_size, fin).uniform_(-k, k)
        setattr(m, f"weight_ih_l0{suffix}", nn.Parameter(w))
    m.input_size = fin
    refresh_rnn(m)
    return {"input_size": fin}


def _reinit_bn(m, c: int) -> dict[str, Any]:
    m.num_features = c
    if m.affine:
        m.weight = nn.Parameter(torch.ones(c))
        m.bias = nn.Parameter(torch.zeros(c))
    if m.track_running_stats:
        m.running_mean = torch.zeros(c)
        m.running_var = torch.ones(c)
    return {"num_features": c}


def repair_inputs(model, example, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Run ``example`` through ``model``; every Conv/Linear/LSTM/GRU/BN whose input width no longer matches
    is re-initialised for the width it receives (in place). Returns ``{module name: changed attributes}``."""
    changed: dict[str, dict[str, Any]] = {}
    handles = []

    def pre(name):
        def fn(m, args):
            if not args or not isinstance(args[0], torch.Tensor):
                return
            x = args[0]
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and x.dim() >= 2 and x.shape[1] != m.in_channels:
                changed[name] = _reinit_conv(m, int(x.shape[1]))
            elif isinstance(m, nn.Linear) and x.shape[-1] != m.in_features:
                changed[name] = _reinit_linear(m, int(x.shape[-1]))
            elif isinstance(m, nn.RNNBase) and x.shape[-1] != m.input_size:
                changed[name] = _reinit_rnn(m, int(x.shape[-1]))
            elif isinstance(m, nn.modules.batchnorm._BatchNorm) and x.dim() >= 2 and x.shape[1] != m.num_features:
                changed[name] = _reinit_bn(m, int(x.shape[1]))
        return fn

    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.RNNBase, nn.modules.batchnorm._BatchNorm)):
            handles.append(m.register_forward_pre_hook(pre(name)))

    hooked_forward(model, example, handles, "the model no longer runs after the units were removed", seed=seed)
    return changed
