"""One variant's file, written into the staging folder (published whole by output.swap): the
converter's output goes to a log in the work folder; with OOD statistics, the file gets the
out-of-distribution score as its own layers, and the embedded information every file carries."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeleuk.export.recipes import QuantizationConfig
from edgeleuk.redirect import redirected
from edgeleuk.runtime.embedded import EMBEDDED_NAME


@dataclass(frozen=True)
class VariantJob:
    model: Any  # the Keras model, with its features output when it has OOD statistics
    cfg: QuantizationConfig
    folder: Path  # the staging folder
    info: dict  # embedded in the file
    work: Path  # converter logs and intermediate files
    stats: Any = None  # ood.OODStats: the score as the file's own layers


def write_variant(job: VariantJob, calibration: np.ndarray | None) -> tuple[Path, float]:
    """The file's path and the seconds it took."""
    start = time.perf_counter()
    batches = (lambda: iter(calibration)) if calibration is not None else None
    target = job.folder / job.cfg.file_name
    with redirected(job.work / f"{job.cfg.name}.log", (1, 2)):  # the converters' chatter: kept for errors
        (_tflite if job.cfg.format == "tflite" else _onnx)(job, target, batches)
    return target, time.perf_counter() - start


def _tflite(job: VariantJob, target: Path, calibration) -> None:
    from edgeleuk.export import tflite_export
    from edgeleuk.export.score_layers import append_tflite
    from edgeleuk.runtime.embedded import embed_tflite

    data = tflite_export.to_tflite(job.model, job.cfg, calibration)
    target.write_bytes(data if job.stats is None else append_tflite(data, job.stats))
    embed_tflite(target, job.info)


def _onnx(job: VariantJob, target: Path, calibration) -> None:
    from edgeleuk.export import onnx_export
    from edgeleuk.export.score_layers import append_onnx

    fp32 = job.work / "fp32.onnx"  # without the layers: int8 quantizes this one, so the layers stay float
    if not fp32.exists():
        onnx_export.to_onnx(job.model, job.cfg, fp32)
    plain = job.work / f"{job.cfg.name}.onnx"
    if job.cfg.precision == "int8":
        onnx_export.quantize_onnx(fp32, plain, calibration, job.cfg)
    else:
        shutil.copyfile(fp32, plain)
    if job.stats is None:
        shutil.copyfile(plain, target)
    else:
        append_onnx(plain, target, job.stats)
    onnx_export.embed_onnx(target, EMBEDDED_NAME, json.dumps(job.info))
