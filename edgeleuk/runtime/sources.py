"""Frame sources: live cameras (OpenCV or Picamera2, each read by a thread keeping only the newest
frame), video files, single images and folders/globs of images (for replaying recorded slides).
Every source has frames() and close(); a thread starts only when frames() is iterated."""

from __future__ import annotations

import glob
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from edgeleuk.errors import UsageError, UserError
from edgeleuk.preprocess import IMAGE_SUFFIXES, ImageError, read_image

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".m4v", ".mjpg", ".mjpeg", ".webm")


@dataclass
class Frame:
    index: int
    image: np.ndarray | None  # None when this frame could not be read
    name: str  # file name or camera id
    color_order: str = "BGR"
    error: str | None = None
    handoff_ms: float = 0.0  # time from the frame being ready to the consumer having it


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
                self.failure = f"{self.name} stopped delivering frames ({self.failure_hint}) after {self.retries} reconnect attempts"
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
            raise UserError(f"camera {index} could not be opened; cameras present: {found}. "
                            "Use --camera N for another one, --camera picamera2 for a Raspberry Pi CSI camera, or --source FILE")

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
            raise UserError("Picamera2 is not installed: on Raspberry Pi OS run 'sudo apt install python3-picamera2' "
                            "and create the virtual environment with --system-site-packages (device/install.sh does)") from None
        self.Picamera2, self.size, self.error = Picamera2, (width, height), None
        super().__init__(retries)
        if self.handle is None:
            try:
                found = len(Picamera2.global_camera_info())
            except Exception:
                found = "unknown"
            raise UserError(f"the CSI camera could not be started ({self.error}); CSI cameras found: {found}. "
                            "Check the ribbon cable and 'rpicam-hello --list-cameras', or use --camera N for a USB camera")

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


class VideoSource:
    """A recorded video, decoded ahead by its own thread (as a camera's frames arrive decoded).

    Default: every frame, in order, as fast as the pipeline goes (a reproducible replay).
    realtime=True: paced at the clip's frame rate and, like a live camera, only the newest frame is
    handed over (late frames are dropped), so a recording stands in for the microscope camera.
    """

    def __init__(self, path: Path, queue_size: int = 4, realtime: bool = False, capture=None):
        """capture: instead of opening `path`, read this object with OpenCV VideoCapture's isOpened, read,
        get and release (frames decoded elsewhere: another camera SDK, or a benchmark's frames in memory)."""
        import cv2

        self.path, self.realtime = Path(path), realtime
        self.capture = capture if capture is not None else cv2.VideoCapture(str(path))
        if not self.capture.isOpened():
            raise UserError(f"{path}: OpenCV cannot open this video")
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.interval = 1.0 / fps if fps and fps > 0 else 1.0 / 30
        self.dropped = 0
        self._queue: queue.Queue = queue.Queue(maxsize=1 if realtime else queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._reader, name="video-reader", daemon=True)  # started by frames()

    def _put(self, item) -> None:
        if self.realtime and item is not None:
            try:  # keep only the newest frame
                self._queue.get_nowait()
                self.dropped += 1
            except queue.Empty:
                pass
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if item is None and self.realtime:
                    try:
                        self._queue.get_nowait()
                    except queue.Empty:
                        pass

    def _reader(self) -> None:
        start = time.perf_counter()
        index = 0
        try:
            while not self._stop.is_set():
                if self.realtime:
                    delay = start + index * self.interval - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                ok, image = self.capture.read()
                self._put((image, time.perf_counter()) if ok else None)
                if not ok:
                    return
                index += 1
        finally:
            self.capture.release()

    def frames(self) -> Iterator[Frame]:
        index = 0
        self._thread.start()
        try:
            while True:
                wait = time.perf_counter()
                item = self._queue.get()
                if item is None:
                    break
                image, ready = item
                # hand-off cost: from when the frame was both ready and wanted (waiting for the next frame is not a cost)
                yield Frame(index, image, self.path.name, handoff_ms=(time.perf_counter() - max(ready, wait)) * 1000)
                index += 1
        finally:
            self.close()
        if index == 0:
            raise UserError(f"{self.path}: no frame could be read")

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        else:
            self.capture.release()


class ImageSource:
    """Images, one frame each; an unreadable one is reported as an error frame and the run goes on."""

    def __init__(self, paths: list[Path], label: str):
        if not paths:
            raise UserError(f"no images found in {label} (looked for {', '.join(IMAGE_SUFFIXES)})")
        self.paths = paths

    def close(self) -> None:
        pass

    def frames(self) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            try:
                yield Frame(index, read_image(path), path.name)
            except ImageError as exc:
                yield Frame(index, None, path.name, error=str(exc))


def open_source(source: str | None = None, camera: str | None = None, width: int | None = None, height: int | None = None,
                realtime: bool = False):
    """--camera N | picamera2, or --source PATH (video, image, folder or glob); realtime paces a video."""
    if camera is not None:
        if str(camera).lower() == "picamera2":
            return PicameraSource(width or 1280, height or 720)
        if not str(camera).isdigit():
            raise UsageError(f"Received: --camera {camera}; expected a camera number (0, 1, …) or picamera2")
        return CameraSource(int(camera), width, height)
    if source is None:
        raise UsageError("nothing to read: pass --camera N, --camera picamera2 or --source PATH")
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        return ImageSource(files, str(path))
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return ImageSource([path], str(path))
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return VideoSource(path, realtime=realtime)
        raise UserError(f"{path}: not an image ({', '.join(IMAGE_SUFFIXES)}) or video ({', '.join(VIDEO_SUFFIXES)})")
    if any(ch in source for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(source) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        return ImageSource(files, source)
    raise UserError(f"source {source} does not exist")
