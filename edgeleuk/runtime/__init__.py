"""Device side: load an artifact and classify frames. Imports numpy, OpenCV, LiteRT/onnxruntime only.

Never TensorFlow: `tf.lite` is used only when asked for by name (`backend="tf-lite"`), on a host.
"""

from edgeleuk.runtime.classifier import Classifier, load

__all__ = ["Classifier", "load"]
