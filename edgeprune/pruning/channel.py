"""Channel (filter) pruning baselines through Torch-Pruning.

Methods (``edgeprune prune --method ...``):

- ``channel-l1``: L1-norm filter pruning (Li et al. 2017), Torch-Pruning's
  ``GroupMagnitudeImportance(p=1)``.
- ``channel-l2``: the same with the L2 norm (``p=2``).
- ``channel-fpgm``: filters near the geometric median go first
  (``FPGMImportance``).
- ``channel-bn``: network slimming (Liu et al. 2017): a few epochs of
  training with an L1 penalty on the BatchNorm scales (``TrainConfig.bn_sparsity``),
  then the channels with the smallest BN scales go (``BNScaleImportance``).

What is pruned (every method, every zoo model; the classifier's outputs never):

- ResNets (``basic_block``): only each block's internal ("mid") channels,
  i.e. conv1's filters, bn1 and conv2's inputs, as Li et al. did for
  ResNet-56. The block outputs are tied across a whole stage by the identity
  shortcuts and, through the parameter-free option-A shortcut (stride + zero
  channel padding), to the next stage; a spec cannot express a pruned
  channel subset behind that padding, so stage widths stay as they are.
- VGG16: every conv's filters (the stem conv too) and the hidden widths of the
  FC head (the flatten coupling is handled by Torch-Pruning).
- CNN1D: each residual stack's width (1x1 projection, residual branch outputs)
  and its residual units' inner widths, with one ratio per stack so the spec's
  single width holds; the FC head's hidden widths.

Pruning is per layer (local ranking) with one ratio; the MACs search
(:mod:`edgeprune.pruning.macs_target`) bisects that ratio and, when a ratio step
moves too many MACs at once, gives the next step to the first ``k`` layers
only. After pruning, the new widths are read back into a spec, the weights are
loaded into a fresh ``EdgeNet`` built from it and its outputs are checked
against the pruned Torch-Pruning model, so a channel-pruned checkpoint is an
ordinary spec checkpoint.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

from ..errors import EdgepruneError, require
from ..models.spec import clone, validate_spec
from .macs_target import DEFAULT_TOLERANCE, check_target, check_tolerance, search_ratio
from .registry import PruneResult, builtin_method

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


def _weighted(module) -> list:
    from torch import nn

    return [m for m in module.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]


def ignored_layers(model, spec: dict[str, Any]) -> list:
    """Modules whose output channels must keep their width (see the module docstring)."""
    layers = spec["layers"]
    ignored = []
    for i, l in enumerate(layers):
        mod = model.layers[i]
        if l.get("role") == "classifier" or i == len(layers) - 1:
            ignored.append(mod.fc)
        elif l["type"] == "basic_block":
            ignored.append(mod.conv2)
        elif l["type"] == "conv" and spec["family"] == "resnet":
            ignored.append(mod.conv)      # the ResNet stem feeds stage 1's identity shortcuts
    return ignored


def layer_sets(model, spec: dict[str, Any]) -> list[list]:
    """Per spec layer, the modules that share one pruning ratio (in network order)."""
    skip = set(ignored_layers(model, spec))
    sets = []
    for i, _ in enumerate(spec["layers"]):
        mods = [m for m in _weighted(model.layers[i]) if m not in skip]
        if mods:
            sets.append(mods)
    return sets


def _example(spec: dict[str, Any]):
    import torch

    shape = tuple(spec["input"][-2:]) if spec["dim"] == 2 else tuple(spec["input"])
    g = torch.Generator().manual_seed(1234)
    return torch.randn((2,) + shape, generator=g)


def tp_error(exc: BaseException) -> str:
    """Torch-Pruning's exception in one line: its type, its message and where in Torch-Pruning it was raised."""
    import traceback

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
    import torch

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
    from torch import nn

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


def spec_from_module(spec: dict[str, Any], model) -> dict[str, Any]:
    """Read the (pruned) widths of ``model`` back into a copy of ``spec``."""
    new = clone(spec)
    for i, l in enumerate(new["layers"]):
        mod = model.layers[i]
        t = l["type"]
        where = f"layer {i} ({t})"
        if t == "conv":
            l["in"], l["out"] = mod.conv.in_channels, mod.conv.out_channels
            if l["bn"] and mod.bn.num_features != l["out"]:
                raise EdgepruneError(f"pruned {where}: BatchNorm width {mod.bn.num_features} != conv width {l['out']}")
        elif t == "basic_block":
            l["in"], l["mid"], l["out"] = mod.conv1.in_channels, mod.conv1.out_channels, mod.conv2.out_channels
            if mod.conv2.in_channels != l["mid"] or mod.bn1.num_features != l["mid"] or mod.bn2.num_features != l["out"]:
                raise EdgepruneError(f"pruned {where}: inconsistent inner widths")
        elif t == "res_stack":
            l["in"], l["out"] = mod.proj.in_channels, mod.proj.out_channels
            for u in (mod.unit1, mod.unit2):
                widths = {u.conv_a.in_channels, u.conv_a.out_channels, u.conv_b.in_channels, u.conv_b.out_channels,
                          u.bn_a.num_features, u.bn_b.num_features, mod.bn.num_features}
                if widths != {l["out"]}:
                    raise EdgepruneError(f"pruned {where}: residual-unit widths {sorted(widths)} differ from the "
                                         f"stack width {l['out']} (a spec holds one width per stack)")
        elif t == "linear":
            l["in"], l["out"] = mod.fc.in_features, mod.fc.out_features
            if l["bn"] and mod.bn.num_features != l["out"]:
                raise EdgepruneError(f"pruned {where}: BatchNorm width {mod.bn.num_features} != {l['out']}")
    if new["layers"][-1]["out"] != spec["num_classes"]:
        raise EdgepruneError("pruning changed the classifier's outputs")  # never: it is ignored
    return validate_spec(new)


def rebuild(spec: dict[str, Any], pruned_model, atol: float = 1e-4):
    """A fresh EdgeNet for the pruned widths, holding the pruned weights; checked against ``pruned_model``."""
    import torch

    from ..models import build_model

    new_spec = spec_from_module(spec, pruned_model)
    net = build_model(new_spec)
    try:
        net.load_state_dict(pruned_model.state_dict(), strict=True)
    except RuntimeError as exc:
        raise EdgepruneError(f"pruned weights do not fit the read-back spec: {str(exc).splitlines()[0]}") from exc
    net.eval()
    pruned_model.eval()
    x = _example(spec)
    with torch.no_grad():
        a, b = net(x), pruned_model(x)
    if a.shape != b.shape or not torch.allclose(a, b, atol=atol, rtol=1e-4):
        diff = float((a - b).abs().max()) if a.shape == b.shape else float("inf")
        raise EdgepruneError(f"the rebuilt channel-pruned model disagrees with the pruned one (max diff {diff:.3g})")
    return new_spec, net


def prune_channels(spec: dict[str, Any], state_dict: dict, criterion: str, ratio: float,
                   ratio_hi: float | None = None, k: int = 0):
    """Prune a copy of the model with ``ratio`` (``ratio_hi`` on the first ``k`` layer sets).

    Returns ``(new_spec, model)``; ``model`` is an EdgeNet of ``new_spec``
    with the pruned weights, checked to equal the original with the removed
    channels masked (:func:`edgeprune.pruning.equivalence.check_channel_masked`).
    """
    from ..models import build_model

    model = build_model(spec)
    model.load_state_dict(state_dict, strict=True)
    if ratio <= 0 and (not k or not ratio_hi):
        return clone(spec), model.eval()
    sets = layer_sets(model, spec)
    ratio_dict = {}
    if k and ratio_hi is not None:
        for mods in sets[:k]:
            for m in mods:
                ratio_dict[m] = float(ratio_hi)
    import copy

    from .equivalence import check_channel_masked, random_frames

    original = copy.deepcopy(model).eval()
    removed = tp_prune(model, _example(spec), make_importance(criterion), ratio, ignored_layers(model, spec),
                       ratio_dict, record=True)
    check_channel_masked(original, model, removed, random_frames(tuple(_example(spec).shape[1:])))
    return rebuild(spec, model)


def max_ratio(spec: dict[str, Any]) -> float:
    """The largest ratio that leaves every pruned layer at least one channel."""
    from ..models import build_model

    model = build_model(spec)
    widths = []
    for mods in layer_sets(model, spec):
        for m in mods:
            widths.append(m.out_channels if hasattr(m, "out_channels") else m.out_features)
    if not widths:
        return 0.0
    return 1.0 - 1.0 / min(widths)


def prune_to_macs(spec: dict[str, Any], state_dict: dict, criterion: str, fraction: float,
                  tol: float = DEFAULT_TOLERANCE):
    """Channel-prune to ``fraction x`` the MACs (within ``tol``); returns (spec, state_dict, MatchResult)."""
    from ..models.macs import count_macs
    from ..models import build_model

    fraction = check_target(fraction)
    tol = check_tolerance(tol)
    base = build_model(spec)
    base_macs = count_macs(base)
    n_sets = len(layer_sets(base, spec))
    if n_sets == 0:
        raise EdgepruneError(f"model {spec['name']!r} has no channels channel pruning may remove")
    rmax = max_ratio(spec)
    last: dict[tuple, tuple] = {}

    def probe(r_lo: float, r_hi: float, k: int) -> int:
        new_spec, net = prune_channels(spec, state_dict, criterion, r_lo, r_hi, k)
        last.clear()   # keep one pruned copy only (VGG16 copies are large)
        last[(r_lo, r_hi, k)] = (new_spec, net)
        return count_macs(net)

    match = search_ratio(probe, base_macs, fraction, n_sets, rmax, tol, what=f"channel pruning ({criterion})",
                         max_hint=lambda: _spec_hint(spec, prune_channels(spec, state_dict, criterion, rmax)[0]))
    r_lo, r_hi, k = match.setting
    if (r_lo, r_hi, k) in last:
        new_spec, net = last[(r_lo, r_hi, k)]
    else:  # the best setting was probed earlier: pruning is deterministic, so redo it
        new_spec, net = prune_channels(spec, state_dict, criterion, r_lo, r_hi, k)
    return new_spec, {k_: v.detach().clone() for k_, v in net.state_dict().items()}, match


def _spec_hint(spec: dict[str, Any], narrowest: dict[str, Any]) -> str:
    """Why a target is out of reach, read from the spec at the largest ratio (which layers kept their widths)."""
    before, after = widths(spec), widths(narrowest)
    kept = [f"layer {a['layer']} ({a['type']})" for a, b in zip(before, after) if a == b]
    narrowed = len(before) - len(kept)
    return (f" ({narrowed} layer(s) narrowed as far as they go; widths unchanged: {', '.join(kept) or 'none'}; "
            f"the classifier's outputs are the classes)")


def widths(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-layer widths of a spec (for lineage records)."""
    out = []
    for i, l in enumerate(spec["layers"]):
        w = {f: l[f] for f in ("in", "mid", "out") if f in l}
        if w:
            out.append({"layer": i, "type": l["type"], **w})
    return out


def sparsity_train(ckpt, data, epochs: int, sparsity: float, seed: int, batch_size: int = 128,
                   lr: float = 1e-3) -> tuple[dict, dict[str, Any]]:
    """Network slimming's first step: train with ``sparsity x sum|gamma_BN|`` added to the loss.

    Trains on the checkpoint's own training split of ``data`` and keeps the
    best epoch on its validation split. Returns the new state_dict and the
    training metrics.
    """
    from ..data.split import resolve_split
    from ..training.trainer import TrainConfig, fit

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


def _base_macs(ckpt) -> int:
    from ..models.macs import count_macs

    return count_macs(ckpt.build())


def channel_method(criterion: str, ckpt, data, *, target_macs: float | None, seed: int = 0,
                   tolerance: float = DEFAULT_TOLERANCE, sparsity: float = 1e-4, sparsity_epochs: int = 3,
                   **options) -> PruneResult:
    """Channel-prune ``ckpt`` with ``criterion`` to ``target_macs x`` its MACs (see the module docstring)."""
    fraction = check_target(target_macs)
    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    sparsity = 1e-4 if sparsity is None else sparsity
    sparsity_epochs = 3 if sparsity_epochs is None else sparsity_epochs
    state = ckpt.state_dict
    info: dict[str, Any] = {}
    unused = sorted(k for k, v in options.items() if v is not None)
    if unused:
        info["ignored_options"] = unused
    lineage_opts: dict[str, Any] = {"criterion": criterion, "tolerance": tolerance}
    if criterion == "bn":
        state, metrics = sparsity_train(ckpt, data, int(sparsity_epochs), float(sparsity), seed)
        info["sparsity_training"] = metrics
        lineage_opts.update(sparsity=float(sparsity), sparsity_epochs=int(sparsity_epochs))
    base_macs = _base_macs(ckpt)
    new_spec, new_state, match = prune_to_macs(ckpt.spec, state, criterion, fraction, tolerance)
    r_lo, r_hi, k = match.setting
    lineage = {
        "method": f"channel-{criterion}",
        "options": lineage_opts,
        "seed": seed,
        "target_macs": fraction,
        "macs_before": base_macs,
        "macs_after": match.macs,
        "ratio": r_lo,
        "ratio_hi": r_hi,
        "ratio_hi_layers": k,
        "widths": widths(new_spec),
    }
    info.update(match=match.summary(), search=match.steps)
    return PruneResult(new_spec, new_state, lineage, info)


def _make(criterion: str, label: str):
    def method(ckpt, data, *, target_macs=None, seed=0, **options) -> PruneResult:
        return channel_method(criterion, ckpt, data, target_macs=target_macs, seed=seed, **options)

    method.__name__ = f"channel_{criterion}"
    method.__doc__ = f"{label} channel pruning (Torch-Pruning) to a MACs target."
    return method


# help and options: edgeprune.pruning.catalogue
channel_l1 = builtin_method("channel-l1")(_make("l1", "L1-norm"))
channel_l2 = builtin_method("channel-l2")(_make("l2", "L2-norm"))
channel_fpgm = builtin_method("channel-fpgm")(_make("fpgm", "FPGM"))
channel_bn = builtin_method("channel-bn")(_make("bn", "BN-scale (network slimming)"))
