"""Train the study's classifier: stage 1 on cached base features, optional stage 2 fine-tuning."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeleuk.dataset import Scan, load_arrays, scan
from edgeleuk.errors import UserError
from edgeleuk.files import atomic_path, atomic_write_text
from edgeleuk.manifest import PreprocessSpec, sha256_file
from edgeleuk.evaluate.metrics import classification_metrics, format_metrics
from edgeleuk.groups import assign_groups
from edgeleuk.split import Split, make_split, near_duplicates_across, read_split, write_split
from edgeleuk.train.run_folder import prepare_out, save_clean, write_run_manifest


@dataclass
class TrainConfig:
    """Everything a run depends on; written to config.json."""

    data: str
    out: str
    classes: str | None = None  # --classes: the labels' order, or folders merged into one label (None: every folder, sorted)
    groups: str = "auto"  # what never crosses the split: auto, folders, blocks, files, or a CSV file (edgeleuk.groups)
    cv: int = 0  # grouped cross-validation folds on the training and validation parts before the final model (0: none)
    weights: str = "imagenet"
    alpha: float = 1.0
    input_size: int = 224
    split: str | None = None
    seed: int = 42
    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 1e-3
    patience: int = 8
    fine_tune: bool = False
    fine_tune_from: str = "block_9"
    fine_tune_epochs: int = 25
    fine_tune_learning_rate: float = 1e-4
    fine_tune_patience: int = 6
    augment: str = "robust"
    outliers: float = 0.0  # stage 2: outlier fields per batch, as a share of its images (outlier exposure; 0: none)
    teacher: str | None = None  # stage 2: a trained .keras model whose soft labels the student also learns (distillation)
    init_from: str | None = None  # a trained model (run folder or .keras) whose weights the run starts from (edgeleuk.train.adapt)
    rehearse: str | None = None  # the init_from model's own data, mixed into every batch (edgeleuk.train.rehearse)
    rehearse_share: float = 0.5  # rehearsed images per batch, as a share of the new site's
    distill_temperature: float = 2.0  # the teacher's probabilities are softened as softmax(log p / T)
    distill_weight: float = 0.5  # target = (1 - w) · one-hot label + w · softened teacher
    feature_cache: str | None = None


@dataclass
class Arrays:
    """A run's images (uint8 RGB), labels and parts (rows of both), and what stage 2 mixes in."""

    images: np.ndarray
    labels: np.ndarray
    parts: dict[str, np.ndarray]
    soft: np.ndarray | None = None  # a teacher's softened probabilities on the training part
    rehearsal: Any = None  # edgeleuk.train.rehearse.Rehearsal: the first site's data


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


def _class_weights(labels: np.ndarray, classes: int) -> dict[int, float]:
    counts = np.bincount(labels, minlength=classes)
    return {i: float(len(labels) / (classes * max(c, 1))) for i, c in enumerate(counts)}


def _fit_head(model, feats, labels, parts, config, rows, out):
    import keras

    from edgeleuk.train.callbacks import BestWeights, HistoryWriter
    from edgeleuk.train.model import head_model

    head = head_model(model)
    head.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    keeper = BestWeights()
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience)
    tr, va = parts["train"], parts["val"]
    try:
        head.fit(feats[tr], labels[tr], validation_data=(feats[va], labels[va]), epochs=config.epochs,
                 batch_size=config.batch_size, verbose=2, shuffle=True,
                 callbacks=[keeper, stop, HistoryWriter(rows, out / "history.csv", "frozen")])
    finally:  # Ctrl-C included: the head keeps its best epoch
        keeper.restore()
    print(f"stage 1 (frozen base): best epoch {keeper.best_epoch + 1}, val_loss {keeper.best:.4f}")


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
    print(f"distillation: {config.teacher} ({size}×{size}) soft labels on {len(images)} training images, T={config.distill_temperature}, "
          f"weight {config.distill_weight}")
    return soft.astype(np.float32)


def _fine_tune(model, data: Arrays, config, rows, out):
    import keras
    import tensorflow as tf

    from edgeleuk.train.augment import AugmentedBatches
    from edgeleuk.train.callbacks import BestWeights, HistoryWriter
    from edgeleuk.train.model import unfreeze_top

    layers = unfreeze_top(model, config.fine_tune_from)
    # Polyak averaging of the weights: validation (and the kept checkpoint) use the average, whose
    # loss is far less noisy epoch to epoch than the raw weights' under strong augmentation
    model.compile(optimizer=keras.optimizers.Adam(config.fine_tune_learning_rate, use_ema=True, ema_momentum=0.99),
                  loss="categorical_crossentropy", metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    print(f"stage 2 (fine-tuning from {config.fine_tune_from}): {layers} layers, {trainable:,} trainable parameters")
    tr = data.parts["train"]
    classes = int(model.output_shape[-1])
    train_ds = AugmentedBatches(data.images[tr], data.labels[tr], config.batch_size, config.seed, config.augment,
                                class_weights=_class_weights(data.labels[tr], classes), outliers=config.outliers, classes=classes,
                                soft_targets=data.soft, soft_weight=config.distill_weight,
                                rehearsal=data.rehearsal.pool() if data.rehearsal else None, rehearse_share=config.rehearse_share)
    val_images, val_labels = _robust_validation(*_validation_part(data), config.seed, config.augment)
    val_ds = tf.data.Dataset.from_tensor_slices((val_images, np.eye(classes, dtype=np.float32)[val_labels])).batch(64)
    keeper = BestWeights()  # fine-tuning must beat the stage-1 model on the same validation set to replace it
    keeper.start_from(model.evaluate(val_ds, verbose=0, return_dict=True)["loss"], model.get_weights(), "the stage-1 model")
    print(f"stage 2 must beat the stage-1 model's validation loss {keeper.best:.4f} to replace it")
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.fine_tune_patience)
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=max(1, config.fine_tune_patience // 2), verbose=1)
    try:
        model.fit(train_ds, validation_data=val_ds, epochs=config.fine_tune_epochs, verbose=1,
                  callbacks=[keras.callbacks.SwapEMAWeights(swap_on_epoch=True), keeper, stop, plateau,
                             HistoryWriter(rows, out / "history.csv", "fine-tune")])
    finally:  # Ctrl-C included: the best of the stage-1 model and the fine-tuning epochs so far
        keeper.restore()
        print(f"stage 2: kept {keeper.kept} (validation loss {keeper.best:.4f}, the lowest so far)")


def _validation_part(data: Arrays) -> tuple[np.ndarray, np.ndarray]:
    """The validation part, and the first site's too when it is rehearsed: forgetting it then costs."""
    va = data.parts["val"]
    if data.rehearsal is None:
        return data.images[va], data.labels[va]
    first = data.rehearsal.parts["val"]
    return (np.concatenate([data.images[va], data.rehearsal.images[first]]),
            np.concatenate([data.labels[va], data.rehearsal.labels[first]]))


def _robust_validation(images: np.ndarray, labels: np.ndarray, seed: int, policy: str, copies: int = 2):
    """The validation part as it is, plus `copies` degraded copies drawn once with a fixed seed (the
    training policy's own degradations and magnifications): early stopping and the kept epoch then
    favour weights that hold up under other cameras, not only on the dataset's own clean images.
    Only the validation part is used; the test part stays untouched."""
    from edgeleuk.train.augment import augment

    if policy != "robust" or copies < 1:
        return images, labels
    rng = np.random.default_rng([seed, 99])
    degraded = [np.stack([augment(img, rng, policy) for img in images]) for _ in range(copies)]
    return np.concatenate([images, *degraded]), np.concatenate([labels] * (copies + 1))


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

    from edgeleuk.evaluate import plots
    from edgeleuk.train.callbacks import write_history
    from edgeleuk.train.model import build_model

    found, split, images, labels, group_of = _data(config, out)
    parts = {p: np.array([i for i, s in enumerate(found.samples) if split.assignment[s.path] == p]) for p in ("train", "val", "test")}
    print("split: " + ", ".join(f"{p} {len(ix)}" for p, ix in parts.items()))
    if any(len(ix) == 0 for ix in parts.values()):
        raise UserError("a split part is empty: " + ", ".join(f"{p} {len(ix)}" for p, ix in parts.items())
                        + "; each class needs enough groups (patients) for train, test and val: add images or groups")
    keras.utils.set_random_seed(config.seed)
    if config.init_from:
        from edgeleuk.train.adapt import warm_start

        model = warm_start(config, found.labels)
    else:
        model = build_model(alpha=config.alpha, input_size=config.input_size, weights=config.weights, num_classes=len(found.labels))
    rehearsal = _rehearsal(config, found.labels, out)
    rows: list[dict] = []
    interrupted, frozen = False, None
    try:
        feats = _features(model, images, _cache_file(config, [s.sha256 for s in found.samples]))
        if config.cv:
            from edgeleuk.train.cv import cross_validate

            pool = [s for s in found.samples if split.assignment[s.path] != "test"]
            cross_validate(config, found, group_of, pool, (images, labels, feats), out)
        _fit_head(model, *_head_data(model, config, (feats, labels, parts), rehearsal), config, rows, out)
        frozen_probs = model.get_layer("dense_1")(model.get_layer("dense")(feats[parts["test"]])).numpy()
        frozen = classification_metrics(labels[parts["test"]], frozen_probs, found.labels)
        print(format_metrics(frozen, "test, frozen base (the study's recipe):"))
        if config.fine_tune:
            soft = _teacher_targets(config, list(found.samples), parts["train"]) if config.teacher else None
            _fine_tune(model, Arrays(images, labels, parts, soft, rehearsal), config, rows, out)
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
    metrics = classification_metrics(rehearsal.labels[rows], model.predict(rehearsal.images[rows], batch_size=64, verbose=0), labels)
    print(format_metrics(metrics, f"test, the first site ({rehearsal.root}):"))
    return metrics


def _data(config: TrainConfig, out: Path) -> tuple[Scan, Split, np.ndarray, np.ndarray, dict[Path, str]]:
    """The labelled images, their classes and groups, and the split (written to out/split.json)."""
    found = scan(config.data, classes=config.classes)
    for path, why in found.skipped:
        print(f"skipped {path}: {why}")
    print(f"data: {len(found.samples)} images" + (f", {len(found.skipped)} skipped (listed above)" if found.skipped else ""))
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
