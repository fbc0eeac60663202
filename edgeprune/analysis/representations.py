"""Unit representations on a few batches of real data, streamed batch by batch.

Each batch is forwarded once; forward hooks on the unit modules capture
their outputs flattened to (samples, features). Only one batch's features
live at a time: the consumer (the similarity accumulator) reduces them to a
units x units matrix before the next batch, so memory is bounded by one
batch whatever the number of batches.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ..errors import EdgepruneError


def sample_batches(n_frames: int, batches: int = 5, batch_size: int = 128, seed: int = 0) -> list[np.ndarray]:
    """Deterministic disjoint batches of frame indices (fewer/smaller when the data is small)."""
    if batches < 1 or batch_size < 1:
        raise EdgepruneError("--batches and --batch-size must be >= 1")
    if n_frames < 4:
        raise EdgepruneError(f"the analysis needs at least 4 frames, the data has {n_frames}")
    perm = np.random.default_rng(seed).permutation(n_frames)
    size = min(batch_size, n_frames)
    count = max(1, min(batches, n_frames // size))
    return [np.sort(perm[i * size:(i + 1) * size]) for i in range(count)]


def iter_unit_features(model, modules, x: np.ndarray, index_batches) -> Iterator[list[np.ndarray]]:
    """For every batch of indices: the outputs of ``modules`` as float32 (samples, features) arrays."""
    store: dict[int, np.ndarray] = {}
    handles = []

    def hook(k):
        def fn(mod, inp, out):
            store[k] = out.detach().reshape(out.shape[0], -1).float().cpu().numpy()
        return fn

    for k, m in enumerate(modules):
        handles.append(m.register_forward_hook(hook(k)))
    was_training = model.training
    model.eval()
    try:
        for idx in index_batches:
            store.clear()
            with torch.no_grad():
                model(torch.from_numpy(np.ascontiguousarray(x[idx])))
            missing = [k for k in range(len(modules)) if k not in store]
            if missing:
                raise EdgepruneError(f"{len(missing)} unit(s) were not called in the forward pass")
            yield [store[k] for k in range(len(modules))]
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
