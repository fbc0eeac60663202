"""Remote profiling over SSH, for real: an OpenSSH server on 127.0.0.1 (high port, throw-away keys) stands in for
the board; the "board's" python is this machine's (numpy + onnxruntime). The bundle goes over ssh, its run.py
bench runs there, and the records come back tagged with the board; a study with [profile] remote shows the
board's latencies beside the host's; compare --results merges results and refuses other studies' models."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edgeprune_run import run_edgeprune
from export_fixtures import shared_bundle
from ssh_fixtures import start_sshd, stop_sshd
from study_configs import tiny_study


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    info = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield info
    finally:
        stop_sshd(info)
    assert info["proc"].poll() is not None  # the server is gone


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return shared_bundle(tmp_path_factory)[0]


def _profile(*args, timeout=300):
    return run_edgeprune("profile", *args, timeout=timeout)


def _listeners(port: int) -> list[str]:
    """Local addresses (hex, as the kernel lists them) of TCP sockets listening on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            parts = ln.split()
            addr, p = parts[1].rsplit(":", 1)
            if int(p, 16) == port and parts[3] == "0A":  # 0A = LISTEN
                found.append(addr)
    return found


def test_sshd_listens_on_loopback_only(sshd):
    assert _listeners(sshd["port"]) == ["0100007F"]  # 127.0.0.1, nothing on other addresses or IPv6


def test_profile_remote_end_to_end(sshd, bundle, tmp_path):
    from edgeprune.export.runtime.manifest import manifest_hash
    from edgeprune.profiling.results_file import REQUIRED

    rdir = tmp_path / "board-home" / "bundles"
    out = tmp_path / "r.json"
    r = _profile(bundle, "--remote", "testboard", "--ssh-config", sshd["config"], "--remote-python", sys.executable,
                 "--remote-dir", rdir, "--batch-size", "1,4", "--iters", "12", "--warmup", "2", "--precision", "fp32",
                 "--out", out)
    assert r.returncode == 0, r.stderr
    recs = json.loads(out.read_text())["records"]
    sha = manifest_hash(json.loads((bundle / "manifest.json").read_text()))
    assert [(x["batch"], x["iterations"], x["warmup_iters"]) for x in recs] == [(1, 12, 2), (4, 12, 2)]
    for rec in recs:
        assert set(REQUIRED) <= set(rec)
        assert rec["sha256"] == sha and rec["remote"]["host"] == "testboard"
        assert rec["remote"]["dir"] == f"{rdir}/{bundle.name}-{sha[:12]}"
        assert rec["measured_on"].startswith("testboard: ") and rec["board"] == {"jetson": False, "state": "not a Jetson"}
        assert rec["path"] == rec["remote"]["dir"]  # run.py measured the copy on the board
    copied = Path(recs[0]["remote"]["dir"])
    listed = list(json.loads((bundle / "manifest.json").read_text())["files"])
    assert sorted(p.name for p in copied.iterdir()) == sorted(listed + ["manifest.json"])
    # root@127.0.0.1:PORT works too (host key and user key from the ssh config's Host 127.0.0.1)
    r = _profile(bundle, "--remote", f"root@127.0.0.1:{sshd['port']}", "--ssh-config", sshd["config"],
                 "--remote-python", sys.executable, "--remote-dir", rdir, "--iters", "3", "--warmup", "1", "--json", "-q")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["records"][0]["remote"]["host"] == f"root@127.0.0.1:{sshd['port']}"


def _python_without(tmp: Path, keep: list[str]) -> Path:
    """A python that sees only the packages ``keep`` (no site-packages), like a board that lacks the others."""
    import importlib.util

    site = tmp / "site"
    site.mkdir(parents=True)
    for name in keep:
        src = Path(importlib.util.find_spec(name).submodule_search_locations[0])
        os.symlink(src, site / name)
        libs = src.parent / f"{name}.libs"
        if libs.exists():
            os.symlink(libs, site / libs.name)
    py = tmp / "python3"
    py.write_text(f"#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} -S \"$@\"\n")
    py.chmod(py.stat().st_mode | stat.S_IXUSR)
    return py


def test_remote_bad_input_names_host_and_what_is_missing(sshd, bundle, tmp_path):
    cfg = sshd["config"]
    cases = [
        (["--remote", "root@127.0.0.1:1"], "cannot reach root@127.0.0.1:1 over SSH"),
        (["--remote", "testboard", "--ssh-config", sshd["wrong_key_config"]], "testboard refused the SSH key"),
        (["--remote", "testboard", "--ssh-config", cfg, "--remote-python", "/nonexistent/python3"],
         "testboard has no /nonexistent/python3"),
        (["--remote", "testboard", "--ssh-config", cfg, "--remote-python", _python_without(tmp_path / "a", [])],
         "testboard: " + str(tmp_path / "a" / "python3") + " has no numpy"),
        (["--remote", "testboard", "--ssh-config", cfg, "--remote-python",
          _python_without(tmp_path / "b", ["numpy"])], "has neither ONNX Runtime nor TensorRT"),
        (["--remote", "bad host!"], "expected user@host"),
    ]
    for args, msg in cases:
        r = _profile(bundle, *map(str, args), "--iters", "2", timeout=120)
        err = r.stderr.strip().splitlines()
        assert r.returncode != 0 and err and err[-1].startswith("edgeprune: error: ") and msg in err[-1], (args, r.stderr)
        assert "Traceback" not in r.stderr


STUDY = tiny_study(study={"name": "board"}, profile={"iters": 5, "min_time_ms": None, "rounds": None, "target": "x86-cpu",
                                                    "remote": "testboard", "ssh_config": "{cfg}",
                                                    "remote_python": "{py}", "remote_dir": "{rdir}"})


def test_study_measures_on_the_board_and_merges_results(sshd, bundle, tmp_path, cli):
    from edgeprune.study.report import headline

    cfg = tmp_path / "study.toml"
    cfg.write_text(STUDY.format(cfg=sshd["config"], py=sys.executable, rdir=tmp_path / "remote"))
    out = tmp_path / "study"
    r = cli("compare", "--config", cfg, "--out", out, "--json")   # in this process; run.py runs over ssh
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    board = [x for x in res["latency"] if x.get("remote")]
    host = [x for x in res["latency"] if not x.get("remote")]
    assert {x["model_id"] for x in board} == {x["model_id"] for x in host} == {"baseline", "layer@0.6"}
    keys, rows = headline(res)
    labels = {r2["id"]: r2["speedup"] for r2 in rows}
    board_label = [lb for lb in labels["layer@0.6"] if "@ testboard: " in lb]
    host_label = [lb for lb in labels["layer@0.6"] if "@" not in lb]
    assert len(board_label) == 1 and len(host_label) == 1
    lat = {(x["model_id"], bool(x.get("remote"))): x["median_ms"] for x in res["latency"]}
    # each ratio uses the baseline measured in the same place
    assert labels["layer@0.6"][board_label[0]] == pytest.approx(lat[("baseline", True)] / lat[("layer@0.6", True)])
    assert labels["layer@0.6"][host_label[0]] == pytest.approx(lat[("baseline", False)] / lat[("layer@0.6", False)])
    md = (out / "report.md").read_text()
    assert "@ testboard: " in md

    # measured by hand on a board without SSH: run.py bench of the study's bundle, merged with --results
    bdir = out / "bundles" / "layer-at-0.6"
    hand = tmp_path / "hand.json"
    rb = subprocess.run([sys.executable, str(bdir / "run.py"), "bench", "--iters", "4", "--warmup", "1", "--batch-size", "2",
                         "--out", str(hand)], capture_output=True, text=True, timeout=120)
    assert rb.returncode == 0, rb.stderr
    r = cli("compare", "--config", cfg, "--out", out, "--results", hand, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert "train baseline" not in doc["stages"]["ran"] and "remote profile" not in doc["stages"]["ran"]
    res = json.loads((out / "results.json").read_text())
    merged = [x for x in res["latency"] if x.get("merged_from")]
    assert [(x["model_id"], x["batch"]) for x in merged] == [("layer@0.6", 2)]
    # results of a model that is not this study's are refused, by sha256
    other = tmp_path / "other.json"
    ro = subprocess.run([sys.executable, str(bundle / "run.py"), "bench", "--iters", "2", "--warmup", "1", "--out",
                         str(other)], capture_output=True, text=True, timeout=120)
    assert ro.returncode == 0, ro.stderr
    r = cli("compare", "--config", cfg, "--out", out, "--results", other)
    assert r.returncode != 0 and "is not a model of this study" in r.stderr.strip().splitlines()[-1]


def test_remote_jetson_state_and_energy_never_mixed(sshd, bundle, tmp_path):
    """A 'Jetson' over SSH (fake board tree and tegrastats/nvpmodel, set up by the board-side python wrapper):
    records carry its power mode, clock state and energy; two clock states give two report columns."""
    from board_fixtures import fake_tools, make_board
    from edgeprune.study.report import headline

    line = ("RAM 2000/7620MB (lfb 5x1MB) CPU [50%@1984,40%@1984,30%@1984,20%@1984] EMC_FREQ 10%@3199 "
            "GR3D_FREQ 60%@[918] tj@52.25C VDD_IN 7000mW/6000mW VDD_CPU_GPU_CV 2100mW/2000mW VDD_SOC 1000mW/1000mW")
    tools = fake_tools(tmp_path / "bin", [line], mode="15W", mode_id=1)
    results = {}
    for state, locked in (("locked", True), ("unlocked", False)):
        root = make_board(tmp_path / state, "orinnx-jp6", locked=locked, gpu_mhz=918)
        py = tmp_path / f"python-{state}"
        py.write_text(f"#!/bin/sh\nEDGEPRUNE_BOARD_ROOT={root} PATH={tools}:$PATH exec {sys.executable} \"$@\"\n")
        py.chmod(py.stat().st_mode | stat.S_IXUSR)
        r = _profile(bundle, "--remote", "testboard", "--ssh-config", sshd["config"], "--remote-python", py,
                     "--remote-dir", tmp_path / "rb", "--duration-ms", "400", "--warmup", "2", "--precision", "fp32",
                     "--energy", "--json", "-q")
        assert r.returncode == 0, r.stderr
        assert ("clocks are not locked" in r.stderr) == (not locked)  # the board's warning comes back, named
        rec = json.loads(r.stdout)["records"][0]
        assert rec["board"]["nvpmodel"] == {"mode": "15W", "id": 1} and rec["board"]["clocks_locked"] is locked
        assert rec["energy"]["available"] and rec["energy"]["avg_power_mw"] == 7000.0
        assert rec["measured_on"] == ("testboard: NVIDIA Orin NX Developer Kit, 15W, clocks "
                                      + ("locked" if locked else "unlocked"))
        results[state] = rec
    # the same two models measured in both states: one column per state, each ratio within its column
    recs = []
    for state, rec in results.items():
        for mid, scale in (("baseline", 1.0), ("small", 0.5 if state == "locked" else 0.8)):
            recs.append(dict(rec, model_id=mid, median_ms=rec["median_ms"] * scale))
    models = [{"id": "baseline", "method": "baseline", "target": 1.0, "macs": 100, "params": 1, "layers": 1,
               "accuracy": 0.9}, {"id": "small", "method": "layer", "target": 0.5, "macs": 50, "params": 1,
                                  "layers": 1, "accuracy": 0.8}]
    keys, rows = headline({"models": models, "latency": recs})
    sp = rows[1]["speedup"]
    assert len(keys) == 2 and sorted(round(v, 9) for v in sp.values()) == [1.25, 2.0]


def test_hostile_board_answers_are_refused_and_nothing_is_saved(sshd, bundle, tmp_path):
    """A board is untrusted input, over a real SSH connection too: a JSON list, ill-typed records and an endless
    flood from run.py bench are each one error line naming the host, and --out is never written."""
    junk = json.dumps({"records": [{"model": 5, "backend": "onnxruntime", "batch": "1"}]})
    for mode, answer, msg in (("list", "echo '[1, 2]'", "must be an object"),
                              ("junk", f"echo '{junk}'", "'records[0].model' must be a string"),
                              ("flood", "exec yes", "printed more than 1.0 MiB")):
        py = tmp_path / f"python-{mode}"
        py.write_text(f'#!/bin/sh\nif [ "$1" = "run.py" ] && [ "$2" = "bench" ]; then {answer}; exit 0; fi\n'
                      f'exec {sys.executable} "$@"\n')
        py.chmod(py.stat().st_mode | stat.S_IXUSR)
        out = tmp_path / f"{mode}.json"
        env = dict(os.environ, EDGEPRUNE_MAX_DOC_BYTES=str(1 << 20))
        r = run_edgeprune("profile", bundle, "--remote", "testboard", "--ssh-config", sshd["config"],
                          "--remote-python", py, "--remote-dir", tmp_path / "rb", "--iters", "2",
                          "--warmup", "1", "--out", out, timeout=300, env=env)
        err = r.stderr.strip().splitlines()
        assert r.returncode != 0 and len(err) == 1 and err[0].startswith("edgeprune: error: testboard"), r.stderr
        assert msg in err[0] and not out.exists(), (mode, r.stderr)
