"""Grouped cross-validation (`train --cv K`): K models, each tested on a fold of groups (patients)
it never saw, on the training and validation parts only (the test part stays the final judge).
Per fold and as mean ± spread: field accuracy, macro F1, recall per class, and the sample-level
verdict (a group's fields pooled as `run` pools them) with the lowest margin by which a right
verdict passed min_confidence."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from edgeleuk.files import atomic_write_text
from edgeleuk.metrics import MIN_CONFIDENCE, sample_verdicts, trailing


def fold_figures(metrics: dict[str, Any], verdicts: dict[str, Any]) -> dict[str, Any]:
    return {
        "n": metrics["n"],
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "recall": {k: v["recall"] for k, v in metrics["per_class"].items()},
        "samples": verdicts["n"],
        "verdict_accuracy": verdicts["accuracy"],
        "lowest_margin": verdicts["lowest_margin"],
        "weak_samples": [r["group"] for r in verdicts["rows"] if r["margin"] is None or r["margin"] < 0.1],
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def summarise(folds: list[dict[str, Any]], labels: tuple[str, ...]) -> dict[str, Any]:
    out = {key: _spread([f[key] for f in folds if f[key] is not None])
           for key in ("accuracy", "macro_f1", "verdict_accuracy") if any(f[key] is not None for f in folds)}
    out["recall"] = {label: _spread([f["recall"][label] for f in folds]) for label in labels}
    margins = [f["lowest_margin"] for f in folds if f["lowest_margin"] is not None]
    out["lowest_margin"] = min(margins) if margins else None
    return out


def format_cv(doc: dict[str, Any]) -> str:
    labels = doc["labels"]
    head = [
        "fold", "fields", "accuracy", "macro F1", *[f"recall {k}" for k in labels], "samples", "verdicts right",
        "lowest margin"
    ]
    rows = []
    for i, f in enumerate(doc["folds"], 1):
        margin = "—" if f["lowest_margin"] is None else f"{f['lowest_margin']:.3f}"
        verdicts = "—" if f["verdict_accuracy"] is None else f"{f['verdict_accuracy']:.1%}"
        rows.append([str(i), str(f["n"]), f"{f['accuracy']:.2%}", f"{f['macro_f1']:.4f}",
                     *[f"{f['recall'][k]:.2%}" for k in labels], str(f["samples"]), verdicts, margin])
    s = doc["summary"]

    def pm(key: str, fmt: str) -> str:
        return "—" if key not in s else f"{format(s[key]['mean'], fmt)} ± {format(s[key]['sd'], fmt)}"

    rows.append(
        [
            "mean ± sd",
            "",
            pm("accuracy", ".2%"),
            pm("macro_f1", ".4f"),
            *[f"{s['recall'][k]['mean']:.2%} ± {s['recall'][k]['sd']:.2%}" for k in labels],
            "",
            pm("verdict_accuracy", ".1%"),
            "—" if s["lowest_margin"] is None else f"{s['lowest_margin']:.3f}",
        ]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    weak = trailing({k: s["recall"][k]["mean"] for k in labels})
    if weak:
        lines.append(
            f"\nnote: recall of {', '.join(weak)} is more than 2 points below the other classes' (mean over folds)"
        )
    return "\n".join(lines)


def write_cv(doc: dict[str, Any], out: Path) -> None:
    atomic_write_text(out / "cv.json", json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(
        out / "cv.md", f"# Grouped {len(doc['folds'])}-fold cross-validation\n\n{doc['note']}\n\n{format_cv(doc)}\n"
    )


def cross_validate(
    config, found, group_of: dict[Path, str], pool: list, data: tuple[np.ndarray, np.ndarray, np.ndarray], out: Path
) -> dict[str, Any]:
    """K models on grouped folds of `pool` (the training and validation parts), each the run's own
    recipe; `data`: every sample's images, labels and cached base features, in scan order."""
    import keras

    from edgeleuk.metrics import classification_metrics
    from edgeleuk.split import make_folds
    from edgeleuk.train.steps import Arrays, fine_tune, fit_head, fresh_model

    images, labels, feats = data
    index = {s.path: i for i, s in enumerate(found.samples)}
    results = []
    for i, fold in enumerate(make_folds(pool, config.cv, group_of, seed=config.seed), 1):
        parts = _fold_parts(config, (i, fold), pool, index, group_of)
        keras.utils.set_random_seed(config.seed + i)
        model = fresh_model(config, found.labels)
        folder = out / "cv" / f"fold{i}"
        folder.mkdir(parents=True, exist_ok=True)
        fit_head(model, Arrays(feats, labels, parts), config, [], folder)
        test = parts["test"]
        if config.fine_tune:
            fine_tune(model, Arrays(images, labels, parts), config, [], folder)
            probs = model.predict(images[test], batch_size=64, verbose=0)
        else:
            probs = model.get_layer("dense_1")(model.get_layer("dense")(feats[test])).numpy()
        metrics = classification_metrics(labels[test], probs, found.labels)
        verdicts = sample_verdicts(probs, labels[test], [group_of[found.samples[j].path] for j in test], found.labels)
        results.append(fold_figures(metrics, verdicts))
        print(f"fold {i}: accuracy {metrics['accuracy']:.2%}, macro F1 {metrics['macro_f1']:.4f}, "
              f"sample verdicts right {verdicts['right']} of {verdicts['n']}", flush=True)
    recipe = f"fine-tuned from {config.fine_tune_from}" if config.fine_tune else "frozen base (stage 1)"
    doc = {
        "k": config.cv,
        "labels": list(found.labels),
        "folds": results,
        "summary": summarise(results, found.labels),
        "note": f"{len(pool)} images of the training and validation parts, in {config.cv} folds that never split a "
        f"group; the recipe: {recipe}, {config.input_size} px, alpha {config.alpha}; verdicts pool each group's "
        f"fields at min_confidence {MIN_CONFIDENCE}",
    }
    write_cv(doc, out)
    print(format_cv(doc))
    return doc


def _fold_parts(config, numbered: tuple, pool: list, index: dict, group_of: dict) -> dict[str, np.ndarray]:
    """The fold's training, validation and test rows; a fold with an empty part is an error."""
    i, fold = numbered
    parts = {
        p: np.array([index[s.path] for s in pool if fold.assignment[s.path] == p]) for p in ("train", "val", "test")
    }
    sizes = ", ".join(f"{p} {len(ix)}" for p, ix in parts.items())
    print(f"cross-validation fold {i} of {config.cv}: {sizes}", flush=True)
    if any(len(ix) == 0 for ix in parts.values()):
        from edgeleuk.errors import UserError

        raise UserError(
            f"--cv {config.cv}: fold {i} has an empty part ({sizes}); "
            f"{len(set(group_of[s.path] for s in pool))} groups are too few for {config.cv} folds: use fewer folds"
        )
    return parts
