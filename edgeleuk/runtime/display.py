"""The live view of `edgeleuk run --display`: every frame, the region the model sees, and the result.

Every frame is shown, usable or not: the window is what a user watches while focusing the
microscope, so an out-of-focus frame must appear (marked) rather than freeze the view.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from edgeleuk.errors import UserError
from edgeleuk.preprocess import to_rgb8
from edgeleuk.runtime.verdict import DISCLAIMER, Verdict

WINDOW = "edgeleuk"
MAX_VIEW = (960, 720)  # the frame is shrunk to fit in this; the panel below it is as wide (at least 420 px)
GREEN, RED, GREY, BLACK = (60, 180, 60), (40, 40, 220), (150, 150, 150), (0, 0, 0)


def x_display_reachable(display: str | None = None) -> bool:
    """Whether an X server answers at $DISPLAY. Qt (OpenCV's pip wheels) aborts the whole process,
    without an exception, when it cannot connect, so this is checked before any window is made."""
    display = display if display is not None else os.environ.get("DISPLAY", "")
    if not display:
        return False
    host, _, rest = display.rpartition(":")
    try:
        number = int(rest.split(".")[0])
    except ValueError:
        return False
    if host in ("", "unix"):
        path = f"/tmp/.X11-unix/X{number}"
        for address in (path, "\0" + path):  # the filesystem socket, then Linux's abstract one
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(1.0)
                    s.connect(address)
                    return True
            except OSError:
                continue
        return False
    try:
        with socket.create_connection((host, 6000 + number), timeout=1.0):
            return True
    except OSError:
        return False


def gui_backend() -> str | None:
    """The window toolkit of this OpenCV build ("QT5", "GTK3", …), None for a headless build."""
    info = cv2.getBuildInformation()
    gui = [line.split(":", 1)[1].strip() for line in info.splitlines() if line.strip().startswith("GUI:")]
    return gui[0] if gui and gui[0].upper() not in ("NONE", "NO", "") else None


def has_gui() -> bool:
    """Whether this OpenCV build can open windows (opencv-python-headless cannot)."""
    return gui_backend() is not None


def wayland_reachable() -> bool:
    """Whether a Wayland compositor's socket exists ($XDG_RUNTIME_DIR/$WAYLAND_DISPLAY)."""
    name, runtime = os.environ.get("WAYLAND_DISPLAY"), os.environ.get("XDG_RUNTIME_DIR")
    if not name:
        return False
    path = name if os.path.isabs(name) else os.path.join(runtime or "", name)
    return bool(runtime or os.path.isabs(name)) and os.path.exists(path)


def desktop_reachable() -> bool:
    """A display this build can open windows on: X for any build; Wayland too for GTK builds (Debian's
    python3-opencv). The pip wheels' Qt carries only its X plugin."""
    if x_display_reachable():
        return True
    backend = (gui_backend() or "").upper()
    return backend.startswith("GTK") and wayland_reachable()


def verdict_text(verdict: Verdict) -> str:
    """The sample so far, in one line (the status line, the window and the web view)."""
    if verdict.out_of_distribution:
        return (
            f"sample: {verdict.decision} ({verdict.ood_frames} of {verdict.frames + verdict.ood_frames} usable frames)"
        )
    text = f"sample: {verdict.decision}" + (
        f" {verdict.confidence * 100:.0f}% ({verdict.frames} frames)" if verdict.frames else ""
    )
    if verdict.ood_frames:
        text += f", {verdict.ood_frames} out of distribution"
    return text


def view_of(result: Any, labels: tuple[str, ...]) -> tuple[np.ndarray | None, Any]:
    """What an overlay shows for a records.FrameResult: the probabilities, or the reason the frame is
    not answered."""
    if result.in_distribution is False:  # shown like a refused frame: red square, the reason, no class
        return None, replace(result.quality, usable=False, reason="out of distribution: not answered")
    return result.probs, result.quality


@dataclass(frozen=True)
class Overlay:
    """What is drawn over and under a frame."""

    labels: tuple[str, ...]
    probs: np.ndarray | None  # None: not answered (the reason is the quality's)
    quality: Any  # quality.Quality, or None for an unreadable frame
    verdict_text: str
    fps: float = 0.0


def render(
    image: np.ndarray, color_order: str, region: tuple[int, int, int, int] | None, overlay: Overlay
) -> np.ndarray:
    """The window's picture (BGR): the frame shrunk to fit, the model's region (green when the frame is
    usable, red when not), then a panel with FPS, focus, the class and its bars or why the frame is unusable."""
    labels, probs, quality, verdict_text, fps = (
        overlay.labels,
        overlay.probs,
        overlay.quality,
        overlay.verdict_text,
        overlay.fps,
    )
    height, width = image.shape[:2]
    scale = min(1.0, MAX_VIEW[0] / width, MAX_VIEW[1] / height)
    view = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                      interpolation=cv2.INTER_LINEAR) if scale < 1.0 else image
    view = cv2.cvtColor(to_rgb8(view, color_order), cv2.COLOR_RGB2BGR)
    usable = quality is not None and quality.usable
    if region is not None:
        x0, y0, x1, y1 = (round(v * scale) for v in region)
        cv2.rectangle(view, (x0, y0), (x1 - 1, y1 - 1), GREEN if usable else RED, 2)
    rows = 4 + len(labels)  # figures, class or reason, one bar per class, the sample, the disclaimer
    panel = np.full((22 * rows + 6, max(view.shape[1], 420), 3), 255, np.uint8)
    figures = f"{fps:.1f} FPS"
    if quality is not None:
        figures += f"   focus {quality.focus:.0f}   brightness {quality.brightness:.0f}"
    _text(panel, figures, 0, BLACK)
    if probs is None:
        reason = quality.reason if quality is not None else "unreadable"
        _text(
            panel, reason if reason.startswith("out of distribution") else f"unusable frame: {reason}", 1, RED,
            bold=True
        )
    else:
        top = int(np.argmax(probs))
        _text(panel, f"{labels[top]} {probs[top] * 100:.0f}%", 1, BLACK, bold=True)
        for i, (label, p) in enumerate(zip(labels, probs)):
            y = 22 * (i + 2) + 6
            cv2.rectangle(panel, (90, y + 4), (90 + int(200 * float(p)), y + 18), GREEN if i == top else GREY, -1)
            cv2.putText(
                panel, f"{label} {p * 100:.0f}%", (6, y + 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, BLACK, 1, cv2.LINE_AA
            )
    _text(panel, verdict_text, 2 + len(labels), BLACK)
    canvas = np.full((view.shape[0] + panel.shape[0], panel.shape[1], 3), 255, np.uint8)
    canvas[: view.shape[0], : view.shape[1]] = view
    canvas[view.shape[0]:] = panel
    _text(canvas, DISCLAIMER, None, RED)
    return canvas


class FrameRate:
    """Frames per second, smoothed: an exponential average of the intervals (0.9 old, 0.1 new)."""

    def __init__(self) -> None:
        self.last: float | None = None
        self.interval: float | None = None

    def tick(self, now: float | None = None) -> float | None:
        """A frame arrived (at `now`, perf_counter seconds); the rate so far, None before the second frame."""
        now = time.perf_counter() if now is None else now
        if self.last is not None:
            dt = now - self.last
            self.interval = dt if self.interval is None else 0.9 * self.interval + 0.1 * dt
        self.last = now
        return 1.0 / self.interval if self.interval else None


class Display:
    """A window with the frame, the model's region, class, probability bars, FPS, focus and the verdict."""

    def __init__(self) -> None:
        if not has_gui():
            raise UserError("--display needs an OpenCV build with GUI support (pip install opencv-python "
                            "instead of opencv-python-headless); run without --display")
        if sys.platform.startswith("linux") and not desktop_reachable():
            where = os.environ.get("DISPLAY")
            raise UserError(f"--display needs a desktop: no X display answers at DISPLAY={where}" if where else
                            "--display needs a desktop: DISPLAY is not set (over SSH, use ssh -X or run on the "
                            "device's own screen); run without --display")
        try:
            cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)  # no toolbar: a plain live view
        except cv2.error as exc:
            raise UserError(f"--display: OpenCV cannot open a window ({str(exc).strip().splitlines()[-1]})") from None
        self.rate = FrameRate()

    def show(
        self, image: np.ndarray, color_order: str, region: tuple[int, int, int, int] | None, overlay: Overlay
    ) -> bool:
        """Draw one frame; True when the user closed the window (q, Esc or its close button)."""
        fps = self.rate.tick() or 0.0
        cv2.imshow(WINDOW, render(image, color_order, region, replace(overlay, fps=fps)))
        key = cv2.waitKey(1) & 0xFF
        try:
            closed = cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error:
            closed = True
        return key in (ord("q"), 27) or closed

    def close(self) -> None:
        try:
            cv2.destroyAllWindows()
            cv2.waitKey(1)
        except cv2.error:
            pass


def _text(panel: np.ndarray, text: str, row: int | None, colour, right: bool = False, bold: bool = False) -> None:
    """One line of the panel; row None is its last line."""
    y = 22 * row + 20 if row is not None else panel.shape[0] - 8
    x = 6
    if right:
        (w, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        x = max(6, panel.shape[1] - w - 6)
    cv2.putText(
        panel, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.55 if bold else 0.45, colour, 2 if bold else 1, cv2.LINE_AA
    )
