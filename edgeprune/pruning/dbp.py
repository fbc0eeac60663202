"""DBP: discrimination-based block-level pruning (Wang et al., arXiv 1912.10178).

A linear probe (multinomial logistic regression) is trained on the output
features of every unit; a unit whose probe accuracy barely improves on the
previous unit's adds little discrimination and is removed first. The kept
units are reassembled by the layer-pruning machinery and fine-tuned like
every other method.

The exact rule used here (the paper's code and threshold are not public):

1. Data: the checkpoint's own training split (probe training, at most
   ``probe_train`` frames) and validation split (probe accuracy, at most
   ``probe_val`` frames), subsets drawn with ``seed``. The test split is never
   used.
2. Features: each unit's output with its spatial axes flattened and
   average-pooled to ``bins`` bins per channel (``feature="pool"``, default
   8 bins), or global-average-pooled (``"gap"``), or flattened whole
   (``"flatten"``). The input frame itself, featurised the same way, is the
   reference before the first unit; the stem (when the model has one) is a
   probed unit that is never removed.
3. Probe: standardised features (training mean/std), one ``nn.Linear``
   trained full-batch with Adam (lr 0.01, ``probe_steps`` steps, weight decay
   1e-4), seeded. Score = accuracy on the validation subset.
4. Gain of a unit = its probe accuracy minus the accuracy of the unit (or
   input) just before it.
5. Removal order: removable units by ascending gain (ties: the deeper unit
   first). With ``--target-macs F`` units are removed in this order by the
   matched-MACs walk (:func:`edgeprune.pruning.macs_target.search_unit_set`),
   which skips a unit whose removal would undershoot the budget. Without a
   target, ``gain_threshold`` t removes every removable unit whose gain is
   below t (the paper's thresholding form).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import EdgepruneError
from .macs_target import DEFAULT_TOLERANCE, check_target, match_depth
from .registry import PruneResult, builtin_method

FEATURES = ("pool", "gap", "flatten")


def featurize(t, feature: str = "pool", bins: int = 8):
    """(N, C, ...) activations -> (N, F) probe features (see the module docstring)."""
    import torch.nn.functional as F

    if feature not in FEATURES:
        raise EdgepruneError(f"unknown DBP feature {feature!r}; choose one of: {', '.join(FEATURES)}")
    if t.dim() == 2:
        return t
    n, c = t.shape[:2]
    flat = t.reshape(n, c, -1)
    if feature == "flatten":
        return flat.reshape(n, -1)
    if feature == "gap":
        return flat.mean(-1)
    return F.adaptive_avg_pool1d(flat, min(int(bins), flat.shape[-1])).reshape(n, -1)


def probe_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                   num_classes: int, steps: int = 150, lr: float = 0.01, weight_decay: float = 1e-4,
                   seed: int = 0) -> float:
    """Validation accuracy of a logistic-regression probe trained on ``x_train``."""
    import torch
    import torch.nn.functional as F

    if len(x_train) == 0 or len(x_val) == 0:
        raise EdgepruneError("the DBP probes need non-empty training and validation frames")
    xt = torch.as_tensor(np.asarray(x_train, np.float32))
    xv = torch.as_tensor(np.asarray(x_val, np.float32))
    mean = xt.mean(0, keepdim=True)
    std = xt.std(0, keepdim=True).clamp_min(1e-6)
    xt, xv = (xt - mean) / std, (xv - mean) / std
    yt = torch.as_tensor(np.asarray(y_train, np.int64))
    g = torch.Generator().manual_seed(int(seed))
    probe = torch.nn.Linear(xt.shape[1], num_classes)
    with torch.no_grad():
        probe.weight.copy_(torch.randn(probe.weight.shape, generator=g) * 0.01)
        probe.bias.zero_()
    opt = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(int(steps)):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(probe(xt), yt).backward()
            opt.step()
    with torch.no_grad():
        pred = probe(xv).argmax(1).numpy()
    return float((pred == np.asarray(y_val)).mean())


def probe_units(model, spec: dict[str, Any], train, val, *, feature: str = "pool", bins: int = 8,
                probe_train: int = 2048, probe_val: int = 1024, steps: int = 150, seed: int = 0,
                batch_size: int = 256) -> list[dict[str, Any]]:
    """Probe accuracy and gain of every unit (stem included), in network order.

    Returns one dict per unit: layer, position, removable, accuracy, gain.
    The input frame's probe accuracy is the reference of the first unit.
    """
    import torch

    from ..analysis.units import discover_units

    units = discover_units(spec)
    if not units:
        raise EdgepruneError(f"model {spec.get('name')!r} has no units to probe")
    rng = np.random.default_rng([int(seed), 7])
    it = np.sort(rng.permutation(len(train))[:probe_train])
    iv = np.sort(rng.permutation(len(val))[:probe_val])
    if len(it) < 2 or len(iv) < 1:
        raise EdgepruneError("the DBP probes need at least 2 training and 1 validation frames")
    layers = [u.layer for u in units]

    def collect(ds, idx):
        feats: list[list] = [[] for _ in range(len(layers) + 1)]
        model.eval()
        with torch.no_grad():
            for s in range(0, len(idx), batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(ds.x[idx[s:s + batch_size]]))
                feats[0].append(featurize(xb, feature, bins).numpy())
                _, out = model.forward_features(xb, layers)
                for k, l in enumerate(layers):
                    feats[k + 1].append(featurize(out[l], feature, bins).numpy())
        return [np.concatenate(f) for f in feats]

    ft, fv = collect(train, it), collect(val, iv)
    yt, yv = train.y[it], val.y[iv]
    nc = int(spec["num_classes"])
    accs = [probe_accuracy(ft[k], yt, fv[k], yv, nc, steps=steps, seed=seed) for k in range(len(layers) + 1)]
    rows = []
    for k, u in enumerate(units):
        rows.append({"layer": u.layer, "position": u.position, "removable": bool(u.removable),
                     "accuracy": accs[k + 1], "previous_accuracy": accs[k], "gain": accs[k + 1] - accs[k]})
    return rows


def removal_order(rows: Sequence[dict[str, Any]]) -> list[int]:
    """Removable units' layer indices, lowest probe gain first (ties: deeper first)."""
    cand = [r for r in rows if r["removable"]]
    return [r["layer"] for r in sorted(cand, key=lambda r: (r["gain"], -r["layer"]))]


@builtin_method("dbp")   # help and options: edgeprune.pruning.catalogue
def dbp(ckpt, data, *, target_macs=None, seed: int = 0, tolerance: float | None = None,
        gain_threshold: float | None = None, feature: str | None = None, bins: int | None = None,
        probe_train: int | None = None, probe_val: int | None = None, probe_steps: int | None = None,
        transition: str | None = None, **options) -> PruneResult:
    """Probe every unit, then remove the least discriminative ones (see the module docstring)."""
    from ..models.macs import model_stats
    from ..data.split import resolve_split
    from .reassembly import reassemble

    if data is None:
        raise EdgepruneError("dbp needs data to train its linear probes (--data)")
    if target_macs is None and gain_threshold is None:
        raise EdgepruneError("dbp needs --target-macs F (or a gain_threshold)")
    fraction = check_target(target_macs) if target_macs is not None else None
    tol = DEFAULT_TOLERANCE if tolerance is None else tolerance
    feature = feature or "pool"
    if feature not in FEATURES:
        raise EdgepruneError(f"unknown DBP feature {feature!r}; choose one of: {', '.join(FEATURES)}")
    transition = transition or "keep"
    (train, val, _), split_info = resolve_split(ckpt, data)
    model = ckpt.build()
    rows = probe_units(model, ckpt.spec, train, val, feature=feature, bins=bins or 8,
                       probe_train=probe_train or 2048, probe_val=probe_val or 1024,
                       steps=probe_steps or 150, seed=seed)
    order = removal_order(rows)
    info: dict[str, Any] = {"probes": rows, "order": order}
    if fraction is not None:
        new_spec, new_state, report, match = match_depth(ckpt.spec, ckpt.state_dict, order, fraction, tol,
                                                         transition, seed, what="dbp")
        removed = list(match.setting)
        info["match"] = match.summary()
        info["search"] = match.steps
        if match.note:
            info["notes"] = [match.note]
    else:
        gains = {r["layer"]: r["gain"] for r in rows}
        removed = [l for l in order if gains[l] < float(gain_threshold)]
        keep = [r["layer"] for r in rows
                if r["layer"] not in set(removed) and ckpt.spec["layers"][r["layer"]].get("role") == "unit"]
        new_spec, new_state, report = reassemble(ckpt.spec, ckpt.state_dict, keep, transition=transition, seed=seed)
    unused = sorted(k for k, v in options.items() if v is not None)
    if unused:
        info["ignored_options"] = unused
    info["reassembly"] = report
    lineage = {
        "method": "dbp",
        "options": {"feature": feature, "bins": bins or 8, "probe_train": probe_train or 2048,
                    "probe_val": probe_val or 1024, "probe_steps": probe_steps or 150,
                    "gain_threshold": gain_threshold, "tolerance": tol, "transition": transition},
        "seed": seed,
        "target_macs": fraction,
        "macs_before": int(model_stats(ckpt.spec)["macs"]),
        "macs_after": int(report["macs_after"]),
        "removed_units": removed,
        "kept_units": report.get("kept_units"),
        "probe_accuracy": {str(r["layer"]): r["accuracy"] for r in rows},
        "split": split_info,
    }
    return PruneResult(new_spec, new_state, lineage, info)
