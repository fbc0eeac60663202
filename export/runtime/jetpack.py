"""Which JetPack this board runs, and what to install for it (Python 3.6+, stdlib only).

Facts (L4T -> JetPack, Python, TensorRT, CUDA) from NVIDIA's release notes
as collected in the project's reference notes; the onnxruntime-gpu sources
are the Jetson Zoo (JetPack 4/5) and NVIDIA's jetson-ai-lab index (JetPack 6).
"""

import os
import re

# L4T release -> JetPack
L4T_TO_JETPACK = {"32.6.1": "4.6", "32.7.1": "4.6.1", "32.7.2": "4.6.2", "32.7.3": "4.6.3", "32.7.4": "4.6.4",
                  "32.7.5": "4.6.5", "32.7.6": "4.6.6",
                  "35.2.1": "5.1", "35.3.1": "5.1.1", "35.4.1": "5.1.2", "35.5.0": "5.1.3", "35.6.0": "5.1.4",
                  "36.3.0": "6.0", "36.4.0": "6.1", "36.4.3": "6.2"}
# JetPack major.minor -> (Python, TensorRT, CUDA)
JETPACK_STACK = {"4.6": ("3.6", "8.0", "10.2"), "4.6.1": ("3.6", "8.2", "10.2"), "5.1": ("3.8", "8.5", "11.4"),
                 "6.0": ("3.10", "8.6", "12.2"), "6.1": ("3.10", "10.3", "12.6"), "6.2": ("3.10", "10.3", "12.6")}
# highest ONNX opset each TensorRT's ONNX parser takes (onnx-tensorrt docs/operators.md per release branch;
# 10.3 not found there, assumed as 10.0/10.1; 10.8 and 11.0 as edgeprune doctor has listed them)
TRT_MAX_OPSET = ((8, 0, 13), (8, 2, 13), (8, 4, 17), (8, 5, 17), (8, 6, 17), (10, 0, 20), (10, 3, 20), (10, 8, 22),
                 (11, 0, 23))


def l4t_release(path="/etc/nv_tegra_release"):
    """'35.3.1' from the first line of /etc/nv_tegra_release, or None off a Jetson."""
    try:
        with open(path, "r") as fh:
            line = fh.readline()
    except (OSError, UnicodeDecodeError):
        return None
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", line)
    return "{}.{}".format(m.group(1), m.group(2)) if m else None


def jetpack_version(l4t=None):
    """The JetPack of an L4T release (nearest known release of the same L4T major.minor)."""
    l4t = l4t or l4t_release()
    if not l4t:
        return None
    if l4t in L4T_TO_JETPACK:
        return L4T_TO_JETPACK[l4t]
    mm = ".".join(l4t.split(".")[:2])
    best = None
    for k, v in sorted(L4T_TO_JETPACK.items(), key=lambda kv: [int(p) for p in kv[0].split(".")]):
        if k.startswith(mm + "."):
            best = v
    return best


def trt_max_opset(version):
    """Highest ONNX opset the ONNX parser of TensorRT ``version`` ('8.2.1') takes, or None if unknown."""
    if not version:
        return None
    try:
        mm = tuple(int(v) for v in str(version).split(".")[:2])
    except ValueError:
        return None
    best = None
    for major, minor, opset in TRT_MAX_OPSET:
        if (major, minor) <= mm:
            best = opset
    return best


def tensorrt_hint(jetpack=None):
    """How to get TensorRT's Python bindings here."""
    if jetpack is None and os.path.exists("/etc/nv_tegra_release"):
        jetpack = jetpack_version()
    if jetpack:
        return "sudo apt install python3-libnvinfer (TensorRT's Python bindings; they come with JetPack {})".format(
            jetpack)
    return ("sudo apt install python3-libnvinfer on a Jetson (it comes with JetPack), or pip install tensorrt "
            "--extra-index-url https://pypi.nvidia.com on x86 with an NVIDIA GPU")


def install_hint(jetpack=None):
    """What to install to run a bundle: ONNX Runtime or TensorRT, for this JetPack (or an x86 host)."""
    if jetpack is None and os.path.exists("/etc/nv_tegra_release"):
        jetpack = jetpack_version()
    if not jetpack:
        return ("pip install onnxruntime (CPU) or onnxruntime-gpu; or TensorRT's Python bindings "
                "(pip install tensorrt from NVIDIA's index, with pycuda or cuda-python)")
    major = jetpack.split(".")[0]
    trt = "sudo apt install python3-libnvinfer (TensorRT's Python bindings; they come with JetPack {})".format(jetpack)
    if major == "4":
        ort = ("the onnxruntime-gpu cp36 wheel for JetPack 4.6 from the Jetson Zoo "
               "(https://elinux.org/Jetson_Zoo#ONNX_Runtime), or pip install onnxruntime==1.10.0 for the CPU")
    elif major == "5":
        ort = ("the onnxruntime-gpu cp38 wheel for JetPack 5 from the Jetson Zoo "
               "(https://elinux.org/Jetson_Zoo#ONNX_Runtime), or pip install onnxruntime for the CPU")
    else:
        ort = ("pip install onnxruntime-gpu --index-url https://pypi.jetson-ai-lab.io/jp6/cu126 "
               "(or pip install onnxruntime for the CPU)")
    return "JetPack {}: {}; or {}".format(jetpack, trt, ort)
