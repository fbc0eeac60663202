"""Evaluation plots: accuracy vs SNR and the confusion matrix (matplotlib, Agg, imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..errors import require


def _pyplot():
    mpl = require("matplotlib", "plotting evaluation results")
    mpl.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return path


def plot_accuracy_vs_snr(result: dict[str, Any], path: str | Path, title: str | None = None) -> Path:
    """Line plot of accuracy per SNR from an :func:`evaluate` result; writes a PNG atomically."""
    plt = _pyplot()
    snr = [r["snr"] for r in result["per_snr"]]
    acc = [100.0 * r["accuracy"] for r in result["per_snr"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    try:
        ax.plot(snr, acc, marker="o")
        width = result["per_snr"][0].get("bin_db") if result["per_snr"] else None
        ax.set_xlabel(f"SNR (dB, {width:g} dB bins)" if width else "SNR (dB)")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(True, alpha=0.3)
        ax.set_title(title or f"accuracy vs SNR (overall {100 * result['accuracy']:.1f}%, {result['frames']} frames)")
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def plot_confusion(result: dict[str, Any], path: str | Path, title: str | None = None) -> Path:
    """Confusion matrix normalised per true class (recall on the diagonal), with counts; writes a PNG."""
    plt = _pyplot()
    conf = np.asarray(result["confusion"], dtype=np.float64)
    rows = conf.sum(1, keepdims=True)
    norm = np.divide(conf, rows, out=np.zeros_like(conf), where=rows > 0)
    classes = result["classes"]
    n = len(classes)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    try:
        im = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        ax.set_xticklabels(classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticklabels(classes, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if n <= 24:
            for i in range(n):
                for j in range(n):
                    if conf[i, j]:
                        ax.text(j, i, f"{int(conf[i, j])}", ha="center", va="center", fontsize=6,
                                color="white" if norm[i, j] > 0.5 else "black")
        ax.set_title(title or "confusion matrix (counts; colour = per-class recall)")
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def plot_evaluation(result: dict[str, Any], folder: str | Path, prefix: str = "") -> dict[str, str]:
    """Both plots into ``folder`` (created if needed): ``accuracy_vs_snr.png`` and ``confusion.png``."""
    folder = Path(folder)
    return {
        "accuracy_vs_snr": str(plot_accuracy_vs_snr(result, folder / f"{prefix}accuracy_vs_snr.png")),
        "confusion": str(plot_confusion(result, folder / f"{prefix}confusion.png")),
    }
