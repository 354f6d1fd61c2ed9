"""edgeleuk doctor: is this machine ready to run the classifier? Backends, CPU features, cameras,
the default model and a one-frame smoke inference, with a verdict line (exit 1 when something needed is missing)."""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

from edgeleuk.cpu import CpuInfo, read_cpu
from edgeleuk.versions import version_of


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeleuk doctor", description=__doc__)
    p.add_argument("--model", help="model to smoke-test (default: the packaged default)")
    return p




def int8_lines(cpu: CpuInfo) -> list[str]:
    """The CPU's int8 facts: its instruction sets and what onnxruntime's kernels do here, measured by the probe."""
    from edgeleuk.runtime.int8_probe import saturates

    lines = [f"  cpu: {cpu.summary()}"]
    measured = saturates()
    if measured is not None:
        lines.append(
            "  onnxruntime int8 probe: "
            + (
                "u8×s8 pair sums saturate here (x86 without VNNI): ONNX int8 files must have 7-bit weights"
                if measured
                else "exact integer sums"
            )
        )
    return lines


def timed_variants(folder: Path | None, threads: int | None = None) -> dict[str, float]:
    """p50 milliseconds of each int8 variant of the model folder on one frame here (20 calls after 3 warm-ups)."""
    from edgeleuk.errors import UserError
    from edgeleuk.manifest import read_manifest
    from edgeleuk.runtime import load

    if folder is None or not (folder / "manifest.json").is_file():
        return {}
    frame = np.full((480, 640, 3), 200, dtype=np.uint8)
    speeds = {}
    for v in read_manifest(folder).variants:
        if v.precision != "int8":
            continue
        try:
            clf = load(folder, variant=v.name, threads=threads)
        except UserError:
            continue  # refused here (unchecked kernels): reported by kernel_warnings
        for _ in range(3):
            clf.classify(frame)
        times = []
        for _ in range(20):
            start = time.perf_counter()
            clf.classify(frame)
            times.append(time.perf_counter() - start)
        speeds[f"{v.name} ({clf.backend.name})"] = float(np.median(times)) * 1000
    return speeds


def kernel_warnings(folder: Path | None, cpu: CpuInfo) -> list[str]:
    """ONNX int8 variants never run under this CPU's saturating kernels (`run` refuses them here)."""
    from edgeleuk.cpu import SATURATING, covered, unchecked_warning
    from edgeleuk.manifest import read_manifest

    if folder is None or not (folder / "manifest.json").is_file() or cpu.int8_family not in SATURATING:
        return []
    return [unchecked_warning(v.file, cpu.int8_family) for v in read_manifest(folder).variants
            if v.format == "onnx" and v.precision == "int8" and not covered(cpu.int8_family, v.kernels_checked)]


def int8_variant_lines(clf, cpu: CpuInfo) -> list[str]:
    """The model folder's int8 variants here: their speeds with the fastest named, and a warning for
    each ONNX int8 file never checked under this CPU's kernels."""
    folder = clf.path.parent if clf.variant is not None else None
    speeds = timed_variants(folder, clf.backend.threads)
    lines = []
    if len(speeds) > 1:
        fastest = min(speeds, key=speeds.get)
        lines.append(
            f"  int8 speed here (p50 of 20 frames, {clf.backend.threads} threads): "
            + ", ".join(f"{k} {v:.2f} ms" for k, v in speeds.items())
            + f"; fastest: {fastest.split(' ')[0]} (--variant)"
        )
    return lines + [f"  warning: {w}" for w in kernel_warnings(folder, cpu)]


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from edgeleuk import __version__
    from edgeleuk.errors import UserError

    print(f"edgeleuk {__version__} on Python {platform.python_version()} ({platform.system()} {platform.machine()})")
    problems = _package_problems()
    cpu = read_cpu()
    print("\n".join(int8_lines(cpu)))
    if cpu.arch in ("armv7l", "armv6l"):
        problems.append("32-bit ARM: LiteRT has no wheels for it; install a 64-bit OS")
    cameras = _devices()
    try:
        for line in _model_lines(args.model, cpu, problems):
            print(line)
    except UserError as exc:
        problems.append(f"model: {exc}")
    if problems:
        print("verdict: NOT READY — " + "; ".join(problems))
        return 1
    print("verdict: ready" + ("" if cameras else " (no camera found: --source works; plug in a camera for --camera)"))
    return 0


def _package_problems() -> list[str]:
    """The inference packages installed, printed; what is missing, as problems."""
    from edgeleuk.errors import missing_package

    problems: list[str] = []
    backends = {
        "ai-edge-litert (LiteRT)": version_of("ai-edge-litert"),
        "tflite-runtime": version_of("tflite-runtime"),
        "onnxruntime": version_of("onnxruntime"),
        "opencv": version_of("opencv-python-headless", "opencv-python"),
        "numpy": version_of("numpy"),
    }
    for name, version in backends.items():
        print(f"  {name:<24}{version or 'not installed'}")
    if not backends["ai-edge-litert (LiteRT)"] and not backends["tflite-runtime"] and not backends["onnxruntime"]:
        problems.append(f"no inference backend: {missing_package('ai-edge-litert or onnxruntime', 'runtime')}")
    if not backends["opencv"]:
        problems.append(str(missing_package("OpenCV", "runtime")))
    if "tensorflow" in sys.modules:
        problems.append("TensorFlow was imported by the runtime (a bug: please report it)")
    return problems


def _devices() -> bool:
    """Cameras and the window, printed; whether any camera is there."""
    from edgeleuk.runtime.cameras import list_cameras
    from edgeleuk.runtime.display import desktop_reachable, gui_backend

    cams = list_cameras()
    picam = version_of("picamera2")
    print(f"  cameras: {', '.join(cams) or 'none under /dev/video*'}; picamera2 {picam or 'not installed'}")
    backend = gui_backend()
    gui = f"GUI build ({backend})" if backend else "headless build (pip install opencv-python for --display)"
    print(
        f"  --display: OpenCV {gui}; desktop "
        f"{'reachable' if desktop_reachable() else 'not reachable (DISPLAY unset or no X server)'}"
    )
    return bool(cams or picam)


def _model_lines(model: str | None, cpu: CpuInfo, problems: list[str]) -> list[str]:
    """The model loaded, one smoke inference, what it judges and its int8 speed here."""
    from edgeleuk.runtime import load

    clf = load(model)
    variant = clf.variant
    lines = [
        f"  model: {clf.path} ({variant.name if variant else 'no manifest'}, sha256 "
        f"{variant.sha256[:16] + '…' if variant else 'unchecked'}); "
        f"classes: {', '.join(clf.labels)}"
    ]
    frame = np.full((480, 640, 3), 200, dtype=np.uint8)
    clf.classify(frame)  # warm-up
    start = time.perf_counter()
    probs = clf.classify(frame)
    ms = (time.perf_counter() - start) * 1000
    lines.append(
        f"  smoke inference: {clf.backend.name} {clf.backend.version}, {clf.backend.threads} threads, {ms:.2f} ms, "
        f"probabilities sum {float(probs.sum()):.3f}"
    )
    if not np.isfinite(probs).all():
        problems.append("the model returned non-finite values")
    return lines + [_ood_line(clf), _gate_line(clf)] + int8_variant_lines(clf, cpu)


def _ood_line(clf) -> str:
    from edgeleuk.runtime.stain import MIN_READINGS, READ_EVERY

    if clf.ood is None:
        return ("  out-of-distribution score: absent (this model cannot tell frames unlike its training images; "
                "convert it with --data to add the statistics)")
    spaces = ", ".join(
        f"{c.features} ({c.dims} features, threshold {c.threshold:.3f})" for c in clf.ood.stats.components
    )
    stain = clf.ood.stats.stain
    if stain is None:
        stain_text = "stain strength not judged (converted before the check)"
    else:
        red = "" if stain.red_log_limit is None else "; red cells " + ", ".join(f"{v:.2f}" for v in stain.red_log_limit)
        stain_text = (
            f"stain strength judged per class and per slide (read on a sample's first {MIN_READINGS} usable "
            f"frames, then one in {READ_EVERY}), limits " + ", ".join(f"{v:.2f}" for v in stain.log_limit) + red
        )
    where = (
        "computed by the file's own layers" if clf.score_index is not None else "computed with numpy from the features"
    )
    return (
        f"  out-of-distribution score: {spaces}, {where}; {stain_text}; red-cell ruler "
        f"{clf.cell_diameter_px or 'absent'} px"
    )


def _gate_line(clf) -> str:
    if clf.quality is None:
        return "  quality gate: the default limits (the model carries none)"
    q = clf.quality
    return (
        f"  quality gate: the model's limits (focus ≥ {q.min_focus:.2f}, mean grey level "
        f"{q.min_brightness:.1f}-{q.max_brightness:.1f}, "
        f"at most {q.max_bright_fraction:.1%} of pixels at ≥ 250 and {q.max_dark_fraction:.1%} at ≤ 5, "
        f"leukocyte area ≥ {q.min_leukocyte_fraction:.2%})"
    )
