"""trtexec command lines per TensorRT version (Python 3.6+): what ``run.py build`` runs on the board,
and what ``edgeprune build --print-trtexec`` prints.

Flag differences (TensorRT's samples/common/sampleOptions.cpp per release):
``--memPoolSize=workspace:N`` from 8.4, ``--workspace=N`` (MiB) before it and
removed in 10; ``--fp16``/``--int8`` up to 10.x, TensorRT 11 networks are
strongly typed (``--stronglyTyped``); an int8 engine is built from a Q/DQ
ONNX, with ``--fp16`` for the layers that are not quantised.
"""

import os
import shlex

from .errors import EdgepruneError

TRTEXEC = "/usr/src/tensorrt/bin/trtexec"  # on every JetPack; not on PATH


def find_trtexec():
    """The trtexec binary: JetPack's location, else PATH; None if absent."""
    if os.path.isfile(TRTEXEC) and os.access(TRTEXEC, os.X_OK):
        return TRTEXEC
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        p = os.path.join(folder, "trtexec")
        if folder and os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def _major_minor(v):
    parts = (str(v or "0").split(".") + ["0"])[:2]
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except ValueError:
        return 0, 0


def profile_shapes(batch, length, input_name="iq", layout="NCL"):
    """min/opt/max shapes of the optimization profile from a target's batch table (inputs in ``layout``)."""
    from .frames import layout_shape

    return {key: layout_shape(layout, int(batch.get(key, dflt)), int(length))
            for key, dflt in (("min", 1), ("opt", 1), ("max", 64))}


def trtexec_args(onnx, out, target, precision, length, trt_version=None, timing_cache=None, dla_core=0,
                 trtexec=TRTEXEC, layout="NCL"):
    """The argument list that builds ``onnx`` into engine ``out`` for ``target`` (a target dict).

    ``trt_version``: the TensorRT that will run the command (default: the target's).
    """
    if target.get("backend") != "tensorrt":
        raise EdgepruneError("target {} runs {}, not TensorRT; choose a Jetson target".format(
            target.get("name"), target.get("backend")))
    if precision not in target.get("precisions", []):
        raise EdgepruneError("target {} does not support {} (it supports {})".format(
            target.get("name"), precision, ", ".join(target.get("precisions", []))))
    major, minor = _major_minor(trt_version or target.get("tensorrt"))
    shapes = profile_shapes(target.get("batch") or {}, length, layout=layout)

    def fmt(s):
        return "iq:" + "x".join(str(v) for v in s)

    args = [trtexec, "--onnx=" + str(onnx), "--saveEngine=" + str(out), "--minShapes=" + fmt(shapes["min"]),
            "--optShapes=" + fmt(shapes["opt"]), "--maxShapes=" + fmt(shapes["max"])]
    if major < 11:
        if precision == "fp16":
            args.append("--fp16")
        elif precision == "int8":
            args += ["--int8", "--fp16"]  # Q/DQ gives the int8 layers; fp16 for the rest
    else:
        args.append("--stronglyTyped")
    if target.get("dla_cores") and precision in ("fp16", "int8") and dla_core is not None:
        args += ["--useDLACore={}".format(int(dla_core)), "--allowGPUFallback"]
    ws = int(target.get("workspace_mib") or 0)
    if ws:
        if (major, minor) >= (8, 4):
            args.append("--memPoolSize=workspace:{}".format(ws))  # MiB
        else:
            args.append("--workspace={}".format(ws))  # MiB; TensorRT 8.0/8.2
    if timing_cache:
        args.append("--timingCacheFile=" + str(timing_cache))
    return args


def command_line(args):
    return " ".join(shlex.quote(str(a)) for a in args)
