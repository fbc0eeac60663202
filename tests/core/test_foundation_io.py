import os

import numpy as np
import pytest
import torch

from edgeprune.atomic import atomic_path, write_json
from edgeprune.checkpoint import load_checkpoint, make_meta, save_checkpoint
from edgeprune.data.dataset import SignalDataset, load_npz, save_npz
from edgeprune.data.split import filter_snr, split_indices
from edgeprune.errors import EdgepruneError
from edgeprune.models import build_model, make_spec


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    p = tmp_path / "a.json"
    write_json(p, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("crash")
    assert p.read_text().strip().startswith("{")
    assert os.listdir(tmp_path) == ["a.json"]


def test_checkpoint_roundtrip_weights_only(tmp_path):
    spec = make_spec("resnet20-1d", 64, 4)
    model = build_model(spec).eval()
    p = tmp_path / "m.pt"
    save_checkpoint(p, spec, model.state_dict(), make_meta(spec, list("abcd")))
    ck = load_checkpoint(p)
    x = torch.randn(2, 2, 64)
    assert torch.equal(ck.build()(x), model(x))
    assert ck.meta["macs"] > 0 and ck.classes == list("abcd")
    # weights_only: the raw file loads under the safe loader
    torch.load(p, weights_only=True)


def test_checkpoint_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path}/pwned",))

    p = tmp_path / "evil.pt"
    torch.save({"format": "edgeprune-checkpoint", "x": Evil()}, p)
    with pytest.raises(EdgepruneError, match="refused"):
        load_checkpoint(p)
    assert not (tmp_path / "pwned").exists()


def test_checkpoint_truncated(tmp_path, toy_checkpoint):
    data = toy_checkpoint.read_bytes()
    p = tmp_path / "t.pt"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(EdgepruneError, match="truncated or corrupt"):
        load_checkpoint(p)


def test_npz_roundtrip_and_validation(tmp_path, toy_dataset):
    p = tmp_path / "d.npz"
    save_npz(p, toy_dataset)
    ds = load_npz(p)
    assert np.array_equal(ds.x, toy_dataset.x) and ds.classes == toy_dataset.classes
    bad = toy_dataset.x.copy()
    bad[3, 0, 5] = np.nan
    with pytest.raises(EdgepruneError, match="NaN or Inf"):
        SignalDataset(bad, toy_dataset.y, toy_dataset.snr, toy_dataset.classes)
    with pytest.raises(EdgepruneError, match=r"\(N, 2, L\)"):
        SignalDataset(toy_dataset.x[:, :1], toy_dataset.y, toy_dataset.snr, toy_dataset.classes)


def test_split_is_stratified_disjoint_and_seeded(toy_dataset):
    tr, va, te = split_indices(toy_dataset.y, toy_dataset.snr, seed=3)
    assert len(set(tr) | set(va) | set(te)) == len(toy_dataset)
    assert not (set(tr) & set(va)) and not (set(tr) & set(te)) and not (set(va) & set(te))
    # every (class, SNR) group contributes 60/20/20
    for k in range(4):
        for s in (0.0, 10.0):
            grp = np.flatnonzero((toy_dataset.y == k) & (toy_dataset.snr == s))
            assert len(np.intersect1d(grp, tr)) == round(0.6 * len(grp))
    again = split_indices(toy_dataset.y, toy_dataset.snr, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again))
    assert not np.array_equal(tr, split_indices(toy_dataset.y, toy_dataset.snr, seed=4)[0])


def test_snr_filter(toy_dataset):
    hi = filter_snr(toy_dataset, min_snr=10)
    assert set(hi.snr.tolist()) == {10.0}
    with pytest.raises(EdgepruneError, match="no frames left"):
        filter_snr(toy_dataset, min_snr=50)
