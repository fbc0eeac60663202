"""Capability report of the installed stack (``edgeprune doctor``). Never imports torch unless present."""

from __future__ import annotations

import importlib
import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from .runtime.jetpack import TRT_MAX_OPSET, trt_max_opset  # noqa: F401  (one table, shared with run.py)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _try_import(module: str):
    try:
        return importlib.import_module(module), None
    except Exception as exc:  # noqa: BLE001 - a broken install is reported, not raised
        return None, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


def jetson_release() -> dict[str, Any] | None:
    """L4T release from /etc/nv_tegra_release and the JetPack version from dpkg, when on a Jetson."""
    p = Path("/etc/nv_tegra_release")
    if not p.is_file():
        return None
    line = p.read_text(errors="replace").splitlines()[0] if p.stat().st_size else ""
    info: dict[str, Any] = {"nv_tegra_release": line.strip()}

    m = re.search(r"R(\d+).*REVISION:\s*([\d.]+)", line)
    if m:
        info["l4t"] = f"{m.group(1)}.{m.group(2)}"
    if shutil.which("dpkg-query"):
        try:
            r = subprocess.run(["dpkg-query", "--showformat=${Version}", "--show", "nvidia-jetpack"],
                               capture_output=True, text=True, timeout=10)
            if r.returncode == 0 and r.stdout.strip():
                info["jetpack"] = r.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def gpus(torch_mod=None) -> list[dict[str, Any]]:
    out = []
    if torch_mod is not None:
        try:
            if torch_mod.cuda.is_available():
                for i in range(torch_mod.cuda.device_count()):
                    out.append({"index": i, "name": torch_mod.cuda.get_device_name(i), "via": "torch"})
        except Exception:  # noqa: BLE001
            pass
    if not out and shutil.which("nvidia-smi"):
        try:
            r = subprocess.run(["nvidia-smi", "--query-gpu=index,name,driver_version,memory.total",
                                "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            for line in r.stdout.strip().splitlines():
                parts = [s.strip() for s in line.split(",")]
                if len(parts) >= 2:
                    out.append({"index": int(parts[0]), "name": parts[1],
                                "driver": parts[2] if len(parts) > 2 else None,
                                "memory": parts[3] if len(parts) > 3 else None, "via": "nvidia-smi"})
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    return out


def report() -> dict[str, Any]:
    """Versions, opsets, hardware and which commands/precisions are usable here (with reasons)."""
    pk: dict[str, Any] = {}
    numpy, np_err = _try_import("numpy")
    torch, torch_err = _try_import("torch")
    onnx, onnx_err = _try_import("onnx")
    ort, ort_err = _try_import("onnxruntime")
    onnxsim, sim_err = _try_import("onnxsim")
    onnxscript, script_err = _try_import("onnxscript")
    tp, tp_err = _try_import("torch_pruning") if torch is not None else (None, "needs torch")
    trt, trt_err = _try_import("tensorrt")
    pycuda, pycuda_err = _try_import("pycuda.driver")
    cudapy, cudapy_err = _try_import("cuda.bindings.runtime")
    if cudapy is None:
        cudapy, _ = _try_import("cuda.cudart")
    poly, poly_err = _try_import("polygraphy")
    for name, mod, err, dist in (
            ("numpy", numpy, np_err, "numpy"), ("torch", torch, torch_err, "torch"), ("onnx", onnx, onnx_err, "onnx"),
            ("onnxruntime", ort, ort_err, "onnxruntime"), ("onnxsim", onnxsim, sim_err, "onnxsim"),
            ("onnxscript", onnxscript, script_err, "onnxscript"), ("torch-pruning", tp, tp_err, "torch-pruning"),
            ("tensorrt", trt, trt_err, "tensorrt"), ("pycuda", pycuda, pycuda_err, "pycuda"),
            ("cuda-python", cudapy, cudapy_err, "cuda-python"), ("polygraphy", poly, poly_err, "polygraphy")):
        ver = getattr(mod, "__version__", None) if mod is not None else None
        if mod is not None and not isinstance(ver, str):
            ver = _version(dist)
        pk[name] = {"version": ver if mod is not None else None, "ok": mod is not None,
                    "error": None if mod is not None else err}
    if pk["pycuda"]["ok"]:
        pk["pycuda"]["version"] = _version("pycuda")
    if ort is not None:
        pk["onnxruntime"]["providers"] = list(ort.get_available_providers())

    opsets: dict[str, Any] = {}
    if torch is not None:
        try:
            from torch.onnx._constants import ONNX_MAX_OPSET, ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
            opsets["torch_legacy_export_max"] = int(ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
            opsets["torch_dynamo_export_max"] = int(ONNX_MAX_OPSET)
        except Exception:  # noqa: BLE001 - private constants moved
            opsets["torch_legacy_export_max"] = 17
            opsets["torch_dynamo_export_max"] = None
        if onnxscript is None:
            opsets["torch_dynamo_export_max"] = None
    if onnx is not None:
        opsets["onnx_max"] = int(onnx.defs.onnx_opset_version())
    if ort is not None:
        opsets["onnxruntime_max"] = _ort_max_opset(onnx)
    if trt is not None:
        opsets["tensorrt_parser_max"] = trt_max_opset(str(trt.__version__))

    gpu_list = gpus(torch)
    cuda_ok = pycuda is not None or cudapy is not None
    why_torch = None if torch is not None else f"torch is not importable ({torch_err})"
    def need(*conds):
        for ok, reason in conds:
            if not ok:
                return {"usable": False, "reason": reason}
        return {"usable": True, "reason": None}

    trt_reason = "tensorrt is not installed (JetPack's python3-libnvinfer, or pip install tensorrt from NVIDIA's index)"
    commands = {
        "export": need((torch is not None, why_torch), (onnx is not None, "onnx is not installed"),
                       (onnxsim is not None, "onnxsim is not installed"), (ort is not None, "onnxruntime is not installed")),
        "bundle": need((torch is not None, why_torch), (onnx is not None, "onnx is not installed"),
                       (onnxsim is not None, "onnxsim is not installed"), (ort is not None, "onnxruntime is not installed")),
        "build": need((trt is not None, trt_reason), (bool(gpu_list) or trt is None, "no NVIDIA GPU found")),
        "predict": need((numpy is not None, "numpy is not installed"),
                        (ort is not None or (trt is not None and cuda_ok), "neither onnxruntime nor tensorrt + pycuda/cuda-python")),
        "profile": need((ort is not None or torch is not None or trt is not None, "no backend installed")),
        "train/prune": need((torch is not None, why_torch)),
    }
    precisions = {
        "onnxruntime": {
            "fp32": need((ort is not None, "onnxruntime is not installed")),
            "fp16": need((ort is not None, "onnxruntime is not installed")),
            "int8": need((ort is not None, "onnxruntime is not installed"),
                         (_has("onnxruntime.quantization"), "onnxruntime.quantization is missing")),
        },
        "tensorrt": {p: need((trt is not None, trt_reason), (bool(gpu_list), "no NVIDIA GPU found"),
                             (cuda_ok, "neither pycuda nor cuda-python is installed (device buffers)"))
                     for p in ("fp32", "fp16", "int8")},
    }
    return {
        "python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "executable": sys.executable,
        "packages": pk, "opsets": opsets, "jetson": jetson_release(), "gpus": gpu_list,
        "commands": commands, "precisions": precisions,
    }


def _has(module: str) -> bool:
    return _try_import(module)[0] is not None


def _ort_max_opset(onnx_mod) -> int | None:
    """Highest ai.onnx opset this onnxruntime supports (its own table; onnx's when that is missing)."""
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as C

        schemas = C.schemadef.get_all_operator_schema()  # present in some builds only
        return max(s.since_version for s in schemas if s.domain in ("", "ai.onnx"))
    except Exception:  # noqa: BLE001
        pass
    try:
        import onnxruntime as ort

        mm = tuple(int(v) for v in ort.__version__.split(".")[:2])
        # from ORT's compatibility table (docs/compatibility): 1.14->18, 1.15->19, 1.17->20, 1.19->21,
        # 1.20->21, 1.21->22, 1.22->22, 1.23->23
        table = {(1, 14): 18, (1, 15): 19, (1, 17): 20, (1, 19): 21, (1, 21): 22, (1, 23): 23}
        best = None
        for k, v in sorted(table.items()):
            if k <= mm:
                best = v
        return best
    except Exception:  # noqa: BLE001
        return None


def format_report(r: dict[str, Any]) -> str:
    lines = [f"python        {r['python']}  ({r['platform']}, {r['cpu_count']} CPUs)"]
    for name, p in r["packages"].items():
        status = p["version"] or ("installed" if p["ok"] else "-")
        extra = ""
        if name == "onnxruntime" and p.get("providers"):
            extra = "  providers: " + ", ".join(p["providers"])
        if not p["ok"]:
            extra = "  (not importable)"
        lines.append(f"{name:<14}{status}{extra}")
    lines.append("opsets       " + ", ".join(f"{k}={v}" for k, v in r["opsets"].items()))
    j = r["jetson"]
    lines.append("jetson       " + (f"L4T {j.get('l4t', '?')} JetPack {j.get('jetpack', '?')}" if j else "not a Jetson"))
    lines.append("gpu          " + (", ".join(g["name"] for g in r["gpus"]) if r["gpus"] else "none found"))
    lines.append("commands:")
    for c, s in r["commands"].items():
        lines.append(f"  {c:<12} {'yes' if s['usable'] else 'no  (' + s['reason'] + ')'}")
    lines.append("precisions:")
    for be, ps in r["precisions"].items():
        for p, s in ps.items():
            lines.append(f"  {be:<12} {p:<5} {'yes' if s['usable'] else 'no  (' + s['reason'] + ')'}")
    return "\n".join(lines)
