"""Inference backends behind one small interface: LiteRT (or tflite-runtime) and onnxruntime."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeleuk.errors import UserError, missing_package
from edgeleuk.manifest import Quantization
from edgeleuk.redirect import redirected

BACKENDS = ("litert", "tflite-runtime", "tf-lite", "onnxruntime")


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _native_stderr_quiet():
    """Close stderr at the file-descriptor level while a native library starts, when the command
    line asked for quiet (every command does, unless --verbose)."""
    return redirected() if os.environ.get("EDGELEUK_QUIET") == "1" else contextlib.nullcontext()


def _interpreter_class(backend: str | None):
    """LiteRT first, then tflite-runtime; tf.lite only when named (never by accident on a device)."""
    tried = []
    order = [backend] if backend else ["litert", "tflite-runtime"]
    for name in order:
        try:
            if name == "litert":
                from ai_edge_litert.interpreter import Interpreter
            elif name == "tflite-runtime":
                from tflite_runtime.interpreter import Interpreter
            elif name == "tf-lite":
                from tensorflow.lite.python.interpreter import Interpreter  # host only, by request
            else:
                raise UserError(
                    f"Received: backend={name!r} for a .tflite file; expected litert, tflite-runtime or tf-lite"
                )
            return name, Interpreter
        except ImportError as exc:
            tried.append(f"{name} ({exc.__class__.__name__}: {exc})")
    raise UserError(
        "no TFLite interpreter could be imported: "
        + "; ".join(tried)
        + ". "
        + str(missing_package("ai-edge-litert", "runtime"))
    )


class TFLiteBackend:
    """A TFLite interpreter with XNNPACK on `threads` threads; resizes its batch on demand."""

    def __init__(self, path: Path, threads: int | None = None, backend: str | None = None):
        self.name, interpreter_class = _interpreter_class(backend)
        self.threads = threads or default_threads()
        try:
            with _native_stderr_quiet():  # LiteRT announces its XNNPACK delegate on stderr
                self.interpreter = interpreter_class(model_path=str(path), num_threads=self.threads)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise UserError(
                f"{path}: the {self.name} interpreter cannot load it ({str(exc).strip().splitlines()[0]})"
            ) from None
        self._input = self.interpreter.get_input_details()[0]
        self._outputs = self.interpreter.get_output_details()
        self.input_shape = tuple(int(v) for v in self._input["shape"])
        self.input_dtype = np.dtype(self._input["dtype"]).name
        self.input_name = self._input["name"]
        self.input_quantization = _quant(self._input)
        self.output_names = [d["name"] for d in self._outputs]
        self.output_sizes = [int(d["shape"][-1]) for d in self._outputs]
        self.output_dtypes = [np.dtype(d["dtype"]).name for d in self._outputs]
        self.output_quantizations = [_quant(d) for d in self._outputs]
        self._batch = self.input_shape[0]
        self.invoke_ms = 0.0

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            self.interpreter.resize_tensor_input(self._input["index"], [batch, *self.input_shape[1:]])
            self.interpreter.allocate_tensors()
            self._batch = batch

    def set_input(self, x: np.ndarray) -> None:
        """x already in the input dtype (what `invoke` does before running; benchmarks time the rest)."""
        self._resize(len(x))
        self.interpreter.set_tensor(self._input["index"], x)

    def invoke(self, x: np.ndarray, outputs: tuple[int, ...] | None = None) -> list[np.ndarray]:
        """Raw call: x already in the input dtype; returns the raw output tensors (all, or those at
        `outputs`), in that order."""
        self.set_input(x)
        t0 = time.perf_counter()
        self.interpreter.invoke()
        self.invoke_ms = (time.perf_counter() - t0) * 1e3  # the interpreter alone, to show what the toolkit adds
        details = self._outputs if outputs is None else [self._outputs[i] for i in outputs]
        return [self.interpreter.get_tensor(d["index"]) for d in details]

    @property
    def version(self) -> str:
        from edgeleuk.versions import version_of

        dists = {
            "litert": ("ai-edge-litert",),
            "tflite-runtime": ("tflite-runtime",),
            "tf-lite": ("tensorflow", "tensorflow-cpu"),
        }[self.name]
        return version_of(*dists) or "unknown"


def _quant(detail: dict[str, Any]) -> Quantization | None:
    scale, zero = detail.get("quantization", (0.0, 0))
    if np.dtype(detail["dtype"]).kind in "iu" and scale:
        return Quantization(scale=float(scale), zero_point=int(zero))
    return None


class ONNXBackend:
    """An onnxruntime CPU session with `threads` intra-op threads."""

    name = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None, backend: str | None = None):
        if backend not in (None, "onnxruntime"):
            raise UserError(f"Received: backend={backend!r} for an .onnx file; expected onnxruntime")
        try:
            import onnxruntime as ort
        except ImportError:
            raise missing_package("onnxruntime", "runtime") from None
        self.threads = threads or default_threads()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise UserError(f"{path}: onnxruntime cannot load it ({str(exc).strip().splitlines()[0][:200]})") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = tuple(d if isinstance(d, int) else -1 for d in inp.shape)
        self.input_dtype = {"tensor(float)": "float32", "tensor(uint8)": "uint8"}.get(inp.type, inp.type)
        self.input_quantization = None
        outputs = self.session.get_outputs()
        self.output_names = [d.name for d in outputs]
        self.output_sizes = [d.shape[-1] if d.shape and isinstance(d.shape[-1], int) else -1 for d in outputs]
        self.output_dtypes = [{"tensor(float)": "float32"}.get(d.type, d.type) for d in outputs]
        self.output_quantizations = [None] * len(outputs)
        self.version = ort.__version__
        self.invoke_ms = 0.0

    def invoke(self, x: np.ndarray, outputs: tuple[int, ...] | None = None) -> list[np.ndarray]:
        """Every output in the file's order, or those at `outputs`."""
        names = None if outputs is None else [self.output_names[i] for i in outputs]
        t0 = time.perf_counter()
        out = self.session.run(names, {self.input_name: x})
        self.invoke_ms = (time.perf_counter() - t0) * 1e3
        return out


def output_roles(sizes: list[int], classes: int, features: tuple[int, ...] | None = None,
                 path: Path | str = "model") -> tuple[int, list[int]]:
    """Which output holds the probabilities (its size is the label count) and which hold the OOD
    score's features: the sizes the statistics expect, in their order, or else every other output."""
    probs = [i for i, n in enumerate(sizes) if n == classes]
    if len(probs) != 1:
        raise UserError(f"{path}: outputs of sizes {sizes}; expected exactly one of size {classes} (the labels' count)")
    rest = [i for i in range(len(sizes)) if i != probs[0]]
    if features is None:
        return probs[0], rest
    chosen = []
    for dims in features:
        match = [i for i in rest if sizes[i] == dims]
        if len(match) != 1:
            raise UserError(
                f"{path}: outputs of sizes {sizes}; the out-of-distribution statistics expect one of size {dims}. "
                "Convert the model again with this edgeleuk"
            )
        chosen.append(match[0])
    return probs[0], chosen


def open_backend(path: Path, threads: int | None = None, backend: str | None = None):
    if backend is not None and backend not in BACKENDS:
        raise UserError(f"Received: backend={backend!r}; expected one of {', '.join(BACKENDS)}")
    if path.suffix == ".tflite":
        return TFLiteBackend(path, threads, backend)
    if path.suffix == ".onnx":
        return ONNXBackend(path, threads, backend)
    raise UserError(f"{path}: expected a .tflite or .onnx file, or a folder with manifest.json")
