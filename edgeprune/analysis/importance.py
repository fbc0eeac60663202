"""Importance of units by training-free proxies: SynFlow, GradNorm, SNIP.

How a unit is scored on its own (cost linear in depth): the unit's trained
weights (and BN statistics) are transplanted into a randomly initialised copy
of the network (fixed seed), and the proxy of that whole network is the
unit's score. This is exactly how the reference scores a combination of
units, restricted to one unit, so per-unit and exhaustive scores live on the
same scale: for one kept unit per block the two searches pick the same unit,
and ``search="exhaustive"`` (every combination in a block, as the reference)
is there for small blocks. As in the reference, the LOWEST score is kept.

- ``synflow``: parameters made non-negative, float64, an all-ones input,
  R = sum(output), score = sum |theta * dR/dtheta|. Eval mode, one frame:
  with identical frames the score is linear in the batch size, so the
  ranking equals the reference's batch of 128.
- ``gradnorm``: sum over parameters of the L2 norm of dCE/dtheta on a data batch.
- ``snip``: sum |theta * dCE/dtheta| on a data batch.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from ..errors import EdgepruneError

PROXIES = ("synflow", "gradnorm", "snip")
SEARCHES = ("per-unit", "exhaustive")
MAX_COMBINATIONS = 20000


def check_proxy(proxy: str) -> str:
    if proxy not in PROXIES:
        raise EdgepruneError(f"unknown importance proxy {proxy!r}; choose one of: {', '.join(PROXIES)}")
    return proxy


class TransplantScorer:
    """Scores networks made of a random copy plus the trained weights of chosen units."""

    def __init__(self, spec: dict[str, Any], state_dict: dict, proxy: str = "synflow", seed: int = 0,
                 data_x: np.ndarray | None = None, data_y: np.ndarray | None = None):
        import torch

        from ..models.net import EdgeNet

        self.proxy = check_proxy(proxy)
        if proxy != "synflow" and (data_x is None or data_y is None or len(data_x) == 0):
            raise EdgepruneError(f"the {proxy} proxy needs a data batch")
        self.spec = spec
        dtype = torch.float64 if proxy == "synflow" else torch.float32
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = EdgeNet(spec)
        model = model.to(dtype).eval()
        trained = EdgeNet(spec)
        trained.load_state_dict(state_dict, strict=True)
        trained = trained.to(dtype)
        if proxy == "synflow":
            with torch.no_grad():
                for m in (model, trained):
                    for p in m.parameters():
                        p.abs_()
        self.model = model
        self.trained = trained.eval()
        self.random_layers = {i: {k: v.clone() for k, v in model.layers[i].state_dict().items()}
                              for i in range(len(model.layers))}
        self.trained_layers = {i: {k: v.clone() for k, v in trained.layers[i].state_dict().items()}
                               for i in range(len(trained.layers))}
        if proxy == "synflow":
            shape = tuple(spec["input"][-2:]) if spec["dim"] == 2 else tuple(spec["input"])
            self.x = torch.ones((1,) + shape, dtype=dtype)
            self.y = None
        else:
            self.x = torch.from_numpy(np.ascontiguousarray(data_x)).to(dtype)
            self.y = torch.from_numpy(np.asarray(data_y, dtype=np.int64))
        self.calls = 0

    def score(self, layers) -> float:
        """The proxy of the random copy with the trained weights of ``layers``."""
        import torch
        import torch.nn.functional as F

        layers = list(layers)
        model = self.model
        try:
            for i in layers:
                model.layers[i].load_state_dict(self.trained_layers[i])
            model.zero_grad(set_to_none=True)
            out = model(self.x)
            if self.proxy == "synflow":
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
                for i in layers:
                    model.layers[i].load_state_dict(self.random_layers[i])
            model.zero_grad(set_to_none=True)
        self.calls += 1
        if not math.isfinite(total):
            raise EdgepruneError(f"the {self.proxy} score overflowed for this model; try another --importance proxy")
        return total


def _saliency(model) -> float:
    return sum(float((p.detach() * p.grad).abs().sum()) for p in model.parameters() if p.grad is not None)


def unit_scores(scorer: TransplantScorer, layers) -> dict[int, float]:
    """Each unit scored on its own: the proxy of the random copy with that unit's trained weights.

    SynFlow takes one batched pass for all units (:func:`batched_synflow_scores`,
    cost linear in depth); the data-driven proxies take one evaluation per unit.
    """
    layers = [int(i) for i in layers]
    if scorer.proxy == "synflow" and layers:
        return batched_synflow_scores(scorer, layers)
    return {i: scorer.score([i]) for i in layers}


def batched_synflow_scores(scorer: TransplantScorer, layers: list[int]) -> dict[int, float]:
    """SynFlow of every single-unit transplant at once, equal to ``scorer.score([i])`` for each ``i``.

    All transplants run as one batch: row ``v`` takes the trained weights of
    unit ``layers[v]`` and the random copy everywhere else. In eval mode rows
    do not interact, so one backward pass gives every row its own activation
    gradients, and a trained unit's parameter gradients (used by one row only)
    are exact. For the random copy's layers, which are affine in their
    parameters (conv, BN in eval mode, linear), every term
    ``theta * dR_v/dtheta`` is non-negative (non-negative parameters, inputs
    and gradients; the random BN statistics are mean 0, variance 1), so the
    layer's share of row ``v``'s score is ``<dR_v/dy_v, y_v>``. One forward and
    one backward of a batch of n frames replace n forward-backward passes of
    one frame: the cost grows linearly with depth instead of quadratically.
    """
    import torch
    from torch import nn

    model, trained, spec = scorer.model, scorer.trained, scorer.spec
    n = len(layers)
    row_of = {layer: v for v, layer in enumerate(layers)}
    x = scorer.x.expand((n,) + tuple(scorer.x.shape[1:])).clone()
    if spec["dim"] == 2 and x.dim() == 3:
        x = x.unsqueeze(1)
    affine = (nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.Linear)
    outputs: list[torch.Tensor] = []

    def keep_output(_mod, _inp, out):
        out.retain_grad()
        outputs.append(out)

    handles = [m.register_forward_hook(keep_output) for m in model.modules() if isinstance(m, affine)]
    try:
        model.zero_grad(set_to_none=True)
        trained.zero_grad(set_to_none=True)
        h = x
        for i, layer in enumerate(model.layers):
            out = layer(h)
            v = row_of.get(i)
            if v is not None:
                t = trained.layers[i](h[v:v + 1])
                out = torch.cat([out[:v], t, out[v + 1:]])
            h = out
        h.sum().backward()
        totals = torch.zeros(n, dtype=h.dtype)
        for y in outputs:
            if y.grad is not None:
                totals += (y.grad * y.detach()).reshape(n, -1).sum(1)
        for layer, v in row_of.items():
            for p in trained.layers[layer].parameters():
                if p.grad is not None:
                    totals[v] += (p.detach() * p.grad).abs().sum()
    finally:
        for hd in handles:
            hd.remove()
        model.zero_grad(set_to_none=True)
        trained.zero_grad(set_to_none=True)
    scorer.calls += 1
    scores = {layer: float(totals[v]) for layer, v in row_of.items()}
    if not all(math.isfinite(s) for s in scores.values()):
        raise EdgepruneError("the synflow score overflowed for this model; try another --importance proxy")
    return scores


def select_per_unit(blocks: list[list[int]], counts: list[int], scores: dict[int, float]) -> list[list[int]]:
    """In each block keep the ``count`` candidates with the lowest scores (ties: earlier unit)."""
    out = []
    for cand, r in zip(blocks, counts):
        ranked = sorted(cand, key=lambda i: (scores[i], i))
        out.append(sorted(ranked[:r]))
    return out


def select_exhaustive(blocks: list[list[int]], counts: list[int], scorer: TransplantScorer,
                      max_combinations: int = MAX_COMBINATIONS) -> tuple[list[list[int]], list[float]]:
    """The reference search: every combination of ``count`` units per block, lowest score kept."""
    total = sum(math.comb(len(c), r) for c, r in zip(blocks, counts))
    if total > max_combinations:
        raise EdgepruneError(f"the exhaustive search would score {total} combinations (limit {max_combinations}); "
                             f"use --search per-unit or smaller blocks")
    chosen, best_scores = [], []
    for cand, r in zip(blocks, counts):
        if r == 0:
            chosen.append([])
            best_scores.append(float("nan"))
            continue
        best = None
        for combo in itertools.combinations(sorted(cand), r):
            s = scorer.score(combo)
            if best is None or s < best[0]:
                best = (s, list(combo))
        chosen.append(best[1])
        best_scores.append(best[0])
    return chosen, best_scores
