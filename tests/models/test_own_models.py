"""The user's own networks (tests/user_models.py, written the way AMR repositories write them) through
import, unit discovery, every pruning method, MAC counting (PyTorch and ONNX) and checkpoint reload."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
from edgeprune_run import run_edgeprune

TESTS = Path(__file__).resolve().parents[1]   # tests/: the shared fixture modules (user_models.py)
USER = TESTS / "user_models.py"
sys.path.insert(0, str(TESTS))
import user_models as um  # noqa: E402

from edgeprune.models.trace import discover_module_units  # noqa: E402
from edgeprune.errors import EdgepruneError  # noqa: E402
from edgeprune.models.macs import count_macs  # noqa: E402

# the outcomes below come from trained or analysed networks: .ci/run runs them again on ATen's plain kernels
pytestmark = pytest.mark.numerics


def _cli(*args, env=None):
    import os

    e = dict(os.environ)
    e.update(env or {})
    return run_edgeprune(*args, env=e)


@pytest.fixture
def code(tmp_path):
    """A private copy of the user's model file (so tests may change it)."""
    p = tmp_path / "nets.py"
    shutil.copy(USER, p)
    return p


@pytest.fixture(autouse=True)
def _forget():
    from edgeprune.models.usercode import forget_allowed

    forget_allowed()
    yield
    forget_allowed()


def _import(code, toy_npz, tmp_path, name, kwargs=None, out="m.pt"):
    from edgeprune.importing import import_model

    return import_model(f"{code}:{name}", toy_npz, tmp_path / out, kwargs=kwargs)


# ---------------------------------------------------------------- unit discovery (hand lists)


def test_units_of_three_user_models_match_hand_lists():
    res = discover_module_units(um.ResNet1d(), (2, 32))
    assert [u.name for u in res.removable] == ["layers.0", "layers.1", "layers.2", "layers.4", "layers.5"]
    roles = {u.name: u.role for u in res.units}
    assert roles["stem+bn"] == "stem" and roles["layers.3"] == "transition" and roles["fc"] == "classifier"
    assert res.not_traced == []

    res = discover_module_units(um.vgg_like(length=32), (2, 32))
    # Conv-BN-ReLU groups are one unit each (never conv and BN apart); the first group is the stem
    assert [u.name for u in res.removable] == ["3+4+5", "6+7+8", "13+14+15"]
    assert [u.role for u in res.units if u.name in ("0+1+2", "10+11+12", "20")] == ["stem", "transition", "classifier"]

    res = discover_module_units(um.CLDNNLike(), (2, 32))
    assert [u.name for u in res.removable] == ["conv2+drop", "lstm[0]", "lstm[1]"]
    assert {u.name: u.role for u in res.units}["fc"] == "classifier"


def test_untraced_weights_are_named():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = um.vgg_like(length=32)
            self.unused = torch.nn.Linear(3, 3)

        def forward(self, x):
            return self.body(x)

    res = discover_module_units(Net(), (2, 32))
    assert [n["module"] for n in res.not_traced] == ["unused"]


# ---------------------------------------------------------------- MACs: hand counts, ONNX counter


def test_lstm_macs_hand_count_and_onnx_counter(tmp_path):
    from edgeprune.models.amr import build_amr
    from edgeprune.export.onnx_export import torch_to_onnx
    from edgeprune.profiling.onnx_macs import count_onnx_macs

    model = build_amr("lstm2", num_classes=11, length=128)
    hand = 128 * (4 * 128 * (2 + 128) + 4 * 128 * (128 + 128)) + 128 * 11
    got = count_macs(model, (2, 128))
    assert abs(got - hand) <= 0.01 * hand
    path = tmp_path / "lstm2.onnx"
    torch_to_onnx(model.eval(), 128, path)
    onnx_macs = count_onnx_macs(path)["macs"]
    assert abs(onnx_macs - hand) <= 0.01 * hand


def test_cnn_lstm_macs_agree_with_onnx(tmp_path):
    from edgeprune.export.onnx_export import torch_to_onnx
    from edgeprune.profiling.onnx_macs import count_onnx_macs

    model = um.CLDNNLike(num_classes=4, hidden=16).eval()
    L = 32
    hand = (L * 16 * 2 * 5) + (L * 16 * 16 * 5) + 2 * L * 4 * 16 * (16 + 16) + 16 * 4
    assert count_macs(model, (2, L)) == hand
    path = tmp_path / "c.onnx"
    torch_to_onnx(model, L, path)
    assert count_onnx_macs(path)["macs"] == hand


def test_attention_macs_hand_count(tmp_path):
    class Att(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.att = torch.nn.MultiheadAttention(8, 2, batch_first=True)
            self.w = torch.nn.Parameter(torch.ones(8, 3))

        def forward(self, x):
            x = torch.cat([x] * 4, 1).transpose(1, 2)           # (N, L, 8)
            y = self.att(x, x, x)[0]
            return torch.matmul(y, self.w).mean(1)

    L = 10
    hand = (3 * L * 8 * 8) + 2 * L * L * 8 + L * 8 * 8 + L * 8 * 3
    assert count_macs(Att(), (2, L)) == hand
    from edgeprune.export.onnx_export import torch_to_onnx
    from edgeprune.profiling.onnx_macs import count_onnx_macs

    path = tmp_path / "att.onnx"
    torch_to_onnx(Att().eval(), L, path)
    assert count_onnx_macs(path)["macs"] == hand


# ---------------------------------------------------------------- import, permission, sha256


def test_import_records_code_and_needs_permission(code, toy_npz, tmp_path):
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.models.usercode import allow, forget_allowed

    _import(code, toy_npz, tmp_path, "ResNet1d")
    forget_allowed()
    ck = load_checkpoint(tmp_path / "m.pt")            # loading alone imports nothing
    assert ck.spec["source"]["file"] == str(code.resolve())
    with pytest.raises(EdgepruneError, match="--code"):
        ck.build()
    # the same file moved elsewhere (same sha256) is accepted when that copy is allowed
    moved = tmp_path / "elsewhere" / "nets_copy.py"
    moved.parent.mkdir()
    shutil.copy(code, moved)
    allow(moved)
    assert ck.build()(torch.zeros(3, 2, 64)).shape == (3, 4)
    forget_allowed()
    allow(code)
    model = ck.build()
    assert model(torch.zeros(3, 2, 64)).shape == (3, 4)
    # a changed file is refused, naming the sha256 mismatch
    code.write_text(code.read_text() + "\n# edited\n")
    with pytest.raises(EdgepruneError, match="sha256 mismatch"):
        load_checkpoint(tmp_path / "m.pt").build()


def test_bad_input_is_one_error_each(code, toy_npz, tmp_path):
    from edgeprune.importing import import_model

    cases = [
        (f"{code}:Nope", None, "no object named 'Nope'"),
        (f"{tmp_path}/missing.py:Net", None, "does not exist"),
        (f"{code}:NotAModel", None, "not an nn.Module"),
        (f"{code}:not_a_factory", None, "not an nn.Module"),
        (f"{code}:vgg_like", "{length: 64", "--kwargs is not valid JSON"),
        (f"{code}:vgg_like", None, "does not run on I/Q frames of 64 samples in any layout"),     # built for L=32 by default
    ]
    for ref, kwargs, msg in cases:
        with pytest.raises(EdgepruneError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            import_model(ref, toy_npz, tmp_path / "x.pt", kwargs=kwargs)
    # weights that do not fit name the first mismatched key
    torch.save(um.ResNet1d(width=4).state_dict(), tmp_path / "w.pth")
    with pytest.raises(EdgepruneError, match="first mismatched key 'stem.weight'"):
        import_model(f"{code}:ResNet1d", toy_npz, tmp_path / "x.pt", weights=tmp_path / "w.pth")


def test_cli_import_and_code_permission(code, toy_npz, tmp_path):
    r = _cli("import", f"{code}:NotAModel", "--data", toy_npz, "--out", tmp_path / "x.pt")
    assert r.returncode != 0 and r.stderr.startswith("edgeprune: error:") and r.stderr.strip().count("\n") == 0
    assert _cli("import", f"{code}:ResNet1d", "--data", toy_npz, "--out", tmp_path / "m.pt").returncode == 0
    # a checkpoint of user code without --code says what to add; with it (or the variable), it runs
    r = _cli("units", tmp_path / "m.pt")
    assert r.returncode != 0 and f"--code {code.resolve()}" in r.stderr
    r = _cli("units", tmp_path / "m.pt", "--json", env={"EDGEPRUNE_CODE": str(code)})
    assert r.returncode == 0 and '"layers.0"' in r.stdout


def test_trained_weights_survive_import(code, toy_npz, tmp_path):
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.importing import import_model

    torch.manual_seed(3)
    net = um.CLDNNLike()
    torch.save(net.state_dict(), tmp_path / "w.pth")
    import_model(f"{code}:CLDNNLike", toy_npz, tmp_path / "m.pt", weights=tmp_path / "w.pth")
    x = torch.randn(5, 2, 64)
    with torch.no_grad():
        assert torch.allclose(load_checkpoint(tmp_path / "m.pt").build()(x), net.eval()(x), atol=1e-6)


# ---------------------------------------------------------------- pruning and reassembly


def test_identity_replacement_keeps_shape_and_removes_hand_counted_macs(code, toy_npz, tmp_path):
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.pruning.modular import remove

    _import(code, toy_npz, tmp_path, "ResNet1d")
    ck = load_checkpoint(tmp_path / "m.pt")
    model = ck.build()
    res = discover_module_units(model, (2, 64))
    drop = [u for u in res.units if u.name in ("layers.1", "layers.4")]
    recipe, state, net, rep = remove(ck, model, drop)
    block1 = 2 * 64 * 8 * 8 * 3        # two k=3 convs, 8 -> 8 channels, 64 positions
    block2 = 2 * 32 * 16 * 16 * 3
    assert rep["macs_after"] == count_macs(model, (2, 64)) - block1 - block2
    assert net(torch.zeros(2, 2, 64)).shape == (2, 4)
    assert recipe["edits"]["removed"] == ["layers.1", "layers.4"]


def test_removing_a_shape_changing_group_reinitialises_the_next_layer(code, toy_npz, tmp_path):
    from edgeprune.checkpoint import load_checkpoint, save_checkpoint
    from edgeprune.models.modular import build_recipe
    from edgeprune.pruning.modular import remove

    _import(code, toy_npz, tmp_path, "vgg_like", kwargs={"length": 64})
    ck = load_checkpoint(tmp_path / "m.pt")
    model = ck.build()
    res = discover_module_units(model, (2, 64))
    trans = next(u for u in res.units if u.name == "10+11+12")       # 8 -> 16 channels
    recipe, state, net, rep = remove(ck, model, [trans])
    assert rep["reinit"] == ["13"]   # the next conv (16 -> 16) now receives 8 channels; its output width is unchanged
    assert recipe["edits"]["attrs"]["13"] == {"in_channels": 8}
    save_checkpoint(tmp_path / "p.pt", recipe, state, dict(ck.meta))
    again = build_recipe(load_checkpoint(tmp_path / "p.pt").spec, state)
    x = torch.randn(3, 2, 64)
    with torch.no_grad():
        assert torch.allclose(again(x), net.eval()(x), atol=1e-6)


def test_lstm_layer_removal(code, toy_npz, tmp_path):
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.pruning.modular import remove

    _import(code, toy_npz, tmp_path, "CLDNNLike")
    ck = load_checkpoint(tmp_path / "m.pt")
    model = ck.build()
    res = discover_module_units(model, (2, 64))
    u = next(u for u in res.units if u.name == "lstm[1]")
    recipe, state, net, rep = remove(ck, model, [u])
    assert recipe["edits"]["rnn_layers"] == {"lstm": [0]}
    assert net.lstm.num_layers == 1
    assert rep["macs_after"] == count_macs(model, (2, 64)) - 64 * 4 * 16 * (16 + 16)
    # the kept layer keeps its trained weights
    assert torch.equal(net.lstm.weight_hh_l0, model.lstm.weight_hh_l0)


@pytest.mark.parametrize("method", ["layer", "random", "dbp", "channel-l1"])
def test_every_method_hits_the_target_and_reloads(code, toy_npz, tmp_path, method):
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.models.usercode import allow
    from edgeprune.pruning.prune_file import prune_checkpoint

    allow(code)
    if method.startswith("channel"):
        _import(code, toy_npz, tmp_path, "vgg_like", kwargs={"length": 64})
        target, opts = 0.5, {}
    else:
        _import(code, toy_npz, tmp_path, "ResNet1d")
        target = 0.5536             # two stage-1 blocks and one stage-2 block of the 1-D ResNet
        opts = {"probe_steps": 30} if method == "dbp" else {}
    doc = prune_checkpoint(tmp_path / "m.pt", tmp_path / "p.pt", method=method, data=toy_npz, target_macs=target,
                           **opts)
    ck = load_checkpoint(tmp_path / "p.pt")
    model = ck.build()
    macs = count_macs(model, (2, 64))
    assert abs(macs / count_macs(load_checkpoint(tmp_path / "m.pt").build(), (2, 64)) - target) <= 0.02 * target
    assert macs == ck.meta["macs"] == doc["after"]["macs"]
    assert model(torch.zeros(2, 2, 64)).shape == (2, 4)
    assert ck.meta["lineage"][-1]["method"] == method


def test_no_removable_unit_is_one_error(code, toy_npz, tmp_path):
    from edgeprune.models.usercode import allow
    from edgeprune.pruning.prune_file import prune_checkpoint

    code.write_text(code.read_text() + "\n\ndef tiny(num_classes=4, length=64):\n"
                    "    return nn.Sequential(nn.Conv1d(2, 4, 3), nn.Flatten(), nn.Linear(4 * (length - 2), num_classes))\n")
    _import(code, toy_npz, tmp_path, "tiny")
    allow(code)
    with pytest.raises(EdgepruneError, match="no removable unit"):
        prune_checkpoint(tmp_path / "m.pt", tmp_path / "p.pt", method="random", target_macs=0.5)


# ---------------------------------------------------------------- AMR-family zoo


def test_amr_zoo_params_equal_reference_layer_counts():
    from edgeprune.models.amr import REFERENCE_PARAMS, build_amr
    from edgeprune.models.macs import count_params

    for name, params in REFERENCE_PARAMS.items():
        assert count_params(build_amr(name, num_classes=11, length=128)) == params, name


def test_mcldnn_branches_keep_their_structure():
    from edgeprune.models.amr import build_amr

    res = discover_module_units(build_amr("mcldnn", 11, 128), (2, 128))
    names = [u.name for u in res.removable]
    # the I/Q merge conv and the second LSTM; never a branch's first conv, never the dense head
    assert names == ["conv2+act2", "lstm2"]
    roles = {u.name: u.role for u in res.units}
    assert roles["conv_i+act_i"] == roles["conv_q+act_q"] == "transition" and roles["conv_iq+act_iq"] == "stem"
    assert roles["fc1+act_fc1+drop1"] == "head" and roles["out"] == "classifier"


def test_tracing_the_zoo_finds_the_spec_units():
    """The zoo is not special: tracing its built networks finds the units its specs declare (shape-preserving)."""
    from edgeprune.analysis.units import discover_units
    from edgeprune.models import build_model, make_spec

    for name in ("resnet20-1d", "vgg16-1d", "resnet20"):
        spec = make_spec(name, 128, 11)
        declared = [f"layers.{u.layer}" for u in discover_units(spec) if u.removable and not u.transition]
        traced = [u.name for u in discover_module_units(build_model(spec), (2, 128)).removable]
        assert traced == declared, name
    # CNN1D's residual stacks pool (the spec's units are all shape-changing transitions): the trace looks into
    # each stack and finds its residual units and its 1x1 projection (not the first one: the stem)
    traced = [u.name for u in discover_module_units(build_model(make_spec("cnn1d", 128, 11)), (2, 128)).removable]
    hand = [n for i in range(6) for n in ([f"layers.{i}.proj+layers.{i}.bn"] if i else [])
            + [f"layers.{i}.unit1", f"layers.{i}.unit2"]]
    assert traced == hand


def test_python_api_takes_a_live_module(toy_npz, tmp_path):
    """prune_checkpoint, finetune and export accept an nn.Module; classes and length come from the data."""
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.pruning.prune_file import prune_checkpoint
    from edgeprune.export.onnx_export import export_checkpoint
    from edgeprune.profiling.onnx_macs import count_onnx_macs

    torch.manual_seed(0)
    net = um.ResNet1d(num_classes=4)
    doc = prune_checkpoint(net, tmp_path / "p.pt", method="random", data=toy_npz, target_macs=0.5536)
    ck = load_checkpoint(tmp_path / "p.pt")
    assert ck.spec["source"]["object"] == "ResNet1d" and doc["after"]["macs"] == ck.meta["macs"]
    rep = export_checkpoint(net, tmp_path / "m.onnx", verify_data=toy_npz)
    assert rep["classes"] == [f"tone{k}" for k in range(4)]
    assert count_onnx_macs(tmp_path / "m.onnx")["macs"] == count_macs(net, (2, 64))
    with pytest.raises(EdgepruneError, match="ref="):
        prune_checkpoint(um.vgg_like(length=64), tmp_path / "q.pt", method="random", data=toy_npz, target_macs=0.6)


def test_zoo_through_the_module_path_equals_the_network_without_the_units(toy_checkpoint):
    """Removing units of a zoo ResNet by identity replacement (module path) gives the trained network with those
    blocks made identities by hand: same MACs, same outputs."""
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.checkpoint import checkpoint_as_recipe
    from edgeprune.models.modular import build_recipe
    from edgeprune.models.net import EdgeNet
    from edgeprune.pruning.modular import random_method

    ck = load_checkpoint(toy_checkpoint)
    res = random_method(checkpoint_as_recipe(ck), target_macs=0.7, seed=1)
    removed = {int(n.split(".")[1]) for n in res.lineage["removed_units"]}
    assert removed
    a = build_recipe(res.spec, res.state_dict)
    b = EdgeNet(ck.spec)            # by hand: the trained zoo network with the removed blocks made identities
    b.load_state_dict(ck.state_dict)
    for i in removed:
        b.layers[i] = torch.nn.Identity()
    b.eval()
    x = torch.randn(4, 2, 64)
    with torch.no_grad():
        assert torch.allclose(a(x), b(x), atol=1e-5)
    assert count_macs(a, (2, 64)) == count_macs(b, (2, 64))


def test_train_cli_takes_user_code(code, toy_npz, tmp_path):
    from edgeprune.checkpoint import load_checkpoint

    r = _cli("train", "--model", f"{code}:vgg_like", "--kwargs", '{"length": 64}', "--data", toy_npz,
             "--epochs", "1", "--out", tmp_path / "t.pt", "--quiet")
    assert r.returncode == 0, r.stderr
    ck = load_checkpoint(tmp_path / "t.pt")
    assert ck.spec["source"]["object"] == "vgg_like" and ck.spec["source"]["kwargs"] == {"length": 64}
    assert ck.meta["lineage"][0]["op"] == "train" and 0 <= ck.meta["metrics"]["test_acc"] <= 1
    r = _cli("train", "--model", f"{code}:vgg_like", "--kwargs", "[1]", "--data", toy_npz, "--epochs", "1",
             "--out", tmp_path / "u.pt")
    assert r.returncode != 0 and "--kwargs must be a JSON object" in r.stderr


def test_study_config_names_user_code(code, tmp_path):
    import os

    from edgeprune.study.config import load_config
    from edgeprune.models.usercode import CODE_ENV

    cfg_path = tmp_path / "s.toml"
    cfg_path.write_text('[data]\nsynth = "rml2016.10a"\n[model]\ncode = "nets.py:ResNet1d"\n'
                        'kwargs = {num_classes = 11}\n[prune]\nmethods = ["random"]\n')
    old = os.environ.get(CODE_ENV)
    try:
        cfg = load_config(cfg_path)
        assert cfg["model"]["name"] == f"{code.resolve()}:ResNet1d"
        assert cfg["model"]["kwargs"] == {"num_classes": 11}
        assert str(code.resolve()) in os.environ[CODE_ENV]
    finally:
        if old is None:
            os.environ.pop(CODE_ENV, None)
        else:
            os.environ[CODE_ENV] = old


def test_bundle_of_a_cnn_lstm_predicts_like_torch(code, toy_npz, tmp_path):
    """export + bundle + the torch-free Predictor on a user CNN+LSTM: same probabilities as PyTorch, and the
    ONNX metadata the bundle relies on (classes, normalisation, input length)."""
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.models.usercode import allow
    from edgeprune.export import Predictor, make_bundle
    from edgeprune.export.onnx_export import read_metadata

    _import(code, toy_npz, tmp_path, "CLDNNLike")
    allow(code)
    make_bundle(tmp_path / "m.pt", "x86-cpu", tmp_path / "b", precisions=["fp32"])
    pred = Predictor(tmp_path / "b")
    assert pred.classes == [f"tone{k}" for k in range(4)] and pred.length == 64
    x = torch.randn(6, 2, 64)
    with torch.no_grad():
        ref = torch.softmax(load_checkpoint(tmp_path / "m.pt").build()(x), 1).numpy()
    got = pred.predict(x.numpy())["probs"]
    assert abs(got - ref).max() < 1e-4
    meta = read_metadata(next((tmp_path / "b").glob("*.onnx")))
    assert meta["edgeprune.classes"] == pred.classes and meta["edgeprune.input"]["length"] == 64
    assert meta["edgeprune.normalization"] == "none"


def test_zoo_checkpoint_pruned_through_the_traced_path(toy_checkpoint, toy_npz, tmp_path):
    """A zoo model pruned by the same code path as user models (the only one); its checkpoint rebuilds from
    the spec plus the recorded edits, with no code permission needed."""
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.pruning.prune_file import prune_checkpoint

    prune_checkpoint(toy_checkpoint, tmp_path / "p.pt", method="dbp", data=toy_npz, target_macs=0.7,
                     probe_steps=30)
    ck = load_checkpoint(tmp_path / "p.pt")
    assert ck.spec["kind"] == "module" and "spec" in ck.spec["source"] and ck.spec["edits"]["removed"]
    base = count_macs(load_checkpoint(toy_checkpoint).build(), (2, 64))
    assert abs(count_macs(ck.build(), (2, 64)) / base - 0.7) <= 0.02 * 0.7


def test_bidirectional_gru_macs_hand_count_and_onnx(tmp_path):
    from edgeprune.export.onnx_export import torch_to_onnx
    from edgeprune.profiling.onnx_macs import count_onnx_macs

    class G(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = torch.nn.GRU(2, 6, num_layers=2, bidirectional=True)     # (T, N, F) layout
            self.fc = torch.nn.Linear(12, 3)

        def forward(self, x):
            y, _ = self.gru(x.permute(2, 0, 1))
            return self.fc(y[-1])

    T = 16
    hand = T * 2 * (3 * 6 * (2 + 6) + 3 * 6 * (12 + 6)) + 12 * 3
    assert count_macs(G(), (2, T)) == hand
    path = tmp_path / "g.onnx"
    torch_to_onnx(G().eval(), T, path)
    assert count_onnx_macs(path)["macs"] == hand


def test_analyze_plan_then_prune_with_it(code, toy_npz, tmp_path):
    """analyze works on a plain-module network; pruning with its plan removes what pruning without it removes."""
    from edgeprune.pruning.plan import analyze, save_plan
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.models.usercode import allow
    from edgeprune.pruning.prune_file import prune_checkpoint

    _import(code, toy_npz, tmp_path, "ResNet1d")
    allow(code)
    plan = analyze(tmp_path / "m.pt", toy_npz, seed=0)
    assert [u["name"] for u in plan["units"]] == ["stem+bn", "layers.0", "layers.1", "layers.2", "layers.3",
                                                 "layers.4", "layers.5"]
    save_plan(tmp_path / "plan.json", plan)
    prune_checkpoint(tmp_path / "m.pt", tmp_path / "a.pt", method="layer", data=toy_npz, target_macs=0.5536,
                     plan=tmp_path / "plan.json")
    prune_checkpoint(tmp_path / "m.pt", tmp_path / "b.pt", method="layer", data=toy_npz, target_macs=0.5536)
    a, b = (load_checkpoint(tmp_path / n).spec["edits"]["removed"] for n in ("a.pt", "b.pt"))
    assert sorted(a) == sorted(b) and a
    _import(code, toy_npz, tmp_path, "vgg_like", kwargs={"length": 64}, out="v.pt")
    with pytest.raises(EdgepruneError, match="the plan was made for model 'ResNet1d'"):
        prune_checkpoint(tmp_path / "v.pt", tmp_path / "c.pt", method="layer", data=toy_npz, target_macs=0.5,
                         plan=tmp_path / "plan.json")


# ---------------------------------------------------------------- --code where a checkpoint is loaded (issue 27)
CODE_COMMANDS = {"analyze", "prune", "finetune", "eval", "export", "bundle", "profile", "units"}


def _parsers():
    from edgeprune.cli.main import build_parser

    def subs(parser, prefix=""):
        for action in parser._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for name, child in action.choices.items():
                    yield from subs(child, f"{prefix}{name} ")
        yield prefix.strip(), parser

    return {name: p for name, p in subs(build_parser()) if name}


def test_code_is_offered_exactly_where_a_checkpoint_is_loaded():
    offered = {name for name, p in _parsers().items() if any("--code" in a.option_strings for a in p._actions)}
    assert offered == CODE_COMMANDS


def test_code_loads_an_own_network_on_each_checkpoint_command(code, toy_npz, tmp_path, capsys):
    """Every command that offers --code loads a checkpoint of the user's network with it (and refuses without)."""
    from edgeprune.cli.main import main
    from edgeprune.models.usercode import forget_allowed

    _import(code, toy_npz, tmp_path, "ResNet1d")
    ck = str(tmp_path / "m.pt")
    runs = {
        "eval": ["eval", "--model", ck, "--data", str(toy_npz)],
        "profile": ["profile", ck, "--backend", "torch", "--iters", "2", "--warmup", "1"],
    }
    for name, argv in runs.items():
        forget_allowed()
        assert main(argv) != 0, name
        assert "--code" in capsys.readouterr().err, name
        forget_allowed()
        assert main(argv + ["--code", str(code)]) == 0, name
    assert main(["inspect", ck]) == 0      # reads what the checkpoint records: builds nothing, needs no --code
    r = _cli("doctor", "--code", code)     # a command that loads no checkpoint refuses the option
    assert r.returncode == 2 and "unrecognized arguments: --code" in r.stderr
