"""A training run's settings: everything the run depends on, written to its config.json."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """Everything a run depends on; written to config.json."""

    data: str
    out: str
    # --classes: the labels' order, or folders merged into one label (None: every folder, sorted)
    classes: str | None = None
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
    # stage 2: a trained .keras model whose soft labels the student also learns (distillation)
    teacher: str | None = None
    # a trained model (run folder or .keras) whose weights the run starts from (edgeleuk.train.adapt)
    init_from: str | None = None
    rehearse: str | None = None  # the init_from model's own data, mixed into every batch (edgeleuk.train.rehearse)
    rehearse_share: float = 0.5  # rehearsed images per batch, as a share of the new site's
    distill_temperature: float = 2.0  # the teacher's probabilities are softened as softmax(log p / T)
    distill_weight: float = 0.5  # target = (1 - w) · one-hot label + w · softened teacher
    feature_cache: str | None = None
