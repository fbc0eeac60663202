"""The method catalogue: each method's options declared once (edgeprune/pruning/catalogue.py) and what is
generated or checked from it: the implementations' signatures, `prune --opt`, a study's [prune] section, the
docs/method.md's method table, and listing methods without importing any."""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeprune.errors import EdgepruneError
from edgeprune.pruning import catalogue as C

REPO = Path(__file__).resolve().parents[2]
NOT_OPTIONS = {"ckpt", "data", "target_macs", "seed", "options", "criterion", "kwargs"}
CHANNEL = ("channel-l1", "channel-l2", "channel-fpgm", "channel-bn")


def _implementations(name):
    """The function (one per method: the traced-network implementation) that takes ``name``'s options as
    keywords."""
    from edgeprune.pruning import channel_traced, layer, modular

    traced = {"layer": layer.layer_method, "dbp": modular.dbp_method, "random": modular.random_method}
    if name in CHANNEL:
        return (channel_traced.traced_channel_method,)
    return (traced[name],)


@pytest.mark.parametrize("name", ["layer", "dbp", "random", *CHANNEL])
def test_the_implementation_takes_the_declared_options(name):
    """Ground truth: the implementations' own keyword parameters and defaults (inspect.signature)."""
    declared = {f.name: C.option_default(f) for f in dataclasses.fields(C.entry(name).options)}
    for fn in _implementations(name):
        params = {p.name: p.default for p in inspect.signature(fn).parameters.values()
                  if p.name not in NOT_OPTIONS}
        extra = set(params) - set(declared)
        # the channel functions serve all four criteria; only channel-bn declares the slimming options
        assert extra == ({"sparsity", "sparsity_epochs"} if name in CHANNEL[:3] else set()), (fn, extra)
        assert set(declared) <= set(params), (fn.__qualname__, set(declared) - set(params))
        for k, v in params.items():   # a default the function applies itself must be the declared one
            if k in declared and v is not None and v is not inspect.Parameter.empty:
                assert v == declared[k], (fn.__qualname__, k, v, declared[k])


def test_listing_methods_imports_no_method_module():
    code = ("import sys\n"
            "from edgeprune.cli.main import build_parser\n"
            "build_parser()\n"
            "from edgeprune.pruning.registry import methods\n"
            "from edgeprune.pruning.catalogue import markdown_table\n"
            "from edgeprune.cli.cmd_methods import methods_doc\n"
            "assert len(methods()) >= 7 and markdown_table() and methods_doc()\n"
            "print(sorted(m for m in sys.modules if m.startswith(('edgeprune.pruning.', 'torch', 'numpy'))))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert eval(r.stdout) == ["edgeprune.pruning.catalogue", "edgeprune.pruning.registry"]
    # and `edgeprune prune --help` (the methods in its description) runs the same way
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "edgeprune", "prune", "--help"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0 and "channel-bn" in r.stdout
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line}
    assert not imported & {"edgeprune.pruning.layer", "edgeprune.pruning.dbp", "edgeprune.pruning.channel",
                           "edgeprune.pruning.channel_traced", "edgeprune.pruning.modular", "torch"}


def test_docs_method_table_is_the_generated_one():
    text = (REPO / "docs" / "method.md").read_text()
    assert text.count(C.TABLE_BEGIN) == 1 and text.count(C.TABLE_END) == 1
    inside = text.split(C.TABLE_BEGIN, 1)[1].split(C.TABLE_END, 1)[0]
    assert inside.strip() == C.markdown_table().strip(), "regenerate it: edgeprune methods --markdown"
    # one row per declared method, each option with its declared default
    for name, e in C.entries().items():
        row = next(line for line in inside.splitlines() if line.startswith(f"| `{name}` |"))
        for f in dataclasses.fields(e.options):
            assert f"`{f.name}" in row


def test_check_options_messages():
    assert C.check_options("dbp", {"probe_steps": 30, "tolerance": 1}) == {"probe_steps": 30, "tolerance": 1.0}
    with pytest.raises(EdgepruneError, match="steps is not an option of method dbp; its options: tolerance, "
                                             "transition, probe_train, probe_val, probe_steps"):
        C.check_options("dbp", {"steps": 30})
    with pytest.raises(EdgepruneError, match="probe_steps of method dbp must be int, got str 'many'"):
        C.check_options("dbp", {"probe_steps": "many"})
    with pytest.raises(EdgepruneError, match="must be int, got bool"):
        C.check_options("dbp", {"probe_steps": True})
    with pytest.raises(EdgepruneError, match="similarity of method layer must be one of cka-unbiased, cka, cosine"):
        C.check_options("layer", {"similarity": "l2"})
    with pytest.raises(EdgepruneError, match="sparsity is not an option of method channel-l1"):
        C.check_options("channel-l1", {"sparsity": 1e-3})
    with pytest.raises(EdgepruneError, match="the option 'traced' is gone"):   # the spec path was removed
        C.check_options("layer", {"segments": 3, "keep": [1, 2], "traced": True})


def test_prune_opt_checked_and_passed(tmp_path, toy_checkpoint, toy_npz, cli):
    """A bad key or type is one error line (before any work); a good option reaches the method (its lineage)."""
    for args, msg in ((["--opt", "probe_step=3"], "probe_step is not an option of method dbp; its options: "),
                      (["--opt", "probe_steps=few"], "probe_steps of method dbp must be int, got str 'few'"),
                      (["--similarity", "cka"], "--similarity is not an option of method dbp; its options: "),
                      (["--reference"], "--reference is not an option of method dbp")):
        r = cli("prune", "--method", "dbp", "--model", toy_checkpoint, "--data", toy_npz, "--target-macs", "0.7",
                 "--out", tmp_path / "x.pt", *args)
        assert r.returncode != 0 and len(r.stderr.splitlines()) == 1, r.stderr
        assert r.stderr.startswith("edgeprune: error: ") and msg in r.stderr, r.stderr
        assert not (tmp_path / "x.pt").exists()
    out = tmp_path / "r.pt"
    r = cli("prune", "--method", "random", "--model", toy_checkpoint, "--target-macs", "0.7", "--opt",
             "tolerance=0.05", "--opt", "transition=reinit", "--out", out, "--json")
    assert r.returncode == 0, r.stderr
    from edgeprune.checkpoint import load_checkpoint

    lineage = load_checkpoint(out).meta["lineage"][-1]
    assert lineage["options"] == {"tolerance": 0.05, "transition": "reinit"}


def test_study_prune_section_checked_from_the_catalogue():
    from edgeprune.study.config import normalise

    base = {"data": {"synth": "rml2016.10a"}}
    ok = normalise({**base, "prune": {"methods": ["layer", "dbp", "channel-bn+kd"], "dbp": {"probe_steps": 40},
                                      "channel-bn": {"sparsity_epochs": 1, "sparsity": 0}}})
    assert ok["prune"]["dbp"] == {"probe_steps": 40}
    assert C.study_options("channel-bn", ok["prune"]) == {"sparsity_epochs": 1, "sparsity": 0.0}
    assert C.study_options("dbp", ok["prune"]) == {"transition": "keep", "probe_steps": 40}
    assert C.study_options("layer", ok["prune"]) == {"similarity": "cka-unbiased", "importance": "ablation",
                                                     "transition": "keep", "reference": False}
    for prune, msg in (({"methods": ["dbp"], "dbp": {"steps": 3}}, r"\[prune.dbp\] steps is not an option"),
                       ({"methods": ["dbp"], "dbp": {"probe_steps": "x"}}, "probe_steps of method dbp must be int"),
                       ({"methods": ["dbp"], "dbp": 3}, "must be a table"),
                       ({"methods": ["layer"], "dbp": {"probe_steps": 3}}, "'dbp' is not in \\[prune\\] methods"),
                       ({"methods": ["layer"], "transition": "sideways"}, "transition of method layer must be one"),
                       ({"methods": ["layer"], "nope": {}}, "unknown key 'nope' in \\[prune\\]")):
        with pytest.raises(EdgepruneError, match=msg):
            normalise({**base, "prune": prune})


def test_study_prune_stage_runs_with_the_configured_options(tmp_path, toy_checkpoint, toy_npz):
    """The study's prune stage passes each method its options generically; the lineage shows what ran."""
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.study.config import normalise
    from edgeprune.study.runner import method_options, work_prune

    cfg = normalise({"data": {"synth": "rml2016.10a"},
                     "prune": {"methods": ["layer", "dbp"], "transition": "reinit",
                               "dbp": {"probe_steps": 20, "probe_train": 64, "probe_val": 32, "bins": 4}}})
    opts, uses_plan = method_options("dbp", cfg["prune"], 0.7, Path("plan.json"))
    assert not uses_plan and opts == {"target_macs": 0.7, "transition": "reinit", "probe_steps": 20,
                                      "probe_train": 64, "probe_val": 32, "bins": 4}
    work_prune(toy_checkpoint, toy_npz, tmp_path / "d.pt", "dbp", 0, opts)
    lineage = load_checkpoint(tmp_path / "d.pt").meta["lineage"][-1]
    assert lineage["options"]["probe_steps"] == 20 and lineage["options"]["bins"] == 4
    assert lineage["options"]["transition"] == "reinit" and lineage["options"]["probe_train"] == 64
    # the layer method runs with the study's plan, which fixes its analysis options (a reference plan its budget)
    layer, uses_plan = method_options("layer", cfg["prune"], 0.5, Path("a/plan.json"))
    assert uses_plan and layer == {"target_macs": 0.5, "transition": "reinit", "plan": "a/plan.json"}
    ref = normalise({"data": {"synth": "x"}, "prune": {"methods": ["layer"], "reference": True, "keep": [1, 1]}})
    assert method_options("layer", ref["prune"], 0.5, Path("p.json")) == ({"plan": "p.json"}, True)
    assert method_options("channel-l1", cfg["prune"], 0.5, Path("p.json")) == ({"target_macs": 0.5}, False)


def test_methods_command_lists_declared_options(cli):
    r = cli("methods", "--json")
    assert r.returncode == 0, r.stderr
    doc = {m["name"]: m for m in json.loads(r.stdout)["methods"]}
    assert set(doc) >= {"layer", "dbp", "random", *CHANNEL}
    bn = {o["name"]: o for o in doc["channel-bn"]["options"]}
    assert bn["sparsity_epochs"]["default"] == 3 and bn["sparsity_epochs"]["type"] == "int"
    assert {o["name"] for o in doc["channel-l1"]["options"]} == {"tolerance"}
    r = cli("methods", "--markdown")
    assert r.returncode == 0 and r.stdout == C.markdown_table()
