"""What the latency benchmark measures and where: the machine's facts, and one job per
(variant, backend, threads, batch) of the model folder, each with its timing budget."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from edgeleuk.errors import missing_package
from edgeleuk.manifest import read_manifest
from edgeleuk.runtime.backends import default_threads

TFLITE_BACKENDS = ("litert", "tflite-runtime")


def machine_facts() -> dict:
    from edgeleuk.cpu import read_cpu
    from edgeleuk.versions import version_of

    cpu = read_cpu()
    facts = {
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cores": default_threads(),
        "cpu": cpu.model,
        "arch": cpu.arch,
        "cpu_summary": cpu.summary(),
        "int8_kernels": cpu.int8_family,
        "versions": {
            d: version_of(d)
            for d in (
                "ai-edge-litert",
                "tflite-runtime",
                "onnxruntime",
                "tensorflow",
                "tensorflow-cpu",
                "numpy",
                "opencv-python-headless",
            )
        },
    }
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        )
        facts["gpu"] = out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        facts["gpu"] = None
    return facts


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def plan(args, folder: Path) -> list[dict]:
    manifest = read_manifest(folder)
    threads = [default_threads()] if args.quick else sorted({*range(1, default_threads() + 1)})
    if args.threads:
        threads = [int(t) for t in args.threads.split(",")]
    batches = [1] if args.quick else [1, args.batch]
    rounds = 1 if args.quick else args.rounds
    timing = (
        {"warmup": 5, "min_runs": 20, "min_seconds": 0.3, "max_runs": 200}
        if args.quick
        else {
            "warmup": 50,
            "min_runs": max(50, args.min_runs // rounds),
            "min_seconds": args.min_seconds / rounds,
            "max_runs": 20000,
        }
    )
    wanted = set(args.variants.split(",")) if args.variants else None
    jobs = []
    for v in manifest.variants:
        if wanted and v.name not in wanted:
            continue
        if v.format == "keras":
            backends = ["tensorflow"]
        elif v.format == "tflite":
            backends = list(TFLITE_BACKENDS)
        else:
            backends = ["onnxruntime"]
        for backend in backends:
            for t in threads:
                for b in batches:
                    job = {"variant": v.name, "backend": backend, "threads": t, "batch": b, "model": str(folder),
                           "file": str(folder / v.file), "size_bytes": v.size_bytes, **timing}
                    job["data"] = args.data if (args.data and b == 1 and t == threads[-1]) else None
                    job["split"] = args.split
                    if not (folder / v.file).is_file():
                        job["skipped"] = f"{v.file} is not in {folder} (not shipped in this install)"
                    elif backend == "tensorflow" and not _importable("tensorflow"):
                        job["skipped"] = str(missing_package("TensorFlow", "train"))
                    elif backend == "tflite-runtime" and not _importable("tflite_runtime"):
                        job["skipped"] = (
                            "tflite-runtime not installed (its last release needs numpy<2 and lacks XNNPACK int8)"
                        )
                    elif backend == "litert" and not _importable("ai_edge_litert"):
                        job["skipped"] = "ai-edge-litert not installed"
                    job["kind"] = "keras" if backend == "tensorflow" else "runtime"
                    if backend == "tensorflow":
                        job["backend"] = "tensorflow (tf.function)"
                    else:
                        job["backend_arg"] = backend
                    jobs.append(job)
    return jobs
