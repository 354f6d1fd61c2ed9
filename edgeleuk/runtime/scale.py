"""The field of view's scale, measured with red blood cells as the ruler (about 7-8 µm on every smear).

A microscope with another objective, adapter or sensor shows the cells larger or smaller than the
training images did, and the model was trained only across about 0.7-1.4× of that. The typical red
cell diameter in pixels is the median equivalent diameter of the single round cells: a foreground
mask (cells absorb green; Otsu's threshold), holes filled (the pale centre of a red cell), connected
components, and only those that are round, fill their box as a disc does and do not touch the
frame's edge, so clumps and cut cells do not count. numpy + OpenCV only (device-safe).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MIN_CELLS = 3  # fewer single round cells than this: no reading for this frame


@dataclass(frozen=True)
class ScaleReading:
    diameter_px: float | None  # typical red cell diameter in the measured image's pixels
    cells: int  # how many cell centres the median is taken over


def measure_cells(image_rgb: np.ndarray) -> ScaleReading:
    """Typical cell diameter (pixels) of an RGB uint8 image; None when too few single cells stand out."""
    green = np.ascontiguousarray(image_rgb[:, :, 1])  # red cells absorb green most: the best contrast
    otsu, mask = cv2.threshold(green, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    background = green[mask == 0]
    if background.size == 0 or float(background.mean()) - otsu < 12:  # no contrast: nothing to measure
        return ScaleReading(None, 0)
    # fill holes (a red cell's pale centre): whatever the border's background cannot reach is inside a cell
    h, w = mask.shape
    reach = np.pad(mask, 1)
    cv2.floodFill(reach, None, (0, 0), 255)
    mask |= ~reach[1:-1, 1:-1]
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    x, y, bw, bh, area = (stats[1:, i].astype(np.float64) for i in range(5))
    inside = (x > 0) & (y > 0) & (x + bw < w) & (y + bh < h) & (area >= 12)
    round_ = (np.minimum(bw, bh) / np.maximum(bw, bh) >= 0.75) & (np.abs(area / (bw * bh) - np.pi / 4) <= 0.1)
    diameters = np.sqrt(4.0 * area[inside & round_] / np.pi)
    if len(diameters) < MIN_CELLS:
        return ScaleReading(None, int(len(diameters)))
    return ScaleReading(float(np.median(diameters)), int(len(diameters)))


# Readings before the magnification is judged. They are not taken on a sample's first fields, as
# the stain's are: one field's reading is noisy (its few cells; clumps), and on the test part's 30
# samples of 20 file numbers the median of the first 3 fields refused 5.7% of the dataset's own
# fields (sparse Benign runs read 0.4-0.7×), of the first 5, 2.8%, against 0.4% for every 8th field
# (benchmarks/README.md, "The ruler on a sample's first fields"). So a sample of under 17 fields is
# not judged for magnification, and the verdict says so.
MIN_READINGS = 3


class ScaleMonitor:
    """The run's magnification relative to the training images, from the red cells of recent frames.

    Magnification belongs to the optics, not to one frame, and one frame's reading is noisy (a few
    cells; clumps), so the estimate is the median over the last `window` readings, and a frame is
    measured only every `every` frames: a reading costs more than a frame can spare, and the optics
    change far slower than frames arrive.
    """

    def __init__(self, training_diameter_px: float, every: int = 8, window: int = 9):
        from collections import deque

        self.reference = training_diameter_px
        self.every, self.readings, self.count = max(1, every), deque(maxlen=window), 0
        self.ratio: float | None = None  # cell size now / in the training images (1: matched); None before MIN_READINGS

    def update(self, image_rgb: np.ndarray) -> float | None:
        """Measure this frame when its turn comes; returns the current ratio (None: not known yet)."""
        if self.count % self.every == 0:
            reading = measure_cells(image_rgb)
            if reading.diameter_px is not None:
                self.readings.append(reading.diameter_px)
                if len(self.readings) >= MIN_READINGS:
                    self.ratio = float(np.median(self.readings)) / self.reference
        self.count += 1
        return self.ratio


def scaled_region(
    height: int, width: int, size: int, scale: float, roi: tuple[int, int, int, int] | None = None
) -> tuple[int, int, int, int]:
    """x, y, w, h of the centred square that holds as much of the slide as a training image did:
    `scale` frame pixels per training-image pixel, so the side is size × scale."""
    from edgeleuk.errors import UserError

    x0, y0, w, h = roi if roi is not None else (0, 0, width, height)
    w, h = min(w, width - x0), min(h, height - y0)
    side = int(round(size * scale))
    if side > min(w, h):
        raise UserError(
            f"scale {scale:g} needs a {side}×{side} px region, but the {'ROI' if roi else 'frame'} is {w}×{h}: "
            "use a larger capture size, or run 'edgeleuk calibrate-scale' again"
        )
    if side < 16:
        raise UserError(f"scale {scale:g} gives a {side} px region; expected at least 16 px")
    return x0 + (w - side) // 2, y0 + (h - side) // 2, side, side
