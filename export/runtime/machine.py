"""What machine a measurement was taken on (Python 3.6+, stdlib only).

Every latency record carries this, so results from a Jetson and an x86 box
can sit in one file and never be confused.
"""

import hashlib
import os
import platform
import socket
import sys

_CACHE = {}


def _cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                # x86: "model name"; ARM (Jetson): "Hardware" / "Model" / "CPU part"
                if key.strip() in ("model name", "Hardware", "Model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def jetson_model():
    """The board name from the device tree (NUL-terminated there), or None."""
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        try:
            with open(path, "rb") as fh:
                text = fh.read().rstrip(b"\x00").decode("utf-8", "replace").strip()
            if text:
                return text
        except OSError:
            continue
    return None


def _physical_cores():
    try:
        seen = set()
        phys = core = None
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    phys = value.strip()
                elif key == "core id":
                    core = value.strip()
                elif not line.strip():
                    if core is not None:
                        seen.add((phys, core))
                    phys = core = None
        return len(seen) or None
    except OSError:
        return None


def machine_info():
    """CPU model, cores, OS, Python and a hash of the host name (never the name itself). Cached."""
    if "info" in _CACHE:
        return _CACHE["info"]
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    host = socket.gethostname()
    info = {
        "cpu": _cpu_model(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "usable_cores": usable,
        "os": "{} {}".format(platform.system(), platform.release()),
        "python": sys.version.split()[0],
        "hostname_sha256": hashlib.sha256(host.encode("utf-8")).hexdigest()[:16],
    }
    board = jetson_model()
    if board:
        info["board"] = board
    _CACHE["info"] = info
    return info


def cpu_label(info=None):
    """A short label for the CPU of this machine (the ``device`` of CPU records)."""
    info = info or machine_info()
    return info.get("board") or info.get("cpu") or "cpu"
