"""The CLI contract for failures: one ``edgeprune: error:`` line and a non-zero exit for every
command given a missing or damaged input, no traceback unless ``--debug``, and an existing
output left exactly as it was when a command fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeprune.cli.main import main
from edgeprune.errors import EdgepruneError

from .tally import check_error_output, record, refuses

REPO = Path(__file__).resolve().parents[2]


def _missing_input_commands(tmp, shared):
    nope = tmp / "does-not-exist"
    ck, data, out = shared["ckpt"], shared["data"], tmp / "out"
    return {
        "data info": ["data", "info", nope],
        "data convert": ["data", "convert", nope, "--out", out / "x.npz"],
        "inspect": ["inspect", f"{nope}.pt"],
        "train": ["train", "--data", f"{nope}.npz", "--model", "resnet20-1d", "--epochs", "1", "--out", out / "m.pt"],
        "eval model": ["eval", "--model", f"{nope}.pt", "--data", data],
        "eval data": ["eval", "--model", ck, "--data", f"{nope}.npz"],
        "analyze": ["analyze", "--model", f"{nope}.pt", "--data", data, "--out", out / "a"],
        "prune": ["prune", "--model", f"{nope}.pt", "--data", data, "--out", out / "p.pt"],
        "prune plan": ["prune", "--model", ck, "--plan", f"{nope}.json", "--out", out / "p.pt"],
        "finetune": ["finetune", "--model", ck, "--data", f"{nope}.npz", "--epochs", "1", "--out", out / "f.pt"],
        "finetune teacher": ["finetune", "--model", ck, "--data", data, "--distill", f"{nope}.pt", "--epochs", "1",
                             "--out", out / "f.pt"],
        "export": ["export", "--model", f"{nope}.pt", "--out", out / "m.onnx"],
        "export calib": ["export", "--model", ck, "--precision", "int8", "--calib-data", f"{nope}.npz",
                         "--out", out / "m.onnx"],
        "build": ["build", "--onnx", f"{nope}.onnx", "--target", "orin-nano", "--out", out / "e.engine"],
        "bundle": ["bundle", "--model", f"{nope}.pt", "--target", "x86-cpu", "--out", out / "b"],
        "bundle engine": ["bundle", "--model", ck, "--target", "x86-cpu", "--engine", f"{nope}.engine",
                          "--out", out / "b"],
        "bundle target": ["bundle", "--model", ck, "--target", "no-such-board", "--out", out / "b"],
        "predict model": ["predict", nope, "--input", data],
        "predict input": ["predict", shared["bundle"], "--input", f"{nope}.npy"],
        "predict sigmf": ["predict", shared["bundle"], "--input", f"{nope}.sigmf-meta"],
        "targets": ["targets", "--targets-dir", nope],
        "profile": ["profile", f"{nope}.onnx", "--iters", "2"],
        "latency-model fit": ["latency-model", "fit", f"{nope}.json", "--out", out / "lm.json"],
        "latency-model predict": ["latency-model", "predict", f"{nope}.json", shared["onnx"]],
        "compare": ["compare", "--config", f"{nope}.toml", "--out", out / "s"],
        "demo": ["demo", "--config", f"{nope}.toml", "--out", out / "d"],
        "report": ["report", nope, "--out", out / "r"],
    }


def test_every_command_refuses_a_missing_input(tmp_path, capsys, shared):
    for name, argv in _missing_input_commands(tmp_path, shared).items():
        refuses(capsys, argv, outputs=[tmp_path / "out"], name=f"missing input: {name}",
                expect="not exist|no such|unknown|not found|cannot")


def test_failed_commands_leave_existing_outputs_unchanged(tmp_path, capsys, shared):
    """A refused run does not replace or truncate the output a previous run wrote."""
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    cases = {
        "data convert": (tmp_path / "old.npz", ["data", "convert", bad, "--out", tmp_path / "old.npz"]),
        "train": (tmp_path / "old.pt", ["train", "--data", bad, "--model", "resnet20-1d", "--epochs", "1",
                                        "--out", tmp_path / "old.pt"]),
        "finetune": (tmp_path / "old2.pt", ["finetune", "--model", shared["ckpt"], "--data", bad, "--epochs", "1",
                                            "--out", tmp_path / "old2.pt"]),
        "export": (tmp_path / "old.onnx", ["export", "--model", bad, "--out", tmp_path / "old.onnx"]),
        "profile": (tmp_path / "old.json", ["profile", bad, "--iters", "2", "--out", tmp_path / "old.json"]),
        "latency-model fit": (tmp_path / "lm.json", ["latency-model", "fit", bad, "--out", tmp_path / "lm.json"]),
    }
    for name, (target, argv) in cases.items():
        target.write_bytes(b"the previous run's output\n")
        refuses(capsys, argv, outputs=[target], name=f"existing output kept: {name}")
    folder = tmp_path / "oldbundle"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    refuses(capsys, ["bundle", "--model", bad, "--target", "x86-cpu", "--out", folder, "--force"], outputs=[folder],
            name="existing output kept: bundle --force")


def test_debug_shows_the_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(EdgepruneError):
        main(["--debug", "inspect", str(bad)])
    with pytest.raises(EdgepruneError):
        main(["inspect", str(bad), "--debug"])
    capsys.readouterr()


def test_console_entry_point(tmp_path):
    """Through ``python -m edgeprune`` as a user runs it: one line and exit 2; a traceback only with --debug."""
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    env = dict(os.environ, PYTHONPATH=str(REPO), EDGEPRUNE_QUIET="1")
    res = subprocess.run([sys.executable, "-m", "edgeprune", "inspect", str(bad)], env=env, capture_output=True,
                         text=True, timeout=120)
    problems = check_error_output(res.returncode, res.stderr)
    record("bad_input", "console: inspect garbage", not problems, "; ".join(problems))
    assert not problems and res.returncode == 2 and res.stdout == "", (problems, res.stderr)
    res = subprocess.run([sys.executable, "-m", "edgeprune", "--debug", "inspect", str(bad)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_damaged_resume_state(tmp_path, capsys, shared):
    """--resume with a damaged OUT.state refuses (no silent restart) and leaves the state file alone."""
    from .test_bad_files import corruptions

    import torch

    good = tmp_path / "good.state"
    torch.save({"model": {}, "epoch": 0, "config": "{}"}, good)
    extra = {"other-settings": good.read_bytes()}
    for label, blob in {**corruptions(good.read_bytes(), 21), **extra}.items():
        for command in ("train", "finetune"):
            d = tmp_path / f"{command}-{label}"
            d.mkdir()
            state = d / "m.pt.state"
            state.write_bytes(blob)
            if command == "train":
                argv = ["train", "--data", shared["data"], "--model", "resnet20-1d", "--epochs", "1",
                        "--batch-size", "64", "--out", d / "m.pt", "--resume"]
            else:
                argv = ["finetune", "--model", shared["ckpt"], "--data", shared["data"], "--epochs", "1",
                        "--batch-size", "64", "--out", d / "m.pt", "--resume"]
            refuses(capsys, argv, outputs=[d / "m.pt", state], name=f"{command} --resume state {label}",
                    expect="resume|state")
