#!/usr/bin/env python
"""A model's ONNX int8 file on the test part under each family of onnxruntime's int8 kernels: natively,
under an emulated AVX2 CPU without VNNI (`qemu-x86_64 -cpu Haswell`: u8×s8 pair sums that saturate)
and under an emulated SSE4.1 CPU (`-cpu Nehalem`: exact sums, as VNNI and ARM compute them). Prints
accuracy per family, per class, and top-class agreement with the native run.

    python benchmarks/cpu_kernels.py --data ../shared/data/all4                  # the packaged model
    python benchmarks/cpu_kernels.py --model runs/convert --data DIR --limit 100 # a quicker look

Emulation is slow (about 1 s an image at 224 px on 2 cores): the whole test part of 566 images takes
about 10 minutes per emulated family; progress and the time left are printed. Needs Debian's qemu-user
(7.2 or newer) on an x86-64 machine. Reads artifacts, never converts.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from edgeleuk.cpu import EMULATED_MODEL, X86_AVX2, X86_SSE, read_cpu  # noqa: E402
from edgeleuk.errors import UserError  # noqa: E402
from edgeleuk.export.kernel_check import emulator, probe_under, run_emulated  # noqa: E402
from edgeleuk.export.kernel_worker import predict_file  # noqa: E402
from edgeleuk.files import atomic_write_text  # noqa: E402
from edgeleuk.manifest import read_manifest, verify_variant  # noqa: E402
from edgeleuk.runtime.classifier import DEFAULT_MODEL_DIR  # noqa: E402
from edgeleuk.runtime.int8_probe import EXACT, SATURATED  # noqa: E402

CHUNK = 64  # images per emulated process: progress between them


def test_part(model: Path, data: str, limit: int | None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    from edgeleuk.dataset import load_arrays, scan
    from edgeleuk.split import read_split

    manifest = read_manifest(model)
    found = scan(data)
    split = read_split(model / "split.json", found.samples, found.root)
    samples = split.part(found.samples, "test")
    if limit:
        samples = [samples[i] for i in np.linspace(0, len(samples) - 1, min(limit, len(samples))).round().astype(int)]
    images, labels = load_arrays(samples, manifest.preprocess, progress=False)
    return images, labels, manifest.labels


def emulated(family: str, path: Path, images: np.ndarray, work: Path) -> np.ndarray:
    """The file's probabilities under the emulated family, CHUNK images per process, with the time left."""
    want = SATURATED if family == X86_AVX2 else EXACT
    if (answer := probe_under(family, work)) != want:
        raise UserError(
            f"the emulated {EMULATED_MODEL[family]} gave the int8 probe {answer}, not {want}: it does not reproduce "
            f"the {family} kernels (QEMU too old?)"
        )
    out, start = [], time.perf_counter()
    for i in range(0, len(images), CHUNK):
        np.save(work / "x.npy", images[i:i + CHUNK])
        run_emulated(family, [str(path), str(work / "x.npy"), str(work / "y.npy")], timeout=60 + 10 * CHUNK)
        out.append(np.load(work / "y.npy"))
        done = min(i + CHUNK, len(images))
        left = (time.perf_counter() - start) / done * (len(images) - done)
        print(
            f"  {family} (emulated {EMULATED_MODEL[family]}): {done}/{len(images)} images, about {left / 60:.1f} min "
            "left",
            flush=True,
        )
    return np.concatenate(out)


def row(name: str, probs: np.ndarray, native: np.ndarray, labels: np.ndarray, names: tuple[str, ...]) -> dict:
    pred = probs.argmax(1)
    per_class = {n: float(np.mean(pred[labels == c] == c)) for c, n in enumerate(names) if np.any(labels == c)}
    return {
        "kernels": name,
        "accuracy": float(np.mean(pred == labels)),
        "agreement_with_native": float(np.mean(pred == native.argmax(1))),
        "max_prob_diff_from_native": float(np.max(np.abs(probs - native))),
        "per_class_recall": per_class,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model", default=str(DEFAULT_MODEL_DIR),
        help="conversion folder with split.json (default: the packaged model)"
    )
    p.add_argument("--data", required=True, help="the dataset folder the split names")
    p.add_argument("--variant", default="onnx-int8")
    p.add_argument("--limit", type=int, help="this many test images, spread over the part (default: all)")
    p.add_argument("--out", help="write the rows as JSON here")
    args = p.parse_args()
    try:
        if emulator() is None:
            raise UserError("needs qemu-x86_64 7.2 or newer (Debian's qemu-user) on an x86-64 machine")
        model = Path(args.model)
        path = verify_variant(model, read_manifest(model).variant(args.variant))
        images, labels, names = test_part(model, args.data, args.limit)
        native = predict_file(path, images)
        rows = [row(f"native ({read_cpu().int8_family})", native, native, labels, names)]
        with tempfile.TemporaryDirectory() as tmp:
            for family in (X86_AVX2, X86_SSE):
                rows.append(
                    row(
                        f"{family} (emulated {EMULATED_MODEL[family]})", emulated(family, path, images, Path(tmp)),
                        native, labels, names
                    )
                )
    except UserError as exc:
        print(f"cpu_kernels: {exc}", file=sys.stderr)
        return 1
    print(f"\n{path.name} on {len(labels)} test images; this machine: {read_cpu().summary()}\n")
    print("| kernels | accuracy | top class as native | largest probability change | " + " | ".join(names) + " |")
    print("|---|---|---|---|" + "---|" * len(names))
    for r in rows:
        print(
            f"| {r['kernels']} | {r['accuracy']:.2%} | {r['agreement_with_native']:.2%} | "
            f"{r['max_prob_diff_from_native']:.3f} | "
            + " | ".join(f"{r['per_class_recall'].get(n, float('nan')):.1%}" for n in names)
            + " |"
        )
    if args.out:
        atomic_write_text(
            Path(args.out),
            json.dumps(
                {
                    "date": time.strftime("%Y-%m-%d"),
                    "file": path.name,
                    "cpu": read_cpu().summary(),
                    "images": len(labels),
                    "rows": rows,
                },
                indent=2,
            )
            + "\n",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
