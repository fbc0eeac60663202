"""Fine-tuning of a pruned checkpoint: the reference recipe, one function for every method.

Recipe (reference code): Adam lr 1e-3, StepLR(10, 0.8), batch 128, loss plus
``1e-4 * sum|theta|``. Unlike the reference, the epoch is selected on the
validation split, never the test split. Optional knowledge distillation from
the unpruned model (``distill_from``): ``(1 - alpha) * CE + alpha * T^2 * KL``.

The split is the parent checkpoint's own (fractions, seed and SNR filter
recorded in ``meta["dataset"]["split"]`` or ``meta["split"]``), else 6:2:2
with seed 0.
"""

from __future__ import annotations

from typing import Any

import torch

from ..checkpoint import load_checkpoint, make_meta, save_checkpoint
from ..data.split import resolve_split
from ..importing import load_model_arg as _load_ckpt
from ..errors import EdgepruneError
from .evaluate import evaluate
from .trainer import TrainConfig, fit, set_threads


def finetune(ckpt_path_or_Checkpoint, data, epochs: int, out, *, distill_from=None, distill_alpha: float = 0.5,
             temperature: float = 4.0, l1: float = 1e-4, lr: float = 1e-3, batch_size: int = 128, seed: int = 0,
             resume: bool = False, log_path=None, split=None, threads: int | None = None) -> dict[str, Any]:
    """Fine-tune a checkpoint and write the best-on-validation weights to ``out``.

    Returns val/test accuracy, the best epoch, MACs/params and the output path.
    The new checkpoint's lineage gets a ``finetune`` entry (parent sha256,
    epochs, l1, distillation teacher).
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise EdgepruneError(f"epochs must be a non-negative integer, got {epochs!r}")
    if not (0 <= l1 < float("inf") and 0 < lr <= 10) or batch_size < 1:  # NaN fails both comparisons
        raise EdgepruneError(f"l1 must be a finite number >= 0, lr in (0, 10] and batch_size >= 1 "
                             f"(got l1={l1}, lr={lr}, batch_size={batch_size})")
    if not 0 <= distill_alpha <= 1 or temperature <= 0:
        raise EdgepruneError("distill_alpha must lie in [0, 1] and temperature be > 0")
    set_threads(threads)
    ckpt = _load_ckpt(ckpt_path_or_Checkpoint, "the model", data)
    (train, val, test), split_info = resolve_split(ckpt, data, split)
    teacher = None
    teacher_rec = None
    if distill_from is not None:
        tck = _load_ckpt(distill_from, "the distillation teacher", data)
        if list(tck.classes) != list(ckpt.classes):
            raise EdgepruneError("the distillation teacher has other classes than the model")
        if tck.length != ckpt.length:
            raise EdgepruneError(f"the distillation teacher takes frames of {tck.length} samples, the model {ckpt.length}")
        teacher = tck.build()
        for p in teacher.parameters():
            p.requires_grad_(False)
        teacher_rec = {"model": tck.spec["name"], "sha256": tck.sha256(), "alpha": distill_alpha,
                       "temperature": temperature}
    model = ckpt.build()
    model.train()
    meta = make_meta(ckpt.spec, ckpt.classes, normalization=ckpt.meta.get("normalization", "none"))
    for key in ("dataset", "split"):
        if key in ckpt.meta:
            meta[key] = ckpt.meta[key]
    meta["lineage"] = list(ckpt.meta.get("lineage", [])) + [{
        "op": "finetune", "method": "finetune", "parent_sha256": ckpt.sha256(), "parent_model": ckpt.spec["name"],
        "epochs": epochs, "lr": lr, "l1": l1, "batch_size": batch_size, "seed": seed,
        "distill": teacher_rec, "split": split_info,
    }]
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, l1=l1, seed=seed, threads=threads,
                      distill_alpha=distill_alpha if teacher is not None else 0.0,
                      distill_temperature=temperature)
    torch.manual_seed(seed)
    metrics = fit(model, ckpt.spec, train, val, cfg, out, meta, resume=resume, log_path=log_path,
                  teacher=teacher, desc=f"finetune {ckpt.spec['name']}")
    result = {"checkpoint": str(out), "model": ckpt.spec["name"], "epochs": epochs,
              "best_epoch": metrics["best_epoch"], "val_acc": metrics["val_acc"], "test_acc": None,
              "macs": meta["macs"], "params": meta["params"], "distill": teacher_rec, "split": split_info}
    if len(test):
        result["test_acc"] = float(evaluate(model, test)["accuracy"])
        if out is not None:
            ck = load_checkpoint(out)
            ck.meta["metrics"]["test_acc"] = result["test_acc"]
            save_checkpoint(out, ck.spec, ck.state_dict, ck.meta)
    return result
