"""`edgeprune doctor`: the capability report."""

from __future__ import annotations

import json

from edgeprune.cli.main import main
from edgeprune.export.doctor import format_report, report, trt_max_opset


def test_report_fields():
    r = report()
    for pkg in ("numpy", "torch", "onnx", "onnxruntime", "onnxsim", "onnxscript", "tensorrt", "pycuda",
                "cuda-python", "polygraphy"):
        assert pkg in r["packages"]
        p = r["packages"][pkg]
        assert p["ok"] == (p["error"] is None)
    assert r["packages"]["onnxruntime"]["ok"] and "CPUExecutionProvider" in r["packages"]["onnxruntime"]["providers"]
    import onnx

    assert r["opsets"]["onnx_max"] == onnx.defs.onnx_opset_version()
    assert r["opsets"]["torch_legacy_export_max"] >= 17
    for c, s in list(r["commands"].items()) + [(k, v) for ps in r["precisions"].values() for k, v in ps.items()]:
        assert isinstance(s["usable"], bool) and (s["usable"] or s["reason"])
    assert r["commands"]["export"]["usable"] and r["commands"]["predict"]["usable"]
    if not r["packages"]["tensorrt"]["ok"]:
        assert not r["commands"]["build"]["usable"] and "tensorrt" in r["commands"]["build"]["reason"]
        assert not r["precisions"]["tensorrt"]["fp16"]["usable"]
    text = format_report(r)
    assert "onnxruntime" in text and "commands:" in text


def test_trt_opset_table():
    assert trt_max_opset("8.2.1") == 13
    assert trt_max_opset("8.5.2.2") == 17
    assert trt_max_opset("10.3.0") >= 17
    assert trt_max_opset(None) is None and trt_max_opset("x") is None


def test_jetson_detection(tmp_path, monkeypatch):
    from pathlib import Path

    import edgeprune.export.doctor as d

    f = tmp_path / "nv_tegra_release"
    f.write_text("# R35 (release), REVISION: 2.1, GCID: 32413640, BOARD: t186ref, EABI: aarch64\n")
    real = Path

    class FakePath(type(Path())):
        def __new__(cls, *a):
            return real(f) if a and str(a[0]) == "/etc/nv_tegra_release" else real(*a)

    monkeypatch.setattr(d, "Path", FakePath)
    info = d.jetson_release()
    assert info["l4t"] == "35.2.1"


def test_cli_doctor(capsys):
    assert main(["doctor", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["python"] and "commands" in r
    assert main(["doctor"]) == 0
    assert "precisions:" in capsys.readouterr().out
