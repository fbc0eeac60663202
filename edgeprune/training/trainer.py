"""The training loop shared by ``train``, ``finetune`` and every pruning baseline.

Recipe of the reference code by default: Adam lr 1e-3, StepLR(10, 0.8),
batch 128. Model selection on the *validation* split (never the test split).
Deterministic on CPU for a given seed: the shuffle and torch's RNG are
re-seeded from (seed, epoch) at every epoch, so a run resumed after a crash
ends with the same weights as an uninterrupted one.

Crash safety: after every epoch the full training state (weights, optimiser,
scheduler, best weights, history) is written atomically to
``<out>.state``; ``resume=True`` continues from it. The final checkpoint
(the best epoch on validation) is written atomically to ``out``, then the
state file is removed.

Data parallel: when torch.distributed is initialised (``edgeprune train``
under torchrun, see :mod:`edgeprune.training.distributed`), the model is
wrapped in DistributedDataParallel, every rank takes its own shard of each
global batch (so ``batch_size`` stays the global batch), BatchNorm running
statistics are averaged over the ranks after every epoch, validation is
sharded and summed, and only rank 0 writes.
"""

from __future__ import annotations

import copy
import json
import math
import os
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeprune.export.runtime.safeio import check_input

from ..atomic import atomic_path, remove_stale_temps, write_text
from ..checkpoint import save_checkpoint, torch_save
from ..data.dataset import SignalDataset
from ..errors import EdgepruneError
from ..progress import progress


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    step_size: int = 10
    gamma: float = 0.8
    weight_decay: float = 0.0
    l1: float = 0.0               # + l1 * sum|theta| (the reference fine-tuning term is 1e-4)
    bn_sparsity: float = 0.0      # + s * sum|gamma_BN| (network slimming's sparsity training)
    distill_alpha: float = 0.0    # weight of the KD term when a teacher is given
    distill_temperature: float = 4.0
    seed: int = 0
    threads: int | None = None
    eval_batch_size: int = 512
    bn_warmup_batches: int = 4    # BN running statistics set from this many batches before epoch 1 (0 = off)
    device: str = "cpu"           # "cpu", "cuda" or "cuda:N" (the training device; not part of resume checks)
    patience: int = 0             # > 0: stop when the validation loss has not improved for this many epochs
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(int(n))


def _dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


@torch.no_grad()
def predict_logits(model: nn.Module, x: np.ndarray, batch_size: int = 512, device: str | torch.device = "cpu") -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size])).to(device)
        out.append(model(xb).float().cpu().numpy())
    if not out:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(out)


def accuracy(model: nn.Module, ds: SignalDataset, batch_size: int = 512, device="cpu") -> float:
    if len(ds) == 0:
        return float("nan")
    logits = predict_logits(model, ds.x, batch_size, device)
    return float((logits.argmax(1) == ds.y).mean())


def _val_loss(model: nn.Module, ds: SignalDataset, batch_size: int, device) -> float:
    """Mean cross-entropy on ``ds`` (every process computes it on all frames: the same number everywhere)."""
    logits = predict_logits(model, ds.x, batch_size, device)
    return float(F.cross_entropy(torch.from_numpy(logits).double(), torch.from_numpy(ds.y.astype(np.int64))))


def _stale_epochs(history: list[dict]) -> int:
    """Epochs since the validation loss last improved (0 when the last epoch was the best)."""
    losses = [r.get("val_loss") for r in history]
    if not losses or any(v is None for v in losses):
        return 0
    best = min(range(len(losses)), key=lambda i: (losses[i], i))
    return len(losses) - 1 - best


def _distributed_accuracy(model: nn.Module, ds: SignalDataset, batch_size: int, device, rank: int, world: int) -> float:
    """Accuracy over ``ds`` with each rank scoring every ``world``-th frame, summed over the ranks."""
    if world == 1:
        return accuracy(model, ds, batch_size, device)
    idx = np.arange(rank, len(ds), world)
    correct = 0
    if len(idx):
        logits = predict_logits(model, ds.x[idx], batch_size, device)
        correct = int((logits.argmax(1) == ds.y[idx]).sum())
    t = torch.tensor([correct], dtype=torch.float64, device=_collective_device(device))
    torch.distributed.all_reduce(t)
    return float(t.item()) / len(ds)


def _collective_device(device) -> torch.device:
    # gloo reduces CPU tensors, nccl CUDA tensors
    return torch.device(device) if str(device).startswith("cuda") else torch.device("cpu")


def _sync_buffers(model: nn.Module, world: int) -> None:
    """Average floating buffers (BatchNorm running statistics) over the ranks; others from rank 0."""
    if world == 1:
        return
    with torch.no_grad():
        for b in model.buffers():
            if b.is_floating_point():
                torch.distributed.all_reduce(b)
                b.div_(world)
            else:
                torch.distributed.broadcast(b, 0)


def bn_warm_start(model: nn.Module, x: np.ndarray, batch_size: int, batches: int, seed: int, device) -> None:
    """Set every BatchNorm layer's running statistics to their average over a few training batches.

    PyTorch starts running variances at 1. RML-style L1-normalised frames
    (values ~1e-2) give activation variances near 1e-5, so with momentum 0.1 the
    initial value dominates evaluation for hundreds of steps: short runs (a demo,
    fine-tuning) then score at chance although they learn. Warm-started
    statistics fix that, and after pruning they recalibrate the kept layers to
    their new inputs. Deterministic: the frames come from ``seed``.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns or len(x) < 2:
        return
    order = np.random.default_rng([seed, 7919]).permutation(len(x))[: batches * batch_size]
    saved = [m.momentum for m in bns]
    was_training = model.training
    model.train()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the warm-up batches
    try:
        with torch.no_grad():
            for i in range(0, len(order), batch_size):
                idx = np.sort(order[i:i + batch_size])
                if len(idx) < 2:
                    break
                model(torch.from_numpy(x[idx]).to(device))
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
        model.train(was_training)


def _bn_l1(model: nn.Module) -> torch.Tensor:
    terms = [m.weight.abs().sum() for m in model.modules()
             if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.weight is not None]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def _state_path(out: Path) -> Path:
    return out.with_name(out.name + ".state")


@dataclass
class TrainSession:
    """What one :func:`fit` call works with: where it runs, what it optimises, where it writes."""

    model: nn.Module
    ddp_model: nn.Module          # ``model`` itself, or its DistributedDataParallel wrapper under torchrun
    opt: torch.optim.Optimizer
    sched: Any
    device: torch.device
    rank: int
    world: int
    out: Path | None
    state_file: Path | None


@dataclass
class TrainProgress:
    """Where training stands: the next epoch, the per-epoch records, and the best epoch so far."""

    start_epoch: int
    history: list[dict[str, Any]]
    best: dict[str, Any]          # {"epoch", "val_acc", "state"}; epoch -1 before the first epoch


def fit(model: nn.Module, spec: dict[str, Any], train: SignalDataset, val: SignalDataset, cfg: TrainConfig,
        out: str | Path | None, meta: dict[str, Any], resume: bool = False, log_path: str | Path | None = None,
        teacher: nn.Module | None = None, desc: str = "train",
        after_step: Callable[[nn.Module], None] | None = None) -> dict[str, Any]:
    """Train ``model`` and write the best-on-validation checkpoint to ``out``.

    ``meta`` is the checkpoint metadata (see ``checkpoint.make_meta``); the
    returned dict (also stored as ``meta['metrics']``) has ``best_epoch``,
    ``val_acc``, ``epochs``, ``epochs_run``, ``stopped_early``, the per-epoch
    ``history`` and ``train_config``. Under
    ``torchrun`` the model is wrapped in DistributedDataParallel and each
    rank trains on its own shard of every batch; only rank 0 writes.
    ``after_step`` is called after every optimiser step (used by
    sparsity-regularised training).

    The steps, in order: :func:`check_fit_inputs`, :func:`start_session`,
    :func:`restore_state`, the BatchNorm warm start, then per epoch
    :func:`train_one_epoch` (each batch's loss from :func:`compute_loss`) and
    :func:`evaluate_epoch`, and last :func:`finish` (best weights, metrics,
    the checkpoint write).
    """
    check_fit_inputs(cfg, train, val)
    set_threads(cfg.threads)
    s = start_session(model, cfg, out, teacher)
    state = restore_state(s, cfg, resume, log_path)
    if state.start_epoch == 0 and cfg.bn_warmup_batches > 0:
        bn_warm_start(model, train.x, cfg.batch_size, cfg.bn_warmup_batches, cfg.seed, s.device)
        state.best["state"] = copy.deepcopy(model.state_dict())
    steps = steps_per_epoch(len(train), cfg.batch_size, s.world)
    teacher_on = teacher is not None and cfg.distill_alpha > 0
    if teacher_on:
        teacher.eval()
    with _EpochLog(log_path, s.rank) as log:
        for epoch in range(state.start_epoch, cfg.epochs):
            if cfg.patience > 0 and _stale_epochs(state.history) >= cfg.patience:
                break  # early stopping (also right after a resume that had already met it)
            t0 = time.perf_counter()
            totals = train_one_epoch(s, train, cfg, epoch, steps, teacher if teacher_on else None, desc, after_step)
            rec = evaluate_epoch(s, val, cfg, epoch, totals, t0)
            _record_epoch(s, cfg, state, epoch, rec)
            log.write(rec)
    return finish(s, spec, val, cfg, state, meta)


def check_fit_inputs(cfg: TrainConfig, train: SignalDataset, val: SignalDataset) -> None:
    """Refuse settings and splits :func:`fit` cannot train on (an :class:`EdgepruneError` each)."""
    if cfg.epochs < 0:
        raise EdgepruneError("epochs must be >= 0")
    if isinstance(cfg.patience, bool) or not isinstance(cfg.patience, int) or cfg.patience < 0:
        raise EdgepruneError(f"patience must be a positive integer (0 = no early stopping), got {cfg.patience!r}")
    if len(train) == 0:
        raise EdgepruneError("the training split is empty")
    if len(val) == 0:
        raise EdgepruneError("the validation split is empty (the dataset is too small to split)")


def start_session(model: nn.Module, cfg: TrainConfig, out: str | Path | None,
                  teacher: nn.Module | None = None) -> TrainSession:
    """Seed torch, move the model (and teacher) to the device, wrap it for DDP, make Adam and StepLR."""
    rank, world = _dist_info()
    out = Path(out) if out is not None else None
    state_file = _state_path(out) if out is not None else None
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device or "cpu")
    model.to(device)
    if teacher is not None:
        teacher.to(device)
    ddp_model = model
    if world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(cfg.step_size, 1), gamma=cfg.gamma)
    return TrainSession(model, ddp_model, opt, sched, device, rank, world, out, state_file)


def restore_state(s: TrainSession, cfg: TrainConfig, resume: bool, log_path: str | Path | None) -> TrainProgress:
    """The progress to continue from: ``<out>.state`` when ``resume`` finds one, else a fresh start.

    Loads the weights, optimiser and scheduler into the session, and cuts the
    epoch log back to the saved history. A state written with other training
    settings, or damaged, is refused (an :class:`EdgepruneError` saying to
    remove it).
    """
    fresh = TrainProgress(0, [], {"epoch": -1, "val_acc": -1.0, "state": copy.deepcopy(s.model.state_dict())})
    if resume and s.out is not None and s.rank == 0:
        # a run killed while writing leaves its temporary file behind: resuming clears it
        for f in (s.out, s.state_file):
            remove_stale_temps(f)
    if not (resume and s.state_file is not None and s.state_file.exists()):
        return fresh  # nothing to resume: train from scratch (the final file is overwritten atomically)
    st = _load_state(s.state_file, cfg)
    try:
        s.model.load_state_dict(st["model"])
        s.opt.load_state_dict(st["optimizer"])
        s.sched.load_state_dict(st["scheduler"])
        state = TrainProgress(int(st["epoch"]) + 1, json.loads(st["history"]),
                          {"epoch": int(st["best_epoch"]), "val_acc": float(st["best_val_acc"]),
                           "state": {k: v.to(s.device) for k, v in st["best_model"].items()}})
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EdgepruneError(f"cannot resume: {s.state_file} does not fit this model or is damaged ({first}); "
                             f"remove it to start again") from exc
    if log_path and s.rank == 0:
        # the log ends where the saved state ends (a killed run may have logged one epoch more)
        write_text(log_path, "".join(json.dumps(r) + "\n" for r in state.history))
    return state


def _load_state(state_file: Path, cfg: TrainConfig) -> dict[str, Any]:
    """The saved training state (tensors and plain data only), checked to match ``cfg``."""
    check_input(state_file, "training state", "checkpoint")  # a regular file (torch.load would block on a FIFO)
    try:
        st = torch.load(state_file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise EdgepruneError(f"cannot resume: {state_file} was refused: it holds objects other than tensors "
                             f"and plain data (never loaded as code); remove it to start again") from exc
    except Exception as exc:  # noqa: BLE001 - a damaged state file is a user-facing problem
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EdgepruneError(f"cannot resume: {state_file} is not a readable training state ({first}); "
                             f"remove it to start again") from exc
    try:
        same = isinstance(st, dict) and json.loads(st["config"]) == _resumable(cfg)
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgepruneError(f"cannot resume: {state_file} is damaged ({type(exc).__name__}); "
                             f"remove it to start again") from exc
    if not same:
        raise EdgepruneError(f"{state_file} was written with other training settings; remove it or rerun with the same options")
    return st


def steps_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
    """Optimiser steps per epoch for ``n`` frames in global batches of ``batch_size`` over ``world`` ranks."""
    if batch_size < world:
        raise EdgepruneError(f"batch size {batch_size} is smaller than the number of processes {world}")
    steps = max(1, math.ceil(n / batch_size))
    if steps > 1 and n - (steps - 1) * batch_size < world:
        steps -= 1  # a last batch too small to give every rank a frame is dropped (on every rank alike)
    return steps


def compute_loss(model: nn.Module, logits: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor, cfg: TrainConfig,
                 teacher: nn.Module | None = None) -> torch.Tensor:
    """One batch's training loss: cross-entropy, mixed with distillation from ``teacher`` when given.

    Plus ``cfg.l1`` x sum |theta| and ``cfg.bn_sparsity`` x sum |gamma_BN|
    when those are set. ``teacher`` is in eval mode; its logits carry no gradient.
    """
    loss = F.cross_entropy(logits, yb)
    if teacher is not None:
        with torch.no_grad():
            tl = teacher(xb)
        T = cfg.distill_temperature
        kd = F.kl_div(F.log_softmax(logits / T, 1), F.softmax(tl / T, 1), reduction="batchmean") * T * T
        loss = (1 - cfg.distill_alpha) * loss + cfg.distill_alpha * kd
    if cfg.l1 > 0:
        loss = loss + cfg.l1 * sum(p.abs().sum() for p in model.parameters())
    if cfg.bn_sparsity > 0:
        loss = loss + cfg.bn_sparsity * _bn_l1(model)
    return loss


def train_one_epoch(s: TrainSession, train: SignalDataset, cfg: TrainConfig, epoch: int, steps: int,
                    teacher: nn.Module | None = None, desc: str = "train",
                    after_step: Callable[[nn.Module], None] | None = None) -> dict[str, float]:
    """One pass over a shuffle of ``train`` (seeded from (seed, epoch)), then one scheduler step.

    Each rank takes its share of every global batch. Returns this rank's
    ``loss_sum`` (loss x frames) and ``seen`` frames, and ``seen_global``, the
    frames of all ranks together. A non-finite loss stops training.
    """
    model, n, bs_global, rank, world = s.model, len(train), cfg.batch_size, s.rank, s.world
    model.train()
    g = np.random.default_rng([cfg.seed, epoch])
    torch.manual_seed(cfg.seed * 100003 + epoch)
    perm = g.permutation(n)
    tot_loss = 0.0
    seen = 0
    seen_global = 0
    bar = progress(total=steps, desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}", unit="batch") if rank == 0 else None
    for step in range(steps):
        gidx = perm[step * bs_global:(step + 1) * bs_global]
        idx = gidx[rank::world] if world > 1 else gidx
        xb = torch.from_numpy(train.x[idx]).to(s.device, non_blocking=True)
        yb = torch.from_numpy(train.y[idx]).to(s.device, non_blocking=True)
        loss = compute_loss(model, s.ddp_model(xb), xb, yb, cfg, teacher)
        loss_value = float(loss.item())
        if not math.isfinite(loss_value):
            raise EdgepruneError(f"training diverged (loss is {loss_value}) at epoch {epoch + 1}; lower the learning rate")
        s.opt.zero_grad(set_to_none=True)
        loss.backward()
        s.opt.step()
        if after_step is not None:
            after_step(model)
        tot_loss += loss_value * len(idx)
        seen += len(idx)
        seen_global += len(gidx)
        if bar is not None:
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{tot_loss / max(seen, 1):.4f}")
    if bar is not None:
        bar.close()
    s.sched.step()
    return {"loss_sum": tot_loss, "seen": seen, "seen_global": seen_global}


def evaluate_epoch(s: TrainSession, val: SignalDataset, cfg: TrainConfig, epoch: int, totals: dict[str, float],
                   t0: float) -> dict[str, Any]:
    """The epoch's log record: training loss over all ranks, validation accuracy (and loss), lr, speed.

    Under DDP the BatchNorm running statistics are averaged over the ranks
    first, so every rank evaluates (and keeps) the same model.
    """
    train_seconds = time.perf_counter() - t0
    tot_loss, seen = totals["loss_sum"], totals["seen"]
    train_loss = tot_loss / max(seen, 1)
    if s.world > 1:
        _sync_buffers(s.model, s.world)
        t = torch.tensor([tot_loss, float(seen)], dtype=torch.float64, device=_collective_device(s.device))
        torch.distributed.all_reduce(t)
        train_loss = float(t[0] / max(t[1], 1.0))
    val_acc = _distributed_accuracy(s.model, val, cfg.eval_batch_size, s.device, s.rank, s.world)
    return {"epoch": epoch + 1, "train_loss": train_loss, "val_acc": val_acc,
            **({"val_loss": _val_loss(s.model, val, cfg.eval_batch_size, s.device)} if cfg.patience > 0 else {}),
            "lr": s.opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0,
            "examples_per_s": totals["seen_global"] / max(train_seconds, 1e-9), "processes": s.world}


def _record_epoch(s: TrainSession, cfg: TrainConfig, state: TrainProgress, epoch: int, rec: dict[str, Any]) -> None:
    """Add the epoch to the history, keep its weights if it is the best so far, save ``<out>.state`` (rank 0)."""
    state.history.append(rec)
    if rec["val_acc"] > state.best["val_acc"]:
        state.best = {"epoch": epoch + 1, "val_acc": rec["val_acc"], "state": copy.deepcopy(s.model.state_dict())}
    if s.rank == 0 and s.state_file is not None:
        _save_state(s.state_file, s.model, s.opt, s.sched, epoch, state.history, state.best, cfg)


class _EpochLog:
    """The JSON-lines epoch log (rank 0 appends; a log a failed run left empty is removed on exit)."""

    def __init__(self, log_path: str | Path | None, rank: int):
        self.path = log_path
        self.new = bool(log_path) and not Path(log_path).exists()
        self.fh = open(log_path, "a") if (log_path and rank == 0) else None

    def write(self, rec: dict[str, Any]) -> None:
        if self.fh is not None:
            self.fh.write(json.dumps(rec) + "\n")
            self.fh.flush()

    def __enter__(self) -> _EpochLog:
        return self

    def __exit__(self, *exc) -> None:
        if self.fh is not None:
            self.fh.close()
            if self.new and os.path.getsize(self.path) == 0:
                os.unlink(self.path)  # a run that failed before its first epoch leaves no empty log


def finish(s: TrainSession, spec: dict[str, Any], val: SignalDataset, cfg: TrainConfig, state: TrainProgress,
           meta: dict[str, Any]) -> dict[str, Any]:
    """Load the best epoch's weights into the model, write the checkpoint (rank 0), remove the state file; the metrics.

    With zero epochs the given weights are kept and scored on ``val``. Under
    DDP every rank waits until the checkpoint exists.
    """
    best, history = state.best, state.history
    if best["epoch"] < 0:  # zero epochs: keep the given weights
        best["val_acc"] = _distributed_accuracy(s.model, val, cfg.eval_batch_size, s.device, s.rank, s.world)
        best["epoch"] = 0
    s.model.load_state_dict(best["state"])
    metrics = {
        "best_epoch": best["epoch"],
        "val_acc": best["val_acc"],
        "epochs": cfg.epochs,
        "epochs_run": len(history),
        "stopped_early": bool(cfg.patience > 0 and len(history) < cfg.epochs),
        "history": history,
        "train_config": cfg.to_dict(),
    }
    meta = dict(meta)
    meta["metrics"] = dict(meta.get("metrics", {}), **{k: v for k, v in metrics.items() if k != "history"},
                           history=history)
    if s.out is not None and s.rank == 0:
        save_checkpoint(s.out, spec, s.model.state_dict(), meta)
        if s.state_file is not None and s.state_file.exists():
            s.state_file.unlink()
    if s.world > 1:
        torch.distributed.barrier()  # the checkpoint exists for every rank once fit returns
    return metrics


def _resumable(cfg: TrainConfig) -> dict[str, Any]:
    d = cfg.to_dict()
    d.pop("threads", None)
    d.pop("eval_batch_size", None)
    d.pop("device", None)
    return json.loads(json.dumps(d))


def _save_state(path: Path, model, opt, sched, epoch, history, best, cfg) -> None:
    st = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "epoch": epoch,
        "history": json.dumps(history),
        "best_epoch": best["epoch"],
        "best_val_acc": best["val_acc"],
        "best_model": best["state"],
        "config": json.dumps(_resumable(cfg)),
    }

    with atomic_path(path, suffix=".tmp") as tmp:
        torch_save(st, tmp, path)


def environment_threads() -> int:
    return int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))
