"""The device-side runtime: what runs on the board, with numpy plus ONNX Runtime or TensorRT.

Every module here runs unchanged on Python 3.6 and later (JetPack 4.6 ships
3.6): no ``from __future__ import annotations``, no dataclasses, no walrus,
no ``subprocess.run(capture_output=...)``, no ``importlib.metadata``, no
annotations that are evaluated at run time. The modules import only the
standard library, numpy, and (lazily) onnxruntime, tensorrt, pycuda or
cuda-python, and each other through relative imports.

That makes this package two things at once:

- the runtime layer of the installed toolchain: ``edgeprune.export.Predictor``,
  ``edgeprune.export.bundle`` (file verification), the profiler (``profiling``) and
  ``edgeprune predict`` use it;
- the body of the single-file runner ``run.py`` that ``make_bundle`` writes
  into every bundle: ``edgeprune.export.runner_file.render`` embeds the source text of
  these modules, byte for byte, and run.py imports them from that text under
  the package name ``_edgeprune_runtime``.

``MODULES`` lists what run.py embeds, in order.
"""

MODULES = ("errors", "compat", "schema", "safeio", "onnx_external", "frames", "sigmf", "stats", "stream", "machine",
           "board", "manifest", "jetpack", "cuda", "backend_onnxruntime", "backend_tensorrt", "registry", "model", "trtexec", "bench", "cli")
