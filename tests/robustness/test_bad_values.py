"""Well-formed files with bad contents: wrong shapes and dtypes, NaN/Inf frames, mismatched classes
and frame lengths, fed to train / eval / finetune / predict and the Python predictor."""

from __future__ import annotations

import numpy as np
import pytest

from .tally import api_refuses, refuses


def _raw_npz(path, **arrays):
    """An .npz written directly (bypassing SignalDataset's checks), as a third party might."""
    base = dict(x=np.zeros((8, 2, 64), np.float32), y=np.arange(8) % 4, snr=np.zeros(8, np.float32),
                classes=np.array(["tone0", "tone1", "tone2", "tone3"]), meta=np.array("{}"))
    base.update(arrays)
    base = {k: v for k, v in base.items() if v is not None}
    np.savez(path, **base)
    return path


def _nan_frames(n=8, value=np.nan):
    x = np.random.default_rng(0).standard_normal((n, 2, 64)).astype(np.float32)
    x[3, 1, 10] = value
    return x


BAD_NPZ = {
    "nan-frame": dict(x=_nan_frames()),
    "inf-frame": dict(x=_nan_frames(value=np.inf)),
    "x-2d": dict(x=np.zeros((8, 128), np.float32)),
    "x-3-channels": dict(x=np.zeros((8, 3, 64), np.float32)),
    "x-4d": dict(x=np.zeros((8, 2, 64, 1), np.float32)),
    "x-strings": dict(x=np.full((8, 2, 64), "a")),
    "x-complex": dict(x=np.zeros((8, 2, 64), np.complex64)),
    "x-too-short": dict(x=np.zeros((8, 2, 4), np.float32)),
    "y-float": dict(y=np.linspace(0, 3, 8)),
    "y-out-of-range": dict(y=np.full(8, 7)),
    "y-negative": dict(y=np.full(8, -1)),
    "y-wrong-length": dict(y=np.arange(5) % 4),
    "snr-nan": dict(snr=np.full(8, np.nan, np.float32)),
    "snr-wrong-length": dict(snr=np.zeros(3, np.float32)),
    "classes-duplicate": dict(classes=np.array(["a", "a", "b", "c"])),
    "classes-empty": dict(classes=np.array([], dtype=np.str_)),
    "meta-not-json": dict(meta=np.array("{not json")),
    "no-x": dict(x=None),
}


@pytest.mark.parametrize("label", sorted(BAD_NPZ))
def test_bad_npz_contents(tmp_path, capsys, shared, label):
    p = _raw_npz(tmp_path / f"{label}.npz", **BAD_NPZ[label])
    out = tmp_path / "out"
    refuses(capsys, ["data", "info", p], name=f"npz contents {label}: data info")
    refuses(capsys, ["train", "--data", p, "--model", "resnet20-1d", "--epochs", "1", "--out", out / "m.pt"],
            outputs=[out], name=f"npz contents {label}: train")
    refuses(capsys, ["eval", "--model", shared["ckpt"], "--data", p], name=f"npz contents {label}: eval")
    refuses(capsys, ["finetune", "--model", shared["ckpt"], "--data", p, "--epochs", "1", "--out", out / "f.pt"],
            outputs=[out], name=f"npz contents {label}: finetune")


def test_mismatched_classes_and_lengths(tmp_path, capsys, shared):
    from conftest import make_toy_dataset

    from edgeprune.data.dataset import save_npz

    out = tmp_path / "out"
    other = make_toy_dataset(n_per_key=4, classes=5, length=64)           # one class more than the model
    save_npz(tmp_path / "5cls.npz", other)
    renamed = make_toy_dataset(n_per_key=4, classes=4, length=64)
    renamed.classes = ["a", "b", "c", "d"]                                 # same count, other names
    save_npz(tmp_path / "renamed.npz", renamed)
    longer = make_toy_dataset(n_per_key=4, classes=4, length=128)         # other frame length
    save_npz(tmp_path / "len128.npz", longer)
    for name, expect in (("5cls", "class"), ("renamed", "class"), ("len128", "samples")):
        p = tmp_path / f"{name}.npz"
        refuses(capsys, ["eval", "--model", shared["ckpt"], "--data", p], expect=expect, name=f"eval {name}")
        refuses(capsys, ["finetune", "--model", shared["ckpt"], "--data", p, "--epochs", "1", "--out", out / "f.pt"],
                outputs=[out], expect=expect, name=f"finetune {name}")
        refuses(capsys, ["export", "--model", shared["ckpt"], "--data", p, "--out", out / "m.onnx"],
                outputs=[out], name=f"export --data {name}")
    # a distillation teacher with other classes
    import torch

    from edgeprune.checkpoint import make_meta, save_checkpoint
    from edgeprune.models import build_model, make_spec

    spec = make_spec("resnet20-1d", 64, 5)
    save_checkpoint(tmp_path / "t5.pt", spec, build_model(spec).state_dict(),
                    make_meta(spec, [f"tone{k}" for k in range(5)]))
    refuses(capsys, ["finetune", "--model", shared["ckpt"], "--data", shared["data"], "--distill", tmp_path / "t5.pt",
                     "--epochs", "1", "--out", out / "f.pt"], outputs=[out], expect="teacher",
            name="finetune --distill teacher with other classes")
    # a checkpoint whose metadata names fewer classes than its classifier has outputs
    ck = torch.load(shared["ckpt"], weights_only=True)
    import json

    meta = json.loads(ck["meta"])
    meta["classes"] = meta["classes"][:3]
    ck["meta"] = json.dumps(meta)
    torch.save(ck, tmp_path / "fewer.pt")
    refuses(capsys, ["eval", "--model", tmp_path / "fewer.pt", "--data", shared["data"]],
            name="eval checkpoint with fewer class names than outputs")
    refuses(capsys, ["export", "--model", tmp_path / "fewer.pt", "--out", out / "x.onnx"], outputs=[out],
            name="export checkpoint with fewer class names than outputs")


PREDICT_INPUTS = {
    "nan": _nan_frames(4),
    "inf": _nan_frames(4, value=-np.inf),
    "3-channels": np.zeros((4, 3, 64), np.float32),
    "wrong-length": np.zeros((4, 2, 100), np.float32),
    "4d": np.zeros((1, 4, 2, 64), np.float32),
    "1d": np.zeros(64, np.float32),
    "strings": np.full((4, 2, 64), "x"),
    "bool": np.zeros((4, 2, 64), bool),
    "complex-3d": np.zeros((4, 2, 64), np.complex64),
    "complex-wrong-length": np.zeros((4, 100), np.complex64),
    "structured": np.zeros((4, 2, 64), dtype=[("a", "f4")]),
}


@pytest.mark.parametrize("label", sorted(PREDICT_INPUTS))
def test_predict_bad_frames(tmp_path, capsys, shared, label):
    p = tmp_path / f"{label}.npy"
    np.save(p, PREDICT_INPUTS[label])
    refuses(capsys, ["predict", shared["bundle"], "--input", p], name=f"predict frames {label}")
    refuses(capsys, ["predict", shared["onnx"], "--input", p], name=f"predict (onnx) frames {label}")


def test_predictor_api_bad_frames(shared):
    from edgeprune.export.predictor import Predictor

    with Predictor(shared["bundle"]) as pred:
        for label, x in PREDICT_INPUTS.items():
            api_refuses(pred.predict, x, name=f"Predictor.predict {label}")
        api_refuses(pred.predict, [[1, 2], [3]], name="Predictor.predict ragged list")
        api_refuses(pred.predict, "frames", name="Predictor.predict a string")
        api_refuses(lambda: list(pred.predict_stream([np.zeros((2, 2, 64), np.float32)], batch=0)),
                    name="Predictor.predict_stream batch 0")


def test_bad_numeric_options(tmp_path, capsys, shared):
    """Nonsense numbers on the command line are refused before any work or output."""
    out = tmp_path / "out"
    d, ck = shared["data"], shared["ckpt"]
    cases = [
        ["train", "--data", d, "--model", "resnet20-1d", "--epochs", "-1", "--out", out / "m.pt"],
        ["train", "--data", d, "--model", "resnet20-1d", "--epochs", "1", "--batch-size", "0", "--out", out / "m.pt"],
        ["train", "--data", d, "--model", "resnet20-1d", "--epochs", "1", "--lr", "nan", "--out", out / "m.pt"],
        ["train", "--data", d, "--model", "resnet20-1d", "--epochs", "1", "--split", "0.9,0.9,0.9", "--out", out / "m.pt"],
        ["train", "--data", d, "--model", "no-such-model", "--epochs", "1", "--out", out / "m.pt"],
        ["train", "--data", d, "--model", "resnet20-1d", "--epochs", "1", "--min-snr", "100", "--out", out / "m.pt"],
        ["finetune", "--model", ck, "--data", d, "--epochs", "1", "--lr", "-1", "--out", out / "f.pt"],
        ["finetune", "--model", ck, "--data", d, "--epochs", "1", "--distill-alpha", "2", "--distill", ck,
         "--out", out / "f.pt"],
        ["eval", "--model", ck, "--data", d, "--batch-size", "0"],
        ["predict", shared["bundle"], "--input", d, "--batch-size", "0"],
        ["data", "synth", "--out", out / "s.npz", "--per-key", "0"],
        ["data", "synth", "--out", out / "s.npz", "--length", "3"],
        ["data", "synth", "--out", out / "s.npz", "--preset", "nope"],
    ]
    for argv in cases:
        refuses(capsys, argv, outputs=[out], name=f"bad option: {' '.join(map(str, argv[:1] + argv[-3:-2]))}")
