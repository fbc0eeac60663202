"""Malicious pickles: a ``__reduce__`` that would run a shell command is refused and never runs.

Every place that could unpickle is fed one: RML dataset pickles, checkpoints
(torch.save), training/fine-tuning resume state files, .npz/.npy files holding
object arrays, and a study config that points at such files. The marker file
the payload would create must never appear.
"""

from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pytest

from .tally import api_refuses, record, refuses


class Payload:
    """Unpickling this runs ``touch <marker>`` (if anything lets it)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _assert_not_run(marker, name):
    ran = marker.exists()
    record("bad_input", f"payload not executed: {name}", not ran)
    assert not ran, f"{name}: the pickled command ran"


def _rml_payloads(tmp_path, marker):
    """Several hostile RML-like pickles: bare payload, payload as a dict value, payload as a key, protocols 0-5."""
    arr = np.zeros((2, 2, 16), np.float32)
    out = {}
    for proto in (0, 2, 4, 5):
        out[f"bare-p{proto}.pkl"] = pickle.dumps(Payload(marker), protocol=proto)
    out["value.pkl"] = pickle.dumps({("QPSK", 0): Payload(marker)}, protocol=2)
    out["key.pkl"] = pickle.dumps({(Payload(marker), 0): arr}, protocol=2)
    out["nested.dat"] = pickle.dumps({("QPSK", 0): arr, ("BPSK", 0): [arr, Payload(marker)]}, protocol=2)
    out["noext"] = pickle.dumps({("QPSK", 0): Payload(marker)}, protocol=2)
    # a payload that would import a module through the allowed numpy path's neighbour
    out["numpy-global.pkl"] = (b"\x80\x02cnumpy.testing\n_private\n.")
    out["builtins-eval.pkl"] = (b"cbuiltins\neval\n(Vopen('" + str(marker).encode() + b"','w')\ntR.")
    paths = []
    for name, blob in out.items():
        p = tmp_path / name
        p.write_bytes(blob)
        paths.append(p)
    return paths


def test_rml_pickles_refused_by_reader(tmp_path):
    from edgeprune.data.readers import load_dataset
    from edgeprune.data.rml_pickle import read_rml_pickle

    marker = tmp_path / "PWNED"
    for p in _rml_payloads(tmp_path, marker):
        api_refuses(read_rml_pickle, p, name=f"rml pickle reader: {p.name}", expect="refus|not an RML|not a readable")
        api_refuses(load_dataset, p, fmt="rml-pickle", name=f"load_dataset rml: {p.name}")
        _assert_not_run(marker, p.name)


def test_rml_pickles_refused_by_cli(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    paths = _rml_payloads(tmp_path, marker)
    for p in paths:
        fmt = ["--format", "rml-pickle"] if p.suffix not in (".pkl", ".dat") else []
        refuses(capsys, ["data", "info", p, *fmt], name=f"data info {p.name}")
        refuses(capsys, ["data", "convert", p, "--out", tmp_path / "out.npz", *fmt],
                outputs=[tmp_path / "out.npz"], name=f"data convert {p.name}")
        _assert_not_run(marker, p.name)
    p = paths[4]  # a payload hidden in a dict value
    refuses(capsys, ["train", "--data", p, "--model", "cnn1d", "--epochs", "1", "--out", tmp_path / "m.pt"],
            outputs=[tmp_path / "m.pt"], name="train --data hostile pickle")
    _assert_not_run(marker, "train --data")


def _evil_checkpoint(path, marker, where="meta"):
    """A torch.save file shaped like an edgeprune checkpoint with a payload inside."""
    import torch

    obj = {"format": "edgeprune-checkpoint", "version": 1, "spec": "{}", "meta": "{}", "state_dict": {}}
    if where == "top":
        obj = Payload(marker)
    elif where == "state":
        obj["state_dict"] = {"w": Payload(marker)}
    else:
        obj["meta"] = Payload(marker)
    torch.save(obj, path)
    return path


def test_malicious_checkpoints_refused(tmp_path, capsys, shared):
    from edgeprune.checkpoint import load_checkpoint

    marker = tmp_path / "PWNED"
    data = shared["data"]
    cks = [_evil_checkpoint(tmp_path / f"evil-{w}.pt", marker, w) for w in ("top", "state", "meta")]
    for ck in cks:
        api_refuses(load_checkpoint, ck, name=f"load_checkpoint {ck.name}", expect="refused")
    out = tmp_path / "out"
    ck = cks[1]
    commands = [
        ["inspect", ck],
        ["eval", "--model", ck, "--data", data],
        ["finetune", "--model", ck, "--data", data, "--epochs", "1", "--out", out / "f.pt"],
        ["finetune", "--model", shared["ckpt"], "--distill", ck, "--data", data, "--epochs", "1",
         "--out", out / "g.pt"],
        ["prune", "--model", ck, "--data", data, "--out", out / "p.pt", "--target-macs", "0.5"],
        ["analyze", "--model", ck, "--data", data, "--out", out / "an"],
        ["export", "--model", ck, "--out", out / "m.onnx"],
        ["bundle", "--model", ck, "--target", "x86-cpu", "--out", out / "b"],
        ["profile", ck, "--backend", "torch", "--iters", "2", "--warmup", "1", "--out", out / "lat.json"],
    ]
    for argv in commands:
        refuses(capsys, argv, outputs=[out], name=f"{argv[0]} with a hostile checkpoint", expect="refused|not")
    _assert_not_run(marker, "checkpoint commands")
    assert not out.exists()


@pytest.mark.parametrize("command", ["train", "finetune"])
def test_malicious_resume_state_refused(tmp_path, capsys, shared, command):
    """A hostile ``OUT.state`` (what --resume reads) is refused, and the run does not start from it."""
    import torch

    marker = tmp_path / "PWNED"
    out = tmp_path / "m.pt"
    state = tmp_path / "m.pt.state"
    torch.save({"model": Payload(marker), "epoch": 0}, state)
    before = state.read_bytes()
    if command == "train":
        argv = ["train", "--data", shared["data"], "--model", "resnet20-1d", "--epochs", "1", "--out", out,
                "--batch-size", "32", "--resume"]
    else:
        argv = ["finetune", "--model", shared["ckpt"], "--data", shared["data"], "--epochs", "1", "--out", out,
                "--batch-size", "32", "--resume"]
    refuses(capsys, argv, outputs=[out], name=f"{command} --resume hostile state", expect="resume|state")
    assert state.read_bytes() == before
    assert not (tmp_path / "m.pt.log.jsonl").exists() or (tmp_path / "m.pt.log.jsonl").stat().st_size == 0
    _assert_not_run(marker, f"{command} --resume")


def test_object_arrays_refused(tmp_path, capsys, shared):
    """np.load runs with allow_pickle=False: object arrays in .npz / .npy are refused, never unpickled."""
    from edgeprune.data.dataset import load_npz

    marker = tmp_path / "PWNED"
    x = np.zeros((4, 2, 64), np.float32)
    obj = np.empty(1, dtype=object)
    obj[0] = Payload(marker)
    variants = {
        "x-object.npz": dict(x=obj, y=np.zeros(4, np.int64), classes=np.array(["a"])),
        "meta-object.npz": dict(x=x, y=np.zeros(4, np.int64), snr=np.zeros(4, np.float32),
                                classes=np.array(["a"]), meta=obj),
        "classes-object.npz": dict(x=x, y=np.zeros(4, np.int64), classes=obj),
    }
    for name, arrays in variants.items():
        p = tmp_path / name
        np.savez(p, **arrays)
        api_refuses(load_npz, p, name=f"load_npz {name}")
        refuses(capsys, ["data", "info", p], name=f"data info {name}")
        refuses(capsys, ["train", "--data", p, "--model", "resnet20-1d", "--epochs", "1", "--out", tmp_path / "m.pt"],
                outputs=[tmp_path / "m.pt"], name=f"train --data {name}")
        refuses(capsys, ["eval", "--model", shared["ckpt"], "--data", p], name=f"eval --data {name}")
    npy = tmp_path / "frames.npy"
    np.save(npy, obj, allow_pickle=True)
    refuses(capsys, ["predict", shared["bundle"], "--input", npy], name="predict --input object .npy")
    _assert_not_run(marker, "object arrays")


def test_study_config_pointing_at_hostile_files(tmp_path, capsys):
    """A study whose data file / starting checkpoint is hostile fails cleanly and runs nothing."""
    marker = tmp_path / "PWNED"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({("QPSK", 0): Payload(marker)}, protocol=2))
    _evil_checkpoint(tmp_path / "evil.pt", marker, "state")
    cfg_data = tmp_path / "data.toml"
    cfg_data.write_text('[data]\nfile = "evil.pkl"\n[model]\nname = "cnn1d"\n[train]\nepochs = 1\n')
    out = tmp_path / "study"
    refuses(capsys, ["compare", "--config", cfg_data, "--out", out], name="compare with a hostile data pickle",
            expect="refus")
    _assert_not_run(marker, "compare data")
    shutil.rmtree(out, ignore_errors=True)
    cfg_ck = tmp_path / "ck.toml"
    cfg_ck.write_text('[data]\nsynth = "rml2016.10a"\nper_key = 2\nsnrs = [10]\nlength = 64\n'
                      '[model]\ncheckpoint = "evil.pt"\n')
    refuses(capsys, ["compare", "--config", cfg_ck, "--out", out], name="compare with a hostile checkpoint",
            expect="refused")
    _assert_not_run(marker, "compare checkpoint")
