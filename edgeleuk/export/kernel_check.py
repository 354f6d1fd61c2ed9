"""Does an ONNX int8 file give the same answers on every CPU's int8 kernels? The file runs natively
and, through QEMU's user mode (`qemu-x86_64 -cpu MODEL`, Debian's qemu-user ≥ 7.2), under the other
family of onnxruntime's kernels: the saturating AVX2 ones on a VNNI machine, the exact SSE ones on an
AVX2 machine. An emulator is trusted only after the int8 probe gives that family's answer under it."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeleuk.cpu import EMULATED_MODEL, SATURATING, X86_AVX2, X86_SSE, read_cpu
from edgeleuk.runtime.int8_probe import EXACT, SATURATED

MIN_AGREEMENT = 0.99  # top-class agreement with the native run, on the checked images
# Largest change of a class probability. Saturation moved the shipped model's by up to 0.97 and a tiny
# model's by more than 0.2. Without it the kernels still differ in a few output steps of 1/255 (a tiny
# test model with 7-bit weights, where no pair sum can saturate: up to 9 steps, 0.035; the shipped
# model's 566 test images: none).
MAX_PROB_DIFF = 0.1


@dataclass(frozen=True)
class KernelCheck:
    """Which kernel families the file ran under, and how the emulated run compared with the native one."""

    checked: tuple[str, ...]  # the families whose answers agreed (the native one first)
    agreement: float | None = None  # with the native run; None when nothing was emulated
    max_prob_diff: float | None = None
    images: int = 0
    failed: str = ""  # a family whose answers differ
    skipped: str = ""  # why no other family could be run

    @property
    def passed(self) -> bool:
        return not self.failed


@functools.lru_cache(maxsize=1)
def emulator() -> str | None:
    """qemu-x86_64 7.2 or newer on an x86-64 machine (older TCG has no AVX2), else None; asked once a
    process (a conversion checks each file and starts the worker twice)."""
    if not read_cpu().x86:
        return None
    path = shutil.which("qemu-x86_64")
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"version (\d+)\.(\d+)", out)
    return path if found and (int(found[1]), int(found[2])) >= (7, 2) else None


def run_emulated(family: str, args: list[str], timeout: float) -> None:
    """kernel_worker with `args` in a Python that QEMU runs as the family's processor model."""
    qemu = emulator()
    if qemu is None:
        raise RuntimeError("no qemu-x86_64 ≥ 7.2 (Debian's qemu-user) on an x86-64 machine")
    cmd = [qemu, "-cpu", EMULATED_MODEL[family], sys.executable, "-m", "edgeleuk.export.kernel_worker", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join(line for line in proc.stderr.splitlines() if "TCG doesn't support" not in line)[-600:]
        raise RuntimeError(f"the emulated run exited {proc.returncode}: {tail}")


def probe_under(family: str, work: Path) -> int:
    """The int8 probe's answer under the emulated family (EXACT or SATURATED when emulation works)."""
    out = work / f"probe-{family}.npy"
    run_emulated(family, ["--probe", str(out)], timeout=300)
    return int(np.load(out)[0])


def other_family(native: str) -> str:
    """The family to emulate: the saturating one, or, on a machine that has it, the exact SSE one."""
    return X86_SSE if native in SATURATING else X86_AVX2


def check_file(path: Path, images: np.ndarray, timeout_per_image: float = 5.0) -> KernelCheck:
    """Run the ONNX file natively and under the other kernel family, and compare."""
    from edgeleuk.export.kernel_worker import predict_file

    native = read_cpu().int8_family
    if emulator() is None:
        return KernelCheck((native,), skipped="no qemu-x86_64 ≥ 7.2 on an x86-64 machine (apt-get install qemu-user)")
    family = other_family(native)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        want = SATURATED if family in SATURATING else EXACT
        answer = probe_under(family, work)
        if answer != want:
            return KernelCheck(
                (native,), skipped=f"the emulated {EMULATED_MODEL[family]} gave the int8 probe {answer}, not {want}"
            )
        np.save(work / "images.npy", images)
        run_emulated(
            family, [str(path), str(work / "images.npy"), str(work / "out.npy")], 60 + timeout_per_image * len(images)
        )
        emulated = np.load(work / "out.npy")
    reference = predict_file(path, images)
    agreement = float(np.mean(emulated.argmax(1) == reference.argmax(1)))
    diff = float(np.max(np.abs(emulated - reference)))
    ok = agreement >= MIN_AGREEMENT and diff <= MAX_PROB_DIFF
    return KernelCheck((native, family) if ok else (native,), agreement, diff, len(images), failed="" if ok else family)


def build_probe() -> bytes:
    """int8_probe.onnx: QLinearMatMul of 64 activations of 255 by int8 weights of 127, scaled so that
    exact int32 sums give 200 and int16 pair sums that saturate at 32767 give 101."""
    from onnx import TensorProto, checker, helper, numpy_helper

    k, n = 64, 8
    exact = 255 * 127 * k
    consts = {"a_scale": np.array(1.0, np.float32), "a_zero": np.array(0, np.uint8), "b": np.full((k, n), 127, np.int8),
              "b_scale": np.array(1.0, np.float32), "b_zero": np.array(0, np.int8),
              "y_scale": np.array(exact / EXACT, np.float32), "y_zero": np.array(0, np.uint8)}
    node = helper.make_node(
        "QLinearMatMul", ["a", "a_scale", "a_zero", "b", "b_scale", "b_zero", "y_scale", "y_zero"], ["y"]
    )
    graph = helper.make_graph([node], "int8_probe", [helper.make_tensor_value_info("a", TensorProto.UINT8, [1, k])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, n])],
                              [numpy_helper.from_array(v, name) for name, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgeleuk")
    model.ir_version = 8
    checker.check_model(model)
    return model.SerializeToString()
