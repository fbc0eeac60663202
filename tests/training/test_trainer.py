import numpy as np
import pytest
import torch

from edgeprune.checkpoint import load_checkpoint, make_meta
from edgeprune.data.split import split_dataset
from edgeprune.models import build_model, make_spec
from edgeprune.training.trainer import TrainConfig, accuracy, fit

# the outcomes below come from trained or analysed networks: .ci/run runs them again on ATen's plain kernels
pytestmark = pytest.mark.numerics


def _setup(ds):
    torch.manual_seed(0)
    spec = make_spec("resnet20-1d", ds.length, len(ds.classes))
    return spec, build_model(spec)


def test_fit_learns_and_selects_on_validation(tmp_path, toy_dataset):
    tr, va, te = split_dataset(toy_dataset, seed=0)
    spec, model = _setup(toy_dataset)
    before = accuracy(model, te)
    out = tmp_path / "m.pt"
    m = fit(model, spec, tr, va, TrainConfig(epochs=4, batch_size=32, seed=0), out, make_meta(spec, toy_dataset.classes),
            log_path=tmp_path / "log.jsonl")
    ck = load_checkpoint(out)
    assert ck.meta["metrics"]["best_epoch"] == m["best_epoch"]
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 4
    assert accuracy(ck.build(), te) > max(before, 0.5)
    assert not (tmp_path / "m.pt.state").exists()


def test_fit_is_deterministic_and_resume_matches(tmp_path, toy_dataset):
    tr, va, _ = split_dataset(toy_dataset, seed=0)
    cfg = TrainConfig(epochs=3, batch_size=32, seed=5)
    spec, model = _setup(toy_dataset)
    fit(model, spec, tr, va, cfg, tmp_path / "a.pt", make_meta(spec, toy_dataset.classes))
    # interrupted after 2 epochs (the state file is what a killed run leaves), then resumed
    spec, model = _setup(toy_dataset)
    fit(model, spec, tr, va, TrainConfig(epochs=2, batch_size=32, seed=5), None, make_meta(spec, toy_dataset.classes))
    spec, model = _setup(toy_dataset)
    cfg2 = TrainConfig(epochs=3, batch_size=32, seed=5)
    import edgeprune.training.trainer as T

    orig = T._save_state
    calls = []

    def crash_after_two(path, model, opt, sched, epoch, *a):
        orig(path, model, opt, sched, epoch, *a)
        calls.append(epoch)
        if epoch == 1:
            raise KeyboardInterrupt

    T._save_state = crash_after_two
    try:
        try:
            fit(model, spec, tr, va, cfg2, tmp_path / "b.pt", make_meta(spec, toy_dataset.classes))
        except KeyboardInterrupt:
            pass
    finally:
        T._save_state = orig
    assert (tmp_path / "b.pt.state").exists() and not (tmp_path / "b.pt").exists()
    spec, model = _setup(toy_dataset)
    fit(model, spec, tr, va, cfg2, tmp_path / "b.pt", make_meta(spec, toy_dataset.classes), resume=True)
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    for k in a.state_dict:
        assert torch.equal(a.state_dict[k], b.state_dict[k]), k
    assert a.meta["metrics"]["val_acc"] == b.meta["metrics"]["val_acc"]
    assert np.isfinite(a.meta["metrics"]["val_acc"])


class _Oracle(torch.nn.Module):
    """Predicts the class written into sample x[:, 0, 0] (so the expected confusion is known exactly)."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    def forward(self, x):
        return torch.nn.functional.one_hot(x[:, 0, 0].long(), self.n).float()


def test_evaluate_counts_exactly():
    import pytest

    from edgeprune.data.dataset import SignalDataset
    from edgeprune.training.evaluate import evaluate

    y = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    pred = np.array([0, 0, 1, 1, 1, 2, 0, 2])
    snr = np.array([-2, 4, -2, -2, 4, 4, -2, 4], np.float32)  # both mistakes at -2 dB
    x = np.zeros((8, 2, 16), np.float32)
    x[:, 0, 0] = pred
    r = evaluate(_Oracle(3), SignalDataset(x, y, snr, ["a", "b", "c"]), batch_size=3)
    assert r["frames"] == 8 and r["correct"] == 6 and r["accuracy"] == 0.75
    assert r["confusion"] == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert r["per_snr"] == [{"snr": -2.0, "frames": 4, "correct": 2, "accuracy": 0.5},
                            {"snr": 4.0, "frames": 4, "correct": 4, "accuracy": 1.0}]
    assert [c["recall"] for c in r["per_class"]] == pytest.approx([2 / 3, 1.0, 2 / 3])


def test_align_classes_by_name_and_mismatch():
    import pytest

    from edgeprune.data.dataset import SignalDataset
    from edgeprune.errors import EdgepruneError
    from edgeprune.data.dataset import align_classes

    ds = SignalDataset(np.zeros((3, 2, 8), np.float32), np.array([0, 1, 2]), np.zeros(3), ["b", "c", "a"])
    al = align_classes(ds, ["a", "b", "c"])
    assert al.classes == ["a", "b", "c"] and al.y.tolist() == [1, 2, 0]
    assert align_classes(ds, ["b", "c", "a"]) is ds
    with pytest.raises(EdgepruneError, match="missing from the data: d; unknown to the checkpoint: a"):
        align_classes(ds, ["b", "c", "d"])


def test_evaluate_takes_a_checkpoint_path_and_checks_length(toy_checkpoint, toy_dataset):
    import pytest

    from edgeprune.errors import EdgepruneError
    from edgeprune.training.evaluate import evaluate
    from conftest import make_toy_dataset

    r = evaluate(toy_checkpoint, toy_dataset)
    assert r["frames"] == len(toy_dataset) and np.array(r["confusion"]).sum() == len(toy_dataset)
    with pytest.raises(EdgepruneError, match="128 samples but the checkpoint expects 64"):
        evaluate(str(toy_checkpoint), make_toy_dataset(n_per_key=2, length=128))


def test_ddp_only_settings_do_not_block_resume():
    from edgeprune.training.trainer import _resumable

    assert _resumable(TrainConfig(device="cuda", threads=4)) == _resumable(TrainConfig())
    assert _resumable(TrainConfig(lr=0.1)) != _resumable(TrainConfig())
