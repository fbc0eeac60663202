"""Plots of a plan: the similarity heatmap with segment boundaries and kept units, and importance per unit.

matplotlib (Agg) is imported lazily; a missing matplotlib is a clear error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..errors import require


def _plt():
    mpl = require("matplotlib", "plotting the analysis")
    mpl.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _kept_positions(plan):
    pos = {u["layer"]: u["position"] for u in plan["units"]}
    return [pos[k] for k in plan["kept_units"] if k in pos]


def plot_similarity(plan: dict[str, Any], path) -> Path:
    """Heatmap of the similarity matrix; white lines at block boundaries, kept units marked."""
    plt = _plt()
    m = np.asarray(plan["similarity"]["matrix"], dtype=float)
    n = len(m)
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=110)
    im = ax.imshow(m, cmap="viridis", origin="upper", interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=plan["similarity"]["metric"])
    for a, _ in plan["segments"]["bounds"][1:]:
        ax.axhline(a - 0.5, color="white", lw=1.5)
        ax.axvline(a - 0.5, color="white", lw=1.5)
    kp = _kept_positions(plan)
    ax.scatter(kp, kp, marker="*", s=90, c="red", edgecolors="white", linewidths=0.6, label="kept", zorder=3)
    ax.set_xlabel("unit position (0 = stem)" if plan["units"] and plan["units"][0]["role"] == "stem" else "unit position")
    ax.set_ylabel("unit position")
    ax.set_title(f"{plan['model']}: {plan['similarity']['metric']} similarity, K={plan['segments']['k']}")
    step = max(1, n // 14)
    ax.set_xticks(range(0, n, step))
    ax.set_yticks(range(0, n, step))
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, plt, path)


def plot_importance(plan: dict[str, Any], path) -> Path:
    """Importance score of every scored unit, blocks shaded, kept units highlighted."""
    plt = _plt()
    pos = {u["layer"]: u["position"] for u in plan["units"]}
    imp = plan["importance"]
    scores = {int(k): float(v) for k, v in imp.get("values", imp["scores"]).items()}
    xs = [pos[k] for k in scores]
    ys = [scores[k] for k in scores]
    kept = set(plan["kept_units"])
    colors = ["tab:red" if k in kept else "tab:blue" for k in scores]
    fig, ax = plt.subplots(figsize=(7.2, 3.6), dpi=110)
    for i, (a, b) in enumerate(plan["segments"]["bounds"]):
        ax.axvspan(a - 0.5, b - 0.5, color="0.9" if i % 2 == 0 else "white", zorder=0)
    ax.bar(xs, ys, color=colors, zorder=2)
    lo, hi = (min(ys), max(ys)) if ys else (0, 1)
    if ys and lo > 0:
        pad = (hi - lo) * 0.15 or abs(hi) * 0.01 or 1.0
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("unit position")
    ax.set_ylabel(f"{plan['importance']['proxy']} score")
    ax.set_title(f"{plan['model']}: importance per unit (red = kept; {plan['importance']['rule']})")
    return _save(fig, plt, path)


def _save(fig, plt, path) -> Path:
    path = Path(path)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
