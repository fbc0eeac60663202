"""Your own network in: a checkpoint from ``FILE.py:NAME`` (``edgeprune import``) or from a live ``nn.Module``.

The recipes themselves (how a network written as code is described and rebuilt) live in
:mod:`edgeprune.models.own` and :mod:`edgeprune.models.modular`; this module writes and builds checkpoints from them.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from edgeprune.export.runtime.safeio import file_sha256

from .checkpoint import Checkpoint, load_checkpoint, make_meta, save_checkpoint
from .errors import EdgepruneError
from .models.modular import first_mismatch, with_stats
from .models.own import check_io, load_weights, recipe_for, with_layout
from .models.trace import discover_module_units
from .models.usercode import parse_kwargs


def import_model(ref, data, out, *, weights=None, kwargs=None, length: int | None = None,
                 classes: list[str] | None = None, input_layout: str | None = None) -> dict[str, Any]:
    """Write an edgeprune checkpoint for the user's network ``ref`` (``FILE.py:NAME``).

    The classes come from ``data`` (a dataset path or SignalDataset) or
    ``classes``; the frame length from ``length`` or the data. ``weights``
    is a plain state_dict file. The input layout ((N, 2, L), (N, 1, 2, L) or
    (N, L, 2)) is the first the model runs on, or ``input_layout``; it is
    recorded in the checkpoint.
    """
    from .data.dataset import SignalDataset
    from .data.readers import load_dataset

    kw = parse_kwargs(kwargs)
    ds = None
    if data is not None:
        ds = data if isinstance(data, SignalDataset) else load_dataset(data)
        classes = list(ds.classes)
        length = int(length or ds.length)
    if not classes or length is None:
        raise EdgepruneError("import needs --data (or classes and --length) for the class names and frame length")
    if ds is not None and int(length) != ds.length:
        raise EdgepruneError(f"--length {length} differs from the data's frame length {ds.length}")
    import torch

    torch.manual_seed(0)
    recipe, model = recipe_for(ref, int(length), len(classes), kw)
    if weights is not None:
        load_weights(model, weights)
    found = check_io(model, int(length), len(classes), ref, input_layout)
    recipe = with_stats(with_layout(recipe, found["layout"], found["min_batch"]), model)
    if recipe["stats"]["units"] == 0:
        res = discover_module_units(model, (2, int(length)))
        if not res.units:
            raise EdgepruneError(f"{ref}: no weighted layer was traced; nothing to prune")
    meta = make_meta(recipe, classes, normalization=(ds.meta.get("normalization") if ds is not None else None) or "none",
                     lineage=[{"op": "import", "source": recipe["source"],
                               "weights": str(weights) if weights else None}])
    if ds is not None:
        if not isinstance(data, SignalDataset):
            meta["dataset"] = {"path": str(Path(data).resolve()), "sha256": file_sha256(data),
                               "classes": list(ds.classes), "length": ds.length}
    save_checkpoint(out, recipe, model.state_dict(), meta)
    res = {"checkpoint": str(out), "model": recipe["name"], "params": meta["params"], "macs": meta["macs"],
           "units": meta["units"], "source": recipe["source"], "input_layout": found["layout"]}
    notes = []
    if len(found["runs"]) > 1:
        notes.append(f"the model also runs on frames laid out {' and '.join(found['runs'][1:])}; {found['layout']} "
                     f"was recorded (pass --input-layout if it was trained on another)")
    if found["min_batch"] > 1:
        res["min_batch"] = found["min_batch"]
        notes.append(f"the model does not run on one frame but on {found['min_batch']}, and computes each frame on "
                     f"its own: min_batch {found['min_batch']} was recorded, and edgeprune pads smaller batches by "
                     f"repeating a frame")
    if notes:
        res["note"] = "; ".join(notes)
    return res


def as_checkpoint(obj, data=None, *, classes: list[str] | None = None, length: int | None = None, ref=None,
                  kwargs=None, what: str = "the model", input_layout: str | None = None):
    """A Checkpoint for ``obj``: a checkpoint path, a Checkpoint, or a live ``nn.Module``.

    For an ``nn.Module`` the classes and frame length come from ``data`` (a
    dataset path or SignalDataset) or are given; how to rebuild it is ``ref``
    (``FILE.py:NAME``) and ``kwargs``, or, by default, the module's own class
    in its source file built without arguments (checked: the rebuilt network
    must have the same weight names and shapes). The file is allowed for this
    process. The Checkpoint is in memory (no path) and holds the module's
    current weights.
    """
    from torch import nn

    if isinstance(obj, Checkpoint):
        return obj
    if isinstance(obj, (str, Path)):
        return load_checkpoint(obj)
    if not isinstance(obj, nn.Module):
        raise EdgepruneError(f"{what} must be a checkpoint path, a Checkpoint or an nn.Module, got {type(obj).__name__}")
    if data is not None:
        from .data.dataset import SignalDataset
        from .data.readers import load_dataset

        ds = data if isinstance(data, SignalDataset) else load_dataset(data)
        classes = classes or list(ds.classes)
        length = length or ds.length
    if not classes or not length:
        raise EdgepruneError(f"{what} is an nn.Module: give data (or classes and length) for its classes and frame length")
    if ref is None:
        cls = type(obj)
        try:
            file = inspect.getsourcefile(cls)
        except TypeError:
            file = None
        if not file or cls.__module__.startswith("torch.") or not file.endswith(".py"):
            raise EdgepruneError(f"{what} is a {cls.__name__} defined outside a .py file of yours; "
                                 f"pass ref='FILE.py:NAME' (and kwargs) saying how to build it")
        ref = f"{file}:{cls.__name__}"
    recipe, fresh = recipe_for(ref, int(length), len(classes), kwargs)
    bad = first_mismatch(fresh, obj.state_dict())
    if bad:
        raise EdgepruneError(f"{ref} built with kwargs {kwargs or {}} does not match {what} ({bad}); pass ref and kwargs")
    state = {k: v.detach().cpu().clone() for k, v in obj.state_dict().items()}
    fresh.load_state_dict(state)
    found = check_io(fresh, int(length), len(classes), ref, input_layout)
    recipe = with_stats(with_layout(recipe, found["layout"], found["min_batch"]), fresh)
    meta = make_meta(recipe, list(classes), lineage=[{"op": "import", "source": recipe["source"], "weights": "live module"}])
    return Checkpoint(recipe, state, meta, None, None)


def load_model_arg(obj, what: str, data=None):
    """A Checkpoint from a checkpoint path, a Checkpoint, or a live ``nn.Module`` (with ``data``)."""
    if isinstance(obj, Checkpoint):
        return obj
    if isinstance(obj, (str, Path)):
        return load_checkpoint(obj)
    from torch import nn

    if isinstance(obj, nn.Module) and data is not None:
        return as_checkpoint(obj, data, what=what)
    raise EdgepruneError(f"{what} must be a checkpoint path, a Checkpoint or an nn.Module, got {type(obj).__name__}")
