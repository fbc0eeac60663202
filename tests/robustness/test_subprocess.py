"""Hostile files and values as a user meets them: ``python -m edgeprune`` in a child process, with limits.

Every case runs through the real entry point (``runpy`` on the ``edgeprune``
package, as ``python -m edgeprune`` does) in a forked child of one driver
process (tests/robustness/forkrun.py; one interpreter start for all cases),
with an address-space limit (RLIMIT_AS: the driver's size plus 2 GiB), a
file-size limit (1 GiB) and a timeout, and with file descriptors 1 and 2
captured, so native library output counts too.

Clean means, for a hostile case: a non-zero exit, exactly one stderr line,
starting ``edgeprune: error:``, no "unexpected" exception, within the time
limit, at most 1 GiB more peak RSS than the child started with and at most
1 GiB written. For an intended success: exit 0 and nothing at all on stderr.

The hostile files are built here, in their real formats, and are small
(every one under 10 MB): zip and pickle-memo bombs, sparse and external HDF5
datasets, tar bombs, FIFOs and links to /dev/zero, checkpoints whose spec
asks for gigabytes, ONNX models whose tensors live in other files, and
metadata that contradicts the model.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from edgeprune_run import run_cases, with_repo_path

from .tally import check_error_output, record

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GIB = 1 << 30
RSS_BUDGET = 1 * GIB
WRITE_BUDGET = 1 * GIB


class _Zeros(io.RawIOBase):
    """A readable stream of ``n`` zero bytes (to build bombs without holding them in memory)."""

    def __init__(self, n):
        self.left = n

    def readable(self):
        return True

    def readinto(self, b):
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k


# ----------------------------------------------------------------------------------------- builders

def _npz_zip_bomb(path: Path, frames: int = 1 << 19, length: int = 128):
    """A valid-looking edgeprune npz whose x member inflates to frames*2*length*4 bytes of zeros."""
    header = {"descr": "<f4", "fortran_order": False, "shape": (frames, 2, length)}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("x.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(fh, header)
            src = _Zeros(frames * 2 * length * 4)
            shutil.copyfileobj(src, fh, 1 << 20)
        for name, arr in (("y", np.zeros(frames, np.int64)), ("classes", np.array(["a", "b"])),
                          ("snr", np.zeros(frames, np.float32))):
            buf = io.BytesIO()
            np.save(buf, arr)
            zf.writestr(f"{name}.npy", buf.getvalue())


def _npz_member_variant(shared_data: Path, path: Path, kind: str):
    """Copies of a valid npz with one member changed: lying header shape, encrypted flag, unknown method,
    deeply nested metadata, 0-d class array."""
    with zipfile.ZipFile(shared_data) as src:
        members = {i.filename: src.read(i) for i in src.infolist()}
    if kind == "lying_shape":
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (1 << 30, 2, 64)})
        members["x.npy"] = buf.getvalue() + b"\0" * 4096
    elif kind == "deep_meta":
        buf = io.BytesIO()
        np.save(buf, np.array("[" * 100000 + "]" * 100000))
        members["meta.npy"] = buf.getvalue()
    elif kind == "scalar_classes":
        buf = io.BytesIO()
        np.save(buf, np.array("QPSK"))
        members["classes.npy"] = buf.getvalue()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    if kind in ("encrypted", "method99"):
        raw = bytearray(path.read_bytes())
        # set the flag / method in every local header and central directory entry
        for sig, flag_off, meth_off in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
            pos = raw.find(sig)
            while pos != -1:
                if kind == "encrypted":
                    raw[pos + flag_off] |= 0x1
                else:
                    raw[pos + meth_off:pos + meth_off + 2] = (99).to_bytes(2, "little")
                pos = raw.find(sig, pos + 4)
        path.write_bytes(bytes(raw))


def _pickle_memo_bomb(path: Path, copies: int = 3000):
    """An RML dict pickle whose values are all one 1 MiB array: ~1 MB on disk, ~3 GB once concatenated."""
    import pickle

    arr = np.zeros((1024, 2, 128), np.float32)
    data = {("QPSK", float(s)): arr for s in range(copies)}
    path.write_bytes(pickle.dumps(data, protocol=2))


def _hdf5_files(d: Path) -> dict[str, Path]:
    import h5py

    secret = d / "secret.bin"
    secret.write_bytes(np.arange(4 * 32 * 2, dtype=np.float32).tobytes())
    out = {}

    def labels(f, n=4):
        f["Y"] = np.eye(n, 4, dtype=np.int64)
        f["Z"] = np.zeros((n, 1))

    out["external_storage_abs"] = d / "ext-abs.hdf5"
    with h5py.File(out["external_storage_abs"], "w") as f:
        f.create_dataset("X", shape=(4, 32, 2), dtype="f4", external=[(str(secret), 0, secret.stat().st_size)])
        labels(f)
    out["external_storage_dotdot"] = d / "sub" / "ext-rel.hdf5"
    out["external_storage_dotdot"].parent.mkdir()
    with h5py.File(out["external_storage_dotdot"], "w") as f:
        f.create_dataset("X", shape=(4, 32, 2), dtype="f4", external=[("../secret.bin", 0, secret.stat().st_size)])
        labels(f)
    out["external_dev_zero"] = d / "devzero.hdf5"
    with h5py.File(out["external_dev_zero"], "w") as f:
        f.create_dataset("X", shape=(1 << 20, 1024, 2), dtype="f4", external=[("/dev/zero", 0, h5py.h5f.UNLIMITED)])
        f.create_dataset("Y", shape=(1 << 20, 24), dtype="i8", external=[("/dev/zero", 0, h5py.h5f.UNLIMITED)])
        f["Z"] = np.zeros((4, 1))
    valid = d / "valid.hdf5"
    with h5py.File(valid, "w") as f:
        f["X"] = np.ones((4, 32, 2), np.float32)
        labels(f)
    out["external_link"] = d / "link.hdf5"
    with h5py.File(out["external_link"], "w") as f:
        f["X"] = h5py.ExternalLink(str(valid), "X")
        labels(f)
    out["virtual"] = d / "vds.hdf5"
    layout = h5py.VirtualLayout(shape=(4, 32, 2), dtype="f4")
    layout[:] = h5py.VirtualSource(str(valid), "X", shape=(4, 32, 2))
    with h5py.File(out["virtual"], "w") as f:
        f.create_virtual_dataset("X", layout)
        labels(f)
    out["sparse_extent"] = d / "sparse.hdf5"
    with h5py.File(out["sparse_extent"], "w") as f:
        f.create_dataset("X", shape=(1 << 22, 1024, 2), dtype="f4", chunks=(16, 1024, 2))
        f.create_dataset("Y", shape=(1 << 22, 24), dtype="i8", chunks=(4096, 24))
        f.create_dataset("Z", shape=(1 << 22, 1), dtype="i8", chunks=(4096, 1))
    return out


def _checkpoint_with_spec(shared_ckpt: Path, path: Path, mutate):
    import torch

    obj = torch.load(shared_ckpt, map_location="cpu", weights_only=True)
    spec = json.loads(obj["spec"])
    mutate(spec)
    obj["spec"] = json.dumps(spec)
    torch.save(obj, path)


def _widen(spec, width=65536):
    """Every hidden width set to ``width`` (the input channels and the class count stay): a consistent spec."""
    from edgeprune.models.spec import infer_shapes

    for i, layer in enumerate(spec["layers"]):
        for f in ("in", "out", "mid"):
            if f not in layer or (i == 0 and f == "in") or (layer["type"] == "linear" and f == "out"):
                continue
            if layer["type"] == "linear" and f == "in":
                continue
            layer[f] = width
    # the classifier's input follows from the widened feature map
    spec["layers"][-1]["in"] = infer_shapes(dict(spec, layers=spec["layers"][:-1]))[-1][0]


def _first_conv(spec, **changes):
    for layer in spec["layers"]:
        if layer["type"] == "conv":
            layer.update(changes)
            return


def _tar_bundle(bundle: Path, path: Path, extra=None, pax=None):
    """The bundle folder as a .tar.gz (manifest first, as edgeprune writes it), plus ``extra`` members of zeros.

    A gzip file may hold several members, which gzip readers (tarfile's among them) read as one stream: the
    zeros are written as copies of one compressed MiB, so a 2 GiB member costs no 2 GiB of compression."""
    raw = io.BytesIO()
    tar = tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT)
    for p in sorted(bundle.iterdir()):
        info = tar.gettarinfo(p, arcname=p.name)
        if pax and p.name == "manifest.json":
            info.pax_headers = pax
        with open(p, "rb") as fh:
            tar.addfile(info, fh)
    pieces = [raw.getvalue()]                # the members so far; tar.close() would add the end blocks
    for name, size in (extra or {}).items():
        info = tarfile.TarInfo(name)
        info.size = size
        pieces += [info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"), -(size + -size % tarfile.BLOCKSIZE)]
    total = sum(len(b) if isinstance(b, bytes) else -b for b in pieces) + 2 * tarfile.BLOCKSIZE
    pieces.append(-(2 * tarfile.BLOCKSIZE + -total % tarfile.RECORDSIZE))   # the end blocks, padded to a record
    mib = gzip.compress(bytes(1 << 20), 1)
    with open(path, "wb") as out:
        for b in pieces:
            if isinstance(b, bytes):
                out.write(gzip.compress(b, 1))
                continue
            whole, rest = divmod(-b, 1 << 20)
            for _ in range(whole):
                out.write(mib)
            out.write(gzip.compress(bytes(rest), 1))


def _rewrite_manifest(folder: Path, change):
    from edgeprune.export.runtime.safeio import file_sha256

    m = json.loads((folder / "manifest.json").read_text())
    change(m)
    for name in list(m["files"]):
        p = folder / name
        if p.is_file():
            m["files"][name] = {"sha256": file_sha256(p), "size": p.stat().st_size}
    (folder / "manifest.json").write_text(json.dumps(m))


def _onnx_external(model_path: Path, out: Path, location: str, data_name: str | None = None):
    """``model_path`` re-saved with its largest initializer stored outside, at ``location``."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(model_path))
    init = max(m.graph.initializer, key=lambda t: len(t.raw_data) or 0)
    arr = numpy_helper.to_array(init)
    if data_name:
        (out.parent / data_name).write_bytes(arr.tobytes())
    init.ClearField("raw_data")
    init.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(arr.nbytes))):
        e = init.external_data.add()
        e.key, e.value = k, v
    out.write_bytes(m.SerializeToString())


def _onnx_with_meta(model_path: Path, out: Path, **meta):
    import onnx

    m = onnx.load(str(model_path))
    for k, v in meta.items():
        props = {p.key: p for p in m.metadata_props}
        if k in props:
            props[k].value = v
        else:
            p = m.metadata_props.add()
            p.key, p.value = k, v
    out.write_bytes(m.SerializeToString())


def _sigmf(d: Path, name: str, samples=None, annotations=None, datatype="cf32_le", extra_global=None):
    from edgeprune.data.sigmf_io import write_sigmf

    z = samples if samples is not None else (np.random.default_rng(0).standard_normal(1024)
                                            + 1j * np.random.default_rng(1).standard_normal(1024))
    meta_path, data_path = write_sigmf(d / name, z, datatype=datatype, annotations=annotations)
    if extra_global:
        m = json.loads(meta_path.read_text())
        m["global"].update(extra_global)
        meta_path.write_text(json.dumps(m))
    return meta_path


def _target(d: Path, name: str, body: str) -> Path:
    folder = d / f"targets-{name}"
    folder.mkdir()
    (folder / f"{name}.toml").write_text(body)
    return folder


VALID_TARGET = """name = "{name}"
backend = "onnxruntime"
precisions = ["fp32"]
opset = 17
"""


def _config(d: Path, name: str, extra: str = "", data: str = 'synth = "rml2016.10a"') -> Path:
    p = d / f"{name}.toml"
    p.write_text(f"[data]\n{data}\nper_key = 2\n{extra}\n")
    return p


# ----------------------------------------------------------------------------------------- the cases

def build_cases(d: Path, shared) -> list[dict]:
    """(class, name, argv, expect, check) cases, with their files built in ``d``."""
    cases = []

    def add(cls, name, argv, expect="error", match=None, **kw):
        cases.append({"class": cls, "name": f"{cls}: {name}", "argv": [str(a) for a in argv], "expect": expect,
                      "match": match, "cwd": str(d), **kw})

    ckpt, data, bundle, archive, onnx_path = (shared["ckpt"], shared["data"], shared["bundle"], shared["archive"],
                                              shared["onnx"])
    frames = d / "frames.npy"
    np.save(frames, np.random.default_rng(0).standard_normal((8, 2, shared["length"])).astype(np.float32))

    # --- non-regular files: FIFOs, devices, links to /dev/zero --------------------------------------
    fifo_dir = d / "fifo"
    fifo_dir.mkdir()
    for name in ("rec.sigmf-meta", "data.npz", "t.toml", "study.toml", "plan.json", "bundle.tar.gz", "m.pt",
                 "model.onnx", "frames.npy", "data.pkl", "data.hdf5"):
        os.mkfifo(fifo_dir / name)
    (fifo_dir / "rec.sigmf-data").write_bytes(b"\0" * 64)
    devzero = d / "devzero"
    devzero.mkdir()
    for name in ("rec.sigmf-data", "data.npz", "t.toml", "m.pt", "bundle.tar.gz", "frames.npy", "data.hdf5"):
        os.symlink("/dev/zero", devzero / name)
    (devzero / "rec.sigmf-meta").write_text(json.dumps({"global": {"core:datatype": "cf32_le"}}))
    tdir_fifo = d / "targets-fifo"
    tdir_fifo.mkdir()
    os.mkfifo(tdir_fifo / "fifo.toml")
    tdir_zero = d / "targets-zero"
    tdir_zero.mkdir()
    os.symlink("/dev/zero", tdir_zero / "zero.toml")
    F = "non-regular files"
    add(F, "FIFO .sigmf-meta: data info", ["data", "info", fifo_dir / "rec.sigmf-meta"], match="FIFO")
    add(F, "FIFO .sigmf-meta: predict", ["predict", bundle, "--input", fifo_dir / "rec.sigmf-meta"], match="FIFO")
    add(F, "SigMF data -> /dev/zero: predict", ["predict", bundle, "--input", devzero / "rec.sigmf-meta"],
        match="device")
    add(F, "SigMF data -> /dev/zero: data info", ["data", "info", devzero / "rec.sigmf-meta"], match="device")
    add(F, "FIFO npz: data info", ["data", "info", fifo_dir / "data.npz"], match="FIFO")
    add(F, "FIFO npz: train", ["train", "--data", fifo_dir / "data.npz", "--model", "resnet20-1d", "--epochs", "1",
                               "--out", d / "o" / "m.pt"], match="FIFO")
    add(F, "npz -> /dev/zero: data convert", ["data", "convert", devzero / "data.npz", "--out", d / "o" / "c.npz"],
        match="device")
    add(F, "FIFO pickle: data info", ["data", "info", fifo_dir / "data.pkl"], match="FIFO")
    add(F, "FIFO hdf5: data info", ["data", "info", fifo_dir / "data.hdf5"], match="FIFO")
    add(F, "hdf5 -> /dev/zero: data info", ["data", "info", devzero / "data.hdf5"], match="device")
    add(F, "FIFO target .toml in --targets-dir", ["targets", "--targets-dir", tdir_fifo], match="FIFO")
    add(F, "target .toml -> /dev/zero", ["targets", "--targets-dir", tdir_zero], match="device")
    add(F, "FIFO study config", ["compare", "--config", fifo_dir / "study.toml", "--out", d / "o" / "s1"],
        match="FIFO")
    add(F, "FIFO plan: prune", ["prune", "--model", ckpt, "--plan", fifo_dir / "plan.json", "--out", d / "o" / "p.pt"],
        match="FIFO")
    add(F, "FIFO bundle archive: predict", ["predict", fifo_dir / "bundle.tar.gz", "--input", frames], match="FIFO")
    add(F, "bundle archive -> /dev/zero", ["predict", devzero / "bundle.tar.gz", "--input", frames], match="device")
    add(F, "FIFO checkpoint: inspect", ["inspect", fifo_dir / "m.pt"], match="FIFO")
    add(F, "checkpoint -> /dev/zero: inspect", ["inspect", devzero / "m.pt"], match="device")
    add(F, "FIFO .onnx: predict", ["predict", fifo_dir / "model.onnx", "--input", frames], match="FIFO")
    add(F, "FIFO .npy frames: predict", ["predict", bundle, "--input", fifo_dir / "frames.npy"], match="FIFO")
    add(F, ".npy frames -> /dev/zero: predict", ["predict", bundle, "--input", devzero / "frames.npy"],
        match="device")

    # --- expansion bombs: small files declaring huge contents ----------------------------------------
    B = "expansion bombs"
    bombs = d / "bombs"
    bombs.mkdir()
    _npz_zip_bomb(bombs / "zipbomb.npz")
    add(B, "npz zip bomb (518 MiB of zeros): data info", ["data", "info", bombs / "zipbomb.npz"], match="expand|limit")
    add(B, "npz zip bomb: train", ["train", "--data", bombs / "zipbomb.npz", "--model", "resnet20-1d", "--epochs",
                                   "1", "--out", d / "o" / "m2.pt"], match="expand|limit")
    _npz_member_variant(data, bombs / "lying.npz", "lying_shape")
    add(B, "npz header declares 2^30 frames", ["data", "info", bombs / "lying.npz"], match="declares|expand|limit")
    _pickle_memo_bomb(bombs / "RML2016.10a_dict.pkl")
    add(B, "RML pickle memo bomb (3000 references to one array): data info",
        ["data", "info", bombs / "RML2016.10a_dict.pkl"], match="expand|limit")
    add(B, "RML pickle memo bomb: data convert",
        ["data", "convert", bombs / "RML2016.10a_dict.pkl", "--out", d / "o" / "p.npz"], match="expand|limit")
    h5 = _hdf5_files(bombs)
    add(B, "HDF5 extent of 32 GiB with no storage: data info", ["data", "info", h5["sparse_extent"]],
        match="expand|limit")
    add(B, "HDF5 extent of 32 GiB: data convert",
        ["data", "convert", h5["sparse_extent"], "--out", d / "o" / "h.npz"], match="expand|limit")
    tb = bombs / "tarbomb.tar.gz"
    _tar_bundle(bundle, tb, extra={"padding.bin": 2 * GIB})
    add(B, "bundle tar with an unlisted 2 GiB member: predict", ["predict", tb, "--input", frames],
        match="does not list|limit")
    tb2 = bombs / "tarbomb-listed.tar.gz"
    _tar_bundle(bundle, tb2, extra={"model-fp32.onnx.extra": 64 << 20})
    add(B, "bundle tar with an unlisted 64 MiB member", ["profile", tb2, "--iters", "2", "--warmup", "1"], match="does not list")
    tb3 = bombs / "paxbomb.tar.gz"
    _tar_bundle(bundle, tb3, pax={"comment": "x" * (64 << 20)})
    add(B, "bundle tar with a 64 MiB pax header: predict", ["predict", tb3, "--input", frames],
        match="extended header")
    wide = bombs / "wide.pt"
    _checkpoint_with_spec(ckpt, wide, _widen)
    add(B, "checkpoint spec with 65536 channels: inspect", ["inspect", wide], match="EDGEPRUNE_MAX_WIDTH")
    add(B, "checkpoint spec with 65536 channels: eval", ["eval", "--model", wide, "--data", data],
        match="EDGEPRUNE_MAX_WIDTH")
    wide2 = bombs / "wide2.pt"
    _checkpoint_with_spec(ckpt, wide2, lambda s: _widen(s, 8000))
    add(B, "checkpoint spec with 8000 channels (params over the cap): export",
        ["export", "--model", wide2, "--out", d / "o" / "w.onnx"], match="EDGEPRUNE_MAX_PARAMS")
    deep = bombs / "deep.pt"
    _checkpoint_with_spec(ckpt, deep, lambda s: s["layers"].__setitem__(
        slice(1, 1), [dict(s["layers"][1]) for _ in range(5000)]))
    add(B, "checkpoint spec with 5000 more layers: inspect", ["inspect", deep], match="EDGEPRUNE_MAX_LAYERS")
    # ablation: with the limit raised, the same files are what they claim (the limit, not luck, refused them)
    add("limits overridable", "npz zip bomb with EDGEPRUNE_MAX_EXPANSION raised: data info loads 512 MiB",
        ["--quiet", "data", "info", bombs / "zipbomb.npz"], expect="ok", env={"EDGEPRUNE_MAX_EXPANSION": "100000"},
        rss_at_least=400 << 20)
    add("limits overridable", "65536 channels with EDGEPRUNE_MAX_WIDTH raised: the params cap refuses next",
        ["inspect", wide], env={"EDGEPRUNE_MAX_WIDTH": "100000"}, match="EDGEPRUNE_MAX_PARAMS")
    add("limits overridable", "RML memo bomb with EDGEPRUNE_MAX_ARRAY_BYTES lowered to 1 MiB, expansion raised",
        ["data", "info", bombs / "RML2016.10a_dict.pkl"],
        env={"EDGEPRUNE_MAX_EXPANSION": "100000", "EDGEPRUNE_MAX_ARRAY_BYTES": str(1 << 20)},
        match="EDGEPRUNE_MAX_ARRAY_BYTES")
    ckbomb = bombs / "ckbomb.pt"
    shutil.copyfile(ckpt, ckbomb)
    with zipfile.ZipFile(ckbomb, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        prefix = zf.namelist()[0].split("/")[0]
        with zf.open(f"{prefix}/data/999", "w", force_zip64=True) as fh:
            shutil.copyfileobj(_Zeros(1 * GIB), fh, 1 << 20)
    add(B, "checkpoint zip with a 1 GiB deflated member: inspect", ["inspect", ckbomb], match="expand")
    # an honest capture of 1 GiB (a sparse file): data info counts its frames without reading the samples
    huge_cap = _sigmf(bombs, "gib", samples=np.zeros(16, np.complex64))
    with open(bombs / "gib.sigmf-data", "r+b") as fh:
        fh.truncate(1 * GIB)
    add(B, "data info on a 1 GiB SigMF capture (sparse file) reads no samples", ["--quiet", "data", "info", huge_cap],
        expect="ok", rss_at_most=200 << 20)
    big_sigmf = _sigmf(bombs, "long", samples=np.zeros(1 << 16, np.complex64))
    add(B, "data info on a SigMF capture with --length 8 (summary reads no samples)",
        ["data", "info", big_sigmf, "--length", "8"], expect="ok")

    # --- foreign references: data from other files ---------------------------------------------------
    R = "foreign references"
    for key in ("external_storage_abs", "external_storage_dotdot", "external_dev_zero", "external_link", "virtual"):
        add(R, f"HDF5 {key.replace('_', ' ')}: data convert", ["data", "convert", h5[key], "--out", d / "o" / "x.npz"],
            match="external|virtual")
    add(R, "HDF5 external storage: data info", ["data", "info", h5["external_storage_abs"]], match="external")
    ext = d / "ext"
    ext.mkdir()
    _onnx_external(onnx_path, ext / "abs.onnx", "/etc/hostname")
    add(R, "ONNX external data at an absolute path: predict", ["predict", ext / "abs.onnx", "--input", frames],
        match="external")
    _onnx_external(onnx_path, ext / "rel.onnx", "../secret.bin")
    add(R, "ONNX external data at ../: profile", ["profile", ext / "rel.onnx", "--iters", "2", "--warmup", "1"], match="external")
    for name, loc, write in (("unlisted", "weights.bin", True), ("outside", "../frames.npy", False)):
        b = d / f"bundle-ext-{name}"
        shutil.copytree(bundle, b)
        _onnx_external(b / "model-fp32.onnx", b / "model-fp32.onnx.new", loc, "weights.bin" if write else None)
        os.replace(b / "model-fp32.onnx.new", b / "model-fp32.onnx")
        if write:  # listed in the manifest too: then the bundle is fine (the intended success below)
            pass
        _rewrite_manifest(b, lambda m: None)
        add(R, f"bundle ONNX external data {name} ({loc}): predict", ["predict", b, "--input", frames],
            match="does not list|not a file the bundle")
    good = d / "bundle-ext-listed"
    shutil.copytree(bundle, good)
    _onnx_external(good / "model-fp32.onnx", good / "model-fp32.onnx.new", "weights.bin", "weights.bin")
    os.replace(good / "model-fp32.onnx.new", good / "model-fp32.onnx")
    _rewrite_manifest(good, lambda m: m["files"].__setitem__("weights.bin", {}))
    add(R, "bundle ONNX external data in a listed file: predict (intended success)",
        ["--quiet", "predict", good, "--input", frames], expect="ok")
    tl = d / "tarlink.tar.gz"
    with tarfile.open(tl, "w:gz") as tar:
        tar.add(bundle / "manifest.json", arcname="manifest.json")
        info = tarfile.TarInfo("model-fp32.onnx")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    add(R, "bundle tar with a symlink member", ["predict", tl, "--input", frames], match="link")

    # --- malformed values: numbers out of range, text for numbers, contradictions -------------------
    V = "malformed values"
    specs = d / "specs"
    specs.mkdir()
    for name, change in (("stride0", {"stride": 0}), ("kernel0", {"k": 0}), ("padding1e12", {"padding": 10 ** 12}),
                         ("padding-huge-int", {"padding": 2 ** 70})):
        p = specs / f"{name}.pt"
        _checkpoint_with_spec(ckpt, p, lambda s, c=change: _first_conv(s, **c))
        add(V, f"spec {name}: inspect", ["inspect", p], match="spec")
    add(V, "spec stride 0: eval", ["eval", "--model", specs / "stride0.pt", "--data", data], match="stride")
    sig = d / "sig"
    sig.mkdir()
    for name, ann in (("overflow", {"core:sample_start": 0, "core:sample_count": 1e400, "core:label": "a"}),
                      ("text", {"core:sample_start": "zero", "core:label": "a"}),
                      ("bigint", {"core:sample_start": 2 ** 70, "core:label": "a"}),
                      ("negative", {"core:sample_start": -5, "core:label": "a"}),
                      ("snr-text", {"core:sample_start": 0, "core:label": "a", "edgeprune:snr": "high"}),
                      ("snr-inf", {"core:sample_start": 0, "core:label": "a", "edgeprune:snr": 1e999})):
        m = _sigmf(sig, name)
        doc = m.read_text().replace('"annotations": []', '"annotations": [' + json.dumps(ann) + "]")
        m.write_text(doc.replace("Infinity", "1e999"))
        add(V, f"SigMF annotation {name}: data info", ["data", "info", m], match="sample|snr|must")
    add(V, "SigMF annotation overflow: predict", ["predict", bundle, "--input", sig / "overflow.sigmf-meta"],
        match="sample_count")
    for kind in ("deep_meta", "scalar_classes", "encrypted", "method99"):
        p = d / f"npz-{kind}.npz"
        _npz_member_variant(data, p, kind)
        add(V, f"npz {kind}: data info", ["data", "info", p], match="nested|classes|encrypted|method")
    man = d / "bundle-len"
    shutil.copytree(bundle, man)
    _rewrite_manifest(man, lambda m: m["input"].__setitem__("length", 2 * shared["length"]))
    long_frames = d / "long.npy"
    np.save(long_frames, np.zeros((2, 2, 2 * shared["length"]), np.float32))
    add(V, "manifest input length contradicts the model", ["predict", man, "--input", long_frames],
        match="model takes")
    man2 = d / "bundle-cls"
    shutil.copytree(bundle, man2)
    _rewrite_manifest(man2, lambda m: m.__setitem__("classes", m["classes"] + ["extra"]))
    add(V, "manifest classes contradict the model", ["predict", man2, "--input", frames],
        match="outputs|classes .* records")
    _onnx_with_meta(onnx_path, d / "meta-cls.onnx", **{"edgeprune.classes": json.dumps(["a", "b", "c", "d", "e",
                                                                                         "f", "g"])})
    add(V, "ONNX metadata classes contradict the model", ["predict", d / "meta-cls.onnx", "--input", frames],
        match="outputs")
    _onnx_with_meta(onnx_path, d / "meta-str.onnx", **{"edgeprune.classes": json.dumps("QPSK")})
    add(V, "ONNX metadata classes is a string", ["predict", d / "meta-str.onnx", "--input", frames],
        match="class names|edgeprune.classes' must be a list")
    _onnx_with_meta(onnx_path, d / "meta-len.onnx", **{"edgeprune.input": json.dumps({"length": 4 * shared["length"]})})
    add(V, "ONNX metadata length contradicts the model", ["predict", d / "meta-len.onnx", "--input", frames],
        match="model takes|samples")
    for seed in ("-1", str(2 ** 70), "nan"):
        add(V, f"--seed {seed}", ["train", "--data", data, "--model", "resnet20-1d", "--epochs", "1", "--seed", seed,
                                  "--out", d / "o" / "s.pt"], match="seed")
    for lr in ("-1", str(2 ** 70), "nan", "inf"):
        add(V, f"finetune --lr {lr}", ["finetune", "--model", ckpt, "--data", data, "--epochs", "1", "--lr", lr,
                                       "--out", d / "o" / "f.pt"], match="lr")
    for name, extra in (("seed 2^70", f"[study]\nseed = {2 ** 70}"), ("seed -1", "[study]\nseed = -1"),
                        ("finetune lr nan", "[finetune]\nlr = nan"), ("train lr inf", "[train]\nlr = inf"),
                        ("deep nesting", "[study]\nname = " + "[" * 5000 + "]" * 5000)):
        p = _config(d, "cfg-" + name.replace(" ", "-").replace("^", ""), extra)
        add(V, f"study config {name}", ["compare", "--config", p, "--out", d / "o" / "s2"],
            match="seed|lr|finite|range|TOML|must")
    for name, body in (("workspace", VALID_TARGET + "workspace_mib = 9223372036854775807\n"),
                       ("deep", VALID_TARGET + "x = " + "[" * 5000 + "]" * 5000 + "\n"),
                       ("dla", VALID_TARGET + "dla_cores = 1000000\n"),
                       ("batch", VALID_TARGET + "[batch]\nmax = 4294967296\n")):
        folder = _target(d, name, body.format(name=name))
        add(V, f"target {name}", ["targets", "--targets-dir", folder], match="workspace|TOML|dla|batch|unknown")
    from edgeprune.data.dataset import load_npz, save_npz

    loud = load_npz(data)
    loud.x = np.full_like(loud.x, 3e38)
    save_npz(d / "loud.npz", loud)
    add(V, "frames of 3e38 through a model without normalisation: eval", ["eval", "--model", ckpt, "--data",
                                                                           d / "loud.npz"], match="NaN or Inf")
    huge = d / "huge.npy"
    np.save(huge, np.full((4, 2, shared["length"]), 3e38, np.float32))
    add(V, "frames of 3e38 through a bundle without normalisation: predict", ["predict", bundle, "--input", huge],
        match="NaN or Inf|too large")

    # --- the study folder: user files beside a study, two runs at once -----------------------------
    S = "study folder"
    study = d / "study-user"
    (study / "sub").mkdir(parents=True)
    for name in (".env.template", "sub/.bashrc.original", ".notes.abcdefgh", "state.json.bak"):
        (study / name).write_text("the user's")
    bad_data = d / "bad.npz"
    bad_data.write_bytes(b"PK\x03\x04 not really")
    cfg = _config(d, "cfg-baddata", data=f'file = "{bad_data}"')
    add(S, "compare with the user's dotfiles in --out (the data then fails)", ["compare", "--config", cfg,
                                                                                 "--out", study],
        match="npz", keep=[str(study / n) for n in (".env.template", "sub/.bashrc.original", ".notes.abcdefgh",
                                                     "state.json.bak")])
    locked = d / "study-locked"
    locked.mkdir()
    add(S, "compare while another run holds the folder", ["compare", "--config", _config(d, "cfg-ok"),
                                                          "--out", locked], match="another edgeprune run",
        lock=str(locked))

    # --- noise: warnings and native logs where the command succeeds ------------------------------
    N = "noise on success"
    add(N, "predict with a bundle (ORT session)", ["--quiet", "predict", bundle, "--input", frames], expect="ok")
    add(N, "predict with an .onnx file", ["--quiet", "predict", onnx_path, "--input", frames], expect="ok")
    old = _sigmf(d, "old-version", extra_global={"core:version": "0.0.1", "core:unknown_field": 1})
    add(N, "data info on SigMF the sigmf package warns about", ["--quiet", "data", "info", old], expect="ok")
    big = _sigmf(d, "loud", samples=np.full(1024, 3e38 + 3e38j, np.complex64))
    add(N, "data convert of 3e38 samples with L1 normalisation", ["--quiet", "data", "convert", big, "--normalize",
                                                                   "l1", "--out", d / "o" / "loud.npz"],
        expect="ok", loud_out=str(d / "o" / "loud.npz"))
    return cases


# ----------------------------------------------------------------------------------------- running

CASE_KEYS = ("name", "argv", "cwd", "env", "stdin", "fsize")   # what forkrun.py reads of a case


def driver_command(cases, work: Path, timeout_each: int = 90, environ=None) -> tuple[list[str], dict, Path]:
    """The forkrun.py command line for ``cases`` (written to ``work``), its environment (``environ``, default
    this process's, plus the repository on PYTHONPATH) and where its results go."""
    environ = dict(os.environ if environ is None else environ)
    doc = {"options": {"as_mib": 2048, "fsize_mib": 1024, "timeout": timeout_each},
           "cases": [{k: c[k] for k in CASE_KEYS if k in c} for c in cases]}
    cases_path = work / "cases.json"
    results_path = work / "results.json"
    cases_path.write_text(json.dumps(doc))
    env = with_repo_path(dict(environ, EDGEPRUNE_QUIET="1"))
    return [sys.executable, str(HERE / "forkrun.py"), str(cases_path), str(results_path)], env, results_path


def _run_driver(cases, work: Path, timeout_each: int = 90, environ=None) -> dict:
    """The cases' results: in children of this worker's fork server (tests/edgeprune_run.py), or, with
    ``environ``, of a driver started in that environment."""
    if environ is None:
        return {"results": run_cases([{k: c[k] for k in CASE_KEYS if k in c} for c in cases], work, timeout_each)}
    cmd, env, results_path = driver_command(cases, work, timeout_each, environ)
    subprocess.run(cmd, env=env, timeout=timeout_each * len(cases) + 120, check=True)
    return json.loads(results_path.read_text())


def judge(case: dict, res: dict) -> list[str]:
    """The problems with one case's outcome (empty: clean)."""
    problems = []
    if res["timed_out"]:
        problems.append(f"still running after {res['seconds']:.0f} s (killed)")
    if case["expect"] == "ok":
        if res["rc"] != 0:
            problems.append(f"exit status {res['rc']}, expected success")
        if res["stderr"].strip():
            problems.append(f"stderr not empty: {res['stderr'].strip()[:300]!r}")
    else:
        problems += check_error_output(1 if res["rc"] else 0, res["stderr"], case.get("match"))
        if res["rc"] < 0:
            problems.append(f"killed by signal {-res['rc']}")
    grew = res["peak_rss"] - min(res["start_rss"], res["peak_rss"])
    if case.get("rss_at_least"):
        if res["peak_rss"] < case["rss_at_least"]:
            problems.append(f"peak RSS {res['peak_rss'] >> 20} MiB: the file did not expand as built")
    elif grew > case.get("rss_at_most", RSS_BUDGET):
        problems.append(f"peak RSS grew by {grew / GIB:.2f} GiB (budget 1 GiB)")
    if (res.get("written") or 0) > WRITE_BUDGET:
        problems.append(f"wrote {res['written'] / GIB:.2f} GiB (budget 1 GiB)")
    for p in case.get("keep", []):
        if not Path(p).exists():
            problems.append(f"the user's file {p} was deleted")
    if case.get("loud_out"):
        from edgeprune.data.dataset import load_npz

        x = load_npz(case["loud_out"]).x
        if not (np.isfinite(x).all() and np.abs(x).max() > 1e-3):
            problems.append("3e38 samples normalised to zeros or non-finite values")
    return problems


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, shared):
    d = tmp_path_factory.mktemp("hostile")
    (d / "o").mkdir()
    cases = build_cases(d, shared)
    big = [p for p in d.rglob("*") if p.is_file() and not p.is_symlink() and p.stat().st_size > 10 << 20
           and p.name != "gib.sigmf-data"]  # the one honest large input (sparse: ~0 bytes on disk)
    assert not big, f"hostile inputs must stay under 10 MB: {big}"
    from edgeprune.study.stages import lock_folder

    locks = [lock_folder(Path(c["lock"])) for c in cases if c.get("lock")]
    try:
        results = _run_driver(cases, d)
    finally:
        for fh in locks:
            fh.close()
    by_name = {r["name"]: r for r in results["results"]}
    out = {}
    for c in cases:
        res = by_name.get(c["name"])
        problems = judge(c, res) if res else ["the driver never ran it"]
        out[c["name"]] = (c, res, problems)
        detail = "; ".join(problems) or (res["stderr"].strip() or "success")
        record("subprocess", c["name"], not problems, detail, cls=c["class"],
               peak_rss=res["peak_rss"] if res else None, start_rss=res["start_rss"] if res else None,
               seconds=res["seconds"] if res else None)
    return out


CLASSES = ("non-regular files", "expansion bombs", "foreign references", "malformed values", "study folder",
           "noise on success", "limits overridable")


@pytest.mark.parametrize("cls", CLASSES)
def test_every_case_clean(outcomes, cls):
    mine = {n: v for n, v in outcomes.items() if v[0]["class"] == cls}
    assert mine, f"no cases in class {cls}"
    bad = {n: p for n, (_, _, p) in mine.items() if p}
    assert not bad, "\n".join(f"{n}: {'; '.join(p)}" for n, p in bad.items())


def test_fifo_never_blocks_and_data_file_device_is_not_zero_frames(outcomes):
    """The issue's two silent cases, by outcome: predict on a FIFO/device SigMF is an error, not 0 frames."""
    for name in ("non-regular files: SigMF data -> /dev/zero: predict", "non-regular files: FIFO .sigmf-meta: predict"):
        _, res, _ = outcomes[name]
        assert res["rc"] != 0 and not res["timed_out"], res
        assert "0 frames" not in res["stdout"]
