"""The iterative criterion (``iterative-ablation``) against ground truth on networks built so that the answer is known."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeprune.analysis.importance import criterion_values, keep_keys, select_per_unit

# the outcomes below come from trained or analysed networks: .ci/run runs them again on ATen's plain kernels
pytestmark = pytest.mark.numerics


class CopyUp(nn.Module):
    """h1 <- max(h1, h0): copies the class signal h0 into the channel the head reads. Two of these are redundant."""

    def forward(self, h):
        return torch.stack([h[:, 0], torch.maximum(h[:, 1], h[:, 0])], 1)


class Sharpen(nn.Module):
    """h1 <- 0.5 + a (h1 - 0.5): widens the margin a little (mildly useful on its own)."""

    def __init__(self, a):
        super().__init__()
        self.a = a

    def forward(self, h):
        return torch.stack([h[:, 0], 0.5 + self.a * (h[:, 1] - 0.5)], 1)


class Head(nn.Module):
    def forward(self, h):
        d = 4.0 * (h[:, 1] - 0.5)
        return torch.stack([-d, d], 1)


def _interacting():
    net = nn.Sequential(CopyUp(), CopyUp(), Sharpen(1.5), Sharpen(1.4), Head()).eval()
    y = np.arange(20) % 2
    x = np.stack([0.1 + 0.8 * y, np.zeros(20)], 1).astype(np.float32)
    units = {"A": net[0], "B": net[1], "C": net[2], "D": net[3]}
    return net, units, x, y


def _accuracy_without(net, removed, x, y):
    """Ground truth: the network rebuilt with the removed units swapped for nn.Identity, evaluated."""
    mods = [nn.Identity() if str("ABCD"[i]) in removed else m for i, m in enumerate(list(net)[:4])] + [net[4]]
    with torch.no_grad():
        pred = nn.Sequential(*mods)(torch.from_numpy(x)).argmax(1).numpy()
    return float((pred == y).mean())


def test_iterative_keeps_one_of_two_redundant_units_where_single_ablation_removes_both():
    net, units, x, y = _interacting()
    order = list(units)
    keep = {}
    for name in ("ablation", "iterative-ablation"):
        v = criterion_values(name, net, units, order=order, x=x, y=y)
        keep[name] = select_per_unit([order], [2], keep_keys(name, v))[0]
    # single-unit ablation: removing A or B alone changes nothing, so both go
    assert sorted(keep["ablation"]) == ["C", "D"]
    # the iterative criterion removes one copy, re-measures, and then the other copy is the last to go
    assert len({"A", "B"} & set(keep["iterative-ablation"])) == 1
    # ground truth: what each choice leaves of the network
    gone = {n: set(order) - set(k) for n, k in keep.items()}
    assert _accuracy_without(net, gone["iterative-ablation"], x, y) == 1.0
    assert _accuracy_without(net, gone["ablation"], x, y) == 0.5


def test_iterative_order_is_greedy_elimination_by_hand():
    """Each step removes the unit whose removal (with the ones already gone) gives the lowest loss, recomputed
    here by swapping modules for nn.Identity; the step index is the value."""
    torch.manual_seed(0)

    class Res(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.Conv1d(c, c, 3, padding=1)

        def forward(self, x):
            return torch.relu(x + self.conv(x))

    net = nn.Sequential(nn.Conv1d(2, 8, 3, padding=1), Res(8), Res(8), Res(8), Res(8), nn.AdaptiveAvgPool1d(1),
                        nn.Flatten(), nn.Linear(8, 3)).eval()
    x = torch.randn(48, 2, 16)
    y = torch.randint(0, 3, (48,))
    units = {str(i): net[i] for i in (1, 2, 3, 4)}
    got = criterion_values("iterative-ablation", net, units, x=x.numpy(), y=y.numpy())

    def loss_without(removed):
        mods = [nn.Identity() if str(i) in removed else m for i, m in enumerate(net)]
        with torch.no_grad():
            return float(F.cross_entropy(nn.Sequential(*mods)(x).double(), y))

    gone, want = [], {}
    remaining = list(units)
    while remaining:
        losses = [loss_without(gone + [k]) for k in remaining]
        pick = remaining[int(np.argmin(losses))]
        if len(remaining) > 1:   # the fixture keeps every step's choice clear of rounding
            assert sorted(losses)[1] - min(losses) > 1e-6
        want[pick] = float(len(gone))
        gone.append(pick)
        remaining.remove(pick)
    assert got == want


def test_iterative_is_registered_and_needs_labels():
    from edgeprune.analysis.importance import CRITERIA, get_criterion
    from edgeprune.errors import EdgepruneError

    c = get_criterion("iterative-ablation")
    assert c.needs_labels and c.higher_kept and "iterative-ablation" in CRITERIA
    net, units, x, y = _interacting()
    with pytest.raises(EdgepruneError, match="labelled"):
        criterion_values("iterative-ablation", net, units, x=x, y=None)
