"""`evaluate --robustness`: accuracy and macro F1 of a model under each camera-like degradation and
severity, with the runtime's quality gate applied alongside (which frames it would refuse)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeleuk.degrade import CONDITIONS, MODERATE, SEVERITIES, degrade
from edgeleuk.files import atomic_path, atomic_write_text
from edgeleuk.manifest import QualityLimits
from edgeleuk.metrics import classification_metrics
from edgeleuk.runtime.quality import assess


@dataclass(frozen=True)
class Suite:
    """Which degradations the robustness suite applies, and how."""

    conditions: list[str] | None = None  # None: every condition
    severities: tuple[int, ...] = SEVERITIES
    seed: int = 0
    limits: QualityLimits | None = None  # the quality gate's (None: the defaults)
    progress: bool = True


def robustness(
    predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray, labels: np.ndarray, suite: Suite = Suite(),
    judged: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]] | None = None
) -> dict[str, Any]:
    """Metrics per condition and severity; `gated_accuracy` counts only frames the quality gate accepts.

    With `judged` (images → probabilities and the in-distribution decision), each cell also gives the
    share the out-of-distribution score flags and the accuracy on the frames it answers.
    """
    if judged is not None:
        predict = lambda x: judged(x)[0]  # noqa: E731 (clean images: accuracy only)
    conditions = suite.conditions or list(CONDITIONS)
    clean = classification_metrics(labels, predict(images))
    results: dict[str, Any] = {
        "clean": {"accuracy": clean["accuracy"], "macro_f1": clean["macro_f1"]},
        "conditions": {},
    }
    frames: list[tuple[float, float, float, float, bool]] = []
    clean_quality = [assess(img, suite.limits) for img in images]
    results["clean"]["accepted"] = float(np.mean([q.usable for q in clean_quality]))
    for condition, severity in _jobs(conditions, suite):
        cell, cell_frames = _cell(predict, judged, images, labels, (condition, severity), suite)
        results["conditions"].setdefault(condition, {})[str(severity)] = cell
        frames += cell_frames
    moderate = {c: v[str(MODERATE)]["accuracy"] for c, v in results["conditions"].items() if str(MODERATE) in v}
    if moderate:
        worst = min(moderate, key=moderate.get)
        results["moderate"] = {"severity": MODERATE, "mean_accuracy": float(np.mean(list(moderate.values()))),
                               "worst_condition": worst, "worst_accuracy": moderate[worst]}
    clean_frames = [(q.focus, q.brightness, q.dark_fraction, q.bright_fraction) for q in clean_quality]
    results["gate_suggestion"] = calibrate_gate(
        np.array(frames, dtype=np.float64), np.array(clean_frames, dtype=np.float64)
    )
    results["_frames"] = (np.array(frames, dtype=np.float64), np.array(clean_frames, dtype=np.float64))  # not written
    return results


def _jobs(conditions: list[str], suite: Suite):
    jobs = [(c, s) for c in conditions for s in suite.severities]
    if suite.progress:
        try:
            from tqdm import tqdm

            return tqdm(jobs, desc="robustness", unit="condition", leave=False)
        except ImportError:
            pass
    return jobs


def _cell(predict, judged, images: np.ndarray, labels: np.ndarray, job: tuple[str, int], suite: Suite):
    """One condition at one severity: its figures, and each frame's quality measures and correctness."""
    condition, severity = job
    degraded = np.stack(
        [degrade(img, condition, severity, seed=suite.seed * 100003 + i) for i, img in enumerate(images)]
    )
    probs, answered = judged(degraded) if judged is not None else (predict(degraded), None)
    m = classification_metrics(labels, probs)
    quality = [assess(img, suite.limits) for img in degraded]
    accepted = np.array([q.usable for q in quality])
    correct = probs.argmax(1) == labels
    frames = [(q.focus, q.brightness, q.dark_fraction, q.bright_fraction, bool(ok)) for q, ok in zip(quality, correct)]
    cell = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "accepted": float(accepted.mean()),
            "gated_accuracy": float(correct[accepted].mean()) if accepted.any() else None}
    if answered is not None:
        cell.update(flagged=float(1 - answered.mean()),
                    answered_accuracy=float(correct[answered].mean()) if answered.any() else None)
    return cell, frames


# measure column, side of failure ("low": small values fail), threshold field, whether the suite sweeps
# that measure (blur and exposure do; nothing in it makes pixels black, so the dark fraction is not gated by data)
_GATE = ((0, "low", "min_focus", True), (1, "low", "min_brightness", True), (1, "high", "max_brightness", True),
         (2, "high", "max_dark_fraction", False), (3, "high", "max_bright_fraction", True))


def calibrate_gate(frames: np.ndarray, clean: np.ndarray, target: float = 0.9, min_share: float = 0.005,
                   max_clean_rejected: float = 0.01) -> dict[str, Any]:
    """Thresholds that reject the frames the model is known to fail on.

    For each measure, frames are ordered from its bad extreme inward. The threshold is the innermost
    point where both the frames beyond it (the tail) and the `min_share` of the suite just beyond it
    (the band at its edge, the tail's innermost part) are classified correctly less than `target` of the time. The
    tail alone
    mixes a failing extreme with good frames nearer the middle: on the shipped model it put the
    brightness limit at 240, where frames are 98% correct. A band alone finds clusters of hard images
    anywhere in the range. Where no tail fails, the threshold is the edge of what the suite covered
    (its `min_share` quantile): beyond it the model is untested, so the frame is refused. Either way
    it is then relaxed until at most `max_clean_rejected` of the clean images would be rejected.
    """
    correct = frames[:, 4].astype(bool)
    out: dict[str, Any] = {"target_accuracy": target, "frames": int(len(frames)), "basis": {}}
    band = max(1, int(min_share * len(frames)))
    for column, side, name, swept in _GATE:
        values = frames[:, column]
        order = np.argsort(values if side == "low" else -values, kind="stable")
        hits = np.concatenate([[0], np.cumsum(correct[order])])
        count = np.arange(1, len(values) + 1)
        tail = hits[1:] / count
        edge = np.full(len(values), np.inf)
        edge[band - 1:] = (hits[band:] - hits[:-band]) / band
        ok = (tail < target) & (edge < target)
        if ok.any():
            cut = int(np.nonzero(ok)[0].max())
            threshold = float(values[order][cut])
            out["basis"][name] = (f"frames beyond it: {tail[cut]:.1%} correct ({cut + 1} frames); "
                                  f"the {band} frames at its edge: {edge[cut]:.1%}")
        elif swept:
            threshold = float(np.quantile(values, min_share if side == "low" else 1 - min_share))
            out["basis"][name] = "edge of the range the suite covered (no failing tail)"
        else:
            out["basis"][name] = "not covered by the suite: keep the default"
            continue
        clean_values = clean[:, column]
        limit = np.quantile(clean_values, max_clean_rejected if side == "low" else 1 - max_clean_rejected)
        threshold = min(threshold, float(limit)) if side == "low" else max(threshold, float(limit))
        out[name] = round(threshold, 4)
    return out


def format_robustness(results: dict[str, Any]) -> str:
    sev = sorted({s for v in results["conditions"].values() for s in v}, key=int)
    lines = [f"clean: accuracy {results['clean']['accuracy']*100:.2f}%, macro F1 {results['clean']['macro_f1']:.4f}",
             "accuracy % by severity (gate: share of frames the quality gate accepts at that severity)",
             f"{'condition':<18}" + "".join(f"{'s' + s:>8}" for s in sev) + "   gate"]
    for condition, row in results["conditions"].items():
        gate = "/".join(f"{row[s]['accepted']*100:.0f}" for s in sev)
        lines.append(f"{condition:<18}" + "".join(f"{row[s]['accuracy']*100:>8.1f}" for s in sev) + "   " + gate)
    if any("flagged" in row[s] for row in results["conditions"].values() for s in row):
        lines.append("out of distribution % by severity (the OOD score's flags; accuracy on the frames it answers)")
        for condition, row in results["conditions"].items():
            cells = [
                f"{row[s]['flagged'] * 100:>5.1f} ({row[s]['answered_accuracy'] * 100:.1f})"
                if row[s].get("answered_accuracy") is not None
                else f"{row[s].get('flagged', 0) * 100:>5.1f} (—)"
                for s in sev
            ]
            lines.append(f"{condition:<18}" + "".join(f"{c:>14}" for c in cells))
    if "gate_suggestion" in results:
        g = results["gate_suggestion"]
        lines.append("quality gate from this suite (rejects where accuracy < {:.0%}): ".format(g["target_accuracy"]) +
                     ", ".join(f"{k} {v}" for k, v in g.items() if k not in ("target_accuracy", "frames", "basis")))
    if "moderate" in results:
        m = results["moderate"]
        lines.append(
            f"severity {m['severity']}: mean accuracy {m['mean_accuracy'] * 100:.2f}%, worst {m['worst_condition']} "
            f"{m['worst_accuracy'] * 100:.2f}%"
        )
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
    ax.set_xticks(range(len(sev)), sev)
    ax.set_xlabel("severity")
    ax.set_yticks(range(len(conditions)), conditions)
    for i in range(len(conditions)):
        for j in range(len(sev)):
            ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="accuracy %")
    ax.set_title(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)


def write_robustness(results: dict[str, Any], out: Path, title: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    public = {k: v for k, v in results.items() if not k.startswith("_")}
    atomic_write_text(out / "robustness.json", json.dumps(public, indent=2) + "\n")
    plot_robustness(results, out / "robustness.png", title)
