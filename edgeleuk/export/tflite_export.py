"""Keras → TFLite for each precision. Uses `from_keras_model` (`from_concrete_functions` on a Keras 3
model writes a file that outputs NaN)."""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from edgeleuk.export.recipes import QuantizationConfig


def to_tflite(
    model, config: QuantizationConfig, calibration: Callable[[], Iterable[np.ndarray]] | None = None
) -> bytes:
    """Convert and return the flatbuffer bytes.

    Args:
        model: a Keras model taking 0-255 RGB.
        config: the variant recipe (precision, input/output dtype).
        calibration: for int8, a callable yielding single preprocessed uint8 images (training part).
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if config.precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif config.precision == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif config.precision == "int8":
        if calibration is None:
            raise ValueError("int8 conversion needs calibration images")

        def representative():
            for image in calibration():
                yield [image[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = {"uint8": tf.uint8, "int8": tf.int8}.get(config.input_dtype, tf.float32)
        converter.inference_output_type = {"uint8": tf.uint8, "int8": tf.int8}.get(config.output_dtype, tf.float32)
    return converter.convert()
