"""Units where the architecture has them (issue 24): transformer encoder layers, attention/SE/MLP blocks, LSTMs
inside the user's own modules, stacks that pool, a GRU behind a phase-estimation Linear (tests/user_models.py).

Ground truth is independent of the pruning code: unit lists and MACs are hand counts; a pruned model is compared
with the ORIGINAL model whose removed units are bypassed by this file's own forward hooks; the MACs a target
reaches are compared with every subset of the units (brute force)."""

from __future__ import annotations

import itertools
import shutil
import sys
from pathlib import Path

import pytest
from edgeprune_run import run_edgeprune
import torch
import torch.nn.functional as F
from torch import nn

TESTS = Path(__file__).resolve().parents[1]   # tests/: the shared fixture modules (user_models.py)
sys.path.insert(0, str(TESTS))
import user_models as um  # noqa: E402

from edgeprune.errors import EdgepruneError  # noqa: E402
from edgeprune.models.macs import count_macs  # noqa: E402
from edgeprune.models.trace import discover_module_units  # noqa: E402

L = 64
MODELS = {"TransformerAMR": {}, "NestedLSTM": {}, "AttentionSE": {}, "PoolStackNet": {}, "PhaseGRUNet": {}}


@pytest.fixture
def code(tmp_path):
    from edgeprune.models.usercode import allow, forget_allowed

    p = tmp_path / "nets.py"
    shutil.copy(TESTS / "user_models.py", p)
    allow(p)
    yield p
    forget_allowed()


def _ckpt(code, toy_npz, tmp_path, name):
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.importing import import_model

    torch.manual_seed(0)
    import_model(f"{code}:{name}", toy_npz, tmp_path / f"{name}.pt")
    return load_checkpoint(tmp_path / f"{name}.pt")


# ---------------------------------------------------------------- which entries are units (hand lists, hand MACs)


def _units(model):
    return discover_module_units(model, (2, L))


def test_transformer_encoder_layers_are_units_with_hand_counted_macs():
    res = _units(um.TransformerAMR(d=8, layers=3))
    assert [u.name for u in res.removable] == ["encoder.layers.0", "encoder.layers.1", "encoder.layers.2"]
    d, ff = 8, 16
    layer = 3 * L * d * d + 2 * L * L * d + L * d * d + 2 * L * d * ff   # in-proj, QK^T and AV, out-proj, FFN
    assert [u.macs for u in res.removable] == [layer] * 3


def test_dense_blocks_between_stem_and_head_are_units_the_head_is_not():
    res = _units(um.AttentionSE(c=8))
    c = 8
    assert [(u.name, u.macs) for u in res.removable] == [
        ("se", c * (c // 2) * 2), ("att", 3 * L * c * c + 2 * L * L * c + L * c * c), ("mlp", 2 * L * c * 2 * c)]
    roles = {u.name: (u.role, u.reason) for u in res.units}
    assert roles["head.0+head.1"][0] == "head" and "pooled feature vector [8]" in roles["head.0+head.1"][1]
    assert roles["stem"][0] == "stem" and roles["fc"][0] == "classifier"


def test_an_lstm_inside_a_custom_module_is_a_unit():
    res = _units(um.NestedLSTM(hidden=8))
    assert [u.name for u in res.removable] == ["lstm1", "rec.lstm"]
    assert [u.macs for u in res.removable] == [L * 4 * 8 * (8 + 8)] * 2


def test_stacks_that_pool_are_units_with_a_pool_in_their_place():
    res = _units(um.PoolStackNet(c=4, stacks=3, length=L))
    assert [(u.name, u.role, u.bypass) for u in res.removable] == [("stacks.1", "stack", "pool"),
                                                                  ("stacks.2", "stack", "pool")]
    # stack 1: a 1x1 conv 4->4 and two k=3 convs 4->4 on 32 positions (the max-pool has no MACs)
    assert res.removable[0].macs == 32 * 4 * 4 + 2 * 32 * 4 * 4 * 3
    assert "shortens [4, 32] -> [4, 16]" in res.removable[0].reason
    assert {u.name: u.role for u in res.units}["stacks.0"] == "stem"


def test_gru_behind_a_phase_linear():
    res = _units(um.PhaseGRUNet(length=L, hidden=8))
    assert [u.name for u in res.removable] == ["gru[0]", "gru[1]"]
    roles = {u.name: u.role for u in res.units}
    assert roles["phase"] == "stem" and roles["conv"] == "transition"


def test_cli_units_says_why(code, toy_npz, tmp_path, cli, monkeypatch):
    import json

    _ckpt(code, toy_npz, tmp_path, "AttentionSE")
    monkeypatch.setenv("EDGEPRUNE_CODE", str(code))
    r = cli("units", tmp_path / "AttentionSE.pt", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    why = {u["name"]: u["reason"] for u in doc["units"]}
    assert doc["removable"] == ["se", "att", "mlp"]
    assert "block (SE)" in why["se"] and why["fc"].startswith("classifier") and why["head.0+head.1"].startswith("head")


# ---------------------------------------------------------------- probing


def test_a_removal_that_breaks_the_forward_is_dropped_with_a_note_before_the_search(code, toy_npz, tmp_path):
    """nn.TransformerEncoder reads attributes of its first layer: removing that layer breaks its forward. The
    probe drops it (one note) and the method goes on with the other layers."""
    from edgeprune.pruning import modular as M

    ck = _ckpt(code, toy_npz, tmp_path, "TransformerAMR")
    model = ck.build()
    cands, notes = M.probed_candidates(ck, model, M._trace(model, ck))
    assert [u.name for u in cands] == ["encoder.layers.1", "encoder.layers.2"]
    assert len(notes) == 1 and notes[0].startswith("unit encoder.layers.0 dropped")
    res = M.random_method(ck, target_macs=0.5, seed=0)
    assert res.lineage["removed_units"] and "encoder.layers.0" not in res.lineage["removed_units"]
    assert any("encoder.layers.0" in n for n in res.info["notes"])


def test_probes_are_kept_per_network_and_weights(code, toy_npz, tmp_path, monkeypatch):
    """A network is probed once per process (a study's layer, DBP and random arms share it): the kept answer is the
    one a fresh probe gives, and other weights or another transition are probed again."""
    import copy

    from edgeprune.pruning import modular as M

    ck = _ckpt(code, toy_npz, tmp_path, "TransformerAMR")
    calls = []
    real = M.probe_removal
    monkeypatch.setattr(M, "probe_removal", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(M, "_PROBED", {})

    def probed(c, transition="keep"):
        model = c.build()
        cands, notes = M.probed_candidates(c, model, M._trace(model, c), transition)
        return [u.name for u in cands], notes
    first = probed(ck)
    fresh_calls = len(calls)
    assert fresh_calls == 3 and first[0] == ["encoder.layers.1", "encoder.layers.2"]
    assert probed(ck) == first and len(calls) == fresh_calls            # kept: no probe ran
    other = copy.copy(ck)
    other.state_dict = {k: v.clone() for k, v in ck.state_dict.items()}
    next(v for v in other.state_dict.values() if v.is_floating_point()).add_(1.0)
    assert probed(other) == first and len(calls) == 2 * fresh_calls     # other weights: probed again
    probed(ck, "reinit")
    assert len(calls) > 2 * fresh_calls                                   # another transition: probed again
    M._PROBED.clear()
    assert probed(ck) == first                                            # the kept answer is a fresh probe's


# ---------------------------------------------------------------- pruned == original with the units bypassed


def _bypassed(model, units, x):
    """The ORIGINAL ``model`` on ``x`` with each unit's output replaced by its input (this test's own hooks):
    a pool to the output size for a stack, ``(input, last step)`` for a whole LSTM/GRU, the kept layers run one by
    one for one layer of a stack."""
    handles = []
    mods = dict(model.named_modules())
    for u in units:
        if u.kind == "rnn-layer":
            rnn = mods[u.rnn]

            def layer_drop(m, args, out, drop=u.rnn_layer):
                y, hs = args[0], []
                for j in range(m.num_layers):
                    if j == drop:
                        continue
                    one = type(m)(y.shape[-1], m.hidden_size, batch_first=m.batch_first)
                    one.load_state_dict({f"{k}_l0": getattr(m, f"{k}_l{j}")
                                         for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
                    y, h = one.eval()(y)
                    hs.append(h[0] if isinstance(h, tuple) else h)
                return y, torch.cat(hs)
            handles.append(rnn.register_forward_hook(layer_drop))
            continue
        first, last = mods[u.members[0]], mods[u.members[-1]]
        box = {}
        handles.append(first.register_forward_pre_hook(lambda m, a, box=box: box.update(x=a[0])))

        def swap(m, a, out, box=box, u=u, first=first):
            x0 = box["x"]
            if isinstance(first, nn.RNNBase):
                h = x0[:, -1].unsqueeze(0)
                return (x0, (h, torch.zeros_like(h))) if isinstance(first, nn.LSTM) else (x0, h)
            if u.in_shape != u.out_shape:
                return F.adaptive_avg_pool1d(x0, u.out_shape[-1])
            return x0
        handles.append(last.register_forward_hook(swap))
    try:
        with torch.no_grad():
            return model.eval()(x)
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("method", ["layer", "dbp", "random"])
def test_layer_pruned_equals_the_original_with_the_units_bypassed(code, toy_npz, tmp_path, name, method):
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.pruning.prune_file import prune_checkpoint

    ck = _ckpt(code, toy_npz, tmp_path, name)
    opts = {"probe_steps": 5, "probe_train": 64, "probe_val": 32} if method == "dbp" else {}
    if method == "layer":
        opts = {"batches": 1, "batch_size": 32}
    prune_checkpoint(tmp_path / f"{name}.pt", tmp_path / "p.pt", method=method, data=toy_npz, target_macs=0.6,
                     **opts)
    pk = load_checkpoint(tmp_path / "p.pt")
    lin = pk.meta["lineage"][-1]
    assert lin["removed_units"] and lin["equivalence"]["checked"] and lin["equivalence"]["ok"]
    gone = set(lin["removed_units"])
    original = ck.build()
    units = [u for u in _units(original).units if u.name in gone]
    assert len(units) == len(gone)
    x = torch.randn(5, 2, L, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = pk.build().eval()(x)
    ref = _bypassed(original, units, x)
    assert torch.allclose(got, ref, atol=1e-5), (got - ref).abs().max()
    # the model with nothing bypassed differs: the check can fail
    with torch.no_grad():
        assert not torch.allclose(got, original.eval()(x), atol=1e-5)


BETWEEN = """

class Between(nn.Module):
    def __init__(self, num_classes=4):
        super().__init__()
        self.conv1 = nn.Conv1d(2, 8, 3, padding=1)
        self.conv2 = nn.Conv1d(8, 8, 3, padding=1)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(self.drop(2 * self.conv2(self.conv1(x))).mean(-1))
"""


def test_a_result_that_is_not_the_bypassed_original_is_refused(code, toy_npz, tmp_path):
    """A unit whose modules have a functional operation between them (conv, then x2, then dropout): identity for
    conv and dropout leaves the doubling, which is not the original with the unit bypassed. The equivalence check
    catches it: checked directly, the result is refused; as a probe, the unit is dropped with a note."""
    from edgeprune.pruning import modular as M
    from edgeprune.pruning.equivalence import check_layer_pruned

    code.write_text(code.read_text() + BETWEEN)
    ck = _ckpt(code, toy_npz, tmp_path, "Between")
    model = ck.build()
    unit = next(u for u in M._trace(model, ck).units if u.name == "conv2+drop")
    assert unit.removable
    _, _, net, rep = M.remove(ck, model, [unit], check=False)
    with pytest.raises(EdgepruneError, match="does not equal the original with conv2\\+drop bypassed"):
        check_layer_pruned(model, net, [unit], (2, L), reinit=rep["reinit"])
    cands, notes = M.probed_candidates(ck, model, M._trace(model, ck))
    assert cands == [] and len(notes) == 1 and "conv2+drop" in notes[0]
    with pytest.raises(EdgepruneError, match="no removable unit"):
        M.random_method(ck, target_macs=0.5, seed=0)


# ---------------------------------------------------------------- targets: as close as whole units allow


def _subset_macs(model, units):
    """MACs of ``model`` with ``units`` replaced by identity (this test's own replacement), per subset."""
    import copy

    out = {}
    for k in range(len(units) + 1):
        for sub in itertools.combinations(units, k):
            net = copy.deepcopy(model)
            for u in sub:
                parent, _, leaf = u.members[0].rpartition(".")
                holder = dict(net.named_modules())[parent] if parent else net
                holder._modules[leaf] = nn.Identity()
            out[tuple(u.name for u in sub)] = count_macs(net, (2, L))
    return out


@pytest.mark.parametrize("target", [0.93, 0.6, 0.35, 0.05])
def test_an_unreachable_target_gives_the_nearest_model_at_or_below_it(code, toy_npz, tmp_path, target):
    """AttentionSE's units are 64, 81,920 and 16,384 MACs of ~105k: most targets fall between unit sets. The
    result is the largest MACs at or below the target over every subset (brute force), with one note; below
    every subset, the smallest model."""
    from edgeprune.pruning import modular as M

    ck = _ckpt(code, toy_npz, tmp_path, "AttentionSE")
    model = ck.build()
    cands = M.candidates(M._trace(model, ck))
    subsets = _subset_macs(model, cands)
    base = subsets[()]
    below = [m for m in subsets.values() if m <= target * base]
    want = max(below) if below else min(subsets.values())
    inside = [m for m in subsets.values() if abs(m - target * base) <= 0.02 * target * base]
    res = M.random_method(ck, target_macs=target, seed=0)
    if inside:
        assert res.lineage["macs_after"] in inside and "notes" not in res.info
    else:
        assert res.lineage["macs_after"] == want
        assert len(res.info["notes"]) == 1 and "whole units cannot reach" in res.info["notes"][0]


def test_reach_is_known_from_unit_macs_before_the_analysis(code, toy_npz, tmp_path):
    from edgeprune.pruning import modular as M

    code.write_text(code.read_text() + "\n\ndef tiny(num_classes=4, length=64):\n"
                    "    return nn.Sequential(nn.Conv1d(2, 4, 3), nn.Flatten(), nn.Linear(4 * (length - 2), num_classes))\n")
    ck = _ckpt(code, toy_npz, tmp_path, "AttentionSE")
    r = M.check_reach(ck, 0.6, None)
    base = count_macs(ck.build(), (2, L))
    assert not r["window"] and r["nearest"] == (base - 81920) / base     # removing the attention block alone
    tiny = _ckpt(code, toy_npz, tmp_path, "tiny")
    with pytest.raises(EdgepruneError, match="no removable unit"):
        M.check_reach(tiny, 0.5, None)


def test_cli_prune_to_an_unreachable_target_prints_one_note(code, toy_npz, tmp_path):
    import os

    base = count_macs(_ckpt(code, toy_npz, tmp_path, "AttentionSE").build(), (2, L))
    env = dict(os.environ, EDGEPRUNE_CODE=str(code))
    r = run_edgeprune("prune", "--model", tmp_path / "AttentionSE.pt", "--method", "random", "--target-macs", "0.6",
                      "--out", tmp_path / "p.pt", env=env)
    assert r.returncode == 0, r.stderr
    notes = [ln for ln in (r.stdout + r.stderr).splitlines() if "whole units cannot reach 0.6" in ln]
    assert len(notes) == 1 and f"{(base - 81920) / base:.4f} x" in notes[0]
