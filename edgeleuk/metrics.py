"""Classification metrics for evaluate, train, validate and the conversion parity report (numpy;
scikit-learn only inside classification_metrics, so the device can import the rest)."""

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


def calibration_error(confidence, correct, bins: int = 15) -> float:
    """Gap between confidence and accuracy, weighted over equal-width confidence bins (ECE)."""
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (confidence > lo) & (confidence <= hi)
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    return calibration_error(probs.max(axis=1), probs.argmax(axis=1) == y_true, bins)


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, labels: tuple[str, ...] | None = None
) -> dict[str, Any]:
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
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "labels": list(labels),
        "confusion": confusion_matrix(y_true, y_pred, labels=index).tolist(),
    }


def trailing(values: dict[str, float], points: float = 2.0) -> list[str]:
    """The keys whose share is more than `points` percentage points below the mean of the others'."""
    if len(values) < 2:
        return []
    return [
        k
        for k, v in values.items()
        if (sum(o for c, o in values.items() if c != k) / (len(values) - 1) - v) * 100 > points
    ]


def weak_classes(m: dict[str, Any], points: float = 2.0) -> list[str]:
    """Classes whose recall is more than `points` below the mean recall of the other classes."""
    return trailing({k: row["recall"] for k, row in m["per_class"].items() if row["support"]}, points)


def format_metrics(m: dict[str, Any], title: str = "") -> str:
    """A terminal table of the metrics."""
    lo, hi = m["accuracy_ci95"]
    labels = m["labels"]
    w = max(8, *(len(name) + 2 for name in labels))
    lines = [title] if title else []
    lines.append(
        f"accuracy {m['accuracy'] * 100:.2f}% (95% CI {lo * 100:.1f}–{hi * 100:.1f}%, n={m['n']})  "
        f"macro P {m['macro_precision']:.4f}  R {m['macro_recall']:.4f}  F1 {m['macro_f1']:.4f}  ECE {m['ece']:.4f}"
    )
    lines.append(f"{'class':<{w}}{'precision':>10}{'recall':>9}{'f1':>8}{'support':>9}")
    for label, row in m["per_class"].items():
        lines.append(f"{label:<{w}}{row['precision']:>10.4f}{row['recall']:>9.4f}{row['f1']:>8.4f}{row['support']:>9d}")
    lines.append("confusion (rows: true, columns: predicted)")
    lines.append(" " * w + "".join(f"{name:>{w}}" for name in labels))
    for name, row in zip(labels, m["confusion"]):
        lines.append(f"{name:<{w}}" + "".join(f"{v:>{w}d}" for v in row))
    for name in weak_classes(m):
        lines.append(
            f"note: {name} recall {m['per_class'][name]['recall'] * 100:.1f}% is more than 2 points below the other "
            "classes'"
        )
    return "\n".join(lines)


MIN_CONFIDENCE = 0.8  # run's default: a pooled verdict below it refers


def sample_verdicts(probs: np.ndarray, truth: np.ndarray, groups: list[str], labels: tuple[str, ...],
                    min_confidence: float = MIN_CONFIDENCE) -> dict[str, Any]:
    """Each group's fields pooled by the run loop's own Verdict: right, wrong or referred, and margins."""
    from edgeleuk.runtime.verdict import Verdict

    rows = []
    for g in sorted(set(groups)):
        members = [i for i, name in enumerate(groups) if name == g]
        verdict = Verdict(labels, min_confidence)
        for p in probs[members]:
            verdict.add(p)
        true = labels[int(np.bincount(truth[members]).argmax())]
        rows.append(
            {
                "group": g,
                "class": true,
                "decision": verdict.decision,
                "confidence": round(verdict.confidence, 4),
                "margin": round(verdict.confidence - min_confidence, 4) if verdict.decision == true else None,
            }
        )
    right = [r for r in rows if r["margin"] is not None]
    return {"n": len(rows), "right": len(right), "accuracy": len(right) / len(rows) if rows else None,
            "lowest_margin": min((r["margin"] for r in right), default=None), "rows": rows}
