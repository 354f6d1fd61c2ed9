"""Frame quality gate: frames the model is known to fail on are marked unusable, not classified.

Measured on the model input (the 224×224 crop) so thresholds do not depend on camera resolution.
Defaults come from the training images (../shared all4, every 5th image): their variance of the
Laplacian spans 47…1,576 (1st percentile 88); a Gaussian blur of sigma 1 brings a typical image to
about 28. Their mean grey level spans 189…244 and up to 62% of pixels sit at ≥ 250 (bright
backgrounds are normal in these smears), while almost none are at ≤ 5.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class QualityThresholds:
    min_focus: float = 25.0  # variance of the Laplacian of the grey 224 crop
    min_brightness: float = 120.0  # mean grey level
    max_brightness: float = 250.0
    max_dark_fraction: float = 0.25  # pixels at ≤ 5
    max_bright_fraction: float = 0.9  # pixels at ≥ 250


@dataclass(frozen=True)
class Quality:
    focus: float
    brightness: float
    dark_fraction: float
    bright_fraction: float
    usable: bool
    reason: str | None

    def as_dict(self) -> dict:
        return {"focus": round(self.focus, 1), "brightness": round(self.brightness, 1),
                "dark_fraction": round(self.dark_fraction, 4), "bright_fraction": round(self.bright_fraction, 4),
                "usable": self.usable, "reason": self.reason}


def assess(image_rgb: np.ndarray, thresholds: QualityThresholds | None = None) -> Quality:
    """Focus and exposure of a preprocessed RGB uint8 image, and whether it passes the gate."""
    t = thresholds or QualityThresholds()
    grey = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    focus = float(cv2.Laplacian(grey, cv2.CV_32F).var())
    brightness = float(grey.mean())
    dark = float((grey <= 5).mean())
    bright = float((grey >= 250).mean())
    reason = None
    if brightness < t.min_brightness or dark > t.max_dark_fraction:
        reason = "underexposed"
    elif brightness > t.max_brightness or bright > t.max_bright_fraction:
        reason = "overexposed"
    elif focus < t.min_focus:
        reason = "out of focus"
    return Quality(focus, brightness, dark, bright, reason is None, reason)
