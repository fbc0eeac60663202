"""Architecture as data.

A *spec* is a plain JSON-able dict that fully describes a network, so that a
layer-pruned model (fewer layers) and a channel-pruned model (narrower
layers) are simply other specs. Torch-free: shapes are inferred symbolically.

    {
      "schema": 1, "name": "resnet56", "family": "resnet", "dim": 2,
      "input": [1, 2, 128],          # (C, H, L) for dim 2, (C, L) for dim 1
      "num_classes": 11,
      "layers": [ {"type": "conv", "in": 1, "out": 16, "k": 3, "stride": 1,
                   "padding": 1, "bias": false, "bn": true, "relu": true,
                   "role": "stem"}, ... ]
    }

Layer types and their fields:

- ``conv``: in, out, k, stride, padding, bias, bn, relu. Conv-BN-ReLU.
- ``basic_block``: in, mid, out, stride. CIFAR residual BasicBlock
  (conv-bn-relu-conv-bn + shortcut, relu) with the parameter-free "option A"
  shortcut: strided subsampling plus zero channels. Optional ``shortcut``:
  ``"avgpool"`` is the reference code's 2-D ResNet shortcut on a
  downsampling block: the input averaged to 1 x 1, zero channels added,
  detached from the graph, broadcast over the output.
- ``res_stack``: in, out, k, pool. A residual stack (O'Shea et al. 2018):
  1x1 conv, two residual units of two k-convs, then max-pool.
- ``maxpool``: k (stride k).
- ``flatten``; ``gap`` (global average pool + flatten).
- ``linear``: in, out, bn, relu (bn/relu false for the classifier).

Every layer may carry ``role`` (``stem``, ``unit``, ``head``, ``classifier``)
and ``stage`` (the stage index). Units (``role == "unit"``) are the layers
layer pruning may remove.
"""

from __future__ import annotations

import copy
from typing import Any

from edgeprune.export.runtime.safeio import limit

from ..errors import EdgepruneError

SPEC_VERSION = 1
LAYER_FIELDS: dict[str, dict[str, type | tuple]] = {
    "conv": {"in": int, "out": int, "k": int, "stride": int, "padding": int, "bias": bool, "bn": bool, "relu": bool},
    "basic_block": {"in": int, "mid": int, "out": int, "stride": int},
    "res_stack": {"in": int, "out": int, "k": int, "pool": int},
    "maxpool": {"k": int},
    "flatten": {},
    "gap": {},
    "linear": {"in": int, "out": int, "bn": bool, "relu": bool},
}
OPTIONAL_FIELDS = {"role": str, "stage": int, "origin": int, "reinit": bool, "shortcut": str}
SHORTCUTS = ("option-a", "avgpool")


def _out_len(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


def infer_shapes(spec: dict[str, Any]) -> list[tuple[int, ...]]:
    """Return the per-sample output shape of every layer (in order).

    Raises EdgepruneError if widths do not chain or a spatial size collapses.
    """
    dim = spec["dim"]
    shape: tuple[int, ...] = tuple(int(v) for v in spec["input"])
    if len(shape) != dim + 1:
        raise EdgepruneError(f"spec {spec.get('name')!r}: input {list(shape)} does not match dim {dim}")
    shapes = []
    for i, layer in enumerate(spec["layers"]):
        t = layer["type"]
        where = f"spec {spec.get('name')!r} layer {i} ({t})"
        if t in ("conv", "basic_block", "res_stack"):
            if len(shape) != dim + 1:
                raise EdgepruneError(f"{where}: expects a feature map, got shape {list(shape)}")
            if shape[0] != layer["in"]:
                raise EdgepruneError(f"{where}: takes {layer['in']} channels but receives {shape[0]}")
            spatial = shape[1:]
            if t == "conv":
                spatial = tuple(_out_len(n, layer["k"], layer["stride"], layer["padding"]) for n in spatial)
            elif t == "basic_block":
                spatial = tuple(_out_len(n, 3, layer["stride"], 1) for n in spatial)
                if layer["out"] < layer["in"]:
                    raise EdgepruneError(f"{where}: the option-A shortcut cannot reduce channels ({layer['in']} -> {layer['out']})")
            else:  # res_stack
                if layer["k"] % 2 != 1:
                    raise EdgepruneError(f"{where}: kernel must be odd")
                # 2-D stacks pool the length axis only (the I/Q axis is 2 high)
                spatial = spatial[:-1] + (spatial[-1] // layer["pool"],)
            shape = (layer["out"],) + spatial
        elif t == "maxpool":
            if dim == 2:
                # the 2-row I/Q axis may be shorter than the kernel: pool it with 1
                spatial = tuple(n // layer["k"] if n >= layer["k"] else n for n in shape[1:])
            else:
                spatial = tuple(n // layer["k"] for n in shape[1:])
            shape = (shape[0],) + spatial
        elif t == "flatten":
            n = 1
            for v in shape:
                n *= v
            shape = (n,)
        elif t == "gap":
            shape = (shape[0],)
        elif t == "linear":
            if len(shape) != 1:
                raise EdgepruneError(f"{where}: needs a flat input, got shape {list(shape)} (add a flatten layer)")
            if shape[0] != layer["in"]:
                raise EdgepruneError(f"{where}: takes {layer['in']} features but receives {shape[0]}")
            shape = (layer["out"],)
        else:
            raise EdgepruneError(f"{where}: unknown layer type {t!r}")
        if any(v <= 0 for v in shape):
            raise EdgepruneError(f"{where}: output shape {list(shape)} has collapsed to zero (input too short for this model)")
        shapes.append(shape)
    return shapes


def validate_spec(spec: Any) -> dict[str, Any]:
    """Check a spec's structure and consistency; return it. Raises EdgepruneError. (A spec or a module recipe:
    :func:`edgeprune.models.modular.validate_model`.)"""
    try:
        return _validate_spec(spec)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        # a spec read from a file is untrusted: a malformed value is the user's problem, in one line
        first = (str(exc).strip().splitlines() or [""])[0]
        raise EdgepruneError(f"model spec is malformed ({type(exc).__name__}: {first})") from exc


def _validate_spec(spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise EdgepruneError("model spec must be a dict")
    for key in ("name", "family", "dim", "input", "num_classes", "layers"):
        if key not in spec:
            raise EdgepruneError(f"model spec lacks the key {key!r}")
    if spec.get("schema", SPEC_VERSION) != SPEC_VERSION:
        raise EdgepruneError(f"model spec schema {spec.get('schema')!r} is not supported (expected {SPEC_VERSION})")
    if spec["dim"] not in (1, 2):
        raise EdgepruneError(f"model spec dim must be 1 or 2, got {spec['dim']!r}")
    if not isinstance(spec["layers"], list) or not spec["layers"]:
        raise EdgepruneError("model spec has no layers")

    max_width, max_layers, max_act = limit("width"), limit("layers"), limit("activation")
    if len(spec["layers"]) > max_layers:
        raise EdgepruneError(f"model spec has {len(spec['layers'])} layers, over the limit of {max_layers} "
                             f"(EDGEPRUNE_MAX_LAYERS)")
    inp = spec["input"]
    if not isinstance(inp, list) or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= max_act
                                            for v in inp):
        raise EdgepruneError(f"model spec input must be a list of positive integers up to {max_act}, got "
                             f"{str(inp)[:60]}")
    for key in ("name", "family"):
        if not isinstance(spec[key], str) or len(spec[key]) > 200:
            raise EdgepruneError(f"model spec {key} must be a short string, got {str(spec[key])[:40]}")
    nc = spec["num_classes"]
    if isinstance(nc, bool) or not isinstance(nc, int) or not 1 <= nc <= max_width:
        raise EdgepruneError(f"model spec num_classes must be an integer in 1..{max_width}, got {str(nc)[:40]}")
    for i, layer in enumerate(spec["layers"]):
        if not isinstance(layer, dict) or "type" not in layer:
            raise EdgepruneError(f"model spec layer {i} is not a layer dict")
        fields = LAYER_FIELDS.get(layer["type"])
        if fields is None:
            raise EdgepruneError(f"model spec layer {i}: unknown type {layer['type']!r}")
        for f, typ in fields.items():
            if f not in layer:
                raise EdgepruneError(f"model spec layer {i} ({layer['type']}) lacks {f!r}")
            v = layer[f]
            if typ is int and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise EdgepruneError(f"model spec layer {i} ({layer['type']}): {f} must be a non-negative integer, got {v!r}")
            if typ is bool and not isinstance(v, bool):
                raise EdgepruneError(f"model spec layer {i} ({layer['type']}): {f} must be true/false, got {v!r}")
            if typ is int and f in ("in", "out", "mid") and not 1 <= v <= (max_act if (layer["type"], f) == ("linear", "in")
                                                                         else max_width):
                raise EdgepruneError(f"model spec layer {i} ({layer['type']}): {f} = {v} is outside 1..{max_width} "
                                     f"(EDGEPRUNE_MAX_WIDTH; linear inputs: EDGEPRUNE_MAX_ACTIVATION)")
            if typ is int and f in ("k", "stride", "pool") and not 1 <= v <= max_act:
                raise EdgepruneError(f"model spec layer {i} ({layer['type']}): {f} must be at least 1, got {v}")
            if typ is int and f == "padding" and v > max_act:
                raise EdgepruneError(f"model spec layer {i} ({layer['type']}): padding {v} is over {max_act}")
        if "shortcut" in layer and (layer["type"] != "basic_block" or layer["shortcut"] not in SHORTCUTS):
            raise EdgepruneError(f"model spec layer {i} ({layer['type']}): shortcut must be one of "
                                 f"{', '.join(SHORTCUTS)} on a basic_block, got {layer['shortcut']!r}")
        for f in layer:
            if f != "type" and f not in fields and f not in OPTIONAL_FIELDS:
                raise EdgepruneError(f"model spec layer {i} ({layer['type']}): unknown field {f!r}")
            typ = OPTIONAL_FIELDS.get(f)
            v = layer[f]
            if typ is not None and v is not None and (not isinstance(v, typ) or (typ is int and isinstance(v, bool))
                                                      or (typ is int and not 0 <= v <= max_layers * 64)):
                raise EdgepruneError(f"model spec layer {i} ({layer['type']}): {f} must be "
                                     f"{'a string' if typ is str else 'true/false' if typ is bool else 'a small non-negative integer'}, "
                                     f"got {str(v)[:40]}")
    last = spec["layers"][-1]
    if last["type"] != "linear" or last["out"] != spec["num_classes"]:
        raise EdgepruneError("model spec must end in a linear classifier with num_classes outputs")
    shapes = infer_shapes(spec)
    for i, shape in enumerate(shapes):
        if _numel(shape) > max_act:
            raise EdgepruneError(f"model spec layer {i} outputs {_numel(shape)} values per frame, over the limit of "
                                 f"{max_act} (EDGEPRUNE_MAX_ACTIVATION)")
    params = sum(c["params"] for c in layer_costs(spec))
    if params > limit("params"):
        raise EdgepruneError(f"model spec has {params:,} parameters, over the limit of {limit('params'):,} "
                             f"(EDGEPRUNE_MAX_PARAMS)")
    return spec


def unit_indices(spec: dict[str, Any]) -> list[int]:
    """Indices (into spec['layers']) of the prunable units, in order."""
    return [i for i, l in enumerate(spec["layers"]) if l.get("role") == "unit"]


def clone(spec: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(spec)


def layer_costs(spec: dict[str, Any]) -> list[dict[str, int]]:
    """Per-layer MACs (conv + linear multiply-accumulates per frame), parameters and weight layers.

    Computed from the spec alone (torch-free, microseconds); equal to the
    hook-based counter in :mod:`edgeprune.models.macs` (checked in tests).
    """
    dim = spec["dim"]
    shapes = [tuple(int(v) for v in spec["input"])] + infer_shapes(spec)
    out = []
    for i, l in enumerate(spec["layers"]):
        t = l["type"]
        s_in, s_out = shapes[i], shapes[i + 1]
        macs = params = weights = 0
        if t == "conv":
            kk = l["k"] ** dim
            pos = _numel(s_out[1:])
            macs = pos * l["out"] * l["in"] * kk
            params = l["out"] * l["in"] * kk + (l["out"] if l["bias"] else 0) + (2 * l["out"] if l["bn"] else 0)
            weights = 1
        elif t == "basic_block":
            kk = 3 ** dim
            pos = _numel(s_out[1:])
            macs = pos * l["mid"] * l["in"] * kk + pos * l["out"] * l["mid"] * kk
            params = l["mid"] * l["in"] * kk + 2 * l["mid"] + l["out"] * l["mid"] * kk + 2 * l["out"]
            weights = 2
        elif t == "res_stack":
            pos = _numel(s_in[1:])
            c = l["out"]
            macs = pos * c * l["in"] + 4 * pos * c * c * l["k"]
            params = c * l["in"] + 2 * c + 4 * (c * c * l["k"] + 2 * c)
            weights = 5
        elif t == "linear":
            macs = l["in"] * l["out"]
            params = l["in"] * l["out"] + l["out"] + (2 * l["out"] if l["bn"] else 0)
            weights = 1
        out.append({"macs": macs, "params": params, "weight_layers": weights})
    return out


def _numel(shape) -> int:
    n = 1
    for v in shape:
        n *= int(v)
    return n


def spec_stats(spec: dict[str, Any]) -> dict[str, int]:
    """Params, MACs, prunable units and weight layers of a spec, without building it (a spec or a module recipe:
    :func:`edgeprune.models.modular.network_stats`)."""
    costs = layer_costs(spec)
    return {
        "params": sum(c["params"] for c in costs),
        "macs": sum(c["macs"] for c in costs),
        "units": len(unit_indices(spec)),
        "weight_layers": sum(c["weight_layers"] for c in costs),
    }
