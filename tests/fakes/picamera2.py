"""A stand-in for Picamera2 (Raspberry Pi CSI cameras), so `--camera picamera2` runs in tests anywhere.

Put tests/fakes on PYTHONPATH. Environment:
    FAKE_PICAMERA2_IMAGE    an image file shown in the centre square of every frame (default: grey)
    FAKE_PICAMERA2_FRAMES   frames delivered in all before capture fails, as with a loose cable (default: unlimited)
    FAKE_PICAMERA2_CAMERAS  number of cameras attached (default 1; 0: Picamera2() fails as the real one does)
"""

import os
import time

import cv2
import numpy as np

delivered = 0
opened = 0


class Picamera2:
    def __init__(self, camera_num: int = 0):
        global opened
        if camera_num >= int(os.environ.get("FAKE_PICAMERA2_CAMERAS", "1")):
            raise IndexError("list index out of range")  # what Picamera2 raises with no camera attached
        opened += 1
        self.size, self.started, self.closed = (640, 480), False, False

    @staticmethod
    def global_camera_info() -> list:
        return [{"Model": "fake", "Num": i} for i in range(int(os.environ.get("FAKE_PICAMERA2_CAMERAS", "1")))]

    def create_video_configuration(self, main: dict) -> dict:
        return {"main": dict(main)}

    def configure(self, config: dict) -> None:
        assert config["main"]["format"] == "RGB888"
        self.size = tuple(config["main"]["size"])

    def start(self) -> None:
        self.started = True

    def capture_array(self, name: str = "main") -> np.ndarray:
        """RGB888 as Picamera2 delivers it: B, G, R in memory."""
        global delivered
        if not self.started or self.closed:
            raise RuntimeError("Camera is not running")
        if delivered >= int(os.environ.get("FAKE_PICAMERA2_FRAMES", str(10**9))):
            raise RuntimeError("Device or resource busy: dequeue failed")
        time.sleep(0.005)
        width, height = self.size
        frame = np.full((height, width, 3), 200, np.uint8)
        path = os.environ.get("FAKE_PICAMERA2_IMAGE")
        if path:
            side = min(width, height)
            y0, x0 = (height - side) // 2, (width - side) // 2
            frame[y0 : y0 + side, x0 : x0 + side] = cv2.resize(
                cv2.imread(path), (side, side), interpolation=cv2.INTER_CUBIC
            )
        delivered += 1
        return frame

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True
