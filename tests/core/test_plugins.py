"""Plugins from outside the package: a pruning method (with and without an options dataclass), an importance
criterion (a function and a Criterion class) and a runtime backend, each written by the test into its own file in
tmp_path, registered by that file alone, and used through the CLI (EDGEPRUNE_PLUGINS) without any change to CLI or
study code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from edgeprune_run import run_edgeprune

REPO = Path(__file__).resolve().parents[2]

METHOD = '''
"""A pruning method of my own: remove the deepest removable units first, to the MACs budget."""
from edgeprune.pruning.modular import prune_in_order, traced_candidates
from edgeprune.pruning.registry import register_method


@register_method("deepest-first", "deepest removable units first, to the same MACs budget")
def deepest_first(ckpt, data=None, *, target_macs=None, seed=0, transition=None, **options):
    order = sorted(traced_candidates(ckpt), key=lambda u: -u.position)
    return prune_in_order(ckpt, order, target_macs, method="deepest-first", seed=seed, what="deepest units")
'''

CRITERION = '''
"""An importance criterion of my own: the sum of |weight| of a unit's parameters (highest kept)."""
from edgeprune.analysis.importance import register_criterion


@register_criterion("weight-l1", measures="sum of |w| over the unit's parameters", higher_kept=True)
def weight_l1(model, units, *, order, x, y, input_shape, batch_size):
    return {k: float(sum(p.detach().abs().sum() for p in m.parameters())) for k, m in units.items()}
'''

METHOD_WITH_OPTIONS = '''
"""A pruning method with declared options: deepest removable units first, sparing the `spare` deepest ones."""
from dataclasses import dataclass

from edgeprune.pruning.catalogue import option
from edgeprune.pruning.macs_target import DEFAULT_TOLERANCE
from edgeprune.pruning.modular import prune_in_order, traced_candidates
from edgeprune.pruning.registry import register_method


@dataclass(frozen=True)
class SpareOptions:
    spare: int = option(0, "the deepest removable units never removed")
    tolerance: float = option(DEFAULT_TOLERANCE, "relative window around --target-macs")


@register_method("deepest-but", "deepest units first, sparing the deepest few", options=SpareOptions)
def deepest_but(ckpt, data=None, *, target_macs=None, seed=0, spare=0, tolerance=DEFAULT_TOLERANCE):
    order = sorted(traced_candidates(ckpt), key=lambda u: -u.position)[spare:]
    return prune_in_order(ckpt, order, target_macs, method="deepest-but", seed=seed, tolerance=tolerance,
                          options={"spare": spare}, what="deepest units")
'''

CRITERION_CLASS = '''
"""An importance criterion as a class: the sum of w^2 over a unit's parameters (highest kept), no frames needed."""
from edgeprune.analysis.importance import Criterion, register_criterion


@register_criterion
class WeightL2(Criterion):
    name = "weight-l2"
    measures = "sum of w^2 over the unit's parameters"
    higher_kept = True
    needs_frames = False

    def values(self, model, units, *, order, x, y, input_shape, batch_size):
        def chain(m):  # a unit is a module or a chain of modules
            return m if isinstance(m, (tuple, list)) else (m,)
        return {k: float(sum((p.detach() ** 2).sum() for mod in chain(m) for p in mod.parameters()))
                for k, m in units.items()}
'''

BACKEND = '''
"""A runtime backend of my own: ONNX Runtime, plain session.run on numpy (no I/O binding), counting its calls."""
import os
import time

from edgeprune.export.runtime.registry import register_backend

NAME = "ort-plain"
CALLS = []


def availability():
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime is not installed"
    return None


def version():
    import onnxruntime
    return onnxruntime.__version__


class PlainSession:
    def __init__(self, path, threads=None, **options):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads or 1)
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        self.extras = {}
        self.x = None

    def input_shape(self):
        return self.input.shape

    def infer(self, x):
        CALLS.append(x.shape[0])
        return self.session.run(None, {self.input.name: x})[0]

    def bind(self, x):
        self.x = x
        return self.session.run(None, {self.input.name: x})[0]

    def timed(self):
        t0 = time.perf_counter_ns()
        self.infer(self.x)
        return time.perf_counter_ns() - t0

    def describe(self):
        return {"providers": ["CPUExecutionProvider"], "io": "run", "timing": "wall",
                "input_shape": list(self.x.shape)}

    def close(self):
        with open(os.environ["PLUGIN_CALLS"], "a") as f:
            f.write(f"{len(CALLS)}\\n")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def open_backend(model, **options):
    return PlainSession(model, **options)


register_backend(NAME, __name__)
'''


def _write(tmp_path, name, text) -> Path:
    p = tmp_path / "plugins" / f"{name}.py"
    p.parent.mkdir(exist_ok=True)
    p.write_text(textwrap.dedent(text))
    return p


def _cli(args, plugins, extra_env=None):
    env = dict(os.environ, EDGEPRUNE_PLUGINS=os.pathsep.join(str(p) for p in plugins), EDGEPRUNE_QUIET="1",
               **(extra_env or {}))
    r = run_edgeprune(*args, "--json", env=env, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_plugin_pruning_method_through_cli(tmp_path, toy_checkpoint):
    """`prune --method deepest-first` runs the plugin: the deepest units go, to the MACs budget."""
    import torch

    from edgeprune.analysis.units import removable_units
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.models import build_model
    from edgeprune.models.macs import count_macs

    plugin = _write(tmp_path, "my_method", METHOD)
    out = tmp_path / "p.pt"
    doc = _cli(["prune", "--method", "deepest-first", "--model", toy_checkpoint, "--target-macs", "0.7",
                "--out", out], [plugin])
    base, pruned = load_checkpoint(toy_checkpoint), load_checkpoint(out)
    lineage = pruned.meta["lineage"][-1]
    assert doc["method"] == lineage["method"] == "deepest-first"
    # an independent MAC count of the written network: the budget is met within 2%
    net = pruned.build()
    ratio = count_macs(net) / count_macs(build_model(base.spec))
    assert abs(ratio - 0.7) <= 0.02 * 0.7
    assert net.eval()(torch.randn(2, 2, 64)).shape == (2, 4)
    # the plugin's rule, not another method's: units went deepest first, starting with the deepest removable one
    removable = [u.layer for u in removable_units(base.spec)]
    removed = [int(n.split(".")[1]) for n in lineage["removed_units"]]
    assert removed == sorted(removed, reverse=True) and removed[0] == max(removable)
    assert sorted(pruned.spec["edits"]["removed"]) == sorted(lineage["removed_units"])


def test_plugin_importance_criterion_through_cli(tmp_path, toy_checkpoint, toy_npz):
    """`analyze --importance weight-l1` keeps, in every block, the units with the largest sum |w|."""
    import torch

    plugin = _write(tmp_path, "my_criterion", CRITERION)
    out = tmp_path / "a"
    _cli(["analyze", "--model", toy_checkpoint, "--data", toy_npz, "--out", out, "--segments", "4",
          "--batches", "1", "--batch-size", "16", "--importance", "weight-l1", "--keep-units", "4"], [plugin])
    plan = json.loads((out / "plan.json").read_text())
    assert plan["importance"]["criterion"] == "weight-l1"
    # ground truth: sum |w| of each unit from the checkpoint's weights, by layer index
    state = torch.load(toy_checkpoint, weights_only=False)["state_dict"]
    l1 = {}
    for k, v in state.items():
        parts = k.split(".")
        if parts[0] == "layers" and v.is_floating_point() and not k.endswith(("running_mean", "running_var")):
            l1[int(parts[1])] = l1.get(int(parts[1]), 0.0) + float(v.abs().sum())
    blocks = [b for b in plan["blocks"] if b["candidates"]]
    assert blocks
    for block in blocks:
        cand, kept = block["candidates"], block["kept"]
        assert set(kept) == set(sorted(cand, key=lambda u: -l1[u])[:len(kept)]), (block, l1)
    assert any(len(b["kept"]) < len(b["candidates"]) for b in blocks)  # a real choice was made
    # the plan's ranking keys are the plugin's values (highest kept -> key = -value), unit by unit
    scores = plan["importance"]["scores"]
    assert scores and all(v == pytest.approx(-l1[int(k)], rel=1e-5) for k, v in scores.items())


def _fails(args, plugins):
    env = dict(os.environ, EDGEPRUNE_PLUGINS=os.pathsep.join(str(p) for p in plugins))
    r = run_edgeprune(*args, env=env, cwd=REPO, timeout=300)
    assert r.returncode != 0 and len(r.stderr.splitlines()) == 1, r.stderr
    return r.stderr


def test_plugin_method_with_options_through_cli(tmp_path, toy_checkpoint):
    """A plugin's options dataclass: `--opt spare=1` reaches the method (the deepest unit stays) and is checked
    (unknown key, wrong type) and listed (`edgeprune methods`), with no CLI or study code changed."""
    from edgeprune.analysis.units import removable_units
    from edgeprune.checkpoint import load_checkpoint

    plugin = _write(tmp_path, "my_method_opts", METHOD_WITH_OPTIONS)
    deepest = sorted((u.layer for u in removable_units(load_checkpoint(toy_checkpoint).spec)), reverse=True)
    removed = {}
    for spare in (0, 1):
        out = tmp_path / f"p{spare}.pt"
        extra = ["--opt", f"spare={spare}"] if spare else []
        _cli(["prune", "--method", "deepest-but", "--model", toy_checkpoint, "--target-macs", "0.8", "--out", out,
              *extra], [plugin])
        lineage = load_checkpoint(out).meta["lineage"][-1]
        assert lineage["options"]["spare"] == spare
        removed[spare] = [int(n.split(".")[1]) for n in lineage["removed_units"]]
    assert removed[0][0] == deepest[0]                                   # the default: the deepest goes first
    assert deepest[0] not in removed[1] and removed[1][0] == deepest[1]  # spare=1: it stays, the next goes first
    base = ["prune", "--method", "deepest-but", "--model", toy_checkpoint, "--target-macs", "0.8",
            "--out", tmp_path / "x.pt"]
    err = _fails(base + ["--opt", "spares=1"], [plugin])
    assert "spares is not an option of method deepest-but; its options: spare, tolerance" in err
    assert "spare of method deepest-but must be int, got str 'one'" in _fails(base + ["--opt", "spare=one"], [plugin])
    doc = _cli(["methods"], [plugin])
    (m,) = [m for m in doc["methods"] if m["name"] == "deepest-but"]
    assert m["options"][0] == {"name": "spare", "type": "int", "default": 0, "choices": None,
                               "help": "the deepest removable units never removed"}


def test_plugin_criterion_class_through_cli(tmp_path, toy_checkpoint, toy_npz):
    """`analyze --importance weight-l2` (a Criterion subclass): every block keeps its units of largest sum w^2."""
    import torch

    plugin = _write(tmp_path, "my_criterion_class", CRITERION_CLASS)
    out = tmp_path / "a"
    _cli(["analyze", "--model", toy_checkpoint, "--data", toy_npz, "--out", out, "--segments", "4", "--no-plots",
          "--batches", "1", "--batch-size", "16", "--importance", "weight-l2", "--keep-units", "4"], [plugin])
    plan = json.loads((out / "plan.json").read_text())
    assert plan["importance"]["criterion"] == "weight-l2"
    assert plan["importance"]["measures"] == "sum of w^2 over the unit's parameters"
    state = torch.load(toy_checkpoint, weights_only=False)["state_dict"]
    l2 = {}
    for k, v in state.items():
        parts = k.split(".")
        if parts[0] == "layers" and v.is_floating_point() and not k.endswith(("running_mean", "running_var")):
            l2[int(parts[1])] = l2.get(int(parts[1]), 0.0) + float((v ** 2).sum())
    blocks = [b for b in plan["blocks"] if b["candidates"]]
    for block in blocks:
        cand, kept = block["candidates"], block["kept"]
        assert set(kept) == set(sorted(cand, key=lambda u: -l2[u])[:len(kept)]), (block, l2)
    assert any(len(b["kept"]) < len(b["candidates"]) for b in blocks)
    assert all(v == pytest.approx(-l2[int(k)], rel=1e-5) for k, v in plan["importance"]["scores"].items())


def test_plugin_backend_through_cli(tmp_path):
    """`profile --backend ort-plain` times the model with the plugin's session: warm-up + timed calls reach it."""
    from export_fixtures import export_onnx

    plugin = _write(tmp_path, "my_backend", BACKEND)
    model = export_onnx("cnn1d", tmp_path / "cnn1d.onnx")
    calls = tmp_path / "calls.txt"
    res = _cli(["profile", model, "--backend", "ort-plain", "--batch-size", "2", "--warmup", "3", "--iters", "7"],
               [plugin], {"PLUGIN_CALLS": str(calls)})
    (rec,) = res["records"]
    assert rec["backend"] == "ort-plain" and rec["batch"] == 2 and rec["iterations"] == 7
    assert rec["min_ms"] > 0 and rec["backend_version"]
    assert calls.read_text().split() == ["10"]  # 3 warm-up + 7 timed runs, all through the plugin
    # an unknown backend is still refused with one line
    r = subprocess.run([sys.executable, "-m", "edgeprune", "profile", str(model), "--backend", "ort-plain"],
                       capture_output=True, text=True, cwd=REPO, timeout=120,
                       env={k: v for k, v in os.environ.items() if k != "EDGEPRUNE_PLUGINS"})
    assert r.returncode != 0 and "unknown backend 'ort-plain'" in r.stderr


def test_bad_plugin_is_one_error_line(tmp_path):
    env = dict(os.environ, EDGEPRUNE_PLUGINS=str(tmp_path / "nope.py"))
    r = subprocess.run([sys.executable, "-m", "edgeprune", "models"], capture_output=True, text=True, env=env,
                       cwd=REPO, timeout=120)
    assert r.returncode != 0 and r.stderr.startswith("edgeprune: error: plugin") and len(r.stderr.splitlines()) == 1


@pytest.mark.parametrize("name", ["ablation", "onnxruntime"])
def test_builtin_names_cannot_be_taken(name):
    from edgeprune.analysis.importance import register_criterion
    from edgeprune.errors import EdgepruneError
    from edgeprune.export.runtime.registry import register_backend

    with pytest.raises(EdgepruneError, match="built-in"):
        if name == "ablation":
            register_criterion(name, lambda *a, **k: {}, measures="x")
        else:
            register_backend(name, "x")
