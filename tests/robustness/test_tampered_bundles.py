"""Tampered bundles: changed bytes, missing or extra files, hostile archive members (``../``,
absolute paths, symlinks, hardlinks), links in a bundle folder, unknown schema versions.

Each is refused before any model file is used, nothing lands outside the
extraction folder, and no temporary extraction folder is left behind.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest

from .tally import api_refuses, refuses


@pytest.fixture
def frames(tmp_path, shared):
    p = tmp_path / "frames.npy"
    np.save(p, np.zeros((2, 2, shared["length"]), np.float32))
    return p


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path, monkeypatch):
    """This test's own temporary folder (the CLI runs in this process): the other pytest worker's bundles extract
    into the shared /tmp at the same time, and one of theirs in flight read as one of ours left behind."""
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))


def _extract_dirs():
    return set(Path(tempfile.gettempdir()).glob("edgeprune-bundle-*"))


def _check(capsys, bundle, frames, name, expect=None):
    from edgeprune.export.bundle import open_bundle

    before = _extract_dirs()
    refuses(capsys, ["predict", bundle, "--input", frames], name=f"{name}: predict", expect=expect)
    refuses(capsys, ["profile", bundle, "--iters", "2", "--warmup", "1"], name=f"{name}: profile", expect=expect)
    api_refuses(open_bundle, bundle, name=f"{name}: open_bundle", expect=expect)
    left = _extract_dirs() - before
    assert not left, f"{name}: extraction folders left behind: {left}"


def _copy(shared, dst):
    shutil.copytree(shared["bundle"], dst)
    return dst


def _manifest(b):
    return json.loads((b / "manifest.json").read_text())


def _write_manifest(b, m):
    (b / "manifest.json").write_text(json.dumps(m))


def test_changed_bytes(tmp_path, capsys, shared, frames):
    b = _copy(shared, tmp_path / "b")
    f = b / "model-fp32.onnx"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01                       # one bit, same size
    f.write_bytes(bytes(data))
    _check(capsys, b, frames, "one bit flipped", expect="sha256|tampered")
    b2 = _copy(shared, tmp_path / "b2")
    (b2 / "model-fp32.onnx").write_bytes((b2 / "model-fp32.onnx").read_bytes() + b"\0")
    _check(capsys, b2, frames, "a byte appended", expect="bytes|tampered")
    # the size and hash updated in the manifest too, but the file swapped for another ONNX model:
    # still verified, so it loads; the point is that an unlisted change cannot pass silently


def test_missing_and_unlisted_files(tmp_path, capsys, shared, frames):
    b = _copy(shared, tmp_path / "missing")
    (b / "model-fp32.onnx").unlink()
    _check(capsys, b, frames, "missing model file", expect="missing|incomplete")
    b = _copy(shared, tmp_path / "extra")
    (b / "evil.py").write_text("print('hi')")
    _check(capsys, b, frames, "unlisted extra file", expect="does not list")
    b = _copy(shared, tmp_path / "nomanifest")
    (b / "manifest.json").unlink()
    _check(capsys, b, frames, "no manifest", expect="manifest")


def test_unknown_schema_and_bad_manifest_entries(tmp_path, capsys, shared, frames):
    cases = {
        "schema-2": lambda m: m.update(schema_version=2),
        "schema-string": lambda m: m.update(schema_version="1"),
        "kind": lambda m: m.update(kind="something-else"),
        "dotdot-name": lambda m: m["files"].update({"../outside.onnx": m["files"]["model-fp32.onnx"]}),
        "absolute-name": lambda m: m["files"].update({"/etc/passwd": m["files"]["model-fp32.onnx"]}),
        "variant-unlisted": lambda m: m["variants"][0].update(file="other.onnx"),
        "bad-normalization": lambda m: m["preprocessing"].update(normalization="rm -rf"),
        "short-hash": lambda m: m["files"]["model-fp32.onnx"].update(sha256="abc"),
    }
    for label, change in cases.items():
        b = _copy(shared, tmp_path / label)
        m = _manifest(b)
        change(m)
        _write_manifest(b, m)
        _check(capsys, b, frames, f"manifest {label}", expect="schema_version" if "schema" in label else None)


def test_symlinks_in_a_bundle_folder(tmp_path, capsys, shared, frames):
    outside = tmp_path / "outside.onnx"
    shutil.copyfile(shared["onnx"], outside)           # the same bytes, so only the link itself is wrong
    b = _copy(shared, tmp_path / "link")
    (b / "model-fp32.onnx").unlink()
    os.symlink(outside, b / "model-fp32.onnx")
    _check(capsys, b, frames, "symlinked model file", expect="link")
    b = _copy(shared, tmp_path / "mlink")
    shutil.copyfile(b / "manifest.json", tmp_path / "m.json")
    (b / "manifest.json").unlink()
    os.symlink(tmp_path / "m.json", b / "manifest.json")
    _check(capsys, b, frames, "symlinked manifest")


def _tar(path, members):
    """Write a .tar.gz from (TarInfo, bytes | None) pairs."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _valid_members(shared):
    return [_file(p.name, p.read_bytes()) for p in sorted(shared["bundle"].iterdir())]


def test_hostile_archive_members(tmp_path, capsys, shared, frames):
    victim = tmp_path / "victim.txt"             # what a path-traversal member would overwrite or create
    onnx = shared["onnx"].read_bytes()

    def link(name, target, kind):
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = target
        return info, None

    def special(name, kind):
        info = tarfile.TarInfo(name)
        info.type = kind
        return info, None

    depth = "../" * 12
    cases = {
        "dotdot": [_file(f"../../{victim.name}", b"pwned")],
        "deep-dotdot": [_file(f"{depth}{str(victim).lstrip('/')}", b"pwned")],
        "absolute": [_file(str(victim), b"pwned")],
        "nested-dotdot": [_file(f"sub/../../{victim.name}", b"pwned")],
        "symlink-out": [link("evil", str(victim), tarfile.SYMTYPE)],
        "symlink-model": [link("model-fp32.onnx", str(shared["onnx"]), tarfile.SYMTYPE)],
        "hardlink": [link("evil", "manifest.json", tarfile.LNKTYPE)],
        "hardlink-out": [link("evil", str(victim), tarfile.LNKTYPE)],
        "fifo": [special("evil", tarfile.FIFOTYPE)],
        "device": [special("evil", tarfile.CHRTYPE)],
        "folder": [special("sub", tarfile.DIRTYPE), _file("sub/x", b"x")],
        "duplicate": [_file("model-fp32.onnx", onnx)],
        "backslash": [_file("..\\..\\evil", b"x")],
    }
    for label, extra in cases.items():
        members = _valid_members(shared)
        if label in ("symlink-model", "duplicate"):
            members = [m for m in members if m[0].name != "model-fp32.onnx" or label == "duplicate"]
        archive = _tar(tmp_path / f"{label}.tar.gz", members + extra)
        _check(capsys, archive, frames, f"archive member {label}")
        assert not victim.exists(), f"{label}: a member was written outside the bundle"
        assert not (tmp_path.parent / victim.name).exists()


def test_valid_archive_still_opens(tmp_path, capsys, shared, frames):
    """The hand-built archives above differ from a good one only in the hostile member."""
    from edgeprune.cli.main import main

    archive = _tar(tmp_path / "good.tar.gz", _valid_members(shared))
    assert main(["predict", str(archive), "--input", str(frames), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["frames"] == 2
