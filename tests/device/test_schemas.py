"""The declared JSON documents (issue 18): manifests, plans, profile results, latency models, study state.

Each declaration must (1) name every field its readers use — shown by stripping a valid document down to
the declared fields and running the real readers on it, which would raise KeyError/TypeError otherwise —
and (2) refuse, with one error line naming the field, a document missing any required field or holding a
value of the wrong type. The fuzz failure that opened issue 18 (a manifest without
``preprocessing.normalization``) is the first regression case.
"""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest

from edgeprune.errors import EdgepruneError
from edgeprune.export.runtime.schema import Field, declared_paths, prune_undeclared, required_paths, validate
from export_fixtures import shared_bundle


# ----------------------------------------------------------------------------- helpers

def _parts(path: str):
    out = []
    for name in path.split("."):
        while "[" in name:
            head, rest = name.split("[", 1)
            if head:
                out.append(head)
            idx, name = rest.split("]", 1)
            out.append(int(idx))
        if name:
            out.append(name)
    return out


def _get(doc, path):
    for p in _parts(path):
        doc = doc[p]
    return doc


def _delete(doc, path):
    doc = copy.deepcopy(doc)
    parts = _parts(path)
    node = doc
    for p in parts[:-1]:
        node = node[p]
    del node[parts[-1]]
    return doc


def _replace(doc, path, value):
    doc = copy.deepcopy(doc)
    parts = _parts(path)
    node = doc
    for p in parts[:-1]:
        node = node[p]
    node[parts[-1]] = value
    return doc


def _field_at(schema: Field, path: str) -> Field:
    f = schema
    for p in _parts(path):
        f = f.items if isinstance(p, int) else f.fields[p]
    return f


def _wrong_value(field: Field):
    """A JSON value of a type the field does not accept."""
    return {"object": "text", "list": {"a": 1}, "str": [1], "int": "7", "number": "7.5", "bool": "yes"}[field.kind]


def _present(doc, paths):
    out = []
    for p in paths:
        try:
            _get(doc, p)
        except (KeyError, IndexError, TypeError):
            continue
        out.append(p)
    return out


def _one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg.strip(), msg
    return msg


# ----------------------------------------------------------------------------- the validator itself

def test_validator_names_the_path_and_refuses_non_finite_numbers():
    from edgeprune.export.runtime.schema import integer, number, obj, opt, seq, text

    schema = obj(a=seq(obj(b=integer(lo=1))), c=opt(number()), d=text(choices=("x", "y")))
    validate({"a": [{"b": 2}], "d": "x"}, schema, "doc")
    cases = {
        "'a[1].b' is missing": {"a": [{"b": 2}, {}], "d": "x"},
        "'a[0].b' must be at least 1": {"a": [{"b": 0}], "d": "x"},
        "'a[0].b' must be an integer, not a boolean": {"a": [{"b": True}], "d": "x"},
        "'c' must be a finite number": {"a": [], "c": float("nan"), "d": "x"},
        "'d' must be one of 'x', 'y'": {"a": [], "d": "z"},
        "the document must be an object, not a list": [],
    }
    for want, doc in cases.items():
        with pytest.raises(EdgepruneError) as err:
            validate(doc, schema, "doc")
        assert want in _one_line(err.value), (want, str(err.value))


# ----------------------------------------------------------------------------- bundle manifests

@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return shared_bundle(tmp_path_factory)


@pytest.fixture(scope="module")
def manifest(bundle):
    return json.loads((bundle[0] / "manifest.json").read_text())


@pytest.fixture(scope="module")
def frames(bundle):
    from edgeprune.data.dataset import load_npz

    return load_npz(bundle[2]).x[:6]


def _bundle_with(tmp_path, bundle, manifest) -> object:
    folder = tmp_path / "b"
    shutil.copytree(bundle[0], folder)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_issue18_manifest_without_normalization_is_one_error_line(tmp_path, bundle, manifest, frames, capsys):
    """The falsifying example of issue 18: Predictor raised a raw KeyError: 'normalization'."""
    from edgeprune.cli.main import main
    from edgeprune.export.runtime.manifest import check_manifest
    from edgeprune.export.predictor import Predictor

    bad = _delete(manifest, "preprocessing.normalization")
    with pytest.raises(EdgepruneError, match=r"'preprocessing\.normalization' is missing"):
        check_manifest(bad)
    folder = _bundle_with(tmp_path, bundle, bad)
    with pytest.raises(EdgepruneError, match="preprocessing.normalization"):
        Predictor(folder)
    np.save(tmp_path / "f.npy", frames)
    capsys.readouterr()
    rc = main(["predict", str(folder), "--input", str(tmp_path / "f.npy")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and err[0].startswith("edgeprune: error:") and "normalization" in err[0]


def test_manifest_declaration_covers_what_the_readers_use(tmp_path, bundle, manifest, frames):
    """A manifest stripped to its declared fields still opens, predicts the same and profiles."""
    from edgeprune.export.runtime.manifest import MANIFEST_SCHEMA
    from edgeprune.export.predictor import Predictor
    from edgeprune.profiling.harness import profile

    lean = prune_undeclared(manifest, MANIFEST_SCHEMA)
    assert set(lean) < set(manifest)  # something was really stripped (source, tools, target, ...)
    with Predictor(bundle[0]) as full:
        want = full.predict(frames)
    folder = _bundle_with(tmp_path, bundle, lean)
    with Predictor(folder) as p:
        got = p.predict(frames)
    assert got["names"] == want["names"]
    np.testing.assert_allclose(got["confidence"], want["confidence"], rtol=1e-5)
    res = profile([folder], iters=5, warmup_iters=1, min_iters=1, show_progress=False)
    assert res["records"] and res["records"][0]["median_ms"] > 0


def _manifest_cases():
    from edgeprune.export.runtime.manifest import MANIFEST_SCHEMA

    return MANIFEST_SCHEMA, required_paths(MANIFEST_SCHEMA), declared_paths(MANIFEST_SCHEMA)


def test_every_required_manifest_field_missing_or_mistyped_is_refused(tmp_path, bundle, manifest, frames):
    """For each required path: validation and the Predictor refuse it with one line naming the path."""
    from edgeprune.export.runtime.manifest import check_manifest
    from edgeprune.export.predictor import Predictor

    schema, required, declared = _manifest_cases()
    required = _present(manifest, required)
    assert {"preprocessing.normalization", "input.length", "classes", "files", "variants[0].precision"} <= set(required)
    for path in required:
        with pytest.raises(EdgepruneError) as err:
            check_manifest(_delete(manifest, path))
        assert repr(path)[1:-1] in _one_line(err.value) or "kind" in path or "schema_version" in path, str(err.value)
    for path in _present(manifest, declared):
        field = _field_at(schema, path)
        if field.kind == "any":
            continue
        with pytest.raises(EdgepruneError) as err:
            check_manifest(_replace(manifest, path, _wrong_value(field)))
        _one_line(err.value)
    # the Predictor, end to end, on a sample of them (each opens a real bundle folder)
    for path in ("preprocessing", "input.length", "classes", "variants[0].file", "files"):
        folder = _bundle_with(tmp_path / path.replace("[", "_").replace("]", ""), bundle, _delete(manifest, path))
        with pytest.raises(EdgepruneError):
            Predictor(folder).predict(frames)


# ----------------------------------------------------------------------------- plans

@pytest.fixture(scope="module")
def plan_and_ckpt(tmp_path_factory):
    """A plan of a zoo model (made on its traced units, as every plan)."""
    from edgeprune.pruning.plan import analyze
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.data.readers import load_dataset
    from export_fixtures import shared_trained

    ckpt_path, data = shared_trained(tmp_path_factory)
    ck = load_checkpoint(ckpt_path)
    plan = analyze(ck, load_dataset(data), batches=1, batch_size=32, seed=0)
    return json.loads(json.dumps(plan)), ck


@pytest.mark.numerics
def test_plan_declaration_covers_what_pruning_and_plots_use(tmp_path, plan_and_ckpt):
    from edgeprune.pruning.plan_file import PLAN_SCHEMA, load_plan, plan_summary
    from edgeprune.analysis.plots import plot_importance, plot_similarity
    from edgeprune.atomic import write_json
    from edgeprune.pruning.registry import get_method

    layer_prune = get_method("layer")
    plan, ck = plan_and_ckpt
    lean = prune_undeclared(plan, PLAN_SCHEMA)
    assert set(lean) < set(plan)
    write_json(tmp_path / "lean.json", lean)
    lean = load_plan(tmp_path / "lean.json")
    plan_summary(lean)
    plot_similarity(lean, tmp_path / "s.png")
    plot_importance(lean, tmp_path / "i.png")
    # the default budget (one unit per block): a --keep-units count would have to match the number of blocks,
    # which the trained fixture's float rounding decides (4 blocks on an AVX2 CPU, 3 under the plain kernels)
    full = layer_prune(ck, plan=plan)
    got = layer_prune(ck, plan=lean)
    assert got.lineage["kept_units"] == full.lineage["kept_units"]


@pytest.mark.numerics
def test_every_required_plan_field_missing_or_mistyped_is_refused(tmp_path, plan_and_ckpt):
    from edgeprune.pruning.plan_file import PLAN_SCHEMA, load_plan
    from edgeprune.atomic import write_json

    plan, _ = plan_and_ckpt
    required = _present(plan, required_paths(PLAN_SCHEMA))
    assert {"importance.scores", "segments.bounds", "units[0].removable", "kept_units", "expected.macs_after"} \
        <= set(required)
    for path in required:
        write_json(tmp_path / "p.json", _delete(plan, path))
        with pytest.raises(EdgepruneError) as err:
            load_plan(tmp_path / "p.json")
        assert "format" in path or path in _one_line(err.value), str(err.value)
    for path in _present(plan, declared_paths(PLAN_SCHEMA)):
        field = _field_at(PLAN_SCHEMA, path)
        if field.kind == "any":
            continue
        write_json(tmp_path / "p.json", _replace(plan, path, _wrong_value(field)))
        with pytest.raises(EdgepruneError) as err:
            load_plan(tmp_path / "p.json")
        _one_line(err.value)


@pytest.mark.numerics
def test_plan_cross_references_are_checked(tmp_path, plan_and_ckpt):
    from edgeprune.pruning.plan_file import validate_plan

    plan, _ = plan_and_ckpt
    n = len(plan["units"])
    for bad, why in ((_replace(plan, "segments.bounds", [[0, n - 1]]), "end at"),
                     (_replace(plan, "segments.bounds", [[1, n]]), "cover"),
                     (_replace(plan, "kept_units", [10 ** 5]), "not units"),
                     (_replace(plan, "kept_units", "123"), "must be a list")):
        with pytest.raises(EdgepruneError, match=why):
            validate_plan(bad)


# ----------------------------------------------------------------------------- profile results and latency models

def _results():
    recs = []
    for i, (macs, layers) in enumerate(((1e6, 10), (2e6, 14), (3e6, 20), (4e6, 26))):
        ms = 0.01 + macs * 2e-8 + layers * 1e-3
        recs.append({"model": f"m{i}", "path": f"m{i}.onnx", "sha256": f"{i:064x}", "kind": "onnx",
                     "backend": "onnxruntime", "backend_version": "1", "providers": ["CPUExecutionProvider"],
                     "device": "cpu", "precision": "fp32", "batch": 1, "threads": 1, "iterations": 50,
                     "median_ms": ms, "mean_ms": ms, "p90_ms": ms, "p99_ms": ms, "min_ms": ms, "max_ms": ms,
                     "std_ms": 0.0, "throughput_fps": 1000 / ms, "macs": macs, "params": 10, "layers": layers,
                     "machine": {"cpu": "x"}, "io": "iobinding", "created": "now"})
    return {"schema": 1, "kind": "edgeprune-latency-results", "machine": {"cpu": "x"}, "records": recs,
            "skipped": []}


def test_results_and_latency_model_declarations_cover_their_readers(tmp_path):
    from edgeprune.atomic import write_json
    from edgeprune.profiling.latency_model import FILE_SCHEMA, fit_groups, load_models, save_models
    from edgeprune.profiling.results_file import RESULTS_SCHEMA, load_results

    res = _results()
    lean = prune_undeclared(res, RESULTS_SCHEMA)
    assert set(lean["records"][0]) < set(res["records"][0])
    write_json(tmp_path / "r.json", lean)
    recs = load_results(tmp_path / "r.json")["records"]
    models, _ = fit_groups(recs, {}, "median_ms", 3)
    assert models and abs(models[0].predict(5e6, 32) - (0.01 + 5e6 * 2e-8 + 32e-3)) < 1e-6  # exact plane
    save_models(tmp_path / "lm.json", models)
    doc = json.loads((tmp_path / "lm.json").read_text())
    write_json(tmp_path / "lm-lean.json", prune_undeclared(doc, FILE_SCHEMA))
    (m,) = load_models(tmp_path / "lm-lean.json")
    m.describe()
    assert abs(m.predict(5e6, 32) - models[0].predict(5e6, 32)) < 1e-12


def test_results_and_latency_models_missing_or_mistyped_fields_are_refused(tmp_path):
    from edgeprune.atomic import write_json
    from edgeprune.profiling.latency_model import FILE_SCHEMA, fit_groups, load_models, save_models
    from edgeprune.profiling.results_file import RESULTS_SCHEMA, load_results

    res = _results()
    for path in _present(res, required_paths(RESULTS_SCHEMA)):
        write_json(tmp_path / "r.json", _delete(res, path))
        with pytest.raises(EdgepruneError) as err:
            load_results(tmp_path / "r.json")
        assert path in _one_line(err.value) or path == "records", str(err.value)
    write_json(tmp_path / "r.json", _replace(res, "records[2].median_ms", "fast"))
    with pytest.raises(EdgepruneError, match=r"'records\[2\]\.median_ms' must be a number"):
        load_results(tmp_path / "r.json")
    models, _ = fit_groups(res["records"], {}, "median_ms", 3)
    save_models(tmp_path / "lm.json", models)
    doc = json.loads((tmp_path / "lm.json").read_text())
    for path in _present(doc, required_paths(FILE_SCHEMA)):
        write_json(tmp_path / "bad.json", _delete(doc, path))
        with pytest.raises(EdgepruneError) as err:
            load_models(tmp_path / "bad.json")
        _one_line(err.value)
    write_json(tmp_path / "bad.json", _replace(doc, "models[0].quality.r2", "high"))
    with pytest.raises(EdgepruneError, match=r"quality\.r2' must be a number"):
        load_models(tmp_path / "bad.json")


# ----------------------------------------------------------------------------- study state

def test_study_state_with_an_edited_or_mistyped_stage_runs_it_again(tmp_path):
    from edgeprune.study.stages import StageCache

    calls = []

    def stage():
        calls.append(1)
        return {"acc": 0.5}

    cache = StageCache(tmp_path, lambda s: None)
    assert cache.run("s", "k1", stage) == {"acc": 0.5}
    assert StageCache(tmp_path, lambda s: None).run("s", "k1", stage) == {"acc": 0.5} and len(calls) == 1
    state = json.loads((tmp_path / "state.json").read_text())
    # a result edited by hand no longer matches its digest: the stage runs again and its true result returns
    edited = _replace(state, "stages.s.result", {"acc": "0.99"})
    (tmp_path / "state.json").write_text(json.dumps(edited))
    assert StageCache(tmp_path, lambda s: None).run("s", "k1", stage) == {"acc": 0.5} and len(calls) == 2
    # a stage record missing a field, or of the wrong type: the study starts afresh, saying which field
    for bad in (_delete(state, "stages.s.outputs"), _replace(state, "stages.s.key", 5)):
        (tmp_path / "state.json").write_text(json.dumps(bad))
        notes = []
        assert StageCache(tmp_path, notes.append).run("s", "k1", stage) == {"acc": 0.5}
        assert "stages.s." in notes[0] and "afresh" in notes[0] and notes[1] == "[run]   s"
