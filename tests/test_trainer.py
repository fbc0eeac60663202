import numpy as np
import torch

from edgeprune.checkpoint import load_checkpoint, make_meta
from edgeprune.data.split import split_dataset
from edgeprune.models import build_model, make_spec
from edgeprune.training.trainer import TrainConfig, accuracy, fit


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
