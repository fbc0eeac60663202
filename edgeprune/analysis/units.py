"""The prunable units of a model, in order: residual blocks, Conv-BN-ReLU units, residual stacks.

For zoo models the units come from the spec (:func:`discover_units`); for any
``nn.Module`` they are found by tracing its forward
(:func:`edgeprune.models.trace.discover_module_units`; :func:`trace_units` is a short view of it).

Terms:

- *position*: 0-based order among the units used for similarity. The ResNet
  stem / VGG first conv is position 0 (it takes part in the similarity
  matrix) but is never removable.
- *transition*: a unit whose output shape differs from its input shape
  (a stride-2 / widening residual block, a VGG conv that changes the width, a
  pooling residual stack).
- *removable*: layer pruning may drop the unit. True when the output shape
  equals the input shape; also true for shape-changing units whose removal
  the reassembly can repair by re-initialising the next weight layer (VGG
  convs, CNN1D residual stacks). A ResNet stage transition is not removable:
  the stage keeps it (trained, or re-initialised with ``transition="reinit"``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..errors import EdgepruneError
from ..models.spec import infer_shapes, layer_costs, validate_spec
from ..models.trace import discover_module_units


@dataclass
class Unit:
    layer: int                 # index into spec["layers"]
    position: int              # order among units (stem = 0 when present)
    stage: int
    removable: bool
    transition: bool
    macs: int
    params: int
    type: str
    role: str                  # "stem" or "unit"
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["in_shape"] = list(self.in_shape)
        d["out_shape"] = list(self.out_shape)
        return d


# layer types whose removal the reassembly repairs by re-initialising what follows
_REPAIRABLE = {"conv", "res_stack"}


def discover_units(spec: dict[str, Any]) -> list[Unit]:
    """The ordered units of a spec (stem first when the model has one)."""
    validate_spec(spec)
    shapes = [tuple(spec["input"])] + [tuple(s) for s in infer_shapes(spec)]
    costs = layer_costs(spec)  # analytic: no model is built (this runs for every candidate in budget searches)
    units: list[Unit] = []
    for i, layer in enumerate(spec["layers"]):
        role = layer.get("role")
        if role not in ("stem", "unit"):
            continue
        if role == "stem" and layer["type"] not in ("conv", "basic_block", "res_stack"):
            continue
        in_shape, out_shape = shapes[i], shapes[i + 1]
        transition = in_shape != out_shape
        if role == "stem":
            removable = False
        elif not transition:
            removable = True
        else:
            removable = layer["type"] in _REPAIRABLE
        units.append(Unit(
            layer=i, position=len(units), stage=int(layer.get("stage", 0)), removable=removable,
            transition=transition, macs=costs[i]["macs"], params=costs[i]["params"],
            type=layer["type"], role=role, in_shape=in_shape, out_shape=out_shape))
    return units


def removable_units(spec: dict[str, Any]) -> list[Unit]:
    """The removable units; raises EdgepruneError when the model has none."""
    units = [u for u in discover_units(spec) if u.removable]
    if not units:
        raise EdgepruneError(f"model {spec.get('name')!r} has no removable units: layer pruning needs "
                             f"blocks whose output shape equals their input shape (or repairable units)")
    return units


@dataclass
class TracedUnit:
    """A child module of a user's network, found by :func:`trace_units`."""

    name: str
    position: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    removable: bool
    transition: bool
    params: int
    module: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "position": self.position, "in_shape": list(self.in_shape),
                "out_shape": list(self.out_shape), "removable": self.removable,
                "transition": self.transition, "params": self.params}


def trace_units(module, example_input) -> list[TracedUnit]:
    """The traced entries of a user's ``nn.Module`` (a thin view of
    :func:`edgeprune.models.trace.discover_module_units`, which has the details and the reasons).

    Conv-(BN)-(act) groups are one entry, residual blocks one entry, each layer of a stacked LSTM/GRU one entry;
    the stem and the classifier are listed but never removable. Shapes are per sample.
    """
    if not isinstance(module, torch.nn.Module):
        raise EdgepruneError("trace_units needs a torch.nn.Module")
    shape = tuple(getattr(example_input, "shape", ())[1:])
    res = discover_module_units(module, shape, batch=int(getattr(example_input, "shape", (2,))[0] or 2))
    mods = dict(module.named_modules())
    return [TracedUnit(name=u.name, position=u.position, in_shape=u.in_shape, out_shape=u.out_shape,
                       removable=u.removable, transition=u.in_shape != u.out_shape, params=u.params,
                       module=mods.get(u.output_module)) for u in res.units]
