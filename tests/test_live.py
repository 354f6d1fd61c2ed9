"""Live sources and the live view: Picamera2 (through a stand-in module), --display, and clean exits
when setup fails after a capture thread could have started."""

import json
import os
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import cli, smear
from edgeleuk.errors import UserError
from edgeleuk.preprocess import model_region, preprocess
from edgeleuk.runtime import load
from edgeleuk.runtime.display import Overlay, has_gui, render, x_display_reachable
from edgeleuk.runtime.quality import assess

FAKES = Path(__file__).resolve().parent / "fakes"
FAKE_ENV = {"PYTHONPATH": os.pathsep.join(filter(None, [str(FAKES), os.environ.get("PYTHONPATH")]))}


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("slide") / "pro.png"
    cv2.imwrite(str(path), cv2.resize(smear("Pro", 7), (224, 224), interpolation=cv2.INTER_CUBIC))
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory, slide) -> Path:
    path = tmp_path_factory.mktemp("clip") / "slide.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (320, 240))
    frame = np.full((240, 320, 3), 200, np.uint8)
    frame[:, 40:280] = cv2.resize(cv2.imread(str(slide)), (240, 240))
    for _ in range(60):
        writer.write(frame)
    writer.release()
    return path


def test_picamera2_frames_reach_the_model_in_the_right_colour_order(converted, slide, tmp_path):
    """The stand-in delivers RGB888 (B, G, R in memory); the logged probabilities must be those of the
    frame read as BGR, and differ from reading it as RGB (so a swapped order would be caught)."""
    log = tmp_path / "run.jsonl"
    cli("run", "--model", str(converted), "--camera", "picamera2", "--width", "320", "--height", "240",
        "--frames", "4", "--min-focus", "0", "--log", str(log), check_rc=0,
        env={**FAKE_ENV, "FAKE_PICAMERA2_IMAGE": str(slide)})
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    frames = [x for x in lines if "probabilities" in x and "frame" in x]
    assert len(frames) == 4 and {f["source"] for f in frames} == {"picamera2"}
    camera_frame = np.full((240, 320, 3), 200, np.uint8)
    camera_frame[:, 40:280] = cv2.resize(cv2.imread(str(slide)), (240, 240), interpolation=cv2.INTER_CUBIC)
    clf = load(converted)
    right = clf.predict(preprocess(camera_frame, clf.spec, color_order="BGR"))[0]
    wrong = clf.predict(preprocess(camera_frame, clf.spec, color_order="RGB"))[0]
    logged = np.array(list(frames[0]["probabilities"].values()))
    assert np.abs(logged - right).max() < 1e-3
    assert np.abs(right - wrong).max() > 1e-3


def test_picamera2_missing_or_absent_camera_is_a_clear_error(converted):
    proc = cli("run", "--model", str(converted), "--camera", "picamera2")
    assert proc.returncode == 1 and "Picamera2 is not installed" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli(
        "run", "--model", str(converted), "--camera", "picamera2", env={**FAKE_ENV, "FAKE_PICAMERA2_CAMERAS": "0"}
    )
    assert (
        proc.returncode == 1
        and "CSI camera could not be started" in proc.stderr
        and "CSI cameras found: 0" in proc.stderr
    )
    assert "Traceback" not in proc.stderr


def test_picamera2_failing_mid_run_reconnects_then_stops(monkeypatch):
    """capture_array() raising (a loose ribbon cable) is retried with reopening, then a clear error."""
    monkeypatch.syspath_prepend(str(FAKES))
    import picamera2

    import edgeleuk.runtime.cameras as cameras

    monkeypatch.setattr(picamera2, "delivered", 0)
    monkeypatch.setattr(picamera2, "opened", 0)
    monkeypatch.setenv("FAKE_PICAMERA2_FRAMES", "3")
    monkeypatch.setattr(cameras.time, "sleep", lambda s: None)
    camera = cameras.PicameraSource(320, 240, retries=2)
    seen = []
    with pytest.raises(UserError, match="picamera2 stopped delivering frames"):
        for frame in camera.frames():
            seen.append(frame)
    assert 1 <= len(seen) <= 3 and seen[0].color_order == "BGR" and seen[0].image.shape == (240, 320, 3)
    assert picamera2.opened == 3  # the first open and two reconnect attempts


def test_setup_errors_after_opening_a_video_exit_cleanly(clip, tmp_path):
    """A bad model given with a video source: a clear error and exit 1. The video's reader thread
    used to be running already, and the process aborted at exit (rc 134) inside OpenCV."""
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer")
    proc = cli("run", "--source", str(clip), "--model", str(bad))
    assert proc.returncode == 1 and "cannot load it" in proc.stderr
    assert "FATAL" not in proc.stderr and "Traceback" not in proc.stderr


def test_display_refused_without_gui_or_desktop_leaves_no_log(converted, clip, tmp_path):
    log = tmp_path / "run.jsonl"
    proc = cli("run", "--model", str(converted), "--source", str(clip), "--display", "--log", str(log),
               env={"DISPLAY": ""})
    assert proc.returncode == 1 and "--display needs" in proc.stderr and "Traceback" not in proc.stderr
    assert not log.exists()


def test_x_display_probe():
    assert not x_display_reachable("")
    assert not x_display_reachable("not-a-display")
    with socket.socket() as server:
        for number in range(40, 64):
            try:
                server.bind(("127.0.0.1", 6000 + number))
                break
            except OSError:
                continue
        else:
            pytest.skip("no free X port 6040-6063")
        server.listen(1)
        assert x_display_reachable(f"127.0.0.1:{number}.0")
    assert not x_display_reachable(f"127.0.0.1:{number}")


def test_live_view_marks_the_model_region_and_unusable_frames(converted):
    clf = load(converted)
    frame = np.full((720, 1280, 3), 200, np.uint8)
    frame[:, 280:1000] = cv2.resize(smear("Early", 3), (720, 720))
    region = model_region(720, 1280, clf.spec)
    assert region == (280, 0, 1000, 720)
    x = preprocess(frame, clf.spec)
    quality = assess(x)
    probs = clf.predict(x)[0]
    good = render(frame, "BGR", region, Overlay(clf.labels, probs, quality, "sample: Early 90% (3 frames)", 30.0))
    assert good.shape[1] == 960 and good.shape[0] > 540  # the frame shrunk to 960 wide, the panel below it
    border = good[270, round(280 * 0.75)]  # the left edge of the region, in the shrunk frame
    assert border[1] > 150 and border[2] < 100  # green (BGR)
    blurred = cv2.GaussianBlur(frame, (0, 0), 25)
    bad_quality = assess(preprocess(blurred, clf.spec))
    assert not bad_quality.usable
    bad = render(blurred, "BGR", region, Overlay(clf.labels, None, bad_quality, "sample: Early 90% (3 frames)", 30.0))
    border = bad[270, round(280 * 0.75)]
    assert border[2] > 150 and border[1] < 100  # red
    panel = bad[540:]
    assert ((panel[..., 2] > 150) & (panel[..., 1] < 100)).sum() > 200  # the reason, written in red


@pytest.mark.skipif(
    not has_gui() or not x_display_reachable(), reason="needs OpenCV with GUI support (opencv-python) and an X display"
)
def test_display_window_runs_and_closes(converted, clip):
    cli(
        "run", "--model", str(converted), "--source", str(clip), "--display", "--frames", "10", "--min-focus", "0",
        check_rc=0
    )


def test_wayland_counts_only_for_gtk_builds(monkeypatch, tmp_path):
    """Debian's python3-opencv (GTK) opens windows on Wayland; the pip wheels' Qt has only its X plugin."""
    import edgeleuk.runtime.display as display

    (tmp_path / "wayland-0").touch()
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setattr(display, "gui_backend", lambda: "GTK3")
    assert display.desktop_reachable()
    monkeypatch.setattr(display, "gui_backend", lambda: "QT5")
    assert not display.desktop_reachable()
    monkeypatch.setattr(display, "gui_backend", lambda: "GTK3")
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-9")
    assert not display.desktop_reachable()
