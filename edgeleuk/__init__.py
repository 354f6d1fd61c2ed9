"""edgeleuk: a leukemia blood-smear classifier from training to a microscope-attached edge device.

Research use only: not a diagnostic device. Importing this package imports nothing heavy.
"""

__version__ = "0.1.0"

# ONNX Runtime 1.32's Linux wheels write a device id and a usage database under
# ~/.cache/Microsoft/DeveloperTools/.onnxruntime/ and $TMPDIR/.ses when a session starts, and
# `disable_telemetry_events()` comes too late to stop it. ORT_DISABLE_TELEMETRY=1 (read by 1.32)
# and ORT_TELEMETRY_DISABLED=1 (its later name) do, if set before onnxruntime loads: edgeleuk sets
# them on import unless the environment already says otherwise. A microscope computer keeps no
# identifier it was not asked to keep.
import os as _os

for _name in ("ORT_DISABLE_TELEMETRY", "ORT_TELEMETRY_DISABLED"):
    _os.environ.setdefault(_name, "1")
# OpenCV decodes up to 2^30 pixels (3 GB as BGR) before refusing an image; a device has far less
# memory. 2^27 (134 megapixels, 400 MB) is above any microscope camera. Read at OpenCV's first decode.
_os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 27))
del _os, _name
