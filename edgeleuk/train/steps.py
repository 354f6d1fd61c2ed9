"""The two training steps, shared by a run and each cross-validation fold: the head on cached base
features (stage 1) and fine-tuning the top of the base under augmentation (stage 2)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeleuk.train.config import TrainConfig


@dataclass
class Arrays:
    """A run's images (uint8 RGB), labels and parts (rows of both), and what stage 2 mixes in."""

    images: np.ndarray
    labels: np.ndarray
    parts: dict[str, np.ndarray]
    soft: np.ndarray | None = None  # a teacher's softened probabilities on the training part
    rehearsal: Any = None  # edgeleuk.train.rehearse.Rehearsal: the first site's data


def _class_weights(labels: np.ndarray, classes: int) -> dict[int, float]:
    counts = np.bincount(labels, minlength=classes)
    return {i: float(len(labels) / (classes * max(c, 1))) for i, c in enumerate(counts)}


def fit_head(model, data: Arrays, config: TrainConfig, rows: list, out: Path) -> None:
    """Stage 1: the head alone on the cached base features (`data.images` holds the features); the
    model keeps its best epoch."""
    import keras

    from edgeleuk.train.callbacks import BestWeights, HistoryWriter
    from edgeleuk.train.model import head_model

    head = head_model(model)
    head.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate), loss="sparse_categorical_crossentropy",
        metrics=["accuracy"]
    )
    keeper = BestWeights()
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience)
    feats, labels = data.images, data.labels
    tr, va = data.parts["train"], data.parts["val"]
    try:
        head.fit(feats[tr], labels[tr], validation_data=(feats[va], labels[va]), epochs=config.epochs,
                 batch_size=config.batch_size, verbose=2, shuffle=True,
                 callbacks=[keeper, stop, HistoryWriter(rows, out / "history.csv", "frozen")])
    finally:  # Ctrl-C included: the head keeps its best epoch
        keeper.restore()
    print(f"stage 1 (frozen base): best epoch {keeper.best_epoch + 1}, val_loss {keeper.best:.4f}")


def fine_tune(model, data: Arrays, config: TrainConfig, rows: list, out: Path) -> None:
    """Stage 2: the base's top layers too, under augmentation; kept only if it beats stage 1."""
    import keras
    import tensorflow as tf

    from edgeleuk.train.augment import AugmentedBatches, BatchRecipe
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
    recipe = BatchRecipe(
        config.batch_size, config.seed, config.augment, class_weights=_class_weights(data.labels[tr], classes),
        outliers=config.outliers, classes=classes, soft_targets=data.soft, soft_weight=config.distill_weight,
        rehearsal=data.rehearsal.pool() if data.rehearsal else None, rehearse_share=config.rehearse_share
    )
    train_ds = AugmentedBatches(data.images[tr], data.labels[tr], recipe)
    val_images, val_labels = _robust_validation(*_validation_part(data), config.seed, config.augment)
    val_ds = tf.data.Dataset.from_tensor_slices((val_images, np.eye(classes, dtype=np.float32)[val_labels])).batch(64)
    keeper = BestWeights()  # fine-tuning must beat the stage-1 model on the same validation set to replace it
    keeper.start_from(
        model.evaluate(val_ds, verbose=0, return_dict=True)["loss"], model.get_weights(), "the stage-1 model"
    )
    print(f"stage 2 must beat the stage-1 model's validation loss {keeper.best:.4f} to replace it")
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.fine_tune_patience)
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=0.3, patience=max(1, config.fine_tune_patience // 2), verbose=1
    )
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


def fresh_model(config: TrainConfig, labels: tuple[str, ...]):
    """The model a run (or a fold) starts from: a trained one's weights (--init-from), else the study's."""
    if config.init_from:
        from edgeleuk.train.adapt import warm_start

        return warm_start(config, labels)
    from edgeleuk.train.model import build_model

    return build_model(
        alpha=config.alpha, input_size=config.input_size, weights=config.weights, num_classes=len(labels)
    )
