"""Callbacks that make an interrupted run useful: keep the best weights, write history as it grows."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import keras

from edgeleuk.files import atomic_write_text


class BestWeights(keras.callbacks.Callback):
    """Remember the weights of the epoch with the lowest validation loss (also on Ctrl-C)."""

    def __init__(self, model_to_watch=None):
        super().__init__()
        self.watched = model_to_watch
        self.best = float("inf")
        self.best_epoch = -1
        self.weights = None
        self.kept = "no epoch"

    def start_from(self, loss: float, weights: list, what: str) -> None:
        """A baseline an epoch must beat to be kept (the weights before this fit, scored the same way)."""
        self.best, self.weights, self.kept = float(loss), weights, what

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("val_loss")
        if loss is not None and loss < self.best:
            self.best, self.best_epoch = float(loss), epoch
            self.weights = (self.watched or self.model).get_weights()
            self.kept = f"epoch {epoch + 1}"

    def restore(self) -> None:
        if self.weights is not None:
            (self.watched or self.model).set_weights(self.weights)


class HistoryWriter(keras.callbacks.Callback):
    """Append each epoch to a shared history list and rewrite history.csv atomically."""

    FIELDS = ("stage", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")

    def __init__(self, rows: list[dict], path: Path, stage: str):
        super().__init__()
        self.rows, self.path, self.stage = rows, path, stage
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        import time

        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        import time

        logs = dict(logs or {})
        lr = self.model.optimizer.learning_rate
        row = {"stage": self.stage, "epoch": epoch + 1, "lr": float(keras.ops.convert_to_numpy(lr)),
               "seconds": round(time.perf_counter() - self._start, 2)}
        row.update({k: float(logs[k]) for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in logs})
        self.rows.append(row)
        write_history(self.rows, self.path)


def write_history(rows: list[dict], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HistoryWriter.FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())
