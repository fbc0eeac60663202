"""Checkpoints: spec (or module recipe) + state_dict + metadata, no pickled modules.

For networks written as module code (the user's own, the AMR-family zoo) the
``spec`` slot holds a *recipe* (``"kind": "module"``, see
:mod:`edgeprune.models.modular`): the code file, object, kwargs and sha256
(or the built-in zoo name), and the structural edits since. Loading never
imports code; building the model of a user's code needs the file allowed
(``--code`` / ``EDGEPRUNE_CODE``, :mod:`edgeprune.models.usercode`).

Saved with ``torch.save`` of plain containers and loaded with
``torch.load(weights_only=True)``, so a checkpoint from the internet cannot
run code. Writes are atomic.

    {"format": "edgeprune-checkpoint", "version": 1,
     "spec": {...}, "state_dict": {...},
     "meta": {"classes": [...], "input": {"layout": "NCL", "channels": 2, "length": L},
              "normalization": "l1", "params": int, "macs": int,
              "metrics": {...}, "lineage": [...], "created": iso time, ...},
     "train_state": {... optional, for --resume ...}}
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from .atomic import atomic_path
from .errors import EdgepruneError
from .models import build_model
from .models.modular import build_recipe, is_module_recipe, network_stats, recipe_from_spec, validate_model, with_stats
from .torchfile import load_torch_file

FORMAT = "edgeprune-checkpoint"
VERSION = 1


from edgeprune.export.runtime.safeio import file_sha256  # noqa: E402,F401  (re-exported: edgeprune.checkpoint.file_sha256)
from edgeprune.export.runtime.schema import parse_json


def make_meta(spec: dict[str, Any], classes: list[str], normalization: str = "l1", **extra) -> dict[str, Any]:
    stats = network_stats(spec)
    layout = spec.get("layout") or "NCL"   # a module recipe of a network taking (N, 1, 2, L) or (N, L, 2) says so
    meta = {
        "classes": list(classes),
        "input": {"layout": layout, "channels": 2, "length": int(spec["input"][-1]),
                  **({"min_batch": int(spec["min_batch"])} if spec.get("min_batch", 1) > 1 else {})},
        "normalization": normalization,
        "params": stats["params"],
        "macs": stats["macs"],
        "units": stats["units"],
        "weight_layers": stats["weight_layers"],
        "metrics": {},
        "lineage": [],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    meta.update(extra)
    return meta


def save_checkpoint(path: str | Path, spec: dict[str, Any], state_dict: dict, meta: dict[str, Any],
                    train_state: dict[str, Any] | None = None) -> None:
    if len(meta.get("classes", [])) != spec["num_classes"]:
        raise EdgepruneError(
            f"checkpoint metadata names {len(meta.get('classes', []))} classes but the model has {spec['num_classes']} outputs")
    obj = {
        "format": FORMAT,
        "version": VERSION,
        # JSON text round-trips exactly and is safe under weights_only
        "spec": json.dumps(spec),
        "meta": json.dumps(meta),
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
    }
    if train_state is not None:
        obj["train_state"] = train_state
    with atomic_path(path, suffix=".tmp") as tmp:
        torch_save(obj, tmp, path)


def torch_save(obj, tmp, path) -> None:
    """torch.save to ``tmp``; a failed write (no space, file too large) is one clear EdgepruneError."""
    import torch

    try:
        torch.save(obj, tmp)
    except RuntimeError as exc:  # torch reports I/O failures of its zip writer as RuntimeError
        first = (str(exc).strip().splitlines() or [""])[0]
        raise EdgepruneError(f"cannot write {path}: {first}") from exc


class Checkpoint:
    """A loaded checkpoint: ``spec``, ``state_dict``, ``meta`` (and ``train_state``)."""

    def __init__(self, spec, state_dict, meta, train_state=None, path=None):
        self.spec = spec
        self.state_dict = state_dict
        self.meta = meta
        self.train_state = train_state
        self.path = path

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def length(self) -> int:
        return int(self.spec["input"][-1])

    def build(self):
        """The model with its weights loaded, in eval mode."""
        if self.spec.get("kind") == "module":
            return build_recipe(self.spec, self.state_dict, where=f"checkpoint {self.path}")
        try:
            model = build_model(self.spec)
        except (RuntimeError, TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise EdgepruneError(f"checkpoint {self.path}: its spec does not build a model ({first})") from exc
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except (RuntimeError, TypeError, ValueError, KeyError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise EdgepruneError(f"checkpoint {self.path}: weights do not fit its spec ({first})") from exc
        return model.eval()

    def sha256(self) -> str | None:
        return file_sha256(self.path) if self.path else None


def load_checkpoint(path: str | Path) -> Checkpoint:
    import torch

    path = Path(path)
    if not path.exists():
        raise EdgepruneError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise EdgepruneError(f"checkpoint {path} is a folder, not a file")

    obj = load_torch_file(path, "checkpoint", "only edgeprune checkpoints are loaded, never pickled code")
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise EdgepruneError(f"{path} is not an edgeprune checkpoint")
    if obj.get("version") != VERSION:
        raise EdgepruneError(f"checkpoint {path} has format version {obj.get('version')!r}; this edgeprune reads {VERSION}")

    try:
        spec = parse_json(obj["spec"], f"checkpoint {path}: its model spec")
        meta = parse_json(obj["meta"], f"checkpoint {path}: its metadata")
        state = obj["state_dict"]
    except (KeyError, TypeError) as exc:
        raise EdgepruneError(f"checkpoint {path} is damaged: {exc}") from exc
    validate_model(spec)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EdgepruneError(f"checkpoint {path} is damaged: state_dict is not a dict of tensors")
    if not isinstance(meta, dict) or not isinstance(meta.get("classes"), list):
        raise EdgepruneError(f"checkpoint {path} is damaged: metadata lacks the class list")
    if len(meta["classes"]) != spec["num_classes"] or not all(isinstance(c, str) for c in meta["classes"]):
        raise EdgepruneError(f"checkpoint {path} is damaged: its metadata names {len(meta['classes'])} classes "
                             f"but the model has {spec['num_classes']} outputs")
    return Checkpoint(spec, state, meta, obj.get("train_state"), path)


def checkpoint_bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def describe(ckpt: Checkpoint) -> dict[str, Any]:
    """What ``edgeprune inspect`` shows."""
    layers = ckpt.spec.get("layers", [])
    return {
        "path": str(ckpt.path) if ckpt.path else None,
        "sha256": ckpt.sha256(),
        "model": ckpt.spec["name"],
        "family": ckpt.spec["family"],
        "dim": ckpt.spec["dim"],
        "input": ckpt.meta.get("input"),
        "normalization": ckpt.meta.get("normalization"),
        "classes": ckpt.classes,
        "params": ckpt.meta.get("params"),
        "macs": ckpt.meta.get("macs"),
        "units": ckpt.meta.get("units", network_stats(ckpt.spec)["units"]),
        "weight_layers": ckpt.meta.get("weight_layers"),
        "layers": [{k: v for k, v in l.items()} for l in layers],
        "source": ckpt.spec.get("source"),
        "edits": ckpt.spec.get("edits"),
        "metrics": ckpt.meta.get("metrics", {}),
        "lineage": ckpt.meta.get("lineage", []),
        "created": ckpt.meta.get("created"),
        "dataset": ckpt.meta.get("dataset"),
    }


def checkpoint_as_recipe(ckpt):
    """The same checkpoint (in memory) with its spec turned into a module recipe; weights unchanged."""
    if is_module_recipe(ckpt.spec):
        return ckpt
    recipe = recipe_from_spec(ckpt.spec)
    model = build_recipe(recipe, ckpt.state_dict)
    return Checkpoint(with_stats(recipe, model), ckpt.state_dict, dict(ckpt.meta), ckpt.train_state, ckpt.path)
