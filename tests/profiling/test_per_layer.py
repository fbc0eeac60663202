"""ONNX MAC counting against count_macs, and per-layer latency from ONNX Runtime's profiler."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from edgeprune.errors import EdgepruneError
from export_fixtures import CLASSES, LENGTH, export_onnx


@pytest.fixture(scope="module")
def r20(tmp_path_factory):
    return export_onnx("resnet20-1d", tmp_path_factory.mktemp("pl") / "r20.onnx")


@pytest.mark.parametrize("name, length", [("resnet20-1d", 64), ("resnet20", 64), ("cnn1d", 64),
                                          ("vgg16-1d", 64), ("vgg16", 32)])
def test_onnx_macs_equal_count_macs(name, length, tmp_path):
    from edgeprune.models import build_model, make_spec
    from edgeprune.models.macs import count_macs, model_stats
    from edgeprune.profiling.onnx_macs import count_onnx_macs

    spec = make_spec(name, length, 5)
    path = export_onnx(name, tmp_path / f"{name}.onnx", length, 5)
    got = count_onnx_macs(path)
    total, per_layer = count_macs(build_model(spec), per_layer=True)
    assert got["macs"] == total
    assert got["per_layer"] == per_layer and got["other"] == 0
    assert got["weight_layers"] == model_stats(spec)["weight_layers"]
    assert sum(n["macs"] for n in got["nodes"]) == total


def test_onnx_macs_of_a_static_batch_graph_are_per_frame(tmp_path):
    import warnings

    import torch

    from edgeprune.models import build_model, make_spec
    from edgeprune.models.macs import count_macs
    from edgeprune.profiling.onnx_macs import count_onnx_macs

    model = build_model(make_spec("cnn1d", 64, 3)).eval()
    path = tmp_path / "static.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(4, 2, 64), str(path), dynamo=False, opset_version=17,
                          input_names=["iq"], output_names=["logits"])  # fixed batch 4
    assert count_onnx_macs(path)["macs"] == count_macs(model)


def test_onnx_macs_bad_file(tmp_path):
    from edgeprune.profiling.onnx_macs import count_onnx_macs

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage\xff" * 20)
    with pytest.raises(EdgepruneError, match="not a readable ONNX"):
        count_onnx_macs(bad)
    with pytest.raises(EdgepruneError, match="does not exist"):
        count_onnx_macs(tmp_path / "none.onnx")


def test_layer_index():
    from edgeprune.profiling.onnx_macs import layer_index

    assert layer_index("/layers.3/conv1/Conv") == 3
    assert layer_index("/layers.12/unit1/conv_a/Conv_token_7") == 12
    assert layer_index("node_Conv_3", "['', 'layers.5', 'layers.5.conv1']") == 5
    assert layer_index("/Flatten") is None
    assert layer_index("/mylayers.3/Conv") is None


def test_aggregate_profile_skips_warmup_and_averages():
    from edgeprune.profiling.per_layer import aggregate_profile, group_by_layer

    def run(ts):
        return {"cat": "Session", "name": "model_run", "ts": ts, "dur": 50}

    def node(name, ts, dur, op="Conv"):
        return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}

    events = [run(0), node("/layers.0/Conv", 1, 1000), node("/layers.1/Conv", 2, 1000),  # warm-up run
              run(100), node("/layers.0/Conv", 101, 10), node("/layers.1/Conv", 102, 30),
              {"cat": "Node", "name": "/layers.1/Conv_fence_before", "ts": 102, "dur": 999},
              node("/Flatten", 103, 4, "Flatten"),
              run(200), node("/layers.0/Conv", 201, 20), node("/layers.1/Conv", 202, 50),
              node("/Flatten", 203, 6, "Flatten")]
    agg = aggregate_profile(events, warmup_runs=1)
    assert agg["runs"] == 2
    ms = {n["node"]: n["ms"] for n in agg["nodes"]}
    assert ms == pytest.approx({"/layers.0/Conv": 0.015, "/layers.1/Conv": 0.040, "/Flatten": 0.005})
    grouped = group_by_layer(agg["nodes"], {0: 100, 1: 300})
    assert [r["layer"] for r in grouped["layers"]] == [0, 1]
    assert grouped["other"]["ms"] == pytest.approx(0.005)
    assert sum(r["share"] for r in grouped["layers"]) + grouped["other"]["share"] == pytest.approx(1.0)
    with pytest.raises(EdgepruneError, match="runs"):
        aggregate_profile(events, warmup_runs=3)


def _ortprof_dirs():
    return {p.name for p in Path(tempfile.gettempdir()).glob("edgeprune-ortprof-*")}


def test_per_layer_profile_covers_units_with_checkpoint_macs(r20, tmp_path):
    from edgeprune.models import build_model, make_spec
    from edgeprune.models.macs import count_macs
    from edgeprune.models.spec import unit_indices
    from edgeprune.profiling.per_layer import format_per_layer, per_layer_profile

    spec = make_spec("resnet20-1d", LENGTH, CLASSES)
    total, per = count_macs(build_model(spec), per_layer=True)
    before = _ortprof_dirs()
    res = per_layer_profile(r20, batch=2, threads=1, warmup=2, iters=5, layer_macs=per, spec=spec)
    assert _ortprof_dirs() <= before  # ORT's profile file and its folder are gone
    assert not list(Path.cwd().glob("onnxruntime_profile*.json"))
    rows = {r["layer"]: r for r in res["layers"]}
    assert set(rows) == set(range(len(spec["layers"])))
    for u in unit_indices(spec):
        assert rows[u]["role"] == "unit" and rows[u]["type"] == "basic_block"
        assert rows[u]["ms"] > 0 and rows[u]["macs"] > 0
    assert sum(r["macs"] for r in res["layers"]) == total
    assert res["runs"] == 5 and res["batch"] == 2
    assert sum(r["ms"] for r in res["layers"]) + res["other"]["ms"] == pytest.approx(res["total_ms"])
    assert all(n["ms"] >= 0 for n in res["nodes"])
    table = format_per_layer(res)
    assert "layers.9" in table and "basic_block" in table and "other" in table


def test_per_layer_from_the_onnx_graph_alone(r20):
    from edgeprune.profiling.onnx_macs import count_onnx_macs
    from edgeprune.profiling.per_layer import per_layer_profile

    res = per_layer_profile(r20, batch=1, warmup=1, iters=3)
    assert res["macs_source"] == "onnx-graph"
    assert sum(r["macs"] for r in res["layers"]) == count_onnx_macs(r20)["macs"]
    assert {r["layer"] for r in res["layers"]} >= set(range(1, 10))  # every unit of resnet20-1d


def test_per_layer_in_profile_records_of_a_checkpoint(toy_checkpoint):
    from edgeprune.profiling.harness import profile

    res = profile([toy_checkpoint], backends=["onnxruntime", "torch"], warmup_iters=1, iters=3, per_layer=True,
                  per_layer_iters=3, show_progress=False)
    ort_rec, torch_rec = res["records"]
    pl = ort_rec["per_layer"]
    assert sum(r["macs"] for r in pl["layers"]) == ort_rec["macs"]
    assert [r["layer"] for r in pl["layers"] if r["role"] == "unit"] == list(range(1, 10))
    assert "per_layer" not in torch_rec  # per-layer profiling is ONNX Runtime's


def test_quantized_variants_count_the_same_macs(r20, tmp_path):
    """fp16 and int8 (Q/DQ) variants from the export package: same MACs, precision detected."""
    quantize = pytest.importorskip("edgeprune.export.quantize")
    import numpy as np
    import onnx

    from edgeprune.profiling.onnx_macs import count_onnx_macs
    from edgeprune.profiling.model_files import describe_onnx

    fp32 = onnx.load(str(r20))
    paths = {"fp16": tmp_path / "fp16.onnx", "int8": tmp_path / "int8.onnx"}
    onnx.save(quantize.to_fp16(fp32), str(paths["fp16"]))
    frames = np.random.default_rng(0).standard_normal((16, 2, LENGTH)).astype(np.float32)
    onnx.save(quantize.quantize_int8(fp32, frames), str(paths["int8"]))
    want = count_onnx_macs(r20)
    for prec, p in paths.items():
        got = count_onnx_macs(p)
        assert got["macs"] == want["macs"] and got["per_layer"] == want["per_layer"]
        assert describe_onnx(p)["precision"] == prec
