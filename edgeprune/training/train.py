"""Training from a dataset file: the Python API behind ``edgeprune train``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..atomic import write_json
from ..checkpoint import file_sha256, load_checkpoint, make_meta, save_checkpoint
from ..data.readers import load_dataset
from ..data.split import filter_snr, split_dataset
from ..errors import EdgepruneError
from ..models import build_model, make_spec, zoo_names
from ..models.amr import amr_names
from ..models.modular import with_stats
from ..models.own import check_io, is_module_model, recipe_for, with_layout
from ..training.distributed import distributed_session, state_dict_digest
from ..training.evaluate import evaluate
from ..training.trainer import TrainConfig, fit, set_threads
from . import DEBUG_ENV


@dataclass
class _Options:
    data: Any
    model: str
    out: Any
    epochs: int
    batch_size: int
    lr: float
    step_size: int
    gamma: float
    weight_decay: float
    seed: int
    split: Any
    split_seed: int
    min_snr: float | None
    max_snr: float | None
    threads: int | None
    device: str
    resume: bool
    log: Any
    ddp_debug_dir: Any
    kwargs: Any = None
    patience: int = 0


def parse_fractions(text) -> tuple[float, float, float]:
    try:
        if isinstance(text, (tuple, list)):
            text = ",".join(str(v) for v in text)
        parts = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or any(v < 0 for v in parts) or abs(sum(parts) - 1.0) > 1e-6:
        raise EdgepruneError(f"--split must be three non-negative fractions summing to 1, like 0.6,0.2,0.2 (got {text!r})")
    if parts[0] == 0 or parts[1] == 0:
        raise EdgepruneError("--split needs non-zero train and validation fractions")
    return parts  # type: ignore[return-value]


def _check_train_args(opts) -> None:
    if opts.epochs < 0:
        raise EdgepruneError("--epochs must be >= 0")
    if opts.batch_size < 1:
        raise EdgepruneError("--batch-size must be >= 1")
    if not 0 < opts.lr <= 10:  # false for NaN too
        raise EdgepruneError(f"--lr must be in (0, 10], got {opts.lr}")
    if opts.step_size < 1:
        raise EdgepruneError("--step-size must be >= 1")
    if not opts.gamma > 0:
        raise EdgepruneError("--gamma must be > 0")
    if opts.weight_decay < 0:
        raise EdgepruneError("--weight-decay must be >= 0")
    if opts.threads is not None and opts.threads < 1:
        raise EdgepruneError("--threads must be >= 1")
    if isinstance(opts.patience, bool) or not isinstance(opts.patience, int) or opts.patience < 0:
        raise EdgepruneError(f"--patience must be a positive number of epochs, got {opts.patience!r}")
    if opts.min_snr is not None and opts.max_snr is not None and opts.min_snr > opts.max_snr:
        raise EdgepruneError("--min-snr is above --max-snr")
    if Path(opts.out).is_dir():
        raise EdgepruneError(f"--out {opts.out} is a folder; give a checkpoint file name")


def _scalar_items(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool)) or v is None}


def train_model(data, model, out, *, epochs: int, batch_size: int = 128, lr: float = 1e-3, step_size: int = 10,
                gamma: float = 0.8, weight_decay: float = 0.0, seed: int = 0, split="0.6,0.2,0.2",
                split_seed: int = 0, min_snr: float | None = None, max_snr: float | None = None,
                threads: int | None = None, device: str = "auto", resume: bool = False, log=None,
                ddp_debug_dir=None, kwargs=None, patience: int = 0,
                notify: Callable[[str], None] | None = None) -> dict:
    """Train ``model`` (a zoo name, an AMR-family zoo name, or the user's ``FILE.py:NAME`` with ``kwargs``) on the dataset file ``data`` and write the checkpoint ``out``.

    The split is stratified per (class, SNR) with ``split`` fractions and
    ``split_seed``; the epoch with the best validation accuracy is kept; the
    test accuracy is stored in the checkpoint's metrics. Under torchrun it
    trains data-parallel and only rank 0 writes. ``log`` is the JSON-lines
    epoch log's path; ``notify`` receives one-line notes as they happen (rank
    0 only; e.g. that ``resume`` found nothing to resume). Returns the result
    as data (``{"rank": r}`` alone on the other ranks); formatting it is the
    caller's job (``edgeprune train`` prints :func:`edgeprune.cli.cmd_train.train_text`).
    """
    opts = _Options(data=data, model=model, out=out, epochs=epochs, batch_size=batch_size, lr=lr,
                    step_size=step_size, gamma=gamma, weight_decay=weight_decay, seed=seed, split=split,
                    split_seed=split_seed, min_snr=min_snr, max_snr=max_snr, threads=threads, device=device,
                    resume=resume, log=log, ddp_debug_dir=ddp_debug_dir, kwargs=kwargs,
                    patience=patience)
    _check_train_args(opts)
    fractions = parse_fractions(opts.split)
    own = _check_model_name(opts.model)
    data_path = Path(opts.data)
    if not data_path.exists():
        raise EdgepruneError(f"dataset {data_path} does not exist")

    set_threads(opts.threads)
    ds, total_frames, (train, val, test) = _load_splits(data_path, opts, fractions)
    spec = _model_spec(opts, ds, own)
    out = Path(opts.out)
    log_path = Path(opts.log) if opts.log else out.with_name(out.name + ".log.jsonl")
    state_file = out.with_name(out.name + ".state")
    debug_dir = opts.ddp_debug_dir or os.environ.get(DEBUG_ENV)
    frames = {"train": len(train), "val": len(val), "test": len(test)}

    with distributed_session(opts.device) as ctx:
        resuming = opts.resume and state_file.exists()
        if ctx.is_main:
            if opts.resume and not resuming and notify is not None:
                notify(f"nothing to resume ({state_file} does not exist); training from scratch")
            if not resuming:
                log_path.unlink(missing_ok=True)
            log_path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(opts.seed)
        model = build_model(spec)
        if own:
            model.train()
        dataset_rec = _dataset_record(data_path, ds, total_frames, fractions, opts, frames)
        cfg = TrainConfig(epochs=opts.epochs, batch_size=opts.batch_size, lr=opts.lr, step_size=opts.step_size,
                          gamma=opts.gamma, weight_decay=opts.weight_decay, seed=opts.seed, threads=opts.threads,
                          device=ctx.device, patience=opts.patience)
        meta = make_meta(spec, ds.classes, normalization=ds.meta.get("normalization") or "none",
                         dataset=dataset_rec,
                         lineage=[{"op": "train", "model": opts.model, "dataset_sha256": dataset_rec["sha256"],
                                   "seed": opts.seed, "epochs": opts.epochs, "processes": ctx.world_size}])
        metrics = fit(model, spec, train, val, cfg, out, meta, resume=opts.resume, log_path=log_path,
                      desc=f"train {opts.model}")
        if debug_dir:
            _write_rank_digest(Path(debug_dir), ctx, model, metrics)
        if not ctx.is_main:
            return {"rank": ctx.rank}
        result = {"checkpoint": str(out), "model": opts.model, "params": meta["params"], "macs": meta["macs"],
                  "epochs": opts.epochs, "best_epoch": metrics["best_epoch"], "val_acc": metrics["val_acc"],
                  "processes": ctx.world_size, "device": ctx.device, "log": str(log_path), "frames": frames,
                  "resumed": bool(resuming)}
        if len(test):
            result["test_acc"] = _record_test_accuracy(model, test, out, ctx.device)
        last = metrics["history"][-1] if metrics["history"] else {}
        result["examples_per_s"] = last.get("examples_per_s")
    return result


def _load_splits(data_path: Path, opts: _Options, fractions):
    """The dataset (SNR-filtered), its frame count before the filter, and its (train, val, test) split."""
    ds = load_dataset(data_path)
    total_frames = len(ds)
    if opts.min_snr is not None or opts.max_snr is not None:
        ds = filter_snr(ds, opts.min_snr, opts.max_snr)
    return ds, total_frames, split_dataset(ds, fractions, opts.split_seed)


def _write_rank_digest(debug_dir: Path, ctx, model, metrics: dict) -> None:
    """``rank<N>.json``: this rank's view and a digest of its final weights (the DDP test compares the ranks)."""
    write_json(debug_dir / f"rank{ctx.rank}.json",
               {"rank": ctx.rank, "world_size": ctx.world_size, "backend": ctx.backend,
                "device": ctx.device, "digest": state_dict_digest(model.state_dict()),
                "best_epoch": metrics["best_epoch"], "val_acc": metrics["val_acc"]})


def _check_model_name(name: str) -> bool:
    """True for the user's own ``FILE.py:NAME``; a zoo name passes; anything else is refused."""
    own = is_module_model(name)
    if not own and name not in zoo_names():
        raise EdgepruneError(f"unknown model {name!r}; choose one of: {', '.join(zoo_names() + amr_names())}, "
                             f"or your own as FILE.py:NAME")
    return own


def _model_spec(opts: _Options, ds, own: bool) -> dict:
    """The spec of the network to train: a zoo spec, or the user's module recipe checked on a probe."""
    if not own:
        return make_spec(opts.model, ds.length, len(ds.classes))

    torch.manual_seed(opts.seed)
    spec, probe = recipe_for(opts.model, ds.length, len(ds.classes), getattr(opts, "kwargs", None))
    found = check_io(probe, ds.length, len(ds.classes), opts.model)
    return with_stats(with_layout(spec, found["layout"], found["min_batch"]), probe)


def _dataset_record(data_path: Path, ds, total_frames: int, fractions, opts: _Options, frames: dict) -> dict:
    """The checkpoint's ``dataset`` record: the file and its hash, classes, the split and the SNR filter."""
    return {
        "path": str(data_path.resolve()),
        "sha256": file_sha256(data_path),
        "format": ds.meta.get("format"),
        "classes": list(ds.classes),
        "length": ds.length,
        "frames": total_frames,
        "split": {"fractions": list(fractions), "seed": opts.split_seed, "frames": dict(frames)},
        "snr_filter": {"min": opts.min_snr, "max": opts.max_snr},
        "normalization": ds.meta.get("normalization"),
        "meta": _scalar_items(ds.meta),
    }


def _record_test_accuracy(model, test, out: Path, device) -> float:
    """Score the trained model on the test split and store it as ``metrics.test_acc`` in the checkpoint ``out``."""
    acc = evaluate(model, test, device=device)["accuracy"]
    ck = load_checkpoint(out)
    ck.meta["metrics"]["test_acc"] = acc
    save_checkpoint(out, ck.spec, ck.state_dict, ck.meta)
    return acc
