"""Prune a checkpoint file with any method and write the pruned checkpoint: the API behind ``edgeprune prune``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..checkpoint import Checkpoint, load_checkpoint, make_meta, save_checkpoint
from ..data.dataset import SignalDataset
from ..data.readers import load_dataset
from ..errors import EdgepruneError
from ..importing import as_checkpoint
from ..models.modular import network_stats
from ..training.finetune import finetune
from .latency_target import prune_to_latency
from .registry import get_method


def pruned_meta(ckpt, res) -> dict[str, Any]:
    """Checkpoint metadata for a pruning result: the parent's dataset/split, lineage extended."""
    before_macs = ckpt.meta.get("macs") or network_stats(ckpt.spec)["macs"]
    meta = make_meta(res.spec, ckpt.classes, normalization=ckpt.meta.get("normalization", "none"))
    for key in ("dataset", "split"):
        if key in ckpt.meta:
            meta[key] = ckpt.meta[key]
    lineage = dict(res.lineage)
    lineage.setdefault("op", "prune")
    lineage.setdefault("parent_sha256", ckpt.sha256())
    lineage.setdefault("macs_before", before_macs)
    lineage.setdefault("macs_after", meta["macs"])
    meta["lineage"] = list(ckpt.meta.get("lineage", [])) + [lineage]
    return meta


def prune_checkpoint(model, out, *, method: str = "layer", data=None, target_macs: float | None = None,
                     target_latency: float | None = None, target: str | None = None, latency_model=None,
                     seed: int = 0, finetune_epochs: int = 0, distill: bool = False, **options) -> dict[str, Any]:
    """Prune ``model`` (a checkpoint path, a Checkpoint, or an ``nn.Module`` with ``data``) with ``method`` and write ``out``.

    ``data`` is a dataset path or SignalDataset (needed by data-driven
    methods and for fine-tuning). ``target_latency`` (ms, with ``target``, a
    device profile) selects latency-targeted layer pruning. Returns a summary
    dict (before/after stats, kept units, fine-tuning and latency results).
    """
    out = Path(out)
    if out.is_dir():
        raise EdgepruneError(f"--out {out} is a folder; give a checkpoint file name")
    if finetune_epochs < 0:
        raise EdgepruneError("--finetune-epochs must be >= 0")
    if (finetune_epochs or distill) and data is None:
        raise EdgepruneError("fine-tuning needs --data")
    if distill and not finetune_epochs:
        raise EdgepruneError("--distill needs --finetune-epochs > 0")
    if target_latency is not None:
        if method != "layer":
            raise EdgepruneError("--target-latency works with --method layer")
        if target is None:
            raise EdgepruneError("--target-latency needs --target (a device profile, see `edgeprune targets`)")
        if target_macs is not None:
            raise EdgepruneError("give either --target-macs or --target-latency, not both")
    ds = data if (data is None or isinstance(data, SignalDataset)) else load_dataset(data)
    if isinstance(model, Checkpoint):
        ckpt = model
    elif isinstance(model, (str, Path)):
        ckpt = load_checkpoint(model)
    else:  # a live nn.Module: classes and length from the data

        ckpt = as_checkpoint(model, ds)
    if target_latency is not None:
        res = prune_to_latency(ckpt, ds, float(target_latency), target, latency_model=latency_model, seed=seed,
                               **options)
    else:
        res = get_method(method)(ckpt, ds, target_macs=target_macs, seed=seed, **options)
    before, after = network_stats(ckpt.spec), network_stats(res.spec)
    res.lineage.setdefault("method", method)
    meta = pruned_meta(ckpt, res)
    save_checkpoint(out, res.spec, res.state_dict, meta)
    doc = {"checkpoint": str(out), "method": method, "model_before": ckpt.spec["name"],
           "model_after": res.spec["name"], "before": before, "after": after,
           "macs_reduction": 1 - after["macs"] / before["macs"],
           "params_reduction": 1 - after["params"] / before["params"],
           "kept_units": res.lineage.get("kept_units"), "finetune": None,
           "latency": res.info.get("latency") if res.info else None,
           "notes": list((res.info or {}).get("notes") or [])}
    if res.info and ("width_changes" in res.info or "left_alone" in res.info):
        doc["channels"] = {"narrowed": res.info.get("width_changes", []), "left_alone": res.info.get("left_alone", {})}
    if finetune_epochs:
        doc["finetune"] = finetune(out, ds, finetune_epochs, out, seed=seed, distill_from=ckpt if distill else None)
    return doc
