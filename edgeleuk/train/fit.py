"""Train the study's classifier: stage 1 on cached base features, optional stage 2 fine-tuning."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edgeleuk.dataset import Scan, load_arrays, scan
from edgeleuk.errors import UserError
from edgeleuk.files import atomic_path, atomic_write_text
from edgeleuk.groups import assign_groups
from edgeleuk.manifest import PreprocessSpec, sha256_file
from edgeleuk.metrics import classification_metrics, format_metrics
from edgeleuk.split import Split, make_split, near_duplicates_across, read_split, write_split
from edgeleuk.train.config import TrainConfig
from edgeleuk.train.run_folder import prepare_out, save_clean, write_run_manifest
from edgeleuk.train.steps import Arrays, fine_tune, fit_head, fresh_model

__all__ = ["TrainConfig", "train"]


def _cache_file(config: TrainConfig, shas: list[str]) -> Path | None:
    if config.feature_cache == "off":
        return None
    base = Path(config.feature_cache) if config.feature_cache else Path.home() / ".cache" / "edgeleuk" / "features"
    return base / f"{_cache_key(config, shas)}.npy"


def _cache_key(config: TrainConfig, shas: list[str]) -> str:
    weights = config.weights
    if config.init_from:  # the features are the source model's base
        from edgeleuk.train.adapt import source_file

        weights = sha256_file(source_file(config.init_from))
    elif Path(weights).is_file():
        weights = sha256_file(weights)
    text = json.dumps([weights, config.alpha, config.input_size, shas])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _features(model, images: np.ndarray, cache: Path | None, batch: int = 64) -> np.ndarray:
    from edgeleuk.train.model import feature_extractor

    if cache is not None and cache.is_file():
        print(f"base features: cached ({cache})")
        return np.load(cache)
    start = time.perf_counter()
    feats = feature_extractor(model).predict(images, batch_size=batch, verbose=1)
    print(f"base features: {len(images)} images in {time.perf_counter() - start:.1f} s")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp:
            np.save(tmp, feats)
    return feats


def _teacher_targets(config: TrainConfig, samples: list, train_rows: np.ndarray) -> np.ndarray:
    """The teacher's softened probabilities on the clean training images, at the teacher's own input
    size (offline distillation: computed once; the student then sees them under its augmentations)."""
    from edgeleuk.keras_file import load_keras

    teacher = load_keras(config.teacher, "--teacher")
    size = int(teacher.input_shape[1])
    images, _ = load_arrays([samples[i] for i in train_rows], PreprocessSpec(size=size))
    probs = teacher.predict(images, batch_size=32, verbose=0)
    logits = np.log(np.clip(probs, 1e-7, 1.0)) / config.distill_temperature
    soft = np.exp(logits - logits.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    print(
        f"distillation: {config.teacher} ({size}×{size}) soft labels on {len(images)} training images, "
        f"T={config.distill_temperature}, "
        f"weight {config.distill_weight}"
    )
    return soft.astype(np.float32)


def train(config: TrainConfig, overwrite: bool = False) -> dict[str, Any]:
    """Run the whole training stage into config.out; returns the test metrics."""

    started = time.perf_counter()
    out = Path(config.out)
    created = prepare_out(out, overwrite)
    try:
        if config.init_from:
            from edgeleuk.train.adapt import resolve

            config = resolve(config)
        return _train(config, out, started)
    except BaseException as exc:
        if created and not isinstance(exc, KeyboardInterrupt):  # a failed run leaves nothing behind
            shutil.rmtree(out, ignore_errors=True)
        raise


def _train(config: TrainConfig, out: Path, started: float) -> dict[str, Any]:
    import keras

    from edgeleuk import plots
    from edgeleuk.train.callbacks import write_history

    found, split, images, labels, group_of = _data(config, out)
    parts = {
        p: np.array([i for i, s in enumerate(found.samples) if split.assignment[s.path] == p])
        for p in ("train", "val", "test")
    }
    print("split: " + ", ".join(f"{p} {len(ix)}" for p, ix in parts.items()))
    if any(len(ix) == 0 for ix in parts.values()):
        raise UserError("a split part is empty: " + ", ".join(f"{p} {len(ix)}" for p, ix in parts.items())
                        + "; each class needs enough groups (patients) for train, test and val: add images or groups")
    keras.utils.set_random_seed(config.seed)
    model = fresh_model(config, found.labels)
    rehearsal = _rehearsal(config, found.labels, out)
    rows: list[dict] = []
    interrupted, frozen = False, None
    try:
        feats = _features(model, images, _cache_file(config, [s.sha256 for s in found.samples]))
        if config.cv:
            from edgeleuk.train.cv import cross_validate

            pool = [s for s in found.samples if split.assignment[s.path] != "test"]
            cross_validate(config, found, group_of, pool, (images, labels, feats), out)
        fit_head(model, Arrays(*_head_data(model, config, (feats, labels, parts), rehearsal)), config, rows, out)
        frozen_probs = model.get_layer("dense_1")(model.get_layer("dense")(feats[parts["test"]])).numpy()
        frozen = classification_metrics(labels[parts["test"]], frozen_probs, found.labels)
        print(format_metrics(frozen, "test, frozen base (the study's recipe):"))
        if config.fine_tune:
            soft = _teacher_targets(config, list(found.samples), parts["train"]) if config.teacher else None
            fine_tune(model, Arrays(images, labels, parts, soft, rehearsal), config, rows, out)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: keeping the best weights so far and writing the run folder")
    probs = model.predict(images[parts["test"]], batch_size=64, verbose=0)
    metrics = classification_metrics(labels[parts["test"]], probs, found.labels)
    print(format_metrics(metrics, "test, final model:"))
    first = _first_site(model, rehearsal, found.labels)
    model_path = out / "model.keras"
    save_clean(model, model_path)
    seconds = time.perf_counter() - started
    write_history(rows, out / "history.csv")
    summary = {"test": metrics, "test_frozen": frozen, "train_seconds": round(seconds, 1),
               "interrupted": interrupted, "split": {p: int(len(ix)) for p, ix in parts.items()}}
    if first is not None:
        summary["test_first_site"] = first
    atomic_write_text(out / "metrics.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "config.json", json.dumps(asdict(config), indent=2) + "\n")
    if rows:
        plots.plot_curves(rows, out / "curves.png")
    plots.plot_confusion(metrics, out / "confusion.png", f"test accuracy {metrics['accuracy']*100:.1f}%")
    write_run_manifest(out, model_path, config, metrics, model, found)
    print(f"wrote {out} in {seconds:.0f} s" + (" (interrupted)" if interrupted else ""))
    return summary


def _rehearsal(config: TrainConfig, labels: tuple[str, ...], out: Path):
    if not config.rehearse:
        return None
    from edgeleuk.train import rehearse

    return rehearse.load(config, labels, out)


def _head_data(model, config: TrainConfig, own: tuple, rehearsal) -> tuple:
    """Stage 1's features, labels and parts: the new site's, and with --rehearse the first site's too."""
    if rehearsal is None:
        return own
    from edgeleuk.train.rehearse import joined

    return joined(*own, rehearsal, _features(model, rehearsal.images, _cache_file(config, list(rehearsal.shas))))


def _first_site(model, rehearsal, labels: tuple[str, ...]) -> dict | None:
    """With --rehearse, the first site's test part: what adapting cost it."""
    if rehearsal is None:
        return None
    rows = rehearsal.parts["test"]
    metrics = classification_metrics(
        rehearsal.labels[rows], model.predict(rehearsal.images[rows], batch_size=64, verbose=0), labels
    )
    print(format_metrics(metrics, f"test, the first site ({rehearsal.root}):"))
    return metrics


def _data(config: TrainConfig, out: Path) -> tuple[Scan, Split, np.ndarray, np.ndarray, dict[Path, str]]:
    """The labelled images, their classes and groups, and the split (written to out/split.json)."""
    found = scan(config.data, classes=config.classes)
    for path, why in found.skipped:
        print(f"skipped {path}: {why}")
    print(
        f"data: {len(found.samples)} images"
        + (f", {len(found.skipped)} skipped (listed above)" if found.skipped else "")
    )
    print("classes: " + ", ".join(f"{label} {n}" for label, n in found.counts().items())
          + (f" (--classes {config.classes})" if config.classes else " (one per folder)"))
    groups = assign_groups(found, config.groups)
    print(groups.note())
    if config.split:
        split = read_split(config.split, found.samples, found.root)
    else:
        split = make_split(found.samples, seed=config.seed, group_of=groups.of)
    write_split(out / "split.json", split, found.samples, found.root, groups.of)
    images, labels = load_arrays(list(found.samples), PreprocessSpec(size=config.input_size))
    crossing = near_duplicates_across(list(found.samples), images, split)
    if crossing:
        a, b, d = crossing[0]
        print(f"warning: {len(crossing)} near-duplicate pair(s) cross split parts, e.g. {a.path.name} "
              f"({split.assignment[a.path]}) ~ {b.path.name} ({split.assignment[b.path]})")
    return found, split, images, labels, groups.of
