"""Faults: runs killed hard (SIGKILL) and resumed, and outputs that cannot be written.

* ``edgeprune finetune`` killed mid-epoch and resumed with --resume ends with
  exactly the weights and metrics of an uninterrupted run with the same seed.
  (``edgeprune train`` has the same test in tests/training/test_train_cli.py.)
* ``edgeprune compare`` killed once some stages are recorded in
  ``<out>/state.json`` reuses them when re-run and finishes a complete report.
* Unwritable outputs. The tests run as root here, where ``chmod 0o555`` does not
  stop writes, so a read-only folder is emulated honestly in three ways that
  hold for root too: an output whose parent is a regular file, an output under
  ``/proc`` (no files can be created there), and a file-size limit
  (RLIMIT_FSIZE, the way a full disk fails a write part-way: EFBIG). Under a
  non-root user the plain ``chmod 0o555`` folder is tried as well.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


from .tally import check_error_output, record, refuses

REPO = Path(__file__).resolve().parents[2]


def _env():
    return dict(os.environ, EDGEPRUNE_QUIET="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))


def _cli(*args):
    return [sys.executable, "-m", "edgeprune", *map(str, args)]


def _kill_when(proc, ready, what, timeout=240):
    """SIGKILL ``proc`` as soon as ``ready()`` is true; return True if it was killed (not finished)."""
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if ready():
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    killed = rc == -signal.SIGKILL
    assert killed, f"{what}: the run ended (rc {rc}) before it could be killed"
    return killed


def _state_epoch(path: Path) -> int:
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # noqa: BLE001 - not there yet
        return -1


@pytest.mark.slow
def test_finetune_sigkill_then_resume_matches_uninterrupted(tmp_path):
    import torch
    from conftest import make_toy_dataset

    from edgeprune.checkpoint import load_checkpoint, make_meta, save_checkpoint
    from edgeprune.data.dataset import save_npz
    from edgeprune.models import build_model, make_spec

    save_npz(tmp_path / "d.npz", make_toy_dataset(n_per_key=64))
    torch.manual_seed(0)
    spec = make_spec("resnet20-1d", 64, 4)
    save_checkpoint(tmp_path / "base.pt", spec, build_model(spec).state_dict(),
                    make_meta(spec, [f"tone{k}" for k in range(4)], normalization="none"))
    env = _env()

    def args(out):
        return _cli("finetune", "--model", tmp_path / "base.pt", "--data", tmp_path / "d.npz", "--epochs", 6,
                    "--batch-size", 32, "--threads", 1, "--seed", 3, "--out", tmp_path / out,
                    "--distill", tmp_path / "base.pt")

    subprocess.run(args("a.pt"), env=env, check=True, timeout=300, capture_output=True)
    state = tmp_path / "b.pt.state"
    proc = subprocess.Popen(args("b.pt"), env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    _kill_when(proc, lambda: state.exists() and _state_epoch(state) >= 1, "finetune")
    killed_epoch = _state_epoch(state)
    assert killed_epoch >= 1 and not (tmp_path / "b.pt").exists()
    # a temporary file of a write the kill interrupted (if any) is cleared by --resume; plant one to check
    (tmp_path / ".b.pt.state.killed12.tmp").write_bytes(b"partial")  # 8 characters, as tempfile makes them

    subprocess.run([*args("b.pt"), "--resume"], env=env, check=True, timeout=300, capture_output=True)
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    same_weights = a.state_dict.keys() == b.state_dict.keys() and all(
        torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("seconds", "examples_per_s")} for r in h]  # noqa: E731
    ma, mb = a.meta["metrics"], b.meta["metrics"]
    same_metrics = (ma["val_acc"], ma["best_epoch"], ma.get("test_acc"), strip(ma["history"])) == \
                   (mb["val_acc"], mb["best_epoch"], mb.get("test_acc"), strip(mb["history"]))
    log = [json.loads(line)["epoch"] for line in (tmp_path / "b.pt.log.jsonl").read_text().splitlines()]
    stray = sorted(p.name for p in tmp_path.glob(".b.pt*"))
    ok = same_weights and same_metrics and log == [1, 2, 3, 4, 5, 6] and not state.exists() and not stray
    record("fault", f"finetune SIGKILL after epoch {killed_epoch + 1}, resumed", ok)
    assert same_weights, "resumed fine-tuning ended with other weights"
    assert same_metrics, (ma, mb)
    assert log == [1, 2, 3, 4, 5, 6]
    assert not state.exists() and not stray, stray


STUDY = """
[study]
name = "tiny"
seed = 1
threads = 1
[data]
synth = "rml2016.10a"
per_key = 6
snrs = [10, 18]
length = 64
[model]
name = "resnet20-1d"
[train]
epochs = 2
batch_size = 64
[prune]
methods = ["random", "channel-l1"]
targets = [0.49]
[finetune]
epochs = 1
[export]
precisions = ["fp32"]
[profile]
backends = ["onnxruntime"]
batch = [1]
threads = [1]
warmup = 1
iters = 3
"""


def _recorded(state: Path) -> list[str]:
    try:
        return list(json.loads(state.read_text())["stages"])
    except (OSError, ValueError, KeyError):
        return []


@pytest.mark.slow
def test_compare_sigkill_then_rerun_reuses_finished_stages(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(STUDY)
    out = tmp_path / "study"
    state = out / "state.json"
    env = _env()
    proc = subprocess.Popen(_cli("compare", "--config", cfg, "--out", out), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(proc, lambda: len(_recorded(state)) >= 3, "compare", timeout=400)
    done = _recorded(state)
    assert {"data", "baseline"} <= set(done), done
    assert not (out / "report.md").exists()
    # what a write interrupted by the kill would leave (if the kill landed mid-write): the re-run clears it
    (out / "data" / ".dataset.npz.killed12.npz").write_bytes(b"partial")

    res = subprocess.run([*_cli("compare", "--config", cfg, "--out", out, "--json")], env=env, timeout=400,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    reused = set(doc["stages"]["reused"])
    results = json.loads(Path(doc["results_json"]).read_text())
    ids = {m["id"] for m in results["models"]}
    complete = Path(doc["report_md"]).is_file() and Path(doc["report_html"]).is_file() and \
        {"baseline", "random@0.49", "channel-l1@0.49"} <= ids
    ok = set(done) <= reused and complete and not (set(done) & set(doc["stages"]["ran"]))
    record("fault", f"compare SIGKILL after {len(done)} stages, re-run", ok)
    assert set(done) <= reused, (done, doc["stages"])
    assert not set(done) & set(doc["stages"]["ran"])
    assert complete, (ids, doc)
    # nothing half-written left in the study folder: no temporary files from the killed write
    # (.lock is the study folder's lock file, kept on purpose: removing it would race with a waiting run)
    assert not [p for p in out.rglob(".*") if p.is_file() and p.name != ".lock"], list(out.rglob(".*"))


# --------------------------------------------------------------------------- unwritable outputs

def _unwritable_targets(tmp_path):
    """(label, output path) pairs that cannot be written, even by root."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    targets = [("parent is a file", blocker / "sub" / "out"), ("under /proc", Path("/proc/edgeprune-test/out"))]
    if os.geteuid() != 0:
        ro = tmp_path / "read-only"
        ro.mkdir()
        ro.chmod(0o555)
        targets.append(("chmod 0o555 folder", ro / "out"))
    return targets


def test_unwritable_outputs_fail_cleanly(tmp_path, capsys, shared):
    ck, data, onnx = shared["ckpt"], shared["data"], shared["onnx"]
    cfg = tmp_path / "s.toml"
    cfg.write_text(STUDY)
    for label, base in _unwritable_targets(tmp_path):
        commands = {
            "data synth": ["data", "synth", "--per-key", "2", "--length", "64", "--out", f"{base}.npz"],
            "data convert": ["data", "convert", data, "--out", f"{base}.npz"],
            "train": ["train", "--data", data, "--model", "resnet20-1d", "--epochs", "1", "--out", f"{base}.pt"],
            "finetune": ["finetune", "--model", ck, "--data", data, "--epochs", "1", "--out", f"{base}.pt"],
            "prune": ["prune", "--model", ck, "--method", "random", "--target-macs", "0.5", "--data", data,
                      "--out", f"{base}.pt"],
            "analyze": ["analyze", "--model", ck, "--data", data, "--out", base, "--no-plots", "--batches", "1"],
            "export": ["export", "--model", ck, "--out", f"{base}.onnx"],
            "bundle": ["bundle", "--model", ck, "--target", "x86-cpu", "--precision", "fp32", "--out", base],
            "bundle tar": ["bundle", "--model", ck, "--target", "x86-cpu", "--precision", "fp32",
                           "--out", f"{base}.tar.gz"],
            "profile": ["profile", onnx, "--iters", "2", "--warmup", "1", "--out", f"{base}.json"],
            "compare": ["compare", "--config", cfg, "--out", base],
            "eval --plot": ["eval", "--model", ck, "--data", data, "--plot", base],
        }
        for name, argv in commands.items():
            refuses(capsys, argv, outputs=[Path(argv[-1])], name=f"unwritable ({label}): {name}",
                    kind="fault", expect="cannot|denied|not a directory|no such|read-only|write")


def test_write_failing_part_way_leaves_nothing(tmp_path, shared):
    """A write that fails part-way (file-size limit, like a full disk) leaves no partial output or temp file.
    The cases run as ``python -m edgeprune`` does, each in a child forked from one interpreter that imported
    torch once (tests/robustness/forkrun.py), with a 32 KiB file-size limit and SIGXFSZ ignored."""
    from .test_subprocess import _run_driver

    out = tmp_path / "out"
    out.mkdir()
    cases = {
        "data synth": ["data", "synth", "--per-key", "40", "--length", "128", "--out", out / "s.npz"],
        "data convert": ["data", "convert", shared["data"], "--out", out / "c.npz"],
        "export": ["export", "--model", shared["ckpt"], "--out", out / "m.onnx"],
        "train": ["train", "--data", shared["data"], "--model", "resnet20-1d", "--epochs", "1",
                  "--batch-size", "64", "--out", out / "m.pt"],
        "finetune": ["finetune", "--model", shared["ckpt"], "--data", shared["data"], "--epochs", "1",
                     "--batch-size", "64", "--out", out / "f.pt"],
        "bundle tar": ["bundle", "--model", shared["ckpt"], "--target", "x86-cpu", "--precision", "fp32",
                       "--out", out / "b.tar.gz"],
        "bundle folder": ["bundle", "--model", shared["ckpt"], "--target", "x86-cpu", "--precision", "fp32",
                          "--out", out / "b"],
    }
    results = _run_driver([{"name": name, "argv": [str(a) for a in argv], "fsize": 32 * 1024}
                           for name, argv in cases.items()], tmp_path, timeout_each=300)["results"]
    assert [r["name"] for r in results] == list(cases)
    left = sorted(p.name for p in out.iterdir())   # every case writes under its own names, none may be left
    for res in results:
        problems = check_error_output(1 if res["rc"] else 0, res["stderr"], "cannot write|too large|EFBIG|File too large")
        if res["rc"] < 0:
            problems.append(f"killed by signal {-res['rc']}")
        if "dynamo" in res["stderr"]:   # a write failure is not the exporter's limit: the other exporter is not tried
            problems.append("a write failure sent the export to the dynamo exporter")
        record("fault", f"write fails part-way (EFBIG): {res['name']}", not problems and not left,
               "; ".join(problems + ([f"left behind: {left}"] if left else [])), seconds=res["seconds"])
        assert not problems, f"{res['name']}: {problems}\n{res['stderr']}"
    assert not left, f"left behind: {left}"
