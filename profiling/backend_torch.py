"""The PyTorch backend: an edgeprune checkpoint in eager mode, the registry's protocol (host side only).

``edgeprune.profiling`` registers it in the device runtime's backend registry under the name ``torch``
(``register_backend``, as a plugin registers its own), so the board never imports it; torch is imported
when a checkpoint is opened. ``torch.set_num_threads``, eval + ``inference_mode``; on CUDA, ``timed()`` is
CUDA-event time, optionally of a CUDA-graph replay (``cuda_graphs=True``, captured by ``bind``).
"""

from __future__ import annotations

import time

import numpy as np

from edgeprune.errors import EdgepruneError, MissingDependency, require
from edgeprune.checkpoint import load_checkpoint

NAME = "torch"
MODEL_KIND = "checkpoint"


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
    return TorchBackend(checkpoint, **options)


class TorchBackend:
    """An edgeprune checkpoint in PyTorch eager mode (CUDA when available and asked for)."""

    name = NAME

    def __init__(self, checkpoint, threads: int | None = None, providers=None, target_providers=None,
                 precision: str | None = "fp32", cuda_graphs: bool = False, device: str = "auto"):
        # providers, target_providers: ONNX Runtime's options in the registry's shared set; nothing here
        torch = require("torch", "the torch backend")

        precision = precision or "fp32"
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
        if threads:
            torch.set_num_threads(int(threads))
        ck = load_checkpoint(checkpoint)
        self.length = ck.length
        self.device, self.cuda_graphs = device, bool(cuda_graphs)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.model = ck.build().eval().to(device=device, dtype=self.dtype)
        self.extras: dict[str, list[int]] = {}
        self.timing = "cuda-events" if device == "cuda" else "wall"
        self.gpu_name = torch.cuda.get_device_name(0) if device == "cuda" else None
        self.x = None
        self.graph = None
        if device == "cuda":
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)

    def input_shape(self) -> list:
        return [None, 2, self.length]

    def _tensor(self, x):
        return self.torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device=self.device,
                                                                                   dtype=self.dtype)

    def infer(self, x) -> np.ndarray:
        """Logits of frames ``x`` (N, 2, L), a float32 numpy array."""
        with self.torch.inference_mode():
            return self.model(self._tensor(x)).float().cpu().numpy()

    def bind(self, x) -> np.ndarray:
        """Put frames ``x`` on the device once (and capture the CUDA graph, if asked for); their logits."""
        self.x = self._tensor(x)
        if self.cuda_graphs:
            self._capture()
        with self.torch.inference_mode():
            return self.model(self.x).float().cpu().numpy()

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

    def timed(self) -> int:
        """One forward pass of the bound frames: wall ns on the CPU, CUDA-event ns on a GPU."""
        torch = self.torch
        if self.device != "cuda":
            t0 = time.perf_counter_ns()
            with torch.inference_mode():
                self.model(self.x)
            return time.perf_counter_ns() - t0
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
        return {"providers": [self.device], "on": self.gpu_name or "cpu", "io": "tensors", "timing": self.timing,
                "input_shape": list(self.x.shape) if self.x is not None else None,
                "cuda_graphs": self.graph is not None}

    def close(self) -> None:
        self.graph = self.x = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
