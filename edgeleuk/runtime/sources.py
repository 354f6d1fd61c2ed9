"""Frame sources: live cameras (cameras.py: OpenCV or Picamera2, each read by a thread keeping only
the newest frame), video files, single images and folders/globs of images (for replaying recorded
slides). Every source has frames() and close(); a thread starts only when frames() is iterated."""

from __future__ import annotations

import glob
import queue
import threading
import time
from pathlib import Path
from typing import Iterator

from edgeleuk.errors import UsageError, UserError
from edgeleuk.preprocess import IMAGE_SUFFIXES, ImageError, read_image
from edgeleuk.runtime.cameras import CameraSource, PicameraSource
from edgeleuk.runtime.records import Frame

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".m4v", ".mjpg", ".mjpeg", ".webm")


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
                # hand-off cost: from when the frame was both ready and wanted (waiting for the next frame is not a
                # cost)
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


def open_source(
    source: str | None = None, camera: str | None = None, width: int | None = None, height: int | None = None,
    realtime: bool = False
):
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
