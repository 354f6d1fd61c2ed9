"""Keras → ONNX (tf2onnx, explicit input signature: Keras 3 needs it; opset ≤ 18), and onnxruntime
static int8 quantization (QDQ, per-channel int8 weights, uint8 activations, pre-processed first)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from edgeleuk.export.recipes import QuantizationConfig

INPUT_NAME = "image"


def to_onnx(model, config: QuantizationConfig, path: Path) -> None:
    """Write the float32 ONNX model to path."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    if config.opset > 18:
        raise ValueError(f"Received: opset={config.opset}; tf2onnx supports at most 18")
    size = model.input_shape[1]
    signature = (tf.TensorSpec((None, size, size, 3), tf.float32, name=INPUT_NAME),)
    model_proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=config.opset)
    onnx.save(model_proto, str(path))


def quantize_onnx(fp32_path: Path, path: Path, calibration: Callable[[], Iterable[np.ndarray]],
                  config: QuantizationConfig) -> None:
    """Static QDQ int8 quantization of an fp32 ONNX file, calibrated on training images."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.images = iter(calibration())

        def get_next(self):
            image = next(self.images, None)
            return None if image is None else {INPUT_NAME: image[None].astype(np.float32)}

    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=False)
        weights = QuantType.QUInt8 if config.weight_type == "uint8" else QuantType.QInt8
        quantize_static(
            str(prepared), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=config.per_channel,
            reduce_range=config.reduce_range, activation_type=QuantType.QUInt8, weight_type=weights
        )


def embed_onnx(path: Path, key: str, value: str) -> None:
    """Add a metadata_props entry so a file that travels alone keeps its labels and preprocessing."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = key, value
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path))
