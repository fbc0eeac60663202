"""Device profiles: the shipped TOML files, validation errors, user files, `edgeprune targets`."""

from __future__ import annotations

import json

import pytest

from edgeprune.cli.main import main
from edgeprune.errors import EdgepruneError
from edgeprune.export.targets import list_targets, load_target, load_target_file, parse_target

GOOD = """
name = "{name}"
backend = "onnxruntime"
precisions = ["fp32", "int8"]
opset = 17
[batch]
min = 1
opt = 4
max = 16
"""


def test_shipped_targets():
    ts = {t.name: t for t in list_targets()}
    assert {"jetson-nano", "xavier-nx", "orin-nano", "agx-orin", "x86-cpu"} <= set(ts)
    nano, nx, orin, agx, cpu = (ts[n] for n in ("jetson-nano", "xavier-nx", "orin-nano", "agx-orin", "x86-cpu"))
    assert nano.tensorrt == "8.2" and nano.jetpack == "4.6.1" and nano.precisions[0] == "fp16" and nano.opset <= 13
    assert nx.tensorrt == "8.5" and nx.jetpack == "5.1" and nx.dla_cores == 2 and nx.opset <= 17
    assert {"fp16", "int8"} <= set(nx.precisions)
    assert orin.tensorrt.startswith("10.3") and orin.jetpack.startswith("6") and orin.dla_cores == 0
    assert agx.dla_cores == 2 and agx.jetpack.startswith("6")
    assert cpu.backend == "onnxruntime" and set(cpu.precisions) == {"fp32", "int8"}
    for t in ts.values():
        assert t.batch_min <= t.batch_opt <= t.batch_max and t.batch_profile
        assert t.resolved_exporter == ("legacy" if t.opset <= 17 else "dynamo")
        assert t.default_precision in t.precisions


def test_user_target_dir_and_env(tmp_path, monkeypatch):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "my-box.toml").write_text(GOOD.format(name="my-box"))
    assert load_target("my-box", targets_dir=[d]).batch_opt == 4
    with pytest.raises(EdgepruneError, match="unknown target 'my-box'"):
        load_target("my-box")
    monkeypatch.setenv("EDGEPRUNE_TARGETS", str(d))
    assert "my-box" in [t.name for t in list_targets()]
    assert load_target(str(d / "my-box.toml")).name == "my-box"


@pytest.mark.parametrize("edit, msg", [
    (lambda s: 'colour = "red"\n' + s, "unknown key 'colour'"),
    (lambda s: s.replace("opset = 17", 'opset = "17"'), "'opset' must be an integer"),
    (lambda s: s.replace('precisions = ["fp32", "int8"]', 'precisions = ["fp8"]'), "fp8"),
    (lambda s: s.replace('backend = "onnxruntime"', 'backend = "tpu"'), "'backend' must be one of"),
    (lambda s: s.replace("opt = 4", "opt = 40"), "min <= opt <= max"),
    (lambda s: s.replace("max = 16", "max = 16\nspeed = 3"), "batch.speed"),
    (lambda s: s.replace("opset = 17\n", ""), "missing key 'opset'"),
    (lambda s: s.replace('backend = "onnxruntime"', 'backend = "tensorrt"'), "missing key 'tensorrt'"),
    (lambda s: "dla_cores = true\n" + s, "'dla_cores' must be an integer"),
    (lambda s: s + "[[oops", "not valid TOML"),
])
def test_validation_errors_name_file_and_key(tmp_path, edit, msg):
    f = tmp_path / "bad.toml"
    f.write_text(edit(GOOD.format(name="bad")))
    with pytest.raises(EdgepruneError, match=msg) as ei:
        load_target_file(f)
    assert str(f) in str(ei.value)


def test_name_must_match_file(tmp_path):
    f = tmp_path / "a.toml"
    f.write_text(GOOD.format(name="b"))
    with pytest.raises(EdgepruneError, match="file is named 'a'"):
        load_target_file(f)


def test_parse_defaults():
    t = parse_target({"name": "t", "backend": "onnxruntime", "precisions": ["fp32"], "opset": 19})
    assert t.resolved_exporter == "dynamo" and t.default_precision == "fp32"


def test_cli_targets(capsys, tmp_path):
    assert main(["targets", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = [t["name"] for t in data["targets"]]
    assert "xavier-nx" in names
    nx = next(t for t in data["targets"] if t["name"] == "xavier-nx")
    assert nx["batch"]["max"] >= nx["batch"]["opt"] and nx["dla_cores"] == 2
    assert main(["targets"]) == 0
    assert "jetson-nano" in capsys.readouterr().out
    assert main(["targets", "--targets-dir", str(tmp_path / "nope")]) != 0
    assert "does not exist" in capsys.readouterr().err


def test_shipped_targets_match_what_each_jetpack_ships():
    """JetPack -> TensorRT and Python as NVIDIA ships them; the opset under the TensorRT's parser ceiling."""
    from edgeprune.export.runtime.jetpack import JETPACK_STACK, trt_max_opset

    ts = {t.name: t for t in list_targets()}
    assert {"orin-nx", "jetson-nano", "xavier-nx", "orin-nano", "agx-orin"} <= set(ts)
    seen = set()
    for t in ts.values():
        if t.backend != "tensorrt":
            continue
        py, trt, _ = JETPACK_STACK[t.jetpack]
        assert (t.tensorrt, t.python) == (trt, py), t.name
        assert t.opset <= trt_max_opset(t.tensorrt), t.name
        seen.add(t.jetpack)
    assert {"4.6.1", "5.1", "6.2"} <= seen
    expected = {"jetson-nano": ("8.2", "3.6", 13), "xavier-nx": ("8.5", "3.8", 17), "orin-nx": ("10.3", "3.10", 20)}
    for name, (trt, py, ceiling) in expected.items():
        assert ts[name].tensorrt == trt and ts[name].python == py and trt_max_opset(trt) == ceiling
    assert trt_max_opset("8.0.1") == 13 and trt_max_opset("8.4.3") == 17


@pytest.mark.parametrize("extra, msg", [
    ('tensorrt = "8.2"\njetpack = "4.6"\n', "JetPack 4.6 ships TensorRT 8.0, not 8.2"),
    ('tensorrt = "8.5"\njetpack = "5.1"\npython = "3.6"\n', "JetPack 5.1 ships Python 3.8"),
    ('tensorrt = "8.2"\n', "'opset' 17 is above what TensorRT 8.2's ONNX parser takes (13)"),
])
def test_inconsistent_jetpack_stack_refused(tmp_path, extra, msg):
    f = tmp_path / "bad.toml"
    f.write_text(extra + GOOD.format(name="bad").replace('backend = "onnxruntime"', 'backend = "tensorrt"'))
    with pytest.raises(EdgepruneError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        load_target_file(f)
