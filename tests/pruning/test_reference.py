"""--reference checked point by point against what the reference code (yaolu-zjut/PSR) computes.

Each test re-does one step the way the reference's code does it, written out
here independently (plain loops, hooks, textbook formulas), and compares.
"""

import copy
import itertools

import numpy as np
import pytest
import torch

from edgeprune.errors import EdgepruneError

# the outcomes below come from trained or analysed networks: .ci/run runs them again on ATen's plain kernels
pytestmark = pytest.mark.numerics


# ---------------------------------------------------------------- segment recovery (Network_Partition.py)
def _ref_table(samples, max_k):
    """The reference's loss table, by plain loops: T[n][k], zeros where n < k."""
    n_all = len(samples)

    def diameter(a, b):
        m = sum(samples[a:b]) / (b - a)
        return sum((v - m) ** 2 for v in samples[a:b])

    t = np.zeros((n_all + 1, max_k + 1))
    for n in range(1, n_all + 1):
        t[n, 1] = diameter(0, n)
    for k in range(2, max_k + 1):
        for n in range(k, n_all + 1):
            t[n, k] = min(t[j, k - 1] + diameter(j, n) for j in range(k - 1, n))
    return t


def _ref_labels(samples, k_best, t):
    """The reference's back-tracking and labelling, transcribed as loops (1-based labels)."""
    split, k, n = [], k_best - 1, len(samples)
    loss = t[n][k_best]
    while k > 0:
        while n > 0:
            if t[n][k] < loss:
                split.insert(0, n)
                loss = t[n][k]
                break
            n -= 1
        k -= 1
    split = [1] + split + [len(samples)]
    labels, cls, pi = [], 1, 0
    for i in range(len(samples)):
        if i < split[pi + 1]:
            labels.append(cls)
        else:
            pi += 1
            cls += 1
            labels.append(cls)
    return labels


def test_recovery_heuristic_equals_the_reference_loops_and_differs_from_the_optimum():
    from edgeprune.analysis.segmentation import reference_bounds, segment

    rng = np.random.default_rng(0)
    disagree = 0
    for trial in range(60):
        n = int(rng.integers(6, 16))
        seq = list(rng.normal(size=n).cumsum() + rng.normal(size=n))
        k = int(rng.integers(2, 5))
        t = _ref_table(seq, k)
        labels = _ref_labels(seq, k, t)
        want = [(labels.index(c), len(labels) - labels[::-1].index(c)) for c in sorted(set(labels))]
        assert reference_bounds(seq, k) == want, (seq, k)
        disagree += want != [tuple(b) for b in segment(seq, k).bounds]
    assert disagree > 0   # the heuristic is not the optimal partition


# ---------------------------------------------------------------- transitions (utils1/get_params.py)
def _replace_blocks(chosen, transition="replace"):
    """The residual blocks (origin, re-initialised, stride) of resnet56-ref after keeping the ``chosen`` layers,
    as the traced network is reassembled."""
    from edgeprune.checkpoint import Checkpoint, checkpoint_as_recipe
    from edgeprune.models import build_model, make_spec
    from edgeprune.pruning.modular import ENTRY_ROLES, _trace, candidates, replace_rule

    spec = make_spec("resnet56-ref", 32, 11)
    ck = checkpoint_as_recipe(Checkpoint(spec, build_model(spec).state_dict(), {"classes": list(range(11))}))
    model = ck.build()
    entries = [u for u in _trace(model, ck).units if u.role in ENTRY_ROLES]
    cands = candidates(_trace(model, ck), transition)
    kept = {f"layers.{i}" for i in chosen}
    removed, reinit = [u for u in cands if u.name not in kept], []
    if transition == "replace":
        removed, reinit, _ = replace_rule(entries, cands, kept)
    gone, fresh = {u.name for u in removed}, {u.name for u in reinit}
    return [(int(u.name.split(".")[1]), u.name in fresh, spec["layers"][int(u.name.split(".")[1])]["stride"])
            for u in entries if u.role != "stem" and u.name not in gone]


def test_replace_builds_as_many_blocks_as_chosen_units_like_the_reference():
    """Chosen (1,)(17,)(20,)(27,) in ResNet56: the reference builds 1 + 1 + 2 = 4 blocks, the first of
    stages 2 and 3 random transitions; edgeprune's default (trained transitions) adds them on top (6)."""
    chosen = [1, 17, 20, 27]
    blocks = _replace_blocks(chosen)
    assert blocks == [(1, False, 1), (10, True, 2), (19, True, 2), (27, False, 1)]
    assert len(_replace_blocks(chosen, "keep")) == 6
    # a chosen transition stays trained and replaces nothing
    assert [b[:2] for b in _replace_blocks([1, 10, 17, 27])] == [(1, False), (10, False), (17, False), (19, True)]


# ---------------------------------------------------------------- the 2-D ResNet shortcut (model_signal/resnet.py)
def test_ref_shortcut_is_mean_to_1x1_zero_padded_and_detached():
    from edgeprune.models import build_model, make_spec

    torch.manual_seed(0)
    spec = make_spec("resnet56-ref", 32, 11)
    m = build_model(spec).eval()
    blk = m.layers[10]                     # stage 2's first block: 16 -> 32 channels, stride 2
    with torch.no_grad():                  # silence the residual branch: the output is relu(shortcut)
        blk.bn2.weight.zero_()
        blk.bn2.bias.zero_()
    x = torch.randn(3, 16, 2, 32, requires_grad=True)
    y = blk(x)
    mean = x.detach().mean(dim=(2, 3), keepdim=True)
    want = torch.relu(torch.cat([mean, torch.zeros(3, 16, 1, 1)], 1)).expand(3, 32, 1, 16)
    assert torch.allclose(y, want)
    assert y.shape == (3, 32, 1, 16)
    # the silenced branch passes no gradient; a shortcut in the graph would (option A does)
    g = torch.autograd.grad(y.sum(), x, allow_unused=True)[0]
    assert g is None or float(g.abs().sum()) == 0.0


# ---------------------------------------------------------------- similarity inputs and hooks (similarity.py, get_hook.py)
def _narrow(spec, f):
    """The spec with every width divided by ``f``: the same procedure (units, hooks, transplants, the zero-padded
    shortcuts) at a cost the test suite affords with the reference's 128-frame float64 SynFlow (VGG16 at full
    width: about 10 s per score; ResNet56-ref at length 8: 1.3 s at full width, 0.13 s at a quarter)."""
    from edgeprune.models.zoo import validate_spec

    spec = copy.deepcopy(spec)
    first_linear = True
    for layer in spec["layers"]:
        if layer["type"] == "conv":
            layer["in"] = layer["in"] if layer["in"] == 1 else layer["in"] // f
            layer["out"] //= f
        elif layer["type"] == "basic_block":
            layer.update({k: layer[k] // f for k in ("in", "mid", "out")})
        elif layer["type"] == "linear" and first_linear:
            layer["in"] //= f
            first_linear = False
    return validate_spec(spec)


@pytest.fixture(scope="module")
def ref_setup(tmp_path_factory):
    from conftest import make_toy_dataset
    from edgeprune.checkpoint import make_meta, save_checkpoint
    from edgeprune.data.dataset import save_npz
    from edgeprune.models import build_model, make_spec

    d = tmp_path_factory.mktemp("ref")
    ds = make_toy_dataset(n_per_key=160, length=8)           # 1280 frames: a test split of 256 = 2 batches
    save_npz(d / "toy.npz", ds)
    small = make_toy_dataset(n_per_key=10, length=8)         # a test split of 16 frames: one short batch
    save_npz(d / "small.npz", small)
    out = {"small": small}
    for name in ("resnet56-ref", "vgg16"):
        torch.manual_seed(1)
        spec = _narrow(make_spec(name, 8, 4), 16 if name == "vgg16" else 4)
        model = build_model(spec)
        with torch.no_grad():   # non-trivial BN so that "before BN" and "after BN" differ
            for mod in model.modules():
                if isinstance(mod, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
                    mod.running_mean.uniform_(-0.5, 0.5)
                    mod.running_var.uniform_(0.5, 2.0)
        save_checkpoint(d / f"{name}.pt", spec, model.state_dict(), make_meta(spec, ds.classes, "none"))
        out[name] = d / f"{name}.pt"
    return d, ds, out


def _hand_similarity(model, modules, frames_batches):
    from edgeprune.analysis.similarity import linear_cka

    mats = []
    for xb in frames_batches:
        feats = []
        hs = [m.register_forward_hook(lambda _m, _i, o: feats.append(o.detach().reshape(len(o), -1).numpy()))
              for m in modules]
        with torch.no_grad():
            model(torch.from_numpy(xb))
        for h in hs:
            h.remove()
        n = len(feats)
        mat = np.eye(n)
        for i, j in itertools.combinations(range(n), 2):
            mat[i, j] = mat[j, i] = linear_cka(feats[i], feats[j], unbiased=True)
        mats.append(mat)
    return np.mean(mats, 0)


@pytest.mark.parametrize("name", ["resnet56-ref", "vgg16"])
def test_similarity_on_first_test_batches_with_the_reference_hooks(ref_setup, name):
    from edgeprune.pruning.plan import analyze
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.data.split import split_dataset

    d, ds, ck = ref_setup
    if name == "vgg16":    # the hooks only: one short batch of the small data's test split
        ds = ck["small"]
    ckpt = load_checkpoint(ck[name])
    plan = analyze(ckpt, ds, reference=True, segments=3, seed=0)
    _, _, test = split_dataset(ds, (0.6, 0.2, 0.2), 0)
    model = ckpt.build().eval()
    if name == "vgg16":   # the 9 convs after the first, at the conv output (before BN)
        mods = [model.layers[i].conv for i, l in enumerate(ckpt.spec["layers"]) if l.get("role") == "unit"]
        assert len(mods) == 9
    else:                 # the stem's raw conv output, then the 27 blocks
        mods = [model.layers[0].conv] + [model.layers[i] for i in range(1, 28)]
    batches = [test.x[0:128], test.x[128:256]] if name != "vgg16" else [test.x]
    assert all(len(b) == len(batches[0]) for b in batches)
    want = _hand_similarity(model, mods, batches)
    got = np.array(plan["similarity"]["matrix"])
    assert got.shape == want.shape
    assert np.allclose(got, want, atol=2e-6)
    assert plan["similarity"]["batches"] == len(batches)


# ---------------------------------------------------------------- SynFlow search (Reassembly.py, zero_nas/synflow.py)
def _ref_synflow(model, shape, frames=128):
    """zero_nas synflow as the reference calls it: train mode, |params|, float64, an all-ones batch of 128
    frames (2 frames give 1/64 of the score only in exact arithmetic: issue 28 measured other rankings)."""
    m = copy.deepcopy(model)
    m.train()
    with torch.no_grad():
        for p in m.parameters():
            p.abs_()
    m.double()
    m.zero_grad()
    m(torch.ones((frames,) + tuple(shape), dtype=torch.float64)).sum().backward()
    return float(sum((p.grad * p.detach()).abs().sum() for p in m.parameters() if p.grad is not None))


@pytest.mark.parametrize("name", ["resnet56-ref", "vgg16"])
def test_search_carries_weights_over_and_keeps_the_lowest(ref_setup, name):
    from edgeprune.pruning.plan import analyze
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.models.net import EdgeNet

    d, ds, ck = ref_setup
    ckpt = load_checkpoint(ck[name])
    keep = "1,2" if name == "vgg16" else "1,1"
    plan = analyze(ckpt, ck["small"], reference=True, segments=2, keep=keep, seed=5)
    # the reference's loop: one random copy (never restored), every combination in order, lowest kept
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        copy2 = EdgeNet(ckpt.spec)
        for mod in copy2.modules():   # the reference's networks keep PyTorch's default initialisation
            if hasattr(mod, "reset_parameters"):
                mod.reset_parameters()
    trained = ckpt.build()
    chosen, best = [], []
    for blk, r in zip(plan["blocks"], [int(c) for c in keep.split(",")]):
        scores = []
        for combo in itertools.combinations(blk["candidates"], r):
            for u in combo:
                src = trained.layers[u].state_dict()
                if name == "vgg16":   # the reference copies the conv weight and bias only
                    src = {k: v for k, v in src.items() if k.startswith("conv.")}
                copy2.layers[u].load_state_dict(src, strict=False)
            scores.append((_ref_synflow(copy2, ckpt.spec["input"]), list(combo)))
        s, c = min(scores, key=lambda t: t[0])
        chosen.append(c)
        best.append(s)
    assert [b["kept"] for b in plan["blocks"]] == chosen
    # the scores themselves, not only the choice: a batch of 2 frames would give 1/64 of them
    assert np.allclose(plan["keep"]["exhaustive_scores"], best, rtol=1e-9)
    assert plan["importance"]["synflow_frames"] == 128
    assert plan["importance"]["rule"] == "lowest value kept"
    if name == "resnet56-ref":
        assert plan["transition"] == "replace"
        assert plan["units"][0]["role"] == "stem" and plan["blocks"][0]["candidates"][0] == 0


def test_reference_refuses_other_models_in_one_line(tmp_path, capsys):
    from conftest import make_toy_dataset
    from edgeprune.checkpoint import make_meta, save_checkpoint
    from edgeprune.cli.main import main
    from edgeprune.data.dataset import save_npz
    from edgeprune.models import build_model, make_spec

    ds = make_toy_dataset(n_per_key=8, length=32)
    save_npz(tmp_path / "d.npz", ds)
    spec = make_spec("resnet56-1d", 32, 4)
    save_checkpoint(tmp_path / "m.pt", spec, build_model(spec).state_dict(), make_meta(spec, ds.classes))
    for cmd in (["analyze", "--out", str(tmp_path / "a")], ["prune", "--out", str(tmp_path / "p.pt")]):
        rc = main(cmd + ["--model", str(tmp_path / "m.pt"), "--data", str(tmp_path / "d.npz"), "--reference"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc != 0 and len(err) == 1
        assert "resnet56-ref" in err[0] and "vgg16" in err[0] and "'resnet56-1d'" in err[0]


@pytest.fixture(scope="module")
def ref_pruned(ref_setup, tmp_path_factory):
    """ResNet56-ref pruned with --reference directly (shared: the reference's SynFlow search is the slow part)."""
    from edgeprune.pruning.prune_file import prune_checkpoint

    d, ds, ck = ref_setup
    out = tmp_path_factory.mktemp("ref-pruned") / "direct.pt"
    prune_checkpoint(ck["resnet56-ref"], out, method="layer", data=d / "small.npz", reference=True,
                     keep="1,1,1,1", segments=4, seed=0)
    return out


def test_prune_reference_end_to_end(ref_setup, ref_pruned, tmp_path):
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.pruning.prune_file import prune_checkpoint

    d, ds, ck = ref_setup
    out = load_checkpoint(ref_pruned)
    removed = set(out.spec["edits"]["removed"])   # the pruned network: the zoo network less the removed layers
    blocks = [l for i, l in enumerate(out.spec["source"]["spec"]["layers"])
              if l["type"] == "basic_block" and f"layers.{i}" not in removed]
    lin = out.meta["lineage"][-1]
    chosen = [u for b in lin["plan"]["reference"]["chosen"] for u in b if u != 0]   # the stem always stays
    stages_hit = {(u - 1) // 9 for u in chosen}
    # the reference builds one block per chosen unit, plus one random block for a stage nobody chose
    assert len(blocks) == len(chosen) + (3 - len(stages_hit))
    assert lin["transition"] == "replace"
    with pytest.raises(EdgepruneError, match="--keep"):
        prune_checkpoint(ck["resnet56-ref"], tmp_path / "q.pt", method="layer", data=d / "small.npz",
                         reference=True, target_macs=0.5)


def test_reference_plan_file_prunes_like_reference(ref_setup, ref_pruned, tmp_path):
    """A --reference plan saved to disk (what a study's analyze stage writes) loads back and, given to the
    layer method as --plan, builds the same network as pruning with --reference directly."""
    from edgeprune.pruning.plan import analyze, load_plan, save_plan
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.data.readers import load_dataset
    from edgeprune.pruning.prune_file import prune_checkpoint

    d, ds, ck = ref_setup
    plan = analyze(load_checkpoint(ck["resnet56-ref"]), load_dataset(d / "small.npz"), reference=True,
                   keep="1,1,1,1", segments=4, seed=0)
    save_plan(tmp_path / "plan.json", plan)
    assert load_plan(tmp_path / "plan.json")["transition"] == "replace"
    prune_checkpoint(ck["resnet56-ref"], tmp_path / "viaplan.pt", method="layer", data=d / "small.npz",
                     plan=str(tmp_path / "plan.json"), seed=0)
    a, b = load_checkpoint(ref_pruned), load_checkpoint(tmp_path / "viaplan.pt")
    assert a.spec == b.spec
    assert a.state_dict.keys() == b.state_dict.keys()
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)


# ---------------------------------------------------------------- issue 28: max K, bounds' loss, help, differences
def _ref_k_best(t):
    """Network_Partition.py's automatic K from its table's last row (5 % rule, stop at a zero loss)."""
    row = t[-1, 1:]
    k_best = 1
    for i in range(len(row) - 1):
        if row[i] == 0:
            return i + 1
        if (row[i] - row[i + 1]) / row[i] > 0.05:
            k_best = i + 2
    return k_best


def _loop_loss(seq, bounds):
    total = 0.0
    for a, b in bounds:
        m = sum(seq[a:b]) / (b - a)
        total += sum((v - m) ** 2 for v in seq[a:b])
    return total


def test_reference_auto_k_uses_the_shipped_max_k_of_4(ref_setup):
    """The shipped Network_Partition.py fills its table up to k = 4 for every network: K, the bounds and the
    recorded losses equal its loops run with 4 columns."""
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.pruning.plan import analyze

    d, ds, ck = ref_setup
    plan = analyze(load_checkpoint(ck["resnet56-ref"]), ck["small"], reference=True, seed=0)
    seg = plan["segments"]
    seq = seg["sequence"]
    t = _ref_table(seq, 4)
    k = _ref_k_best(t)
    labels = _ref_labels(seq, k, t)
    want = [[labels.index(c), len(labels) - labels[::-1].index(c)] for c in sorted(set(labels))]
    assert seg["max_k"] == 4 and len(seg["losses"]) == 4
    assert seg["k"] == k and seg["bounds"] == want
    assert np.allclose(seg["losses"], t[-1, 1:], rtol=1e-9)


def test_reference_segments_record_the_returned_bounds_loss_beside_the_optimum():
    """On sequences where the back-tracking heuristic misses the optimum, the plan says so with numbers."""
    from edgeprune.pruning.reference import reference_segments

    rng = np.random.default_rng(0)
    worse = 0
    for _ in range(40):
        n = int(rng.integers(6, 16))
        seq = list(rng.normal(size=n).cumsum() + rng.normal(size=n))
        k = int(rng.integers(2, 5))
        seg = reference_segments(seq, k)
        t = _ref_table(seq, k)
        assert seg["bounds_loss"] == pytest.approx(_loop_loss(seq, seg["bounds"]), rel=1e-12)
        assert seg["optimal_loss"] == pytest.approx(t[n, k], rel=1e-9, abs=1e-12)
        assert _loop_loss(seq, seg["optimal_bounds"]) == pytest.approx(t[n, k], rel=1e-9, abs=1e-12)
        assert seg["bounds_loss"] >= seg["optimal_loss"] - 1e-9
        worse += seg["bounds_loss"] > seg["optimal_loss"] * (1 + 1e-6)
    assert worse > 0    # the heuristic's loss is recorded as worse where it is


def test_default_plan_records_its_bounds_loss_equal_to_the_optimum(ref_setup):
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.pruning.plan import analyze

    d, ds, ck = ref_setup
    plan = analyze(load_checkpoint(ck["resnet56-ref"]), ck["small"], segments=3, batches=1, batch_size=16,
                   importance="reverse", seed=0)
    seg = plan["segments"]
    seq = seg["sequence"]
    want = _ref_table(seq, 3)[len(seq), 3]
    assert seg["bounds_loss"] == pytest.approx(_loop_loss(seq, seg["bounds"]), rel=1e-12)
    assert seg["bounds_loss"] == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert seg["optimal_loss"] == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_analyze_help_says_which_frames_each_mode_uses(capsys):
    from edgeprune.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["analyze", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "TRAINING split" in text and "TEST split" in text
    assert "with --reference the first 5 batches of 128 frames of the TEST split" in text
    assert "--reference 4" in text


def test_differences_are_listed_in_the_docs_and_drop_the_false_claims():
    from pathlib import Path

    from edgeprune.pruning.reference import reference_differences

    doc = " ".join((Path(__file__).resolve().parents[2] / "docs" / "method.md").read_text().split())
    for name in ("resnet56-ref", "resnet56", "vgg16"):
        diffs = reference_differences(name)
        text = " ".join(diffs)
        assert "other random numbers" not in text and "2 identical" not in text and "64 times" not in text
        for item in diffs:
            assert item in doc, item
