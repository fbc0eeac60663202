"""``fit`` and ``export_checkpoint`` split into named steps (issue 17) give what the long functions gave.

The reference is the code itself before the split: ``edgeprune/training/trainer.py`` and
``export/onnx_export.py`` at commit ``BEFORE`` (the last commit with the long functions), read from git
history and run as separate modules next to the current ones. Same seed and inputs: the weights must be
equal bit for bit (the training log and metrics too, but for the wall-clock fields), and the ONNX files
equal byte for byte. A training state written by the old code must resume with the new one. Skipped only
where the checkout has no git history. The old files import today's helpers (checkpoint, targets, quantize, ...),
so this compares the split itself; when one of these jobs is changed on purpose, this test is the place to see
what changed, and then to retire.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from edgeprune.checkpoint import load_checkpoint, make_meta
from edgeprune.data.split import split_dataset
from edgeprune.models import build_model, make_spec
from edgeprune.training import trainer as new_trainer
from edgeprune.training.trainer import TrainConfig

REPO = Path(__file__).resolve().parents[2]
BEFORE = "bd4fe1fcfdae40b5a246ffd61101960ae599e1bf"
TIMING = ("seconds", "examples_per_s")


# Modules the old files import that have moved since (issue 27: the host's shims of the device core were deleted;
# the same functions now live in export/runtime): the old import lines are pointed at today's home.
MOVED = (
    ("from .preprocess import check_normalization, normalize\n",
     "from .runtime.frames import check_normalization, normalize\n"),
    ("from .preprocess import check_normalization, describe\n",
     "from .runtime.frames import check_normalization, describe_normalization as describe\n"),
    ("from .manifest import (KIND, MANIFEST, SCHEMA_VERSION, check_file_name, file_entry,\n"
     "                       sha256_file, validate_manifest)",
     "from .runtime.manifest import (BUNDLE_KIND as KIND, MANIFEST, SCHEMA_VERSION, check_file_name, file_entry,\n"
     "                               check_manifest as validate_manifest)"),
    ("from edgeprune.safeio import", "from edgeprune.export.runtime.safeio import"),
    ("from ..safeio import", "from edgeprune.export.runtime.safeio import"),
    ("from ..schema import", "from edgeprune.export.runtime.schema import"),
)


def _module_before(path: str, package: str):
    """The file ``path`` as it was at ``BEFORE``, imported as a module of ``package`` (its relative imports work;
    imports of modules moved since point at their new home, :data:`MOVED`)."""
    name = f"{package}._before_issue17_{Path(path).stem}"
    if name in sys.modules:
        return sys.modules[name]
    try:
        src = subprocess.run(["git", "show", f"{BEFORE}:{path}"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"no git history with commit {BEFORE[:10]} (the code before the split)")
    for old, new in MOVED:
        src = src.replace(old, new)
    mod = types.ModuleType(name)
    mod.__package__ = package
    mod.__file__ = f"<{BEFORE[:10]}:{path}>"
    sys.modules[name] = mod  # dataclasses look their module up here
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)
    return mod


# What export reports gained after the split (issue 24: the input layout, the simplification outcome and its
# notes); the split is compared with the long function on everything else.
LATER_FIELDS = ("notes", "simplified")


def _without_later_fields(report: dict) -> dict:
    out = {k: v for k, v in report.items() if k not in LATER_FIELDS}
    if isinstance(out.get("input"), dict):
        out["input"] = {k: v for k, v in out["input"].items() if k != "layout"}
    return out


def _untimed(history):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in history]


def _same_weights(a, b):
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def _net(ds, seed):
    torch.manual_seed(seed)
    spec = make_spec("resnet20-1d", ds.length, len(ds.classes))
    return spec, build_model(spec)


def _zero_first_filter(model):
    """An ``after_step`` hook with a visible effect (as sparsity training's hooks have)."""
    with torch.no_grad():
        next(p for p in model.parameters() if p.dim() == 3)[0].zero_()


CASES = {
    "plain": dict(cfg=dict(epochs=2, batch_size=32, seed=3)),
    # distillation, L1 on weights, BN sparsity, patience (validation loss) and an after_step hook
    "every-term": dict(cfg=dict(epochs=2, batch_size=24, seed=4, distill_alpha=0.5, distill_temperature=3.0,
                                l1=1e-4, bn_sparsity=1e-4, patience=2, lr=2e-3), teacher=True, hook=True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fit_gives_the_weights_the_long_function_gave(tmp_path, toy_dataset, case):
    old = _module_before("edgeprune/training/trainer.py", "edgeprune.training")
    tr, va, _ = split_dataset(toy_dataset, seed=0)
    c = CASES[case]
    runs = {}
    for who, mod in (("old", old), ("new", new_trainer)):
        spec, model = _net(toy_dataset, 0)
        teacher = _net(toy_dataset, 9)[1] if c.get("teacher") else None
        out = tmp_path / who / "m.pt"
        out.parent.mkdir()
        metrics = mod.fit(model, spec, tr, va, TrainConfig(**c["cfg"]), out, make_meta(spec, toy_dataset.classes),
                          log_path=out.parent / "log.jsonl", teacher=teacher,
                          after_step=_zero_first_filter if c.get("hook") else None)
        log = [json.loads(ln) for ln in (out.parent / "log.jsonl").read_text().splitlines()]
        runs[who] = (model.state_dict(), metrics, load_checkpoint(out), log)
    (w_old, m_old, ck_old, log_old), (w_new, m_new, ck_new, log_new) = runs["old"], runs["new"]
    _same_weights(w_old, w_new)
    _same_weights(ck_old.state_dict, ck_new.state_dict)
    assert len(m_new["history"]) == 2 and m_new["best_epoch"] in (1, 2)
    assert _untimed(m_old["history"]) == _untimed(m_new["history"])
    assert {k: v for k, v in m_old.items() if k != "history"} == {k: v for k, v in m_new.items() if k != "history"}
    assert _untimed(log_old) == _untimed(log_new) == _untimed(m_new["history"])
    meta_old = {k: v for k, v in ck_old.meta["metrics"].items() if k != "history"}
    assert meta_old == {k: v for k, v in ck_new.meta["metrics"].items() if k != "history"}
    # the training actually moved the weights (so equality above is not two untouched copies)
    _, fresh = _net(toy_dataset, 0)
    assert any(not torch.equal(v, w_new[k]) for k, v in fresh.state_dict().items() if v.is_floating_point())


def test_a_state_written_before_the_split_resumes_to_the_same_weights(tmp_path, toy_dataset):
    old = _module_before("edgeprune/training/trainer.py", "edgeprune.training")
    tr, va, _ = split_dataset(toy_dataset, seed=0)
    cfg = TrainConfig(epochs=3, batch_size=32, seed=5)
    spec, model = _net(toy_dataset, 0)
    old.fit(model, spec, tr, va, copy.deepcopy(cfg), tmp_path / "a.pt", make_meta(spec, toy_dataset.classes))

    orig = old._save_state

    def crash_after_first(path, model, opt, sched, epoch, *a):
        orig(path, model, opt, sched, epoch, *a)
        if epoch == 0:
            raise KeyboardInterrupt

    old._save_state = crash_after_first
    try:
        spec, model = _net(toy_dataset, 0)
        with pytest.raises(KeyboardInterrupt):
            old.fit(model, spec, tr, va, copy.deepcopy(cfg), tmp_path / "b.pt", make_meta(spec, toy_dataset.classes))
    finally:
        old._save_state = orig
    assert (tmp_path / "b.pt.state").exists()
    spec, model = _net(toy_dataset, 0)
    m = new_trainer.fit(model, spec, tr, va, copy.deepcopy(cfg), tmp_path / "b.pt",
                        make_meta(spec, toy_dataset.classes), resume=True)
    assert [r["epoch"] for r in m["history"]] == [1, 2, 3]
    _same_weights(load_checkpoint(tmp_path / "a.pt").state_dict, load_checkpoint(tmp_path / "b.pt").state_dict)
    assert not (tmp_path / "b.pt.state").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from export_fixtures import shared_trained

    return shared_trained(tmp_path_factory)


@pytest.mark.parametrize("kwargs", [dict(verify=True), dict(precision="fp16"),
                                    dict(precision="int8", verify=True, calib_frames=64, target="x86-cpu")],
                         ids=["fp32-data", "fp16-random-frames", "int8-target"])
def test_export_writes_the_file_the_long_function_wrote(tmp_path, trained, kwargs):
    from edgeprune.export import onnx_export as new_export

    old = _module_before("export/onnx_export.py", "edgeprune.export")
    ckpt, data = trained
    kw = dict(kwargs)
    if kw.pop("verify", False):
        kw["verify_data"] = data
    reports = {}
    for who, mod in (("old", old), ("new", new_export)):
        reports[who] = mod.export_checkpoint(ckpt, tmp_path / f"{who}.onnx", **kw)
    a, b = (tmp_path / "old.onnx").read_bytes(), (tmp_path / "new.onnx").read_bytes()
    assert len(a) > 1000 and a == b
    ro, rn = reports["old"], reports["new"]
    assert ro.pop("path").endswith("old.onnx") and rn.pop("path").endswith("new.onnx")
    assert ro == _without_later_fields(rn)
    assert rn["precision"] == kwargs.get("precision", "fp32")
    assert (rn["accuracy"] is not None) == ("verify_data" in kw)
    assert (rn["calibration"] is not None) == (rn["precision"] == "int8")


def test_train_model_returns_data_and_the_cli_formats_it(tmp_path, toy_npz, capsys):
    from edgeprune.cli.cmd_train import train_text
    from edgeprune.cli.main import main
    from edgeprune.training.train import train_model

    notes = []
    out = tmp_path / "m.pt"
    r = train_model(toy_npz, "resnet20-1d", out, epochs=1, batch_size=32, threads=1, device="cpu", resume=True,
                    notify=notes.append)
    assert capsys.readouterr() == ("", "")  # the library printed nothing (progress bars are off in tests)
    assert notes == [f"nothing to resume ({out}.state does not exist); training from scratch"]
    assert json.loads(json.dumps(r)) == r and "summary" not in r and r["resumed"] is False
    ck = load_checkpoint(out)
    assert r["test_acc"] == ck.meta["metrics"]["test_acc"] and r["best_epoch"] == ck.meta["metrics"]["best_epoch"]
    # 8 (class, SNR) keys of 24 frames, each split 14/5/5 by 0.6,0.2,0.2
    assert r["frames"] == ck.meta["dataset"]["split"]["frames"] == {"train": 112, "val": 40, "test": 40}
    assert train_text(r) == (f"trained resnet20-1d for 1 epochs on 112 frames (1 process, cpu); best epoch "
                             f"{r['best_epoch']}: val acc {r['val_acc']:.4f}, test acc {r['test_acc']:.4f}\n"
                             f"wrote {out} (log {out}.log.jsonl)")

    assert main(["train", "--data", str(toy_npz), "--model", "resnet20-1d", "--epochs", "1", "--batch-size", "32",
                 "--threads", "1", "--device", "cpu", "--out", str(tmp_path / "c.pt"), "--resume"]) == 0
    stdout, stderr = capsys.readouterr()
    assert stderr == f"edgeprune: nothing to resume ({tmp_path / 'c.pt'}.state does not exist); training from scratch\n"
    assert stdout.startswith("trained resnet20-1d for 1 epochs on 112 frames (1 process, cpu); best epoch ")
    assert stdout.endswith(f"\nwrote {tmp_path / 'c.pt'} (log {tmp_path / 'c.pt'}.log.jsonl)\n")


@pytest.mark.parametrize("case", ["x86-default-precisions", "engine-tar"])
def test_make_bundle_writes_the_bundle_the_long_function_wrote(tmp_path, trained, case):
    from edgeprune.export import bundle as new_bundle

    old = _module_before("export/bundle.py", "edgeprune.export")
    ckpt, data = trained
    if case == "x86-default-precisions":  # fp32 and int8 (calibrated on the data), accuracy measured
        args, kw, name = ("x86-cpu",), dict(data=data, calib_frames=64), "b"
    else:  # a prebuilt engine with its metadata beside it, packed as .tar.gz
        eng = tmp_path / "m.engine"
        eng.write_bytes(b"\x00engine-bytes")
        (tmp_path / "m.engine.json").write_text(json.dumps({"precision": "fp16", "tensorrt_version": "8.5.2"}))
        args, kw, name = ("xavier-nx",), dict(precisions=["fp16"], engine=eng), "b.tar.gz"
    manifests = {}
    for who, mod in (("old", old), ("new", new_bundle)):
        (tmp_path / who).mkdir()
        manifests[who] = mod.make_bundle(ckpt, *args, tmp_path / who / name, **kw)
        on_disk = new_bundle.open_bundle(tmp_path / who / name).manifest
        assert on_disk == manifests[who]
    mo, mn = manifests["old"], manifests["new"]
    assert mo.pop("created") and mn.pop("created")
    # every file's sha256 is in "files": the ONNX variants, run.py, the engine
    assert mo == dict(mn, variants=[_without_later_fields(v) for v in mn["variants"]])
    assert len(mn["files"]) >= 3 and mn["opset"] == 17

