"""A Torch-Pruning pruner for ``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` (Torch-Pruning's own LSTM pruner handles
one layer only and narrows the recurrent weights along one of their two hidden dimensions; it has none for GRU).

Hidden units ("out" channels) are removed from every layer of a unidirectional stack: each layer's gate rows
(input-to-hidden and hidden-to-hidden weights and biases), the hidden-to-hidden columns and the next layer's
input columns. Input features ("in" channels) are removed from the first layer's input-to-hidden columns, both
directions. Narrowing the hidden units of a bidirectional or projected LSTM is refused (its output interleaves
two directions); edgeprune leaves those layers' outputs alone.
"""

from __future__ import annotations

import torch
from torch import nn

_CACHE: dict = {}


def _gates(layer) -> int:
    return 4 if isinstance(layer, nn.LSTM) else 3 if isinstance(layer, nn.GRU) else 1


def rnn_pruners() -> dict:
    """``customized_pruners`` for Torch-Pruning: one pruner object per recurrent layer type."""
    if _CACHE:
        return dict(_CACHE)
    import torch_pruning as tp

    class RNNPruner(tp.pruner.function.BasePruningFunc):
        def prune_out_channels(self, layer, idxs):
            if layer.bidirectional or getattr(layer, "proj_size", 0):
                raise ValueError(f"narrowing the hidden units of a bidirectional or projected {type(layer).__name__} "
                                 "is not supported")
            hid = layer.hidden_size
            keep = sorted(set(range(hid)) - {int(i) for i in idxs})
            rows = torch.cat([torch.tensor(keep) + g * hid for g in range(_gates(layer))]).tolist()
            for n in range(layer.num_layers):
                w_ih = self._prune_parameter_and_grad(getattr(layer, f"weight_ih_l{n}"), rows, 0)
                if n > 0:
                    w_ih = self._prune_parameter_and_grad(w_ih, keep, 1)
                setattr(layer, f"weight_ih_l{n}", w_ih)
                w_hh = self._prune_parameter_and_grad(getattr(layer, f"weight_hh_l{n}"), rows, 0)
                setattr(layer, f"weight_hh_l{n}", self._prune_parameter_and_grad(w_hh, keep, 1))
                if layer.bias:
                    for b in ("bias_ih", "bias_hh"):
                        setattr(layer, f"{b}_l{n}",
                                self._prune_parameter_and_grad(getattr(layer, f"{b}_l{n}"), rows, 0))
            layer.hidden_size = len(keep)
            layer._init_flat_weights()
            return layer

        def prune_in_channels(self, layer, idxs):
            keep = sorted(set(range(layer.input_size)) - {int(i) for i in idxs})
            for sfx in (["", "_reverse"] if layer.bidirectional else [""]):
                name = f"weight_ih_l0{sfx}"
                setattr(layer, name, self._prune_parameter_and_grad(getattr(layer, name), keep, 1))
            layer.input_size = len(keep)
            layer._init_flat_weights()
            return layer

        def get_out_channels(self, layer):
            return layer.hidden_size * (2 if layer.bidirectional else 1)

        def get_in_channels(self, layer):
            return layer.input_size

    pruner = RNNPruner()
    _CACHE.update({nn.LSTM: pruner, nn.GRU: pruner, nn.RNN: pruner})
    return dict(_CACHE)


class RNNImportance:
    """Wrap a Torch-Pruning importance: a group whose only weighted members are recurrent layers (LSTM -> LSTM,
    which Torch-Pruning's criteria do not score) gets the L``p`` norms of those layers' weights for each
    channel (a hidden unit: its gate rows in every layer; an input feature: its first-layer input columns)."""

    def __init__(self, inner, p: int = 1):
        self.inner, self.p = inner, p

    def __call__(self, group, **kwargs):
        imp = self.inner(group, **kwargs)
        if imp is not None:
            return imp

        total = None
        for dep, idxs in group:
            mod = dep.target.module
            if not isinstance(mod, nn.RNNBase) or not len(idxs):
                continue
            pruner = rnn_pruners()[type(mod)] if type(mod) in rnn_pruners() else None
            is_out = pruner is not None and dep.handler == pruner.prune_out_channels
            score = _rnn_scores(mod, is_out, self.p)
            if total is None:
                total = torch.zeros(len(group[0][1]))
            for i in idxs:
                j, root = int(getattr(i, "idx", i)), int(getattr(i, "root_idx", i))
                if j < len(score) and root < len(total):
                    total[root] += score[j]
        return total


def _rnn_scores(mod, hidden: bool, p: int):
    """Per hidden unit (``hidden``) or per input feature: the summed |w|^p of the weights that carry it."""
    with torch.no_grad():
        if not hidden:
            return mod.weight_ih_l0.abs().pow(p).sum(0)
        hid, gates = mod.hidden_size, _gates(mod)
        score = torch.zeros(hid)
        for n in range(mod.num_layers):
            for w in (getattr(mod, f"weight_ih_l{n}"), getattr(mod, f"weight_hh_l{n}")):
                score += w.abs().pow(p).sum(1).view(gates, hid).sum(0)
        return score
