"""Importance of units: the criteria, their registry, and the reference's transplant proxies.

Criteria (``edgeprune analyze/prune --importance NAME``, study ``[prune] importance``):

- ``ablation`` (default): validation loss increase when the unit is replaced
  by the identity (:func:`~edgeprune.analysis.criteria.ablation_scores`).
- ``iterative-ablation``: greedy removal: the least harmful unit goes, the
  validation loss is re-measured, repeat (:func:`~edgeprune.analysis.criteria.iterative_ablation_scores`);
  sees interactions single-unit ablation misses, at n(n+1)/2 passes instead of n.
- ``taylor``: first-order Taylor estimate of that increase.
- ``block-influence``: ``1 - cos(input, output)`` of the unit.
- ``synflow``: SynFlow saliency of the unit's parameters in the trained
  network, BatchNorm in train mode.
- ``reverse``: deepest units are removed first.
- ``synflow-transplant``, ``gradnorm``, ``snip``: the reference code's
  zero-cost proxies of a random copy of the network carrying the unit's
  trained weights (:class:`TransplantScorer`), BatchNorm in train mode as the
  reference runs them, and the reference's rule: the LOWEST score is kept.

Each criterion is a :class:`Criterion` (name, what it measures, which end is kept, whether it needs frames
and labels, and ``values(model, units, ...)``) in one registry; :func:`register_criterion` adds one from
outside the package and :func:`criterion_values` is the one entry point that computes values.

For the criteria that are not transplant proxies a higher value means a more important unit and the
highest are kept. A plan stores both the criterion's values and a keep key
(``importance.scores``: lower = kept first) so that every budget rule ranks
units the same way whatever the criterion.

The transplant scorer (as the reference scores a combination of units): the
unit's trained weights and BN statistics are loaded into a randomly
initialised copy of the network (fixed seed) and the proxy of that whole
network is the score. ``synflow-transplant``: parameters made
non-negative, float64, all-ones input, BatchNorm in train mode, R =
sum(output), score = sum |theta * dR/dtheta|. ``frames``: the all-ones batch;
the criterion uses 2 frames (cheap), ``--reference`` the reference's 128. In
exact arithmetic the score is proportional to the number of identical frames
(train-mode BN statistics of identical frames do not depend on it), but not in
floating point: on a trained resnet56-ref the early blocks' terms changed by
2-34 % between 2 and 128 frames and the ranking inside 5 of 9 blocks changed
(issue 28), so 2 frames do NOT reproduce the reference's choice.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import EdgepruneError
from .criteria import (
    ablation_scores, block_influence_scores, iterative_ablation_scores, reverse_scores, synflow_scores, taylor_scores)

DEFAULT_CRITERION = "ablation"
SEARCHES = ("per-unit", "exhaustive")
MAX_COMBINATIONS = 20000


class Criterion:
    """An importance criterion (``--importance NAME``, study ``[prune] importance``): one interface for all.

    Class attributes: ``name``; ``measures`` (one line for plans and listings); ``higher_kept`` (whether
    the units with the highest values are kept); ``needs_frames`` / ``needs_labels`` (whether
    :meth:`values` needs validation frames ``x`` / labels ``y``); ``transplant`` (the reference's
    transplant proxies, scored by :class:`TransplantScorer` on a random copy instead of :meth:`values`).
    """

    name: str = ""
    measures: str = ""
    higher_kept: bool = True
    needs_frames: bool = True
    needs_labels: bool = False
    transplant: bool = False

    def values(self, model, units: dict, *, order: list, x, y, input_shape, batch_size: int) -> dict:
        """``{unit key: value}`` for ``units`` of ``model``.

        ``units``: ``{key: module}``, or ``{key: (module, ..., module)}`` for a unit that is a chain of
        modules (:mod:`edgeprune.analysis.criteria` handles both); ``order``: the keys shallow to deep;
        ``x, y``: validation frames and labels (numpy); ``input_shape``: one frame's shape.
        """
        raise NotImplementedError(f"criterion {self.name!r} does not compute values")


class Ablation(Criterion):
    name = "ablation"
    measures = "validation loss increase when the unit is replaced by the identity"
    needs_labels = True

    def __init__(self, metric: str = "loss"):
        self.metric = metric   # "loss" (increase) or "acc" (accuracy drop)

    def values(self, model, units, *, order, x, y, input_shape, batch_size):
        return ablation_scores(model, units, x, y, metric=self.metric, batch_size=batch_size)


class IterativeAblation(Criterion):
    name = "iterative-ablation"
    measures = ("step at which greedy removal of the least harmful unit (validation loss re-measured after each "
                "removal) takes the unit out; removed last = most important")
    needs_labels = True

    def values(self, model, units, *, order, x, y, input_shape, batch_size):
        return iterative_ablation_scores(model, units, x, y, order=order, batch_size=batch_size)


class Taylor(Criterion):
    name = "taylor"
    measures = "first-order Taylor estimate of the ablation loss increase"
    needs_labels = True

    def values(self, model, units, *, order, x, y, input_shape, batch_size):
        return taylor_scores(model, units, x, y, batch_size=batch_size)


class BlockInfluence(Criterion):
    name = "block-influence"
    measures = "1 - cos(input, output) of the unit on validation frames"

    def values(self, model, units, *, order, x, y, input_shape, batch_size):
        return block_influence_scores(model, units, x, batch_size=batch_size)


class SynFlow(Criterion):
    name = "synflow"
    measures = "SynFlow saliency of the unit's parameters in the trained network (train-mode BN)"
    needs_frames = False

    def values(self, model, units, *, order, x, y, input_shape, batch_size):
        return synflow_scores(model, units, input_shape)


class Reverse(Criterion):
    name = "reverse"
    measures = "depth: the deepest units are removed first"
    needs_frames = False

    def values(self, model, units, *, order, x, y, input_shape, batch_size):
        return reverse_scores(list(order))


class TransplantProxy(Criterion):
    """The reference's zero-cost proxies of a random copy carrying a unit's trained weights (lowest kept)."""

    higher_kept = False
    transplant = True

    def __init__(self, name: str, measures: str, needs_frames: bool = True):
        self.name, self.measures, self.needs_frames = name, measures, needs_frames
        self.needs_labels = needs_frames

    def values(self, model, units, *, order, x, y, input_shape, batch_size):
        raise EdgepruneError(f"{self.name} is a transplant proxy: score it with TransplantScorer")


class FunctionCriterion(Criterion):
    """A criterion given as a function (``register_criterion(name, fn, measures=...)``)."""

    def __init__(self, name: str, fn, measures: str, higher_kept: bool = True, needs_frames: bool = True,
                 needs_labels: bool = False):
        self.name, self.fn, self.measures, self.higher_kept = name, fn, str(measures), bool(higher_kept)
        self.needs_frames, self.needs_labels = bool(needs_frames), bool(needs_labels)

    def values(self, model, units, *, order, x, y, input_shape, batch_size):
        return self.fn(model, units, order=order, x=x, y=y, input_shape=input_shape, batch_size=batch_size)


_BUILTIN: dict[str, Criterion] = {c.name: c for c in (
    Ablation(), IterativeAblation(), Taylor(), BlockInfluence(), SynFlow(), Reverse(),
    TransplantProxy("synflow-transplant", "SynFlow of a random copy carrying the unit's trained weights "
                                          "(reference; lowest kept)", needs_frames=False),
    TransplantProxy("gradnorm", "gradient norm of a random copy carrying the unit's trained weights (lowest kept)"),
    TransplantProxy("snip", "SNIP of a random copy carrying the unit's trained weights (lowest kept)"))}
_CRITERIA: dict[str, Criterion] = dict(_BUILTIN)   # the registry: built-ins, then criteria registered from outside
PROXIES = tuple(n for n, c in _BUILTIN.items() if c.transplant)   # scored by TransplantScorer


class _Table(Mapping):
    """``CRITERIA[name] -> (what it measures, higher value kept?)``, a view of the registry (older callers)."""

    def __getitem__(self, name):
        c = _CRITERIA[name]
        return c.measures, c.higher_kept

    def __iter__(self):
        return iter(_CRITERIA)

    def __len__(self):
        return len(_CRITERIA)


CRITERIA = _Table()


def register_criterion(criterion, fn=None, *, measures: str | None = None, higher_kept: bool = True,
                       needs_frames: bool = True, needs_labels: bool = False):
    """Add an importance criterion (``--importance NAME``, study ``[prune] importance``).

    Either a :class:`Criterion` subclass (used as a class decorator; instantiated without arguments) or
    instance, or a name and a function ``fn(model, units, *, order, x, y, input_shape, batch_size) ->
    {unit key: value}`` with ``measures`` (usable as a decorator: ``@register_criterion("name", measures=...)``).
    Returns what it was given.
    """
    if isinstance(criterion, str):
        if measures is None:
            raise EdgepruneError(f"importance criterion {criterion!r} needs measures= (what it measures)")

        def deco(f):
            _add(FunctionCriterion(criterion, f, measures, higher_kept, needs_frames, needs_labels))
            return f
        return deco(fn) if fn is not None else deco
    obj = criterion() if isinstance(criterion, type) else criterion
    if not isinstance(obj, Criterion):
        raise EdgepruneError(f"register_criterion takes a Criterion subclass or a name, got {criterion!r}")
    _add(obj)
    return criterion


def _add(c: Criterion) -> None:
    if not isinstance(c.name, str) or not c.name.strip():
        raise EdgepruneError(f"an importance criterion needs a name, got {c.name!r}")
    if c.name in _BUILTIN:
        raise EdgepruneError(f"{c.name!r} is a built-in importance criterion; choose another name")
    _CRITERIA[c.name] = c


def get_criterion(name: str) -> Criterion:
    """The registered criterion ``name`` (one error line naming the known ones otherwise)."""
    if name not in _CRITERIA:
        raise EdgepruneError(f"unknown importance criterion {name!r}; choose one of: {', '.join(_CRITERIA)}")
    return _CRITERIA[name]


def check_criterion(name: str) -> str:
    return get_criterion(name).name


def higher_kept(name: str) -> bool:
    return get_criterion(name).higher_kept


def keep_keys(name: str, values: dict) -> dict:
    """The plan's ranking key per unit (lower = kept first) from a criterion's values."""
    sign = -1.0 if higher_kept(name) else 1.0
    return {k: sign * float(v) for k, v in values.items()}


def check_proxy(proxy: str) -> str:
    if proxy not in PROXIES:
        raise EdgepruneError(f"unknown transplant proxy {proxy!r}; choose one of: {', '.join(PROXIES)}")
    return proxy


def criterion_values(criterion: str, model, units: dict, *, order=None, x=None, y=None, input_shape=None,
                     metric: str = "loss", batch_size: int = 256) -> dict:
    """The values of criterion ``criterion`` (not a transplant proxy) for ``units`` of ``model`` (the one entry).

    ``units``: ``{key: module}`` or ``{key: (module, ...)}`` (a chain); ``order``: the unit keys shallow to
    deep (default: the order of ``units``); ``x, y``: validation frames and labels; ``input_shape``: one
    frame's shape; ``metric``: ``"acc"`` makes ablation the accuracy drop. One value per unit, as floats.
    """
    crit = get_criterion(criterion)
    if metric != "loss":
        if not isinstance(crit, Ablation):
            raise EdgepruneError(f"metric={metric!r} is an option of the ablation criterion, not {criterion}")
        crit = Ablation(metric)
    if crit.needs_frames and (x is None or len(x) == 0):
        raise EdgepruneError(f"the {criterion} criterion needs validation frames")
    if crit.needs_labels and y is None:
        raise EdgepruneError(f"the {criterion} criterion needs labelled frames")
    keys = list(order if order is not None else units)
    values = crit.values(model, units, order=keys, x=x, y=y, input_shape=input_shape, batch_size=batch_size)
    if not isinstance(values, dict) or set(values) != set(units):
        raise EdgepruneError(f"importance criterion {criterion!r} must return one value per unit ({len(units)} units)")
    return {k: float(values[k]) for k in units}


class TransplantScorer:
    """Scores networks made of a random copy plus the trained weights of chosen units.

    ``build``: a function returning the unpruned network with fresh random weights (for a module recipe,
    :func:`edgeprune.models.modular.base_model`); ``units``: ``{unit key: [module name, ...]}``, the modules
    whose trained weights a unit carries (a traced unit's members); ``input_shape``: one frame's shape.
    """

    def __init__(self, build, state_dict: dict, proxy: str, units: dict, input_shape, *, seed: int = 0,
                 data_x: np.ndarray | None = None, data_y: np.ndarray | None = None, parts: str | None = None,
                 torch_default_init: bool = False, frames: int = 2):
        """``frames``: the all-ones batch of ``synflow-transplant`` (the reference's: 128).
        ``parts``: transplant only the parameters whose names start with it (the reference's VGG
        transplants only ``conv.``, the convolution's weight and bias); default the whole module.
        ``torch_default_init``: the random copy gets PyTorch's default initialisation (``reset_parameters``
        of every module, as the reference's networks) instead of the network's own one."""
        if proxy == "synflow":
            proxy = "synflow-transplant"
        self.proxy = check_proxy(proxy)
        if proxy != "synflow-transplant" and (data_x is None or data_y is None or len(data_x) == 0):
            raise EdgepruneError(f"the {proxy} proxy needs a data batch")
        dtype = torch.float64 if proxy == "synflow-transplant" else torch.float32
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = build()
            if torch_default_init:
                for m in model.modules():
                    if hasattr(m, "reset_parameters"):
                        m.reset_parameters()
        model = model.to(dtype).train()  # the reference scores in train mode (batch statistics)
        trained = build()
        trained.load_state_dict(state_dict, strict=True)
        trained = trained.to(dtype)
        if proxy == "synflow-transplant":
            with torch.no_grad():
                for m in (model, trained):
                    for p in m.parameters():
                        p.abs_()
        self.model = model
        self.units = {k: list(v) for k, v in units.items()}
        names = sorted({n for v in self.units.values() for n in v})
        self.modules = {n: _module(model, n) for n in names}
        self.random_parts = {n: {k: v.clone() for k, v in self.modules[n].state_dict().items()} for n in names}
        self.trained_parts = {n: {k: v.clone() for k, v in _module(trained, n).state_dict().items()
                                  if parts is None or k.startswith(parts)} for n in names}
        if proxy == "synflow-transplant":
            self.x = torch.ones((int(frames),) + tuple(input_shape), dtype=dtype)
            self.y = None
        else:
            self.x = torch.from_numpy(np.ascontiguousarray(data_x)).to(dtype)
            self.y = torch.from_numpy(np.asarray(data_y, dtype=np.int64))
        self.calls = 0

    def score(self, keys, restore: bool = True) -> float:
        """The proxy of the random copy with the trained weights of the units ``keys``.

        ``restore=False`` leaves the transplanted weights in the copy, as the
        reference's search does (what one combination loads carries over to the
        next ones)."""
        names = [n for k in keys for n in self.units[k]]
        model = self.model
        try:
            for n in names:
                self.modules[n].load_state_dict(self.trained_parts[n], strict=False)
            model.zero_grad(set_to_none=True)
            out = model(self.x)
            if self.proxy == "synflow-transplant":
                out.sum().backward()
                total = _saliency(model)
            else:
                F.cross_entropy(out, self.y).backward()
                if self.proxy == "gradnorm":
                    total = sum(float(p.grad.norm()) for p in model.parameters() if p.grad is not None)
                else:
                    total = _saliency(model)
        finally:
            with torch.no_grad():
                for n in (names if restore else []):
                    self.modules[n].load_state_dict(self.random_parts[n])
            model.zero_grad(set_to_none=True)
        self.calls += 1
        if not math.isfinite(total):
            raise EdgepruneError(f"the {self.proxy} score overflowed for this model; try another --importance proxy")
        return total


def _module(model, name: str):
    """The submodule ``name`` (dotted) of ``model``."""
    try:
        return model.get_submodule(name)
    except AttributeError as exc:
        raise EdgepruneError(f"the network has no module {name!r}") from exc


def _saliency(model) -> float:
    return sum(float((p.detach() * p.grad).abs().sum()) for p in model.parameters() if p.grad is not None)


def unit_scores(scorer: TransplantScorer, keys) -> dict:
    """Each unit scored on its own: the proxy of the random copy with that unit's trained weights
    (one forward/backward each; train-mode BatchNorm couples the frames of a batch, so transplants
    cannot share one batch)."""
    return {k: scorer.score([k]) for k in keys}


def select_per_unit(blocks: list[list[int]], counts: list[int], scores: dict[int, float]) -> list[list[int]]:
    """In each block keep the ``count`` candidates with the lowest scores (ties: earlier unit)."""
    out = []
    for cand, r in zip(blocks, counts):
        ranked = sorted(cand, key=lambda i: (scores[i], i))
        out.append(sorted(ranked[:r]))
    return out


def select_exhaustive(blocks: list[list[int]], counts: list[int], scorer,
                      max_combinations: int = MAX_COMBINATIONS, carry: bool = False,
                      admit=None) -> tuple[list[list[int]], list[float | None]]:
    """Every combination of ``count`` units per block (each block's units shallow to deep); the one with the
    lowest key is kept.

    ``scorer``: a :class:`TransplantScorer` (key = its proxy, the reference's
    search; ``carry=True`` leaves each combination's trained weights in the
    random copy, as the reference does) or an object with
    ``combo_key(combo, block)`` (e.g. the validation loss with the block's
    other units removed). ``admit(i, combo)``, when given, is asked about
    block ``i``'s combinations lowest key first (ties: in combination order),
    blocks in order, and the first it accepts is kept (a budget the
    combination must meet); none accepted is an error. A block that keeps no
    unit has no score: ``None`` (JSON null in a plan file, never NaN).
    """
    total = sum(math.comb(len(c), r) for c, r in zip(blocks, counts))
    if total > max_combinations:
        raise EdgepruneError(f"the exhaustive search would score {total} combinations (limit {max_combinations}); "
                             f"use --search per-unit or smaller blocks")
    chosen, best_scores = [], []
    for i, (cand, r) in enumerate(zip(blocks, counts)):
        if r == 0:
            chosen.append([])
            best_scores.append(None)
            continue
        scored = []
        for combo in itertools.combinations(cand, r):   # the block's order (shallow to deep)
            if hasattr(scorer, "combo_key"):
                scored.append((scorer.combo_key(combo, cand), list(combo)))
            else:
                scored.append((scorer.score(combo, restore=not carry), list(combo)))
        if admit is None:
            best = None
            for s, combo in scored:
                if best is None or s < best[0]:
                    best = (s, combo)
        else:
            ranked = sorted(range(len(scored)), key=lambda k: (scored[k][0], k))
            best = next((scored[k] for k in ranked if admit(i, tuple(scored[k][1]))), None)
            if best is None:
                raise EdgepruneError(f"no combination of {r} unit(s) in block {i + 1} meets the budget")
        chosen.append(best[1])
        best_scores.append(best[0])
    return chosen, best_scores
