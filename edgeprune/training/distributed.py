"""Data-parallel training through PyTorch's own engine (torch.distributed + DDP).

Run the ordinary ``edgeprune train`` command under ``torchrun``; torchrun
sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT, and
:func:`init_from_env` joins the process group from them (gloo on CPU,
nccl on CUDA). Only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import EdgepruneError

_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass
class DistContext:
    """Where this process stands: ``rank`` of ``world_size``, its ``device`` and the backend."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None


def launched_by_torchrun() -> bool:
    """True when the torchrun environment variables are set."""
    return all(k in os.environ for k in _ENV)


def resolve_device(device: str | None) -> str:
    """``auto`` (or None) -> ``cuda`` when a GPU is visible, else ``cpu``; checks an explicit choice."""
    dev = (device or "auto").lower()
    if dev == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise EdgepruneError(f"device {device!r} was asked for but no CUDA GPU is available to torch")
    if not (dev == "cpu" or dev.startswith("cuda")):
        raise EdgepruneError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    return dev


def init_from_env(device: str | None = "auto", backend: str | None = None) -> DistContext:
    """Join the process group described by torchrun's environment, if any.

    Without the torchrun variables (a plain run) this returns a single-process
    context and initialises nothing. On CUDA each process takes the GPU
    ``LOCAL_RANK``.
    """
    dev = resolve_device(device)
    if not launched_by_torchrun():
        return DistContext(device=dev)
    try:
        rank = int(os.environ["RANK"])
        world = int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError as exc:
        raise EdgepruneError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}") from exc
    if not dist.is_available():
        raise EdgepruneError("this torch build has no torch.distributed support")
    if dev.startswith("cuda"):
        if ":" not in dev:
            if local >= torch.cuda.device_count():
                raise EdgepruneError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s) are visible")
            dev = f"cuda:{local}"
        torch.cuda.set_device(torch.device(dev))
    be = backend or ("nccl" if dev.startswith("cuda") else "gloo")
    if not dist.is_initialized():
        kw = {"device_id": torch.device(dev)} if be == "nccl" else {}
        dist.init_process_group(backend=be, init_method="env://", rank=rank, world_size=world, **kw)
    return DistContext(rank=rank, world_size=world, local_rank=local, device=dev, backend=be)


def barrier() -> None:
    """Wait for every rank (no-op outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group (no-op outside one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed_session(device: str | None = "auto", backend: str | None = None):
    """``with distributed_session() as ctx:`` init from torchrun's env, barrier and destroy at the end."""
    ctx = init_from_env(device, backend)
    ok = False
    try:
        yield ctx
        ok = True
    finally:
        if ctx.distributed:
            if ok:
                barrier()
            shutdown()


def state_dict_digest(state_dict) -> str:
    """sha256 over the names, dtypes, shapes and bytes of every tensor (CPU copy), in key order."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
