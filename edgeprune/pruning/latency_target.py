"""Latency-targeted layer pruning: choose the kept units so the model meets a latency budget.

1. The layer plan (similarity, segments, importance) gives, for every MACs
   fraction, the units the paper's method keeps; sweeping the fraction gives
   a ladder of candidate architectures (the traced network, its units removed
   in the layer method's order).
2. A latency model ``latency ~ a*MACs + b*layers + c`` for the target's
   backend and batch (edgeprune.profiling.latency_model) predicts each candidate's
   latency. Given one (``latency_model=path``) it is used as it is; otherwise
   it is calibrated here: a few candidates spread over the ladder are
   exported with random weights (latency does not depend on the values) and
   measured on this machine in interleaved rounds, and the model is fitted
   on them.
3. The largest candidate predicted at least a margin (3%) under the budget
   is built from the trained weights; then its real latency is measured and reported
   against the budget (and against the prediction).

Only meaningful where the target's backend runs: an ONNX Runtime target on
this machine, a TensorRT target on the board.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeprune.export.onnx_export import torch_to_onnx
from edgeprune.export.targets import load_target
from edgeprune.profiling.latency_model import LatencyModel

from ..checkpoint import checkpoint_as_recipe
from ..errors import EdgepruneError
from ..models import build_model
from ..models.modular import recipe_stats
from .catalogue import GONE_TRACED
from .modular import latency_ladder, prune_units
from .plan import analyze
from .plan_file import check_plan, load_plan
from edgeprune.profiling.harness import profile


def _target_setup(target, batch: int | None, threads: int | None) -> dict[str, Any]:
    tgt = load_target(target)
    if tgt.backend not in ("onnxruntime", "tensorrt"):
        raise EdgepruneError(f"target {tgt.name}: latency-targeted pruning supports onnxruntime and tensorrt backends, "
                             f"not {tgt.backend!r}")
    b = int(batch or (tgt.batch_profile[0] if tgt.batch_profile else 1))
    if b < 1:
        raise EdgepruneError("--batch-size must be >= 1")
    return {"target": tgt, "backend": tgt.backend, "batch": b, "threads": int(threads or 1), "opset": tgt.opset}


def _measure_specs(specs: list[dict[str, Any]], setup: dict[str, Any], iters: int, seed: int,
                   rounds: int = 3) -> list[dict[str, Any]]:
    """Export each spec (random weights) and time it on the target's backend; profiler records (see
    :func:`_measure_models`)."""
    models = []
    for i, spec in enumerate(specs):
        torch.manual_seed(seed + i)
        models.append((build_model(spec).eval(), int(spec["input"][-1])))
    return _measure_models(models, setup, iters, seed, rounds)


def _measure_models(models: list, setup: dict[str, Any], iters: int, seed: int,
                    rounds: int = 3) -> list[dict[str, Any]]:
    """Export each ``(model, length)`` to ONNX and time it on the target's backend; profiler records.

    The models are timed in ``rounds`` interleaved rounds (every model once per round) by the profiler's rounds
    rule (``edgeprune.profiling.harness.profile(rounds=...)``): each record is its median round, with ``rounds`` the
    round medians. A shared machine's speed shifts between phases, and interleaving puts every candidate in
    every phase.
    """

    rounds = max(1, int(rounds))
    with tempfile.TemporaryDirectory(prefix="edgeprune-lat-") as tmp:
        paths = []
        for i, (model, length) in enumerate(models):
            p = Path(tmp) / f"cand{i}.onnx"
            torch_to_onnx(model.eval(), int(length), p, opset=setup["opset"])
            paths.append(str(p))
        res = profile(paths, backends=(setup["backend"],), batches=(setup["batch"],), threads=(setup["threads"],),
                      warmup_iters=max(5, iters // 10), iters=max(10, iters // rounds), duration_ms=None,
                      seed=seed, show_progress=True, rounds=rounds)
    by_path = {rec["path"]: rec for rec in res["records"]}
    if any(p not in by_path for p in paths):
        reasons = "; ".join(sorted({s["reason"] for s in res.get("skipped", [])}))
        raise EdgepruneError(f"could not measure candidates on {setup['backend']}: {reasons}")
    return [by_path[p] for p in paths]


def _as_models(ckpt, cands) -> list:
    """``(model, length)`` of ladder candidates: the live pruned networks."""
    return [(c["model"], ckpt.length) for c in cands]


def _latency_model(ckpt, cands, setup, latency_model, calib_points: int, iters: int, seed: int):
    """(latency model, where it came from): the given file, or one calibrated on a few ladder candidates here."""
    if latency_model is not None:
        lm = LatencyModel.load(latency_model, backend=setup["backend"], batch=setup["batch"], threads=setup["threads"])
        return lm, str(latency_model)
    idx = sorted(set(np.linspace(0, len(cands) - 1, min(calib_points, len(cands))).round().astype(int).tolist()))
    records = _measure_models(_as_models(ckpt, [cands[i] for i in idx])
                              + [(ckpt.build().eval(), ckpt.length)], setup, iters, seed)
    if len(records) < 3:
        raise EdgepruneError("too few distinct architectures to calibrate a latency model")
    return LatencyModel.fit(records), f"calibrated on {len(records)} architectures here"


def _latency_info(budget_ms, margin, aim, setup, best, measured, source, quality, cands) -> dict[str, Any]:
    return {
        "budget_ms": float(budget_ms), "margin": float(margin), "aim_ms": float(aim),
        "target": setup["target"].name, "backend": setup["backend"],
        "batch": setup["batch"], "threads": setup["threads"],
        "predicted_ms": best["predicted_ms"], "measured_ms": measured["median_ms"],
        "measured_p90_ms": measured.get("p90_ms"),
        "error_vs_budget_pct": 100 * (measured["median_ms"] - budget_ms) / budget_ms,
        "error_vs_prediction_pct": 100 * (measured["median_ms"] - best["predicted_ms"]) / best["predicted_ms"],
        "meets_budget": measured["median_ms"] <= budget_ms,
        "latency_model": {"source": source, "quality": quality},
        "candidates": [{k: c[k] for k in ("fraction", "macs", "layers", "predicted_ms")} for c in cands],
    }


def prune_to_latency(ckpt, data, budget_ms: float, target: str, *, latency_model=None, plan=None,
                     transition: str = "keep", batch: int | None = None, threads: int | None = None,
                     calib_points: int = 6, iters: int = 200, seed: int = 0, margin: float = 0.03,
                     **analysis_options):
    """Layer-prune ``ckpt`` to meet ``budget_ms`` (median latency per batch) on ``target``.

    The largest candidate predicted at or under ``budget_ms x (1 - margin)`` is built: the margin (3% by
    default) absorbs the prediction error, so a candidate predicted just under the budget does not miss it
    by a hair.

    Returns a PruneResult whose ``info`` holds the prediction, the measured
    latency, the error against the budget and the latency model's fit quality.
    """
    if not (isinstance(budget_ms, (int, float)) and budget_ms > 0):
        raise EdgepruneError(f"--target-latency must be a positive number of milliseconds, got {budget_ms!r}")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 1:
        raise EdgepruneError(f"--latency-margin must be a fraction in [0, 1), got {margin!r}")

    if "traced" in analysis_options:
        raise EdgepruneError(GONE_TRACED)
    setup = _target_setup(target, batch, threads)
    if isinstance(plan, (str, Path)):
        plan = load_plan(plan)
    if plan is not None and plan.get("reference"):
        raise EdgepruneError("latency-targeted pruning chooses its own units; a --reference plan's budget is fixed")
    ckpt = checkpoint_as_recipe(ckpt)
    if plan is None:
        if data is None:
            raise EdgepruneError("latency-targeted pruning without --plan needs --data to analyse the model")
        plan = analyze(ckpt, data, seed=seed, transition=transition, **analysis_options)
    check_plan(plan, ckpt.spec)
    cands = latency_ladder(ckpt, plan, transition)
    lm, source = _latency_model(ckpt, cands, setup, latency_model, calib_points, iters, seed)
    quality = getattr(lm, "quality", None)
    for c in cands:
        c["predicted_ms"] = float(lm.predict(c["macs"], c["layers"]))
    aim = budget_ms * (1 - margin)
    fitting = [c for c in cands if c["predicted_ms"] <= aim]
    note = None
    if fitting:
        best = max(fitting, key=lambda c: (c["macs"], c["layers"]))
    else:   # as close as whole units allow: the fastest candidate, with a note
        best = min(cands, key=lambda c: c["predicted_ms"])
        note = (f"no layer-pruned model of {ckpt.spec['name']} is predicted to meet {budget_ms:g} ms (aiming at "
                f"{aim:.4g} ms with a {margin:.0%} margin) on {setup['target'].name} (batch {setup['batch']}); took "
                f"the fastest whole units allow, predicted at {best['predicted_ms']:.3f} ms ({best['macs']:,} MACs)")

    res = prune_units(ckpt, plan, best["removed"], seed=seed, transition=transition)
    after = recipe_stats(res.spec)["macs"]
    if after != best["macs"]:  # pragma: no cover - guards the ladder's logic
        raise EdgepruneError("internal: the chosen candidate could not be rebuilt from the plan")
    measured = _measure_models(_as_models(ckpt, [best]), setup, iters, seed)[0]
    info = _latency_info(budget_ms, margin, aim, setup, best, measured, source, quality, cands)
    res.lineage = dict(res.lineage, target_latency=info["budget_ms"], latency_target=setup["target"].name,
                       predicted_ms=info["predicted_ms"], measured_ms=info["measured_ms"])
    res.info = dict(res.info, latency=info)
    if note:
        res.info["notes"] = list(res.info.get("notes") or []) + [note]
    return res
