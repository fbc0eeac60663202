"""Torch-Pruning's side of channel (filter) pruning, shared by ``channel-l1/-l2/-fpgm/-bn``
(:mod:`edgeprune.pruning.channel_traced` runs them on the live network):

- ``channel-l1``: L1-norm filter pruning (Li et al. 2017), Torch-Pruning's
  ``GroupMagnitudeImportance(p=1)``; ``channel-l2``: the L2 norm (``p=2``);
  ``channel-fpgm``: filters near the geometric median go first (``FPGMImportance``);
  ``channel-bn``: network slimming (Liu et al. 2017): a few epochs of training with an
  L1 penalty on the BatchNorm scales (:func:`sparsity_train`), then the channels with
  the smallest BN scales go (``BNScaleImportance``).

:func:`tp_prune` runs one Torch-Pruning pass at one ratio (per-layer ratios optional) and
records what it removed; :func:`reshape_mapping_guard` keeps Torch-Pruning's reshape mapping
sane for flattening heads.
"""

from __future__ import annotations

import traceback
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..data.split import resolve_split
from ..errors import EdgepruneError, require
from ..training.trainer import TrainConfig, fit

CHANNEL_CRITERIA = ("l1", "l2", "fpgm", "bn")


def make_importance(criterion: str):
    """The Torch-Pruning importance object for ``criterion`` (l1, l2, fpgm, bn)."""
    tp = require("torch_pruning", "channel pruning", "pip install torch-pruning")
    if criterion == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if criterion == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if criterion == "fpgm":
        return tp.importance.FPGMImportance()
    if criterion == "bn":
        return tp.importance.BNScaleImportance()
    raise EdgepruneError(f"unknown channel-pruning criterion {criterion!r}; choose one of: {', '.join(CHANNEL_CRITERIA)}")


def tp_error(exc: BaseException) -> str:
    """Torch-Pruning's exception in one line: its type, its message and where in Torch-Pruning it was raised."""
    text = str(exc).strip()
    msg = text.splitlines()[0] if text else ""
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if "torch_pruning" in frame.filename.replace("\\", "/"):
            tail = frame.filename.replace("\\", "/").split("torch_pruning/")[-1]
            where = f" in {frame.name} (torch_pruning/{tail}:{frame.lineno})"
            break
    return f"{type(exc).__name__}{': ' + msg if msg else ''}{where}"


def tp_prune(model, example, importance, ratio: float, ignored: list, ratio_dict: dict | None = None,
             customized: dict | None = None, record: bool = False):
    """Prune ``model`` in place with Torch-Pruning; any tracing failure becomes an EdgepruneError naming
    Torch-Pruning's exception. With ``record``, returns what was removed: ``{module name: {"in": [...],
    "out": [...]}}`` in the original numbering (:mod:`edgeprune.pruning.equivalence` checks it)."""
    tp = require("torch_pruning", "channel pruning", "pip install torch-pruning")

    model.eval()
    names = {id(m): n for n, m in model.named_modules()}
    kept: dict[tuple[str, str], tuple[int, list[int]]] = {}
    try:
        with torch.enable_grad(), reshape_mapping_guard():
            pruner = tp.pruner.MetaPruner(model, example, importance=importance, pruning_ratio=float(ratio),
                                          pruning_ratio_dict=ratio_dict or None, ignored_layers=ignored,
                                          global_pruning=False, iterative_steps=1,
                                          customized_pruners=customized or None,
                                          root_module_types=_root_types(customized))
            _scope_customized(pruner, ratio_dict or {})
            for group in pruner.step(interactive=True):
                drops: dict = {}
                for dep, idxs in group:
                    _note_removed(pruner.DG, dep, idxs, names, kept, drops)
                for key, drop in drops.items():
                    full, cur = kept[key]
                    kept[key] = (full, [c for j, c in enumerate(cur) if j not in drop])
                group.prune()
    except EdgepruneError:
        raise
    except Exception as exc:  # Torch-Pruning raises many kinds on graphs it cannot handle
        raise EdgepruneError(f"Torch-Pruning cannot trace/prune this model ({tp_error(exc)})") from exc
    if not record:
        return model
    removed: dict[str, dict[str, list[int]]] = {}
    for (name, side), (full, left) in kept.items():
        removed.setdefault(name, {"in": [], "out": []})[side] = sorted(set(range(full)) - set(left))
    return removed


@contextmanager
def reshape_mapping_guard():
    """While Torch-Pruning builds its dependency graph: a reshape whose channel mapping it cannot work out is given
    none, instead of raising.

    Torch-Pruning (1.6) maps the channels through every reshape from the widths on both sides. Where it infers 0
    for one side, it divides by it (ZeroDivisionError in ``update_reshape_index_mapping``), so no layer of the
    network can be pruned. That happens, for example, after the ``(N, 1, 1) @ (N, 1, L)`` matmul of a
    phase-estimation rotation (PET-CGDNN). When a side is unknown (None), Torch-Pruning already skips the reshape
    the same way. A reshape left unmapped can only couple channels wrongly, never silently: every pruned copy
    must pass the masked-equivalence check (:mod:`edgeprune.pruning.equivalence`)."""
    try:
        import torch_pruning.dependency.index_mapping as im
    except ImportError:
        yield
        return
    original = getattr(im, "update_reshape_index_mapping", None)
    if original is None:
        yield
        return

    def guarded(graph, node):
        try:
            return original(graph, node)
        except ZeroDivisionError:   # raised before any mapping is set: the reshape stays unmapped
            return None

    im.update_reshape_index_mapping = guarded
    try:
        yield
    finally:
        im.update_reshape_index_mapping = original


def _scope_customized(pruner, ratio_dict: dict) -> None:
    """Torch-Pruning (1.6) gives a layer its own ratio only when the layer's type has a built-in pruner; give the
    customized ones (GRU, RNN) theirs the same way."""
    if not isinstance(getattr(pruner, "_layer_to_scope", None), dict):
        return
    for i, (mod, ratio) in enumerate(ratio_dict.items()):
        if mod not in pruner._layer_to_scope:
            pruner._layer_to_scope[mod] = (f"_edgeprune_scope_{i}", [mod])
            pruner.pruning_ratio_dict[mod] = pruner.iterative_pruning_ratio_scheduler(ratio, pruner.iterative_steps)


def _root_types(customized: dict | None) -> list:
    """Torch-Pruning's default root layer types (convolutions, linear layers, LSTM) plus the customized ones."""
    return [nn.modules.conv._ConvNd, nn.Linear, nn.LSTM] + [t for t in (customized or {}) if isinstance(t, type)]


def _note_removed(graph, dep, idxs, names: dict, kept: dict, drops: dict) -> None:
    """Note that one group removes ``idxs`` (positions in the module's current numbering) from a module's side:
    ``drops[(name, side)]``; ``kept[(name, side)] = (original width, original channels still there)``."""
    mod = dep.target.module
    name = names.get(id(mod))
    if name is None:
        name = graph._param_to_name.get(mod)     # an unwrapped nn.Parameter
    if name is None or not len(idxs):
        return
    out = graph.is_out_channel_pruning_fn(dep.handler)
    side = "out" if out else "in"
    if (name, side) not in kept:
        n = graph.get_out_channels(mod) if out else graph.get_in_channels(mod)
        if n is None:
            return
        kept[(name, side)] = (int(n), list(range(int(n))))
    drops.setdefault((name, side), set()).update(int(getattr(i, "idx", i)) for i in idxs)


def sparsity_train(ckpt, data, epochs: int, sparsity: float, seed: int, batch_size: int = 128,
                   lr: float = 1e-3) -> tuple[dict, dict[str, Any]]:
    """Network slimming's first step: train with ``sparsity x sum|gamma_BN|`` added to the loss.

    Trains on the checkpoint's own training split of ``data`` and keeps the
    best epoch on its validation split. Returns the new state_dict and the
    training metrics.
    """
    if data is None:
        raise EdgepruneError("channel-bn (network slimming) needs data for its sparsity training step (--data)")
    if epochs < 0:
        raise EdgepruneError("sparsity epochs must be >= 0")
    if not sparsity >= 0:
        raise EdgepruneError(f"BN sparsity must be >= 0, got {sparsity!r}")
    (train, val, _), _ = resolve_split(ckpt, data)
    model = ckpt.build()
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, bn_sparsity=sparsity, seed=seed)
    metrics = fit(model, ckpt.spec, train, val, cfg, out=None, meta=dict(ckpt.meta), desc="sparsity")
    metrics = {k: v for k, v in metrics.items() if k not in ("history", "train_config")}
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, metrics


