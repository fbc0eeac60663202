"""The prunable units of a model, in order: residual blocks, Conv-BN-ReLU units, residual stacks.

For zoo models the units come from the spec (:func:`discover_units`); for a
user's own ``nn.Module`` they are found by tracing shapes through its children
(:func:`trace_units`).

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

from ..errors import EdgepruneError


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
    from ..models.spec import infer_shapes, layer_costs, validate_spec

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


def _container(module):
    from torch import nn

    if isinstance(module, (nn.Sequential, nn.ModuleList)):
        return module, ""
    # a network whose body is one Sequential/ModuleList holding most of the parameters (like EdgeNet.layers)
    total = sum(p.numel() for p in module.parameters()) or 1
    for name, child in module.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)):
            if sum(p.numel() for p in child.parameters()) >= 0.5 * total:
                return child, name + "."
    return module, ""


def trace_units(module, example_input) -> list[TracedUnit]:
    """Trace a user's ``nn.Module``: its parameterised children in call order, with shapes.

    The children of a Sequential/ModuleList body (or the direct children) are
    hooked and one forward pass of ``example_input`` is run. A child whose
    output shape equals its input shape is removable; shape-changing ones are
    transitions. Children without parameters (pooling, activations) are not
    units. Shapes are per sample (batch dimension dropped).
    """
    import torch

    if not isinstance(module, torch.nn.Module):
        raise EdgepruneError("trace_units needs a torch.nn.Module")
    body, prefix = _container(module)
    seen: list[tuple[str, Any, tuple, tuple]] = []
    handles = []

    def hook(name):
        def fn(mod, inp, out):
            if not inp or not isinstance(inp[0], torch.Tensor) or not isinstance(out, torch.Tensor):
                return
            seen.append((name, mod, tuple(inp[0].shape[1:]), tuple(out.shape[1:])))
        return fn

    for name, child in body.named_children():
        handles.append(child.register_forward_hook(hook(prefix + name)))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(example_input)
    except Exception as exc:  # noqa: BLE001 - a user's model failed on the example input
        raise EdgepruneError(f"tracing failed: the model does not run on the example input "
                             f"of shape {list(getattr(example_input, 'shape', []))}: {exc}") from exc
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    units: list[TracedUnit] = []
    done = set()
    for name, mod, ishape, oshape in seen:
        params = sum(p.numel() for p in mod.parameters())
        if params == 0 or name in done:
            continue
        done.add(name)
        units.append(TracedUnit(name=name, position=len(units), in_shape=ishape, out_shape=oshape,
                                removable=ishape == oshape, transition=ishape != oshape,
                                params=int(params), module=mod))
    return units
