"""Bundles: contents, manifest, tar.gz, and refusal of damaged or hostile bundles."""

from __future__ import annotations

import io
import json
import shutil
import tarfile

import pytest

from edgeprune.cli.main import main
from edgeprune.errors import EdgepruneError
from edgeprune.export.bundle import make_bundle, open_bundle
from edgeprune.export.runtime.safeio import file_sha256
from export_fixtures import LENGTH, shared_bundle, shared_trained


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return shared_bundle(tmp_path_factory)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_manifest_contents(bundle):
    out, ckpt, data = bundle
    m = json.loads((out / "manifest.json").read_text())
    assert m["schema_version"] == 1 and m["kind"] == "edgeprune-bundle"
    assert m["classes"] == ["tone0", "tone1", "tone2", "tone3"]
    assert m["input"] == {"name": "iq", "layout": "NCL", "channels": 2, "length": LENGTH, "dtype": "float32"}
    assert m["preprocessing"]["normalization"] == "none"
    assert m["target"]["name"] == "x86-cpu" and m["opset"] == 17 and m["default_precision"] == "fp32"
    assert m["macs"] > 0 and m["params"] > 0
    assert {v["precision"] for v in m["variants"]} == {"fp32", "int8"}
    for v in m["variants"]:
        assert 0 <= v["accuracy"] <= 1
    for name, e in m["files"].items():
        assert file_sha256(out / name) == e["sha256"] and (out / name).stat().st_size == e["size"]
    assert set(m["files"]) == {"model-fp32.onnx", "model-int8.onnx", "run.py"}  # run.py: the bundle's own runner
    assert m["tools"]["onnxruntime"] and m["tools"]["edgeprune"] and m["created"]
    from edgeprune.checkpoint import load_checkpoint

    assert m["source"]["sha256"] == load_checkpoint(ckpt).sha256()


def test_open_verified(bundle):
    out, _, _ = bundle
    with open_bundle(out) as b:
        assert b.variant()["precision"] == "fp32"
        assert b.variant("int8")["file"] == "model-int8.onnx"
        assert b.path("model-fp32.onnx").is_file()
        with pytest.raises(EdgepruneError, match="no fp16"):
            b.variant("fp16")


def test_tampered_file_refused(bundle, tmp_path):
    b = _copy(bundle[0], tmp_path / "b")
    f = b / "model-fp32.onnx"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(EdgepruneError, match="does not match its sha256"):
        open_bundle(b)


def test_missing_unlisted_and_schema(bundle, tmp_path):
    b = _copy(bundle[0], tmp_path / "b1")
    (b / "model-int8.onnx").unlink()
    with pytest.raises(EdgepruneError, match="missing"):
        open_bundle(b)
    b = _copy(bundle[0], tmp_path / "b2")
    (b / "extra.onnx").write_bytes(b"x")
    with pytest.raises(EdgepruneError, match="does not list"):
        open_bundle(b)
    b = _copy(bundle[0], tmp_path / "b3")
    m = json.loads((b / "manifest.json").read_text())
    m["schema_version"] = 99
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EdgepruneError, match="unknown schema_version 99"):
        open_bundle(b)
    b = _copy(bundle[0], tmp_path / "b4")
    (b / "manifest.json").write_text("{not json")
    with pytest.raises(EdgepruneError, match="not valid JSON"):
        open_bundle(b)
    b = _copy(bundle[0], tmp_path / "b5")
    m = json.loads((b / "manifest.json").read_text())
    m["files"]["../evil"] = m["files"].pop("model-int8.onnx")
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EdgepruneError, match="unsafe"):
        open_bundle(b)
    with pytest.raises(EdgepruneError, match="does not exist"):
        open_bundle(tmp_path / "nothing")


def _tar_with(bundle_dir, path, extra):
    with tarfile.open(path, "w:gz") as tar:
        for p in sorted(bundle_dir.iterdir()):
            tar.add(p, arcname=p.name)
        for info, payload in extra:
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def _member(name, payload=b"x", kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(payload) if (payload is not None and kind == tarfile.REGTYPE) else 0
    return info, (payload if kind == tarfile.REGTYPE else None)


@pytest.mark.parametrize("member, msg", [
    (_member("../escape.txt"), "outside"),
    (_member("/etc/evil"), "absolute"),
    (_member("sub/../../x"), "outside"),
    (_member("link", kind=tarfile.SYMTYPE, link="/etc/passwd"), "link"),
    (_member("hard", kind=tarfile.LNKTYPE, link="../../x"), "link"),
    (_member("dev", kind=tarfile.CHRTYPE), "device"),
    (_member("fifo", kind=tarfile.FIFOTYPE), "device"),
])
def test_hostile_archives_refused(bundle, tmp_path, member, msg):
    arc = _tar_with(bundle[0], tmp_path / "evil.tar.gz", [member])
    with pytest.raises(EdgepruneError, match=msg):
        open_bundle(arc)
    assert not (tmp_path / "escape.txt").exists()


def test_tar_gz_bundle_and_cli(tmp_path_factory, tmp_path, capsys):
    ckpt, data = shared_trained(tmp_path_factory)
    out = tmp_path / "nx.tar.gz"
    rc = main(["bundle", "--model", str(ckpt), "--target", "xavier-nx", "--out", str(out), "--json"])
    assert rc == 0
    m = json.loads(capsys.readouterr().out)
    assert [v["precision"] for v in m["variants"]] == ["fp16", "fp32"]  # int8 skipped: no data given
    assert "int8" in m["skipped"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nx.tar.gz"]  # no temp leftovers
    with open_bundle(out) as b:
        root = b.root
        assert b.variant()["precision"] == "fp16" and (root / "model-fp16.onnx").is_file()
        with tarfile.open(out) as tar:
            assert sorted(tar.getnames()) == ["manifest.json", "model-fp16.onnx", "model-fp32.onnx", "run.py"]
    assert not root.exists()  # extraction folder removed on close
    # truncated archive
    trunc = tmp_path / "trunc.tar.gz"
    trunc.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    with pytest.raises(EdgepruneError):
        open_bundle(trunc)
    # existing output is not overwritten without --force
    assert main(["bundle", "--model", str(ckpt), "--target", "x86-cpu", "--out", str(out)]) != 0
    assert "already exists" in capsys.readouterr().err


def test_bundle_with_engine_file(tmp_path_factory, tmp_path):
    ckpt, _ = shared_trained(tmp_path_factory)
    eng = tmp_path / "m.engine"
    eng.write_bytes(b"\x00serialized-engine-bytes")
    (tmp_path / "m.engine.json").write_text(json.dumps({"precision": "fp16", "tensorrt_version": "8.5.2",
                                                        "device": "Xavier", "profile": {"min": [1, 2, 64]}}))
    out = tmp_path / "b"
    m = make_bundle(ckpt, "xavier-nx", out, precisions=["fp16"], engine=eng)
    eng_var = [v for v in m["variants"] if v["format"] == "tensorrt"][0]
    assert eng_var["precision"] == "fp16" and eng_var["tensorrt"] == "8.5.2"
    assert {"model.engine", "model.engine.json", "model-fp16.onnx", "run.py"} == set(m["files"])
    with open_bundle(out) as b:
        assert b.path("model.engine").read_bytes() == eng.read_bytes()
    with pytest.raises(EdgepruneError, match="does not support int8"):
        make_bundle(ckpt, "jetson-nano", tmp_path / "c", precisions=["int8"])
