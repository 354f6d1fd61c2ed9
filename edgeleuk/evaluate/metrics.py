"""Classification metrics for evaluate, train and the conversion parity report (scikit-learn)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np



def wilson_interval(correct: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion: honest at small n and near 100%."""
    if total == 0:
        return (0.0, 1.0)
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    """Gap between confidence and accuracy, weighted over equal-width confidence bins."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (confidence > lo) & (confidence <= hi)
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, labels: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Accuracy with its 95% CI, per-class and macro precision/recall/F1, confusion matrix, ECE.

    `labels`: the class names in output order (None: class_0, class_1, … for figures that need none)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = labels or tuple(f"class_{i}" for i in range(probs.shape[1]))
    y_true = np.asarray(y_true)
    y_pred = probs.argmax(axis=1)
    index = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=index, zero_division=0)
    macro = precision_recall_fscore_support(y_true, y_pred, labels=index, average="macro", zero_division=0)
    correct = int((y_true == y_pred).sum())
    lo, hi = wilson_interval(correct, len(y_true))
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "accuracy_ci95": [lo, hi],
        "macro_precision": float(macro[0]),
        "macro_recall": float(macro[1]),
        "macro_f1": float(macro[2]),
        "ece": expected_calibration_error(probs, y_true),
        "per_class": {
            label: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, label in enumerate(labels)
        },
        "labels": list(labels),
        "confusion": confusion_matrix(y_true, y_pred, labels=index).tolist(),
    }


def weak_classes(m: dict[str, Any], points: float = 2.0) -> list[str]:
    """Classes whose recall is more than `points` below the mean recall of the other classes."""
    recall = {k: row["recall"] for k, row in m["per_class"].items() if row["support"]}
    if len(recall) < 2:
        return []
    return [k for k, r in recall.items()
            if (sum(v for c, v in recall.items() if c != k) / (len(recall) - 1) - r) * 100 > points]


def format_metrics(m: dict[str, Any], title: str = "") -> str:
    """A terminal table of the metrics."""
    lo, hi = m["accuracy_ci95"]
    labels = m["labels"]
    w = max(8, *(len(name) + 2 for name in labels))
    lines = [title] if title else []
    lines.append(f"accuracy {m['accuracy']*100:.2f}% (95% CI {lo*100:.1f}–{hi*100:.1f}%, n={m['n']})  "
                 f"macro P {m['macro_precision']:.4f}  R {m['macro_recall']:.4f}  F1 {m['macro_f1']:.4f}  ECE {m['ece']:.4f}")
    lines.append(f"{'class':<{w}}{'precision':>10}{'recall':>9}{'f1':>8}{'support':>9}")
    for label, row in m["per_class"].items():
        lines.append(f"{label:<{w}}{row['precision']:>10.4f}{row['recall']:>9.4f}{row['f1']:>8.4f}{row['support']:>9d}")
    lines.append("confusion (rows: true, columns: predicted)")
    lines.append(" " * w + "".join(f"{name:>{w}}" for name in labels))
    for name, row in zip(labels, m["confusion"]):
        lines.append(f"{name:<{w}}" + "".join(f"{v:>{w}d}" for v in row))
    for name in weak_classes(m):
        lines.append(f"note: {name} recall {m['per_class'][name]['recall']*100:.1f}% is more than 2 points below the other classes'")
    return "\n".join(lines)


MIN_CONFIDENCE = 0.8  # run's default: a pooled verdict below it refers


def sample_verdicts(probs: np.ndarray, truth: np.ndarray, groups: list[str], labels: tuple[str, ...],
                    min_confidence: float = MIN_CONFIDENCE) -> dict[str, Any]:
    """Each group's fields pooled (mean probabilities, as Verdict does): right, wrong or referred, and margins."""
    rows = []
    for g in sorted(set(groups)):
        members = [i for i, name in enumerate(groups) if name == g]
        mean = probs[members].mean(0)
        top, true = int(mean.argmax()), int(np.bincount(truth[members]).argmax())
        decision = labels[top] if mean[top] >= min_confidence else "refer to a specialist"
        rows.append({"group": g, "class": labels[true], "decision": decision, "confidence": round(float(mean[top]), 4),
                     "margin": round(float(mean[top]) - min_confidence, 4) if decision == labels[true] else None})
    right = [r for r in rows if r["margin"] is not None]
    return {"n": len(rows), "right": len(right), "accuracy": len(right) / len(rows) if rows else None,
            "lowest_margin": min((r["margin"] for r in right), default=None), "rows": rows}
