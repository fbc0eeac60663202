"""The one MAC definition of edgeprune.

MACs = multiply-accumulates of convolutions and linear layers only (BN, ReLU,
pooling, additions are not counted), per single input frame. FLOPs, where a
report needs them, are 2 x MACs. This is the convention the pruning papers
call "FLOPs" (thop), minus its BN term.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

MAC_DEFINITION = "MACs: conv + linear multiply-accumulates per frame (FLOPs = 2 x MACs)"


def count_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...] | None = None, per_layer: bool = False):
    """MACs of one forward pass for a single frame.

    ``input_shape`` is the per-sample shape (defaults to the spec's (2, L) frame
    for edgeprune models). With ``per_layer`` a dict {top-level layer index:
    MACs} is returned too (for EdgeNet models), so reports can put per-layer
    latency beside per-layer MACs.
    """
    if input_shape is None:
        spec = getattr(model, "spec", None)
        if spec is None:
            raise ValueError("input_shape is required for models without a spec")
        input_shape = tuple(spec["input"][-2:]) if spec["dim"] == 2 else tuple(spec["input"])
    counts: dict[str, int] = {}
    handles = []

    def hook(name):
        def fn(mod, inp, out):
            if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                k = 1
                for v in mod.kernel_size:
                    k *= v
                macs = out.numel() // out.shape[0] * (mod.in_channels // mod.groups) * k
            else:  # Linear
                macs = out.numel() // out.shape[0] * mod.in_features
            counts[name] = counts.get(name, 0) + int(macs)
        return fn

    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            handles.append(mod.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else "cpu"
        model(torch.zeros((1,) + tuple(input_shape), device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    total = sum(counts.values())
    if not per_layer:
        return total
    layers: dict[int, int] = {}
    for name, v in counts.items():
        parts = name.split(".")
        if len(parts) > 1 and parts[0] == "layers" and parts[1].isdigit():
            layers[int(parts[1])] = layers.get(int(parts[1]), 0) + v
    return total, layers


def model_stats(spec: dict[str, Any]) -> dict[str, int]:
    """Params, MACs, prunable units and weight layers of a spec.

    Computed analytically from the spec (see ``spec.layer_costs``); the
    tests check it against :func:`count_macs` and :func:`count_params` on
    built models.
    """
    from .spec import spec_stats

    return spec_stats(spec)
