"""`evaluate --ood`: what the device does with frames unlike the training data.

Every set goes through the device's own run loop (quality gate, magnification check, the model, the
out-of-distribution score, the sample verdict), one set as one sample, so the figures are what
`edgeleuk run` would do with those frames: the share flagged or refused, and the verdict.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from edgeleuk.runtime.classifier import infer_all
from edgeleuk.runtime.session import RunOptions, run
from edgeleuk.runtime.sources import Frame


class ArraySource:
    """Model-sized RGB images held in memory, as a run source."""

    def __init__(self, images: np.ndarray, name: str):
        self.images, self.name = images, name

    def frames(self) -> Iterator[Frame]:
        for i, image in enumerate(self.images):
            yield Frame(i, image, f"{self.name}-{i:04d}", color_order="RGB")

    def close(self) -> None:
        pass


def run_sample(classifier, images: np.ndarray, name: str, options: RunOptions | None = None) -> dict[str, Any]:
    """One set through the run loop as one sample: refused, flagged and answered shares, and the verdict."""
    summary, verdict = run(classifier, ArraySource(images, name), options or RunOptions(status="off"))
    n = max(summary.seen, 1)
    refused = sum(summary.refused.values())
    return {
        "frames": summary.seen,
        "refused": refused / n,
        "refused_by_reason": dict(summary.refused),
        "unreadable": summary.errors / n,
        "out_of_distribution": summary.out_of_distribution / n,
        "flagged_share_of_usable": summary.out_of_distribution / max(summary.accepted + summary.out_of_distribution, 1),
        "flagged_or_refused": (refused + summary.errors + summary.out_of_distribution) / n,
        "answered": summary.accepted / n,
        "verdict": verdict.decision,
    }


def ood_evaluation(
    classifier, parts: dict[str, tuple[np.ndarray, np.ndarray]], ood_sets: dict[str, np.ndarray]
) -> dict[str, Any]:
    """In-distribution parts (whole, and each class of the test part as its own sample) and the OOD sets."""
    result: dict[str, Any] = {
        "model": classifier.name,
        "judged": classifier.ood is not None,
        "parts": {},
        "test_by_class": {},
        "ood_sets": {},
    }
    if classifier.ood is not None:
        result["thresholds"] = {c.features: c.threshold for c in classifier.ood.stats.components}
        result["calibration"] = classifier.ood.stats.calibration
    for name, (images, labels) in parts.items():
        row = run_sample(classifier, images, name)
        probs, features = infer_all(classifier, images)
        scores = classifier.judge(features, images, probs)
        if scores is not None:
            answered = classifier.ood.in_distribution(scores)
            row["accuracy_answered"] = float((probs.argmax(1) == labels)[answered].mean()) if answered.any() else None
            row["flagged"] = float(1 - answered.mean())
        row["accuracy"] = float((probs.argmax(1) == labels).mean())
        result["parts"][name] = row
    if "test" in parts:
        images, labels = parts["test"]
        for c, label in enumerate(classifier.labels):
            if np.any(labels == c):
                result["test_by_class"][label] = run_sample(classifier, images[labels == c], f"test-{label}")
    for name, images in ood_sets.items():
        result["ood_sets"][name] = run_sample(classifier, images, name)
    rows = result["ood_sets"].values()
    if rows:
        result["ood_min_flagged_or_refused"] = min(r["flagged_or_refused"] for r in rows)
        result["ood_verdicts_naming_a_class"] = sum(r["verdict"] in classifier.labels for r in rows)
    return result


def format_ood(result: dict[str, Any]) -> str:
    lines = [
        f"out-of-distribution check of {result['model']}"
        + ("" if result["judged"] else " (the model carries no statistics: it cannot judge)")
    ]
    if "thresholds" in result:
        limits = ", ".join(f"{k} {v:.3f}" for k, v in result["thresholds"].items())
        lines.append(f"thresholds {limits}: {result['calibration']}")
    lines.append(
        f"{'in distribution':<22}{'frames':>7}{'refused':>9}{'flagged':>9}{'acc. all':>10}{'acc. answered':>15}  "
        "verdict"
    )
    for name, r in result["parts"].items():
        acc = f"{r['accuracy_answered'] * 100:.2f}%" if r.get("accuracy_answered") is not None else "—"
        lines.append(f"{name:<22}{r['frames']:>7}{r['refused'] * 100:>8.1f}%{r['out_of_distribution'] * 100:>8.1f}%"
                     f"{r['accuracy'] * 100:>9.2f}%{acc:>15}  {r['verdict']}")
    for label, r in result["test_by_class"].items():
        lines.append(
            f"{'test, ' + label:<22}{r['frames']:>7}{r['refused'] * 100:>8.1f}%{r['out_of_distribution'] * 100:>8.1f}%"
            f"{'':>9} {'':>15}  {r['verdict']}"
        )
    lines.append(f"{'out of distribution':<22}{'frames':>7}{'refused':>9}{'flagged':>9}{'either':>10}  verdict")
    for name, r in result["ood_sets"].items():
        lines.append(f"{name:<22}{r['frames']:>7}{r['refused'] * 100:>8.1f}%{r['out_of_distribution'] * 100:>8.1f}%"
                     f"{r['flagged_or_refused'] * 100:>9.1f}%  {r['verdict']}")
    if "ood_min_flagged_or_refused" in result:
        lines.append(f"lowest share flagged or refused: {result['ood_min_flagged_or_refused'] * 100:.1f}%; "
                     f"sample verdicts naming a class: {result['ood_verdicts_naming_a_class']}")
    return "\n".join(lines)
