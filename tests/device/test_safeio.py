"""edgeprune.export.runtime.safeio (bounded, regular-file-only input), the ONNX external-data walker, the study lock and the
stale-temp cleanup, checked in-process (tests/robustness/test_subprocess.py runs the same classes as a user)."""

from __future__ import annotations

import os
import threading
import zipfile

import numpy as np
import pytest

from edgeprune.errors import EdgepruneError
from edgeprune.export.runtime import safeio


def test_regular_files_only_and_fifo_never_blocks(tmp_path):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    link = tmp_path / "z"
    os.symlink("/dev/zero", link)
    reg = tmp_path / "r"
    reg.write_bytes(b"abc")
    assert safeio.read_bytes(reg) == b"abc"
    done = {}

    def attempt():
        try:
            safeio.open_input(fifo, "x")
        except EdgepruneError as exc:
            done["msg"] = str(exc)

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(10)
    assert "FIFO" in done.get("msg", ""), "a FIFO blocked or was accepted"
    with pytest.raises(EdgepruneError, match="character device"):
        safeio.read_bytes(link)
    with pytest.raises(EdgepruneError, match="folder"):
        safeio.check_input(tmp_path)
    with pytest.raises(EdgepruneError, match="does not exist"):
        safeio.read_text(tmp_path / "nope")


def test_limits_are_overridable(tmp_path, monkeypatch):
    p = tmp_path / "doc.json"
    p.write_bytes(b"x" * 2000)
    assert len(safeio.read_bytes(p, "doc", "doc")) == 2000
    monkeypatch.setenv("EDGEPRUNE_MAX_DOC_BYTES", "1000")
    with pytest.raises(EdgepruneError, match="EDGEPRUNE_MAX_DOC_BYTES"):
        safeio.read_bytes(p, "doc", "doc")
    monkeypatch.setenv("EDGEPRUNE_MAX_DOC_BYTES", "lots")
    with pytest.raises(EdgepruneError, match="not a number"):
        safeio.limit("doc")
    monkeypatch.delenv("EDGEPRUNE_MAX_DOC_BYTES")
    # expansion: 40x of stored bytes is refused at the default 32x, accepted when raised
    with pytest.raises(EdgepruneError, match="more than 32x"):
        safeio.check_expansion("x", 40 * (8 << 20), 8 << 20)
    monkeypatch.setenv("EDGEPRUNE_MAX_EXPANSION", "64")
    safeio.check_expansion("x", 40 * (8 << 20), 8 << 20)


def test_zip_members_checked_before_decompression(tmp_path):
    p = tmp_path / "b.zip"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a", b"\0" * (64 << 20))  # 64 MiB of zeros: ~64 KiB stored
    size = p.stat().st_size
    assert size < 1 << 20
    with open(p, "rb") as fh, pytest.raises(EdgepruneError, match="expand"):
        safeio.check_zip(fh, "b.zip", size)
    with zipfile.ZipFile(tmp_path / "ok.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a", np.random.default_rng(0).bytes(1 << 16))
    with open(tmp_path / "ok.zip", "rb") as fh:
        _, infos = safeio.check_zip(fh, "ok.zip", (tmp_path / "ok.zip").stat().st_size)
    assert [i.filename for i in infos] == ["a"]


def _models_with_external_data(tmp_path):
    """ONNX models with external tensors in initializers, node attributes and an If subgraph."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def ext(t, loc):
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", loc), ("offset", "0"), ("length", "64")):
            e = t.external_data.add()
            e.key, e.value = k, v
        return t

    w = ext(numpy_helper.from_array(np.ones((4, 4), np.float32), "W"), "w.bin")
    const = ext(numpy_helper.from_array(np.ones((4, 4), np.float32), "C"), "/etc/passwd")
    then_const = ext(numpy_helper.from_array(np.ones((1, 4), np.float32), "T"), "../deep.bin")
    then_g = helper.make_graph([helper.make_node("Constant", [], ["t"], value=then_const)], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 4])])
    else_g = helper.make_graph([helper.make_node("Constant", [], ["t"], value=numpy_helper.from_array(
        np.zeros((1, 4), np.float32)))], "else", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 4])])
    nodes = [helper.make_node("Constant", [], ["c"], value=const),
             helper.make_node("MatMul", ["x", "W"], ["y0"]),
             helper.make_node("Add", ["y0", "c"], ["y"]),
             helper.make_node("If", ["cond"], ["z"], then_branch=then_g, else_branch=else_g)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4]),
                                       helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4]),
                           helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])], [w])
    m = helper.make_model(g)
    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    return path, onnx.load(str(path), load_external_data=False)


def _onnx_external_names(model):
    """Ground truth from the onnx package: every tensor with data_location EXTERNAL, with its location."""
    import onnx

    out = {}

    def tensors_of_graph(g):
        for t in g.initializer:
            yield t
        for n in g.node:
            for a in n.attribute:
                if a.HasField("t"):
                    yield a.t
                for t in a.tensors:
                    yield t
                if a.HasField("g"):
                    yield from tensors_of_graph(a.g)
                for sg in a.graphs:
                    yield from tensors_of_graph(sg)

    for t in tensors_of_graph(model.graph):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            out[t.name] = {e.key: e.value for e in t.external_data}["location"]
    return out


def test_external_data_walker_agrees_with_onnx(tmp_path):
    from edgeprune.export.runtime.onnx_external import check_external_data, external_tensors

    path, model = _models_with_external_data(tmp_path)
    mine = {name: e["location"] for name, e in external_tensors(path.read_bytes())}
    assert mine == _onnx_external_names(model) == {"W": "w.bin", "C": "/etc/passwd", "T": "../deep.bin"}
    with pytest.raises(EdgepruneError, match="only from a bundle"):
        check_external_data(path, None)
    with pytest.raises(EdgepruneError, match="/etc/passwd"):
        check_external_data(path, {"w.bin": 64})
    with pytest.raises(EdgepruneError, match="not a file the bundle"):
        check_external_data(path, {"w.bin": 64, "/etc/passwd": 64, "../deep.bin": 64})


def test_study_lock_and_temp_cleanup(tmp_path):
    from edgeprune.study.stages import StageCache

    root = tmp_path / "study"
    cache = StageCache(root, log=lambda m: None)
    (root / "data").mkdir()
    out = root / "data" / "dataset.npz"
    cache.run("data", "k1", lambda: (out.write_text("x"), {"n": 1})[1], [out])
    # another process on the same folder: one clear error (within one process the lock is reentrant)
    import subprocess
    import sys

    probe = subprocess.run([sys.executable, "-c", "import sys; from edgeprune.study.stages import StageCache; "
                            "from edgeprune.errors import EdgepruneError\n"
                            "try:\n    StageCache(sys.argv[1], log=lambda m: None)\n"
                            "except EdgepruneError as e:\n    print(e)", str(root)],
                           capture_output=True, text=True, timeout=120)
    assert "another edgeprune run" in probe.stdout, probe
    StageCache(root, log=lambda m: None).close()  # same process: reentrant
    cache.close()
    probe = subprocess.run([sys.executable, "-c", "import sys; from edgeprune.study.stages import StageCache; "
                            "StageCache(sys.argv[1], log=lambda m: None); print('locked')", str(root)],
                           capture_output=True, text=True, timeout=120)
    assert "locked" in probe.stdout, probe  # released by the last handle
    user = [root / ".env.template", root / "sub" / ".bashrc.original", root / "data" / ".notes.12345678",
            root / "data" / ".other.npz.abcd1234.npz"]
    stale = [root / "data" / ".dataset.npz.abcd1234.npz", root / ".state.json.x1y2z3w4.json"]
    for p in user + stale:
        p.parent.mkdir(exist_ok=True)
        p.write_text("u")
    cache2 = StageCache(root, log=lambda m: None)
    try:
        assert all(p.exists() for p in user), [p for p in user if not p.exists()]
        assert not any(p.exists() for p in stale), [p for p in stale if p.exists()]
        # a state.json naming a file outside the folder never leads to deleting beside it
        outside = tmp_path / ".victim.txt.abcd1234.txt"
        outside.write_text("u")
        cache2.state["stages"]["evil"] = {"key": "k", "result": {}, "outputs": [str(tmp_path / "victim.txt")]}
        cache2._clear_stale_temps()
        assert outside.exists()
    finally:
        cache2.close()


def test_pending_outputs_recorded_before_the_stage_writes(tmp_path):
    import json

    from edgeprune.study.stages import StageCache

    root = tmp_path / "s"
    cache = StageCache(root, log=lambda m: None)
    seen = {}

    def stage():
        seen["state"] = json.loads((root / "state.json").read_text())
        return {}

    cache.run("train", "k", stage, [root / "model.pt"])
    cache.close()
    assert seen["state"]["pending"] == {"train": [str(root / "model.pt")]}
    assert json.loads((root / "state.json").read_text())["pending"] == {}


def test_resume_cleanup_only_removes_atomic_temps(tmp_path):
    """train/finetune --resume clears a killed write's temps beside OUT, never the user's look-alikes."""
    from edgeprune.atomic import atomic_path, remove_stale_temps

    out = tmp_path / "model.pt"
    # a real temp name, made the way atomic_path makes them (the write is interrupted: the temp is left)
    try:
        with atomic_path(out) as tmp:
            tmp.write_bytes(b"partial")
            real_temp = tmp.name
            os.link(tmp, tmp_path / real_temp.replace(".model.pt.", ".model.pt.keep"))  # keep a copy to re-plant
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    os.replace(tmp_path / real_temp.replace(".model.pt.", ".model.pt.keep"), tmp_path / real_temp)
    user = [tmp_path / n for n in (".model.pt.backup", ".model.pt.orig", ".model.pt.2024-01-01", ".model.pt.old.pt")]
    for p in user:
        p.write_text("the user's")
    removed = remove_stale_temps(out)
    assert [p.name for p in removed] == [real_temp]
    assert all(p.exists() for p in user)
