"""edgeleuk doctor: is this machine ready to run the classifier? Backends, CPU features, cameras,
the default model and a one-frame smoke inference, with a verdict line (exit 1 when something needed is missing)."""

from __future__ import annotations

import argparse
import platform
import sys
import time

from edgeleuk.versions import version_of


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeleuk doctor", description=__doc__)
    p.add_argument("--model", help="model to smoke-test (default: the packaged default)")
    return p




def cpu_features() -> dict[str, bool | str]:
    """The CPU features that matter for int8 inference, read from /proc/cpuinfo."""
    machine = platform.machine()
    flags: set[str] = set()
    model = platform.processor() or machine
    ident: dict[str, str] = {}
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("flags", "features"):
                flags.update(value.split())
            elif key in ("model name", "hardware", "cpu model") and value.strip():
                model = value.strip()
            elif key in ("cpu family", "model", "cpu part", "cpu implementer") and value.strip():
                ident.setdefault(key.replace(" ", "_"), value.strip())
    except OSError:
        pass
    if machine in ("x86_64", "AMD64", "i686"):
        return {"cpu": model, **ident, "arch": machine, "avx2": "avx2" in flags, "avx512": "avx512f" in flags,
                "avx512_vnni": "avx512_vnni" in flags, "avx_vnni": "avx_vnni" in flags}
    return {"cpu": model, **ident, "arch": machine, "dotprod": "asimddp" in flags, "i8mm": "i8mm" in flags, "neon": "asimd" in flags or "neon" in flags}


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    import numpy as np

    from edgeleuk import __version__
    from edgeleuk.errors import UserError, missing_package
    from edgeleuk.runtime.sources import list_cameras

    problems: list[str] = []
    print(f"edgeleuk {__version__} on Python {platform.python_version()} ({platform.system()} {platform.machine()})")
    backends = {"ai-edge-litert (LiteRT)": version_of("ai-edge-litert"), "tflite-runtime": version_of("tflite-runtime"),
                "onnxruntime": version_of("onnxruntime"), "opencv": version_of("opencv-python-headless", "opencv-python"),
                "numpy": version_of("numpy")}
    for name, version in backends.items():
        print(f"  {name:<24}{version or 'not installed'}")
    if not backends["ai-edge-litert (LiteRT)"] and not backends["tflite-runtime"] and not backends["onnxruntime"]:
        problems.append(f"no inference backend: {missing_package('ai-edge-litert or onnxruntime', 'runtime')}")
    if not backends["opencv"]:
        problems.append(str(missing_package("OpenCV", "runtime")))
    if "tensorflow" in sys.modules:
        problems.append("TensorFlow was imported by the runtime (a bug: please report it)")
    feats = cpu_features()
    print("  cpu: " + ", ".join(f"{k} {v}" for k, v in feats.items()))
    if feats["arch"] in ("armv7l", "armv6l"):
        problems.append("32-bit ARM: LiteRT has no wheels for it; install a 64-bit OS")
    cams = list_cameras()
    picam = version_of("picamera2")
    print(f"  cameras: {', '.join(cams) or 'none under /dev/video*'}; picamera2 {picam or 'not installed'}")
    from edgeleuk.runtime.display import desktop_reachable, gui_backend

    backend = gui_backend()
    gui = f"GUI build ({backend})" if backend else "headless build (pip install opencv-python for --display)"
    print(f"  --display: OpenCV {gui}; desktop {'reachable' if desktop_reachable() else 'not reachable (DISPLAY unset or no X server)'}")
    try:
        from edgeleuk.runtime import load
        from edgeleuk.runtime.stain import READ_EVERY

        clf = load(args.model)
        variant = clf.variant
        print(f"  model: {clf.path} ({variant.name if variant else 'no manifest'}, sha256 {variant.sha256[:16] + '…' if variant else 'unchecked'})")
        frame = np.full((480, 640, 3), 200, dtype=np.uint8)
        clf.classify(frame)  # warm-up
        start = time.perf_counter()
        probs = clf.classify(frame)
        ms = (time.perf_counter() - start) * 1000
        print(f"  smoke inference: {clf.backend.name} {clf.backend.version}, {clf.backend.threads} threads, {ms:.2f} ms, "
              f"probabilities sum {float(probs.sum()):.3f}")
        if not np.isfinite(probs).all():
            problems.append("the model returned non-finite values")
        if clf.ood is not None:
            spaces = ", ".join(f"{c.features} ({c.dims} features, threshold {c.threshold:.3f})" for c in clf.ood.stats.components)
            stain = clf.ood.stats.stain
            stain_text = (f"stain strength judged per class and per slide (read on one usable frame in {READ_EVERY}), limits "
                          + ", ".join(f"{v:.2f}" for v in stain.log_limit)
                          + ("" if stain.red_log_limit is None else "; red cells " + ", ".join(f"{v:.2f}" for v in stain.red_log_limit))
                          if stain is not None else "stain strength not judged (converted before the check)")
            where = ("computed by the file's own layers" if clf.score_index is not None else "computed with numpy from the features")
            print(f"  out-of-distribution score: {spaces}, {where}; {stain_text}; red-cell ruler {clf.cell_diameter_px or 'absent'} px")
        else:
            print("  out-of-distribution score: absent (this model cannot tell frames unlike its training images; "
                  "convert it with --data to add the statistics)")
        if clf.quality is not None:
            q = clf.quality
            print(f"  quality gate: the model's limits (focus ≥ {q.min_focus}, brightness {q.min_brightness}-{q.max_brightness}, "
                  f"leukocyte area ≥ {q.min_leukocyte_fraction:.2%})")
        else:
            print("  quality gate: the default limits (the model carries none)")
    except UserError as exc:
        problems.append(f"model: {exc}")
    if problems:
        print("verdict: NOT READY — " + "; ".join(problems))
        return 1
    print("verdict: ready" + ("" if cams or picam else " (no camera found: --source works; plug in a camera for --camera)"))
    return 0
