"""Camera-like degradations: the difference between the dataset's microscope camera and a user's.

Each condition maps a level in [0, 1] (0: untouched, 1: the strongest evaluated) to a concrete
degradation of an RGB uint8 image. Evaluation uses fixed severities 1-5 (levels 0.2 … 1.0); training
draws continuous random levels and parameters, so a model cannot tune itself to one fixed set.
Deterministic under a seed; numpy + OpenCV only (device-safe).
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from edgeleuk.preprocess import optical_density

SEVERITIES = (1, 2, 3, 4, 5)
MODERATE = 3


def _f32(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32)


def _u8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def focus_blur(image, level, rng):
    sigma = 0.1 + 2.4 * level
    return cv2.GaussianBlur(image, (0, 0), sigma) if level > 0 else image


def motion_blur(image, level, rng):
    length = int(round(1 + 12 * level))
    if length < 2:
        return image
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    angle = float(rng.uniform(0, 180))
    rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle, 1.0)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    return cv2.filter2D(image, -1, kernel / max(kernel.sum(), 1e-6), borderType=cv2.BORDER_REFLECT)


def underexposure(image, level, rng):
    return _u8(_f32(image) * (1.0 - 0.6 * level))


def overexposure(image, level, rng):
    return _u8(_f32(image) * (1.0 + 0.6 * level))


def contrast(image, level, rng):
    x = _f32(image)
    mean = x.mean(axis=(0, 1), keepdims=True)
    return _u8(mean + (x - mean) * (1.0 - 0.6 * level))


def gamma(image, level, rng):
    g = 1.0 + 1.2 * level if rng.random() < 0.5 else 1.0 / (1.0 + 1.2 * level)
    return _u8(255.0 * (_f32(image) / 255.0) ** g)


def color_cast(image, level, rng):
    """White balance off: per-channel gains in a random direction."""
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction) + 1e-9
    gains = 1.0 + 0.35 * level * direction
    return _u8(_f32(image) * gains[None, None, :])


def stain_factor(level: float) -> float:
    """How many times stronger (or weaker) `stain_intensity` stains at this level: 1.42 at severity 3."""
    return 1.0 + 0.7 * level


def scale_stain(image: np.ndarray, factor: float) -> np.ndarray:
    """The field stained `factor` times as strongly: its optical density scaled (Beer-Lambert)."""
    od = optical_density(image)
    return _u8(256.0 * np.exp(-od * factor) - 1.0)


def stain_intensity(image, level, rng):
    """Stronger or weaker staining, at random."""
    return scale_stain(image, stain_factor(level) if rng.random() < 0.5 else 1.0 / stain_factor(level))


def stain_hue(image, level, rng):
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.int16)
    shift = int(round(12 * level)) * (1 if rng.random() < 0.5 else -1)  # OpenCV hue: 0-179
    hsv[..., 0] = (hsv[..., 0] + shift) % 180
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def jpeg(image, level, rng):
    quality = int(round(95 - 85 * level))
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def gaussian_noise(image, level, rng):
    return _u8(_f32(image) + rng.normal(0.0, 25.0 * level, image.shape))


def poisson_noise(image, level, rng):
    if level <= 0:
        return image
    photons = 255.0 / (0.02 + 1.5 * level)  # fewer photons per grey level: more shot noise
    return _u8(rng.poisson(_f32(image) / 255.0 * photons) * (255.0 / photons))


def low_resolution(image, level, rng):
    h, w = image.shape[:2]
    scale = 1.0 - 0.8 * level
    if scale >= 0.999:
        return image
    small = cv2.resize(image, (max(8, int(w * scale)), max(8, int(h * scale))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def rotation(image, level, rng):
    angle = 45.0 * level * (1 if rng.random() < 0.5 else -1)
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if level >= 0.5:
        out = out[:, ::-1] if rng.random() < 0.5 else out[::-1]
    return np.ascontiguousarray(out)


def vignetting(image, level, rng):
    h, w = image.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((x - w / 2) / (w / 2)) ** 2 + ((y - h / 2) / (h / 2)) ** 2
    mask = 1.0 - 0.6 * level * np.clip(r2 / 2.0, 0, 1)
    return _u8(_f32(image) * mask[..., None])


MAX_MAGNIFICATION = 1.3  # severity 5: 1.3× or 1/1.3 = 0.77×, another camera adapter or sensor


def rescale(image: np.ndarray, factor: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """The same field seen at `factor` × the magnification, same frame size. Above 1 a crop (centred,
    or placed at random when `rng` is given) is enlarged; below 1 the image is shrunk and the border
    filled by reflection, which continues the smear's texture."""
    h, w = image.shape[:2]
    if abs(factor - 1.0) < 1e-3:
        return image
    if factor > 1:
        ch, cw = max(2, int(round(h / factor))), max(2, int(round(w / factor)))
        y0 = int(rng.integers(0, h - ch + 1)) if rng is not None else (h - ch) // 2
        x0 = int(rng.integers(0, w - cw + 1)) if rng is not None else (w - cw) // 2
        return cv2.resize(image[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    sh, sw = max(2, int(round(h * factor))), max(2, int(round(w * factor)))
    small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
    top, left = (h - sh) // 2, (w - sw) // 2
    return cv2.copyMakeBorder(small, top, h - sh - top, left, w - sw - left, cv2.BORDER_REFLECT_101)


def magnification(image, level, rng):
    """Another objective, adapter or sensor: up to 1.3× closer or farther, direction at random."""
    factor = 1.0 + (MAX_MAGNIFICATION - 1.0) * level
    return rescale(image, factor if rng.random() < 0.5 else 1.0 / factor)


CONDITIONS: dict[str, Callable[[np.ndarray, float, np.random.Generator], np.ndarray]] = {
    "focus_blur": focus_blur, "motion_blur": motion_blur, "underexposure": underexposure, "overexposure": overexposure,
    "contrast": contrast, "gamma": gamma, "color_cast": color_cast, "stain_intensity": stain_intensity,
    "stain_hue": stain_hue, "jpeg": jpeg, "gaussian_noise": gaussian_noise, "poisson_noise": poisson_noise,
    "low_resolution": low_resolution, "rotation_flip": rotation, "vignetting": vignetting,
    "magnification": magnification,
}


def level_of(severity: int) -> float:
    if severity not in SEVERITIES:
        from edgeleuk.errors import UserError

        raise UserError(f"Received: severity={severity}; expected one of {SEVERITIES}")
    return severity / len(SEVERITIES)


def degrade(image: np.ndarray, condition: str, severity: int, seed: int = 0) -> np.ndarray:
    """One evaluated degradation at a fixed severity (1-5); same seed, same output."""
    if condition not in CONDITIONS:
        from edgeleuk.errors import UserError

        raise UserError(f"Received: condition={condition!r}; expected one of {', '.join(CONDITIONS)}")
    return CONDITIONS[condition](image, level_of(severity), np.random.default_rng(seed))


def random_camera(image: np.ndarray, rng: np.random.Generator, p: float = 0.6, max_level: float = 0.8) -> np.ndarray:
    """Training policy: with probability p, one or two random conditions at continuous random levels."""
    if rng.random() >= p:
        return image
    names = list(CONDITIONS)
    for name in rng.choice(names, size=int(rng.integers(1, 3)), replace=False):
        image = CONDITIONS[name](image, float(rng.uniform(0.0, max_level)), rng)
    return image


def random_scale(
    image: np.ndarray, rng: np.random.Generator, low: float = 0.7, high: float = 1.4, p: float = 0.7
) -> np.ndarray:
    """Training policy: with probability p, a magnification drawn log-uniformly in [low, high]."""
    if rng.random() >= p:
        return image
    return rescale(image, float(np.exp(rng.uniform(np.log(low), np.log(high)))), rng)


def smear_geometry(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A cell has no up or left: random flips and 90° rotations."""
    image = np.rot90(image, int(rng.integers(0, 4)))
    if rng.random() < 0.5:
        image = image[:, ::-1]
    return np.ascontiguousarray(image)
