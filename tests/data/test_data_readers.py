"""Readers for the real dataset formats, on small files built in the exact formats."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from edgeprune.data.dataset import SignalDataset, save_npz
from edgeprune.data.readers import detect_format, load_dataset
from edgeprune.data.rml_pickle import safe_load
from edgeprune.data.sigmf_io import iter_sigmf_frames, open_recording, parse_datatype, read_sigmf, write_sigmf
from edgeprune.data.synth import RML2018_CLASSES
from edgeprune.errors import EdgepruneError
from rml_files import py2_pickle, rml_dict, write_hisar, write_rml2018_hdf5


# ------------------------------------------------------------------ RML2016 pickles

@pytest.mark.parametrize("writer", ["py2", "py3"])
def test_rml_pickle_reads_both_python2_and_protocol2_files(tmp_path, writer):
    d = rml_dict()
    p = tmp_path / "RML2016.10a_dict.pkl"
    p.write_bytes(py2_pickle(d) if writer == "py2" else pickle.dumps(d, protocol=2))
    ds = load_dataset(p)
    assert ds.classes == ["AM-SSB", "BPSK", "QPSK"]          # class index = sorted names
    assert ds.meta["format"] == "rml-pickle" and ds.meta["normalization"] == "l1"
    assert len(ds) == 3 * 2 * 5 and ds.x.shape[1:] == (2, 16)
    sel = (ds.y == 2) & (ds.snr == 10)
    np.testing.assert_array_equal(ds.x[sel], d[("QPSK", 10)])
    hi = load_dataset(p, min_snr=10, classes=["QPSK", "BPSK"], per_key=2)
    assert hi.classes == ["BPSK", "QPSK"] and set(hi.snr) == {10.0} and len(hi) == 4


def test_rml_10b_dat_extension(tmp_path):
    p = tmp_path / "RML2016.10b.dat"
    p.write_bytes(py2_pickle(rml_dict(mods=("QPSK", "WBFM"))))
    ds = load_dataset(p)
    assert ds.meta["dataset"] == "rml2016.10b" and ds.classes == ["QPSK", "WBFM"]


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    target = tmp_path / "pwned"
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({("QPSK", 0): _Evil(target)}, protocol=2))
    with pytest.raises(EdgepruneError, match=r"refusing.*system"):
        load_dataset(p)
    assert not target.exists()
    # the same file really would run the command through a plain pickle.load
    pickle.loads(p.read_bytes())
    assert target.exists()


def test_other_globals_and_codecs_are_refused():
    with pytest.raises(EdgepruneError, match="builtins.eval"):
        safe_load(b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1\x85R.")
    with pytest.raises(EdgepruneError, match="_codecs.encode"):
        safe_load(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.")


@pytest.mark.parametrize("content,match", [
    (b"", "empty"),
    (None, "truncated"),
    pytest.param(np.random.default_rng(1).bytes(64) + b"\x00", "truncated|not|refusing", id="random-bytes"),
    (pickle.dumps([1, 2, 3], protocol=2), "expected a non-empty dict"),
    (pickle.dumps({("QPSK", 0): [1, 2]}, protocol=2), r"array \(n, 2, L\)"),
    (pickle.dumps({"QPSK": np.zeros((1, 2, 8), np.float32)}, protocol=2), "not \\(modulation, snr\\)"),
])
def test_bad_pickles_give_one_clear_error(tmp_path, content, match):
    p = tmp_path / "bad.pkl"
    if content is None:
        content = py2_pickle(rml_dict())[:-300]
    p.write_bytes(content)
    with pytest.raises(EdgepruneError, match=match) as ei:
        load_dataset(p)
    assert "\n" not in str(ei.value)


# ------------------------------------------------------------------ RML2018 HDF5

def test_rml2018_hdf5_selection_and_layout(tmp_path):
    p = tmp_path / "GOLD_XYZ_OSC.0001_1024.hdf5"
    x, labels, snr = write_rml2018_hdf5(p, per_key=3, snrs=(-20, 0, 10, 30))
    ds = load_dataset(p)
    assert ds.classes == RML2018_CLASSES and ds.x.shape == (24 * 4 * 3, 2, 32)
    np.testing.assert_array_equal(ds.x, x.transpose(0, 2, 1))
    np.testing.assert_array_equal(ds.y, labels)
    sub = load_dataset(p, classes=["QPSK", "OOK", "FM"], min_snr=10, per_key=2)
    assert sub.classes == ["OOK", "QPSK", "FM"]           # kept in the true one-hot order
    assert len(sub) == 3 * 2 * 2 and set(sub.snr) == {10.0, 30.0}
    src = np.flatnonzero((labels == RML2018_CLASSES.index("FM")) & (snr == 30))[:2]
    np.testing.assert_array_equal(sub.x[(sub.y == 2) & (sub.snr == 30)], x[src].transpose(0, 2, 1))
    assert load_dataset(p, max_snr=-20).snr_levels() == [-20.0]


def test_rml2018_reads_only_selected_rows(tmp_path, monkeypatch):
    import h5py

    p = tmp_path / "rml.h5"
    write_rml2018_hdf5(p, per_key=4)
    reads = []
    orig = h5py.Dataset.__getitem__

    def spy(self, key):
        if self.name == "/X":
            reads.append(key)
        return orig(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    ds = load_dataset(p, classes=["BPSK"], min_snr=0)
    assert len(ds) == 8
    assert reads and all(isinstance(k, slice) and k.stop - k.start <= 8 for k in reads)


def test_bad_hdf5_files(tmp_path):
    import h5py

    p = tmp_path / "wrong.hdf5"
    with h5py.File(p, "w") as f:
        f.create_dataset("data", data=np.zeros(3))
    with pytest.raises(EdgepruneError, match="lacks the datasets"):
        load_dataset(p)
    q = tmp_path / "trunc.hdf5"
    write_rml2018_hdf5(tmp_path / "ok.hdf5")
    q.write_bytes((tmp_path / "ok.hdf5").read_bytes()[:3000])
    with pytest.raises(EdgepruneError, match="HDF5|truncated|corrupt"):
        load_dataset(q)
    r = tmp_path / "shape.hdf5"
    with h5py.File(r, "w") as f:
        f.create_dataset("X", data=np.zeros((4, 3, 16), np.float32))
        f.create_dataset("Y", data=np.eye(4))
        f.create_dataset("Z", data=np.zeros((4, 1)))
    with pytest.raises(EdgepruneError, match=r"X must be \(N, L, 2\)"):
        load_dataset(r)


# ------------------------------------------------------------------ HisarMod

def test_hisarmod_csv_both_splits(tmp_path):
    codes = [0, 10, 61, 54, 0, 10, 61, 54]
    snrs = [-10, -10, -10, -10, 8, 8, 8, 8]
    z_train = write_hisar(tmp_path, "train", codes, snrs)
    write_hisar(tmp_path, "test", [3, 44], [0, 0], seed=1)
    assert detect_format(tmp_path) == "hisarmod"
    ds = load_dataset(tmp_path)                               # default split: train
    assert ds.meta["split"] == "train" and len(ds.classes) == 26
    assert ds.classes[:2] == ["BPSK", "QPSK"] and ds.classes[-1] == "PM"
    np.testing.assert_allclose(ds.x[:, 0] + 1j * ds.x[:, 1], z_train, rtol=1e-5, atol=1e-9)
    assert [ds.classes[k] for k in ds.y[:4]] == ["BPSK", "QPSK", "256QAM", "PM"]
    te = load_dataset(tmp_path, split="test")
    assert [te.classes[k] for k in te.y] == ["4PAM", "FM"]
    hi = load_dataset(tmp_path / "Train" / "train_data.csv", min_snr=0, classes=["QPSK", "PM"])
    assert hi.classes == ["QPSK", "PM"] and len(hi) == 2


def test_hisarmod_bad_input(tmp_path):
    write_hisar(tmp_path, "train", [0, 999], [0, 0])
    with pytest.raises(EdgepruneError, match="unknown HisarMod label code"):
        load_dataset(tmp_path)
    write_hisar(tmp_path, "train", [0, 10, 20], [0, 0, 0])
    data = tmp_path / "Train" / "train_data.csv"
    data.write_text("\n".join(data.read_text().splitlines()[:2]) + "\n")
    with pytest.raises(EdgepruneError, match="truncated"):
        load_dataset(tmp_path)
    data.write_text("1+2i,zz\n3,4\n5,6\n")
    with pytest.raises(EdgepruneError, match="row 1"):
        load_dataset(tmp_path)
    with pytest.raises(EdgepruneError, match="split"):
        load_dataset(tmp_path, split="val")


# ------------------------------------------------------------------ SigMF

@pytest.mark.parametrize("datatype,tol", [("cf32_le", 1e-6), ("ci16_le", 1e-4), ("ci8", 2e-2), ("cf64_be", 1e-6),
                                          ("cu8", 2e-2)])
def test_sigmf_frames_stream_and_match_across_datatypes(tmp_path, datatype, tol):
    rng = np.random.default_rng(0)
    z = (rng.uniform(-0.7, 0.7, 1000) + 1j * rng.uniform(-0.7, 0.7, 1000)).astype(np.complex64)
    write_sigmf(tmp_path / "cap", z, datatype)
    chunks = list(iter_sigmf_frames(tmp_path / "cap.sigmf-meta", 64, hop=32, normalize="none", batch=7,
                                    backend="builtin"))
    assert [len(c) for c in chunks] == [7, 7, 7, 7, 2]
    frames = np.concatenate(chunks)
    assert frames.shape == ((1000 - 64) // 32 + 1, 2, 64) and frames.dtype == np.float32
    np.testing.assert_allclose(frames[3, 0] + 1j * frames[3, 1], z[96:160], atol=tol)
    l1 = next(iter_sigmf_frames(tmp_path / "cap.sigmf-data", 64, backend="builtin"))
    np.testing.assert_allclose(np.sqrt(l1[:, 0] ** 2 + l1[:, 1] ** 2).sum(1), 1, rtol=1e-4)


def test_sigmf_package_and_builtin_parsers_agree(tmp_path):
    pytest.importorskip("sigmf")
    rng = np.random.default_rng(1)
    z = (rng.standard_normal(600) + 1j * rng.standard_normal(600)).astype(np.complex64) * 0.1
    write_sigmf(tmp_path / "cap", z, "ci16_le")
    a = np.concatenate(list(iter_sigmf_frames(tmp_path / "cap", 128, backend="builtin")))
    b = np.concatenate(list(iter_sigmf_frames(tmp_path / "cap", 128, backend="sigmf")))
    np.testing.assert_array_equal(a, b)
    assert open_recording(tmp_path / "cap", "sigmf").n_samples == 600


def test_sigmf_annotations_become_labels(tmp_path):
    z = np.exp(1j * np.arange(2000) * 0.3).astype(np.complex64)
    ann = [{"core:sample_start": 0, "core:sample_count": 700, "core:label": "QPSK"},
           {"core:sample_start": 1000, "core:sample_count": 1000, "core:label": "BPSK", "edgeprune:snr": 12}]
    write_sigmf(tmp_path / "lab.sigmf-meta", z, annotations=ann)
    ds = load_dataset(tmp_path / "lab.sigmf-meta", length=128)
    assert ds.classes == ["BPSK", "QPSK"]
    assert np.bincount(ds.y).tolist() == [1000 // 128, 700 // 128]
    assert set(ds.snr[ds.y == 0]) == {12.0} and ds.meta["normalization"] == "l1"
    write_sigmf(tmp_path / "plain", z)
    plain = load_dataset(tmp_path / "plain.sigmf-data", length=100, hop=50)
    assert plain.classes == ["unknown"] and len(plain) == (2000 - 100) // 50 + 1


def test_sigmf_bad_input(tmp_path):
    with pytest.raises(EdgepruneError, match="unsupported SigMF datatype"):
        parse_datatype("cq12_le")
    with pytest.raises(EdgepruneError, match="endianness"):
        parse_datatype("cf32")
    write_sigmf(tmp_path / "a", np.zeros(10, np.complex64))
    with pytest.raises(EdgepruneError, match="fewer than one"):
        read_sigmf(tmp_path / "a", length=128)
    (tmp_path / "a.sigmf-data").unlink()
    with pytest.raises(EdgepruneError, match="does not exist"):
        load_dataset(tmp_path / "a.sigmf-meta")
    (tmp_path / "b.sigmf-meta").write_text('{"global": {"core:datatype": "cf32_le"')
    (tmp_path / "b.sigmf-data").write_bytes(b"\0" * 64)
    with pytest.raises(EdgepruneError, match="SigMF metadata .* is not valid JSON"):
        load_dataset(tmp_path / "b.sigmf-meta")


# ------------------------------------------------------------------ dispatch

def test_dispatch_by_extension_and_content(tmp_path, toy_dataset):
    save_npz(tmp_path / "d.npz", toy_dataset)
    (tmp_path / "renamed.bin").write_bytes((tmp_path / "d.npz").read_bytes())
    assert detect_format(tmp_path / "renamed.bin") == "npz"
    assert len(load_dataset(tmp_path / "renamed.bin")) == len(toy_dataset)
    (tmp_path / "rml.bin").write_bytes(py2_pickle(rml_dict()))
    assert detect_format(tmp_path / "rml.bin") == "rml-pickle"
    assert load_dataset(tmp_path / "rml.bin", fmt="pkl").classes == ["AM-SSB", "BPSK", "QPSK"]
    sub = load_dataset(tmp_path / "d.npz", classes=["tone1", "tone3"], min_snr=5, per_key=3)
    assert sub.classes == ["tone1", "tone3"] and len(sub) == 6 and set(sub.y) == {0, 1}
    norm = load_dataset(tmp_path / "d.npz", normalize="l1")
    assert norm.meta["normalization"] == "l1"


@pytest.mark.parametrize("name,content,match", [
    ("e.npz", b"", "empty"),
    pytest.param("r.npz", np.random.default_rng(2).bytes(200), "npz|corrupt|truncated", id="r.npz-random-bytes"),
    pytest.param("r.bin", b"\x01\x02garbage" * 10, "cannot tell the format", id="r.bin-garbage"),
    ("x.npz", None, "does not exist"),
])
def test_dispatch_errors(tmp_path, name, content, match):
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(EdgepruneError, match=match):
        load_dataset(p)


def test_unknown_format_and_option(tmp_path, toy_npz):
    with pytest.raises(EdgepruneError, match="unknown dataset format"):
        load_dataset(toy_npz, fmt="matlab")
    with pytest.raises(EdgepruneError, match="does not take the option"):
        load_dataset(toy_npz, split="test")
    with pytest.raises(EdgepruneError, match="folder but not a dataset.*no HisarMod2019.1"):
        load_dataset(tmp_path)
    ds = load_dataset(toy_npz)
    assert isinstance(ds, SignalDataset)
