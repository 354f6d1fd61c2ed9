"""Frame quality gate: frames the model is known to fail on are marked unusable, not classified.

Each model carries its own limits in its manifest (`convert` sets the leukocyte check; `evaluate
--robustness --write-gate` focus and exposure, from that model's suite). The defaults below are
for a model that carries none; the device config may override any of them.

Measured on the model input (the 224×224 crop) so the limits do not depend on camera resolution.
The defaults come from `edgeleuk evaluate --robustness` on the shipped int8 model
(`calibrate_gate` in evaluate/robustness.py): each exposure limit sits where the frames beyond it
fall below the accuracy the model keeps nearer the middle, so the gate refuses frames the model
gets wrong and not the ones it still reads; focus and darkness refuse only what is blurrier or
darker than anything the suite tested, where the model never failed. The figures behind each limit:
benchmarks/README.md (quality gate).

- min_leukocyte_fraction: a field must show a stained leukocyte (purple to pink, `leukocyte_mask`).
  Convert sets it for its model to a quarter of the 0.1% quantile of its training images (the
  shipped model: 0.28%, its training fields 0.75% and up); a field of red cells only has none, and
  nor does a field under another stain, which is refused for the same reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edgeleuk.manifest import QualityLimits
from edgeleuk.preprocess import OD_LUT

STAIN_MARGIN = 30  # a stained cell's pixel: red and blue together this far above green (grey levels)


def leukocyte_mask(image_rgb: np.ndarray) -> np.ndarray:
    """Pixels of Romanowsky-stained (Giemsa, Wright, May-Grünwald) leukocytes, pale blasts included:
    purple to pink, where the mean of red and blue stands well above green. Red cells and the
    background stay below the margin. uint8 0/1, opened 3×3 so sensor noise does not count."""
    r, g, b = cv2.split(image_rgb)
    purple = cv2.subtract(cv2.addWeighted(r, 0.5, b, 0.5, 0), g)  # saturating: green-heavy pixels give 0
    mask = cv2.threshold(purple, STAIN_MARGIN, 1, cv2.THRESH_BINARY)[1]
    return cv2.morphologyEx(mask, cv2.MORPH_OPEN, _KERNEL)


_KERNEL = np.ones((3, 3), np.uint8)


_ONES = np.ones((1, 3), np.float32)
STAIN_SIDE = 56  # the statistics are read on a 56×56 copy of the crop, the same in fitting and on the device
MIN_STAIN_PIXELS = 8
RED_CELL_OD = 0.3  # a red cell's pixel: not a leukocyte's, and this far above the background's optical density


def stain_strength(image_rgb: np.ndarray, mask: np.ndarray | None = None) -> tuple[float | None, float | None]:
    """How strongly the leukocytes and the red cells are stained: the log of each one's median
    optical density (summed over R, G, B) over the background's (the tenth of pixels that absorb
    least). Relative to the background, so exposure and white balance cancel; a stain twice as
    strong adds about log 2 to both. The red cells are read too because a stronger stain pushes some
    of them over the leukocyte mask's colour margin, which dilutes the leukocytes' reading.
    `mask`: `leukocyte_mask` of the same image (computed when not given). Each is None when fewer
    than 8 of its pixels show in the 56×56 copy."""
    mask = leukocyte_mask(image_rgb) if mask is None else mask
    small = cv2.resize(image_rgb, _STAIN_SHAPE, interpolation=cv2.INTER_NEAREST)
    od = cv2.transform(cv2.LUT(small, OD_LUT), _ONES).reshape(-1)  # flat: 1-D selections are faster than 2-D ones
    od -= np.partition(od, _BACKGROUND)[_BACKGROUND]
    leukocytes = _nearest(mask).reshape(-1).view(bool)  # the same pixels as `small`
    red_cells = (od > RED_CELL_OD) > leukocytes  # and not a leukocyte's (booleans: a > b is a and not b)
    return _log_median(od.compress(leukocytes)), _log_median(od.compress(red_cells))


_STAIN_SHAPE = (STAIN_SIDE, STAIN_SIDE)
# the rank of the background's reading: the tenth of pixels that absorb least
_BACKGROUND = STAIN_SIDE * STAIN_SIDE // 10


def _nearest(mask: np.ndarray) -> np.ndarray:
    """The mask at the pixels `cv2.resize(..., INTER_NEAREST)` keeps for the 56×56 copy: a strided
    view when the side is 56 times a power of two (those pixels exactly, without a copy), else resized."""
    step = mask.shape[0] // STAIN_SIDE
    if mask.shape == (STAIN_SIDE * step, STAIN_SIDE * step) and step & (step - 1) == 0:
        return mask[::step, ::step]
    return cv2.resize(mask, _STAIN_SHAPE, interpolation=cv2.INTER_NEAREST)


def _log_median(values: np.ndarray) -> float | None:
    """`values` is a fresh copy (compress), so it is partitioned in place."""
    if len(values) < MIN_STAIN_PIXELS:
        return None
    m = len(values) // 2
    values.partition(m)
    return math.log(max(float(values[m]), 1e-3))  # few calls: each one is slow with caches cold after inference


def leukocyte_fraction(image_rgb: np.ndarray) -> float:
    """Share of the crop covered by stained leukocytes: 0 on a field of red cells only."""
    return cv2.countNonZero(leukocyte_mask(image_rgb)) / (image_rgb.shape[0] * image_rgb.shape[1])


@dataclass(frozen=True)
class Quality:
    focus: float
    brightness: float
    dark_fraction: float
    bright_fraction: float
    usable: bool
    reason: str | None
    scale: float | None = None  # red cells now / in the training images (the run's running estimate)
    leukocytes: float | None = None  # leukocyte_fraction, measured when the limits ask for it
    # stain_strength of the leukocytes, measured for a usable frame on the stain monitor's turn (runtime/stain.py)
    stain: float | None = None
    red_stain: float | None = None  # and of the red cells

    def as_dict(self) -> dict:
        return {
            "focus": round(self.focus, 1),
            "brightness": round(self.brightness, 1),
            "dark_fraction": round(self.dark_fraction, 4),
            "bright_fraction": round(self.bright_fraction, 4),
            "scale": None if self.scale is None else round(self.scale, 3),
            "leukocytes": None if self.leukocytes is None else round(self.leukocytes, 4),
            "stain": None if self.stain is None else round(self.stain, 3),
            "red_stain": None if self.red_stain is None else round(self.red_stain, 3),
            "usable": self.usable,
            "reason": self.reason,
        }


def assess(image_rgb: np.ndarray, limits: QualityLimits | None = None, stain: bool = False) -> Quality:
    """Focus and exposure of a preprocessed RGB uint8 image, and whether it passes the gate; with
    `stain`, also the stain's strength of a usable frame (one leukocyte mask serves both)."""
    t = limits or QualityLimits()
    grey = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    laplacian = cv2.Laplacian(grey, cv2.CV_16S)  # exact for uint8 input, cheaper than float
    mean = cv2.sumElems(laplacian)[0] / laplacian.size
    # its variance; 2.5× faster than meanStdDev
    focus = max(0.0, cv2.norm(laplacian, cv2.NORM_L2SQR) / laplacian.size - mean * mean)
    brightness = float(cv2.mean(grey)[0])
    pixels = grey.size
    dark = np.count_nonzero(grey <= 5) / pixels
    bright = np.count_nonzero(grey >= 250) / pixels
    reason = None
    if brightness < t.min_brightness or dark > t.max_dark_fraction:
        reason = "underexposed"
    elif brightness > t.max_brightness or bright > t.max_bright_fraction:
        reason = "overexposed"
    elif focus < t.min_focus:
        reason = "out of focus"
    leukocytes = mask = None
    strength = red = None
    if t.min_leukocyte_fraction > 0 or stain:
        mask = leukocyte_mask(image_rgb)
        leukocytes = cv2.countNonZero(mask) / pixels
        if reason is None and leukocytes < t.min_leukocyte_fraction:
            reason = "no leukocyte"
    if stain and reason is None:
        strength, red = stain_strength(image_rgb, mask)
    return Quality(
        focus, brightness, dark, bright, reason is None, reason, leukocytes=leukocytes, stain=strength, red_stain=red
    )
