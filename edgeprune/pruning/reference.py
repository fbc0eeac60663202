"""``--reference``: the layer-selection procedure as the reference code (yaolu-zjut/PSR) runs it.

Point by point (each checked in tests/pruning/test_reference.py):

- Similarity inputs: the first five batches of 128 frames of the TEST split,
  in order (the reference's unshuffled test loader), not random training frames.
- What is compared: ResNet: the stem convolution's raw output (before its
  BatchNorm and ReLU) and the output of every residual block (28 units for
  ResNet56). VGG16: the 9 convolutions after the first, hooked at the
  convolution's output, before BatchNorm.
- Similarity: per-batch unbiased linear CKA (diagonal 1), averaged over the batches.
- Segmentation: the Fisher table, K by the 5 % rule, and the block bounds
  recovered with the reference's back-tracking heuristic
  (:func:`~edgeprune.analysis.segmentation.reference_bounds`), not the optimum.
- Candidates: every compared unit of a block, the ResNet stem and stage
  transitions included (choosing the stem keeps nothing extra: the stem
  always stays).
- Segmentation's max K: 4, as the shipped Network_Partition.py sets it for
  every network (``k = 4``; a comment in Reassembly.py names 5 for ResNet56 and 7 for ResNet110).
- Scoring: the random copy has PyTorch's default initialisation (the
  reference's networks do not re-initialise); SynFlow on an all-ones batch of
  128 frames (float64), as zero_nas/synflow.py; for every combination of the block's kept count, in the
  reference's order, the trained weights of those units are loaded into one
  random copy of the network and SynFlow is computed with BatchNorm in train
  mode; the loaded weights are NOT restored, so every later combination
  (and block) is scored on a copy carrying all units loaded so far.
  VGG units transplant the convolution's weight and bias only. The LOWEST
  score is kept.
- Reassembly (ResNet): a stage's first kept unit is replaced by a randomly
  initialised transition block unless the stage's own transition block was
  chosen (``transition="replace"``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..analysis.importance import MAX_COMBINATIONS, TransplantScorer, select_exhaustive
from ..analysis.representations import iter_unit_features
from ..analysis.segmentation import auto_k, bounds_loss, check_k, column_sums, fisher_dp, reference_bounds, segment
from ..analysis.similarity import SimilarityAccumulator
from ..checkpoint import checkpoint_as_recipe
from ..data.split import resolve_split
from ..errors import EdgepruneError
from ..importing import load_model_arg
from ..models.modular import base_model, get_module
from ..models.trace import discover_module_units
from .budget import check_counts, parse_keep
from .modular import ENTRY_ROLES, _expected, _plan_summary, _result, _trace, replace_rule
from .plan_file import spec_hash

REFERENCE_MODELS = ("resnet56-ref", "resnet110-ref", "resnet56", "resnet110", "vgg16")
REFERENCE_SHORTCUT = ("resnet56-ref", "resnet110-ref")
BATCHES, BATCH_SIZE = 5, 128
SYNFLOW_FRAMES = 128      # zero_nas/synflow.py: an all-ones batch of 128 frames
REFERENCE_MAX_K = 4       # Network_Partition.py as shipped: ``k = 4`` for every network


def check_reference_model(spec: dict[str, Any]) -> str:
    name = str(spec.get("name"))
    if name not in REFERENCE_MODELS or (spec.get("kind") == "module" and "spec" not in spec.get("source", {})):
        raise EdgepruneError(f"--reference reproduces the reference code (yaolu-zjut/PSR), which defines only the 2-D "
                             f"ResNet56, ResNet110 and VGG16; supported here: {', '.join(REFERENCE_MODELS)} "
                             f"(model {name!r} is not one of them)")
    return name


def layer_number(unit) -> int:
    """The reference's number of a traced unit: its index in the zoo network's ``layers`` (``layers.N``)."""
    head, _, rest = unit.name.partition(".")
    if head != "layers" or not rest.isdigit():
        raise EdgepruneError(f"unit {unit.name!r} is not a layer of a zoo network (internal error)")
    return int(rest)


def reference_units(ckpt, model) -> list:
    """The compared units in order (traced ModuleUnits of the zoo network): ResNet: the stem and every residual
    block (the spec's units, 28 for ResNet56, in the same order); VGG16: the 9 convolutions after the first."""
    entries = [u for u in discover_module_units(model, (2, ckpt.length)).units if u.role in ENTRY_ROLES]
    if ckpt.spec["family"] == "vgg":
        return [u for u in entries if u.role != "stem"]
    return entries


def hook_modules(model, family: str, units) -> list:
    """The module whose output the reference records for each unit."""
    mods = []
    for u in units:
        layer = get_module(model, u.members[0])
        if family == "vgg" or u.role == "stem":
            mods.append(layer.conv)           # the raw convolution output (before BN)
        else:
            mods.append(layer)
    return mods


def test_batches(n: int, batches: int = BATCHES, batch_size: int = BATCH_SIZE) -> list[np.ndarray]:
    """The first ``batches`` full batches of the test split, in order (one short batch if the split is small)."""
    if n < 4:
        raise EdgepruneError(f"the reference similarity needs at least 4 test frames, the test split has {n}")
    full = min(batches, n // batch_size)
    if full == 0:
        return [np.arange(n)]
    return [np.arange(i * batch_size, (i + 1) * batch_size) for i in range(full)]


def reference_segments(seq, segments="auto", max_segments: int | None = None) -> dict[str, Any]:
    """The plan's ``segments`` as the reference makes them: the Fisher table up to max K (default
    :data:`REFERENCE_MAX_K`, the shipped Network_Partition.py's), K by the 5 % rule, the bounds by its back-tracking
    heuristic; ``bounds_loss`` is the Fisher loss of those bounds, ``optimal_loss`` and ``optimal_bounds`` the
    optimum's for the same K."""
    seq = np.asarray(seq, dtype=np.float64).reshape(-1)
    n = len(seq)
    auto = segments in (None, "auto")
    if max_segments is None:
        max_segments = REFERENCE_MAX_K if auto else int(segments)
    if auto:
        loss, _ = fisher_dp(seq, min(int(max_segments), n))
        losses = [float(v) for v in loss[1:, n]]
        k = auto_k(losses)
    else:
        k = check_k(segments, n)
        loss, _ = fisher_dp(seq, k)
        losses = [float(v) for v in loss[1:, n]]
    bounds = reference_bounds(seq, k)
    optimum = segment(seq, k).bounds
    return {"k": int(k), "bounds": [list(b) for b in bounds], "sizes": [b - a for a, b in bounds],
            "losses": losses, "auto": bool(auto), "max_k": int(max_segments), "sequence": seq.tolist(),
            "recovery": "reference back-tracking heuristic",
            "bounds_loss": bounds_loss(seq, bounds), "optimal_loss": bounds_loss(seq, optimum),
            "optimal_bounds": [list(b) for b in optimum]}


def analyze_reference(ckpt, data, *, keep=None, segments="auto", max_segments: int | None = None, seed: int = 0,
                      split=None, max_combinations: int | None = None) -> dict[str, Any]:
    """The plan the reference procedure makes for ``ckpt`` (same format as :func:`~edgeprune.pruning.plan.analyze`),
    on the traced units of the zoo network."""
    ckpt = load_model_arg(ckpt, "the model")
    name = check_reference_model(ckpt.spec)
    if data is None:
        raise EdgepruneError("the analysis needs data (--data)")
    ckpt = checkpoint_as_recipe(ckpt)
    if any(ckpt.spec["edits"].values()):
        raise EdgepruneError(f"--reference analyses the reference's unpruned {name}; this checkpoint was pruned")
    (_, _, test), split_info = resolve_split(ckpt, data, split)
    t_all = time.perf_counter()
    model = ckpt.build()
    vgg = ckpt.spec["family"] == "vgg"
    units = reference_units(ckpt, model)
    idx = test_batches(len(test))
    acc = SimilarityAccumulator("cka-unbiased")
    for feats in iter_unit_features(model, hook_modules(model, ckpt.spec["family"], units), test.x, idx):
        acc.add(feats)
    sim = acc.result()
    segs = reference_segments(column_sums(sim), segments, max_segments)
    bounds = [tuple(b) for b in segs["bounds"]]
    blocks = [[layer_number(units[p]) for p in range(a, b)] for a, b in bounds]
    counts = check_counts(parse_keep(keep), blocks) if keep is not None else [1] * len(blocks)
    recipe = ckpt.spec
    scorer = TransplantScorer(lambda: base_model(recipe), ckpt.state_dict, "synflow-transplant",
                              {layer_number(u): u.members for u in units}, (2, ckpt.length), seed=seed,
                              parts="conv." if vgg else None, torch_default_init=True, frames=SYNFLOW_FRAMES)
    chosen, best = select_exhaustive(blocks, counts, scorer, max_combinations or MAX_COMBINATIONS, carry=True)
    stem_layers = {layer_number(u) for u in units if u.role == "stem"}
    kept = sorted(u for b in chosen for u in b if u not in stem_layers)
    unit_dicts = [{"layer": layer_number(u), "position": p, "name": u.name, "role": u.role, "removable": True,
                   "macs": u.macs} for p, u in enumerate(units)]
    plan = {
        "format": "edgeprune-plan", "kind": "module", "model": name, "spec_sha256": _sha(recipe),
        "checkpoint": {"path": str(ckpt.path) if ckpt.path else None, "sha256": ckpt.sha256()},
        "seed": int(seed), "units": unit_dicts,
        "similarity": {"metric": "cka-unbiased", "batches": len(idx), "batch_size": int(len(idx[0])),
                       "frames": "first batches of the test split, in order", "split": split_info,
                       "matrix": sim.round(6).tolist()},
        "segments": segs,
        "importance": {"criterion": "synflow-transplant", "proxy": "synflow-transplant",
                       "measures": "SynFlow of the random copy carrying every combination's units (carried over)",
                       "rule": "lowest value kept", "split": "none", "frames": 0,
                       "synflow_frames": SYNFLOW_FRAMES, "values": {}, "scores": {}},
        "keep": {"mode": "keep" if keep is not None else "default", "counts": counts, "search": "exhaustive",
                 "target_macs": None, "exhaustive_scores": best, "match": None},
        "blocks": [{"bounds": list(b), "candidates": c, "kept": k_} for b, c, k_ in zip(bounds, blocks, chosen)],
        "kept_units": kept, "transition": "keep" if vgg else "replace",
        "reference": {"mode": True, "chosen": chosen, "reference_shortcut": name in REFERENCE_SHORTCUT,
                      "differences": reference_differences(name)},
    }
    plan["expected"] = reference_expected(ckpt, model, plan)
    plan.update({"timings": {"analysis_s": round(time.perf_counter() - t_all, 4)},
                 "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return plan


def _sha(recipe) -> str:
    return spec_hash(recipe)


def reference_plan(ckpt, data, *, plan, keep, keep_units, target_macs, transition, segments, max_segments, seed):
    """``--reference``: the reference procedure's plan (its own budget, --keep, and its own transitions)."""
    if plan is not None:
        raise EdgepruneError("--reference makes its own plan: give --data (and --keep), not --plan")
    if data is None:
        raise EdgepruneError("layer pruning without --plan needs --data to analyse the model")
    if keep_units is not None or target_macs is not None:
        raise EdgepruneError("--reference takes the reference's budget, --keep (units per block), "
                             "not --keep-units or --target-macs")
    if transition not in (None, "replace"):
        raise EdgepruneError("--reference builds the reference's transitions (replace); do not give --transition")
    return analyze_reference(ckpt, data, keep=keep, segments=segments, max_segments=max_segments, seed=seed)


def reference_assembly(ckpt, model, plan) -> tuple[list, list, list]:
    """(removed, re-initialised, forced) units of ``model`` for a ``--reference`` plan: every compared unit but
    the stem is a candidate; ResNet stages get the reference's transitions
    (:func:`edgeprune.pruning.modular.replace_rule`)."""
    units = reference_units(ckpt, model)
    names = {u.name for u in units}
    if {u["name"] for u in plan["units"]} != names:
        raise EdgepruneError("the plan does not match this network's traced units; make a new one with analyze")
    kept = {u["name"] for u in plan["units"] if u["layer"] in set(plan["kept_units"])}
    if plan["transition"] == "replace":
        cands = [u for u in units if u.role == "unit"]
        entries = [u for u in _trace(model, ckpt).units if u.role in ENTRY_ROLES]
        return replace_rule(entries, cands, kept)
    return [u for u in units if u.role != "stem" and u.name not in kept], [], []


def reference_expected(ckpt, model, plan) -> dict[str, Any]:
    """A ``--reference`` plan's ``expected`` MACs and params."""
    removed, reinit, forced = reference_assembly(ckpt, model, plan)
    return {**_expected(ckpt, model, removed, reinit), "forced": forced}


def reference_result(ckpt, plan, plan_ref, seed: int, tol: float):
    """The layer method's result for a ``--reference`` plan (the reference's reassembly of the traced network)."""
    ckpt = checkpoint_as_recipe(ckpt)
    model = ckpt.build()
    removed, reinit, forced = reference_assembly(ckpt, model, plan)
    summary = _plan_summary(plan, plan["keep"]["counts"], plan["keep"]["mode"])
    summary["reference"] = {k: plan["reference"][k] for k in ("chosen", "reference_shortcut")}
    extra = {"options": {"reference": True, "segments": plan["segments"], "importance": "synflow-transplant",
                         "budget": plan["keep"]["mode"], "tolerance": tol, "transition": plan["transition"]},
             "plan": plan_ref or summary, "plan_summary": summary, "forced": forced,
             "kept_units": [u["name"] for u in plan["units"] if u["layer"] in set(plan["kept_units"])]}
    return _result(ckpt, model, removed, None, "layer", seed, plan["transition"], extra,
                   info={"plan": plan}, reinit=reinit)


def reference_differences(name: str) -> list[str]:
    """What still differs from the reference code for this model (also listed in docs/method.md)."""
    out = [
        "similarity and segmentation in float64 (the reference: float32 on the GPU; the similarity matrices differ "
        "by float32 rounding, so near-ties may break differently)",
        "the test split is edgeprune's stratified split of your data, not the reference's prepared test files",
    ]
    if name in ("resnet56", "resnet110"):
        out.append(f"{name} uses the strided option-A shortcut; the reference's network averages to 1x1 "
                   f"(use {name}-ref for the reference network)")
    if name == "vgg16":
        out.append("VGG reassembly keeps the trained BatchNorm, first convolution and classifier head; "
                   "the reference's fine-tuning copies only the kept convolutions' weights and biases")
    out.append("a stage in which no unit was chosen gets one random transition block (the reference's "
               "hand-written networks always had one)")
    return out
