"""Fake Jetson boards for tests: a sysfs/procfs tree laid out like a board's, and fake tegrastats/nvpmodel.

Paths and formats follow the project's reference notes on Jetson (section 4-5).
Recorded tegrastats lines:

- JetPack 4.6 (Nano, power unit-less mW): jtop's root-mode fixture line as the
  notes quote it, with the elided CPU loads filled in;
- JetPack 5.1 (Xavier NX, ``mW`` units, ``GR3D_FREQ x%@[MHz]``): no real line
  is published; this one is built from the documented JP5 format and rails;
- JetPack 6 (Orin 8 GB): the real line of rbonghi/jetson_stats#624, elided
  CPU cores and temperatures filled in.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

TEGRASTATS = {
    "jp46-nano": ("RAM 331/3964MB (lfb 758x4MB) SWAP 0/1982MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
                  "CPU [4%@102,3%@102,0%@102,0%@102] EMC_FREQ 3%@204 GR3D_FREQ 0%@76 APE 25 PLL@20.5C CPU@23.5C "
                  "PMIC@100C GPU@22.5C AO@27.5C thermal@23C POM_5V_IN 933/933 POM_5V_GPU 0/0 POM_5V_CPU 84/105"),
    "jp51-xaviernx": ("RAM 2400/7765MB (lfb 1x4MB) SWAP 0/3883MB (cached 0MB) "
                      "CPU [10%@1420,8%@1420,off,off,5%@1420,3%@1420] EMC_FREQ 0%@1600 GR3D_FREQ 45%@[1109] "
                      "APE 150 AUX@36.5C CPU@38C thermal@37.3C AO@36.5C GPU@37.5C iwlwifi@-256C "
                      "VDD_IN 5079mW/5079mW VDD_CPU_GPU_CV 1563mW/1402mW VDD_SOC 1441mW/1441mW"),
    "jp6-orin": ("05-15-2025 18:30:28 RAM 6982/7620MB (lfb 5x1MB) SWAP 2640/16384MB (cached 202MB) "
                 "CPU [97%@1984,95%@1984,96%@1984,98%@1984,94%@1984,97%@1984] EMC_FREQ 18%@3199 GR3D_FREQ 84%@[713] "
                 "NVENC 1%@115 NVDEC 40%@115 cpu@65.562C soc2@62.375C soc0@63.5C gpu@64.062C tj@65.562C soc1@62.718C "
                 "VDD_IN 17946mW/15710mW VDD_CPU_GPU_CV 8896mW/7585mW VDD_SOC 3923mW/3515mW"),
    # the same board without root: no EMC/GR3D frequencies
    "jp6-orin-user": ("RAM 6982/7620MB (lfb 5x1MB) SWAP 2640/16384MB (cached 202MB) CPU [5%@729,2%@729,off,off,"
                      "1%@729,0%@729] EMC_FREQ 0% GR3D_FREQ 0% cpu@45.5C tj@46.1C "
                      "VDD_IN 4010mW/4010mW VDD_CPU_GPU_CV 512mW/512mW VDD_SOC 1190mW/1190mW"),
}

BOARDS = {
    # name: (model, compatible, nv_tegra_release line, devfreq node folder, of_node name, SoC)
    "nano-jp46": ("NVIDIA Jetson Nano Developer Kit", "nvidia,p3450-0000\0nvidia,jetson-nano\0nvidia,tegra210\0",
                  "# R32 (release), REVISION: 6.1, GCID: 27863751, BOARD: t210ref, EABI: aarch64, DATE: Mon Jul 26",
                  "57000000.gpu", "gpu"),
    "xaviernx-jp51": ("NVIDIA Jetson Xavier NX Developer Kit", "nvidia,p3509-0000+p3668-0001\0nvidia,tegra194\0",
                      "# R35 (release), REVISION: 2.1, GCID: 32413640, BOARD: t186ref, EABI: aarch64, DATE: Tue Jan 24",
                      "17000000.gv11b", "gv11b"),
    "orinnx-jp6": ("NVIDIA Orin NX Developer Kit", "nvidia,p3768-0000+p3767-0000\0nvidia,p3767-0000\0nvidia,tegra234\0",
                   "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, DATE: Mon May  6",
                   "17000000.gpu", "gpu"),
}


def _w(path: Path, text) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(str(text) + "\n")


def make_board(root: Path, board: str = "orinnx-jp6", locked: bool = True, gpu_mhz: int = 918, cpu_khz: int = 1984000,
               cpus: int = 4, temps: dict | None = None, ina: str | None = None) -> Path:
    """A fake board tree under ``root`` (EDGEPRUNE_BOARD_ROOT)."""
    model, compat, release, node, of_name = BOARDS[board]
    _w(root / "proc/device-tree/model", (model + "\0").encode())
    _w(root / "proc/device-tree/compatible", compat.encode())
    _w(root / "etc/nv_tegra_release", release)
    dev = root / "sys/class/devfreq" / node
    _w(dev / "device/of_node/name", (of_name + "\0").encode())
    hz = gpu_mhz * 1000000
    _w(dev / "cur_freq", hz)
    _w(dev / "min_freq", hz if locked else 306000000)
    _w(dev / "max_freq", hz)
    for n in range(cpus):
        c = root / f"sys/devices/system/cpu/cpu{n}"
        if n:
            _w(c / "online", 1)
        _w(c / "cpufreq/scaling_cur_freq", cpu_khz)
        _w(c / "cpufreq/scaling_min_freq", cpu_khz if locked else 115200)
        _w(c / "cpufreq/scaling_max_freq", cpu_khz)
        _w(c / "cpufreq/scaling_governor", "schedutil")
    off = root / f"sys/devices/system/cpu/cpu{cpus}"   # an offline core: no cpufreq counted
    _w(off / "online", 0)
    for i, (name, mc) in enumerate((temps or {"CPU-therm": 41500, "GPU-therm": 40000, "PMIC-Die": -256000}).items()):
        z = root / f"sys/devices/virtual/thermal/thermal_zone{i}"
        _w(z / "type", name)
        _w(z / "temp", mc)
    if ina == "hwmon":   # L4T 35/36: mV and mA, no power file; in7 is the shunt sum
        h = root / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
        for k, (lab, mv, ma) in enumerate([("VDD_IN", 5000, 1200), ("VDD_CPU_GPU_CV", 5000, 300),
                                           ("VDD_SOC", 5000, 250)], 1):
            _w(h / f"in{k}_label", lab)
            _w(h / f"in{k}_input", mv)
            _w(h / f"curr{k}_input", ma)
        _w(h / "in7_label", "sum of shunt voltages")
        _w(h / "in7_input", 40)
    elif ina == "iio":   # L4T 32: in_power<k>_input in mW
        d = root / "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
        for k, (lab, mw) in enumerate([("POM_5V_IN", 2950), ("POM_5V_GPU", 410), ("POM_5V_CPU", 700)]):
            _w(d / f"rail_name_{k}", lab)
            _w(d / f"in_power{k}_input", mw)
    return root


def fake_tools(folder: Path, lines: list[str], mode: str = "MAXN", mode_id: int = 0, startup_s: float = 0.0) -> Path:
    """A folder for PATH with ``tegrastats`` (after ``startup_s``, prints ``lines`` in a loop, one per --interval)
    and ``nvpmodel``."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "lines.txt"
    data.write_text("\n".join(lines) + "\n")
    ts = folder / "tegrastats"
    ts.write_text(f"""#!{sys.executable}
import sys, time
ms = 1000
if "--interval" in sys.argv:
    ms = int(sys.argv[sys.argv.index("--interval") + 1])
lines = open({str(data)!r}).read().splitlines()
time.sleep({float(startup_s)!r})
i = 0
while True:
    time.sleep(ms / 1000.0)
    sys.stdout.write(lines[i % len(lines)] + "\\n")
    sys.stdout.flush()
    i += 1
""")
    nv = folder / "nvpmodel"
    nv.write_text(f"#!/bin/sh\necho 'NVPM WARN: fan mode is not set!'\necho 'NV Power Mode: {mode}'\necho {mode_id}\n")
    for f in (ts, nv):
        f.chmod(f.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


def board_env(root: Path, tools: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["EDGEPRUNE_BOARD_ROOT"] = str(root)
    path = env.get("PATH", "")
    env["PATH"] = (str(tools) + os.pathsep + path) if tools else path
    return env
