"""Latency measurement on the hardware at hand (the device side: imports no torch).

- ``edgeprune.profiling.harness.profile``: warm-up + timed runs of checkpoints, ONNX
  files, TensorRT engines and bundles on torch / onnxruntime / tensorrt.
- ``edgeprune.profiling.per_layer.per_layer_profile``: ONNX Runtime per-node kernel time
  grouped by the model's top-level layers, beside their MACs.
- ``edgeprune.profiling.onnx_macs.count_onnx_macs``: edgeprune's MAC count from an ONNX graph.
- ``edgeprune.profiling.latency_model.LatencyModel``: latency ~ a*MACs + b*layers + c per
  (device, backend, batch, precision, threads).
- ``edgeprune.profiling.results_file``: statistics and the results file.

Backends come from the device runtime's one registry (``edgeprune.export.runtime.registry``),
shared with ``Predictor``, run.py and the study; this package registers its PyTorch backend
there (``backend_torch``, by module name: only profiling a checkpoint on it imports torch).
"""

from edgeprune.export.runtime.registry import register_backend

register_backend("torch", "edgeprune.profiling.backend_torch")
