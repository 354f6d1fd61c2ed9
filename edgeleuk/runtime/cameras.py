"""Live cameras, each read by its own thread that keeps only the newest frame: USB/UVC through
OpenCV, and a Raspberry Pi CSI camera through Picamera2."""

from __future__ import annotations

import glob
import threading
import time
from typing import Iterator

import numpy as np

from edgeleuk.errors import UserError
from edgeleuk.runtime.records import Frame


def list_cameras() -> list[str]:
    return sorted(glob.glob("/dev/video*"))


class LiveCamera:
    """A live camera read by its own thread; `frames()` always hands over the newest frame.

    When reads fail (camera unplugged), it reopens with back-off and gives up after `retries`.
    Subclasses say how to open, read and release one kind of camera.
    """

    name = "camera"
    color_order = "BGR"
    failure_hint = "unplugged?"

    def __init__(self, retries: int = 4):
        self.retries = retries
        self.handle = self._open()
        self._lock = threading.Condition()
        self._latest: tuple[int, np.ndarray, float] | None = None
        self._stopped = False
        self.failure: str | None = None
        # started by frames(): a reader thread still inside OpenCV when the process exits aborts it
        self._thread = threading.Thread(target=self._reader, name=self.name, daemon=True)

    def _open(self):
        """The opened camera, or None when it cannot be opened now."""
        raise NotImplementedError

    def _read(self, handle) -> np.ndarray | None:
        raise NotImplementedError

    def _release(self, handle) -> None:
        raise NotImplementedError

    def _reader(self) -> None:
        seq, failures = 0, 0
        while not self._stopped:
            try:
                image = self._read(self.handle) if self.handle is not None else None
            except Exception:  # a driver error mid-run counts as a failed read, like OpenCV's False
                image = None
            if image is not None:
                failures = 0
                seq += 1
                with self._lock:
                    self._latest = (seq, image, time.perf_counter())
                    self._lock.notify_all()
                continue
            failures += 1
            if failures > self.retries:
                self.failure = (f"{self.name} stopped delivering frames ({self.failure_hint}) after {self.retries} "
                                "reconnect attempts")
                break
            time.sleep(min(0.5 * 2 ** (failures - 1), 4.0))
            self._close_handle()
            self.handle = self._open()
        with self._lock:
            self._stopped = True
            self._lock.notify_all()

    def _close_handle(self) -> None:
        if self.handle is not None:
            try:
                self._release(self.handle)
            except Exception:
                pass
            self.handle = None

    def frames(self) -> Iterator[Frame]:
        last, index = 0, 0
        self._thread.start()
        try:
            while True:
                wait = time.perf_counter()
                with self._lock:
                    while not self._stopped and (self._latest is None or self._latest[0] == last):
                        self._lock.wait(timeout=1.0)
                    if self._latest is None or self._latest[0] == last:
                        break
                    last, image, ready = self._latest
                yield Frame(index, image, self.name, color_order=self.color_order,
                            handoff_ms=(time.perf_counter() - max(ready, wait)) * 1000)
                index += 1
        finally:
            self.close()
        if self.failure:
            raise UserError(self.failure)

    def close(self) -> None:
        self._stopped = True
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        if not self._thread.is_alive():
            self._close_handle()


class CameraSource(LiveCamera):
    """An OpenCV camera (USB/UVC through V4L2)."""

    def __init__(self, index: int, width: int | None = None, height: int | None = None, retries: int = 4):
        import cv2

        self.cv2, self.index, self.size = cv2, index, (width, height)
        self.name = f"camera:{index}"
        super().__init__(retries)
        if self.handle is None:
            found = ", ".join(list_cameras()) or "none"
            raise UserError(
                f"camera {index} could not be opened; cameras present: {found}. "
                "Use --camera N for another one, --camera picamera2 for a Raspberry Pi CSI camera, or --source FILE"
            )

    def _open(self):
        cap = self.cv2.VideoCapture(self.index)
        if not cap.isOpened():  # VideoCapture raises nothing when there is no camera
            cap.release()
            return None
        if self.size[0]:
            cap.set(self.cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
        if self.size[1]:
            cap.set(self.cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        cap.set(self.cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    def _read(self, cap) -> np.ndarray | None:
        ok, image = cap.read()
        return image if ok else None

    def _release(self, cap) -> None:
        cap.release()


class PicameraSource(LiveCamera):
    """A Raspberry Pi CSI camera through Picamera2 (OpenCV cannot open these on current Raspberry Pi OS)."""

    name = "picamera2"
    color_order = "BGR"  # Picamera2's "RGB888" is B, G, R in memory: the order OpenCV uses
    failure_hint = "ribbon cable loose?"

    def __init__(self, width: int = 1280, height: int = 720, retries: int = 4):
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise UserError(
                "Picamera2 is not installed: on Raspberry Pi OS run 'sudo apt install python3-picamera2' "
                "and create the virtual environment with --system-site-packages (device/install.sh does)"
            ) from None
        self.Picamera2, self.size, self.error = Picamera2, (width, height), None
        super().__init__(retries)
        if self.handle is None:
            try:
                found = len(Picamera2.global_camera_info())
            except Exception:
                found = "unknown"
            raise UserError(
                f"the CSI camera could not be started ({self.error}); CSI cameras found: {found}. "
                "Check the ribbon cable and 'rpicam-hello --list-cameras', or use --camera N for a USB camera"
            )

    def _open(self):
        camera = None
        try:
            camera = self.Picamera2()
            camera.configure(camera.create_video_configuration(main={"size": self.size, "format": "RGB888"}))
            camera.start()
            return camera
        except Exception as exc:  # Picamera2 raises IndexError, RuntimeError, … when no camera answers
            self.error = f"{exc.__class__.__name__}: {exc}"
            if camera is not None:
                try:
                    self._release(camera)
                except Exception:
                    pass
            return None

    def _read(self, camera) -> np.ndarray | None:
        return camera.capture_array("main")

    def _release(self, camera) -> None:
        try:
            camera.stop()
        finally:
            camera.close()
