"""DBP: discrimination-based block-level pruning (Wang et al., arXiv 1912.10178).

A linear probe (multinomial logistic regression) is trained on the output
features of every unit; a unit whose probe accuracy barely improves on the
previous unit's adds little discrimination and is removed first
(:func:`edgeprune.pruning.modular.dbp_method` on the traced units; this module
holds the probe: :func:`featurize` and :func:`probe_accuracy`).

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

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import EdgepruneError

FEATURES = ("pool", "gap", "flatten")


def featurize(t, feature: str = "pool", bins: int = 8):
    """(N, C, ...) activations -> (N, F) probe features (see the module docstring)."""
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


