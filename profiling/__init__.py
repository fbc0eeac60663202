"""Latency measurement on the hardware at hand (the device side: imports no torch).

- ``edgeprune.profiling.harness.profile``: warm-up + timed runs of checkpoints, ONNX
  files, TensorRT engines and bundles on torch / onnxruntime / tensorrt.
- ``edgeprune.profiling.per_layer.per_layer_profile``: ONNX Runtime per-node kernel time
  grouped by the model's top-level layers, beside their MACs.
- ``edgeprune.profiling.onnx_macs.count_onnx_macs``: edgeprune's MAC count from an ONNX graph.
- ``edgeprune.profiling.latency_model.LatencyModel``: latency ~ a*MACs + b*layers + c per
  (device, backend, batch, precision, threads).
- ``edgeprune.profiling.results_file``: statistics and the results file.

Only the torch backend (profiling a checkpoint) imports torch, inside its runner.
"""
