"""Does this CPU's onnxruntime sum u8×s8 products exactly? One QLinearMatMul (int8_probe.onnx: 64
activations of 255 times weights of 127, built by export/kernel_check.build_probe) answers 200 where
the sums are exact and 101 where int16 pair sums saturate (x86 AVX2 without VNNI). Measured, not
inferred from CPU flags: doctor reports it, and convert checks that an emulated CPU reproduces it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PROBE = Path(__file__).with_name("int8_probe.onnx")
EXACT, SATURATED = 200, 101


def probe_output() -> int | None:
    """The probe's answer on this process's CPU; None without onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    if not PROBE.is_file():  # an install without the package's data files
        return None
    session = ort.InferenceSession(str(PROBE), providers=["CPUExecutionProvider"])
    return int(session.run(None, {"a": np.full((1, 64), 255, np.uint8)})[0].min())


def saturates() -> bool | None:
    """True where onnxruntime's u8×s8 kernels saturate here, False where they are exact, None when
    it cannot tell (no onnxruntime, or an answer that is neither)."""
    out = probe_output()
    return {EXACT: False, SATURATED: True}.get(out) if out is not None else None
