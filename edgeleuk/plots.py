"""Figures for run folders: training curves and confusion matrices (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeleuk.files import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")


def plot_curves(history: list[dict[str, Any]], path: str | Path) -> None:
    """Accuracy and loss per epoch, train and validation, with stage boundaries."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = list(range(1, len(history) + 1))
    for ax, key in zip(axes, ("accuracy", "loss")):
        ax.plot(epochs, [h.get(key) for h in history], label=f"train {key}")
        ax.plot(epochs, [h.get(f"val_{key}") for h in history], label=f"validation {key}")
        for i in range(1, len(history)):
            if history[i]["stage"] != history[i - 1]["stage"]:
                ax.axvline(i + 0.5, color="grey", linestyle=":", label="fine-tuning starts")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, Path(path))
    plt.close(fig)


def plot_confusion(metrics: dict[str, Any], path: str | Path, title: str = "") -> None:
    plt = _pyplot()
    import numpy as np
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ConfusionMatrixDisplay(np.array(metrics["confusion"]), display_labels=metrics["labels"]).plot(
        ax=ax, colorbar=False, cmap="Blues"
    )
    ax.set_title(title or f"accuracy {metrics['accuracy']*100:.1f}% (n={metrics['n']})")
    _save(fig, Path(path))
    plt.close(fig)
