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
    """``model`` without its layout hook (it then takes its own layout) and without its batch padding
    (:class:`PadBatch`), and the layout; the hooks are put back."""
    layout = layout_of(model)
    taken = detach(model)
    pads = _detach_pad(model)
    try:
        yield layout
    finally:
        model._forward_pre_hooks.update(taken)
        model._forward_pre_hooks.update(pads[0])
        model._forward_hooks.update(pads[1])


class PadBatch:
    """A network that does not run on fewer than ``min_batch`` frames (a ``squeeze()`` that also drops the batch
    axis of one frame) but computes each frame on its own: a smaller batch is padded by repeating its last frame,
    and the padding's outputs are dropped. ``pre`` is a forward pre-hook, ``post`` a forward hook."""

    def __init__(self, min_batch: int):
        self.min_batch = int(min_batch)
        self.n = None   # the real batch of the call under way, when it was padded

    def pre(self, module, args):
        import torch

        self.n = None
        if not args or not isinstance(args[0], torch.Tensor) or args[0].dim() == 0:
            return None
        x = args[0]
        n = int(x.shape[0])
        if n == 0 or n >= self.min_batch:
            return None
        self.n = n
        pad = x[-1:].expand((self.min_batch - n,) + tuple(x.shape[1:]))
        return (torch.cat([x, pad]),) + tuple(args[1:])

    def post(self, module, args, out):
        n, self.n = self.n, None
        return out[:n] if n is not None and hasattr(out, "shape") else None


def _pad_hooks(model) -> tuple[dict, dict]:
    pre = {k: h for k, h in getattr(model, "_forward_pre_hooks", {}).items()
           if isinstance(getattr(h, "__self__", None), PadBatch)}
    post = {k: h for k, h in getattr(model, "_forward_hooks", {}).items()
            if isinstance(getattr(h, "__self__", None), PadBatch)}
    return pre, post


def _detach_pad(model) -> tuple[dict, dict]:
    pre, post = _pad_hooks(model)
    for k in pre:
        del model._forward_pre_hooks[k]
    for k in post:
        del model._forward_hooks[k]
    return pre, post


def min_batch_of(model) -> int:
    """The fewest frames ``model``'s own forward runs on (1 unless :func:`pad_batches` attached padding)."""
    pre, _ = _pad_hooks(model)
    return max([h.__self__.min_batch for h in pre.values()] + [1])


def pad_batches(model, min_batch: int | None):
    """``model`` padding batches smaller than ``min_batch`` (see :class:`PadBatch`; nothing when it is 1 or None)."""
    _detach_pad(model)
    if min_batch and int(min_batch) > 1:
        pad = PadBatch(int(min_batch))
        model.register_forward_pre_hook(pad.pre)
        model.register_forward_hook(pad.post)
    return model


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
    return {"layout": runs[0], "runs": runs,
            "min_batch": find_min_batch(model, runs[0], length, num_classes, what)}


MAX_MIN_BATCH = 4   # the most frames a network may need to run at all


def find_min_batch(model, layout: str, length: int, num_classes: int, what: str) -> int:
    """1 when ``model`` runs on a single frame. Else the fewest frames (2 to MAX_MIN_BATCH) it runs on, provided
    it computes each frame on its own (a frame's logits do not change with the frames batched with it): edgeprune
    then pads smaller batches (:func:`pad_batches`). One-line error otherwise."""
    bad = _batch_problem(model, layout, length, num_classes, 1)
    if bad is None:
        return 1
    for b in range(2, MAX_MIN_BATCH + 1):
        if _batch_problem(model, layout, length, num_classes, b) is None:
            mixed = _mixes_frames(model, layout, length, b)
            if mixed:
                raise EdgepruneError(
                    f"{what} does not run on a single frame ({describe_layout(layout)} with N=1: {bad}) and runs on "
                    f"{b} but not frame by frame ({mixed}), so padding a batch would change its logits; edgeprune "
                    f"counts MACs, exports and times models per frame (squeeze only the axis meant, e.g. "
                    f"x.squeeze(2), and normalise each frame on its own)")
            return b
    raise EdgepruneError(f"{what} runs on batches of frames but not on a single frame ({describe_layout(layout)} with "
                         f"N=1: {bad}); edgeprune counts MACs, exports and times models at batch 1 (a squeeze() "
                         f"that also drops the batch axis? squeeze only the axis meant, e.g. x.squeeze(2))")


def _batch_problem(model, layout: str, length: int, num_classes: int, batch: int) -> str | None:
    """None when ``model`` maps ``batch`` zero frames to (batch, num_classes) logits, else what goes wrong."""
    import torch

    try:
        with torch.no_grad():
            y = model(torch.zeros(layout_shape(layout, batch, int(length))))
        return None if isinstance(y, torch.Tensor) and tuple(y.shape) == (batch, int(num_classes)) else (
            f"returns {list(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}, not [{batch}, {num_classes}]")
    except Exception as exc:  # noqa: BLE001 - the user's forward
        return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"


def _mixes_frames(model, layout: str, length: int, batch: int) -> str | None:
    """None when each of ``batch`` seeded random frames gets the same logits with different companions (the model
    in eval mode computes frames independently), else which frame changed and by how much."""
    import torch

    g = torch.Generator().manual_seed(0)
    a = torch.randn(layout_shape(layout, batch, int(length)), generator=g)
    b = torch.randn(layout_shape(layout, batch, int(length)), generator=g)
    with torch.no_grad():
        ya = model(a)
        yb = model(torch.cat([a[:1], b[1:]]))   # frame 0 with other companions
        yc = model(torch.cat([b[:1], a[1:]]))   # frames 1.. with another frame 0
    scale = float(ya.abs().max()) + 1e-6
    for name, got, want in (("frame 0", yb[:1], ya[:1]), ("frames 1..", yc[1:], ya[1:])):
        diff = float((got - want).abs().max())
        if not diff <= 1e-4 * scale + 1e-5:
            return f"the logits of {name} moved by {diff:.3g} when the other frames changed"
    return None
