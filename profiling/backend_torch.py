"""The PyTorch backend of the profiler (host side only: the board never imports it).

Registered in the device runtime's backend registry by ``edgeprune.profiling.backends``
under the name ``torch``. torch is imported when a runner is built.
"""

from __future__ import annotations

import numpy as np

from edgeprune.errors import EdgepruneError, MissingDependency, require
from edgeprune.export.runtime.bench import input_array as _input_array

from .backends import Runner

NAME = "torch"


def availability() -> str | None:
    try:
        require("torch", "the torch backend")
    except MissingDependency as exc:
        return str(exc)
    return None


def version() -> str | None:
    try:
        return __import__("torch").__version__
    except Exception:  # noqa: BLE001
        return None


def open_backend(checkpoint, **options):
    return TorchRunner(checkpoint, **options)


class TorchRunner(Runner):
    """An edgeprune checkpoint in PyTorch eager mode (CUDA when available and asked for)."""

    backend = "torch"

    def __init__(self, checkpoint, batch: int, threads: int = 1, precision: str = "fp32", device: str = "auto",
                 cuda_graphs: bool = False, seed: int = 0):
        super().__init__()
        torch = require("torch", "the torch backend")
        from edgeprune.checkpoint import load_checkpoint

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise EdgepruneError("the torch backend was asked for CUDA, but no CUDA device is available")
        if precision not in ("fp32", "fp16"):
            raise EdgepruneError(f"the torch backend runs fp32 (and fp16 on CUDA), not {precision}")
        if precision == "fp16" and device != "cuda":
            raise EdgepruneError("the torch backend runs fp16 on CUDA only (no GPU here)")
        if cuda_graphs and device != "cuda":
            raise EdgepruneError("CUDA graphs need a CUDA device (no GPU here)")
        self.torch = torch
        torch.set_num_threads(int(threads))
        ck = load_checkpoint(checkpoint)
        model = ck.build().eval()
        dtype = torch.float16 if precision == "fp16" else torch.float32
        self.device = device
        self.model = model.to(device=device, dtype=dtype)
        x = _input_array((batch, 2, ck.length), np.float32, seed)
        self.x = torch.from_numpy(x).to(device=device, dtype=dtype)
        self.batch, self.threads = batch, threads
        self.graph = None
        self.gpu_name = None
        if device == "cuda":
            self.timing = "cuda-events"
            self.gpu_name = torch.cuda.get_device_name(0)
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)
            if cuda_graphs:
                self._capture()

    def _capture(self) -> None:
        """Record one forward pass into a CUDA graph (warm-up on a side stream first, as CUDA graphs need)."""
        torch = self.torch
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):
                self.model(self.x)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            self.static_out = self.model(self.x)
        self.timing = "cuda-events+cuda-graph"

    def run(self) -> None:
        if self.graph is not None:
            self.graph.replay()
            self.torch.cuda.synchronize()
            return
        with self.torch.inference_mode():
            self.model(self.x)
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def timed(self) -> int:
        if self.device != "cuda":
            return super().timed()
        torch = self.torch
        self._start.record()
        if self.graph is not None:
            self.graph.replay()
        else:
            with torch.inference_mode():
                self.model(self.x)
        self._end.record()
        self._end.synchronize()
        return int(self._start.elapsed_time(self._end) * 1e6)

    def describe(self) -> dict:
        return {"providers": [self.device], "on": self.gpu_name or "cpu", "input_shape": list(self.x.shape)}
