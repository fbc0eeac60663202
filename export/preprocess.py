"""Per-frame normalisation applied before inference (numpy only, torch-free).

The one definition lives in ``edgeprune.data.dataset.normalize_frames`` (the
data pipeline uses it to make training frames); the deploy side applies the
same function so a bundle sees frames exactly as the model was trained on:

- ``none``: frames are used as given;
- ``l1``: each frame is divided by the sum over samples of the complex
  magnitude sqrt(I^2 + Q^2) (the RML2016 convention);
- ``l2``: divided by the root of the summed power;
- ``max``: divided by the peak magnitude.

Each leaves an already-normalised frame unchanged, so normalising twice is harmless.
"""

from __future__ import annotations

import numpy as np

from edgeprune.data.dataset import NORMALIZATIONS, normalize_frames
from edgeprune.errors import EdgepruneError

DESCRIPTIONS = {
    "none": "frames are used as given",
    "l1": "each frame (2 x L) is divided by the sum over its samples of sqrt(I^2 + Q^2)",
    "l2": "each frame is divided by the square root of its summed power sum(I^2 + Q^2)",
    "max": "each frame is divided by its peak magnitude max sqrt(I^2 + Q^2)",
}


def check_normalization(name) -> str:
    name = "none" if name in (None, "") else str(name).lower()
    if name not in NORMALIZATIONS:
        raise EdgepruneError(f"unknown normalisation {name!r}; known: {', '.join(NORMALIZATIONS)}")
    return name


def normalize(frames: np.ndarray, name) -> np.ndarray:
    """Return float32 frames (N, 2, L) normalised per frame by ``name``."""
    return normalize_frames(np.asarray(frames, dtype=np.float32), check_normalization(name))


def describe(name) -> str:
    name = check_normalization(name)
    return DESCRIPTIONS.get(name, name)
