"""Device side: load an artifact and classify frames. Imports numpy, OpenCV, LiteRT/onnxruntime only.

Never TensorFlow: `tf.lite` is used only when asked for by name (`backend="tf-lite"`), on a host.
`load` and `Classifier` are imported on first use, so the collector and the fleet report, which read
only `lines`, `mqtt_link` and `config` from here, start without numpy and OpenCV.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Classifier", "load"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from edgeleuk.runtime.classifier import Classifier, load

        return {"Classifier": Classifier, "load": load}[name]
    raise AttributeError(f"module 'edgeleuk.runtime' has no attribute {name!r}")
