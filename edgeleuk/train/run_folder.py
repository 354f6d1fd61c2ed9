"""The run folder `train` writes: made safe before any work, and the model and its manifest saved
last, atomically. Host side: Keras."""

from __future__ import annotations

import platform
import shutil
from pathlib import Path
from typing import Any

from edgeleuk import __version__
from edgeleuk.dataset import Scan
from edgeleuk.errors import UserError
from edgeleuk.files import atomic_path, writable_folder
from edgeleuk.manifest import Manifest, PreprocessSpec, sha256_file, write_manifest

RUN_FILES = (
    "model.keras",
    "manifest.json",
    "metrics.json",
    "config.json",
    "history.csv",
    "split.json",
    "curves.png",
    "confusion.png",
    "rehearse_split.json",
    "report.json",
    "report.md",
    "robustness.json",
    "robustness.png",
    "ood.json",
    "cv.json",
    "cv.md",
)


def prepare_out(out: Path, overwrite: bool) -> bool:
    """Check --out before any work: a folder we may write, never another model's without --overwrite
    (whose files, variants included, then all go, so none describes the wrong model). True: made here."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    existing = [name for name in RUN_FILES if (out / name).exists()] if out.is_dir() else []
    if existing and not overwrite:
        raise UserError(f"--out {out} already holds a trained model ({', '.join(existing[:3])}); pass --overwrite to "
                        "replace it, or choose another folder")
    created = not out.exists()
    writable_folder(out, "--out")
    if existing:
        for path in [out / n for n in RUN_FILES] + sorted(out.glob("*.tflite")) + sorted(out.glob("*.onnx")):
            if path.is_file():
                path.unlink()
        shutil.rmtree(out / "cv", ignore_errors=True)  # the folds' histories
    return created


def save_clean(model, path: Path) -> None:
    """Save architecture and weights without optimizer state (a third of the size), base frozen, atomically."""
    import keras

    full = path.with_name(f".{path.stem}.full.tmp.keras")
    try:
        model.save(full)
        clean = keras.models.load_model(full, compile=False)  # drops the optimizer and its EMA copies
        clean.get_layer("mobilenetv2_base").trainable = False
        with atomic_path(path) as tmp:
            clean.save(tmp)
    finally:
        full.unlink(missing_ok=True)


def write_run_manifest(out: Path, model_path: Path, config: Any, metrics: dict, model, found: Scan) -> None:
    import keras
    import tensorflow as tf

    from edgeleuk.keras_graph import multiply_adds
    from edgeleuk.manifest import Variant

    sha = sha256_file(model_path)
    variant = Variant(name="keras", format="keras", file=model_path.name, sha256=sha, precision="fp32",
                      input_name="image", input_shape=(None, config.input_size, config.input_size, 3),
                      input_dtype="float32", output_dtype="float32", size_bytes=model_path.stat().st_size,
                      metrics={"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]})
    manifest = Manifest(
        labels=found.labels,
        class_folders=found.classes.folders,
        model={
            "name": "edgeleuk-mobilenetv2",
            "architecture": f"MobileNetV2+GAP+Dense128+Dense{len(found.labels)}",
            "alpha": config.alpha,
            "input_size": config.input_size,
            "fine_tuned": config.fine_tune,
            "parameters": int(model.count_params()),
            "multiply_adds": multiply_adds(model),
            "distilled_from": config.teacher,
            "initialised_from": config.init_from,
        },
        preprocess=PreprocessSpec(size=config.input_size),
        variants=(variant,),
        source_model_sha256=sha,
        versions={
            "edgeleuk": __version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
        },
        provenance={"split": "split.json", "train_config": "config.json"}
        | (
            {"rehearsal": {"data": str(Path(config.rehearse).resolve()), "split": "rehearse_split.json"}}
            if config.rehearse
            else {}
        ),
    )
    write_manifest(out, manifest)
