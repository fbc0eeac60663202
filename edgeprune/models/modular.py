"""Networks written as plain ``nn.Module`` code: the *recipe* and its structural edits.

A recipe takes the place of a spec in a checkpoint for any network that is
not described by the spec vocabulary (the user's own code, and the
AMR-family zoo models, which are plain modules too). It says how to rebuild
the unpruned network and which structural edits were made since:

    {"schema": 1, "kind": "module", "name": ..., "family": ..., "dim": 1,
     "input": [2, L], "num_classes": C,
     "source": {"zoo": "mcldnn", "kwargs": {...}}                       # built-in code, or
               {"spec": {...}}                                          # a zoo spec (EdgeNet), or
               {"file": "/abs/models.py", "object": "Net", "kwargs": {...}, "sha256": ...},
     "edits": {"removed": [module names replaced by identity],
               "rnn_layers": {lstm module name: [kept layer indices]},
               "reinit": [module names re-initialised because their input shape changed],
               "pooled": {module name: [output size]},    # removed stacks: an adaptive pool stands in
               "attrs": {module name: {attribute: value}}},            # widths, Torch-Pruning's way
     "stats": {"params", "macs", "units", "weight_layers"},
     "layout": "N1CL" | "NLC",                                         # absent: the model takes (N, 2, L)
     "min_batch": 2}        # absent: it runs on one frame; else the fewest frames it runs on (smaller batches are padded)

Channel widths (``attrs``) are re-applied with Torch-Pruning's own
``tp.load_state_dict`` (module attributes plus the parameters, the latter
taken from the checkpoint's weights), so a channel-pruned user model is
rebuilt exactly as Torch-Pruning left it. Nothing here is pickled.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

from ..errors import EdgepruneError, require
from .spec import spec_stats, validate_spec
from .trace import discover_module_units
from .usercode import instantiate, resolve_allowed

RECIPE_VERSION = 1
EDIT_KEYS = ("removed", "rnn_layers", "reinit", "attrs", "pooled")


def is_module_recipe(spec) -> bool:
    return isinstance(spec, dict) and spec.get("kind") == "module"


def validate_model(spec: Any) -> dict[str, Any]:
    """Check a checkpoint's network description, a module recipe or a zoo spec; return it."""
    if is_module_recipe(spec):
        return validate_recipe(spec)

    return validate_spec(spec)


def network_stats(spec: dict[str, Any]) -> dict[str, int]:
    """Params, MACs, prunable units and weight layers of a module recipe (its own figures, counted when it was
    made) or a zoo spec (analytic)."""
    if is_module_recipe(spec):
        return recipe_stats(spec)

    return spec_stats(spec)


def make_recipe(source: dict[str, Any], name: str, family: str, length: int, num_classes: int,
                channels: int = 2) -> dict[str, Any]:
    return {"schema": RECIPE_VERSION, "kind": "module", "name": str(name), "family": str(family), "dim": 1,
            "input": [int(channels), int(length)], "num_classes": int(num_classes), "source": dict(source),
            "edits": {"removed": [], "rnn_layers": {}, "reinit": [], "attrs": {}}}


def validate_recipe(r: Any) -> dict[str, Any]:
    """Structure check of a recipe read from a checkpoint (torch-free); one-line errors."""
    if not isinstance(r, dict):
        raise EdgepruneError("model recipe must be a dict")
    for key in ("name", "family", "input", "num_classes", "source", "edits"):
        if key not in r:
            raise EdgepruneError(f"model recipe lacks the key {key!r}")
    if r.get("schema") != RECIPE_VERSION:
        raise EdgepruneError(f"model recipe schema {r.get('schema')!r} is not supported (expected {RECIPE_VERSION})")
    inp = r["input"]
    if (not isinstance(inp, list) or len(inp) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                                                 and v > 0 for v in inp)):
        raise EdgepruneError(f"model recipe input must be [channels, length], got {inp!r}")
    if not isinstance(r["num_classes"], int) or r["num_classes"] < 2:
        raise EdgepruneError(f"model recipe num_classes must be an integer >= 2, got {r['num_classes']!r}")
    src = r["source"]
    if not isinstance(src, dict):
        raise EdgepruneError("model recipe source must be a dict")
    if "zoo" in src:
        if not isinstance(src["zoo"], str):
            raise EdgepruneError("model recipe source zoo must be a name")
    elif "spec" in src:
        validate_spec(src["spec"])
    else:
        for key, typ in (("file", str), ("object", str), ("sha256", str)):
            if not isinstance(src.get(key), typ):
                raise EdgepruneError(f"model recipe source lacks {key!r}")
    if not isinstance(src.get("kwargs", {}), dict):
        raise EdgepruneError("model recipe source kwargs must be a dict")
    if "layout" in r:
        from edgeprune.export.runtime.frames import check_layout

        check_layout(r["layout"])
    if "min_batch" in r:
        from .layout import MAX_MIN_BATCH

        mb = r["min_batch"]
        if isinstance(mb, bool) or not isinstance(mb, int) or not 1 <= mb <= MAX_MIN_BATCH:
            raise EdgepruneError(f"model recipe min_batch must be an integer in 1..{MAX_MIN_BATCH}, got {mb!r}")
    ed = r["edits"]
    if not isinstance(ed, dict) or any(k not in EDIT_KEYS for k in ed):
        raise EdgepruneError(f"model recipe edits must be a dict with keys among {', '.join(EDIT_KEYS)}")
    if not all(isinstance(n, str) for n in ed.get("removed", []) + ed.get("reinit", [])):
        raise EdgepruneError("model recipe edits name modules by strings")
    if not isinstance(ed.get("rnn_layers", {}), dict) or not isinstance(ed.get("attrs", {}), dict):
        raise EdgepruneError("model recipe edits rnn_layers/attrs must be dicts")
    pooled = ed.get("pooled", {})
    if not isinstance(pooled, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and 1 <= len(v) <= 3
            and all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in v) for k, v in pooled.items()):
        raise EdgepruneError("model recipe edits: pooled must map module names to output sizes (1 to 3 positive ints)")
    for name, keep in ed.get("rnn_layers", {}).items():
        if not isinstance(keep, list) or not keep or not all(isinstance(i, int) and i >= 0 for i in keep):
            raise EdgepruneError(f"model recipe edits: rnn_layers of {name!r} must list layer indices")
    for name, attrs in ed.get("attrs", {}).items():
        if not isinstance(attrs, dict) or not all(isinstance(v, (int, float, bool, str, list)) or v is None
                                                  for v in attrs.values()):
            raise EdgepruneError(f"model recipe edits: attrs of {name!r} must be plain values")
        if any(not isinstance(k, str) or k.startswith("_") or k in ("forward", "training") for k in attrs):
            raise EdgepruneError(f"model recipe edits: attrs of {name!r} name a private or reserved attribute")
    return r


# ---------------------------------------------------------------- building


def base_model(recipe: dict[str, Any], where: str = "this checkpoint"):
    """The unpruned network (random weights): built-in zoo code, or the user's allowed code file; fed (N, 2, L)
    frames whatever its input layout (:mod:`edgeprune.models.layout`), smaller batches than its ``min_batch``
    padded."""
    from .layout import attach, pad_batches

    return pad_batches(attach(_base_model(recipe, where), recipe.get("layout")), recipe.get("min_batch"))


def _base_model(recipe: dict[str, Any], where: str):
    src = recipe["source"]
    kwargs = dict(src.get("kwargs", {}))
    if "zoo" in src:
        from .amr import build_amr

        try:
            return build_amr(src["zoo"], **kwargs)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise EdgepruneError(f"{where}: the zoo model {src['zoo']!r} does not build with {kwargs} ({exc})") from exc
    if "spec" in src:
        from .net import EdgeNet

        return EdgeNet(src["spec"])

    path, code = resolve_allowed(src, where)
    return instantiate(path, src["object"], kwargs, code)  # the very bytes whose sha256 was checked


def get_module(model, name: str):
    mod = model
    for part in name.split("."):
        if not hasattr(mod, part) and not (hasattr(mod, "_modules") and part in mod._modules):
            raise EdgepruneError(f"the model has no module {name!r}")
        mod = mod._modules[part] if part in getattr(mod, "_modules", {}) else getattr(mod, part)
    return mod


def set_module(model, name: str, new) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = get_module(model, parent_name) if parent_name else model
    if leaf not in parent._modules:
        raise EdgepruneError(f"the model has no module {name!r}")
    parent._modules[leaf] = new


def rnn_identity(mod):
    """An identity for a recurrent module: returns ``(x, (h, c))`` / ``(x, h)`` with the hidden state of
    the last step, so code that unpacks an LSTM/GRU output still runs."""
    from .surgery import RNNIdentity

    return RNNIdentity(mod)


def apply_structure(model, edits: dict[str, Any]):
    """Apply the removals and recurrent-layer removals of ``edits`` to ``model`` (in place)."""
    from torch import nn

    from .surgery import keep_rnn_layers

    for name, keep in sorted(edits.get("rnn_layers", {}).items()):
        set_module(model, name, keep_rnn_layers(get_module(model, name), keep))
    from .surgery import Bypass, PoolBypass

    for name in edits.get("removed", []):
        old = get_module(model, name)
        new = rnn_identity(old) if isinstance(old, nn.RNNBase) else Bypass()
        set_module(model, name, new)
    for name, size in sorted(edits.get("pooled", {}).items()):
        get_module(model, name)
        set_module(model, name, PoolBypass(size))
    return model


def apply_attrs(model, attrs: dict[str, dict[str, Any]], state_dict: dict) -> None:
    """Re-apply widths with Torch-Pruning's ``tp.load_state_dict``: attributes from the recipe, parameter
    and buffer tensors from ``state_dict`` (so their shapes follow)."""
    from torch import nn

    if not attrs:
        return
    tp = require("torch_pruning", "rebuilding a channel-pruned model", "pip install torch-pruning")
    full: dict[str, dict[str, Any]] = {}
    fixed: dict[str, dict[str, Any]] = {}
    for name, values in attrs.items():
        mod = get_module(model, name) if name else model
        params: OrderedDict = OrderedDict()
        for key, val in mod._parameters.items():
            full_key = f"{name}.{key}" if name else key
            if val is None:
                params[key] = None
            elif full_key in state_dict:
                params[key] = nn.Parameter(state_dict[full_key].detach().clone(), requires_grad=val.requires_grad)
            else:
                raise EdgepruneError(f"the weights lack {full_key!r} of the narrowed module {name!r}")
        bufs: OrderedDict = OrderedDict()
        for key, val in mod._buffers.items():
            full_key = f"{name}.{key}" if name else key
            bufs[key] = state_dict[full_key].detach().clone() if (val is not None and full_key in state_dict) else val
        full[name] = {"_parameters": params, "_buffers": bufs}
        # JSON turned tuples into lists: give each attribute back its original type
        fixed[name] = {k: (tuple(v) if isinstance(getattr(mod, k, None), tuple) and isinstance(v, list) else v)
                       for k, v in values.items()}
    tp.load_state_dict(model, {"full_state_dict": full, "attributions": fixed})
    for name in attrs:
        mod = get_module(model, name) if name else model
        if isinstance(mod, nn.RNNBase):
            from .surgery import refresh_rnn

            refresh_rnn(mod)


def build_recipe(recipe: dict[str, Any], state_dict: dict | None = None, where: str = "this checkpoint"):
    """The edited network; with ``state_dict`` also its weights (strict)."""
    model = base_model(recipe, where)
    edits = recipe.get("edits", {})
    apply_structure(model, edits)
    if edits.get("attrs"):
        if state_dict is None:
            raise EdgepruneError(f"{where}: a channel-pruned model is rebuilt from its weights")
        apply_attrs(model, edits["attrs"], state_dict)
    if state_dict is not None:
        try:
            model.load_state_dict(state_dict, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise EdgepruneError(f"{where}: weights do not fit the model ({first_mismatch(model, state_dict) or first[0]})") from exc
    return model.eval()


def first_mismatch(model, state_dict: dict) -> str | None:
    """A sentence naming the first key where ``state_dict`` does not fit ``model``."""
    own = model.state_dict()
    for key, val in own.items():
        if key not in state_dict:
            return f"first mismatched key {key!r}: missing from the weights"
        if tuple(state_dict[key].shape) != tuple(val.shape):
            return (f"first mismatched key {key!r}: the weights have shape {list(state_dict[key].shape)}, "
                    f"the model {list(val.shape)}")
    for key in state_dict:
        if key not in own:
            return f"first mismatched key {key!r}: not in the model"
    return None


def frame_shape(recipe: dict[str, Any]) -> tuple[int, int]:
    return int(recipe["input"][0]), int(recipe["input"][1])


def model_stats_of(model, recipe: dict[str, Any]) -> dict[str, int]:
    """Params, MACs, removable units and weight layers of a live model built from ``recipe``."""
    from torch import nn

    from .macs import count_macs, count_params

    shape = frame_shape(recipe)
    weights = sum(1 for m in model.modules()
                  if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.RNNBase)))
    try:
        units = sum(1 for u in discover_module_units(model, shape).units if u.removable)
    except EdgepruneError:
        units = 0
    return {"params": count_params(model), "macs": int(count_macs(model, shape)), "units": int(units),
            "weight_layers": int(weights)}


def with_stats(recipe: dict[str, Any], model) -> dict[str, Any]:
    """``recipe`` with its ``stats`` filled from the live ``model``."""
    out = copy.deepcopy(recipe)
    out["stats"] = model_stats_of(model, recipe)
    return out


def recipe_stats(recipe: dict[str, Any]) -> dict[str, int]:
    if isinstance(recipe.get("stats"), dict):
        return {k: int(recipe["stats"][k]) for k in ("params", "macs", "units", "weight_layers")}
    return model_stats_of(build_recipe(recipe), recipe)


def edited(recipe: dict[str, Any], **changes) -> dict[str, Any]:
    """A copy of ``recipe`` with edits merged: lists extended, dicts updated."""
    out = copy.deepcopy(recipe)
    ed = out.setdefault("edits", {})
    for key, val in changes.items():
        if key == "pooled":
            ed["pooled"] = {**ed.get("pooled", {}), **{k: list(v) for k, v in val.items()}}
        elif key in ("removed", "reinit"):
            ed[key] = list(ed.get(key, [])) + [v for v in val if v not in ed.get(key, [])]
        elif key == "attrs":
            merged = dict(ed.get("attrs", {}))
            for name, a in val.items():
                merged[name] = {**merged.get(name, {}), **a}
            ed["attrs"] = merged
        elif key == "rnn_layers":
            merged = dict(ed.get("rnn_layers", {}))
            for name, keep in val.items():
                prev = merged.get(name)
                merged[name] = [prev[i] for i in keep] if prev else list(keep)
            ed["rnn_layers"] = merged
        else:
            raise ValueError(key)
    out.pop("stats", None)
    return out


def recipe_from_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A module recipe whose unpruned network is the zoo spec ``spec`` (so the traced-module path can edit it
    in ways a spec cannot express, e.g. re-initialised layers after removing a shape-changing unit)."""
    validate_spec(spec)
    length = int(spec["input"][-1])
    r = make_recipe({"spec": copy.deepcopy(spec)}, spec["name"], spec["family"], length, spec["num_classes"])
    return r
