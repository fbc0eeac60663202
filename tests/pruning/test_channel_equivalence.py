"""Channel pruning is correct by construction (issue 24): on every network of the suite, channel-l1 reaches 0.5 x
the MACs within 2%, and the pruned checkpoint equals the ORIGINAL network with the removed channels masked to zero.

The ground truth here is independent of the pruning code: the kept channels are recovered from the weights
alone (a pruned weight is an exact sub-tensor of the original one; the test networks' random weights make every
kernel unique), and the masking is done in the test with forward pre-hooks that zero the removed input channels
of the original layers (and, for recurrent hidden units, the recurrent weights that read them).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from edgeprune_run import run_edgeprune
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import user_models as um  # noqa: E402

from edgeprune.errors import EdgepruneError  # noqa: E402
from edgeprune.models.macs import count_macs  # noqa: E402

# the outcomes below come from trained or analysed networks: .ci/run runs them again on ATen's plain kernels
pytestmark = pytest.mark.numerics

USER = Path(__file__).resolve().parents[1] / "user_models.py"
# The two GRU networks take 16-sample frames: Torch-Pruning traces a GRU step by step, and building its
# dependency graph, which channel pruning does about a dozen times per network, grows faster than the frame length
# (one PhaseGRU prune: 0.18 s at 16 samples, 0.48 s at 32, 1.14 s at 64).
SUITE = {"PadResNet2d": None, "PadResNet1d": None, "DualBranchCLDNN": None, "ConvTransformer": None,
         "PhaseGRU": {"length": 16}, "CLDNNLike": None, "vgg_like": {"length": 64}, "ResNet1d": None,
         "PhaseRotationGRUFlat": {"length": 16}, "FusionAttentionNet": None}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny networks: one thread is fastest and avoids oversubscribing shared CPUs."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _forget():
    from edgeprune.models.usercode import forget_allowed

    forget_allowed()
    yield
    forget_allowed()


def _kept(w_orig: torch.Tensor, w_new: torch.Tensor) -> tuple[list[int], list[int]]:
    """(kept rows, kept columns) of a 2-D-or-more weight, found by matching exact kernel values: each pruned row
    (column) must match exactly one original row (column) on several of its kernels."""
    a = w_orig.flatten(2) if w_orig.dim() > 2 else w_orig.unsqueeze(-1)
    b = w_new.flatten(2) if w_new.dim() > 2 else w_new.unsqueeze(-1)
    where: dict[bytes, set] = {}
    for o in range(a.shape[0]):
        for i in range(a.shape[1]):
            where.setdefault(a[o, i].numpy().tobytes(), set()).add((o, i))

    def pick(n, other, side):
        out = []
        for r in range(n):
            sets = [{p[side] for p in where.get((b[r, c] if side == 0 else b[c, r]).numpy().tobytes(), ())}
                    for c in range(min(6, other))]
            found = set.intersection(*sets)
            assert len(found) == 1, "the fixture's weights must identify every kept channel"
            out.append(found.pop())
        return out
    rows, cols = pick(b.shape[0], b.shape[1], 0), pick(b.shape[1], b.shape[0], 1)
    assert torch.equal(b, a[rows][:, cols]), "the pruned weight is not a sub-tensor of the original"
    return rows, cols


def _masked_by_hooks(original: nn.Module, pruned: nn.Module) -> nn.Module:
    """The original network, every input channel a pruned layer no longer reads zeroed by a pre-hook (recurrent
    hidden units: the recurrent weights reading them zeroed)."""
    import copy

    net = copy.deepcopy(original).eval()
    new = dict(pruned.named_modules())
    for name, mod in net.named_modules():
        other = new.get(name)
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Linear)) and other is not None:
            _, cols = _kept(mod.weight.data, other.weight.data)
            gone = sorted(set(range(mod.weight.shape[1])) - set(cols))
            if gone:
                dim = 1 if isinstance(mod, (nn.Conv1d, nn.Conv2d)) else -1
                mod.register_forward_pre_hook(_zero_hook(gone, dim))
        elif isinstance(mod, nn.RNNBase) and other is not None:
            _mask_rnn_by_hand(mod, other)
    return net


def _zero_hook(gone, dim):
    def hook(module, args):
        x = args[0].clone()
        x.index_fill_(dim % x.dim(), torch.tensor(gone), 0.0)
        return (x,) + tuple(args[1:])
    return hook


def _mask_rnn_by_hand(mod: nn.RNNBase, other: nn.RNNBase) -> None:
    rows, cols = _kept(mod.weight_ih_l0.data, other.weight_ih_l0.data)
    hidden = sorted({r % mod.hidden_size for r in rows})
    gone_in = sorted(set(range(mod.input_size)) - set(cols))
    gone_h = sorted(set(range(mod.hidden_size)) - set(hidden))
    if gone_in:
        mod.register_forward_pre_hook(_zero_hook(gone_in, -1))
    with torch.no_grad():
        for n in range(mod.num_layers):
            getattr(mod, f"weight_hh_l{n}")[:, gone_h] = 0.0
            if n:
                getattr(mod, f"weight_ih_l{n}")[:, gone_h] = 0.0


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """Every suite network imported (untrained, seed 0) and channel-l1-pruned to 0.5 once."""
    from conftest import make_toy_dataset

    from edgeprune.data.dataset import save_npz
    from edgeprune.importing import import_model
    from edgeprune.models.usercode import allow, forget_allowed
    from edgeprune.pruning.prune_file import prune_checkpoint

    tmp = tmp_path_factory.mktemp("suite")
    code = tmp / "nets.py"
    shutil.copy(USER, code)
    data = {n: tmp / f"toy{n}.npz" for n in (16, 64)}
    for n, path in data.items():
        save_npz(path, make_toy_dataset(length=n))
    out = {}
    allow(code)
    for name, kwargs in SUITE.items():
        torch.manual_seed(0)
        length = (kwargs or {}).get("length", 64)
        import_model(f"{code}:{name}", data[length], tmp / f"{name}.pt", kwargs=kwargs)
        doc = prune_checkpoint(tmp / f"{name}.pt", tmp / f"{name}-c.pt", method="channel-l1",
                               data=data[length], target_macs=0.5)
        out[name] = (tmp / f"{name}.pt", tmp / f"{name}-c.pt", doc)
    forget_allowed()
    return code, out


@pytest.mark.parametrize("name", list(SUITE))
def test_channel_l1_reaches_half_and_equals_the_masked_original(suite, name):
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.models.usercode import allow

    code, out = suite
    allow(code)
    before, after, doc = out[name]
    length = load_checkpoint(before).length
    original, pruned = load_checkpoint(before).build(), load_checkpoint(after).build()
    base, macs = count_macs(original, (2, length)), count_macs(pruned, (2, length))
    assert abs(macs / base - 0.5) <= 0.02 * 0.5
    assert doc["after"]["macs"] == macs
    x = torch.randn(6, 2, length, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        want = _masked_by_hooks(original, pruned)(x)
        got = pruned(x)
        plain = original(x)
    assert torch.allclose(got, want, atol=1e-4, rtol=0)
    assert not torch.allclose(got, plain, atol=1e-3)       # channels were really removed


def test_left_alone_records_each_layer_and_its_reason(suite):
    """The zero-padding stream of the 2-D ResNet fails the masked check (its pruned forward runs), the
    transformer's d_model stream too (LayerNorm), and Torch-Pruning's own exception is named for PhaseGRU's conv2."""
    from edgeprune.checkpoint import load_checkpoint

    _, out = suite
    lin = load_checkpoint(out["PadResNet2d"][1]).meta["lineage"][-1]
    stream = ["stem"] + [f"layers.{i}.conv2" for i in range(6)]
    assert sorted(lin["left_alone"]) == sorted(stream)
    assert all("not the original with those channels masked" in lin["left_alone"][n] for n in stream)
    assert all(f"layers.{i}.conv1" in lin["width_changes"] for i in range(6))
    tr = load_checkpoint(out["ConvTransformer"][1]).meta["lineage"][-1]
    assert sorted(tr["left_alone"]) == ["encoder.layers.0.linear2", "encoder.layers.1.linear2", "proj"]
    assert {"encoder.layers.0.linear1", "encoder.layers.1.linear1"} <= set(tr["width_changes"])
    gru = load_checkpoint(out["PhaseGRU"][1]).meta["lineage"][-1]
    assert list(gru["left_alone"]) == ["conv2"]
    assert gru["left_alone"]["conv2"].startswith("Torch-Pruning cannot trace/prune this model (IndexError")
    assert "torch_pruning/" in gru["left_alone"]["conv2"]
    assert gru["width_changes"]["gru"]["out"][1] < 12          # GRU hidden units are pruned


def test_halving_leaves_alone_exactly_the_sets_that_fail_on_their_own(suite):
    """find_left_alone halves the list of coupled sets instead of trying each one: it must leave alone the same
    layers, with the same reasons, as trying every set on its own at every probe ratio (the ground truth)."""
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.models.usercode import allow
    from edgeprune.pruning.channel_traced import ChannelPruner

    code, out = suite
    allow(code)
    for name in ("PadResNet2d", "ConvTransformer"):
        ck = load_checkpoint(out[name][0])
        found = ChannelPruner(ck, ck.build(), "l1")
        found.find_left_alone()
        each = ChannelPruner(ck, ck.build(), "l1")
        sets = each.coupled_sets()
        assert len(sets) >= 4, name                  # enough sets to be halved twice
        for members in sets:
            why = each.problems(members)
            if why:
                each._leave(members, why)
        assert each.left_alone, name                 # the fixture has sets that fail alone
        assert found.left_alone == each.left_alone, name


def _hand_macs(net) -> int:
    """Multiply-accumulates per frame of the two published shapes, counted by hand from the layer widths."""
    if type(net).__name__ == "PhaseRotationGRUFlat":   # built from the copy of user_models.py
        n = net.fc1.in_features // 2                       # samples per frame
        c1, c2 = net.conv1[0].out_channels, net.conv2[0].out_channels
        h, d, t = net.gru.hidden_size, net.fc2[0].out_features, n - 6
        return (2 * n + 4 * n + c1 * 2 * 5 * (n - 4) + c2 * c1 * 3 * t + t * 3 * h * (c2 + h) + t * h * d
                + d * net.fc2[2].out_features)
    widths = [2] + [blk[0].out_channels for blk in net.convs]
    tokens, d = widths[-1], net.fc[0].out_features
    convs = sum(a * b * 3 * 64 for a, b in zip(widths, widths[1:]))
    attention = 3 * tokens * 64 * 64 + 2 * net.heads * tokens * tokens * net.head_size
    return convs + attention + net.heads * tokens * d + d * net.fc[2].out_features


@pytest.mark.parametrize("name", ["PhaseRotationGRUFlat", "FusionAttentionNet"])
def test_published_shapes_reach_half_by_a_hand_count(suite, name):
    """PET-CGDNN's rotation by matmul made Torch-Pruning divide by zero for every layer; AMC-Net's attention
    projections and the conv writing its tokens cannot be narrowed. Both now prune the rest to 0.5 x the MACs,
    counted here by hand from the widths (and equal to edgeprune's counter), and pass the masked check above."""
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.models.usercode import allow

    code, out = suite
    allow(code)
    before, after, _ = out[name]
    length = load_checkpoint(before).length
    original, pruned = load_checkpoint(before).build(), load_checkpoint(after).build()
    base, macs = _hand_macs(original), _hand_macs(pruned)
    assert (base, macs) == (count_macs(original, (2, length)), count_macs(pruned, (2, length)))
    assert abs(macs / base - 0.5) <= 0.02 * 0.5
    lin = load_checkpoint(after).meta["lineage"][-1]
    assert not any("ZeroDivisionError" in why for why in lin.get("left_alone", {}).values())
    if name == "PhaseRotationGRUFlat":
        assert {"conv1.0", "fc2.0"} <= set(lin["width_changes"])
    else:
        assert {"convs.0.0", "convs.1.0"} <= set(lin["width_changes"])
        for kept in ("key", "query", "value", "convs.2.0"):   # the tokens and the fixed head size
            assert kept in lin.get("left_alone", {}) or kept not in lin["width_changes"]


def test_zero_pad_shortcut_is_caught_although_the_forward_runs():
    """Prune the 2-D ResNet's residual stream through the padding shortcut with Torch-Pruning: the network still
    runs, but it is not the original with those channels masked, and the check says so."""
    import copy

    from edgeprune.pruning.channel import make_importance, tp_prune
    from edgeprune.pruning.equivalence import channel_mask_mismatch, check_channel_masked, random_frames

    torch.manual_seed(0)
    model = um.PadResNet2d().eval()
    net = copy.deepcopy(model)
    mods = dict(net.named_modules())
    chosen = ["stem"] + [f"layers.{i}.conv2" for i in range(6)]
    others = [m for n, m in mods.items() if isinstance(m, (nn.Conv2d, nn.Linear)) and n not in chosen]
    removed = tp_prune(net, torch.zeros(2, 2, 64), make_importance("l1"), 0.0, others,
                       ratio_dict={mods[n]: 0.5 for n in chosen}, record=True)
    x = random_frames((2, 64))
    with torch.no_grad():
        assert net.eval()(x).shape == (4, 4)                   # the pruned forward runs
        independent = _masked_by_hooks(model, net)(x)
        assert (net(x) - independent).abs().max() > 1e-3       # ... and is wrong
    assert "not the original with those channels masked" in channel_mask_mismatch(model, net, removed, x)
    with pytest.raises(EdgepruneError, match="refusing the channel-pruned model"):
        check_channel_masked(model, net, removed, x)


def test_check_rejects_a_wrong_record_and_accepts_the_right_one():
    """Masking the wrong channels is caught; the right record passes (a hand-pruned two-layer network)."""
    from edgeprune.pruning.equivalence import channel_mask_mismatch, random_frames

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 6, 3, padding=1), nn.ReLU(), nn.Conv1d(6, 4, 3, padding=1)).eval()
    keep = [0, 2, 5]
    pruned = nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv1d(3, 4, 3, padding=1)).eval()
    with torch.no_grad():
        pruned[0].weight.copy_(model[0].weight[keep])
        pruned[0].bias.copy_(model[0].bias[keep])
        pruned[2].weight.copy_(model[2].weight[:, keep])
        pruned[2].bias.copy_(model[2].bias)
    x = random_frames((2, 16))
    right = {"0": {"in": [], "out": [1, 3, 4]}, "2": {"in": [1, 3, 4], "out": []}}
    wrong = {"0": {"in": [], "out": [0, 3, 4]}, "2": {"in": [0, 3, 4], "out": []}}
    assert channel_mask_mismatch(model, pruned, right, x) is None
    assert "max output difference" in channel_mask_mismatch(model, pruned, wrong, x)


def test_prune_output_says_what_the_checkpoint_records(suite, tmp_path):
    """The CLI lines for a CNN+LSTM come from the widths: each narrowed layer's line matches the reloaded
    checkpoint's module widths (an LSTM's input and hidden sizes included)."""
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.models.usercode import allow

    code, out = suite
    before = out["DualBranchCLDNN"][0]
    res = run_edgeprune("prune", "--model", before, "--method", "channel-l1", "--target-macs", "0.5",
                        "--out", tmp_path / "p.pt", "--code", code)
    assert res.returncode == 0, res.stderr
    allow(code)
    orig = dict(load_checkpoint(before).build().named_modules())
    new = dict(load_checkpoint(tmp_path / "p.pt").build().named_modules())
    lines = [ln.strip() for ln in res.stdout.splitlines() if ln.startswith("  ")]
    assert lines
    for ln in lines:
        name, rest = ln.split(": ", 1)
        a, b = orig[name], new[name]
        if isinstance(a, nn.LSTM):
            assert f"in {a.input_size}" in rest and f"hidden {a.hidden_size}" in rest
            assert (f"-> {b.input_size}" in rest) or a.input_size == b.input_size
            assert (f"-> {b.hidden_size}" in rest) or a.hidden_size == b.hidden_size
        else:
            w_in = getattr(b, "in_channels", None) or b.in_features
            w_out = getattr(b, "out_channels", None) or b.out_features
            assert (f"-> {w_in}" in rest) or (f"in {w_in} kept" in rest)
            assert (f"-> {w_out}" in rest) or (f"out {w_out} kept" in rest)
    assert "not pruned" not in res.stdout and "keep their widths" not in res.stdout


def test_unreachable_target_names_what_was_left_alone(suite):
    """Asking too much: the error names the layers left alone and says how many were narrowed, no fixed text."""
    from edgeprune.models.usercode import allow
    from edgeprune.pruning.prune_file import prune_checkpoint

    code, out = suite
    allow(code)
    with pytest.raises(EdgepruneError) as err:
        prune_checkpoint(out["ConvTransformer"][0], out["ConvTransformer"][0].with_name("x.pt"),
                         method="channel-l1", target_macs=0.05)
    msg = str(err.value)
    assert "left alone: proj" in msg and "classifier kept: fc" in msg
    assert "stem" not in msg and "not pruned" not in msg
