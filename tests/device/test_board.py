"""Board state and energy (export/runtime/board.py): tegrastats lines of JetPack 4.6, 5.1 and 6, a fake sysfs
tree laid out like a board's, and run.py bench on it with fake tegrastats/nvpmodel executables on PATH."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from board_fixtures import TEGRASTATS, board_env, fake_tools, make_board
from edgeprune.export.runtime import board as B
from export_fixtures import shared_bundle


# ------------------------------------------------------------ tegrastats formats, values read by hand

def test_jetpack46_nano_line():
    s = B.parse_tegrastats(TEGRASTATS["jp46-nano"])
    assert s["date"] is None and s["ram_mb"] == (331, 3964)
    assert s["cpu"] == [{"load_pct": 4, "mhz": 102}, {"load_pct": 3, "mhz": 102}, {"load_pct": 0, "mhz": 102},
                        {"load_pct": 0, "mhz": 102}]
    assert s["emc"] == {"load_pct": 3, "mhz": 204} and s["gr3d"] == {"load_pct": 0, "mhz": 76}
    assert s["temps_c"] == {"PLL": 20.5, "CPU": 23.5, "GPU": 22.5, "AO": 27.5, "thermal": 23.0}  # PMIC left out
    assert s["rails_mw"] == {"POM_5V_IN": (933.0, 933.0), "POM_5V_GPU": (0.0, 0.0), "POM_5V_CPU": (84.0, 105.0)}
    assert B.total_power_mw(s) == ("POM_5V_IN", 933.0)  # the board input, sub-rails not added


def test_jetpack51_xavier_nx_line():
    s = B.parse_tegrastats(TEGRASTATS["jp51-xaviernx"])
    assert s["cpu"][2] is None and s["cpu"][3] is None and s["cpu"][0] == {"load_pct": 10, "mhz": 1420}
    assert s["gr3d"] == {"load_pct": 45, "mhz": 1109} and s["emc"] == {"load_pct": 0, "mhz": 1600}
    assert "iwlwifi" not in s["temps_c"] and s["temps_c"]["GPU"] == 37.5  # -256 C = offline sensor
    assert s["rails_mw"]["VDD_CPU_GPU_CV"] == (1563.0, 1402.0)
    assert B.total_power_mw(s) == ("VDD_IN", 5079.0)


def test_jetpack6_orin_line_with_date_and_non_root():
    s = B.parse_tegrastats(TEGRASTATS["jp6-orin"])
    assert s["date"] == "05-15-2025 18:30:28" and s["ram_mb"] == (6982, 7620)
    assert len(s["cpu"]) == 6 and s["emc"]["mhz"] == 3199 and s["gr3d"] == {"load_pct": 84, "mhz": 713}
    assert s["temps_c"]["tj"] == 65.562 and s["temps_c"]["gpu"] == 64.062
    assert B.total_power_mw(s) == ("VDD_IN", 17946.0) and s["rails_mw"]["VDD_IN"][1] == 15710.0
    u = B.parse_tegrastats(TEGRASTATS["jp6-orin-user"])
    assert u["emc"] == {"load_pct": 0, "mhz": None} and u["gr3d"] == {"load_pct": 0, "mhz": None}
    assert B.parse_tegrastats("") is None and B.parse_tegrastats("tegrastats: command failed") is None


def test_nvpmodel_output():
    assert B.parse_nvpmodel("NVPM WARN: fan mode is not set!\nNV Power Mode: MAXN_SUPER\n2\n") == \
        {"mode": "MAXN_SUPER", "id": 2}
    assert B.parse_nvpmodel("NV Power Mode: 15W\n0")["mode"] == "15W"


# ------------------------------------------------------------ a fake sysfs tree

@pytest.mark.parametrize("name,soc,l4t,jp", [("nano-jp46", "tegra210", "32.6.1", "4.6"),
                                             ("xaviernx-jp51", "tegra194", "35.2.1", "5.1"),
                                             ("orinnx-jp6", "tegra234", "36.3.0", "6.0")])
def test_identity_and_clocks_from_sysfs(tmp_path, name, soc, l4t, jp):
    root = make_board(tmp_path, name, locked=True, gpu_mhz=918, cpu_khz=1479000, cpus=4)
    ident = B.identity(str(root))
    assert ident["jetson"] and ident["soc"] == soc and ident["l4t"] == l4t and ident["jetpack"] == jp
    assert "\x00" not in ident["model"] and ident["model"].startswith("NVIDIA")
    ck = B.clocks(str(root))
    assert ck["gpu_hz"] == 918000000 and ck["cpu_khz"] == [1479000] * 4  # the offline cpu4 is not counted
    assert ck["emc_hz"] is None  # root-only debugfs, absent here
    assert B.clocks_locked(ck) is True
    assert B.temperatures(str(root)) == {"CPU-therm": 41.5, "GPU-therm": 40.0}  # -256 C: offline


def test_unlocked_and_not_a_jetson(tmp_path):
    root = make_board(tmp_path / "b", "orinnx-jp6", locked=False)
    assert B.clocks_locked(B.clocks(str(root))) is False
    empty = tmp_path / "x86"
    empty.mkdir()
    assert B.identity(str(empty)) == {"jetson": False, "state": "not a Jetson"}
    m = B.BoardMonitor(energy=True, root=str(empty))
    assert m.fields(m.snapshot(), m.snapshot(), None, 1.0, 1) == {
        "board": {"jetson": False, "state": "not a Jetson"}, "energy": {"available": False, "reason": "not a Jetson"}}


def test_ina3221_rails_both_layouts(tmp_path):
    h = make_board(tmp_path / "h", "orinnx-jp6", ina="hwmon")
    assert B.ina_rails(str(h)) == {"VDD_IN": 6000.0, "VDD_CPU_GPU_CV": 1500.0, "VDD_SOC": 1250.0}  # mV x mA / 1000
    i = make_board(tmp_path / "i", "nano-jp46", ina="iio")
    assert B.ina_rails(str(i)) == {"POM_5V_IN": 2950.0, "POM_5V_GPU": 410.0, "POM_5V_CPU": 700.0}


# ------------------------------------------------------------ run.py bench on a fake board, real subprocesses

def _bench(bundle, env, *extra):
    r = subprocess.run([sys.executable, str(bundle / "run.py"), "bench", "--batch", "2", "--precision", "fp32",
                        "--warmup", "2", "--json", *extra], capture_output=True, text=True, timeout=120, env=env,
                       cwd="/")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["records"][0], r.stderr


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return shared_bundle(tmp_path_factory)[0]


def test_bench_energy_from_tegrastats(bundle, tmp_path):
    root = make_board(tmp_path / "root", "orinnx-jp6", locked=True, gpu_mhz=918)
    # VDD_IN now 5000 mW (its running average 4000 must not be used); sub-rails must not be added
    line = ("RAM 2000/7620MB (lfb 5x1MB) CPU [50%@1984,40%@1984,30%@1984,20%@1984] EMC_FREQ 10%@3199 "
            "GR3D_FREQ 60%@[918] cpu@50.1C tj@52.25C VDD_IN 5000mW/4000mW VDD_CPU_GPU_CV 2100mW/2000mW "
            "VDD_SOC 1000mW/1000mW")
    tools = fake_tools(tmp_path / "bin", [line], mode="MAXN_SUPER", mode_id=2)
    rec, err = _bench(bundle, board_env(root, tools), "--duration-ms", "600", "--min-iters", "5", "--energy",
                      "--energy-interval-ms", "50")
    b, e = rec["board"], rec["energy"]
    assert b["jetson"] and b["model"] == "NVIDIA Orin NX Developer Kit" and b["jetpack"] == "6.0"
    assert b["nvpmodel"] == {"mode": "MAXN_SUPER", "id": 2} and b["clocks_locked"] is True
    assert b["before"]["gpu_hz"] == b["after"]["gpu_hz"] == 918000000
    assert b["peak_temp_c"] == 52.25 and b["peak_temp_sensor"] == "tj"  # from tegrastats, above sysfs' 41.5
    assert b["throttled"] is False and b["warnings"] == [] and "warning" not in err
    assert e["available"] and e["source"] == "tegrastats" and e["rail"] == "VDD_IN" and e["samples"] >= 3
    assert e["avg_power_mw"] == 5000.0
    assert e["mj_per_frame"] == pytest.approx(5000.0 * rec["mean_ms"] / 1000.0 / 2)


def test_bench_throttling_and_unlocked_warning(bundle, tmp_path):
    root = make_board(tmp_path / "root", "xaviernx-jp51", locked=True, gpu_mhz=1109)
    tools = fake_tools(tmp_path / "bin", [TEGRASTATS["jp51-xaviernx"].replace("GR3D_FREQ 45%@[1109]",
                                                                               "GR3D_FREQ 99%@[599]")])
    rec, err = _bench(bundle, board_env(root, tools), "--duration-ms", "400", "--energy", "--energy-interval-ms", "50")
    assert rec["board"]["throttled"] is True and "GR3D at 599 MHz" in rec["board"]["throttle_evidence"][0]
    assert "throttling seen" in err
    root2 = make_board(tmp_path / "root2", "xaviernx-jp51", locked=False)
    rec, err = _bench(bundle, board_env(root2, tools), "--iters", "5")
    assert rec["board"]["clocks_locked"] is False and rec["board"]["throttled"] is None and "energy" not in rec
    assert "edgeprune: warning: clocks are not locked" in err


def test_bench_without_tegrastats_still_times(bundle, tmp_path):
    root = make_board(tmp_path / "root", "orinnx-jp6")
    rec, _ = _bench(bundle, board_env(root), "--iters", "5", "--energy")
    assert rec["iterations"] == 5 and rec["median_ms"] > 0
    assert rec["energy"]["available"] is False and "tegrastats not found" in rec["energy"]["reason"]
    assert rec["board"]["nvpmodel"]["mode"] is None and "nvpmodel not found" in rec["board"]["nvpmodel"]["error"]
    ina = make_board(tmp_path / "ina", "orinnx-jp6", ina="hwmon")
    rec, _ = _bench(bundle, board_env(ina), "--duration-ms", "300", "--energy", "--energy-interval-ms", "20")
    assert rec["energy"]["source"] == "ina3221-sysfs" and rec["energy"]["avg_power_mw"] == 6000.0


def test_bench_off_a_jetson(bundle, tmp_path):
    empty = tmp_path / "x86"
    empty.mkdir()
    rec, err = _bench(bundle, board_env(empty), "--iters", "3", "--energy")
    assert rec["board"] == {"jetson": False, "state": "not a Jetson"}
    assert rec["energy"] == {"available": False, "reason": "not a Jetson"} and "warning" not in err


def test_throttling_per_core_with_two_clusters(tmp_path):
    """Locked clocks on a board whose CPU clusters differ (like a TX2): each core is held to its own maximum."""
    root = make_board(tmp_path, "xaviernx-jp51", locked=True, cpu_khz=2035200, cpus=4)
    for n in (2, 3):
        for f in ("scaling_cur_freq", "scaling_min_freq", "scaling_max_freq"):
            (root / f"sys/devices/system/cpu/cpu{n}/cpufreq/{f}").write_text("1420800\n")
    ck = B.clocks(str(root))
    assert B.clocks_locked(ck) is True and ck["cpu_ids"] == [0, 1, 2, 3]
    fine = B.parse_tegrastats("RAM 1/2MB CPU [1%@2035,1%@2035,1%@1420,1%@1420] GR3D_FREQ 9%@[1109] VDD_IN 1/1")
    assert B._throttling(True, ck, ck, [fine]) == (False, [])
    slow = B.parse_tegrastats("RAM 1/2MB CPU [1%@1420,1%@2035,1%@1420,1%@1420] GR3D_FREQ 9%@[1109] VDD_IN 1/1")
    assert B._throttling(True, ck, ck, [slow]) == (True, ["tegrastats cpu0 at 1420 MHz, locked at 2035 MHz"])
    (root / "sys/devices/system/cpu/cpu3/cpufreq/scaling_cur_freq").write_text("1190400\n")
    assert B._throttling(True, ck, B.clocks(str(root)), []) == (
        True, ["cpu3 at 1190 MHz after the loop, locked at 1420 MHz"])


def test_energy_sampling_waits_for_a_slow_tegrastats(tmp_path):
    """tegrastats takes a while to start (here 0.8 s): the timed loop starts only after its first line, so even a
    loop of 0.3 s gets samples instead of 'no power sample during the timed loop'."""
    import time

    from edgeprune.export.runtime.board import EnergySampler

    tools = fake_tools(tmp_path / "bin", [TEGRASTATS["jp6-orin"]], startup_s=0.8)
    sampler = EnergySampler(tmp_path, interval_ms=100, tegrastats=str(tools / "tegrastats"))
    sampler.start()
    try:
        assert sampler.samples, "start() returned before tegrastats' first line"
        time.sleep(0.3)    # the timed loop
    finally:
        sampler.stop()
    got = sampler.summary(mean_ms=1.0, batch=1)
    assert got["available"] and got["samples"] >= 1, got
