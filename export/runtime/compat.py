"""Small helpers that keep the runtime the same on Python 3.6 to 3.13."""

import importlib
import json
import os
import subprocess
import tempfile
import time

from .errors import MissingDependency

try:
    perf_counter_ns = time.perf_counter_ns  # Python 3.7+
except AttributeError:  # Python 3.6: float seconds, rounded to ns (resolution of the clock is the same)
    def perf_counter_ns():
        return int(round(time.perf_counter() * 1e9))


def run_command(args, timeout=None):
    """(returncode, stdout, stderr) as text; Python 3.6 has no capture_output/text."""
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def write_json_atomic(path, obj, indent=2):
    """Write JSON to a temporary file beside ``path``, then rename it over ``path``."""
    path = str(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=indent, default=json_default)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def json_default(o):
    """numpy scalars and arrays, paths: what json cannot write by itself."""
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "__fspath__"):
        return os.fspath(o)
    if hasattr(o, "tolist"):  # torch tensors and other array types
        return o.tolist()
    raise TypeError("not JSON serialisable: " + type(o).__name__)


def dumps(obj, indent=2):
    """json.dumps that understands numpy values and paths (``--json`` output on the host and in run.py)."""
    return json.dumps(obj, indent=indent, default=json_default)


def module_version(name):
    """``module.__version__`` of an importable module, else None (never raises)."""
    try:
        mod = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - a broken install counts as absent
        return None
    v = getattr(mod, "__version__", None)
    return str(v) if v is not None else "installed"


def installed_version(module_name):
    """``module.__version__`` of an optional dependency as text, or None when it is not installed."""
    try:
        mod = __import__(module_name)
    except ImportError:
        return None
    return str(mod.__version__)


def unavailable_reason(check):
    """None when ``check()`` passes, else the one-line reason of the MissingDependency it raised (a backend's
    ``availability()``)."""
    try:
        check()
    except MissingDependency as exc:
        return str(exc)
    return None
