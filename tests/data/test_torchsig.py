"""TorchSig 2.x folders (three layouts, written with h5py in TorchSig's exact formats), continuous SNRs, and the
real TorchSig round trip when torchsig is importable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeprune.cli.main import main
from edgeprune.data.dataset import load_npz
from edgeprune.data.readers import detect_format, load_dataset
from edgeprune.errors import EdgepruneError

from torchsig_files import CLASS_NAMES, WRITERS, frames, write_homogeneous, write_legacy

pytest.importorskip("h5py")


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_each_layout_reads_every_frame_label_snr_and_rate_exactly(tmp_path, writer):
    x, names, snr = frames(37, 64, seed=3)
    root = WRITERS[writer](tmp_path / "ts", x, names, snr, sample_rate=2_500_000)
    for path in (root, root / "data.h5"):
        assert detect_format(path) == "torchsig"
        ds = load_dataset(path)
        assert ds.classes == CLASS_NAMES  # TorchSig's spelling and order: a label is TorchSig's class_index
        assert [ds.classes[i] for i in ds.y] == names
        assert np.array_equal(ds.x[:, 0], x.real) and np.array_equal(ds.x[:, 1], x.imag)
        assert np.array_equal(ds.snr_exact, snr) and ds.snr_exact.dtype == np.float64
        assert ds.meta["sample_rate"] == 2_500_000 and ds.meta["layout"] == writer


def test_a_label_on_the_sample_itself_is_the_samples(tmp_path):
    x, names, snr = frames(6, 32, seed=1, continuous=False)
    ds = load_dataset(write_legacy(tmp_path / "ts", x, names, snr, sample_level=True))
    assert [ds.classes[i] for i in ds.y] == names and np.array_equal(ds.snr_exact, snr)


def test_wideband_and_unknown_layouts_are_refused_in_one_line(tmp_path):
    x, names, snr = frames(4, 32)
    wide = write_legacy(tmp_path / "wide", x, names, snr, components=2)
    with pytest.raises(EdgepruneError, match="frame 0 has 2 'class_name' value.*one signal per frame"):
        load_dataset(wide)
    odd = write_homogeneous(tmp_path / "odd", x, names, snr, fmt="torchsig-columnar")
    with pytest.raises(EdgepruneError, match="layout edgeprune does not know.*'torchsig-columnar'.*"
                                             "HomogeneousHDF5Writer.*top-level entries"):
        load_dataset(odd)


def test_convert_bins_continuous_snr_and_keeps_the_exact_values(tmp_path, capsys):
    x, names, snr = frames(120, 32, seed=5)
    assert len(np.unique(snr)) > 50
    root = write_homogeneous(tmp_path / "ts", x, names, snr)
    assert main(["data", "convert", str(root), "--out", str(tmp_path / "b.npz")]) == 0
    assert "binned 2 dB" in capsys.readouterr().out
    ds = load_npz(tmp_path / "b.npz")
    assert np.array_equal(ds.snr_exact, snr) and ds.meta["snr_bin_db"] == 2.0
    assert np.array_equal(ds.snr, (np.floor(snr / 2 + 0.5) * 2).astype(np.float32))
    assert main(["data", "convert", str(root), "--out", str(tmp_path / "e.npz"), "--snr-bin", "0"]) == 0
    assert np.array_equal(load_npz(tmp_path / "e.npz").snr, snr.astype(np.float32))
    assert main(["data", "convert", str(root), "--out", str(tmp_path / "f.npz"), "--snr-bin", "5"]) == 0
    assert set(load_npz(tmp_path / "f.npz").snr.tolist()) <= {-10.0, -5.0, 0.0, 5.0, 10.0, 15.0, 20.0}


def test_info_shows_bins_and_rounded_labels(tmp_path, capsys):
    x, names, snr = frames(80, 32, seed=2)
    root = write_legacy(tmp_path / "ts", x, names, snr)
    assert main(["data", "info", str(root), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "torchsig" and info["snr_table_bin_db"] == 2.0
    assert info["distinct_snrs"] == len(np.unique(snr.astype(np.float32)))
    assert all(float(s) % 2 == 0 for s in info["snr_levels"]) and sum(info["per_class"].values()) == 80


def test_real_torchsig_round_trip(tmp_path):
    """TorchSig's own DatasetCreator and StaticTorchSigDataset, when torchsig imports here."""
    pytest.importorskip("torchsig")
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_torchsig.py"
    r = subprocess.run([sys.executable, str(bench), "--frames", "40", "--length", "128", "--out",
                        str(tmp_path / "t.json")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads((tmp_path / "t.json").read_text())["all_equal"] is True


def test_train_eval_prune_run_on_a_converted_torchsig_folder(tmp_path, capsys):
    """The issue's bar: one convert, then train, eval and prune with no other flag (tiny sizes; outcome only)."""
    x, names, snr = frames(96, 64, seed=8)
    root = write_homogeneous(tmp_path / "ts", x, names, snr)
    npz, model, pruned = tmp_path / "ts.npz", tmp_path / "m.pt", tmp_path / "p.pt"
    assert main(["data", "convert", str(root), "--out", str(npz)]) == 0
    assert main(["train", "--data", str(npz), "--model", "resnet20-1d", "--epochs", "1", "--out", str(model)]) == 0
    assert main(["eval", "--model", str(model), "--data", str(npz)]) == 0
    out = capsys.readouterr().out
    assert "2 dB bins" in out and "-9.89" not in out and " -0 " not in out
    assert main(["prune", "--model", str(model), "--data", str(npz), "--out", str(pruned), "--threads", "1"]) == 0
    assert pruned.exists()
