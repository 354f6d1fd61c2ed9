"""Run an ONNX file on a stack of images in this very process: `python -m edgeleuk.export.kernel_worker
MODEL IMAGES.npy OUT.npy` (or `--probe OUT.npy`). kernel_check starts it under QEMU's user mode, which
emulates only the process it starts, so onnxruntime must run here and not in a child. numpy and
onnxruntime only: no TensorFlow under emulation."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def predict_file(model: str | Path, images: np.ndarray, batch: int = 16) -> np.ndarray:
    """The file's first output (class probabilities) for uint8 images, on this process's kernels."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    first, output = session.get_inputs()[0], session.get_outputs()[0].name
    dtype = np.uint8 if first.type == "tensor(uint8)" else np.float32
    return np.concatenate([session.run([output], {first.name: images[i:i + batch].astype(dtype)})[0]
                           for i in range(0, len(images), batch)])


def main(argv: list[str]) -> int:
    if argv[:1] == ["--probe"] and len(argv) == 2:
        from edgeleuk.runtime.int8_probe import probe_output

        np.save(argv[1], np.array([-1 if (out := probe_output()) is None else out]))
        return 0
    if len(argv) != 3:
        print(
            "usage: python -m edgeleuk.export.kernel_worker MODEL IMAGES.npy OUT.npy | --probe OUT.npy", file=sys.stderr
        )
        return 2
    np.save(argv[2], predict_file(argv[0], np.load(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
