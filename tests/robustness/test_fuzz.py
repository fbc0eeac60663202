"""Property-based fuzzing (hypothesis).

In ``make test`` the examples are derandomised (tests/conftest.py, profile "ci") so runs repeat
exactly; ``make fuzz`` runs the same properties on fresh random examples, ten times as many.

Readers get random bytes and mutated valid files; parsers get random JSON
values and mutated valid documents. Every call must either succeed or raise
EdgepruneError: any other exception is a defect (a traceback for the user).
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import pytest
from conftest import fuzz_examples
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeprune.errors import EdgepruneError

from .tally import record

FUZZ = settings(max_examples=fuzz_examples(60))
FEW = settings(FUZZ, max_examples=fuzz_examples(25))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=12)


@st.composite
def mutated_bytes(draw, valid: bytes):
    """``valid`` with a few bytes overwritten, bytes inserted, and/or cut short."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(0, 6))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if draw(st.booleans()):
            data[i] = draw(st.integers(0, 255))
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


def bytes_or_mutation(valid: bytes):
    return st.one_of(st.binary(max_size=512), mutated_bytes(valid))


@st.composite
def mutated_doc(draw, doc):
    """``doc`` (JSON-like) with 1-3 values replaced by random JSON values or deleted, at any depth."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        node = doc
        while True:
            if isinstance(node, dict) and node:
                key = draw(st.sampled_from(sorted(node, key=str)))
            elif isinstance(node, list) and node:
                key = draw(st.integers(0, len(node) - 1))
            else:
                break
            child = node[key]
            if isinstance(child, (dict, list)) and child and draw(st.booleans()):
                node = child
                continue
            if draw(st.integers(0, 3)) == 0:
                del node[key]
            else:
                node[key] = draw(json_values)
            break
    return doc


def clean(name: str, fn, *args, **kwargs):
    """Call ``fn``: success or EdgepruneError are clean outcomes; anything else fails the test."""
    try:
        fn(*args, **kwargs)
    except EdgepruneError as exc:
        ok = "\n" not in str(exc).strip()
        record("fuzz", name, ok, f"refused: {exc}")
        assert ok, f"{name}: multi-line message {str(exc)!r}"
        return "refused"
    except Exception as exc:  # noqa: BLE001
        record("fuzz", name, False, f"{type(exc).__name__}: {exc}")
        raise AssertionError(f"{name}: {type(exc).__name__}: {exc}") from exc
    record("fuzz", name, True, "accepted")
    return "accepted"


@pytest.fixture(scope="module")
def scratch():
    d = Path(tempfile.mkdtemp(prefix="edgeprune-fuzz-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _write(scratch: Path, name: str, blob: bytes) -> Path:
    p = scratch / name
    p.write_bytes(blob)
    return p


# ----------------------------------------------------------------------------- readers

def test_fuzz_npz(scratch, shared):
    from edgeprune.data.dataset import SignalDataset, save_npz
    from edgeprune.data.readers import load_dataset

    rng = np.random.default_rng(0)
    small = scratch / "small.npz"
    save_npz(small, SignalDataset(rng.standard_normal((4, 2, 16)).astype(np.float32), np.arange(4) % 2,
                                  np.zeros(4), ["a", "b"], {"source": "fuzz"}))
    valid = small.read_bytes()

    @FUZZ
    @given(bytes_or_mutation(valid))
    def run(blob):
        clean("npz reader", load_dataset, _write(scratch, "f.npz", blob))

    run()


def test_fuzz_rml_pickle(scratch):
    from rml_files import py2_pickle, rml_dict

    from edgeprune.data.readers import load_dataset

    valid = py2_pickle(rml_dict(mods=("QPSK", "BPSK"), snrs=(0,), n=2, length=8))

    @settings(FUZZ, max_examples=fuzz_examples(150))
    @given(bytes_or_mutation(valid))
    def run(blob):
        clean("rml pickle reader", load_dataset, _write(scratch, "f.pkl", blob))

    run()


def test_fuzz_hdf5(scratch):
    from rml_files import write_rml2018_hdf5

    from edgeprune.data.readers import load_dataset

    src = scratch / "valid.hdf5"
    write_rml2018_hdf5(src, classes=24, snrs=(0,), per_key=1, length=8)
    valid = src.read_bytes()

    @FUZZ
    @given(mutated_bytes(valid))
    def run(blob):
        clean("hdf5 reader", load_dataset, _write(scratch, "f.hdf5", blob))

    run()


@pytest.mark.parametrize("writer", ["HDF5Writer", "PackedHDF5Writer", "HomogeneousHDF5Writer"])
def test_fuzz_torchsig(scratch, writer):
    from torchsig_files import WRITERS, frames

    from edgeprune.data.readers import load_dataset

    root = WRITERS[writer](scratch / f"ts-{writer}", *frames(6, 16))
    valid = (root / "data.h5").read_bytes()

    @FEW
    @given(mutated_bytes(valid))
    def run(blob):
        (root / "data.h5").write_bytes(blob)
        clean(f"torchsig reader ({writer})", load_dataset, root)

    run()


def test_fuzz_hisarmod_csv(scratch):
    from rml_files import write_hisar

    from edgeprune.data.hisar import read_hisar

    root = scratch / "hisar"
    write_hisar(root, "train", codes=[0, 10], snrs=[0, 10], length=16)
    files = {k: (root / "Train" / f"train_{k}.csv") for k in ("data", "labels", "snr")}
    valid = {k: p.read_bytes() for k, p in files.items()}

    @FUZZ
    @given(st.sampled_from(sorted(files)), st.data())
    def run(kind, data):
        blob = data.draw(bytes_or_mutation(valid[kind]))
        for k, p in files.items():
            p.write_bytes(blob if k == kind else valid[k])
        clean(f"hisarmod reader ({kind})", read_hisar, root, "train")

    run()


def test_fuzz_sigmf(scratch):
    from edgeprune.data.sigmf_io import iter_sigmf_frames, read_sigmf, write_sigmf

    z = (np.arange(256) * (1 + 0.5j)).astype(np.complex64)
    meta, data = write_sigmf(scratch / "rec", z)
    valid_meta, valid_data = meta.read_bytes(), data.read_bytes()
    doc = json.loads(valid_meta)

    def both():
        read_sigmf(meta, length=16)
        for _ in iter_sigmf_frames(meta, 16, hop=8, batch=4):
            pass

    @FUZZ
    @given(st.one_of(bytes_or_mutation(valid_meta), mutated_doc(doc).map(lambda d: json.dumps(d).encode())),
           st.one_of(st.just(valid_data), mutated_bytes(valid_data)))
    def run(mblob, dblob):
        meta.write_bytes(mblob)
        data.write_bytes(dblob)
        clean("sigmf reader", both)

    run()


def test_fuzz_checkpoint(scratch, shared):
    from edgeprune.checkpoint import load_checkpoint

    valid = shared["ckpt"].read_bytes()

    @FEW
    @given(mutated_bytes(valid))
    def run(blob):
        def load_and_build():
            load_checkpoint(_write(scratch, "f.pt", blob)).build()

        clean("checkpoint reader", load_and_build)

    run()


def test_fuzz_checkpoint_contents(scratch, shared):
    """Well-formed torch files whose spec / meta / weights are mutated."""
    import torch

    from edgeprune.checkpoint import load_checkpoint

    obj = torch.load(shared["ckpt"], weights_only=True)
    spec, meta = json.loads(obj["spec"]), json.loads(obj["meta"])

    @FEW
    @given(mutated_doc(spec), mutated_doc(meta), st.booleans())
    def run(s, m, drop_weight):
        o = dict(obj, spec=json.dumps(s), meta=json.dumps(m))
        if drop_weight:
            sd = dict(obj["state_dict"])
            sd.pop(sorted(sd)[len(sd) // 2])
            o["state_dict"] = sd
        p = scratch / "c.pt"
        torch.save(o, p)

        def load_and_build():
            ck = load_checkpoint(p)
            ck.build()

        clean("checkpoint contents", load_and_build)

    run()


def test_fuzz_model_spec(shared):
    import torch

    from edgeprune.models import build_model
    from edgeprune.models.spec import validate_spec

    spec = json.loads(torch.load(shared["ckpt"], weights_only=True)["spec"])

    @settings(FUZZ, max_examples=fuzz_examples(100))
    @given(mutated_doc(spec))
    def run(s):
        def check_then_build():
            validate_spec(s)
            build_model(s)

        clean("model spec", check_then_build)

    run()


def test_fuzz_bundle_archive(scratch, shared):
    from edgeprune.export.bundle import open_bundle

    valid = shared["archive"].read_bytes()

    @FEW
    @given(mutated_bytes(valid))
    def run(blob):
        def open_close():
            open_bundle(_write(scratch, "b.tar.gz", blob)).close()

        clean("bundle archive", open_close)

    run()


# ----------------------------------------------------------------------------- parsers

def test_fuzz_manifest(scratch, shared):
    """Random and mutated manifests, validated alone and used to open a real bundle folder."""
    from edgeprune.export.runtime.manifest import check_manifest
    from edgeprune.export.predictor import Predictor

    doc = json.loads((shared["bundle"] / "manifest.json").read_text())
    folder = scratch / "bundle"
    shutil.copytree(shared["bundle"], folder)
    frames = np.zeros((2, 2, shared["length"]), np.float32)

    @FUZZ
    @given(st.one_of(json_values, mutated_doc(doc)))
    def run(m):
        clean("manifest validate", check_manifest, m)
        (folder / "manifest.json").write_text(json.dumps(m))

        def use():
            with Predictor(folder) as p:
                p.predict(frames)

        clean("manifest open+predict", use)

    run()


def test_fuzz_target(shared):
    from edgeprune.export.targets import builtin_dirs, parse_target

    doc = tomllib.loads((builtin_dirs()[0] / "x86-cpu.toml").read_text())

    @settings(FUZZ, max_examples=fuzz_examples(100))
    @given(st.one_of(json_values, mutated_doc(doc)))
    def run(d):
        clean("target parser", parse_target, d, "fuzz.toml")

    run()


def test_fuzz_study_config():
    from edgeprune.study.config import normalise
    from edgeprune.study.runner import quickstart_config

    doc = tomllib.loads(quickstart_config().read_text())

    @settings(FUZZ, max_examples=fuzz_examples(100))
    @given(st.one_of(json_values, mutated_doc(doc)))
    def run(d):
        clean("study config parser", normalise, d)

    run()


def test_fuzz_study_config_text(scratch):
    from edgeprune.study.config import load_config
    from edgeprune.study.runner import quickstart_config

    valid = quickstart_config().read_bytes()

    @FUZZ
    @given(bytes_or_mutation(valid))
    def run(blob):
        clean("study config file", load_config, _write(scratch, "c.toml", blob))

    run()


def test_fuzz_profile_results_and_latency_models(scratch):
    from edgeprune.profiling.latency_model import load_models
    from edgeprune.profiling.results_file import load_results

    results = {"schema": 1, "kind": "edgeprune-latency", "machine": {"cpu": "x"}, "skipped": [],
               "records": [{"model": "m", "backend": "onnxruntime", "batch": 1, "threads": 1, "precision": "fp32",
                            "macs": 1000, "layers": 3, "median_ms": 0.5, "mean_ms": 0.6}]}

    @FUZZ
    @given(st.one_of(json_values, mutated_doc(results)))
    def run(d):
        p = _write(scratch, "r.json", json.dumps(d).encode())
        clean("profile results", load_results, p)
        clean("latency models", load_models, p)

    run()


def test_fuzz_plan_with_layer_pruning(scratch, shared):
    """A plan whose values are mutated (model name and spec hash intact) is refused or used correctly."""
    from edgeprune.pruning.plan import analyze
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.data.readers import load_dataset
    from edgeprune.pruning.registry import get_method

    layer_prune = get_method("layer")
    ck = load_checkpoint(shared["ckpt"])
    plan = analyze(ck, load_dataset(shared["data"]), batches=1, batch_size=32, seed=0)
    plan = json.loads(json.dumps(plan))
    fixed = {k: plan[k] for k in ("model", "spec_sha256")}

    @FEW
    @given(mutated_doc(plan), st.sampled_from([None, 3]))
    def run(p, keep_units):
        p = dict(p, **fixed) if isinstance(p, dict) else p
        clean("layer pruning with a mutated plan", layer_prune, ck, plan=p, keep_units=keep_units)

    run()


def test_fuzz_onnx_file(scratch, shared):
    """Mutated ONNX files: ONNX Runtime refuses or runs them; the predictor never leaks another exception."""
    from edgeprune.export.predictor import Predictor

    valid = shared["onnx"].read_bytes()
    frames = np.zeros((2, 2, shared["length"]), np.float32)

    @FEW
    @given(mutated_bytes(valid))
    def run(blob):
        def load_and_predict():
            with Predictor(_write(scratch, "m.onnx", blob)) as p:
                p.predict(frames)

        clean("onnx file", load_and_predict)

    run()
