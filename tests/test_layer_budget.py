"""The layer method's --target-macs: within 2% of the target whenever whole units allow it, else a clear error."""

from __future__ import annotations

import numpy as np
import pytest

from edgeprune.models import make_spec
from edgeprune.models.macs import model_stats
from edgeprune.pruning.budget import counts_for_macs, counts_for_macs_matched, fill_sequence
from edgeprune.pruning.macs_target import TargetUnreachable
from edgeprune.pruning.reassembly import spec_macs


def _blocks(spec, n_blocks, seed):
    """Removable units cut into ``n_blocks`` contiguous blocks, ranked by random scores (lowest kept first)."""
    from edgeprune.analysis.units import removable_units

    units = [u.layer for u in removable_units(spec)]
    rng = np.random.default_rng(seed)
    cuts = sorted(rng.choice(np.arange(1, len(units)), n_blocks - 1, replace=False))
    blocks = [list(b) for b in np.split(np.array(units), cuts)]
    scores = {u: float(rng.random()) for u in units}
    ranked = [sorted((int(u) for u in b), key=lambda u: (scores[u], u)) for b in blocks]
    return ranked, scores


@pytest.mark.parametrize("name,n_blocks,seed", [("resnet56-1d", 4, 0), ("resnet56-1d", 6, 1), ("resnet56", 5, 2)])
def test_every_reachable_fraction_is_hit_within_2_percent(name, n_blocks, seed):
    """Any fraction that some kept set (one unit per block at least) reaches, the method reaches within 2%."""
    spec = make_spec(name, 64, 4)
    base = model_stats(spec)["macs"]
    ranked, scores = _blocks(spec, n_blocks, seed)
    rng = np.random.default_rng(seed + 10)
    rules = set()
    for _ in range(25):
        kept = [b[0] for b in ranked] + [u for b in ranked for u in b[1:] if rng.random() < rng.random()]
        f = spec_macs(spec, kept) / base
        m = counts_for_macs_matched(spec, f, ranked, scores)
        assert abs(m.macs / base - f) <= 0.02 * f + 1e-12, (f, m.summary())
        chosen = [u for b in m.chosen for u in b]
        assert spec_macs(spec, chosen) == m.macs           # the units reported are the ones costed
        assert all(len(c) >= 1 for c in m.chosen)           # every block keeps a unit
        rules.add(m.rule)
    assert "fill" in rules                                  # the paper's rule answers first when it can


def test_fill_rule_is_kept_when_it_lands_in_the_window():
    spec = make_spec("resnet56-1d", 64, 4)
    ranked, scores = _blocks(spec, 4, 3)
    base = model_stats(spec)["macs"]
    seen = set()
    for f in np.linspace(0.3, 0.95, 14):
        fill, macs = counts_for_macs(spec, float(f) * 1.02, ranked, scores)
        try:
            m = counts_for_macs_matched(spec, float(f), ranked, scores)
        except TargetUnreachable:
            assert macs < 0.98 * f * base
            continue
        if macs >= 0.98 * f * base:
            assert m.rule == "fill" and m.counts == fill
        else:
            assert m.rule in ("counts", "units")
        seen.add(m.rule)
    assert "fill" in seen


def test_fill_sequence_starts_with_one_unit_per_block_and_covers_all():
    spec = make_spec("resnet56-1d", 64, 4)
    ranked, scores = _blocks(spec, 5, 4)
    seq = fill_sequence(ranked, scores)
    assert seq[:5] == [b[0] for b in ranked]
    assert sorted(seq) == sorted(u for b in ranked for u in b)


def test_unreachable_targets_name_the_nearest_achievable():
    spec = make_spec("resnet56-1d", 64, 4)
    base = model_stats(spec)["macs"]
    ranked, scores = _blocks(spec, 4, 0)
    # below the smallest network
    small = spec_macs(spec, [b[0] for b in ranked]) / base
    with pytest.raises(TargetUnreachable, match="unreachable") as e:
        counts_for_macs_matched(spec, small * 0.5, ranked, scores)
    assert e.value.nearest == pytest.approx(small)
    # between two whole-unit steps: find a target no kept set reaches within 2%
    reach = sorted({spec_macs(spec, [b[0] for b in ranked] + [u for b in ranked for u in b[1:k]]) / base
                    for k in range(1, 20)})
    gaps = [(a, b) for a, b in zip(reach, reach[1:]) if b / a > 1.05]
    a, b = gaps[0]
    f = (a + b) / 2
    with pytest.raises(TargetUnreachable, match="nearest achievable") as e:
        counts_for_macs_matched(spec, f, ranked, scores, tolerance=0.001)
    assert abs(e.value.nearest - f) > 0.001 * f
    m = counts_for_macs_matched(spec, e.value.nearest, ranked, scores, tolerance=0.001)   # the named one is real
    assert m.macs / base == pytest.approx(e.value.nearest, rel=1e-3)


@pytest.mark.parametrize("bad", [0, -0.5, 1.2, float("nan"), "x"])
def test_bad_targets_and_tolerances(bad):
    from edgeprune.errors import EdgepruneError

    spec = make_spec("resnet20-1d", 64, 4)
    ranked, scores = _blocks(spec, 3, 0)
    with pytest.raises(EdgepruneError, match="target-macs"):
        counts_for_macs_matched(spec, bad, ranked, scores)
    with pytest.raises(EdgepruneError, match="tolerance"):
        counts_for_macs_matched(spec, 0.5, ranked, scores, tolerance=bad if bad != 0 else 1.5)
