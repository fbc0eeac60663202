"""The model zoo: the paper's 2-D models and 1-D edge variants, as specs.

The 2-D models have the paper's layers and sizes. ``resnet56`` and
``resnet110`` use the parameter-free option-A shortcut (strided subsampling,
zero channels); the reference code's networks average the input of a
downsampling block to 1 x 1 instead (zero channels, detached): that is
``resnet56-ref`` / ``resnet110-ref``.

2-D models treat the (2, L) I/Q frame as a one-channel image (input
(1, 2, L)), as in the source paper; 1-D variants convolve over (2, L) with
Conv1d, which is what an edge receiver usually wants.
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import EdgepruneError
from .spec import SPEC_VERSION, infer_shapes, validate_spec


def _resnet(name: str, dim: int, blocks_per_stage: int, length: int, num_classes: int,
            widths=(16, 32, 64), shortcut: str | None = None) -> dict[str, Any]:
    inp = [1, 2, length] if dim == 2 else [2, length]
    layers: list[dict[str, Any]] = [
        {"type": "conv", "in": inp[0], "out": widths[0], "k": 3, "stride": 1, "padding": 1,
         "bias": False, "bn": True, "relu": True, "role": "stem"}
    ]
    cin = widths[0]
    for s, w in enumerate(widths):
        for b in range(blocks_per_stage):
            stride = 2 if (s > 0 and b == 0) else 1
            layers.append({"type": "basic_block", "in": cin, "mid": w, "out": w, "stride": stride,
                           "role": "unit", "stage": s, **({"shortcut": shortcut} if shortcut else {})})
            cin = w
    layers.append({"type": "gap", "role": "head"})
    layers.append({"type": "linear", "in": cin, "out": num_classes, "bn": False, "relu": False, "role": "classifier"})
    return {"schema": SPEC_VERSION, "name": name, "family": "resnet", "dim": dim, "input": inp,
            "num_classes": num_classes, "layers": layers}


def _vgg16(name: str, dim: int, length: int, num_classes: int) -> dict[str, Any]:
    """VGG16 of the paper: 10 convs in 4 stages, MaxPool 2 after each, FC 256-128-classes with BN1d.

    2-D: 3x3 convs, padding 3 in the first two stages (as the reference).
    1-D: kernel 3, padding 1 everywhere (padding 3 would only grow the frame).
    """
    inp = [1, 2, length] if dim == 2 else [2, length]
    stages = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512]]
    layers: list[dict[str, Any]] = []
    cin = inp[0]
    first = True
    for s, widths in enumerate(stages):
        pad = 3 if (dim == 2 and s < 2) else 1
        for w in widths:
            layers.append({"type": "conv", "in": cin, "out": w, "k": 3, "stride": 1, "padding": pad,
                           "bias": True, "bn": True, "relu": True,
                           "role": "stem" if first else "unit", "stage": s})
            first = False
            cin = w
        layers.append({"type": "maxpool", "k": 2, "stage": s})
    layers.append({"type": "flatten", "role": "head"})
    spec = {"schema": SPEC_VERSION, "name": name, "family": "vgg", "dim": dim, "input": inp,
            "num_classes": num_classes, "layers": layers}
    flat = _flat_size(spec)
    layers += [
        {"type": "linear", "in": flat, "out": 256, "bn": True, "relu": True, "role": "head"},
        {"type": "linear", "in": 256, "out": 128, "bn": True, "relu": True, "role": "head"},
        {"type": "linear", "in": 128, "out": num_classes, "bn": False, "relu": False, "role": "classifier"},
    ]
    return spec


def _cnn1d(name: str, length: int, num_classes: int, stacks: int = 6, width: int = 32) -> dict[str, Any]:
    """The residual-stack CNN1D (O'Shea et al. 2018): 6 residual stacks, FC 128-128-classes."""
    if length < 2 ** stacks:
        stacks = max(1, length.bit_length() - 1)
    layers: list[dict[str, Any]] = []
    cin = 2
    for s in range(stacks):
        layers.append({"type": "res_stack", "in": cin, "out": width, "k": 3, "pool": 2, "role": "unit", "stage": 0})
        cin = width
    layers.append({"type": "flatten", "role": "head"})
    spec = {"schema": SPEC_VERSION, "name": name, "family": "cnn1d", "dim": 1, "input": [2, length],
            "num_classes": num_classes, "layers": layers}
    flat = _flat_size(spec)
    layers += [
        {"type": "linear", "in": flat, "out": 128, "bn": False, "relu": True, "role": "head"},
        {"type": "linear", "in": 128, "out": 128, "bn": False, "relu": True, "role": "head"},
        {"type": "linear", "in": 128, "out": num_classes, "bn": False, "relu": False, "role": "classifier"},
    ]
    return spec


def _flat_size(partial_spec: dict[str, Any]) -> int:
    return infer_shapes(partial_spec)[-1][0]


ZOO: dict[str, tuple[str, Callable[[int, int], dict[str, Any]]]] = {
    "resnet20": ("2-D ResNet20 (3 x 3 blocks), the 1-channel-image view of the I/Q frame",
                 lambda L, C: _resnet("resnet20", 2, 3, L, C)),
    "resnet56": ("2-D ResNet56 of the paper (3 x 9 BasicBlocks, widths 16/32/64)",
                 lambda L, C: _resnet("resnet56", 2, 9, L, C)),
    "resnet110": ("2-D ResNet110 of the paper (3 x 18 BasicBlocks)",
                  lambda L, C: _resnet("resnet110", 2, 18, L, C)),
    "resnet56-ref": ("2-D ResNet56 with the reference code's shortcut (input averaged to 1x1, zero channels, detached)",
                     lambda L, C: _resnet("resnet56-ref", 2, 9, L, C, shortcut="avgpool")),
    "resnet110-ref": ("2-D ResNet110 with the reference code's shortcut",
                      lambda L, C: _resnet("resnet110-ref", 2, 18, L, C, shortcut="avgpool")),
    "vgg16": ("2-D VGG16 of the paper (10 convs, FC 256-128 with BN1d)",
              lambda L, C: _vgg16("vgg16", 2, L, C)),
    "resnet20-1d": ("1-D ResNet20 (Conv1d over the 2 x L frame)", lambda L, C: _resnet("resnet20-1d", 1, 3, L, C)),
    "resnet56-1d": ("1-D ResNet56 (Conv1d), the edge variant", lambda L, C: _resnet("resnet56-1d", 1, 9, L, C)),
    "resnet110-1d": ("1-D ResNet110 (Conv1d)", lambda L, C: _resnet("resnet110-1d", 1, 18, L, C)),
    "vgg16-1d": ("1-D VGG16 (Conv1d, padding 1)", lambda L, C: _vgg16("vgg16-1d", 1, L, C)),
    "cnn1d": ("residual-stack CNN1D (O'Shea 2018): 6 residual stacks of 32 filters",
              lambda L, C: _cnn1d("cnn1d", L, C)),
}


def zoo_names() -> list[str]:
    return list(ZOO)


def make_spec(name: str, length: int = 128, num_classes: int = 11) -> dict[str, Any]:
    """The spec of zoo model ``name`` for frames of ``length`` samples and ``num_classes`` classes."""
    if name not in ZOO:
        raise EdgepruneError(f"unknown model {name!r}; choose one of: {', '.join(ZOO)}")
    if not isinstance(length, int) or length < 8:
        raise EdgepruneError(f"frame length must be an integer >= 8, got {length!r}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise EdgepruneError(f"number of classes must be >= 2, got {num_classes!r}")
    return validate_spec(ZOO[name][1](length, num_classes))
