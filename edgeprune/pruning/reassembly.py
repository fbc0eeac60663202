"""Reassembly: a shallower network from the kept units of a trained one.

The new architecture is just another spec: the kept units in their original
order, with their trained weights; non-unit layers (stem, pools, head,
classifier) are always kept. Whatever no longer fits (a conv whose input
width changed, the first Linear after a flatten whose size changed, a
residual stack fed a different width) is re-initialised (Kaiming normal) and
marked ``"reinit": true`` in the new spec; every layer records its
``"origin"`` (its index in the parent spec).

Stage transitions (the stride-2, widening residual block of a ResNet stage):
``transition="keep"`` (default) keeps the stage's trained transition block;
``transition="reinit"`` puts a randomly initialised transition block in its
place when it was not chosen (in addition to the chosen units);
``transition="replace"`` is what the reference code does: the stage's first
kept unit is replaced by a randomly initialised transition block (so a stage
has as many blocks as units were chosen in it; one random block when none was). Every stage
keeps at least one unit (the stage's first unit is added when none was
chosen). The result is checked by a forward pass.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from ..errors import EdgepruneError

TRANSITION_MODES = ("keep", "reinit", "replace")


def _base_name(name: str) -> str:
    return re.sub(r"-L\d+$", "", str(name))


def plan_layers(spec: dict[str, Any], keep_layers, transition: str = "keep"):
    """The new spec (without weights) for ``keep_layers``.

    Returns ``(new_spec, sources, report)`` where ``sources[j]`` is
    ``(old_index, reinit)`` for new layer ``j``. Raises EdgepruneError on bad input.
    """
    from ..analysis.units import discover_units
    from ..models.spec import infer_shapes, validate_spec

    if transition not in TRANSITION_MODES:
        raise EdgepruneError(f"transition must be one of {', '.join(TRANSITION_MODES)}, got {transition!r}")
    units = discover_units(spec)
    by_layer = {u.layer: u for u in units}
    prunable = [u for u in units if u.role == "unit"]
    if not any(u.removable for u in prunable):
        raise EdgepruneError(f"model {spec.get('name')!r} has no removable units")
    try:
        keep = [int(k) for k in keep_layers]
    except (TypeError, ValueError) as exc:
        raise EdgepruneError(f"keep_layers must be layer indices, got {keep_layers!r}") from exc
    for k in keep:
        if k not in by_layer:
            raise EdgepruneError(f"layer {k} of {spec.get('name')!r} is not a prunable unit "
                                 f"(units are layers {[u.layer for u in prunable]})")
    kept = {k for k in keep if by_layer[k].role == "unit"}
    forced: list[dict[str, Any]] = []
    reinit_slots: set[int] = set()
    for u in prunable:
        if u.transition and not u.removable and u.layer not in kept:
            if transition == "replace":
                same = sorted(k for k in kept if by_layer[k].role == "unit" and by_layer[k].stage == u.stage)
                if same:
                    kept.discard(same[0])
                reinit_slots.add(u.layer)
                forced.append({"layer": u.layer, "reason": "stage transition (re-initialised, replaces "
                               + (f"unit {same[0]})" if same else "nothing: no unit chosen in the stage)")})
            elif transition == "keep":
                kept.add(u.layer)
                forced.append({"layer": u.layer, "reason": "stage transition (trained)"})
            else:
                reinit_slots.add(u.layer)
                forced.append({"layer": u.layer, "reason": "stage transition (re-initialised)"})
    stem_stages = {int(l.get("stage", -1)) for l in spec["layers"] if l.get("role") == "stem" and "stage" in l}
    for stage in sorted({u.stage for u in prunable}):
        members = [u for u in prunable if u.stage == stage]
        if stage in stem_stages:
            continue
        if not any(u.layer in kept or u.layer in reinit_slots for u in members):
            kept.add(members[0].layer)
            forced.append({"layer": members[0].layer, "reason": f"stage {stage} keeps at least one unit"})

    new_layers: list[dict[str, Any]] = []
    sources: list[tuple[int, bool]] = []
    for i, layer in enumerate(spec["layers"]):
        if layer.get("role") == "unit" and i not in kept and i not in reinit_slots:
            continue
        nl = copy.deepcopy(layer)
        nl.pop("reinit", None)
        nl["origin"] = i
        new_layers.append(nl)
        sources.append((i, i in reinit_slots))

    # walk the shapes, re-initialising whatever no longer fits its input
    new_spec = {k: copy.deepcopy(v) for k, v in spec.items() if k != "layers"}
    new_spec["layers"] = []
    shape = tuple(spec["input"])
    for j, nl in enumerate(new_layers):
        t = nl["type"]
        reinit = sources[j][1]
        if t in ("conv", "basic_block", "res_stack") and len(shape) == spec["dim"] + 1 and nl["in"] != shape[0]:
            nl["in"] = int(shape[0])
            reinit = True
        elif t == "linear" and len(shape) == 1 and nl["in"] != shape[0]:
            nl["in"] = int(shape[0])
            reinit = True
        if reinit:
            nl["reinit"] = True
        sources[j] = (sources[j][0], reinit)
        new_spec["layers"].append(nl)
        shape = tuple(infer_shapes(new_spec)[-1])
    n_units = sum(1 for l in new_spec["layers"] if l.get("role") == "unit")
    new_spec["name"] = f"{_base_name(spec['name'])}-L{n_units}"
    validate_spec(new_spec)
    report = {
        "transition": transition,
        "requested": sorted(set(keep)),
        "kept_units": sorted(l for l in kept),
        "forced": forced,
        "reinit": [{"layer": j, "origin": s[0]} for j, s in enumerate(sources) if s[1]],
        "units_before": len(prunable),
        "units_after": n_units,
        "layers_before": len(spec["layers"]),
        "layers_after": len(new_spec["layers"]),
        "name": new_spec["name"],
    }
    return new_spec, sources, report


def reassemble(spec: dict[str, Any], state_dict: dict, keep_layers, transition: str = "keep", seed: int = 0):
    """Build the pruned network: ``(new_spec, new_state_dict, report)``.

    ``keep_layers``: spec layer indices of the units to keep. Kept layers keep
    their trained weights (keys ``layers.{old}.`` become ``layers.{new}.``);
    re-initialised layers draw from ``seed``. ``report`` holds the kept,
    forced and re-initialised layers and MACs/params before and after.
    """
    import torch

    from ..models.macs import count_macs, count_params
    from ..models.net import EdgeNet

    new_spec, sources, report = plan_layers(spec, keep_layers, transition)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        fresh = EdgeNet(new_spec)
    new_state = fresh.state_dict()
    for j, (old, reinit) in enumerate(sources):
        if reinit:
            continue
        prefix_old, prefix_new = f"layers.{old}.", f"layers.{j}."
        for key in [k for k in new_state if k.startswith(prefix_new)]:
            src = prefix_old + key[len(prefix_new):]
            if src not in state_dict:
                raise EdgepruneError(f"the weights lack {src!r}: the state_dict does not belong to model {spec.get('name')!r}")
            if tuple(state_dict[src].shape) != tuple(new_state[key].shape):
                raise EdgepruneError(f"weight {src!r} has shape {list(state_dict[src].shape)}, "
                                     f"the spec expects {list(new_state[key].shape)}")
            new_state[key] = state_dict[src].detach().clone()
    model = EdgeNet(new_spec)
    model.load_state_dict(new_state, strict=True)
    model.eval()
    with torch.no_grad():
        x = torch.zeros((2,) + (tuple(new_spec["input"][-2:]) if new_spec["dim"] == 2 else tuple(new_spec["input"])))
        y = model(x)
    if tuple(y.shape) != (2, new_spec["num_classes"]) or not torch.isfinite(y).all():
        raise EdgepruneError(f"the reassembled model {new_spec['name']} failed its forward check")
    old_model = EdgeNet(spec)
    report.update({
        "macs_before": int(count_macs(old_model)), "macs_after": int(count_macs(model)),
        "params_before": count_params(old_model), "params_after": count_params(model),
        "seed": int(seed),
    })
    return new_spec, new_state, report


def spec_macs(spec: dict[str, Any], keep_layers, transition: str = "keep") -> int:
    """MACs of the network :func:`reassemble` would build (no weights needed)."""
    from ..models.macs import model_stats

    return int(model_stats(plan_layers(spec, keep_layers, transition)[0])["macs"])
