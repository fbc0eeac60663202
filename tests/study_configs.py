"""The tiny study config the study tests share: resnet20-1d on a few synthetic frames, one epoch each, one quick
ONNX Runtime round. ``tiny_study(section={key: value})`` overrides or adds keys section by section."""

from __future__ import annotations

import json

TINY = {
    "study": {"name": "tiny"},
    "data": {"synth": "rml2016.10a", "per_key": 6, "snrs": [10, 18], "length": 64},
    "model": {"name": "resnet20-1d"},
    "train": {"epochs": 1},
    "prune": {"methods": ["layer"], "targets": [0.6]},
    "finetune": {"epochs": 1},
    "export": {"precisions": ["fp32"]},
    "profile": {"backends": ["onnxruntime"], "batch": [1], "iters": 2, "warmup": 1, "min_time_ms": 1, "rounds": 1},
}


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return json.dumps(v) if isinstance(v, str) else repr(v)


def tiny_study(**sections: dict) -> str:
    """The TOML text of TINY with ``sections`` merged in (a value of None drops that key)."""
    lines = []
    for name in list(TINY) + [s for s in sections if s not in TINY]:
        merged = {**TINY.get(name, {}), **sections.get(name, {})}
        lines.append(f"[{name}]")
        lines += [f"{k} = {_value(v)}" for k, v in merged.items() if v is not None]
    return "\n".join(lines) + "\n"
