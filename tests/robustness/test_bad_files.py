"""Empty, truncated and random-byte files of every format, fed to every command that reads them.

Each is refused with one ``edgeprune: error:`` line, a non-zero exit, no
traceback, and the command's output left absent (or unchanged) with no stray
temporary files beside it.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from .tally import record, refuses


def corruptions(valid: bytes, seed: int = 0) -> dict[str, bytes]:
    """Damaged versions of ``valid``: empty, cut short at several points, and random bytes."""
    rng = np.random.default_rng(seed)
    n = max(len(valid), 64)
    out = {
        "empty": b"",
        "half": valid[: len(valid) // 2],
        "tenth": valid[: max(1, len(valid) // 10)],
        "head16": valid[:16],
        "random": rng.integers(0, 256, n, dtype=np.uint8).tobytes(),
        "magic+random": valid[:8] + rng.integers(0, 256, n, dtype=np.uint8).tobytes(),
    }
    if len(valid.rstrip()) > 1:
        out["minus1"] = valid.rstrip()[:-1]  # the last byte gone (text: the last non-blank character)
    return {k: v for k, v in out.items() if v != valid}


def _each(tmp_path, valid: bytes, filename: str, seed: int = 0):
    """Yield (label, path) for every corruption of ``valid`` written as ``filename`` in a fresh folder."""
    for label, blob in corruptions(valid, seed).items():
        d = tmp_path / label
        d.mkdir(exist_ok=True)
        p = d / filename
        p.write_bytes(blob)
        yield label, p


def test_npz_datasets(tmp_path, capsys, shared):
    out = tmp_path / "out"
    for label, p in _each(tmp_path, shared["data"].read_bytes(), "data.npz"):
        for argv in (["data", "info", p], ["data", "convert", p, "--out", out / "c.npz"],
                     ["train", "--data", p, "--model", "resnet20-1d", "--epochs", "1", "--out", out / "m.pt"],
                     ["eval", "--model", shared["ckpt"], "--data", p],
                     ["finetune", "--model", shared["ckpt"], "--data", p, "--epochs", "1", "--out", out / "f.pt"]):
            refuses(capsys, argv, outputs=[out], name=f"npz {label}: {argv[0]}")
    assert not out.exists()


def test_rml_pickles(tmp_path, capsys):
    from rml_files import py2_pickle, rml_dict

    valid = py2_pickle(rml_dict(length=16))
    for label, p in _each(tmp_path, valid, "RML2016.10a_dict.pkl"):
        refuses(capsys, ["data", "info", p], name=f"rml pickle {label}: data info")
        refuses(capsys, ["data", "convert", p, "--out", tmp_path / "o.npz"], outputs=[tmp_path / "o.npz"],
                name=f"rml pickle {label}: data convert")


def test_hdf5(tmp_path, capsys):
    from rml_files import write_rml2018_hdf5

    src = tmp_path / "valid.hdf5"
    write_rml2018_hdf5(src, per_key=2, length=32)
    for label, p in _each(tmp_path, src.read_bytes(), "GOLD_XYZ_OSC.0001_1024.hdf5"):
        refuses(capsys, ["data", "info", p], name=f"hdf5 {label}: data info")
        refuses(capsys, ["data", "convert", p, "--out", tmp_path / "o.npz"], outputs=[tmp_path / "o.npz"],
                name=f"hdf5 {label}: data convert")


def test_hdf5_wrong_layout(tmp_path, capsys):
    import h5py

    cases = {
        "no-datasets": {},
        "X-2d": {"X": np.zeros((4, 32)), "Y": np.eye(4), "Z": np.zeros((4, 1))},
        "Y-mismatch": {"X": np.zeros((4, 32, 2), np.float32), "Y": np.eye(3), "Z": np.zeros((4, 1))},
        "Y-not-onehot": {"X": np.zeros((4, 32, 2), np.float32), "Y": np.full((4, 24), 0.5), "Z": np.zeros((4, 1))},
        "X-strings": {"X": np.array([b"a", b"b"]), "Y": np.eye(2), "Z": np.zeros((2, 1))},
    }
    for label, arrays in cases.items():
        p = tmp_path / f"{label}.hdf5"
        with h5py.File(p, "w") as f:
            for k, v in arrays.items():
                f[k] = v
        refuses(capsys, ["data", "info", p], name=f"hdf5 layout {label}")


def _hisar(root):
    from rml_files import write_hisar

    for split in ("train", "test"):
        write_hisar(root, split, codes=[0, 10, 0, 10], snrs=[0, 0, 10, 10], length=16)
    return root


def test_hisarmod_csv(tmp_path, capsys):
    valid_root = _hisar(tmp_path / "valid")
    for kind in ("data", "labels", "snr"):
        valid = (valid_root / "Train" / f"train_{kind}.csv").read_bytes()
        for label, blob in corruptions(valid, seed=len(kind)).items():
            if label == "minus1":  # dropping the final newline leaves a valid CSV
                continue
            root = tmp_path / f"{kind}-{label}"
            shutil.copytree(valid_root, root)
            (root / "Train" / f"train_{kind}.csv").write_bytes(blob)
            refuses(capsys, ["data", "info", root, "--split", "train"], name=f"hisarmod {kind} {label}: data info")
            refuses(capsys, ["data", "convert", root, "--split", "train", "--out", tmp_path / "o.npz"],
                    outputs=[tmp_path / "o.npz"], name=f"hisarmod {kind} {label}: data convert")
    # readable CSVs with inconsistent content
    bad = {"unknown-code": ("labels", "0\n10\n99\n10\n"), "short-labels": ("labels", "0\n10\n"),
           "nan-snr": ("snr", "0\nnan\n10\n10\n"), "ragged-rows": ("data", "1+2i,3+4i\n1+2i\n1+1i\n2+2i\n"),
           "text": ("data", "hello,world\n" * 4)}
    for label, (kind, text) in bad.items():
        root = tmp_path / f"content-{label}"
        shutil.copytree(valid_root, root)
        (root / "Train" / f"train_{kind}.csv").write_text(text)
        refuses(capsys, ["data", "info", root, "--split", "train"], name=f"hisarmod content {label}")


def _sigmf(tmp_path, shared):
    from edgeprune.data.sigmf_io import write_sigmf

    rng = np.random.default_rng(0)
    z = (rng.standard_normal(4096) + 1j * rng.standard_normal(4096)).astype(np.complex64)
    meta, data = write_sigmf(tmp_path / "valid" / "rec", z)
    return meta, data


def test_sigmf_meta_and_data(tmp_path, capsys, shared):
    meta, data = _sigmf(tmp_path, shared)
    for which, valid in (("meta", meta.read_bytes()), ("data", data.read_bytes())):
        for label, blob in corruptions(valid, seed=3).items():
            if which == "data" and label in ("random", "magic+random", "half", "tenth", "head16"):
                continue  # any whole number of cf32 samples is a valid recording; odd sizes are below
            d = tmp_path / f"{which}-{label}"
            shutil.copytree(meta.parent, d)
            (d / (meta.name if which == "meta" else data.name)).write_bytes(blob)
            m = d / meta.name
            refuses(capsys, ["data", "info", m], name=f"sigmf {which} {label}: data info")
            refuses(capsys, ["predict", shared["bundle"], "--input", m], name=f"sigmf {which} {label}: predict")
    # wrong-but-parseable metadata
    bad_meta = {
        "no-global": {"captures": []},
        "unknown-datatype": {"global": {"core:datatype": "cf128_le"}, "captures": []},
        "global-list": {"global": [], "captures": []},
        "header-past-end": {"global": {"core:datatype": "cf32_le"},
                            "captures": [{"core:sample_start": 0, "core:header_bytes": 1 << 40}]},
        "negative-header": {"global": {"core:datatype": "cf32_le"},
                            "captures": [{"core:sample_start": 0, "core:header_bytes": -5}]},
        "captures-strings": {"global": {"core:datatype": "cf32_le"}, "captures": ["x"]},
        "channels-text": {"global": {"core:datatype": "cf32_le", "core:num_channels": "two"}, "captures": []},
        "bad-annotation": {"global": {"core:datatype": "cf32_le"}, "captures": [{"core:sample_start": 0}],
                           "annotations": [{"core:sample_start": "x", "core:label": 5}]},
    }
    for label, doc in bad_meta.items():
        d = tmp_path / f"meta-{label}"
        shutil.copytree(meta.parent, d)
        (d / meta.name).write_text(json.dumps(doc))
        refuses(capsys, ["data", "info", d / meta.name], name=f"sigmf meta {label}: data info")
    # a data file whose size is not a whole number of samples
    d = tmp_path / "data-odd"
    shutil.copytree(meta.parent, d)
    (d / data.name).write_bytes(data.read_bytes()[:-3])
    refuses(capsys, ["data", "info", d / meta.name], name="sigmf data odd size: data info")
    refuses(capsys, ["predict", shared["bundle"], "--input", d / meta.name], name="sigmf data odd size: predict")


def test_onnx_files(tmp_path, capsys, shared):
    out = tmp_path / "out"
    frames = tmp_path / "frames.npy"
    np.save(frames, np.zeros((2, 2, shared["length"]), np.float32))
    for label, p in _each(tmp_path, shared["onnx"].read_bytes(), "model.onnx"):
        refuses(capsys, ["predict", p, "--input", frames], name=f"onnx {label}: predict")
        refuses(capsys, ["profile", p, "--iters", "2", "--warmup", "1", "--out", out / "r.json"], outputs=[out],
                name=f"onnx {label}: profile")
        refuses(capsys, ["build", "--onnx", p, "--target", "orin-nano", "--out", out / "e.engine"], outputs=[out],
                name=f"onnx {label}: build")


def test_engine_files_without_tensorrt(tmp_path, capsys, shared):
    """Engine files (garbage, or anything without TensorRT installed) give a clear error."""
    frames = tmp_path / "frames.npy"
    np.save(frames, np.zeros((2, 2, shared["length"]), np.float32))
    rng = np.random.default_rng(1)
    for label, blob in {"empty": b"", "random": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
                        "onnx-renamed": shared["onnx"].read_bytes()}.items():
        p = tmp_path / label / "model.engine"
        p.parent.mkdir()
        p.write_bytes(blob)
        refuses(capsys, ["predict", p, "--input", frames], name=f"engine {label}: predict",
                expect="tensorrt|engine|empty")
        refuses(capsys, ["profile", p, "--backend", "tensorrt", "--iters", "2", "--warmup", "1",
                         "--out", tmp_path / "r.json"], outputs=[tmp_path / "r.json"],
                name=f"engine {label}: profile", expect="tensorrt|engine|empty")


def test_checkpoints(tmp_path, capsys, shared):
    out = tmp_path / "out"
    data = shared["data"]
    for label, p in _each(tmp_path, shared["ckpt"].read_bytes(), "model.pt"):
        for argv in (["inspect", p], ["eval", "--model", p, "--data", data],
                     ["finetune", "--model", p, "--data", data, "--epochs", "1", "--out", out / "f.pt"],
                     ["prune", "--model", p, "--data", data, "--method", "random", "--target-macs", "0.5",
                      "--out", out / "p.pt"],
                     ["export", "--model", p, "--out", out / "m.onnx"],
                     ["bundle", "--model", p, "--target", "x86-cpu", "--out", out / "b"],
                     ["profile", p, "--backend", "torch", "--iters", "2", "--warmup", "1", "--out", out / "r.json"]):
            refuses(capsys, argv, outputs=[out], name=f"checkpoint {label}: {argv[0]}")
    assert not out.exists()


def test_bundle_manifests(tmp_path, capsys, shared):
    frames = tmp_path / "frames.npy"
    np.save(frames, np.zeros((2, 2, shared["length"]), np.float32))
    valid = (shared["bundle"] / "manifest.json").read_bytes()
    extra = {"null": b"null", "list": b"[]", "string": b'"x"', "utf16": valid.decode().encode("utf-16")}
    for label, blob in {**corruptions(valid, 5), **extra}.items():
        b = tmp_path / f"bundle-{label}"
        shutil.copytree(shared["bundle"], b)
        (b / "manifest.json").write_bytes(blob)
        refuses(capsys, ["predict", b, "--input", frames], name=f"manifest {label}: predict")
        refuses(capsys, ["profile", b, "--iters", "2", "--warmup", "1", "--out", tmp_path / "r.json"],
                outputs=[tmp_path / "r.json"], name=f"manifest {label}: profile")


def test_bundle_manifest_nested_too_deep(tmp_path, capsys, shared):
    frames = tmp_path / "frames.npy"
    np.save(frames, np.zeros((2, 2, shared["length"]), np.float32))
    b = tmp_path / "bundle-deep"
    shutil.copytree(shared["bundle"], b)
    (b / "manifest.json").write_bytes(b"[" * 100000 + b"]" * 100000)
    refuses(capsys, ["predict", b, "--input", frames], name="manifest nested too deep: predict")


def test_bundle_archives(tmp_path, capsys, shared):
    frames = tmp_path / "frames.npy"
    np.save(frames, np.zeros((2, 2, shared["length"]), np.float32))
    for label, p in _each(tmp_path, shared["archive"].read_bytes(), "bundle.tar.gz"):
        if label in ("empty", "random", "magic+random"):
            continue  # below
        if label == "minus1":
            # only the gzip trailer is lost; every member is still verified against its sha256
            continue
        refuses(capsys, ["predict", p, "--input", frames], name=f"bundle archive {label}: predict")


@pytest.mark.parametrize("label", ["empty", "random", "magic+random"])
def test_bundle_archives_not_gzip(tmp_path, capsys, shared, label):
    frames = tmp_path / "frames.npy"
    np.save(frames, np.zeros((2, 2, shared["length"]), np.float32))
    p = tmp_path / "bundle.tar.gz"
    p.write_bytes(corruptions(shared["archive"].read_bytes())[label])
    refuses(capsys, ["predict", p, "--input", frames], name=f"bundle archive {label}: predict")


def test_target_toml(tmp_path, capsys, shared):
    from edgeprune.export.targets import builtin_dirs

    valid = (builtin_dirs()[0] / "x86-cpu.toml").read_bytes()
    extra = {"utf16": valid.decode().encode("utf-16"), "wrong-types": b'name = 5\nbackend = ["x"]\n',
             "unknown-key": valid + b"\nfoo = 1\n", "name-mismatch": valid.replace(b'"x86-cpu"', b'"other"', 1)}
    for label, blob in {**corruptions(valid, 7), **extra}.items():
        d = tmp_path / f"targets-{label}"
        d.mkdir()
        t = d / "x86-cpu.toml"
        t.write_bytes(blob)
        refuses(capsys, ["targets", "--targets-dir", d], name=f"target toml {label}: targets")
        refuses(capsys, ["export", "--model", shared["ckpt"], "--target", t, "--out", tmp_path / "m.onnx"],
                outputs=[tmp_path / "m.onnx"], name=f"target toml {label}: export")
        refuses(capsys, ["bundle", "--model", shared["ckpt"], "--target", "x86-cpu", "--targets-dir", d,
                         "--out", tmp_path / "b"], outputs=[tmp_path / "b"], name=f"target toml {label}: bundle")


@pytest.fixture(scope="module")
def plan_json(tmp_path_factory, shared):
    from edgeprune.cli.main import main

    out = tmp_path_factory.mktemp("plan")
    assert main(["analyze", "--model", str(shared["ckpt"]), "--data", str(shared["data"]), "--out", str(out),
                 "--no-plots", "--batches", "1", "--batch-size", "32"]) == 0
    return out / "plan.json"


def test_plan_json(tmp_path, capsys, shared, plan_json):
    valid = plan_json.read_bytes()
    doc = json.loads(valid)
    extra = {"null": b"null", "list": b"[1,2]",
             "other-model": json.dumps(dict(doc, model="resnet56-1d")).encode(),
             "no-keys": b"{}"}
    for label, blob in {**corruptions(valid, 9), **extra}.items():
        p = tmp_path / f"plan-{label}.json"
        p.write_bytes(blob)
        refuses(capsys, ["prune", "--model", shared["ckpt"], "--plan", p, "--out", tmp_path / "p.pt"],
                outputs=[tmp_path / "p.pt"], name=f"plan.json {label}: prune")


def test_study_config_toml(tmp_path, capsys):
    from edgeprune.study.runner import quickstart_config

    valid = quickstart_config().read_bytes()
    extra = {"unknown-section": valid + b"\n[bogus]\nx = 1\n", "wrong-type": valid.replace(b"epochs = 8", b'epochs = "8"'),
             "both-data": valid.replace(b'synth = "rml2016.10a"', b'synth = "rml2016.10a"\nfile = "x.npz"'),
             "bad-target": valid.replace(b"targets = [0.3]", b"targets = [3]"),
             "missing-file": b'[data]\nfile = "nope.npz"\n',
             "method-number": valid.replace(b'methods = ["layer", "dbp", "random", "channel-l1"]', b"methods = [1]"),
             "split-two": valid.replace(b"[data]", b"[data]\nsplit = [0.5, 0.5]"),
             "threads-zero": valid.replace(b"threads = [1]", b"threads = [0]"),
             "snrs-text": valid.replace(b"snrs = [-4, 0, 4, 8, 12, 16]", b'snrs = ["high"]'),
             "key-newline": valid.replace(b"[study]\n", b'[study]\n"a\\nb" = 1\n', 1)}
    for label, blob in extra.items():
        # a replacement that no longer matches the quickstart would leave a valid config (and run a whole study)
        assert blob != valid, f"the {label!r} corruption no longer changes configs/quickstart.toml"
    for label, blob in {**corruptions(valid, 11), **extra}.items():
        if label == "minus1":  # 'iters = 100' -> 'iters = 10' is still a valid config
            continue
        p = tmp_path / f"{label}.toml"
        p.write_bytes(blob)
        out = tmp_path / f"study-{label}"
        refuses(capsys, ["compare", "--config", p, "--out", out], outputs=[out], name=f"study config {label}: compare")


@pytest.fixture(scope="module")
def profile_json(tmp_path_factory, shared):
    from edgeprune.cli.main import main

    out = tmp_path_factory.mktemp("prof") / "results.json"
    assert main(["profile", str(shared["onnx"]), "--iters", "3", "--warmup", "1", "--out", str(out)]) == 0
    return out


def test_profile_results_json(tmp_path, capsys, shared, profile_json):
    valid = profile_json.read_bytes()
    extra = {"null": b"null", "list": b"[]", "records-dict": b'{"schema": 1, "records": {}}',
             "schema-99": json.dumps(dict(json.loads(valid), schema=99)).encode()}
    for label, blob in {**corruptions(valid, 13), **extra}.items():
        p = tmp_path / f"results-{label}.json"
        p.write_bytes(blob)
        # --append merges into the existing file: a damaged one must be refused and left as it was
        refuses(capsys, ["profile", shared["onnx"], "--iters", "2", "--warmup", "1", "--out", p, "--append"],
                outputs=[p], name=f"profile json {label}: profile --append")
        refuses(capsys, ["latency-model", "fit", p, "--out", tmp_path / "lm.json"], outputs=[tmp_path / "lm.json"],
                name=f"profile json {label}: latency-model fit")


def test_latency_model_json(tmp_path, capsys, shared):
    valid = json.dumps({"schema": 1, "kind": "edgeprune-latency-model", "formula": "x", "models": [
        {"key": {"device": "d", "backend": "onnxruntime", "batch": 1, "precision": "fp32", "threads": 1},
         "stat": "median_ms", "coefficients": {"a_ms_per_mac": 1e-7, "b_ms_per_layer": 0.01, "c_ms": 0.1},
         "points": []}]}).encode()
    extra = {"null": b"null", "models-dict": b'{"schema": 1, "kind": "edgeprune-latency-model", "models": {}}',
             "models-strings": b'{"schema": 1, "kind": "edgeprune-latency-model", "models": ["a"]}',
             "schema-7": valid.replace(b'"schema": 1', b'"schema": 7')}
    for label, blob in {**corruptions(valid, 17), **extra}.items():
        p = tmp_path / f"lm-{label}.json"
        p.write_bytes(blob)
        refuses(capsys, ["latency-model", "predict", p, shared["onnx"]], name=f"latency model json {label}: predict")


DEEP = b"[" * 200000 + b"]" * 200000        # valid JSON that overflows a recursive parser


@pytest.mark.parametrize("reader", [
    "sigmf meta",
    "study state.json",
    "plan.json",
    "profile results",
    "latency model",
])
def test_json_nested_too_deep(tmp_path, capsys, shared, reader):
    """JSON nested deeper than Python's recursion limit is refused in one line, not a RecursionError."""
    p = tmp_path / "deep.json"
    p.write_bytes(DEEP)
    if reader == "sigmf meta":
        from edgeprune.data.sigmf_io import write_sigmf

        meta, _ = write_sigmf(tmp_path / "rec", np.zeros(256, np.complex64))
        meta.write_bytes(DEEP)
        refuses(capsys, ["data", "info", meta], name="deep json: sigmf meta")
    elif reader == "study state.json":
        from edgeprune.study.stages import StageCache

        (tmp_path / "state.json").write_bytes(DEEP)
        notes = []
        cache = StageCache(tmp_path, notes.append)      # an unreadable state: start afresh, with a note
        ok = cache.state["stages"] == {} and bool(notes)
        record("bad_input", "deep json: study state.json", ok)
        assert ok
    elif reader == "plan.json":
        refuses(capsys, ["prune", "--model", shared["ckpt"], "--plan", p, "--out", tmp_path / "p.pt"],
                outputs=[tmp_path / "p.pt"], name="deep json: plan")
    elif reader == "profile results":
        refuses(capsys, ["latency-model", "fit", p, "--out", tmp_path / "lm.json"], outputs=[tmp_path / "lm.json"],
                name="deep json: profile results")
    else:
        refuses(capsys, ["latency-model", "predict", p, shared["onnx"]], name="deep json: latency model")


def test_damaged_study_state(tmp_path):
    """A damaged <out>/state.json makes the study start afresh (with a note), never crash or reuse garbage."""
    from edgeprune.study.stages import StageCache

    docs = {"list": b"[]", "stages-list": b'{"stages": []}', "stage-number": b'{"stages": {"data": 5}}',
            "binary": bytes(range(256)), "truncated": b'{"stages": {"data": {"key": "ab'}
    for label, blob in docs.items():
        d = tmp_path / label
        d.mkdir()
        (d / "state.json").write_bytes(blob)
        notes = []
        cache = StageCache(d, notes.append)
        ran = cache.run("data", "k1", lambda: {"x": 1})
        ok = bool(notes) and ran == {"x": 1} and cache.ran == ["data"]
        record("bad_input", f"study state.json {label}", ok)
        assert ok, (label, notes, cache.state)


def test_onnx_metadata_not_utf8(tmp_path, capsys, shared):
    """An ONNX file whose edgeprune metadata bytes are not UTF-8 (found by fuzzing) is refused cleanly."""
    blob = shared["onnx"].read_bytes()
    i = blob.find(b"tone0")
    assert i > 0
    p = tmp_path / "m.onnx"
    p.write_bytes(blob[:i] + b"\xbc" + blob[i + 1:])
    frames = tmp_path / "frames.npy"
    np.save(frames, np.zeros((2, 2, shared["length"]), np.float32))
    refuses(capsys, ["predict", p, "--input", frames], name="onnx metadata not utf-8: predict")


def test_target_key_with_newline(tmp_path, capsys, shared):
    """Found by fuzzing: TOML allows quoted keys with newlines; the message must stay one line."""
    from edgeprune.export.targets import builtin_dirs

    d = tmp_path / "targets"
    d.mkdir()
    (d / "x86-cpu.toml").write_bytes((builtin_dirs()[0] / "x86-cpu.toml").read_bytes() + b'\n"evil\\nkey" = 1\n')
    refuses(capsys, ["targets", "--targets-dir", d], name="target toml key with a newline: targets")


def test_manifest_variant_file_not_a_string(tmp_path, capsys, shared):
    """Found by fuzzing: a variant whose 'file' is a JSON object."""
    frames = tmp_path / "frames.npy"
    np.save(frames, np.zeros((2, 2, shared["length"]), np.float32))
    b = tmp_path / "b"
    shutil.copytree(shared["bundle"], b)
    m = json.loads((b / "manifest.json").read_text())
    m["variants"][0]["file"] = {"x": 1}
    (b / "manifest.json").write_text(json.dumps(m))
    refuses(capsys, ["predict", b, "--input", frames], name="manifest variant file is a table: predict")


def test_study_config_dict_with_nulls():
    """run_study(dict) takes Python dicts: a null where a list or number belongs is refused (found by fuzzing)."""
    import tomllib

    from edgeprune.errors import EdgepruneError
    from edgeprune.study.config import normalise
    from edgeprune.study.runner import quickstart_config

    from .tally import api_refuses

    base = tomllib.loads(quickstart_config().read_text())
    for section, key in (("profile", "backends"), ("export", "precisions"), ("prune", "methods"),
                         ("train", "epochs"), ("data", "snrs")):
        doc = {k: dict(v) for k, v in base.items()}
        doc[section][key] = None
        api_refuses(normalise, doc, name=f"study config dict {section}.{key} = null")
    assert normalise(base)["train"]["epochs"] == base["train"]["epochs"]   # the valid dict itself goes through
    with pytest.raises(EdgepruneError):
        normalise(dict(base, data={"synth": "rml2016.10a", "min_snr": "x"}))
