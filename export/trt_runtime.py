"""Run a serialized TensorRT engine (torch-free): the device runtime's TensorRT backend and its host-side helpers.

The engine runner itself is ``export.runtime.backend_tensorrt`` (one file,
shared with the profiler and a bundle's run.py): TensorRT 8.0-8.4 through the
binding API (``execute_async_v2``), 8.5 and later through the tensor API
(``set_tensor_address`` + ``execute_async_v3``); device buffers from pycuda,
cuda-python or ctypes on libcudart (``export.runtime.cuda``).
"""

from __future__ import annotations

from .runtime.backend_tensorrt import TensorRTBackend  # noqa: F401
from .runtime.backend_tensorrt import import_tensorrt, read_engine_metadata, version_tuple  # noqa: F401
from .runtime.cuda import CUDA_INSTALL, CtypesCudart, CudaPython, PyCuda, cuda_api  # noqa: F401
from .runtime.jetpack import tensorrt_hint

TRT_INSTALL = tensorrt_hint(jetpack=None)


def trt_major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])
