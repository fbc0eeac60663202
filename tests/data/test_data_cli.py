"""``edgeprune data synth | info | convert`` end to end."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

from edgeprune.cli.main import main
from edgeprune.data.dataset import load_npz
from rml_files import rml_dict, write_hisar, write_rml2018_hdf5


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_synth_info_convert_roundtrip(tmp_path, capsys):
    out = tmp_path / "syn.npz"
    rc, o, _ = run(capsys, "data", "synth", "--per-key", "3", "--seed", "5", "--snr", "-10,0,10,18",
                   "--out", str(out), "--json")
    assert rc == 0
    doc = json.loads(o)
    assert doc["frames"] == 11 * 4 * 3 and doc["meta"]["seed"] == 5 and doc["snr_levels"] == [-10, 0, 10, 18]
    ds = load_npz(out)
    assert ds.meta["preset"] == "rml2016.10a" and ds.meta["snr_mode"] == "rml"

    rc, o, _ = run(capsys, "data", "info", str(out), "--json")
    info = json.loads(o)
    assert rc == 0 and info["format"] == "npz" and info["frame_shape"] == [2, 128]
    assert info["counts"]["QPSK"] == {"-10": 3, "0": 3, "10": 3, "18": 3}
    assert info["normalization"] == "l1"
    rc, o, _ = run(capsys, "data", "info", str(out))
    assert "3 per (class, SNR)" in o and "rml2016.10a" in o

    high = tmp_path / "high.npz"
    rc, o, _ = run(capsys, "data", "convert", str(out), "--min-snr", "10", "--out", str(high), "--json")
    assert rc == 0 and json.loads(o)["snr_levels"] == [10, 18]
    assert load_npz(high).meta["selection"] == {"min_snr": 10.0}


def test_synth_options(tmp_path, capsys):
    out = tmp_path / "s.npz"
    rc, o, _ = run(capsys, "data", "synth", "--preset", "rml2018.01a", "--per-key", "1", "--min-snr", "26",
                   "--length", "64", "--snr-mode", "true", "--classes", "OOK,GMSK", "--out", str(out))
    assert rc == 0 and "2 classes" in o
    ds = load_npz(out)
    assert ds.classes == ["OOK", "GMSK"] and ds.snr_levels() == [26.0, 28.0, 30.0]
    assert ds.x.shape == (6, 2, 64) and ds.meta["snr_mode"] == "true"
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    for p in (a, b):
        run(capsys, "data", "synth", "--per-key", "2", "--snr", "0", "--classes", "QPSK", "--seed", "9",
            "--out", str(p))
    np.testing.assert_array_equal(load_npz(a).x, load_npz(b).x)


@pytest.mark.parametrize("argv,match", [
    (["data", "synth", "--preset", "nope", "--out", "{t}/x.npz"], "unknown preset 'nope'"),
    (["data", "synth", "--snr", "a,b", "--out", "{t}/x.npz"], "--snr"),
    (["data", "synth", "--per-key", "0", "--out", "{t}/x.npz"], "per-key"),
    (["data", "synth", "--min-snr", "50", "--out", "{t}/x.npz"], "no SNR levels"),
    (["data", "info", "{t}/missing.npz"], "does not exist"),
    (["data", "convert", "{t}/missing.pkl", "--out", "{t}/x.npz"], "does not exist"),
])
def test_bad_input_one_line_no_output(tmp_path, capsys, argv, match):
    argv = [a.replace("{t}", str(tmp_path)) for a in argv]
    try:
        rc, o, err = run(capsys, *argv)
    except SystemExit as exc:           # argparse type errors
        rc, err = exc.code, capsys.readouterr().err
    assert rc != 0
    assert match in err and "Traceback" not in err
    assert not (tmp_path / "x.npz").exists()
    assert not list(tmp_path.glob(".x.npz*"))           # nothing half-written


def test_info_and_convert_real_formats(tmp_path, capsys):
    pkl = tmp_path / "RML2016.10a_dict.pkl"
    pkl.write_bytes(pickle.dumps(rml_dict(snrs=(0, 10, 12)), protocol=2))
    rc, o, _ = run(capsys, "data", "info", str(pkl), "--json")
    info = json.loads(o)
    assert info["format"] == "rml-pickle" and info["classes"] == ["AM-SSB", "BPSK", "QPSK"]
    assert info["snr_levels"] == [0, 10, 12]

    h5 = tmp_path / "GOLD.hdf5"
    write_rml2018_hdf5(h5, per_key=2, snrs=(0, 10))
    rc, o, _ = run(capsys, "data", "info", str(h5), "--json")
    info = json.loads(o)
    assert info["frames"] == 24 * 2 * 2 and info["frame_shape"] == [2, 32] and info["classes"][0] == "OOK"
    out = tmp_path / "high.npz"
    rc, o, _ = run(capsys, "data", "convert", str(h5), "--min-snr", "10", "--classes", "BPSK,QPSK",
                   "--normalize", "l1", "--out", str(out))
    ds = load_npz(out)
    assert rc == 0 and ds.classes == ["BPSK", "QPSK"] and len(ds) == 4 and ds.meta["normalization"] == "l1"

    write_hisar(tmp_path / "hisar", "train", [0, 10, 0, 10], [0, 0, 4, 4], length=16)
    write_hisar(tmp_path / "hisar", "test", [0, 10], [4, 4], length=16)
    rc, o, _ = run(capsys, "data", "info", str(tmp_path / "hisar"), "--split", "test")
    assert rc == 0 and "hisarmod" in o
    rc, o, _ = run(capsys, "data", "convert", str(tmp_path / "hisar"), "--split", "test", "--out",
                   str(tmp_path / "h.npz"), "--json")
    assert rc == 0 and json.loads(o)["frames"] == 2


def test_data_help_runs_as_a_subprocess():
    r = subprocess.run([sys.executable, "-m", "edgeprune", "data", "synth", "--help"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "--snr-mode" in r.stdout and "--per-key" in r.stdout
