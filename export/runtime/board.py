"""Jetson board state and energy for latency records (Python 3.6+, stdlib only).

What decides a latency on a Jetson, read the way NVIDIA's tools expose it
(paths and formats: the project's reference notes on Jetson, section 4-5):

- model (``/proc/device-tree/model``, NUL-terminated), SoC
  (``/proc/device-tree/compatible``), L4T release (``/etc/nv_tegra_release``)
  and its JetPack;
- the power mode (``nvpmodel -q``: ``NV Power Mode: NAME`` then the id);
- clocks: GPU devfreq (Hz), EMC (root-only debugfs, Hz), every online CPU's
  cpufreq (kHz), before and after the timed loop; "locked" means what
  ``jetson_clocks`` leaves behind: min == max on the GPU and every online CPU;
- thermal zones (m°C; -256 °C is an offline sensor): the peak seen;
- throttling: with locked clocks, a frequency below its locked value during or
  after the timed loop.

``--energy`` samples ``tegrastats --interval MS`` (or, without tegrastats, the
INA3221 rails in sysfs: iio ``in_power<k>_input`` mW on L4T 32, hwmon mV x mA
on L4T 35/36) during the timed loop only, and adds the board's average input
power and millijoules per frame (total board power, idle share included).

All paths are under a root (``EDGEPRUNE_BOARD_ROOT`` or the ``root`` argument,
default ``/``) so tests read a fake tree laid out like a board's. On a machine
that is not a Jetson every field says so and nothing fails.
"""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

from .jetpack import jetpack_version, l4t_release

NOT_JETSON = "not a Jetson"
ROOT_ENV = "EDGEPRUNE_BOARD_ROOT"
GPU_NODES = ("gpu", "gv11b", "ga10b", "gp10b")
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")  # board input; never add the sub-rails to these
EMC_PATHS = ("/sys/kernel/debug/bpmp/debug/clk/emc/rate",        # t186 / t194 / t234
             "/sys/kernel/debug/clk/override.emc/clk_rate")      # t210 (Nano, TX1)
NOT_A_TEMPERATURE = ("PMIC",)  # tegrastats' PMIC entry on the Nano is a fixed placeholder, not a sensor (jtop skips it)


# ------------------------------------------------------------------ files under the root

def board_root(root=None):
    return root if root is not None else os.environ.get(ROOT_ENV) or "/"


def _path(root, path):
    return os.path.join(root, path.lstrip("/"))


def _read(root, path, binary=False):
    try:
        with open(_path(root, path), "rb") as fh:
            data = fh.read()
    except (OSError, IOError):
        return None
    return data if binary else data.decode("utf-8", "replace").strip().rstrip("\x00").strip()


def _int(text):
    try:
        return int(str(text).strip().split()[0])
    except (TypeError, ValueError, IndexError):
        return None


# ------------------------------------------------------------------ tegrastats lines

_DATE = re.compile(r"^(\d\d-\d\d-\d{4} \d\d:\d\d:\d\d)\s+")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_CPU = re.compile(r"\bCPU \[([^\]]*)\]")
_CORE = re.compile(r"^(\d+)%@(\d+)$")
_ENGINE = re.compile(r"\b(EMC_FREQ|GR3D_FREQ) (\d+)%(?:@\[?([\d,]+)\]?)?")
_TEMP = re.compile(r"\b([A-Za-z][\w]*)@(-?\d+(?:\.\d+)?)C\b")
_RAIL = re.compile(r"\b([A-Za-z]\w*) ([0-9.]+)(m?)W?/([0-9.]+)(m?)W?(?=\s|$)")


def parse_tegrastats(line):
    """One tegrastats line as a dict (JetPack 4.6, 5.1 and 6 formats), or None if it is not one.

    Keys: ``date`` (L4T 35+ prefix, else None), ``ram_mb`` (used, total),
    ``cpu`` (list of {load_pct, mhz} or None for an offline core),
    ``emc``/``gr3d`` ({load_pct, mhz or None}; without root there is no
    frequency), ``temps_c`` {sensor: °C} (offline sensors and PMIC left out),
    ``rails_mw`` {rail: (current, average)}; the power of JetPack 4 has no
    unit and is mW, JetPack 5+ prints ``mW``.
    """
    line = str(line).strip()
    if not line:
        return None
    out = {"date": None, "ram_mb": None, "cpu": None, "emc": None, "gr3d": None, "temps_c": {}, "rails_mw": {}}
    m = _DATE.match(line)
    if m:
        out["date"] = m.group(1)
        line = line[m.end():]
    m = _RAM.search(line)
    if m:
        out["ram_mb"] = (int(m.group(1)), int(m.group(2)))
    m = _CPU.search(line)
    if m:
        cores = []
        for part in m.group(1).split(","):
            c = _CORE.match(part.strip())
            cores.append({"load_pct": int(c.group(1)), "mhz": int(c.group(2))} if c else None)
        out["cpu"] = cores
    for m in _ENGINE.finditer(line):
        mhz = None
        if m.group(3):
            mhz = max(int(v) for v in m.group(3).split(",") if v)  # Orin: one value per GPC
        out["emc" if m.group(1) == "EMC_FREQ" else "gr3d"] = {"load_pct": int(m.group(2)), "mhz": mhz}
    for m in _TEMP.finditer(line):
        name, value = m.group(1), float(m.group(2))
        if name in NOT_A_TEMPERATURE or value <= -256.0:
            continue
        out["temps_c"][name] = value
    for m in _RAIL.finditer(line):
        name = m.group(1)
        if name in ("RAM", "SWAP", "IRAM", "lfb", "cached"):
            continue
        out["rails_mw"][name] = (float(m.group(2)), float(m.group(4)))
    if out["ram_mb"] is None and out["cpu"] is None and not out["rails_mw"]:
        return None
    return out


def total_power_mw(sample):
    """(rail name, mW now) of the board's input rail, else the sum of all rails named as such, else (None, None)."""
    rails = sample.get("rails_mw") or {}
    for name in TOTAL_RAILS:
        if name in rails:
            return name, rails[name][0]
    if rails:
        return "sum of " + "+".join(sorted(rails)), sum(v[0] for v in rails.values())
    return None, None


# ------------------------------------------------------------------ board identity and clocks

def is_jetson(root=None):
    root = board_root(root)
    if os.path.exists(_path(root, "/etc/nv_tegra_release")):
        return True
    compat = _read(root, "/proc/device-tree/compatible", binary=True) or b""
    return b"nvidia,tegra" in compat


def soc(root=None):
    compat = _read(board_root(root), "/proc/device-tree/compatible", binary=True) or b""
    for part in compat.split(b"\x00"):
        part = part.decode("utf-8", "replace")
        if part.startswith("nvidia,tegra"):
            return part.split(",", 1)[1]
    return None


def nvpmodel(timeout=10):
    """{"mode": NAME, "id": N} from ``nvpmodel -q``, or {"mode": None, "id": None, "error": why}."""
    exe = shutil.which("nvpmodel") or ("/usr/sbin/nvpmodel" if os.path.exists("/usr/sbin/nvpmodel") else None)
    if exe is None:
        return {"mode": None, "id": None, "error": "nvpmodel not found"}
    try:
        p = subprocess.Popen([exe, "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        text, err = p.communicate(timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"mode": None, "id": None, "error": "nvpmodel -q failed: {}".format(exc)}
    return parse_nvpmodel(text) if "NV Power Mode" in text else {
        "mode": None, "id": None, "error": "nvpmodel -q printed no power mode (exit {}): {}".format(
            p.returncode, (err.strip().splitlines() or [""])[-1][:200])}


def parse_nvpmodel(text):
    lines = [ln.strip() for ln in str(text).splitlines()]
    for i, ln in enumerate(lines):
        m = re.search(r"NV Power Mode: (\w+)", ln)
        if m:
            mode_id = None
            for nxt in lines[i + 1:]:
                if re.match(r"^\d+$", nxt):
                    mode_id = int(nxt)
                    break
                if nxt and not nxt.startswith("NVPM"):
                    break
            return {"mode": m.group(1), "id": mode_id}
    return {"mode": None, "id": None, "error": "no 'NV Power Mode' line"}


def gpu_devfreq(root=None):
    """The GPU's devfreq folder (found by its device-tree node name), or None."""
    root = board_root(root)
    for d in sorted(glob.glob(_path(root, "/sys/class/devfreq/*"))):
        name = (_read(root, os.path.relpath(os.path.join(d, "device", "of_node", "name"), root)) or "")
        if name in GPU_NODES:
            return d
    return None


def clocks(root=None):
    """GPU (Hz), EMC (Hz, None without root), CPU (kHz, per online core) frequencies now."""
    root = board_root(root)
    out = {"gpu_hz": None, "gpu_min_hz": None, "gpu_max_hz": None, "emc_hz": None, "cpu_ids": [], "cpu_khz": [],
           "cpu_min_khz": [], "cpu_max_khz": [], "cpu_governor": []}
    g = gpu_devfreq(root)
    if g:
        rel = os.path.relpath(g, root)
        out["gpu_hz"] = _int(_read(root, os.path.join(rel, "cur_freq")))
        out["gpu_min_hz"] = _int(_read(root, os.path.join(rel, "min_freq")))
        out["gpu_max_hz"] = _int(_read(root, os.path.join(rel, "max_freq")))
    for p in EMC_PATHS:
        v = _int(_read(root, p))
        if v:
            out["emc_hz"] = v
            break
    cpus = []
    for d in glob.glob(_path(root, "/sys/devices/system/cpu/cpu[0-9]*")):
        m = re.search(r"cpu(\d+)$", d)
        if m:
            cpus.append(int(m.group(1)))
    for n in sorted(cpus):
        base = "/sys/devices/system/cpu/cpu{}".format(n)
        online = _read(root, base + "/online")
        if online is not None and online.strip() == "0":
            continue
        cur = _int(_read(root, base + "/cpufreq/scaling_cur_freq"))
        if cur is None:
            continue
        out["cpu_ids"].append(n)
        out["cpu_khz"].append(cur)
        out["cpu_min_khz"].append(_int(_read(root, base + "/cpufreq/scaling_min_freq")))
        out["cpu_max_khz"].append(_int(_read(root, base + "/cpufreq/scaling_max_freq")))
        out["cpu_governor"].append(_read(root, base + "/cpufreq/scaling_governor"))
    return out


def clocks_locked(ck):
    """True when the GPU and every online CPU have min == max (what jetson_clocks sets); None if unreadable."""
    if ck.get("gpu_min_hz") is None or not ck.get("cpu_khz"):
        return None
    if ck["gpu_min_hz"] != ck["gpu_max_hz"]:
        return False
    return all(lo is not None and lo == hi for lo, hi in zip(ck["cpu_min_khz"], ck["cpu_max_khz"]))


def temperatures(root=None):
    """{zone type: °C} of the thermal zones, offline sensors (-256 °C) left out."""
    root = board_root(root)
    out = {}
    for d in sorted(glob.glob(_path(root, "/sys/devices/virtual/thermal/thermal_zone*"))):
        rel = os.path.relpath(d, root)
        t = _int(_read(root, os.path.join(rel, "temp")))
        name = _read(root, os.path.join(rel, "type")) or os.path.basename(d)
        if t is None or t <= -256000:
            continue
        out[name] = t / 1000.0
    return out


def identity(root=None):
    """Model, SoC, L4T and JetPack of this board (cached per root), or {"jetson": False, ...}."""
    root = board_root(root)
    if not is_jetson(root):
        return {"jetson": False, "state": NOT_JETSON}
    l4t = l4t_release(_path(root, "/etc/nv_tegra_release"))
    model = _read(root, "/proc/device-tree/model")
    return {"jetson": True, "model": model or None, "soc": soc(root), "l4t": l4t,
            "jetpack": jetpack_version(l4t) if l4t else None}


# ------------------------------------------------------------------ power rails in sysfs

def ina_rails(root=None):
    """{rail: mW} of the INA3221 monitors: iio (L4T 32, ``in_power<k>_input``) or hwmon (L4T 35+, mV x mA)."""
    root = board_root(root)
    out = {}
    for dev in sorted(glob.glob(_path(root, "/sys/bus/i2c/drivers/ina3221x/*/iio:device*"))):
        for lab in sorted(glob.glob(os.path.join(dev, "rail_name_*"))):
            k = lab.rsplit("_", 1)[1]
            name = _read(root, os.path.relpath(lab, root))
            mw = _int(_read(root, os.path.relpath(os.path.join(dev, "in_power{}_input".format(k)), root)))
            if name and mw is not None:
                out[name] = float(mw)
    pats = ("/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*", "/sys/bus/i2c/devices/*/hwmon/hwmon*")
    seen = set()
    for pat in pats:
        for dev in sorted(glob.glob(_path(root, pat))):
            real = os.path.realpath(dev)
            if real in seen:
                continue
            seen.add(real)
            for lab in sorted(glob.glob(os.path.join(dev, "in*_label"))):
                k = re.search(r"in(\d+)_label$", lab).group(1)
                name = _read(root, os.path.relpath(lab, root))
                if not name or name == "NC" or "sum of shunt" in name.lower():
                    continue
                mv = _int(_read(root, os.path.relpath(os.path.join(dev, "in{}_input".format(k)), root)))
                ma = _int(_read(root, os.path.relpath(os.path.join(dev, "curr{}_input".format(k)), root)))
                if mv is not None and ma is not None:
                    out[name] = mv * ma / 1000.0
    return out


# ------------------------------------------------------------------ sampling during the timed loop

class EnergySampler(object):
    """Samples tegrastats (or the INA3221 rails) from ``start()`` to ``stop()`` in a background thread."""

    def __init__(self, root=None, interval_ms=100, tegrastats=None):
        self.root = board_root(root)
        self.interval_ms = max(10, int(interval_ms))
        self.tegrastats = tegrastats
        self.samples = []      # (perf_counter s, parsed tegrastats dict)
        self.source = None
        self.reason = None
        self._proc = None
        self._thread = None
        self._stop = threading.Event()
        self._first = threading.Event()   # tegrastats' first sample arrived
        self.t0 = self.t1 = None

    def _find_tegrastats(self):
        if self.tegrastats:
            return self.tegrastats
        return shutil.which("tegrastats") or ("/usr/bin/tegrastats" if os.path.exists("/usr/bin/tegrastats") else None)

    def start(self):
        """Start sampling. With tegrastats, wait (a few intervals, at least 2 s) for its first line before the
        timed loop may start: tegrastats takes a while to start, and a short loop would otherwise see no sample."""
        self.t0 = time.perf_counter()
        exe = self._find_tegrastats()
        if exe:
            try:
                self._proc = subprocess.Popen([exe, "--interval", str(self.interval_ms)], stdout=subprocess.PIPE,
                                              stderr=subprocess.DEVNULL, universal_newlines=True, bufsize=1,
                                              preexec_fn=os.setsid)
            except OSError as exc:
                self.reason = "tegrastats could not start: {}".format(exc)
            else:
                self.source = "tegrastats"
                self._thread = threading.Thread(target=self._read_tegrastats)
                self._thread.daemon = True
                self._thread.start()
                self._first.wait(max(2.0, 5 * self.interval_ms / 1000.0))
                self.t0 = time.perf_counter()
                return
        if ina_rails(self.root):
            self.source = "ina3221-sysfs"
            self._thread = threading.Thread(target=self._poll_rails)
            self._thread.daemon = True
            self._thread.start()
            return
        self.reason = self.reason or ("tegrastats not found (not on PATH, no /usr/bin/tegrastats) and no INA3221 "
                                      "power rails under /sys; timing ran without energy")

    def _read_tegrastats(self):
        for line in self._proc.stdout:
            s = parse_tegrastats(line)
            if s is not None:
                self.samples.append((time.perf_counter(), s))
                self._first.set()
            if self._stop.is_set():
                break

    def _poll_rails(self):
        while not self._stop.is_set():
            rails = ina_rails(self.root)
            if rails:
                self.samples.append((time.perf_counter(), {"rails_mw": dict((k, (v, v)) for k, v in rails.items()),
                                                           "temps_c": {}, "gr3d": None, "cpu": None}))
            self._stop.wait(self.interval_ms / 1000.0)

    def stop(self):
        self.t1 = time.perf_counter()
        self._stop.set()
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, signal.SIGTERM)
            except OSError:
                pass
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                self._proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._proc is not None and self._proc.stdout:
            self._proc.stdout.close()

    def in_loop(self):
        """Samples that arrived while the timed loop ran (a sample covers the interval before it)."""
        if self.t0 is None or self.t1 is None:
            return []
        return [s for t, s in self.samples if self.t0 < t <= self.t1 + self.interval_ms / 1000.0]

    def summary(self, mean_ms, batch):
        """The record's ``energy`` field: average input power and mJ per frame, or why there is none."""
        if self.source is None:
            return {"available": False, "reason": self.reason}
        got = [s for s in self.in_loop() if total_power_mw(s)[0] is not None]
        if not got:
            return {"available": False, "source": self.source,
                    "reason": "no power sample during the {:.0f} ms timed loop ({} ms interval); time for longer "
                              "(--duration-ms)".format((self.t1 - self.t0) * 1000.0, self.interval_ms)}
        rail = total_power_mw(got[0])[0]
        powers = [total_power_mw(s)[1] for s in got]
        avg = sum(powers) / len(powers)
        per_call = avg * float(mean_ms) / 1000.0  # mW x ms = uJ; / 1000 = mJ
        return {"available": True, "source": self.source, "rail": rail, "samples": len(powers),
                "interval_ms": self.interval_ms, "avg_power_mw": avg, "min_power_mw": min(powers),
                "max_power_mw": max(powers), "mj_per_call": per_call, "mj_per_frame": per_call / max(1, int(batch)),
                "note": "board input power while the timed loop ran (idle share included)"}


# ------------------------------------------------------------------ one record's board fields

class BoardMonitor(object):
    """Board state before/after each measurement and (with ``energy``) power during its timed loop."""

    def __init__(self, energy=False, interval_ms=100, root=None, warn=None):
        self.root = board_root(root)
        self.energy = bool(energy)
        self.interval_ms = interval_ms
        self.ident = identity(self.root)
        self.jetson = self.ident["jetson"]
        self.power = nvpmodel() if self.jetson else None
        self._warned = False
        self._warn = warn or (lambda msg: sys.stderr.write("edgeprune: warning: {}\n".format(msg)))

    def snapshot(self):
        if not self.jetson:
            return None
        ck = clocks(self.root)
        ck["temps_c"] = temperatures(self.root)
        return ck

    def measure(self, fn):
        """Run ``fn(on_timed_start)`` (which returns (times, warm, ...)); return its result and the fields."""
        before = self.snapshot()
        sampler = EnergySampler(self.root, self.interval_ms) if (self.energy and self.jetson) else None
        state = {"started": False}

        def on_start():
            if sampler is not None and not state["started"]:
                state["started"] = True
                sampler.start()

        try:
            result = fn(on_start)
        finally:
            if sampler is not None and state["started"]:
                sampler.stop()
        after = self.snapshot()
        return result, (before, after, sampler)

    def fields(self, before, after, sampler, mean_ms, batch):
        """``board`` (and ``energy`` with --energy) of one record."""
        if not self.jetson:
            out = {"board": {"jetson": False, "state": NOT_JETSON}}
            if self.energy:
                out["energy"] = {"available": False, "reason": NOT_JETSON}
            return out
        locked = clocks_locked(before)
        board = dict(self.ident)
        board.update({"nvpmodel": self.power, "clocks_locked": locked,
                      "before": _freqs(before), "after": _freqs(after)})
        temps = dict(before.get("temps_c") or {})
        for name, t in (after.get("temps_c") or {}).items():
            temps[name] = max(t, temps.get(name, t))
        samples = sampler.in_loop() if sampler is not None else []
        for s in samples:
            for name, t in (s.get("temps_c") or {}).items():
                temps[name] = max(t, temps.get(name, t))
        if temps:
            hot = max(temps, key=lambda k: temps[k])
            board["peak_temp_c"], board["peak_temp_sensor"] = temps[hot], hot
        else:
            board["peak_temp_c"], board["peak_temp_sensor"] = None, None
        board["throttled"], board["throttle_evidence"] = _throttling(locked, before, after, samples)
        warnings = []
        if locked is False:
            warnings.append("clocks are not locked (min != max frequency): latency varies with DVFS; run "
                            "'sudo jetson_clocks' before timing")
        elif locked is None:
            warnings.append("cannot tell whether clocks are locked (GPU devfreq or cpufreq unreadable)")
        if board["throttled"]:
            warnings.append("throttling seen: " + "; ".join(board["throttle_evidence"][:3]))
        board["warnings"] = warnings
        for w in warnings:
            if not self._warned:
                self._warn(w)
        self._warned = self._warned or bool(warnings)
        out = {"board": board}
        if self.energy:
            out["energy"] = sampler.summary(mean_ms, batch) if sampler is not None else {
                "available": False, "reason": "the timed loop never started"}
        return out


def _freqs(ck):
    return {"gpu_hz": ck.get("gpu_hz"), "emc_hz": ck.get("emc_hz"), "cpu_khz": list(ck.get("cpu_khz") or []),
            "gpu_max_hz": ck.get("gpu_max_hz"), "cpu_max_khz": list(ck.get("cpu_max_khz") or []),
            "cpu_governor": sorted(set(g for g in ck.get("cpu_governor") or [] if g))}


def _throttling(locked, before, after, samples):
    """(True/False/None, evidence): a frequency below its locked value with locked clocks."""
    if not locked:
        return None, ["clocks not locked: frequency changes are DVFS, not throttling"] if locked is False else []
    ev = []
    gmax = before.get("gpu_max_hz")
    if gmax and after.get("gpu_hz") is not None and after["gpu_hz"] < gmax:
        ev.append("GPU at {} MHz after the loop, locked at {} MHz".format(after["gpu_hz"] // 1000000, gmax // 1000000))
    locked_khz = dict(zip(before.get("cpu_ids") or [], before.get("cpu_max_khz") or []))  # per core: clusters differ
    for n, cur in zip(after.get("cpu_ids") or [], after.get("cpu_khz") or []):
        hi = locked_khz.get(n)
        if hi and cur < hi:
            ev.append("cpu{} at {} MHz after the loop, locked at {} MHz".format(n, cur // 1000, hi // 1000))
    for s in samples:
        g = s.get("gr3d") or {}
        if gmax and g.get("mhz") is not None and g["mhz"] < gmax // 1000000 - 1:
            ev.append("tegrastats GR3D at {} MHz, locked at {} MHz".format(g["mhz"], gmax // 1000000))
            break
    for s in samples:  # tegrastats lists every core in order, offline ones as "off"
        lows = [(n, c["mhz"], locked_khz[n] // 1000) for n, c in enumerate(s.get("cpu") or [])
                if c and locked_khz.get(n) and c["mhz"] < locked_khz[n] // 1000 - 1]
        if lows:
            ev.append("tegrastats cpu{} at {} MHz, locked at {} MHz".format(*lows[0]))
            break
    return bool(ev), ev


def bench_backend_monitored(monitor, backend, batch, seed=0, warmup_ms=200.0, warmup_iters=None, duration_ms=1000.0,
                            iters=None, min_iters=10):
    """``bench.bench_backend`` with the board watched from the first timed run: (times ns, warm-up runs,
    (before, after, sampler))."""
    from .bench import bench_backend

    def run(on_start):
        return bench_backend(backend, batch, seed, warmup_ms, warmup_iters, duration_ms, iters, min_iters, on_start)

    (times, warm), watch = monitor.measure(run)
    return times, warm, watch
