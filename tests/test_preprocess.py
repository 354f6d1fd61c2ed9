import cv2
import numpy as np
import pytest

from edgeleuk.errors import UserError
from edgeleuk.manifest import PreprocessSpec
from edgeleuk.preprocess import ImageError, crop_roi, load_image, preprocess, read_image, to_rgb8


def test_bgr_becomes_rgb_and_size():
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[..., 0] = 255  # blue in OpenCV order
    out = preprocess(frame)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert out[..., 2].min() == 255 and out[..., 0].max() == 0


def test_centre_crop_keeps_the_middle():
    frame = np.zeros((100, 300, 3), np.uint8)
    frame[:, 100:200] = 255
    out = preprocess(frame, PreprocessSpec(size=50), color_order="RGB")
    assert out.min() == 255  # only the white centre square survives
    stretched = preprocess(frame, PreprocessSpec(size=50, crop="none"), color_order="RGB")
    assert stretched.min() == 0


@pytest.mark.parametrize("image", [
    np.full((30, 40), 128, np.uint8),
    np.full((30, 40, 1), 128, np.uint8),
    np.full((30, 40, 4), 128, np.uint8),
    np.full((30, 40, 3), 128 * 257, np.uint16),
    np.full((30, 40, 3), 128 / 255, np.float32),
])
def test_any_decoded_image_becomes_rgb8(image):
    out = to_rgb8(image)
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    assert abs(int(out.mean()) - 128) <= 1


def test_bad_frames_raise_clear_errors():
    with pytest.raises(ImageError):
        to_rgb8(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(ImageError, match="shape"):
        to_rgb8(np.zeros((4, 4, 5), np.uint8))


def test_roi_crop_and_out_of_frame():
    frame = np.arange(100 * 100 * 3, dtype=np.uint8).reshape(100, 100, 3)
    assert crop_roi(frame, (10, 20, 30, 40)).shape == (40, 30, 3)
    for roi in ((200, 200, 10, 10), (90, 0, 20, 10), (0, 0, 100, 101)):
        with pytest.raises(UserError, match="reaches beyond the 100×100 frame"):
            crop_roi(frame, roi)
    assert crop_roi(frame, (0, 0, 100, 100)).shape == (100, 100, 3)


@pytest.mark.parametrize("suffix,params", [(".png", []), (".bmp", []), (".tif", []), (".jpg", [])])
def test_formats_round_trip(tmp_path, suffix, params):
    image = np.full((50, 60, 3), (10, 100, 200), np.uint8)
    path = tmp_path / f"x{suffix}"
    cv2.imwrite(str(path), image, params)
    out = load_image(path)
    assert out.shape == (224, 224, 3)
    assert abs(int(out[..., 0].mean()) - 200) < 6  # red channel first after BGR → RGB


def test_sixteen_bit_grey_png(tmp_path):
    path = tmp_path / "g16.png"
    cv2.imwrite(str(path), np.full((40, 40), 40000, np.uint16))
    assert read_image(path).dtype == np.uint16
    assert abs(int(load_image(path).mean()) - 40000 // 257) <= 1


@pytest.mark.parametrize("shape", [(720, 1280), (1080, 1920), (481, 643), (800, 800), (300, 300)])
def test_a_slide_seen_at_camera_resolution_comes_back_as_itself(shape):
    """A 224 image shown across the camera's centre square is recovered (nearest neighbour: 1.4 off)."""
    from conftest import smear

    image = cv2.resize(smear("Pro", 3), (224, 224), interpolation=cv2.INTER_CUBIC)
    side = min(shape)
    frame = np.full((*shape, 3), 200, np.uint8)
    y0, x0 = (shape[0] - side) // 2, (shape[1] - side) // 2
    frame[y0:y0 + side, x0:x0 + side] = cv2.resize(image, (side, side), interpolation=cv2.INTER_CUBIC)
    out = preprocess(frame, color_order="RGB")
    assert np.abs(out.astype(int) - image).mean() < 0.5


def test_corrupt_and_truncated_files(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="not a JPEG"):
        read_image(bad)
    ok, buf = cv2.imencode(".jpg", np.full((64, 64, 3), 99, np.uint8))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(buf.tobytes()[: len(buf) // 2])
    with pytest.raises(ImageError, match="truncated"):
        read_image(cut)
    junk_png = tmp_path / "junk.png"
    junk_png.write_bytes(b"\x89PNG\r\n\x1a\nxxxx")
    with pytest.raises(ImageError):
        read_image(junk_png)


@pytest.mark.parametrize("shape", [(720, 1280), (1080, 1920), (481, 643), (448, 448), (300, 300), (2000, 500)])
@pytest.mark.parametrize("crop", ["center", "none"])
def test_fast_area_resize_stays_close_to_direct_area(shape, crop):
    """The 2:1 area steps + one linear step stand in for INTER_AREA: close to it on any frame size."""
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (*shape, 3), dtype=np.uint8), (0, 0), 2)
    spec = PreprocessSpec(size=224, crop=crop)
    out = preprocess(frame, spec, color_order="RGB")
    side = min(shape)
    y0, x0 = (shape[0] - side) // 2, (shape[1] - side) // 2
    source = frame[y0:y0 + side, x0:x0 + side] if crop == "center" else frame
    direct = cv2.resize(source, (224, 224), interpolation=cv2.INTER_AREA)
    assert out.shape == (224, 224, 3)
    assert np.abs(out.astype(int) - direct).mean() < 1.0
