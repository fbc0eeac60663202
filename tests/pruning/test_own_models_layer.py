"""The layer method on the user's own networks: the same importance criteria and budget options as zoo
models, checked against independent ground truth (hand-made ablations, every same-size removal set on held-out
frames), plus channel-bn and latency-targeted pruning through the traced path."""

from __future__ import annotations

import copy
import itertools
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

TESTS = Path(__file__).resolve().parents[1]   # tests/: the shared fixture modules (user_models.py)
sys.path.insert(0, str(TESTS))

from conftest import make_toy_dataset  # noqa: E402

from edgeprune.errors import EdgepruneError  # noqa: E402

# the outcomes below come from trained or analysed networks: .ci/run runs them again on ATen's plain kernels
pytestmark = pytest.mark.numerics


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained 1-D ResNet of the user's own block class (tests/user_models.py), its code and data."""
    from edgeprune.data.dataset import save_npz
    from edgeprune.models.usercode import allow, forget_allowed
    from edgeprune.training.train import train_model

    d = tmp_path_factory.mktemp("own_layer")
    code = d / "nets.py"
    shutil.copy(TESTS / "user_models.py", code)
    data = d / "toy.npz"
    save_npz(data, make_toy_dataset(n_per_key=40))
    allow(code)
    train_model(data, f"{code}:ResNet1d", d / "r.pt", epochs=8, batch_size=32, lr=3e-3, seed=0,
                kwargs={"width": 8, "blocks": 3})
    yield {"code": code, "data": data, "ckpt": d / "r.pt", "dir": d}
    forget_allowed()


@pytest.fixture(autouse=True)
def _allowed(trained):
    from edgeprune.models.usercode import allow

    allow(trained["code"])


def _setup(trained):
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.pruning import modular as M
    from edgeprune.data.split import resolve_split

    ck = load_checkpoint(trained["ckpt"])
    model = ck.build().eval()
    cands = M.candidates(M._trace(model, ck))
    (_, val, test), _ = resolve_split(ck, trained["data"])
    return ck, model, cands, val, test


def _loss(model, x, y):
    with torch.no_grad():
        out = model.eval()(torch.from_numpy(x))
        return float(nn.functional.cross_entropy(out.double(), torch.from_numpy(y).long()))


def test_ablation_of_blocks_equals_a_hand_made_ablation(trained):
    """Each block's ablation value equals the loss increase of a copy whose block is swapped for nn.Identity."""
    from edgeprune.pruning.modular import unit_values

    ck, model, cands, val, _ = _setup(trained)
    got = unit_values("ablation", ck, model, cands, val.x, val.y)
    base = _loss(model, val.x, val.y)
    for u in cands:
        net = copy.deepcopy(model)
        net.layers[int(u.name.split(".")[1])] = nn.Identity()
        assert got[u.name] == pytest.approx(_loss(net, val.x, val.y) - base, rel=1e-6, abs=1e-9), u.name


def test_ablation_of_chains_and_lstm_layers_equals_hand_made_ablations(trained, tmp_path):
    """A Conv-BN-ReLU chain of an nn.Sequential and one layer of a stacked LSTM: the hand-made network without it."""
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.importing import import_model
    from edgeprune.pruning import modular as M

    ds = make_toy_dataset(n_per_key=8)
    import_model(f"{trained['code']}:vgg_like", ds, tmp_path / "v.pt", kwargs={"length": 64})
    ck = load_checkpoint(tmp_path / "v.pt")
    model = ck.build().eval()
    cands = M.candidates(M._trace(model, ck))
    assert [u.name for u in cands] == ["3+4+5", "6+7+8", "13+14+15"]
    got = M.unit_values("ablation", ck, model, cands, ds.x, ds.y)
    base = _loss(model, ds.x, ds.y)
    for u in cands:
        net = copy.deepcopy(model)
        for i in u.members:
            net[int(i)] = nn.Identity()
        assert got[u.name] == pytest.approx(_loss(net, ds.x, ds.y) - base, rel=1e-6, abs=1e-9), u.name

    torch.manual_seed(1)
    import_model(f"{trained['code']}:CLDNNLike", ds, tmp_path / "c.pt")
    ck = load_checkpoint(tmp_path / "c.pt")
    model = ck.build().eval()
    cands = M.candidates(M._trace(model, ck))
    assert [u.name for u in cands] == ["conv2+drop", "lstm[0]", "lstm[1]"]
    got = M.unit_values("ablation", ck, model, cands, ds.x, ds.y)
    base = _loss(model, ds.x, ds.y)
    for drop in (0, 1):
        keep = 1 - drop
        net = copy.deepcopy(model)
        one = nn.LSTM(16, 16, num_layers=1, batch_first=True)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(one, f"{name}_l0").data.copy_(getattr(model.lstm, f"{name}_l{keep}"))
        net.lstm = one
        assert got[f"lstm[{drop}]"] == pytest.approx(_loss(net, ds.x, ds.y) - base, rel=1e-6, abs=1e-9)
    with pytest.raises(EdgepruneError, match="an LSTM/GRU layer or a pooling stack"):
        M.unit_values("block-influence", ck, model, cands, ds.x, ds.y)
    with pytest.raises(EdgepruneError, match="transplant proxy"):
        M.unit_values("synflow-transplant", ck, model, cands, ds.x, ds.y)


def test_kept_units_matter_more_on_held_out_frames(trained, tmp_path):
    """The default layer method (ablation on validation frames) removes the blocks whose loss the held-out test
    split misses least: its choice is in the better half of every same-size removal set, for 1 to 3 removals."""
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.pruning.prune_file import prune_checkpoint
    from edgeprune.pruning.modular import remove

    ck, model, cands, _, test = _setup(trained)
    for kept in (4, 3, 2):
        out = tmp_path / f"k{kept}.pt"
        doc = prune_checkpoint(trained["ckpt"], out, method="layer", data=trained["data"], keep_units=kept,
                               segments=1)
        pruned = load_checkpoint(out)
        assert len(doc["kept_units"]) == kept
        mine = _loss(pruned.build(), test.x, test.y)
        others = sorted(_loss(remove(ck, model, list(s), check=False)[2], test.x, test.y)
                        for s in itertools.combinations(cands, len(cands) - kept))
        assert min(abs(mine - o) for o in others) < 1e-6     # it is one of the same-size sets
        assert mine <= others[(len(others) - 1) // 2], (kept, mine, others)


def test_budget_options_on_a_traced_network(trained, tmp_path):
    """--keep gives each segment its count; --keep-units spreads a total; --target-macs lands within 2%."""
    from edgeprune.pruning.plan import analyze
    from edgeprune.models.macs import count_macs
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.pruning.prune_file import prune_checkpoint

    plan = analyze(trained["ckpt"], trained["data"], segments=2)
    sizes = [sum(1 for u in plan["units"][a:b] if u["removable"]) for a, b in plan["segments"]["bounds"]]
    counts = [s - 1 if s > 1 else s for s in sizes]
    p = analyze(trained["ckpt"], trained["data"], segments=2, keep=counts)
    assert p["keep"]["counts"] == counts and p["keep"]["mode"] == "keep"
    values = p["importance"]["values"]
    for (a, b), c in zip(p["segments"]["bounds"], counts):
        ids = [u["layer"] for u in p["units"][a:b] if u["removable"]]
        best = sorted(ids, key=lambda i: -values[str(i)])[:c]      # ablation: the highest values are kept
        assert sorted(i for i in p["kept_units"] if i in ids) == sorted(best)
    doc = prune_checkpoint(trained["ckpt"], tmp_path / "u.pt", method="layer", data=trained["data"], keep_units=3,
                           segments=2)
    assert len(doc["kept_units"]) == 3
    with pytest.raises(EdgepruneError, match="give only one of"):
        prune_checkpoint(trained["ckpt"], tmp_path / "x.pt", method="layer", data=trained["data"], keep_units=3,
                         target_macs=0.6)
    base = count_macs(load_checkpoint(trained["ckpt"]).build(), (2, 64))
    for crit in ("taylor", "block-influence", "synflow", "reverse"):
        prune_checkpoint(trained["ckpt"], tmp_path / f"{crit}.pt", method="layer", data=trained["data"],
                         target_macs=0.5536, importance=crit)
        ck = load_checkpoint(tmp_path / f"{crit}.pt")
        assert abs(count_macs(ck.build(), (2, 64)) / base - 0.5536) <= 0.02 * 0.5536
        assert ck.meta["lineage"][-1]["options"]["importance"] == crit
    # reverse with one segment: the deepest units go, the shallowest are kept
    doc = prune_checkpoint(trained["ckpt"], tmp_path / "rev.pt", method="layer", data=trained["data"],
                           keep_units=2, segments=1, importance="reverse")
    assert doc["kept_units"] == ["layers.0", "layers.1"]


def test_channel_bn_on_a_traced_network(trained, tmp_path):
    """Network slimming on the user's network: sparsity training, BN-scale pruning, MACs within 2%; a network
    without BatchNorm gets one error line."""
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.models.macs import count_macs
    from edgeprune.importing import import_model
    from edgeprune.pruning.prune_file import prune_checkpoint

    prune_checkpoint(trained["ckpt"], tmp_path / "bn.pt", method="channel-bn", data=trained["data"],
                     target_macs=0.5, sparsity_epochs=1)
    ck = load_checkpoint(tmp_path / "bn.pt")
    base = count_macs(load_checkpoint(trained["ckpt"]).build(), (2, 64))
    assert abs(count_macs(ck.build(), (2, 64)) / base - 0.5) <= 0.02 * 0.5
    lin = ck.meta["lineage"][-1]
    assert lin["method"] == "channel-bn" and lin["options"]["sparsity_epochs"] == 1 and lin["widths"]
    import_model(f"{trained['code']}:CLDNNLike", trained["data"], tmp_path / "c.pt")
    with pytest.raises(EdgepruneError, match="has no BatchNorm layer"):
        prune_checkpoint(tmp_path / "c.pt", tmp_path / "c2.pt", method="channel-bn", data=trained["data"],
                         target_macs=0.5)


def test_target_latency_on_a_traced_network(trained, tmp_path):
    """--target-latency with a given latency model: the largest ladder candidate predicted under the budget less
    the margin is the one built, and it is the layer method's removal order cut at that point."""
    from edgeprune.profiling.latency_model import LatencyModel

    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.models.modular import recipe_stats
    from edgeprune.pruning.prune_file import prune_checkpoint

    recs = [{"backend": "onnxruntime", "batch": 1, "threads": 1, "precision": "fp32", "device": "cpu",
             "macs": m, "layers": n, "median_ms": m / 1e5 + 0.01 * n + 0.05, "model": f"m{m}"}
            for m, n in ((1e5, 5), (2e5, 9), (3e5, 12), (4e5, 16), (5e4, 3))]
    LatencyModel.fit(recs).save(tmp_path / "lm.json")
    base = load_checkpoint(trained["ckpt"]).meta["macs"]
    budget = 0.7 * (base / 1e5 + 0.01 * 15 + 0.05)
    doc = prune_checkpoint(trained["ckpt"], tmp_path / "lat.pt", data=trained["data"], target_latency=budget,
                           target="x86-cpu", latency_model=tmp_path / "lm.json", iters=20)
    lat = doc["latency"]
    fitting = [c for c in lat["candidates"] if c["predicted_ms"] <= lat["aim_ms"]]
    ck = load_checkpoint(tmp_path / "lat.pt")
    assert recipe_stats(ck.spec)["macs"] == max(c["macs"] for c in fitting) == doc["after"]["macs"]
    assert lat["measured_ms"] > 0 and ck.meta["lineage"][-1]["target_latency"] == pytest.approx(budget)


def test_cli_prune_keep_units_and_importance_on_user_code(trained, tmp_path):
    from edgeprune.cli.main import main

    out = tmp_path / "cli.pt"
    rc = main(["prune", "--model", str(trained["ckpt"]), "--data", str(trained["data"]), "--keep-units", "3",
               "--segments", "2", "--importance", "block-influence", "--out", str(out), "--code", str(trained["code"]), "-q"])
    assert rc == 0 and out.exists()
    # the reference's transplant proxies score traced units too (they were the spec path's only)
    rc = main(["analyze", "--model", str(trained["ckpt"]), "--data", str(trained["data"]), "--no-plots",
               "--importance", "snip", "--out", str(tmp_path / "a"), "--code", str(trained["code"]), "-q"])
    plan = json.loads((tmp_path / "a" / "plan.json").read_text())
    assert rc == 0 and plan["kind"] == "module" and plan["importance"]["criterion"] == "snip"
    assert plan["importance"]["rule"] == "lowest value kept" and plan["importance"]["scores"]


def test_study_on_user_code_analyses_once_and_prunes_with_the_plan(trained, tmp_path):
    """A comparison study of the user's network: one analyze stage writes plan.json (the study's criterion), the
    layer branch prunes with it, and the report lists the model."""
    from edgeprune.cli.main import main

    shutil.copy(trained["code"], tmp_path / "nets.py")
    cfg = tmp_path / "s.toml"
    cfg.write_text('[study]\nname = "own"\n[data]\nsynth = "rml2016.10a"\nper_key = 6\nsnrs = [10, 18]\nlength = 64\n'
                   '[model]\ncode = "nets.py:ResNet1d"\nkwargs = {num_classes = 11}\n[train]\nepochs = 1\n'
                   '[prune]\nmethods = ["layer", "random"]\ntargets = [0.5536]\nimportance = "block-influence"\n'
                   '[finetune]\nepochs = 1\n[export]\nprecisions = ["fp32"]\n[profile]\nbackends = ["onnxruntime"]\n'
                   'batch = [1]\niters = 5\nwarmup = 1\nmin_time_ms = 5\nrounds = 1\n')
    out = tmp_path / "study"
    assert main(["compare", "--config", str(cfg), "--out", str(out), "-q"]) == 0
    import json

    plan = json.loads((out / "analysis" / "plan.json").read_text())
    assert plan["kind"] == "module" and plan["importance"]["criterion"] == "block-influence"
    res = json.loads((out / "results.json").read_text())
    ids = {m["id"] for m in res["models"]}
    assert {"baseline", "layer@0.5536", "random@0.5536"} <= ids, ids


def test_channel_pruning_leaves_a_zero_padding_residual_stream_alone(toy_checkpoint, toy_npz, tmp_path):
    """A CIFAR ResNet with the parameter-free zero-padding shortcut (as many AMR repositories copy it): Torch-Pruning's
    graph does not see that the padded shortcut couples every block's output to the stream, so the traced path
    probes each layer and leaves alone those whose pruning breaks the forward. They must be exactly the stem and
    every block's second conv (the stream); every first conv is pruned, and the MACs land within 2%."""
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.models.macs import count_macs
    from edgeprune.pruning.prune_file import prune_checkpoint

    prune_checkpoint(toy_checkpoint, tmp_path / "c.pt", method="channel-l1", data=toy_npz, target_macs=0.5)
    ck = load_checkpoint(tmp_path / "c.pt")
    lin = ck.meta["lineage"][-1]
    blocks = [i for i, l in enumerate(load_checkpoint(toy_checkpoint).spec["layers"]) if l["type"] == "basic_block"]
    assert sorted(lin["left_alone"]) == sorted(["layers.0.conv"] + [f"layers.{i}.conv2" for i in blocks])
    assert all(f"layers.{i}.conv1" in lin["widths"] for i in blocks)
    base = count_macs(load_checkpoint(toy_checkpoint).build(), (2, 64))
    assert abs(count_macs(ck.build(), (2, 64)) / base - 0.5) <= 0.02 * 0.5


def test_zoo_models_have_one_path_and_the_former_spec_only_options_run_on_traced_units(toy_checkpoint, toy_npz,
                                                                                         tmp_path):
    """One code path: a zoo checkpoint is pruned as a module recipe that records the zoo spec, with every option
    the spec path had (the exhaustive search, a transplant proxy, replace transitions); `traced` and a plan of the
    removed spec path are refused in one line each."""
    from edgeprune.atomic import write_json
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.pruning.plan import analyze
    from edgeprune.pruning.prune_file import prune_checkpoint

    prune_checkpoint(toy_checkpoint, tmp_path / "t.pt", method="random", target_macs=0.7)
    assert load_checkpoint(tmp_path / "t.pt").spec["kind"] == "module"
    assert "spec" in load_checkpoint(tmp_path / "t.pt").spec["source"]
    with pytest.raises(EdgepruneError, match="the option 'traced' is gone"):
        prune_checkpoint(toy_checkpoint, tmp_path / "s.pt", method="random", target_macs=0.7, traced=False)
    plan = analyze(toy_checkpoint, toy_npz, batches=1, batch_size=32, search="exhaustive",
                   importance="synflow-transplant")
    assert plan["kind"] == "module" and plan["keep"]["search"] == "exhaustive"
    assert len(plan["keep"]["exhaustive_scores"]) == len(plan["blocks"])
    for blk in plan["blocks"]:   # one unit per block: the combination search is the per-unit ranking
        if blk["candidates"]:
            scores = {int(k): v for k, v in plan["importance"]["scores"].items()}
            assert blk["kept"] == [min(blk["candidates"], key=lambda u: (scores[u], u))]
    prune_checkpoint(toy_checkpoint, tmp_path / "r.pt", method="layer", data=toy_npz, transition="replace",
                     batches=1, batch_size=32)
    ck = load_checkpoint(tmp_path / "r.pt")
    lin = ck.meta["lineage"][-1]
    transitions = [f"layers.{i}" for i, l in enumerate(ck.spec["source"]["spec"]["layers"])
                   if l["type"] == "basic_block" and l["stride"] != 1]
    assert lin["transition"] == "replace" and transitions
    assert set(transitions) <= set(lin["reinit"])      # not chosen (never candidates): re-initialised in place
    old = dict(plan)
    del old["kind"]
    write_json(tmp_path / "old.json", old)
    with pytest.raises(EdgepruneError, match="spec path, which is gone; make a new one with 'edgeprune analyze'"):
        prune_checkpoint(toy_checkpoint, tmp_path / "x.pt", method="layer", plan=tmp_path / "old.json")
    assert not (tmp_path / "x.pt").exists()


# ------------------------------------------------- --target-macs with --search exhaustive and --transition replace
def _ladder(trained, tmp_path):
    """kernel_ladder (tests/user_models.py), untrained: five Conv1d(8, 8, k)-BN-ReLU units, k = 1, 3, 5, 7, 9,
    at L = 64: unit k costs 8 * 8 * k * 64 = 4096 k MACs by hand; the stem 2 * 8 * 3 * 64 = 3072, the classifier
    8 * 4 = 32, so the network 3104 + 4096 * 25 = 105,504."""
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.importing import import_model

    import_model(f"{trained['code']}:kernel_ladder", trained["data"], tmp_path / "ladder.pt")
    return tmp_path / "ladder.pt", load_checkpoint(tmp_path / "ladder.pt")


LADDER_K = {"3+4+5": 1, "6+7+8": 3, "9+10+11": 5, "12+13+14": 7, "15+16+17": 9}   # unit name -> kernel size


def _ladder_macs(kept_names):
    return 3104 + 4096 * sum(LADDER_K[n] for n in kept_names)


class HandKeyedCombos:
    """A combination scorer whose keys are set by hand (the exhaustive search's interface, ``combo_key``), so the
    order of the combinations is certain; the real scorers are checked against hand ablations in
    tests/analysis/test_importance.py."""

    def __init__(self, keys):
        self.keys = {frozenset(k): v for k, v in keys.items()}

    def combo_key(self, combo, block):
        return self.keys.get(frozenset(combo), 100)


def test_exhaustive_search_under_a_macs_target_keeps_the_lowest_key_combination_in_the_window(trained, tmp_path):
    """One segment of the ladder, per-unit keys k1 < k3 < k5 < k7 < k9 (lower kept first). At F = 0.4176 (44,059
    MACs, window 43,178-44,940) the per-unit walk removes k9 and k5 and k1 and keeps {k3, k7} (3104 + 4096 * 10 =
    44,064); the kept count, 2, is what the exhaustive search fills. Its combinations by hand key: {k1, k3}
    (0; 19,488 MACs), {k5, k9} (1; 60,448), {k1, k9} (2; 44,064), {k3, k7} (3; 44,064): the first two miss the
    window, so {k1, k9} is kept, not the overall lowest key {k1, k3} and not the per-unit choice {k3, k7}."""
    from edgeprune.models.macs import count_macs
    from edgeprune.pruning import modular as M

    _, ck = _ladder(trained, tmp_path)
    model = ck.build()
    cands = M.candidates(M._trace(model, ck))
    by_k = {LADDER_K[u.name]: u.name for u in cands}
    assert count_macs(model, (2, 64)) == 105504 and {u.name: u.macs for u in cands} == {
        n: 4096 * k for n, k in LADDER_K.items()}
    label = {u.name: 0 for u in cands}
    scores = {by_k[k]: float(i) for i, k in enumerate((1, 3, 5, 7, 9))}
    keys = {(by_k[1], by_k[3]): 0, (by_k[5], by_k[9]): 1, (by_k[1], by_k[9]): 2, (by_k[3], by_k[7]): 3}

    def kept(removed):
        return {u.name for u in cands} - {u.name for u in removed}
    removed, mode, match = M.choose_removal(ck, model, cands, label, 1, scores, target_macs=0.4176)
    assert mode == "target_macs" and kept(removed) == {by_k[3], by_k[7]}          # the per-unit walk
    sc = HandKeyedCombos(keys)
    removed, mode, match = M.choose_removal(ck, model, cands, label, 1, scores, target_macs=0.4176, scorer=sc)
    assert kept(removed) == {by_k[1], by_k[9]} and sc.best == [2]
    net = M.remove(ck, model, removed, check=False)[2]
    assert count_macs(net, (2, 64)) == _ladder_macs(kept(removed)) == match.macs == 44064
    assert abs(44064 - 0.4176 * 105504) <= 0.02 * 0.4176 * 105504 and "combination" in match.summary()["rule"]
    # without a target the same search keeps the overall lowest key, which would have missed it
    removed, _, _ = M.choose_removal(ck, model, cands, label, 1, scores, keep="2", scorer=HandKeyedCombos(keys))
    assert kept(removed) == {by_k[1], by_k[3]}
    # two segments ({k1, k3, k5} and {k7, k9}): the walk keeps {k3} and {k7}; the first segment's lowest keys
    # {k1} (0) and {k5} (1) leave 3104 + 4096 * 8 and * 12 MACs with {k7}: only {k3} (2) fits; then the second
    # segment's {k9} (0) gives 3104 + 4096 * 12, out; {k7} (1) is kept
    label = {by_k[k]: 0 if k < 6 else 1 for k in LADDER_K.values()}
    keys = {(by_k[1],): 0, (by_k[5],): 1, (by_k[3],): 2, (by_k[9],): 0, (by_k[7],): 1}
    removed, _, match = M.choose_removal(ck, model, cands, label, 2, scores, target_macs=0.4176,
                                         scorer=HandKeyedCombos(keys))
    assert kept(removed) == {by_k[3], by_k[7]} and match.macs == _ladder_macs(kept(removed))


def test_exhaustive_search_with_a_macs_target_prunes_within_the_tolerance(trained, tmp_path):
    """analyze and prune with --search exhaustive (the ablation scorer) and --target-macs, one segment: the
    written network's MACs, counted by hand from its kept units, are within 2% of the target. Whole units reach
    0.4176 (44,059 MACs, window 43,178-44,940) only with kernel sums of 10 ({k1, k9} or {k3, k7}: 44,064) and 0.6
    (63,302, window 62,036-64,568) only with 15 ({k1, k5, k9} or {k3, k5, k7}: 64,544). The lineage and the plan
    record the match (the fraction reached and the rule); a plan made so re-chooses the same way under prune."""
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.models.macs import count_macs
    from edgeprune.pruning.plan import analyze
    from edgeprune.pruning.prune_file import prune_checkpoint

    path, _ = _ladder(trained, tmp_path)
    for target, macs, sets in ((0.4176, 44064, ({1, 9}, {3, 7})), (0.6, 64544, ({1, 5, 9}, {3, 5, 7}))):
        doc = prune_checkpoint(path, tmp_path / "e.pt", method="layer", data=trained["data"], segments=1,
                               search="exhaustive", target_macs=target)
        ck = load_checkpoint(tmp_path / "e.pt")
        lin = ck.meta["lineage"][-1]
        assert {LADDER_K[n] for n in doc["kept_units"]} in sets
        assert count_macs(ck.build(), (2, 64)) == _ladder_macs(doc["kept_units"]) == macs == doc["after"]["macs"]
        assert lin["match"]["fraction"] == macs / 105504 and "combination" in lin["match"]["rule"]
        assert lin["target_macs"] == pytest.approx(target) and lin["options"]["budget"] == "target_macs"
    plan = analyze(path, trained["data"], segments=1, search="exhaustive", target_macs=0.6)
    kept = [plan["units"][i]["name"] for i in plan["kept_units"]]
    assert {LADDER_K[n] for n in kept} in ({1, 5, 9}, {3, 5, 7}) and plan["keep"]["mode"] == "target_macs"
    assert plan["expected"]["macs_after"] == 64544 == plan["keep"]["match"]["macs"]
    assert len(plan["keep"]["exhaustive_scores"]) == 1
    doc = prune_checkpoint(path, tmp_path / "p.pt", method="layer", plan=plan, target_macs=0.4176,
                           data=trained["data"])
    assert {LADDER_K[n] for n in doc["kept_units"]} in ({1, 9}, {3, 7}) and doc["after"]["macs"] == 44064


RESNET20_1D_MACS = {0: 2 * 16 * 3 * 64, 4: 16 * 32 * 3 * 32 + 32 * 32 * 3 * 32, 7: 32 * 64 * 3 * 16 + 64 * 64 * 3 * 16,
                    11: 64 * 4, **{i: 2 * 16 * 16 * 3 * 64 for i in (1, 2, 3)},
                    **{i: 2 * 32 * 32 * 3 * 32 for i in (5, 6)}, **{i: 2 * 64 * 64 * 3 * 16 for i in (8, 9)}}
"""resnet20-1d at L = 64, 4 classes, by hand per layer (stem, stage transitions 4 and 7, classifier 11, blocks)."""


def _hand_macs(ck):
    gone = set(ck.spec["edits"].get("removed", []))
    return sum(m for i, m in RESNET20_1D_MACS.items() if f"layers.{i}" not in gone)


def test_replace_transition_meets_a_macs_target_on_the_network_it_builds(toy_checkpoint, toy_npz, tmp_path):
    """--transition replace with --target-macs on resnet20-1d (1,923,328 MACs; stage-1 blocks 98,304, stage-2
    196,608, stage-3 393,216). The replace transition puts each later stage's transition, re-initialised, in
    place of the stage's first kept unit, so the network it builds is smaller than the removal estimate (base
    less the units not kept) by that unit. At 0.49 the written network's MACs, counted by hand from its layers
    and by the ONNX counter on its export, are within 2%; the removal estimate of the same kept units is not
    (it is larger by >= 196,608 MACs, 10% of the base). With --search exhaustive too, the same holds."""
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.export.onnx_export import torch_to_onnx
    from edgeprune.profiling.onnx_macs import count_onnx_macs
    from edgeprune.pruning.prune_file import prune_checkpoint

    base = sum(RESNET20_1D_MACS.values())
    assert base == 1923328 == load_checkpoint(toy_checkpoint).meta["macs"]
    unit = {f"layers.{i}": m for i, m in RESNET20_1D_MACS.items() if i in (1, 2, 3, 5, 6, 8, 9)}
    target = 0.49 * base
    for search in ("per-unit", "exhaustive"):
        doc = prune_checkpoint(toy_checkpoint, tmp_path / f"{search}.pt", method="layer", data=toy_npz,
                               transition="replace", target_macs=0.49, search=search, batches=1, batch_size=32)
        ck = load_checkpoint(tmp_path / f"{search}.pt")
        lin = ck.meta["lineage"][-1]
        hand = _hand_macs(ck)
        assert abs(hand - target) <= 0.02 * target and hand == doc["after"]["macs"] == lin["macs_after"]
        estimate = base - sum(m for n, m in unit.items() if n not in doc["kept_units"])
        assert abs(estimate - target) > 0.02 * target
        assert {"layers.4", "layers.7"} <= set(lin["reinit"]) and lin["match"]["macs"] == hand
        torch_to_onnx(ck.build().eval(), 64, tmp_path / f"{search}.onnx")
        assert count_onnx_macs(tmp_path / f"{search}.onnx")["macs"] == hand
    assert "combination" in lin["match"]["rule"]


def test_unreachable_target_under_replace_or_exhaustive_is_one_error_line(toy_checkpoint, toy_npz, tmp_path,
                                                                          capsys):
    """The networks --transition replace builds from resnet20-1d (table above) reach 0.2844-0.6933 x the MACs:
    at most the stem, the three stage-1 blocks, both transitions and one block each in stages 2 and 3
    (1,333,504), at least one stage-1 block besides (547,072). 0.62 falls between 0.5911 and 0.6422 (no network
    within 2%), 0.9 above them all: one `edgeprune: error:` line each, naming the range and the nearest network
    at or below the target; nothing is written. With --search exhaustive (keep transitions: 0.2333-1 x) 0.5
    falls between 0.4889 and 0.5400: the per-unit search takes the nearest below with a note, the exhaustive
    search refuses in one line."""
    from edgeprune.cli.main import main

    out = tmp_path / "x.pt"
    common = ["prune", "--model", str(toy_checkpoint), "--data", str(toy_npz), "--out", str(out), "--batches", "1",
              "--batch-size", "32", "-q"]
    for extra, reach in (
            (["--transition", "replace", "--target-macs", "0.62"], "range from 0.2844 x to 0.6933 x the MACs and "
                                                                    "the nearest at or below it is 0.5911 x"),
            (["--transition", "replace", "--target-macs", "0.9"], "range from 0.2844 x to 0.6933 x the MACs and "
                                                                   "the nearest at or below it is 0.6933 x"),
            (["--search", "exhaustive", "--target-macs", "0.5"], "range from 0.2333 x to 1.0000 x the MACs and "
                                                                  "the nearest at or below it is 0.4889 x")):
        rc = main(common + extra)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc != 0 and len(err) == 1 and err[0].startswith("edgeprune: error: layer pruning (--"), err
        assert f"cannot reach {extra[-1]} x MACs within 2%" in err[0] and reach in err[0], err
        assert not out.exists()


def test_weights_files_are_bounded_like_checkpoints(trained, tmp_path, monkeypatch):
    """--weights goes through the same bounded, zip-checked torch reader as checkpoints: over the checkpoint size
    limit, empty, truncated or pickled code is one error line each, and a good state_dict loads."""
    from edgeprune.importing import import_model

    net = __import__("user_models").ResNet1d(num_classes=4, width=8, blocks=3)
    good = tmp_path / "w.pth"
    torch.save(net.state_dict(), good)
    ref = f"{trained['code']}:ResNet1d"
    import_model(ref, trained["data"], tmp_path / "ok.pt", weights=good)
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "cut.pth").write_bytes(good.read_bytes()[:200])
    torch.save({"model": nn.Linear(2, 2)}, tmp_path / "obj.pth", _use_new_zipfile_serialization=True)
    for name, msg in (("empty.pth", "is empty"), ("cut.pth", "not a readable torch file"),
                      ("obj.pth", "was refused")):
        with pytest.raises(EdgepruneError, match=msg):
            import_model(ref, trained["data"], tmp_path / "x.pt", weights=tmp_path / name)
    monkeypatch.setenv("EDGEPRUNE_MAX_CHECKPOINT_BYTES", "1000")
    with pytest.raises(EdgepruneError, match="EDGEPRUNE_MAX_CHECKPOINT_BYTES"):
        import_model(ref, trained["data"], tmp_path / "x.pt", weights=good)
    assert not (tmp_path / "x.pt").exists()
