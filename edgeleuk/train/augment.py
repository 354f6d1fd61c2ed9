"""Augmentation for fine-tuning, suited to smear images: the cell has no up or left, and stain, lamp
and camera vary from slide to slide. Runs in numpy/OpenCV through the same degradation code that
`evaluate --robustness` uses, but with continuous random parameters, never the evaluated severities."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import keras
import numpy as np

from edgeleuk.degrade import CONDITIONS, contrast, random_camera, random_scale, rescale, smear_geometry, stain_hue
from edgeleuk.runtime.quality import leukocyte_mask

POLICIES = ("basic", "robust")


def mild_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness ±8%, contrast ±15%, hue a few degrees."""
    image = np.clip(image.astype(np.float32) * rng.uniform(0.92, 1.08), 0, 255).astype(np.uint8)
    image = contrast(image, float(rng.uniform(0.0, 0.25)), rng)
    return stain_hue(image, float(rng.uniform(0.0, 0.25)), rng)


# the suite's weakest conditions, and a microscope's commonest faults
HARD = ("overexposure", "motion_blur", "focus_blur")


def augment(image: np.ndarray, rng: np.random.Generator, policy: str = "robust") -> np.ndarray:
    """basic: geometry, magnification 0.7-1.4× and mild jitter; robust: plus camera-like degradations,
    with a too-bright lamp, a shaken stage and a missed focus drawn more often than the rest."""
    image = mild_jitter(random_scale(smear_geometry(image, rng), rng), rng)
    if policy != "robust":
        return image
    if rng.random() < 0.3:
        image = CONDITIONS[HARD[int(rng.integers(len(HARD)))]](image, float(rng.uniform(0.3, 1.0)), rng)
    return random_camera(image, rng, p=0.6, max_level=1.0)


def outlier(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A field the model must not answer, made from training images (outlier exposure): the same
    slide 1.8-5× closer, several fields 2.5-4× farther (a mosaic), or the field with its leukocytes
    painted out. The out-of-distribution sets `evaluate --ood` scores are made from test images, and
    four of its kinds (photos, empty and defocused fields, other stains) are never shown here."""
    image = images[int(rng.integers(len(images)))]
    kind = int(rng.integers(3))
    if kind == 2:
        mask = cv2.dilate(leukocyte_mask(image), np.ones((9, 9), np.uint8))
        if mask.mean() > 0.005:
            return cv2.inpaint(image, mask, 5, cv2.INPAINT_TELEA)
        kind = 0
    if kind == 0:
        return rescale(image, float(rng.uniform(1.8, 5.0)), rng)
    n = int(rng.integers(2, 5))
    tile = image.shape[0] // n
    canvas = np.empty_like(image)
    canvas[:] = np.median(image.reshape(-1, 3), axis=0)
    for k in range(n * n):
        r, c = divmod(k, n)
        other = images[int(rng.integers(len(images)))]
        canvas[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = cv2.resize(
            other, (tile, tile), interpolation=cv2.INTER_AREA
        )
    return canvas


@dataclass(frozen=True)
class BatchRecipe:
    """How AugmentedBatches draws each batch."""

    batch_size: int
    seed: int
    policy: str  # basic or robust (POLICIES)
    class_weights: dict[int, float] | None = None
    outliers: float = 0.0  # outlier fields per batch, as a share of its images
    outlier_weight: float = 0.5
    classes: int = 4
    soft_targets: np.ndarray | None = None  # a teacher's softened probabilities, per image
    soft_weight: float = 0.0
    rehearsal: tuple[np.ndarray, np.ndarray] | None = None  # the first site's images and labels
    rehearse_share: float = 0.0


class AugmentedBatches(keras.utils.PyDataset):
    """Shuffled, augmented batches; the epoch and batch index seed the generator (reproducible).

    Targets are probability vectors with per-sample weights (class weights); with `soft_targets` (a
    teacher's softened probabilities) they mix in the teacher at `soft_weight`. With `outliers` > 0,
    each batch also holds that share of outlier fields whose target is the uniform distribution,
    weighted `outlier_weight` (outlier exposure, Hendrycks et al. 2019): the model learns to spread
    its probabilities, and its features move away from the training fields', on what it cannot judge.
    With `rehearsal` (images, labels: another site's training part), each batch also holds
    `rehearse_share` of its size drawn from them (edgeleuk.train.rehearse).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, recipe: BatchRecipe, **kwargs):
        super().__init__(**kwargs)
        if recipe.policy not in POLICIES:
            from edgeleuk.errors import UserError

            raise UserError(f"Received: augment={recipe.policy!r}; expected one of {', '.join(POLICIES)}")
        self.images, self.labels = images, labels
        self.batch_size, self.seed, self.policy = recipe.batch_size, recipe.seed, recipe.policy
        self.class_weights = recipe.class_weights or {}
        self.outliers, self.outlier_weight, self.classes = recipe.outliers, recipe.outlier_weight, recipe.classes
        # a teacher's, per image (distillation)
        self.soft_targets, self.soft_weight = recipe.soft_targets, recipe.soft_weight
        self.rehearsal, self.rehearse_share = recipe.rehearsal, recipe.rehearse_share
        self.epoch = 0
        self.order = np.random.default_rng([recipe.seed, 0]).permutation(len(images))

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        images = [augment(self.images[j], rng, self.policy) for j in rows]
        targets = np.eye(self.classes, dtype=np.float32)[self.labels[rows]]
        # cross-entropy against the mixture = the label term plus w × the teacher term
        if self.soft_targets is not None:
            targets = (1.0 - self.soft_weight) * targets + self.soft_weight * self.soft_targets[rows]
        weights = np.array([self.class_weights.get(int(self.labels[j]), 1.0) for j in rows], np.float32)
        extra = int(round(self.outliers * len(rows)))
        if extra:
            images += [augment(outlier(self.images, rng), rng, self.policy) for _ in range(extra)]
            targets = np.concatenate([targets, np.full((extra, self.classes), 1.0 / self.classes, np.float32)])
            weights = np.concatenate([weights, np.full(extra, self.outlier_weight, np.float32)])
        if self.rehearsal is not None:
            images, targets, weights = self._rehearse(images, targets, weights, rng, len(rows))
        return np.stack(images).astype(np.float32), targets, weights

    def _rehearse(self, images: list, targets: np.ndarray, weights: np.ndarray, rng: np.random.Generator, own: int):
        """`rehearse_share` × the batch's `own` new-site images, drawn from the other site."""
        pool, labels = self.rehearsal  # type: ignore[misc]
        rows = rng.integers(len(pool), size=max(1, int(round(self.rehearse_share * own))))
        images = images + [augment(pool[j], rng, self.policy) for j in rows]
        targets = np.concatenate([targets, np.eye(self.classes, dtype=np.float32)[labels[rows]]])
        extra = np.array([self.class_weights.get(int(labels[j]), 1.0) for j in rows], np.float32)
        return images, targets, np.concatenate([weights, extra])

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.images))
