"""Augmentation for fine-tuning, suited to smear images: the cell has no up or left, and stain, lamp
and camera vary from slide to slide. Runs in numpy/OpenCV through the same degradation code that
`evaluate --robustness` uses, but with continuous random parameters, never the evaluated severities."""

from __future__ import annotations

import math

import keras
import numpy as np

from edgeleuk.degrade import contrast, random_camera, smear_geometry, stain_hue

POLICIES = ("basic", "robust")


def mild_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness ±8%, contrast ±15%, hue a few degrees."""
    image = np.clip(image.astype(np.float32) * rng.uniform(0.92, 1.08), 0, 255).astype(np.uint8)
    image = contrast(image, float(rng.uniform(0.0, 0.25)), rng)
    return stain_hue(image, float(rng.uniform(0.0, 0.25)), rng)


def augment(image: np.ndarray, rng: np.random.Generator, policy: str = "robust") -> np.ndarray:
    image = mild_jitter(smear_geometry(image, rng), rng)
    return random_camera(image, rng) if policy == "robust" else image


class AugmentedBatches(keras.utils.PyDataset):
    """Shuffled, augmented batches; the epoch and batch index seed the generator (reproducible)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, policy: str, **kwargs):
        super().__init__(**kwargs)
        if policy not in POLICIES:
            from edgeleuk.errors import UserError

            raise UserError(f"Received: augment={policy!r}; expected one of {', '.join(POLICIES)}")
        self.images, self.labels, self.batch_size, self.seed, self.policy = images, labels, batch_size, seed, policy
        self.epoch = 0
        self.order = np.random.default_rng([seed, 0]).permutation(len(images))

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        batch = np.stack([augment(self.images[j], rng, self.policy) for j in rows]).astype(np.float32)
        return batch, self.labels[rows]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.images))
