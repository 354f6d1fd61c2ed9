"""The one image preprocessing: training, calibration, evaluation, runtime and benchmark all call it.

Numpy + OpenCV only (device-safe). Output is always RGB uint8 of spec.size × spec.size with values
0-255; normalisation to [-1, 1] happens inside the model graph, so no caller can get it wrong.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import cv2
import numpy as np

from edgeleuk.errors import UserError
from edgeleuk.manifest import PreprocessSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MAX_IMAGE_PIXELS = int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", 1 << 27))  # set in edgeleuk/__init__.py
_INTERP = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}


class ImageError(UserError):
    """A file that cannot be decoded as an image (corrupt, truncated, not an image)."""


def to_rgb8(image: np.ndarray, color_order: str = "BGR") -> np.ndarray:
    """Any decoded image (grey, BGR/RGB, BGRA/RGBA; uint8, uint16 or float) → RGB uint8, H×W×3."""
    if image is None or not isinstance(image, np.ndarray) or image.size == 0:
        raise ImageError("empty frame")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        scale = 255.0 if np.issubdtype(image.dtype, np.floating) and float(np.nanmax(image)) <= 1.0 else 1.0
        image = np.clip(np.nan_to_num(image.astype(np.float32)) * scale, 0, 255).astype(np.uint8)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ImageError(f"frame of shape {image.shape}: expected H×W, H×W×3 or H×W×4")
    if image.shape[2] == 4:
        code = cv2.COLOR_BGRA2RGB if color_order.upper() == "BGR" else cv2.COLOR_RGBA2RGB
        return cv2.cvtColor(image, code)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if color_order.upper() == "BGR" else np.ascontiguousarray(image)


def crop_roi(image: np.ndarray, roi: tuple[int, int, int, int] | None) -> np.ndarray:
    """Crop x, y, w, h (inside the frame); None keeps the frame."""
    if roi is None:
        return image
    x0, y0, x1, y1 = _clip_roi(image.shape[0], image.shape[1], roi)
    return image[y0:y1, x0:x1]


def _clip_roi(height: int, width: int, roi: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """x, y, w, h → x0, y0, x1, y1; an ROI that reaches beyond the frame is an error, never silently
    clipped (a clipped ROI shows the model another part of the slide than the one asked for)."""
    x, y, w, h = roi
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > width or y + h > height:
        raise UserError(f"Received: roi={tuple(roi)}; it reaches beyond the {width}×{height} frame")
    return x, y, x + w, y + h


def model_region(height: int, width: int, spec: PreprocessSpec | None = None,
                 roi: tuple[int, int, int, int] | None = None) -> tuple[int, int, int, int]:
    """The part of a height × width frame the model sees, as x0, y0, x1, y1: the ROI, then the centre
    square. preprocess() crops with it and a live view draws it, so both show the same region."""
    spec = spec or PreprocessSpec()
    x0, y0, x1, y1 = _clip_roi(height, width, roi) if roi is not None else (0, 0, width, height)
    h, w = y1 - y0, x1 - x0
    if spec.crop == "center" and h != w:
        side = min(h, w)
        x0, y0 = x0 + (w - side) // 2, y0 + (h - side) // 2
        x1, y1 = x0 + side, y0 + side
    return x0, y0, x1, y1


def preprocess(
    image: np.ndarray, spec: PreprocessSpec | None = None, color_order: str = "BGR",
    roi: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """Decoded image or camera frame → model input (RGB uint8, size × size × 3).

    Args:
        image: as OpenCV gives it (BGR by default); grey, alpha and 16-bit are handled.
        spec: the manifest's preprocessing; the default is the model's 224 centre-crop spec.
        color_order: channel order of `image` ("BGR" from OpenCV, "RGB" from PIL).
        roi: optional x, y, w, h region of interest, applied before the crop.
    """
    spec = spec or PreprocessSpec()
    if image is None or not isinstance(image, np.ndarray) or image.ndim < 2 or image.size == 0:
        raise ImageError("empty frame")
    x0, y0, x1, y1 = model_region(image.shape[0], image.shape[1], spec, roi)
    image = image[y0:y1, x0:x1]
    if image.shape[0] != spec.size or image.shape[1] != spec.size:
        image = _resize(image, spec)
    return to_rgb8(image, color_order)


def _resize(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Resize to spec.size². "area" averages without OpenCV's non-integer INTER_AREA path, which is
    slow: a reduction of at most 2:1 is one linear step, which already weighs every pixel; a larger
    one goes linear to 2×size, then an exact 2:1 area step. Crops of 3-4× the size (720p frames)
    first take an exact 2:1 area step, so the linear step reads half the rows, as close to the
    original image (tests/test_preprocess.py)."""
    size = spec.size
    height, width = image.shape[:2]
    if spec.interpolation == "area" and (height > size or width > size):
        if 3 * size <= min(height, width) and max(height, width) < 4 * size:
            image = cv2.resize(image[: height - height % 2, : width - width % 2], (width // 2, height // 2),
                               interpolation=cv2.INTER_AREA)
        if max(image.shape[:2]) > 2 * size:
            image = cv2.resize(image, (2 * size, 2 * size), interpolation=cv2.INTER_LINEAR)
            return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    interp = cv2.INTER_LINEAR if spec.interpolation == "area" else _INTERP[spec.interpolation]
    return cv2.resize(image, (size, size), interpolation=interp)


MAX_FILE_BYTES = 8 * MAX_IMAGE_PIXELS  # no image edgeleuk decodes is larger (16-bit RGBA, uncompressed: 1 GiB)


def check_readable(path: Path) -> None:
    """ImageError before any byte is read for what must not be read whole: a pipe, socket or device
    matched by a glob (reading blocks forever), or a file larger than any image we decode (a sparse
    64 GB file ran out of memory)."""
    try:
        info = path.stat()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(f"{path}: not a regular file (a pipe, socket or device)")
    if info.st_size > MAX_FILE_BYTES:
        raise ImageError(f"{path}: {info.st_size / 2**30:.1f} GiB, larger than any image edgeleuk decodes "
                         f"({MAX_FILE_BYTES / 2**30:.0f} GiB)")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode a file as it is (BGR/BGRA/grey, 8 or 16 bit); ImageError when corrupt or truncated."""
    path = Path(path)
    check_readable(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror})") from None
    return decode_image(data, path)


def decode_image(data: np.ndarray, path: Path) -> np.ndarray:
    """Decode bytes already read from `path` (its suffix decides the JPEG completeness check)."""
    if data.size == 0:
        raise ImageError(f"{path}: empty file")
    if path.suffix.lower() in (".jpg", ".jpeg"):
        if data.size < 4 or data[0] != 0xFF or data[1] != 0xD8:
            raise ImageError(f"{path}: not a JPEG file")
        if not _jpeg_complete(data):
            raise ImageError(f"{path}: truncated JPEG (no end-of-image marker)")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # e.g. more pixels than OPENCV_IO_MAX_IMAGE_PIXELS (edgeleuk/__init__.py)
        detail = str(exc).strip().splitlines()[-1]
        if "CV_IO_MAX_IMAGE_PIXELS" in detail:
            raise ImageError(
                f"{path}: too many pixels to decode (over {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels)"
            ) from None
        raise ImageError(f"{path}: not a decodable image ({detail[:200]})") from None
    except MemoryError:
        raise ImageError(f"{path}: too large to decode in this machine's memory") from None
    if image is None or image.size == 0:
        raise ImageError(f"{path}: not a decodable image")
    return image


def _jpeg_complete(data: np.ndarray) -> bool:
    tail = data[-64:].tobytes().rstrip(b"\x00\r\n ")
    return tail.endswith(b"\xff\xd9")


def load_image(path: str | os.PathLike, spec: PreprocessSpec | None = None) -> np.ndarray:
    """Read and preprocess one file: the path every stage uses for images on disk."""
    return preprocess(read_image(path), spec, color_order="BGR")


def dihedral(images: np.ndarray) -> np.ndarray:
    """The 8 turns and flips of each image: a smear has no up or left, so each is a fair
    in-distribution frame, and the threshold's quantile rests on 8× more frames."""
    views = [np.rot90(images, k, axes=(1, 2)) for k in range(4)]
    views += [np.rot90(images[:, :, ::-1], k, axes=(1, 2)) for k in range(4)]
    return np.ascontiguousarray(np.concatenate(views))


# Beer-Lambert: a stain's absorbance is additive in optical density, -log of the light let through
OD_LUT = (-np.log((np.arange(256, dtype=np.float64) + 1.0) / 256.0)).astype(np.float32)


def optical_density(image: np.ndarray) -> np.ndarray:
    """The optical density of each pixel (float32): a table lookup for uint8 images."""
    if image.dtype == np.uint8:
        return OD_LUT[image]
    return -np.log((image.astype(np.float32) + 1.0) / 256.0)
