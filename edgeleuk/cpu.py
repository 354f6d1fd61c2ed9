"""What this CPU does with int8 models: its instruction sets and the family of integer kernels
onnxruntime picks on it. Stdlib only (doctor, convert and the benchmarks read it).

onnxruntime multiplies uint8 activations by int8 weights. On x86 with AVX2 (or AVX-512) but no VNNI
it uses VPMADDUBSW, which adds two u8×s8 products into a saturating int16: large activations times
large weights clip, and the answers change. With VNNI (VPDPBUSD), with SSE4.1 only, and on ARM the
products are summed in int32 and are exact. edgeleuk's ONNX int8 files use 7-bit weights
(|w| ≤ 64, so 2 × 255 × 64 < 32767) and give the same answers on every family; `convert` checks
it by running each file under the other family's kernels (export/kernel_check.py).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

# The families of onnxruntime's u8×s8 kernels; a file's manifest lists those it was checked under.
X86_VNNI = "x86-vnni"  # AVX512-VNNI or AVX-VNNI: exact int32 sums
X86_AVX2 = "x86-avx2"  # AVX2 / AVX-512 without VNNI: int16 pair sums that saturate
X86_SSE = "x86-sse"  # SSE4.1 only: exact
ARM64 = "arm64"  # NEON, with or without the dot product: exact
SATURATING = (X86_AVX2,)
# The processor models QEMU's user mode emulates to run another family's kernels on any x86 machine.
EMULATED_MODEL = {X86_AVX2: "Haswell", X86_SSE: "Nehalem"}


@dataclass(frozen=True)
class CpuInfo:
    """The instruction sets that decide int8 speed and correctness."""

    model: str
    arch: str
    flags: frozenset[str]
    ident: tuple[tuple[str, str], ...] = ()  # family/model (x86), part/implementer (ARM)

    @property
    def x86(self) -> bool:
        return self.arch in ("x86_64", "AMD64", "i686")

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def int8_family(self) -> str:
        if not self.x86:
            return ARM64 if self.arch in ("aarch64", "arm64") else self.arch
        if self.has("avx512_vnni") or self.has("avx_vnni"):
            return X86_VNNI
        if self.has("avx2") or self.has("avx512bw"):
            return X86_AVX2
        return X86_SSE

    def summary(self) -> str:
        """One line: the CPU and the instruction sets that matter for int8."""
        if self.x86:
            sets = {"AVX2": "avx2", "AVX-512": "avx512f", "AVX512-VNNI": "avx512_vnni", "AVX-VNNI": "avx_vnni"}
        else:
            sets = {"NEON": "asimd", "dot product": "asimddp", "i8mm": "i8mm"}
        listed = ", ".join(f"{name} {'yes' if self.has(flag) or (flag == 'asimd' and self.has('neon')) else 'no'}"
                           for name, flag in sets.items())
        ident = "".join(f", {k} {v}" for k, v in self.ident)
        return f"{self.model} ({self.arch}{ident}): {listed}; int8 kernels: {self.int8_family}"


def read_cpu(path: str | None = None) -> CpuInfo:
    """This machine's CPU, from /proc/cpuinfo (EDGELEUK_CPUINFO names another machine's copy, for
    support and tests); where there is none, the architecture alone."""
    path = path or os.environ.get("EDGELEUK_CPUINFO") or "/proc/cpuinfo"
    arch = platform.machine()
    flags: set[str] = set()
    model = platform.processor() or arch
    ident: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key, value = key.strip().lower(), value.strip()
                if key in ("flags", "features"):
                    flags.update(value.split())
                elif key in ("model name", "hardware", "cpu model") and value:
                    model = value
                elif key == "arch" and value:  # a faked file may name its architecture
                    arch = value
                elif key in ("cpu family", "model", "cpu part", "cpu implementer") and value:
                    ident.setdefault(key.replace(" ", "_"), value)
    except OSError:
        pass
    return CpuInfo(model=model, arch=arch, flags=frozenset(flags), ident=tuple(ident.items()))


def covered(family: str, checked: tuple[str, ...]) -> bool:
    """Whether a file checked under `checked` kernel families is known to answer alike on `family`:
    every exact family computes the same integer sums, so one exact family stands for the others."""
    return family in checked or (family not in SATURATING and any(f not in SATURATING for f in checked))


def unchecked_warning(name: str, family: str) -> str:
    """What doctor and run say of an ONNX int8 file that was never run under this CPU's kernels."""
    return (
        f"{name} was not checked under this CPU's int8 kernels ({family}: onnxruntime's u8×s8 pair sums saturate "
        "here), so its answers may differ from the ones it was evaluated with; run the TFLite variant (the default), "
        "or convert the model again with this edgeleuk"
    )
