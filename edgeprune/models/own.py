"""One way in for a network written as ``nn.Module`` code: ``edgeprune import`` and ``train --model FILE.py:NAME``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import EdgepruneError
from ..torchfile import load_torch_file
from .modular import first_mismatch, make_recipe
from .usercode import allow, instantiate, is_code_ref, parse_kwargs, parse_ref, read_code


def is_module_model(name) -> bool:
    """True for ``FILE.py:NAME`` references and the AMR-family zoo names."""
    from .amr import AMR_ZOO

    return is_code_ref(name) or name in AMR_ZOO


def recipe_for(name: str, length: int, num_classes: int, kwargs: dict[str, Any] | None = None):
    """``(recipe, model)`` for an AMR zoo name or a ``FILE.py:NAME`` reference (which this allows)."""
    from .amr import AMR_ZOO, build_amr

    kwargs = parse_kwargs(kwargs)
    if name in AMR_ZOO:
        kwargs = {"num_classes": int(num_classes), "length": int(length), **kwargs}
        model = build_amr(name, **kwargs)
        recipe = make_recipe({"zoo": name, "kwargs": kwargs}, name, "amr", length, num_classes)
        return recipe, model
    path, obj = parse_ref(name)
    allow(path)
    code, sha = read_code(path)  # read once: the recorded sha256 is that of the bytes that ran
    model = instantiate(path, obj, kwargs, code)
    recipe = make_recipe({"file": str(path), "object": obj, "kwargs": kwargs, "sha256": sha},
                         obj, "user", length, num_classes)
    return recipe, model


def check_io(model, length: int, num_classes: int, what: str, layout: str | None = None) -> dict:
    """The model must map I/Q frames to (N, num_classes) logits in one of the layouts (N, 2, L), (N, 1, 2, L),
    (N, L, 2) (only ``layout`` when given). The first that runs is attached to ``model`` (it then takes (N, 2, L)
    frames like any edgeprune network), and so is the padding of a network that needs a few frames to run
    (``min_batch``); returns {"layout", "runs", "min_batch"} (:func:`edgeprune.models.layout.find_layout`)."""
    from .layout import attach, find_layout, pad_batches

    found = find_layout(model, length, num_classes, what, layout)
    attach(model, found["layout"])
    pad_batches(model, found["min_batch"])
    return found


def with_layout(recipe: dict[str, Any], layout: str, min_batch: int = 1) -> dict[str, Any]:
    """``recipe`` recording the input layout (NCL, the default, is not written) and the fewest frames the network
    runs on (1, the default, is not written)."""
    out = dict(recipe)
    out.pop("layout", None)
    out.pop("min_batch", None)
    if layout and layout != "NCL":
        out["layout"] = layout
    if min_batch and int(min_batch) > 1:
        out["min_batch"] = int(min_batch)
    return out


def load_weights(model, path) -> None:
    """Load a plain state_dict file (weights_only) into ``model``; names the first mismatched key."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise EdgepruneError(f"weights {path} do not exist")

    state = load_torch_file(path, "weights", "save model.state_dict(), not the model")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EdgepruneError(f"weights {path} are not a state_dict (a dict of tensors)")
    bad = first_mismatch(model, state)
    if bad:
        raise EdgepruneError(f"weights {path} do not fit the model: {bad}")
    model.load_state_dict(state, strict=True)
