"""Evaluation: overall accuracy, accuracy per SNR, confusion matrix, per-class recall.

``evaluate(model_or_ckpt, ds)`` is the one function behind ``edgeprune eval``
and the study reports. ``eval_data(ckpt, path, split)`` reproduces the
frames a checkpoint should be scored on: its own test split when the file is
the one it was trained on (same sha256), all of another file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import Checkpoint, file_sha256, load_checkpoint
from ..data.dataset import SignalDataset, align_classes, check_length
from ..data.readers import load_dataset
from ..data.snr import auto_bin_width, snr_groups, snr_value
from ..data.split import DEFAULT_FRACTIONS, filter_snr, split_dataset
from ..errors import EdgepruneError

SPLITS = ("train", "val", "test", "all")


def _as_model(model_or_ckpt):
    """(module, classes or None, length or None, checkpoint or None)."""
    if isinstance(model_or_ckpt, (str, Path)):
        model_or_ckpt = load_checkpoint(model_or_ckpt)
    if isinstance(model_or_ckpt, Checkpoint):
        return model_or_ckpt.build(), model_or_ckpt.classes, model_or_ckpt.length, model_or_ckpt
    return model_or_ckpt, None, None, None


def evaluate(model_or_ckpt, ds: SignalDataset, batch_size: int = 512, device: str = "cpu") -> dict[str, Any]:
    """Score ``ds`` with a model, a :class:`Checkpoint` or a checkpoint path.

    With a checkpoint, the data's classes are matched to the checkpoint's by
    name and the frame length is checked. Returns ``frames``, ``accuracy``,
    ``classes``, ``per_snr`` (a list of ``{snr, frames, correct, accuracy}``
    in SNR order), ``confusion`` (counts, rows = true class, columns =
    predicted) and ``per_class`` (``{name, frames, recall}``).
    """
    from .trainer import predict_logits

    model, classes, length, _ = _as_model(model_or_ckpt)
    if classes is not None:
        ds = align_classes(ds, classes)
        check_length(ds, length)
    if len(ds) == 0:
        raise EdgepruneError("there are no frames to evaluate")
    model.to(device)
    logits = predict_logits(model, ds.x, batch_size, device)
    n_cls = len(ds.classes)
    if logits.shape[1] != n_cls:
        raise EdgepruneError(f"the model has {logits.shape[1]} outputs but the dataset has {n_cls} classes")
    finite = np.isfinite(np.asarray(logits)).all(axis=1)
    if not finite.all():
        raise EdgepruneError(f"the model's scores are NaN or Inf for {int((~finite).sum())} frame(s): their samples are "
                             f"too large for it (values near the float32 limit? normalise the data)")
    pred = logits.argmax(1)
    correct = pred == ds.y
    conf = np.zeros((n_cls, n_cls), np.int64)
    np.add.at(conf, (ds.y, pred), 1)

    per_snr = []
    groups = snr_groups(ds.snr)  # continuous SNRs: one row per 2 dB bin
    width = auto_bin_width(ds.snr) or ds.meta.get("snr_bin_db")
    for level in np.unique(groups):
        m = groups == level
        row = {"snr": snr_value(level), "frames": int(m.sum()), "correct": int(correct[m].sum()),
               "accuracy": float(correct[m].mean())}
        if width:
            row["bin_db"] = float(width)
        per_snr.append(row)
    rows = conf.sum(1)
    per_class = [{"name": c, "frames": int(rows[i]),
                  "recall": float(conf[i, i] / rows[i]) if rows[i] else None}
                 for i, c in enumerate(ds.classes)]
    return {
        "frames": int(len(ds)),
        "correct": int(correct.sum()),
        "accuracy": float(correct.mean()),
        "classes": list(ds.classes),
        "per_snr": per_snr,
        "confusion": conf.tolist(),
        "per_class": per_class,
    }


def eval_data(ckpt: Checkpoint, path: str | Path, split: str | None = None,
              min_snr: float | None = None, max_snr: float | None = None) -> tuple[SignalDataset, dict[str, Any]]:
    """The frames of ``path`` to score ``ckpt`` on, and a description of the choice.

    On the file the checkpoint was trained on (same sha256), the recorded SNR
    filter and split (fractions + seed) are reproduced and ``split`` defaults
    to ``test``. On another file ``split`` defaults to ``all``; a named split
    uses the checkpoint's recorded fractions and seed. ``min_snr``/``max_snr``
    add an SNR filter on top.
    """
    if split is not None and split not in SPLITS:
        raise EdgepruneError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    path = Path(path)
    ds = load_dataset(path)
    rec = ckpt.meta.get("dataset") or {}
    sha = file_sha256(path)
    same = bool(rec.get("sha256")) and rec.get("sha256") == sha
    align_classes(ds.subset(np.zeros(0, np.int64)), ckpt.classes)  # fail early on a class mismatch
    check_length(ds, ckpt.length)
    chosen = split or ("test" if same else "all")
    sp = rec.get("split") or {}
    fractions = tuple(sp.get("fractions") or DEFAULT_FRACTIONS)
    seed = int(sp.get("seed", 0))
    snr_rec = rec.get("snr_filter") or {}
    if same and (snr_rec.get("min") is not None or snr_rec.get("max") is not None):
        ds = filter_snr(ds, snr_rec.get("min"), snr_rec.get("max"))
    if chosen != "all":
        ds = split_dataset(ds, fractions, seed)[SPLITS.index(chosen)]
    if min_snr is not None or max_snr is not None:
        ds = filter_snr(ds, min_snr, max_snr)
    if len(ds) == 0:
        raise EdgepruneError(f"the {chosen} split of {path} is empty")
    ds = align_classes(ds, ckpt.classes)  # after the split, which depends on the file's own label order
    info = {"path": str(path), "sha256": sha, "same_as_training": same, "split": chosen,
            "fractions": list(fractions) if chosen != "all" else None,
            "split_seed": seed if chosen != "all" else None,
            "snr_filter": ({"min": snr_rec.get("min"), "max": snr_rec.get("max")} if same and snr_rec else None),
            "extra_snr_filter": ({"min": min_snr, "max": max_snr} if (min_snr is not None or max_snr is not None) else None)}
    return ds, info
