"""The layout a network takes its I/Q frames in: (N, 2, L), (N, 1, 2, L) or (N, L, 2).

Inside edgeprune frames are always (N, 2, L) (rows I and Q). A network written
for another layout gets a forward pre-hook (:class:`FramesAs`) that hands it the
frames its way, so training, analysis, pruning and MAC counting feed it as any
other network; the layout is recorded in the recipe (``"layout"``), the
checkpoint metadata, the ONNX metadata and the bundle manifest. The exported
ONNX graph takes the network's own layout (:func:`native` takes the hook off),
and the device runtime converts frames to it (``edgeprune.export.runtime.frames.to_layout``).
"""

from __future__ import annotations

from contextlib import contextmanager

from edgeprune.export.runtime.frames import LAYOUTS, check_layout, layout_shape

from ..errors import EdgepruneError

TRY_ORDER = ("NCL", "N1CL", "NLC")   # the order import tries them in


class FramesAs:
    """Forward pre-hook: (N, 2, L) frames -> ``layout``. Input already in that layout is passed as it is."""

    def __init__(self, layout: str):
        self.layout = check_layout(layout)

    def __call__(self, module, args):
        import torch

        if not args or not isinstance(args[0], torch.Tensor) or args[0].dim() != 3 or args[0].shape[1] != 2:
            return None
        x = args[0]
        x = x.unsqueeze(1) if self.layout == "N1CL" else x.transpose(1, 2).contiguous()
        return (x,) + tuple(args[1:])


def attach(model, layout: str | None):
    """``model`` fed (N, 2, L) frames in ``layout`` (the hook is added once; NCL needs none)."""
    layout = check_layout(layout)
    if layout != "NCL" and layout_of(model) != layout:
        detach(model)
        model.register_forward_pre_hook(FramesAs(layout))
    return model


def layout_of(model) -> str:
    """The layout ``model`` was attached to (NCL when none)."""
    for hook in getattr(model, "_forward_pre_hooks", {}).values():
        if isinstance(hook, FramesAs):
            return hook.layout
    return "NCL"


def detach(model) -> dict:
    """Take the layout hooks off ``model``; returns them by id (for :func:`native` to put back)."""
    hooks = getattr(model, "_forward_pre_hooks", {})
    taken = {k: h for k, h in hooks.items() if isinstance(h, FramesAs)}
    for k in taken:
        del hooks[k]
    return taken


@contextmanager
def native(model):
    """``model`` without its layout hook (it then takes its own layout), and the layout; the hook is put back."""
    layout = layout_of(model)
    taken = detach(model)
    try:
        yield layout
    finally:
        model._forward_pre_hooks.update(taken)


def describe_layout(layout: str) -> str:
    return f"{check_layout(layout)} {LAYOUTS[check_layout(layout)]}"


def find_layout(model, length: int, num_classes: int, what: str, layout: str | None = None) -> dict:
    """Try ``model`` on zero frames in each layout (or only ``layout``) and return {"layout", "runs"}: the first
    layout whose forward gives (N, num_classes) logits, and every layout that does. One-line error when none."""
    import torch

    tried = [check_layout(layout)] if layout else list(TRY_ORDER)
    runs, failures = [], []
    model.eval()
    for name in tried:
        x = torch.zeros(layout_shape(name, 3, int(length)))
        try:
            with torch.no_grad():
                y = model(x)
        except Exception as exc:  # noqa: BLE001 - the user's forward
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            failures.append(f"{LAYOUTS[name]}: {type(exc).__name__}: {first[:160]}")
            continue
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != (3, int(num_classes)):
            shape = list(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            failures.append(f"{LAYOUTS[name]}: returns {shape} for 3 frames, not [3, {num_classes}] logits")
            continue
        runs.append(name)
    if not runs:
        which = f"in the layout {describe_layout(tried[0])}" if layout else "in any layout"
        raise EdgepruneError(f"{what} does not run on I/Q frames of {length} samples {which} "
                             f"({'; '.join(failures)}); pass --kwargs or --length to build it for this input"
                             + ("" if layout else ", or --input-layout"))
    _check_one_frame(model, runs[0], length, num_classes, what)
    return {"layout": runs[0], "runs": runs}


def _check_one_frame(model, layout: str, length: int, num_classes: int, what: str) -> None:
    """MACs, export parity and latency are taken on single frames: the forward must run at batch 1 too."""
    import torch

    try:
        with torch.no_grad():
            y = model(torch.zeros(layout_shape(layout, 1, int(length))))
        bad = None if isinstance(y, torch.Tensor) and tuple(y.shape) == (1, int(num_classes)) else (
            f"returns {list(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}, not [1, {num_classes}]")
    except Exception as exc:  # noqa: BLE001 - the user's forward
        bad = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
    if bad:
        raise EdgepruneError(f"{what} runs on batches of frames but not on a single frame ({describe_layout(layout)} with "
                             f"N=1: {bad}); edgeprune counts MACs, exports and times models at batch 1 (a squeeze() "
                             f"that also drops the batch axis? squeeze only the axis meant, e.g. x.squeeze(2))")
