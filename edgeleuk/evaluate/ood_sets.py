"""Out-of-distribution sets built from what the project has: a device must refuse all of them.

Each set is made from in-distribution images (the test part) or from photos that ship with
scikit-learn, so no image is downloaded and none is committed. They stand in for what a microscope
meets and the training data never showed: other magnifications, fields without a leukocyte, empty
and defocused fields, things that are not a smear, other stains. Deterministic under a seed.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from edgeleuk.degrade import rescale, scale_stain
from edgeleuk.runtime.quality import STAIN_MARGIN

Maker = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _pick(images: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    return images[rng.choice(len(images), size=n, replace=len(images) < n)]


def _magnified(factor: float) -> Maker:
    def make(images, rng):
        return np.stack([rescale(img, factor, rng) for img in images])
    return make


def _mosaic(tiles_per_side: int) -> Maker:
    """A lower magnification: several fields shrunk side by side, as a wider view would show them."""
    def make(images, rng):
        size = images.shape[1]
        tile = size // tiles_per_side
        out = []
        for _ in range(len(images)):
            canvas = np.empty_like(images[0])
            canvas[:] = np.median(images[0].reshape(-1, 3), axis=0)
            for k, img in enumerate(_pick(images, rng, tiles_per_side ** 2)):
                r, c = divmod(k, tiles_per_side)
                canvas[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = cv2.resize(
                    img, (tile, tile), interpolation=cv2.INTER_AREA
                )
            out.append(canvas)
        return np.stack(out)
    return make


def red_cells_only(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fields with no leukocyte at the training scale: four half-size patches, tiled, each far from
    any stained pixel (a looser colour margin than the gate's, widened by 4 pixels)."""
    size = images.shape[1]
    half = size // 2
    patches = []
    for img in images:
        x = img.astype(np.int16)
        stained = ((x[..., 0] + x[..., 2]) // 2 - x[..., 1] > STAIN_MARGIN - 5).astype(np.uint8)
        stained = cv2.dilate(stained, np.ones((9, 9), np.uint8))
        for _ in range(24):
            y, x0 = rng.integers(0, size - half + 1, size=2)
            if not stained[y:y + half, x0:x0 + half].any():
                patches.append(img[y:y + half, x0:x0 + half])
                break
    if not patches:
        raise ValueError("no field free of leukocytes to build red_cells_only from")
    patches = np.stack(patches)
    out = []
    for _ in range(len(images)):
        four = _pick(patches, rng, 4)
        out.append(np.vstack([np.hstack(four[:2]), np.hstack(four[2:])]))
    return np.stack(out)


def empty_field(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Background only: the slide's own bright colour with a lamp gradient and sensor noise."""
    size = images.shape[1]
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = []
    for img in images:
        colour = np.percentile(img.reshape(-1, 3), 90, axis=0).astype(np.float32)
        gradient = 1.0 + rng.uniform(-0.1, 0.1) * (x - 0.5) + rng.uniform(-0.1, 0.1) * (y - 0.5)
        field = colour[None, None, :] * gradient[..., None] + rng.normal(0, rng.uniform(1, 4), (size, size, 3))
        out.append(np.clip(np.rint(field), 0, 255).astype(np.uint8))
    return np.stack(out)


def defocused(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Far out of focus: blur well beyond the robustness suite's strongest."""
    return np.stack([cv2.GaussianBlur(img, (0, 0), float(rng.uniform(5, 12))) for img in images])


def photos(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Not a smear at all: crops of the photos scikit-learn ships (a temple, a flower)."""
    from sklearn.datasets import load_sample_images

    sources = load_sample_images().images  # RGB uint8
    size = images.shape[1]
    out = []
    for _ in range(len(images)):
        photo = sources[int(rng.integers(len(sources)))]
        side = int(rng.integers(size // 2, min(photo.shape[:2]) + 1))
        y, x = int(rng.integers(0, photo.shape[0] - side + 1)), int(rng.integers(0, photo.shape[1] - side + 1))
        out.append(
            cv2.resize(
                np.ascontiguousarray(photo[y : y + side, x : x + side]), (size, size), interpolation=cv2.INTER_AREA
            )
        )
    return np.stack(out)


def other_stain(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another stain or protocol: hue turned by 50-130°, grey (no stain), or three times the stain."""
    out = []
    for img in images:
        kind = int(rng.integers(3))
        if kind == 0:
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.int16)
            hsv[..., 0] = (hsv[..., 0] + int(rng.integers(25, 66)) * (1 if rng.random() < 0.5 else -1)) % 180
            out.append(cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB))
        elif kind == 1:
            out.append(cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB))
        else:
            out.append(scale_stain(img, rng.uniform(2.5, 3.5)))
    return np.stack(out)


OOD_SETS: dict[str, Maker] = {
    "magnified_2x": _magnified(2.0), "magnified_3x": _magnified(3.0), "magnified_4x": _magnified(4.0),
    "shrunk_0.5x": _mosaic(2), "shrunk_0.33x": _mosaic(3),
    "red_cells_only": red_cells_only, "empty_field": empty_field, "defocused": defocused,
    "photos": photos, "other_stain": other_stain,
}


def build_ood_sets(images: np.ndarray, seed: int = 0, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Every set (or the named ones), each as many images as `images`, from RGB uint8 model inputs."""
    return {name: OOD_SETS[name](images, np.random.default_rng([seed, i])) for i, name in enumerate(OOD_SETS)
            if names is None or name in names}
