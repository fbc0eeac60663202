"""Channel pruning (Torch-Pruning) on a live network: the traced path of ``channel-l1/-l2/-fpgm/-bn``.

What may be narrowed: every convolution, linear layer and unidirectional LSTM/GRU/RNN (hidden units, through
:mod:`edgeprune.pruning.tp_rnn`) except the classifier, whose outputs are the classes. Torch-Pruning narrows each
chosen layer's output channels together with everything its dependency graph couples to them.

Correct by construction. Every pruned copy is compared with the original network with the removed channels
masked to zero (:func:`edgeprune.pruning.equivalence.channel_mask_mismatch`) on random frames; a copy that
differs is never used. That catches couplings Torch-Pruning's graph does not see, e.g. the zero-padding
shortcut of CIFAR-style ResNets, whose padding is computed from the incoming width: the pruned forward still
runs, but the kept channels add into different channels of the next stage.

Left alone. Before the MACs search each layer is pruned on its own (half its channels, then all but one); a
layer whose pruning makes Torch-Pruning raise, breaks the forward pass or fails the masked check is left alone
(its output width is kept) and the reason is recorded per layer (``left_alone`` in the lineage). If the
remaining layers fail together, they are added one at a time and the ones that break the set are left alone
too. The rest is then pruned to the MACs target. The final model is checked once more and refused if it fails.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..errors import EdgepruneError, require
from ..models.macs import count_macs
from ..models.modular import build_recipe, edited, with_stats
from .channel import make_importance, reshape_mapping_guard, tp_prune
from .equivalence import channel_mask_mismatch, check_channel_masked, random_frames, width_changes
from .macs_target import DEFAULT_TOLERANCE, TargetUnreachable, check_target, ratio_resolution, search_ratio
from .modular import _no_options, _slimming_start, _trace, attribute_diff
from .registry import PruneResult, builtin_method
from .tp_rnn import RNNImportance, rnn_pruners

PROBE_RATIOS = (0.5, 1.0)   # each layer alone: half its channels, then all but one


def _ROOTS() -> tuple:
    return (nn.modules.conv._ConvNd, nn.Linear, nn.RNNBase)


def _last_weighted(model, example) -> list[str]:
    """The name of the weighted layer that runs last in the forward (the classifier)."""
    order: list[str] = []
    hooks = [m.register_forward_hook(lambda mod, a, o, n=n: order.append(n))
             for n, m in model.named_modules() if isinstance(m, _ROOTS())]
    try:
        with torch.no_grad():
            model.eval()(example)
    except Exception:
        return []
    finally:
        for h in hooks:
            h.remove()
    return order[-1:]


def _width(mod) -> int:
    if isinstance(mod, nn.RNNBase):
        return int(mod.hidden_size)
    return int(getattr(mod, "out_channels", None) or getattr(mod, "out_features", 0) or 0)


class ChannelPruner:
    """Torch-Pruning on copies of one live network: which layers it may prune, and a copy pruned at a setting."""

    def __init__(self, ckpt, model, criterion: str, example=None):
        self.ckpt, self.model, self.criterion = ckpt, model.eval(), criterion
        self.example = torch.zeros((2, 2, ckpt.length)) if example is None else example
        self.frames = random_frames(tuple(self.example.shape[1:]))
        res = _trace(model, ckpt)
        modules = dict(model.named_modules())
        self.ignored = {m for u in res.units if u.role == "classifier" for m in u.members}
        self.ignored.update(_last_weighted(model, self.example))   # the classifier: its outputs are the classes
        inside_attention = {f"{n}.{c}" for n, m in modules.items() if isinstance(m, nn.MultiheadAttention)
                            for c, _ in m.named_modules() if c}
        kinds = (nn.modules.conv._ConvNd, nn.Linear, nn.RNNBase)
        self.weighted = [n for n, m in modules.items() if isinstance(m, kinds) and n not in self.ignored
                         and n not in inside_attention and _width(m) > 1]
        self.caps = {n: (_width(modules[n]) - 1) / _width(modules[n]) - 1e-6 for n in self.weighted}
        self.left_alone: dict[str, str] = {}
        self.order: list[str] = []

    @property
    def prunable(self) -> list[str]:
        return [n for n in self.weighted if n not in self.left_alone]

    def pruned(self, ratios: dict[str, float]):
        """``(copy, removed)``: a copy with each named layer's output channels cut by its ratio (capped so one
        channel stays), and what was removed (see :func:`edgeprune.pruning.channel.tp_prune`)."""
        net = copy.deepcopy(self.model)
        mods = dict(net.named_modules())
        ratio_dict = {mods[n]: min(float(r), self.caps[n]) for n, r in ratios.items() if r > 0}
        if not ratio_dict:
            return net, {}
        # every other root layer is ignored, so Torch-Pruning builds only the chosen layers' groups (a group it
        # cannot build elsewhere in the graph, e.g. behind a reshape it cannot map, then does not matter)
        chosen = {id(m) for m in ratio_dict}
        keep = [m for n, m in mods.items() if isinstance(m, _ROOTS()) and id(m) not in chosen]
        imp = RNNImportance(make_importance(self.criterion), p=1 if self.criterion == "l1" else 2)
        removed = tp_prune(net, self.example, imp, 0.0, keep, ratio_dict=ratio_dict,
                           customized=rnn_pruners(), record=True)
        return net.eval(), removed

    def problem(self, names, ratio: float) -> str | None:
        """Why pruning the named layers at ``ratio`` is not acceptable, or None."""
        try:
            net, removed = self.pruned({n: ratio for n in names})
        except EdgepruneError as exc:
            return str(exc)
        return channel_mask_mismatch(self.model, net, removed, self.frames)

    def problems(self, names) -> str | None:
        for r in PROBE_RATIOS:
            why = self.problem(names, r)
            if why:
                return why
        return None

    def coupled_sets(self) -> list[list[str]]:
        """The prunable layers grouped by Torch-Pruning's coupling (layers whose outputs it narrows together,
        e.g. every conv writing into one residual stream); a group it cannot build stays a set of one."""
        tp = require("torch_pruning", "channel pruning", "pip install torch-pruning")
        names = self.prunable
        parent = {n: n for n in names}

        def root(n):
            while parent[n] != n:
                n = parent[n]
            return n
        try:
            with torch.enable_grad(), reshape_mapping_guard():
                graph = tp.DependencyGraph().build_dependency(copy.deepcopy(self.model), self.example,
                                                              customized_pruners=rnn_pruners())
        except Exception:
            return [[n] for n in names]
        mods = {m: n for n, m in graph.model.named_modules() if n in parent}
        for n in names:
            mod = dict(graph.model.named_modules())[n]
            try:
                pruner = graph.get_pruner_of_module(mod)
                group = graph.get_pruning_group(mod, pruner.prune_out_channels, list(range(pruner.get_out_channels(mod))))
            except Exception:
                continue
            for dep, _ in group:
                other = mods.get(dep.target.module)
                if other and graph.is_out_channel_pruning_fn(dep.handler) and isinstance(dep.target.module, nn.Module):
                    parent[root(other)] = root(n)
        sets: dict[str, list[str]] = {}
        for n in names:
            sets.setdefault(root(n), []).append(n)
        return list(sets.values())

    def _leave(self, members: list[str], why: str) -> None:
        for n in members:
            others = [m for m in members if m != n]
            self.left_alone[n] = (f"coupled with {', '.join(others)}: " if others else "") + why

    def _failing_alone(self, sets: list[list[str]], known_to_fail: bool = False) -> list[tuple[list[str], str]]:
        """The coupled sets that fail on their own, each with its reason, found by halving: a group of sets whose
        union prunes cleanly is not split further (a deep network's one bad set costs a few prunes, not two per
        set). A set that fails only beside another is left to :meth:`find_left_alone`'s second pass."""
        if not sets:
            return []
        if len(sets) == 1:
            why = self.problems(sets[0])
            return [(sets[0], why)] if why else []
        if not known_to_fail and not self.problems([n for members in sets for n in members]):
            return []
        half = len(sets) // 2
        return self._failing_alone(sets[:half]) + self._failing_alone(sets[half:])

    def find_left_alone(self) -> None:
        """Leave alone the coupled sets whose pruning breaks Torch-Pruning, the forward or the masked check."""
        if not self.prunable or not self.problems(self.prunable):
            return
        sets = self.coupled_sets()
        for members, why in self._failing_alone(sets, known_to_fail=True):
            self._leave(members, why)
        if self.prunable and self.problems(self.prunable):
            accepted: list[str] = []
            for members in sets:
                if members[0] in self.left_alone:
                    continue
                why = self.problems(accepted + members)
                if why:
                    self._leave(members, f"fine alone, but not with the {len(accepted)} layer(s) before ({why})")
                else:
                    accepted += members
        if not self.prunable:
            raise EdgepruneError(f"no layer of {self.ckpt.spec['name']!r} can be channel-pruned correctly: "
                                 + "; ".join(f"{n}: {why}" for n, why in self.left_alone.items()))

    def setting_ratios(self, r_lo: float, r_hi: float, k: int) -> dict[str, float]:
        """Ratio ``r_hi`` for the first ``k`` layers of ``self.order``, ``r_lo`` for the other prunable ones."""
        names = [n for n in (self.order or self.prunable) if n not in self.left_alone]
        return {n: (r_hi if i < k else r_lo) for i, n in enumerate(names)}


def _explain(pr: ChannelPruner, top: float) -> str:
    """Why a target is out of reach, from what the network at the largest ratio actually records."""
    net, _ = pr.pruned(pr.setting_ratios(top, top, 0))
    changes = width_changes(pr.model, net)
    untouched = [n for n in pr.weighted if n not in changes and n not in pr.left_alone]
    parts = [f"{len(changes)} layer(s) narrowed as far as Torch-Pruning goes"]
    if pr.left_alone:
        parts.append(f"left alone: {', '.join(pr.left_alone)}")
    if pr.ignored:
        parts.append(f"classifier kept: {', '.join(sorted(pr.ignored))}")
    if untouched:
        parts.append(f"not narrowed: {', '.join(untouched)}")
    return " (" + "; ".join(parts) + ")"


def describe_widths(changes: dict[str, dict[str, Any]]) -> list[str]:
    """One phrase per narrowed layer, e.g. ``stem: out 50 -> 1`` or ``rnn.lstm1: in 100 -> 2, hidden 64 kept``."""
    out = []
    for name, c in changes.items():
        rnn = c["kind"] in ("LSTM", "GRU", "RNN")
        bits = []
        for side in ("in", "out"):
            a, b = c[side]
            label = "hidden" if (rnn and side == "out") else side
            bits.append(f"{label} {a} -> {b}" if a != b else f"{label} {a} kept")
        out.append(f"{name}: {', '.join(bits)}")
    return out


def _search(pr: ChannelPruner, base: int, fraction: float, tol: float, criterion: str):
    """The MACs search over ratios. When the uniform ratio jumps over the window, the next ratio step goes to
    the first ``k`` layers of an order; network order first, then the reverse and widest-first (different
    orders give different steps). Returns (match, net, removed)."""
    shape = tuple(pr.example.shape[1:])
    top = max((pr.caps[n] for n in pr.prunable), default=0.0)
    last: dict = {}
    out_of_reach: list[bool] = []

    def probe(r_lo: float, r_hi: float, k: int) -> int:
        net, removed = pr.pruned(pr.setting_ratios(r_lo, r_hi, k))
        last[(r_lo, r_hi, k)] = (net, removed)
        return int(count_macs(net, shape))

    def hint() -> str:
        out_of_reach.append(True)
        return _explain(pr, top)

    names = pr.prunable
    widest = sorted(names, key=lambda n: -pr.caps[n])
    modules = dict(pr.model.named_modules())
    resolution = ratio_resolution(max((_width(modules[n]) for n in names), default=1))
    first_error = None
    for order in (names, names[::-1], widest):
        pr.order = list(order)
        last.clear()
        try:
            match = search_ratio(probe, base, fraction, len(names), top, tol, what=f"channel-{criterion}",
                                 max_hint=hint, resolution=resolution)
        except TargetUnreachable as exc:
            first_error = first_error or exc
            if out_of_reach:
                raise
            continue
        net, removed = last.get(match.setting) or pr.pruned(pr.setting_ratios(*match.setting))
        return match, net, removed
    raise first_error


def _settle(pr: ChannelPruner, base: int, fraction: float, tol: float, criterion: str):
    """Search; when the chosen copy fails the masked check, leave alone the layers that fail it at that setting
    and search again (a few rounds at most)."""
    for _ in range(3):
        match, net, removed = _search(pr, base, fraction, tol, criterion)
        why = channel_mask_mismatch(pr.model, net, removed, pr.frames)
        if not why:
            return match, net, removed
        ratios = pr.setting_ratios(*match.setting)
        pr.order = []
        culprits = {n: pr.problem([n], r) for n, r in ratios.items() if r > 0}
        culprits = {n: w for n, w in culprits.items() if w}
        if not culprits:
            break
        pr.left_alone.update(culprits)
    check_channel_masked(pr.model, net, removed, pr.frames)   # refuses with the reason
    return match, net, removed


def traced_channel_method(criterion: str, ckpt, data, *, target_macs=None, seed: int = 0, tolerance=None,
                   sparsity=None, sparsity_epochs=None, **options) -> PruneResult:
    """Torch-Pruning on the live module to ``target_macs``; ``criterion`` l1, l2, fpgm or bn (network slimming:
    ``sparsity_epochs`` of training with ``sparsity x sum|gamma_BN|`` first, then the smallest BN scales go)."""
    tp = require("torch_pruning", "channel pruning", "pip install torch-pruning")
    fraction = check_target(target_macs)
    tol = DEFAULT_TOLERANCE if tolerance is None else tolerance
    _no_options(options, f"channel-{criterion}")
    model = ckpt.build()
    info: dict[str, Any] = {}
    lineage_opts: dict[str, Any] = {"criterion": criterion, "tolerance": tol}
    if criterion == "bn":
        _slimming_start(ckpt, model, data, seed, sparsity, sparsity_epochs, info, lineage_opts)
    elif sparsity is not None or sparsity_epochs is not None:
        raise EdgepruneError(f"sparsity and sparsity_epochs are options of channel-bn, not channel-{criterion}")
    pr = ChannelPruner(ckpt, model, criterion)
    base = int(count_macs(model, tuple(pr.example.shape[1:])))
    pr.find_left_alone()
    match, net, removed = _settle(pr, base, fraction, tol, criterion)
    attrs = attribute_diff(tp.state_dict(model)["attributions"], tp.state_dict(net)["attributions"])
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    recipe = edited(ckpt.spec, attrs=attrs)
    rebuilt = build_recipe(recipe, state, where="the channel-pruned model")
    with torch.no_grad():
        if not torch.allclose(rebuilt(pr.frames), net(pr.frames), atol=1e-5):
            raise EdgepruneError("the channel-pruned model does not rebuild from its recorded widths (internal error)")
    changes = width_changes(model, net)
    r_lo, r_hi, k = match.setting
    lineage = {"op": "prune", "method": f"channel-{criterion}", "parent_sha256": ckpt.sha256(),
               "parent_model": ckpt.spec["name"], "seed": seed, "target_macs": fraction, "macs_before": base,
               "macs_after": match.macs, "ratio": r_lo, "ratio_hi": r_hi, "ratio_hi_layers": k,
               "ratio_hi_order": [n for n in (pr.order or pr.prunable) if n not in pr.left_alone][:k],
               "widths": attrs, "width_changes": changes, "options": lineage_opts,
               "masked_check": "passed", **({"left_alone": dict(pr.left_alone)} if pr.left_alone else {})}
    info.update(match=match.summary(), width_changes=describe_widths(changes))
    if pr.left_alone:
        info["left_alone"] = dict(pr.left_alone)
    return PruneResult(with_stats(recipe, net), state, lineage, info)


def _channel(criterion: str):
    def method(ckpt, data, **kw):
        return traced_channel_method(criterion, ckpt, data, **kw)
    method.__name__ = f"channel_{criterion}"
    method.__doc__ = traced_channel_method.__doc__
    return method


for _c in ("l1", "l2", "fpgm", "bn"):
    builtin_method(f"channel-{_c}")(_channel(_c))   # help and options: edgeprune.pruning.catalogue
