"""`evaluate --robustness`: accuracy and macro F1 of a model under each camera-like degradation and
severity, with the runtime's quality gate applied alongside (which frames it would refuse)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeleuk.degrade import CONDITIONS, MODERATE, SEVERITIES, degrade
from edgeleuk.manifest import atomic_write_text
from edgeleuk.metrics import classification_metrics
from edgeleuk.runtime.quality import QualityThresholds, assess


def robustness(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray, labels: np.ndarray,
               conditions: list[str] | None = None, severities: tuple[int, ...] = SEVERITIES, seed: int = 0,
               thresholds: QualityThresholds | None = None, progress: bool = True) -> dict[str, Any]:
    """Metrics per condition and severity; `gated_accuracy` counts only frames the quality gate accepts."""
    conditions = conditions or list(CONDITIONS)
    clean = classification_metrics(labels, predict(images))
    results: dict[str, Any] = {"clean": {"accuracy": clean["accuracy"], "macro_f1": clean["macro_f1"]}, "conditions": {}}
    jobs = [(c, s) for c in conditions for s in severities]
    iterator = jobs
    if progress:
        try:
            from tqdm import tqdm

            iterator = tqdm(jobs, desc="robustness", unit="condition", leave=False)
        except ImportError:
            pass
    for condition, severity in iterator:
        degraded = np.stack([degrade(img, condition, severity, seed=seed * 100003 + i) for i, img in enumerate(images)])
        probs = predict(degraded)
        m = classification_metrics(labels, probs)
        accepted = np.array([assess(img, thresholds).usable for img in degraded])
        correct = probs.argmax(1) == labels
        results["conditions"].setdefault(condition, {})[str(severity)] = {
            "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "accepted": float(accepted.mean()),
            "gated_accuracy": float(correct[accepted].mean()) if accepted.any() else None}
    moderate = {c: v[str(MODERATE)]["accuracy"] for c, v in results["conditions"].items() if str(MODERATE) in v}
    if moderate:
        worst = min(moderate, key=moderate.get)
        results["moderate"] = {"severity": MODERATE, "mean_accuracy": float(np.mean(list(moderate.values()))),
                               "worst_condition": worst, "worst_accuracy": moderate[worst]}
    return results


def format_robustness(results: dict[str, Any]) -> str:
    sev = sorted({s for v in results["conditions"].values() for s in v}, key=int)
    lines = [f"clean: accuracy {results['clean']['accuracy']*100:.2f}%, macro F1 {results['clean']['macro_f1']:.4f}",
             "accuracy % by severity (gate: share of frames the quality gate accepts at that severity)",
             f"{'condition':<18}" + "".join(f"{'s' + s:>8}" for s in sev) + f"{'gate':>14}"]
    for condition, row in results["conditions"].items():
        gate = "/".join(f"{row[s]['accepted']*100:.0f}" for s in sev)
        lines.append(f"{condition:<18}" + "".join(f"{row[s]['accuracy']*100:>8.1f}" for s in sev) + f"{gate:>14}")
    if "moderate" in results:
        m = results["moderate"]
        lines.append(f"severity {m['severity']}: mean accuracy {m['mean_accuracy']*100:.2f}%, worst {m['worst_condition']} "
                     f"{m['worst_accuracy']*100:.2f}%")
    return "\n".join(lines)


def plot_robustness(results: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = list(results["conditions"])
    sev = sorted({s for v in results["conditions"].values() for s in v}, key=int)
    grid = np.array([[results["conditions"][c][s]["accuracy"] * 100 for s in sev] for c in conditions])
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(sev), 0.9 + 0.38 * len(conditions)))
    im = ax.imshow(grid, cmap="RdYlGn", vmin=50, vmax=100, aspect="auto")
    ax.set_xticks(range(len(sev)), [f"severity {s}" for s in sev])
    ax.set_yticks(range(len(conditions)), conditions)
    for i in range(len(conditions)):
        for j in range(len(sev)):
            ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="accuracy %")
    ax.set_title(title)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


def write_robustness(results: dict[str, Any], out: Path, title: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "robustness.json", json.dumps(results, indent=2) + "\n")
    plot_robustness(results, out / "robustness.png", title)
