"""Shared fixtures: synthetic class-coded images, a tiny trained model and its conversions, made once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeleuk.classes import KNOWN_DATASET as LABELS

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TINY_ARCH = ["--alpha", "0.35", "--input-size", "64"]
COLOURS = {"Benign": (200, 80, 80), "Early": (80, 200, 80), "Pre": (80, 80, 200), "Pro": (200, 200, 60)}


def smear(label: str, index: int, size: tuple[int, int] = (96, 80)) -> np.ndarray:
    """A class-coded synthetic 'cell' (BGR): a disc of the class colour on a light, noisy background."""
    rng = np.random.default_rng([LABELS.index(label), index])
    h, w = size[1], size[0]
    image = np.empty((h, w, 3), np.float32)
    image[:] = 0.5 * np.array(COLOURS[label]) + 110  # the background carries the class tint too
    centre = (int(w / 2 + rng.integers(-6, 7)), int(h / 2 + rng.integers(-6, 7)))
    cv2.circle(image, centre, int(min(h, w) * (0.2 + 0.05 * LABELS.index(label))), COLOURS[label], -1)
    noise = rng.normal(0, 4, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def huge_png(path: Path, side: int = 60000) -> Path:
    """A 1-bit PNG of side × side pixels (3.6 gigapixels at the default) in a few hundred kB."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def make_dataset(root: Path, per_class: int = 30, folder_names: dict[str, str] | None = None) -> Path:
    """Class folders with numbered files (numbers step 10, so split blocks hold two images each)."""
    for label in LABELS:
        folder = root / (folder_names or {}).get(label, label)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, per_class + 1):
            cv2.imwrite(str(folder / f"WBC-{label}-{i * 10:03d}.jpg"), smear(label, i))
    return root


def cli(
    *args: str, timeout: float = 600, check_rc: int | None = None, env: dict | None = None, preexec=None
) -> subprocess.CompletedProcess:
    """Run the console script, as a user would (`preexec`: run in the child first, e.g. to set a limit)."""
    exe = Path(sys.executable).with_name("edgeleuk")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "edgeleuk"]
    proc = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}, preexec_fn=preexec)
    if check_rc is not None:
        assert proc.returncode == check_rc, (
            f"rc {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
        )
    return proc


def quick_benchmark(model: Path, out: Path, variants: str = "tflite-int8") -> subprocess.CompletedProcess:
    """benchmarks/latency.py --quick on `model`, as a user runs it."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "latency.py"), "--quick", "--model", str(model), "--variants",
           variants, "--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """Backbone weights for a tiny MobileNetV2 (alpha 0.35, 64 px) whose features do not vanish.

    A randomly initialised MobileNetV2 in inference mode shrinks its activations to ~1e-11, so no
    head can learn from them. Setting every batch-norm layer's moving statistics from one batch of
    synthetic images (momentum 0, one training-mode pass) keeps activations at unit scale, like a
    real pretrained backbone, without downloading anything.
    """
    import keras

    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(input_shape=(64, 64, 3), alpha=0.35, include_top=False, weights=None)
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    batch = np.stack([cv2.resize(smear(label, i), (64, 64)) for label in LABELS for i in range(8)]).astype("float32")
    base(batch / 127.5 - 1.0, training=True)
    path = tmp_path_factory.mktemp("weights") / "tiny_no_top.weights.h5"
    base.save_weights(path)
    return path


@pytest.fixture(scope="session")
def tiny(tiny_weights) -> list[str]:
    """CLI arguments for the tiny model."""
    return [*TINY_ARCH, "--weights", str(tiny_weights)]


@pytest.fixture(scope="session")
def trained(dataset, tiny, tmp_path_factory) -> Path:
    """A tiny model trained through the real CLI (frozen stage + 1 fine-tune epoch)."""
    out = tmp_path_factory.mktemp("run")
    cli("train", "--data", str(dataset), "--out", str(out), *tiny, "--epochs", "15", "--fine-tune",
        "--fine-tune-epochs", "1", "--feature-cache", "off", "--fine-tune-from", "block_15", check_rc=0)
    return out


PREBUILT = os.environ.get("EDGELEUK_TEST_CONVERTED")  # set by the device-only run: variants the host built


@pytest.fixture(scope="session")
def converted(request, dataset, tmp_path_factory) -> Path:
    """Every variant of the tiny model, through the real converters and runtimes (in the device-only
    environment, which has no TensorFlow: the ones the host run built and handed over)."""
    if PREBUILT:
        return Path(PREBUILT)
    trained = request.getfixturevalue("trained")
    out = tmp_path_factory.mktemp("conv") / "variants"
    cli("convert", str(trained / "model.keras"), "--all", "--data", str(dataset), "--calibration-size", "40",
        "--max-drop", "100", "--out", str(out), check_rc=0)
    return out


PREBUILT_TWO = os.environ.get("EDGELEUK_TEST_TWO_CLASS")  # set by the device-only run: the 2-class model the host built
TWO_CLASSES = ("healthy", "Blästen")  # folder names, one of them not ASCII


def site(root: Path, classes: tuple[str, ...], patients: int, fields: int, first: int = 0) -> Path:
    """class/patient/*.png: each patient of each class its own folder of fields (a tint per class)."""
    tints = list(COLOURS)
    for c, name in enumerate(classes):
        for p in range(first, first + patients):
            folder = root / name / f"{name}-patient-{p:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for f in range(fields):
                cv2.imwrite(str(folder / f"field_{f}.png"), smear(tints[c], 1000 + p * 10 + f))
    return root


@pytest.fixture(scope="session")
def two_class(request, tmp_path_factory) -> Path:
    """A 2-class model whose labels are its folders' names, trained and converted to tflite-int8 in
    one run folder (in the device-only environment: the one the host run built)."""
    if PREBUILT_TWO:
        return Path(PREBUILT_TWO)
    tiny = request.getfixturevalue("tiny")
    root = tmp_path_factory.mktemp("two-class")
    data = site(root / "data", TWO_CLASSES, patients=10, fields=3)
    run = root / "run"
    cli("train", "--data", str(data), "--out", str(run), *tiny, "--epochs", "12", "--feature-cache", "off", check_rc=0)
    cli(
        "convert", str(run / "model.keras"), "--variants", "tflite-int8", "--data", str(data), "--calibration-size",
        "20", "--max-drop", "100", "--out", str(run), check_rc=0
    )
    return run
