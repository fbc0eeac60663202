"""The layer-pruning plan: the analysis of a trained checkpoint, and the choice of units to keep.

:func:`analyze` runs representations -> similarity -> Fisher segmentation -> importance -> budget on the
network's traced units (:func:`edgeprune.pruning.modular.module_analysis`; with ``reference`` the reference's
own procedure, :mod:`edgeprune.pruning.reference`) and returns the plan (a JSON-able dict) that
``edgeprune analyze`` writes and ``edgeprune prune --plan`` reads. The plan file's format, reading and
checking are in :mod:`edgeprune.pruning.plan_file`.
"""

from __future__ import annotations

from typing import Any

from ..checkpoint import checkpoint_as_recipe
from ..errors import EdgepruneError
from ..importing import load_model_arg
from .modular import module_analysis
from .plan_file import load_plan, save_plan  # noqa: F401  (the plan's file, beside the analysis that makes it)
from .reference import analyze_reference


def analyze(ckpt, data=None, *, similarity: str = "cka-unbiased", segments="auto", max_segments: int | None = None,
            importance: str | None = None, batches: int = 5, batch_size: int = 128, seed: int = 0,
            keep=None, keep_units=None, target_macs=None, transition: str = "keep", search: str = "per-unit",
            split=None, max_frames: int = 1024, reference: bool = False) -> dict[str, Any]:
    """Analyse a checkpoint and return the plan.

    ``ckpt``: a Checkpoint or path; ``data``: a SignalDataset or path (the
    checkpoint's recorded split is reproduced). Similarity uses training
    frames; data-driven importance criteria use up to ``max_frames`` frames of
    the validation split (the training split when it is empty).
    ``reference=True``: the reference code's procedure
    (:mod:`edgeprune.pruning.reference`); it takes ``keep`` (counts per block)
    as its only budget. Every network, a zoo spec model included, is analysed on its traced units.
    """
    if reference:
        extra = [n for n, v in (("--keep-units", keep_units), ("--target-macs", target_macs),
                                ("--importance", importance), ("--similarity", None if similarity == "cka-unbiased"
                                                                 else similarity)) if v is not None]
        if extra:
            raise EdgepruneError(f"--reference runs the reference's own procedure and budget (--keep); "
                                 f"it does not take {', '.join(extra)}")
        return analyze_reference(ckpt, data, keep=keep, segments=segments, max_segments=max_segments, seed=seed,
                                 split=split)

    ck = checkpoint_as_recipe(load_model_arg(ckpt, "the model", data))
    return module_analysis(ck, data, split=split, similarity=similarity, segments=segments,
                           max_segments=max_segments, batches=batches, batch_size=batch_size, seed=seed,
                           transition=transition, importance=importance, keep=keep, keep_units=keep_units,
                           target_macs=target_macs, max_frames=max_frames, search=search)
