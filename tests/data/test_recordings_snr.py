"""Continuous SNRs (bins, split, labels), recordings as users have them (several, a folder, frame length from the
annotations, --length/--hop on every data-reading command), one --threads, and the vectorised HisarMod parser."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from edgeprune.cli.main import apply_runtime, build_parser, main
from edgeprune.data.dataset import SignalDataset, load_npz
from edgeprune.data.hisar import parse_complex_row, parse_complex_rows, read_hisar
from edgeprune.data.readers import load_dataset, set_recording_options
from edgeprune.data.sigmf_io import write_sigmf
from edgeprune.data.snr import bin_snr, snr_text, snr_value
from edgeprune.data.split import split_indices
from edgeprune.errors import EdgepruneError


def test_snr_labels_and_bins():
    assert snr_value(np.float32(-9.9)) == -9.9 and snr_text(np.float32(-9.9)) == "-9.9"
    assert snr_text(-0.0) == "0" and snr_text(np.float32(10.0)) == "10"
    assert bin_snr([-1.0, 0.99, 1.0, -1.01, -3.0], 2).tolist() == [0.0, 0.0, 2.0, -2.0, -2.0]
    assert str(bin_snr([-0.4], 2)[0]) == "0.0"  # no -0 bin


def test_split_on_continuous_snr_keeps_its_fractions(capfd):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 11, 3300)
    snr = np.round(rng.uniform(-10, 20, 3300), 1).astype(np.float32)  # TorchSig's 0.1 dB steps
    parts = [len(p) for p in split_indices(y, snr, seed=0)]
    assert abs(parts[0] / 3300 - 0.6) < 0.02 and abs(parts[1] / 3300 - 0.2) < 0.02, parts
    assert "warning" not in capfd.readouterr().err
    split_indices(np.arange(40) % 2, np.arange(40, dtype=np.float32), seed=0)  # 40 groups of one frame
    assert "edgeprune: warning: 40 of 40 (class, SNR) groups hold fewer than 3 frames" in capfd.readouterr().err


def _annotated(path, counts, labels=("BPSK", "QPSK"), snr=(3.3, -9.9)):
    z = np.exp(1j * np.arange(sum(counts)) * 0.3).astype(np.complex64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ann = [{"core:sample_start": int(s), "core:sample_count": int(c), "core:label": lab, "edgeprune:snr": v}
           for s, c, lab, v in zip(starts, counts, labels, snr)]
    return write_sigmf(path, z, annotations=ann)[0]


def test_frame_length_comes_from_the_annotations(tmp_path):
    meta = _annotated(tmp_path / "a", [256, 256])
    ds = load_dataset(meta)
    assert ds.length == 256 and len(ds) == 2 and ds.classes == ["BPSK", "QPSK"]
    assert load_dataset(meta, length=64).length == 64 and len(load_dataset(meta, length=64)) == 8
    odd = _annotated(tmp_path / "b", [256, 300])
    with pytest.raises(EdgepruneError, match="frame length is ambiguous.*256, 300.*--length"):
        load_dataset(odd)
    try:
        set_recording_options(length=128, hop=64)  # what --length/--hop do for train, eval, prune ...
        assert load_dataset(odd).length == 128 and len(load_dataset(odd)) == 3 + 3  # starts 0, 64, 128 | 256, 320, 384
    finally:
        set_recording_options()


def test_several_recordings_and_a_folder_of_them(tmp_path, capsys):
    folder = tmp_path / "recs"
    folder.mkdir()
    _annotated(folder / "one", [128, 128], labels=("BPSK", "BPSK"), snr=(1.0, 2.0))
    _annotated(folder / "two", [128], labels=("QPSK",), snr=(5.0,))
    for args in ([str(folder)], [str(folder / "one.sigmf-meta"), str(folder / "two.sigmf-meta")]):
        assert main(["data", "convert", *args, "--out", str(tmp_path / "o.npz")]) == 0
        ds = load_npz(tmp_path / "o.npz")
        assert ds.classes == ["BPSK", "QPSK"] and ds.y.tolist() == [0, 0, 1] and ds.snr.tolist() == [1, 2, 5]
    assert main(["data", "info", str(folder / "one.sigmf-meta"), str(folder / "two.sigmf-meta")]) == 0
    assert "frames         3 of shape (2, 128)" in capsys.readouterr().out
    assert len(load_dataset(folder)) == 3
    (tmp_path / "empty").mkdir()
    assert main(["data", "info", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no .sigmf-meta recordings" in err[0]


COMMANDS = [["train", "--model", "cnn", "--out", "o.pt", "--epochs", "1"], ["eval", "--model", "m.pt"],
            ["finetune", "--model", "m.pt", "--out", "o.pt", "--epochs", "1"],
            ["analyze", "--model", "m.pt", "--out", "d"],
            ["prune", "--model", "m.pt", "--out", "o.pt"], ["export", "--model", "m.pt", "--out", "o.onnx"],
            ["bundle", "--model", "m.pt", "--target", "t", "--out", "b"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c[0])
def test_every_data_command_takes_length_hop_and_threads(cmd):
    args = build_parser().parse_args(cmd + ["--data", "r.sigmf-meta", "--length", "1024", "--hop", "512",
                                            "--threads", "2"])
    assert (args.recording_length, args.recording_hop, args.threads) == (1024, 512, 2)


def test_threads_means_torch_threads():
    import torch

    before = torch.get_num_threads()
    try:
        want = 2 if before != 2 else 1          # a count other than the current one, so the call must set it
        apply_runtime(argparse.Namespace(threads=want, torch_threads=True))
        assert torch.get_num_threads() == want
        with pytest.raises(EdgepruneError, match="--length must be >= 8"):
            apply_runtime(argparse.Namespace(recording_length=4, recording_hop=None))
    finally:
        torch.set_num_threads(before)
        set_recording_options()


MATLAB = ["0.5+0.25i", "-1.5e-03-2E+01i", " 0.1 - 0.2i", "3-4j", "-0+0i", "1e5+.5i", "1.5", "3i", "-2I"]
ODD = ["-Inf+2i", "NaN-1i", "1+2+3i", "", "1\u00e9+2i"]  # left to the row parser


def test_vectorised_hisar_rows_equal_the_row_parser(tmp_path):
    rng = np.random.default_rng(4)
    rows = [",".join(rng.choice(MATLAB, 16)) for _ in range(20)]
    fast = parse_complex_rows([r.encode() for r in rows], 16)
    slow = np.stack([parse_complex_row(r) for r in rows])
    assert np.array_equal(fast[:, 0], slow.real) and np.array_equal(fast[:, 1], slow.imag)
    for odd in ODD:
        assert parse_complex_rows([f"{odd},0.5+0.25i".encode()], None) is None
    assert parse_complex_rows([b"1+2i,3i", b"1+2i"], None) is None  # rows of different lengths
    base = tmp_path / "Train"
    base.mkdir()
    mixed = [",".join(rng.choice(MATLAB, 16)) for i in range(300)]  # two chunks of rows and a part
    (base / "train_data.csv").write_text("\n".join(mixed) + "\n")
    (base / "train_labels.csv").write_text("\n".join(["0", "10"] * 150) + "\n")
    (base / "train_snr.csv").write_text("\n".join(["-2", "4"] * 150) + "\n")
    ds = read_hisar(tmp_path)
    ref = np.stack([parse_complex_row(r) for r in mixed])
    assert np.array_equal(ds.x[:, 0], ref.real.astype(np.float32))
    assert np.array_equal(ds.x[:, 1], ref.imag.astype(np.float32))
    mixed[270] = "1+2+3i" + mixed[270][mixed[270].index(","):]
    (base / "train_data.csv").write_text("\n".join(mixed) + "\n")
    with pytest.raises(EdgepruneError, match="train_data.csv row 271: not a complex number"):
        read_hisar(tmp_path)  # that chunk went to the row parser, which names the row


def test_concat_needs_one_frame_length():
    from edgeprune.data.readers import concat_datasets

    a = SignalDataset(np.zeros((2, 2, 16), np.float32), [0, 0], [0, 0], ["A"])
    b = SignalDataset(np.zeros((1, 2, 32), np.float32), [0], [0], ["B"])
    with pytest.raises(EdgepruneError, match="different lengths \\(16, 32 samples\\); give --length"):
        concat_datasets([a, b])
