"""Check each converted variant against the Keras model, in the runtime that will run it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeleuk.metrics import classification_metrics


def parity(variant_probs: np.ndarray, keras_probs: np.ndarray, labels: np.ndarray | None) -> dict[str, Any]:
    """Top-class agreement with Keras, largest probability difference, and accuracy when labelled."""
    row: dict[str, Any] = {
        "agreement": float((variant_probs.argmax(1) == keras_probs.argmax(1)).mean()),
        "max_prob_diff": float(np.abs(variant_probs - keras_probs).max()),
        "n": int(len(variant_probs)),
        "predictions": variant_probs.argmax(1).tolist(),  # per image, in the evaluated part's order
    }
    if labels is not None:
        m = classification_metrics(labels, variant_probs)
        row.update(accuracy=m["accuracy"], macro_f1=m["macro_f1"])
    return row


def format_report(rows: list[dict[str, Any]]) -> str:
    """Terminal/markdown table of the parity report."""
    head = "| variant | size | accuracy | macro F1 | agreement | max Δp | convert s |"
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        acc = f"{r['accuracy']*100:.2f}%" if r.get("accuracy") is not None else "—"
        f1 = f"{r['macro_f1']:.4f}" if r.get("macro_f1") is not None else "—"
        agree = f"{r['agreement']*100:.2f}%" if r.get("agreement") is not None else "—"
        diff = f"{r['max_prob_diff']:.4f}" if r.get("max_prob_diff") is not None else "—"
        secs = f"{r['conversion_seconds']:.1f}" if r.get("conversion_seconds") is not None else "—"
        lines.append(f"| {r['variant']} | {r['size_bytes']/1e6:.2f} MB | {acc} | {f1} | {agree} | {diff} | {secs} |")
    return "\n".join(lines)


def keras_size(path: Path) -> int:
    return path.stat().st_size
