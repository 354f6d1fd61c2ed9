"""The artifact manifest: the only contract between the train, convert, run and benchmark stages.

Stdlib only, so the device side can read it. Reading is strict: unknown keys or a newer schema are
errors that name the key, so a stage never silently ignores something another stage meant.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeleuk.classes import ClassMap, read_classes
from edgeleuk.errors import UserError
from edgeleuk.files import atomic_write_text, read_text
from edgeleuk.ood_stats import OODStats, read_ood
from edgeleuk.strict import checked, finite

SCHEMA_VERSION = 5  # 2: the out-of-distribution statistics (`ood`), the features output, the cell ruler; 3: `quality`;
# 4: each variant's `kernels_checked`; 5: labels from the data, `class_folders`
MANIFEST_NAME = "manifest.json"
FORMATS = ("keras", "tflite", "onnx")
VARIANT_NAMES = ("keras", "tflite-fp32", "tflite-fp16", "tflite-int8", "tflite-dynamic", "onnx-fp32", "onnx-int8")


@dataclass(frozen=True)
class PreprocessSpec:
    """How a camera frame or file becomes model input; every stage calls `preprocess` with this."""

    size: int = 224
    crop: str = "center"  # "center": centre square crop, then resize; "none": resize (stretch)
    interpolation: str = "area"
    color_order: str = "RGB"
    value_range: tuple[int, int] = (0, 255)
    dtype: str = "uint8"
    normalization: str = "in-graph: x / 127.5 - 1"

    def __post_init__(self) -> None:
        if self.crop not in ("center", "none"):
            raise UserError(f"Received: crop={self.crop!r}; expected 'center' or 'none'")
        if self.interpolation not in ("area", "linear", "cubic", "nearest"):
            raise UserError(f"Received: interpolation={self.interpolation!r}; expected area, linear, cubic or nearest")
        if not 16 <= int(self.size) <= 4096:
            raise UserError(f"Received: size={self.size}; expected 16 … 4096")


@dataclass(frozen=True)
class QualityLimits:
    """The frame quality gate's limits, measured on the model input (the 224 crop), so they hold at
    any camera resolution. Convert writes the ones calibrated for its model; the device config may
    override each. Defaults: the robustness suite of the shipped model (runtime/quality.py says how)."""

    min_focus: float = 4.2  # variance of the Laplacian of the grey crop
    min_brightness: float = 86.0  # mean grey level
    max_brightness: float = 247.2
    max_dark_fraction: float = 0.25  # pixels at ≤ 5
    max_bright_fraction: float = 0.772  # pixels at ≥ 250
    min_leukocyte_fraction: float = 0.0  # share of stained-cell pixels (quality.leukocyte_fraction); 0: no such check
    calibration: str = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "calibration":
                if not isinstance(value, str):
                    raise UserError(f"quality.calibration={value!r}; expected text")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 \
                    or ("fraction" in f.name and value > 1):
                raise UserError(
                    f"quality.{f.name}={value!r}; expected a finite number ≥ 0"
                    + (" and ≤ 1" if "fraction" in f.name else "")
                )


@dataclass(frozen=True)
class Quantization:
    """Affine quantization of one tensor, read back from the file (never hard-coded)."""

    scale: float
    zero_point: int

    def dequantize(self, values: Any) -> Any:
        return (values.astype("float32") - self.zero_point) * self.scale


@dataclass(frozen=True)
class Variant:
    """One artifact file and how to feed it."""

    name: str
    format: str
    file: str
    sha256: str
    precision: str
    input_name: str
    input_shape: tuple[int | None, ...]
    input_dtype: str
    output_dtype: str
    input_quantization: Quantization | None = None
    output_quantization: Quantization | None = None
    output_meaning: str = "class probabilities (softmax), in label order"
    features: tuple[int, ...] = ()  # sizes of the outputs after the probabilities, which the OOD score reads
    size_bytes: int = 0
    conversion_seconds: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    # the CPU kernel families (edgeleuk.cpu) this int8 file was run under at conversion, with the same answers
    kernels_checked: tuple[str, ...] = ()


@dataclass(frozen=True)
class Manifest:
    """Everything a stage needs to know about a set of artifacts."""

    labels: tuple[str, ...] = ()  # the classes in output order, from the training data's folders
    # label → the folders it merged (--classes a=x+y)
    class_folders: dict[str, tuple[str, ...]] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)
    variants: tuple[Variant, ...] = ()
    source_model_sha256: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    ood: OODStats | None = None  # the in-distribution score's statistics and threshold (None: cannot judge)
    cell_diameter_px: float | None = None  # median red-cell diameter in the training images, in model pixels
    quality: QualityLimits | None = None  # the gate's limits for this model (None: the defaults)
    schema_version: int = SCHEMA_VERSION

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        known = ", ".join(v.name for v in self.variants) or "none"
        raise UserError(f"Received: variant={name!r}; this manifest has: {known}")

    def classes(self) -> ClassMap:
        """The class map later stages read data folders with: the same folders as in training."""
        return ClassMap(self.labels, dict(self.class_folders))

    def with_variants(self, variants: list[Variant]) -> "Manifest":
        """Replace variants of the same name in place, add new ones at the end (convert adds, never drops)."""
        new = {v.name: v for v in variants}
        kept = [new.pop(v.name, v) for v in self.variants]
        return dataclasses.replace(self, variants=tuple(kept + list(new.values())))


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _strict(cls: type, data: dict[str, Any], where: str) -> dict[str, Any]:
    return checked(cls, data, where, "manifest")


def _quant(data: dict[str, Any] | None, where: str) -> Quantization | None:
    if data is None:
        return None
    return Quantization(**_strict(Quantization, data, where))


def manifest_from_dict(data: dict[str, Any]) -> Manifest:
    data = dict(_strict(Manifest, data, "manifest"))
    finite(data, "manifest", positive=("cell_diameter_px",))
    version = data.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise UserError(
            f"manifest: schema_version {version!r} is newer than this edgeleuk reads ({SCHEMA_VERSION}); upgrade "
            "edgeleuk"
        )
    spec = _strict(PreprocessSpec, data.get("preprocess", {}), "preprocess")
    spec = dict(spec)
    if "value_range" in spec:
        spec["value_range"] = tuple(spec["value_range"])
    variants = []
    for i, v in enumerate(data.get("variants", [])):
        v = dict(_strict(Variant, v, f"variants[{i}]"))
        v["input_shape"] = tuple(v["input_shape"])
        v["features"] = tuple(v.get("features", ()))
        v["kernels_checked"] = tuple(v.get("kernels_checked", ()))
        v["input_quantization"] = _quant(v.get("input_quantization"), f"variants[{i}].input_quantization")
        v["output_quantization"] = _quant(v.get("output_quantization"), f"variants[{i}].output_quantization")
        if v.get("format") not in FORMATS:
            raise UserError(f"manifest: variants[{i}].format={v.get('format')!r}; expected one of {FORMATS}")
        name = v.get("file")
        if not isinstance(name, str) or not name or name in (".", "..") or Path(name).name != name or "\\" in name:
            raise UserError(
                f"manifest: variants[{i}].file={name!r}; expected a plain file name inside the model folder"
            )
        variants.append(Variant(**v))
    data["preprocess"] = PreprocessSpec(**spec)
    data["variants"] = tuple(variants)
    data["labels"], data["class_folders"] = read_classes(data, version)
    if data.get("ood") is not None:
        data["ood"] = read_ood(data["ood"])
    if data.get("quality") is not None:
        data["quality"] = QualityLimits(**_strict(QualityLimits, data["quality"], "quality"))
    return Manifest(**data)


def embedded_info(manifest: Manifest) -> dict[str, Any]:
    """What a model file carries about itself: the manifest without the variant list (which holds
    the file's own hash). Read back with `manifest_from_dict`, the same strict reader."""
    data = manifest_to_dict(manifest)
    data.pop("variants")
    return data


def manifest_to_dict(manifest: Manifest) -> dict[str, Any]:
    return dataclasses.asdict(manifest)


def read_manifest(folder: str | os.PathLike) -> Manifest:
    path = Path(folder) / MANIFEST_NAME if Path(folder).is_dir() else Path(folder)
    if not path.exists():
        raise UserError(f"no {MANIFEST_NAME} in {path.parent}")
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a manifest file")
    text = read_text(path, "manifest", "a manifest is JSON, which")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    try:
        return manifest_from_dict(data)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a value of the wrong type or shape
        raise UserError(f"{path}: malformed manifest ({exc.__class__.__name__}: {exc})") from None


def manifest_json(manifest: Manifest) -> str:
    """Indented JSON with each list of numbers on one line (the OOD matrices: 16k numbers)."""
    text = json.dumps(manifest_to_dict(manifest), indent=2)
    return re.sub(r"\[\s+([-+0-9.eE,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text) + "\n"


def write_manifest(folder: str | os.PathLike, manifest: Manifest) -> Path:
    path = Path(folder) / MANIFEST_NAME
    atomic_write_text(path, manifest_json(manifest))
    return path


def verify_variant(folder: str | os.PathLike, variant: Variant) -> Path:
    """Return the variant's file after checking it exists and its hash matches the manifest."""
    path = Path(folder) / variant.file
    if not path.is_file():
        raise UserError(f"manifest names {variant.file} but it is not in {folder}")
    actual = sha256_file(path)
    if actual != variant.sha256:
        raise UserError(
            f"{path}: sha256 {actual[:12]}… does not match the manifest ({variant.sha256[:12]}…); the file was "
            "changed or is corrupt"
        )
    return path
