"""The one backend registry: the profiler, ``edgeprune.export.Predictor`` and a bundle's run.py look backends up here.

A backend is a module (one file per backend) with ``NAME``, ``availability()``
(None, or the one-line reason it cannot run here), ``version()`` and
``open_backend(model, **options)``, which returns an object with the same
life cycle: opened by the call, then ``warmup(x)``, ``infer(x)`` (or
``bind(feed)`` + ``run_bound()`` for timing), ``describe()`` and ``close()``.

ONNX Runtime and TensorRT live in this package (they run on the board);
the host side registers the PyTorch backend (``edgeprune.profiling.backend_torch``)
with ``add_backend``, so the board never imports it.
"""

import importlib

from .errors import EdgepruneError

_BUILTIN = {"onnxruntime": ".backend_onnxruntime", "tensorrt": ".backend_tensorrt"}
_EXTRA = {}


def add_backend(name, module_name):
    """Add a backend module (absolute import name) under ``name`` (no check: the host's torch backend)."""
    _EXTRA[name] = module_name


def register_backend(name, module_name):
    """Public: add a backend written outside the package (a module with the functions listed above).

    A backend registered here runs ONNX files in ``edgeprune profile --backend NAME``; its
    ``open_backend(path, threads=N)`` result must also give ``input_shape()``.
    """
    if name in _BUILTIN:
        raise EdgepruneError("{!r} is a built-in backend; choose another name".format(name))
    add_backend(name, module_name)


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


def open_backend(name, model, **options):
    """Open ``model`` on backend ``name`` (raises EdgepruneError / MissingDependency with one line)."""
    return backend_module(name).open_backend(model, **options)
