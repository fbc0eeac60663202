"""``edgeprune train`` / ``edgeprune eval`` end to end, including a real SIGKILL and --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import make_toy_dataset

from edgeprune.checkpoint import file_sha256, load_checkpoint
from edgeprune.cli.main import main
from edgeprune.data.dataset import SignalDataset, save_npz


def _train(tmp_path, data, out="m.pt", *extra):
    return main(["train", "--data", str(data), "--model", "resnet20-1d", "--epochs", "3", "--batch-size", "32",
                 "--threads", "1", "--device", "cpu", "--out", str(tmp_path / out), *extra])


def _json_out(capsys):
    return json.loads(capsys.readouterr().out)


def test_train_then_eval_reproduces_the_test_split(tmp_path, toy_npz, capsys):
    assert _train(tmp_path, toy_npz, "m.pt", "--json", "--seed", "3", "--split-seed", "7") == 0
    res = _json_out(capsys)
    ck = load_checkpoint(tmp_path / "m.pt")
    rec = ck.meta["dataset"]
    assert rec["sha256"] == file_sha256(toy_npz)
    assert rec["split"]["fractions"] == [0.6, 0.2, 0.2] and rec["split"]["seed"] == 7
    assert rec["classes"] == ck.classes and rec["normalization"] == "none"
    assert ck.meta["normalization"] == "none"
    assert ck.meta["metrics"]["best_epoch"] == res["best_epoch"]
    log = [json.loads(l) for l in (tmp_path / "m.pt.log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert max(r["val_acc"] for r in log) == pytest.approx(res["val_acc"])
    assert not (tmp_path / "m.pt.state").exists()

    assert main(["eval", "--model", str(tmp_path / "m.pt"), "--data", str(toy_npz), "--json",
                 "--plot", str(tmp_path / "plots")]) == 0
    ev = _json_out(capsys)
    assert ev["data"]["same_as_training"] and ev["data"]["split"] == "test"
    assert ev["frames"] == res["frames"]["test"] == 40
    assert ev["accuracy"] == pytest.approx(res["test_acc"])  # the same frames the trainer held out
    conf = np.array(ev["confusion"])
    assert conf.sum() == ev["frames"] and np.trace(conf) == ev["correct"]
    assert sum(r["frames"] for r in ev["per_snr"]) == ev["frames"]
    assert [r["snr"] for r in ev["per_snr"]] == [0.0, 10.0]
    for i, c in enumerate(ev["per_class"]):
        assert c["recall"] == pytest.approx(conf[i, i] / conf[i].sum())
    for name in ("accuracy_vs_snr.png", "confusion.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the validation split and all frames are other sizes; text output has the per-SNR table
    assert main(["eval", "--model", str(tmp_path / "m.pt"), "--data", str(toy_npz), "--split", "all"]) == 0
    assert "SNR dB" in capsys.readouterr().out
    assert main(["eval", "--model", str(tmp_path / "m.pt"), "--data", str(toy_npz), "--split", "val", "--json"]) == 0
    assert _json_out(capsys)["frames"] == 40


def test_eval_on_another_file_remaps_classes_by_name(tmp_path, toy_npz, capsys):
    assert _train(tmp_path, toy_npz, "m.pt", "--min-snr", "5") == 0
    capsys.readouterr()
    ck = load_checkpoint(tmp_path / "m.pt")
    assert ck.meta["dataset"]["snr_filter"] == {"min": 5.0, "max": None}
    assert ck.meta["dataset"]["split"]["frames"]["train"] < 100  # half the frames were filtered out
    other = make_toy_dataset(n_per_key=6, seed=11)
    perm = [2, 0, 3, 1]  # the same classes in another order, labels renumbered to match
    inv = np.argsort(perm)
    shuffled = SignalDataset(other.x, inv[other.y], other.snr, [other.classes[p] for p in perm], other.meta)
    save_npz(tmp_path / "a.npz", other)
    save_npz(tmp_path / "b.npz", shuffled)
    accs = []
    for f in ("a.npz", "b.npz"):
        assert main(["eval", "--model", str(tmp_path / "m.pt"), "--data", str(tmp_path / f), "--json"]) == 0
        ev = _json_out(capsys)
        assert not ev["data"]["same_as_training"] and ev["data"]["split"] == "all"
        assert ev["frames"] == len(other) and ev["classes"] == ck.classes
        accs.append((ev["accuracy"], ev["confusion"]))
    assert accs[0] == accs[1]


def _err(capsys):
    return capsys.readouterr().err.strip()


def test_bad_input_gives_one_clear_line(tmp_path, toy_npz, toy_checkpoint, capsys):
    ck = str(toy_checkpoint)
    assert _train(tmp_path, toy_npz, "x.pt", "--split", "0.5,0.5") != 0
    assert "--split" in _err(capsys)
    assert main(["train", "--data", str(toy_npz), "--model", "resnet999", "--epochs", "1", "--out",
                 str(tmp_path / "x.pt")]) != 0
    assert "unknown model 'resnet999'" in _err(capsys)
    assert _train(tmp_path, tmp_path / "missing.npz", "x.pt") != 0
    assert "does not exist" in _err(capsys)
    assert _train(tmp_path, toy_npz, "x.pt", "--min-snr", "50") != 0
    assert "no frames left" in _err(capsys)
    assert not (tmp_path / "x.pt").exists()

    five = make_toy_dataset(n_per_key=4, classes=5)
    save_npz(tmp_path / "five.npz", five)
    assert main(["eval", "--model", ck, "--data", str(tmp_path / "five.npz")]) != 0
    err = _err(capsys)
    assert "classes do not match" in err and "tone4" in err and len(err.splitlines()) == 1
    renamed = make_toy_dataset(n_per_key=4)
    renamed.classes = ["tone0", "tone1", "tone2", "other"]
    save_npz(tmp_path / "renamed.npz", renamed)
    assert main(["eval", "--model", ck, "--data", str(tmp_path / "renamed.npz")]) != 0
    err = _err(capsys)
    assert "missing from the data: tone3" in err and "unknown to the checkpoint: other" in err
    save_npz(tmp_path / "long.npz", make_toy_dataset(n_per_key=4, length=128))
    assert main(["eval", "--model", ck, "--data", str(tmp_path / "long.npz")]) != 0
    assert "128 samples but the checkpoint expects 64" in _err(capsys)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert main(["eval", "--model", str(tmp_path / "bad.pt"), "--data", str(toy_npz)]) != 0
    assert "checkpoint" in _err(capsys)


def test_resume_refuses_other_settings(tmp_path, toy_npz, capsys):
    import edgeprune.training.trainer as T

    orig = T._save_state

    def crash(path, model, opt, sched, epoch, *a):
        orig(path, model, opt, sched, epoch, *a)
        raise KeyboardInterrupt

    T._save_state = crash
    try:
        assert _train(tmp_path, toy_npz, "m.pt") == 130  # interrupted after epoch 1
    finally:
        T._save_state = orig
    assert (tmp_path / "m.pt.state").exists()
    assert _train(tmp_path, toy_npz, "m.pt", "--resume", "--lr", "0.01") != 0
    assert "other training settings" in _err(capsys)
    (tmp_path / "m.pt.state").write_bytes(b"garbage")
    assert _train(tmp_path, toy_npz, "m.pt", "--resume") != 0
    assert "cannot resume" in _err(capsys)


def _cli(*args):
    return [sys.executable, "-m", "edgeprune", *map(str, args)]


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path):
    save_npz(tmp_path / "d.npz", make_toy_dataset(n_per_key=64))
    env = dict(os.environ, EDGEPRUNE_QUIET="1", OMP_NUM_THREADS="1")

    def args(out):
        return _cli("train", "--data", tmp_path / "d.npz", "--model", "resnet20-1d", "--epochs", 5,
                    "--batch-size", 32, "--threads", 1, "--device", "cpu", "--seed", 4, "--out", tmp_path / out)

    subprocess.run(args("a.pt"), env=env, check=True, timeout=300)

    log = tmp_path / "b.pt.log.jsonl"
    proc = subprocess.Popen(args("b.pt"), env=env)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if log.exists() and len(log.read_text().splitlines()) >= 2:
                break
            time.sleep(0.005)
        first = json.loads(log.read_text().splitlines()[0])
        time.sleep(min(first["seconds"] / 2, 0.2))  # into the third epoch
        proc.send_signal(signal.SIGKILL)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == -signal.SIGKILL, "the run finished before it could be killed"
    assert (tmp_path / "b.pt.state").exists() and not (tmp_path / "b.pt").exists()
    killed_at = len(log.read_text().splitlines())
    assert 2 <= killed_at < 5

    subprocess.run([*args("b.pt"), "--resume"], env=env, check=True, timeout=300)
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    assert a.state_dict.keys() == b.state_dict.keys()
    for k in a.state_dict:
        assert torch.equal(a.state_dict[k], b.state_dict[k]), k
    assert a.meta["metrics"]["val_acc"] == b.meta["metrics"]["val_acc"]
    assert a.meta["metrics"]["best_epoch"] == b.meta["metrics"]["best_epoch"]
    assert [json.loads(l)["epoch"] for l in log.read_text().splitlines()] == [1, 2, 3, 4, 5]
    assert not (tmp_path / "b.pt.state").exists()
