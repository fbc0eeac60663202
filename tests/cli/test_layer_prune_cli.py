import json

import pytest

from edgeprune.cli.main import main

# the outcomes below come from trained or analysed networks: .ci/run runs them again on ATen's plain kernels
pytestmark = pytest.mark.numerics


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import torch

    from conftest import make_toy_dataset
    from edgeprune.checkpoint import make_meta, save_checkpoint
    from edgeprune.data.dataset import save_npz
    from edgeprune.models import build_model, make_spec

    d = tmp_path_factory.mktemp("lp")
    ds = make_toy_dataset(n_per_key=10, length=64)
    save_npz(d / "toy.npz", ds)
    torch.manual_seed(0)
    spec = make_spec("resnet20-1d", 64, 4)
    save_checkpoint(d / "base.pt", spec, build_model(spec).state_dict(), make_meta(spec, ds.classes))
    spec2 = make_spec("resnet20", 64, 4)
    save_checkpoint(d / "other.pt", spec2, build_model(spec2).state_dict(), make_meta(spec2, ds.classes))
    return d


def _json(capsys, argv):
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_analyze_prune_finetune(setup, capsys):
    d = setup
    a = _json(capsys, ["analyze", "--model", str(d / "base.pt"), "--data", str(d / "toy.npz"), "--out",
                       str(d / "an"), "--batches", "2", "--batch-size", "16", "--segments", "3"])
    plan = json.loads((d / "an" / "plan.json").read_text())
    assert (d / "an" / "similarity.png").stat().st_size > 1000
    assert (d / "an" / "importance.png").stat().st_size > 1000
    assert plan["segments"]["k"] == 3 and len(plan["similarity"]["matrix"]) == 10
    assert a["kept_units"] == plan["kept_units"]
    # same seed, same plan
    b = _json(capsys, ["analyze", "--model", str(d / "base.pt"), "--data", str(d / "toy.npz"), "--out",
                       str(d / "an2"), "--batches", "2", "--batch-size", "16", "--segments", "3", "--no-plots"])
    plan2 = json.loads((d / "an2" / "plan.json").read_text())
    assert plan2["similarity"]["matrix"] == plan["similarity"]["matrix"] and b["kept_units"] == a["kept_units"]

    p = _json(capsys, ["prune", "--method", "layer", "--model", str(d / "base.pt"), "--plan",
                       str(d / "an" / "plan.json"), "--out", str(d / "p.pt")])
    assert p["after"]["macs"] < p["before"]["macs"]
    from edgeprune.checkpoint import load_checkpoint

    ck = load_checkpoint(d / "p.pt")
    step = ck.meta["lineage"][-1]
    assert step["method"] == "layer" and step["plan"]["sha256"] and step["macs_after"] == p["after"]["macs"]

    f = _json(capsys, ["finetune", "--model", str(d / "p.pt"), "--data", str(d / "toy.npz"), "--epochs", "1",
                       "--out", str(d / "ft.pt"), "--distill", str(d / "base.pt")])
    assert f["distill"]["model"] == "resnet20-1d" and 0 <= f["val_acc"] <= 1
    assert load_checkpoint(d / "ft.pt").meta["lineage"][-1]["op"] == "finetune"


def test_prune_budgets_and_errors(setup, capsys):
    d = setup
    base = ["prune", "--model", str(d / "base.pt"), "--plan", str(d / "an" / "plan.json")]
    if not (d / "an" / "plan.json").exists():
        pytest.skip("needs the plan of the first test")
    r = _json(capsys, base + ["--keep-units", "4", "--out", str(d / "k4.pt")])
    assert r["after"]["units"] >= 4
    r = _json(capsys, base + ["--target-macs", "0.6", "--out", str(d / "t.pt")])
    assert abs(r["after"]["macs"] / r["before"]["macs"] - 0.6) <= 0.6 * 0.02

    def err(argv, text):
        assert main(argv) != 0
        assert text in capsys.readouterr().err

    err(base + ["--keep", "9,9,9", "--out", str(d / "x.pt")], "has only")
    err(base + ["--keep", "1,1", "--out", str(d / "x.pt")], "3 blocks")
    # a target below every unit set: the smallest model whole units allow, with one note (not an error)
    r = _json(capsys, base + ["--target-macs", "0.01", "--out", str(d / "small.pt")])
    assert len(r["notes"]) == 1 and "cannot reach 0.01" in r["notes"][0] and "took the smallest" in r["notes"][0]
    assert r["after"]["macs"] < r["before"]["macs"]
    err(["prune", "--model", str(d / "other.pt"), "--plan", str(d / "an" / "plan.json"), "--out", str(d / "x.pt")],
        "plan was made for model")
    err(["prune", "--model", str(d / "base.pt"), "--out", str(d / "x.pt")], "needs --data")


