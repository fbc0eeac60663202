"""Build a torch network from a spec. One module per spec layer, in ``net.layers``."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .spec import infer_shapes, validate_spec


def _conv(dim: int, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, bias: bool = False) -> nn.Module:
    cls = nn.Conv2d if dim == 2 else nn.Conv1d
    return cls(cin, cout, k, stride=stride, padding=padding, bias=bias)


def _bn(dim: int, c: int) -> nn.Module:
    return nn.BatchNorm2d(c) if dim == 2 else nn.BatchNorm1d(c)


class ConvUnit(nn.Module):
    """Conv - BN - ReLU."""

    def __init__(self, dim: int, l: dict[str, Any]):
        super().__init__()
        self.conv = _conv(dim, l["in"], l["out"], l["k"], l["stride"], l["padding"], l["bias"])
        self.bn = _bn(dim, l["out"]) if l["bn"] else nn.Identity()
        self.act = nn.ReLU(inplace=False) if l["relu"] else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """CIFAR BasicBlock with the parameter-free option-A shortcut (subsample + zero channels)."""

    def __init__(self, dim: int, l: dict[str, Any]):
        super().__init__()
        self.dim = dim
        self.stride = l["stride"]
        self.conv1 = _conv(dim, l["in"], l["mid"], 3, l["stride"], 1)
        self.bn1 = _bn(dim, l["mid"])
        self.conv2 = _conv(dim, l["mid"], l["out"], 3, 1, 1)
        self.bn2 = _bn(dim, l["out"])
        extra = l["out"] - l["in"]
        self.pad = (extra // 2, extra - extra // 2)
        self.avgpool = l.get("shortcut") == "avgpool" and (l["stride"] > 1 or extra > 0)
        self.extra = extra

    def shortcut(self, x):
        if self.avgpool:  # the reference code's: mean over space, zero channels after, no gradient
            x = x.detach().mean(dim=tuple(range(2, x.dim())), keepdim=True)
            return F.pad(x, (0, 0) * self.dim + (0, self.extra))
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride] if self.dim == 2 else x[:, :, :: self.stride]
        if self.pad != (0, 0):
            spatial = (0, 0) * self.dim
            x = F.pad(x, spatial + self.pad)
        return x

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResidualUnit(nn.Module):
    def __init__(self, dim: int, c: int, k: int):
        super().__init__()
        pad = k // 2
        kk = k if dim == 1 else (1, k)
        pp = pad if dim == 1 else (0, pad)
        cls = nn.Conv2d if dim == 2 else nn.Conv1d
        self.conv_a = cls(c, c, kk, padding=pp, bias=False)
        self.bn_a = _bn(dim, c)
        self.conv_b = cls(c, c, kk, padding=pp, bias=False)
        self.bn_b = _bn(dim, c)

    def forward(self, x):
        out = F.relu(self.bn_a(self.conv_a(x)))
        out = self.bn_b(self.conv_b(out))
        return F.relu(out + x)


class ResStack(nn.Module):
    """Residual stack: 1x1 conv, two residual units, max-pool over the length axis."""

    def __init__(self, dim: int, l: dict[str, Any]):
        super().__init__()
        self.proj = _conv(dim, l["in"], l["out"], 1, 1, 0)
        self.bn = _bn(dim, l["out"])
        self.unit1 = ResidualUnit(dim, l["out"], l["k"])
        self.unit2 = ResidualUnit(dim, l["out"], l["k"])
        p = l["pool"]
        self.pool = nn.MaxPool1d(p) if dim == 1 else nn.MaxPool2d((1, p))

    def forward(self, x):
        x = self.bn(self.proj(x))
        return self.pool(self.unit2(self.unit1(x)))


class LinearUnit(nn.Module):
    def __init__(self, l: dict[str, Any]):
        super().__init__()
        self.fc = nn.Linear(l["in"], l["out"])
        self.bn = nn.BatchNorm1d(l["out"]) if l["bn"] else nn.Identity()
        self.act = nn.ReLU(inplace=False) if l["relu"] else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.fc(x)))


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=tuple(range(2, x.dim())))


def _make_layer(dim: int, l: dict[str, Any], in_shape: tuple[int, ...]) -> nn.Module:
    t = l["type"]
    if t == "conv":
        return ConvUnit(dim, l)
    if t == "basic_block":
        return BasicBlock(dim, l)
    if t == "res_stack":
        return ResStack(dim, l)
    if t == "maxpool":
        if dim == 1:
            return nn.MaxPool1d(l["k"])
        kh = l["k"] if in_shape[1] >= l["k"] else 1
        return nn.MaxPool2d((kh, l["k"]))
    if t == "flatten":
        return nn.Flatten()
    if t == "gap":
        return GlobalAvgPool()
    if t == "linear":
        return LinearUnit(l)
    raise ValueError(t)  # unreachable after validate_spec


def init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_uniform_(m.weight, a=5 ** 0.5)
            if m.bias is not None:
                bound = 1 / max(m.in_features, 1) ** 0.5
                nn.init.uniform_(m.bias, -bound, bound)


class EdgeNet(nn.Module):
    """A network built from a spec: ``layers[i]`` implements ``spec['layers'][i]``."""

    def __init__(self, spec: dict[str, Any]):
        super().__init__()
        validate_spec(spec)
        self.spec = spec
        shapes = [tuple(spec["input"])] + infer_shapes(spec)
        self.layers = nn.ModuleList(
            _make_layer(spec["dim"], l, shapes[i]) for i, l in enumerate(spec["layers"])
        )
        init_weights(self)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.spec["input"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec["dim"] == 2 and x.dim() == 3:
            x = x.unsqueeze(1)  # (N, 2, L) frames -> (N, 1, 2, L) images
        for layer in self.layers:
            x = layer(x)
        return x

    def forward_features(self, x: torch.Tensor, indices: list[int] | None = None) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Forward and also return the outputs of the layers in ``indices``."""
        if self.spec["dim"] == 2 and x.dim() == 3:
            x = x.unsqueeze(1)
        wanted = set(indices or [])
        feats = {}
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in wanted:
                feats[i] = x
        return x, feats
