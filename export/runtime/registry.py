"""The one backend registry: the profiler, ``edgeprune.export.Predictor``, a bundle's run.py and the study look
backends up here, by name, and nowhere else.

A backend is one module with one class. The module gives ``NAME``, ``MODEL_KIND``
(what it opens: ``"onnx"``, ``"engine"`` or ``"checkpoint"``; ``"onnx"`` when
absent), ``availability()`` (None, or the one-line reason it cannot run here),
``version()`` and ``open_backend(model, **options)``. The options every backend
takes (and ignores where they mean nothing to it): ``threads``, ``providers``
and ``target_providers`` (ONNX Runtime's, see ``backend_onnxruntime``),
``precision``, ``cuda_graphs``. ``open_backend`` returns the opened backend, an
object with:

- ``name``: its registry name;
- ``input_shape()``: the model's input dimensions (a dynamic one is not a
  positive int);
- ``infer(x)``: numpy frames in the model's input shape -> float32 numpy logits;
- ``bind(x)``: keep frames ``x`` for timing (IOBinding, device buffers, a
  device tensor), returning their logits;
- ``timed()``: run the bound frames once; the latency in ns;
- ``extras``: {name: [ns per timed run]} of extra timings (TensorRT's CUDA-event
  split ``h2d``, ``gpu_compute``, ``d2h``), else {};
- ``describe()``: {"providers", "on" ("cpu" or the device), "io", "timing",
  "input_shape" (of the bound frames), ...}, written into latency records;
- ``close()``, and ``__enter__``/``__exit__`` (``with`` closes it).

``open_backend`` refuses an object that lacks one of these, with one line.

ONNX Runtime and TensorRT live in this package (they run on the board). Other
backends, the host's PyTorch one included (``edgeprune.profiling`` registers
``edgeprune.profiling.backend_torch``), come in through ``register_backend``, so
the board never imports them.
"""

import importlib

from .errors import EdgepruneError

_BUILTIN = {"onnxruntime": ".backend_onnxruntime", "tensorrt": ".backend_tensorrt"}
_EXTRA = {}
MODEL_KINDS = ("onnx", "engine", "checkpoint")


def register_backend(name, module_name):
    """Add a backend written outside this package: a module (absolute import name) with the names listed above."""
    if name in _BUILTIN:
        raise EdgepruneError("{!r} is a built-in backend; choose another name".format(name))
    _EXTRA[name] = module_name


def names():
    return tuple(_BUILTIN) + tuple(k for k in _EXTRA if k not in _BUILTIN)


def backend_module(name):
    if name in _BUILTIN:
        return importlib.import_module(_BUILTIN[name], __package__)
    if name in _EXTRA:
        return importlib.import_module(_EXTRA[name])
    raise EdgepruneError("unknown backend {!r}; choose from: {}".format(name, ", ".join(names())))


def availability(name):
    """None if ``name`` can run here, else the reason it cannot (one line). Unknown names raise."""
    return backend_module(name).availability()


def version(name):
    try:
        return backend_module(name).version()
    except Exception:  # noqa: BLE001 - a version is informative only
        return None


def model_kind(name):
    """What backend ``name`` opens: "onnx", "engine" or "checkpoint"."""
    kind = getattr(backend_module(name), "MODEL_KIND", "onnx")
    if kind not in MODEL_KINDS:
        raise EdgepruneError("backend {!r} declares MODEL_KIND {!r}; expected one of {}".format(
            name, kind, ", ".join(MODEL_KINDS)))
    return kind


PROTOCOL = ("input_shape", "infer", "bind", "timed", "describe", "close", "__enter__", "__exit__")


def open_backend(name, model, **options):
    """Open ``model`` on backend ``name`` (raises EdgepruneError / MissingDependency with one line)."""
    be = backend_module(name).open_backend(model, **options)
    missing = [m for m in PROTOCOL if not callable(getattr(be, m, None))]
    if not isinstance(getattr(be, "extras", None), dict):
        missing.append("extras (a dict)")
    if missing:
        if callable(getattr(be, "close", None)):
            be.close()
        raise EdgepruneError("backend {!r} gives an object without {} (the backend protocol: "
                             "edgeprune.export.runtime.registry)".format(name, ", ".join(missing)))
    return be
