"""The variant matrix as data: `convert/variants.toml` (shipped in the wheel as edgeleuk.recipes)."""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from edgeleuk.errors import UserError
from edgeleuk.strict import checked

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRECISIONS = ("fp32", "fp16", "int8", "dynamic")
WEIGHT_TYPES = ("int8", "uint8")


@dataclass(frozen=True)
class QuantizationConfig:
    """How one variant is made (plain fields: a recipe loads without TensorFlow)."""

    name: str
    format: str
    precision: str = "fp32"
    input_dtype: str = "float32"
    output_dtype: str = "float32"
    opset: int = 17
    # ONNX int8 only: how onnxruntime quantizes the weights (see quantize_onnx for why uint8)
    weight_type: str = "int8"
    reduce_range: bool = False
    per_channel: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def needs_calibration(self) -> bool:
        return self.precision == "int8"

    @property
    def file_name(self) -> str:
        return f"model_{self.precision}.{self.format}"


@dataclass(frozen=True)
class Recipes:
    variants: dict[str, QuantizationConfig]
    sets: dict[str, list[str]]
    calibration: dict[str, Any]
    kernel_check_images: int = 48

    def select(self, names: list[str]) -> list[QuantizationConfig]:
        chosen = []
        for name in names:
            if name in self.sets:
                chosen += [self.variants[n] for n in self.sets[name]]
            elif name in self.variants:
                chosen.append(self.variants[name])
            else:
                hint = difflib.get_close_matches(name, list(self.variants) + list(self.sets), n=1)
                raise UserError(f"Received: variant={name!r}; expected one of {', '.join(self.variants)}"
                                + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        unique = {c.name: c for c in chosen}
        return list(unique.values())


def recipe_path() -> Path:
    """The source checkout's convert/variants.toml, else the copy installed in the wheel."""
    here = Path(__file__).resolve().parents[2] / "convert" / "variants.toml"
    if here.is_file():
        return here
    return Path(str(resources.files("edgeleuk.recipes") / "variants.toml"))


def load_recipes(path: str | Path | None = None) -> Recipes:
    path = Path(path) if path else recipe_path()
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"cannot read the variant recipes {path}: {exc}") from None
    variants = {}
    for name, body in doc.get("variants", {}).items():
        body = checked(QuantizationConfig, {"name": name, **body}, f"variants.{name}", str(path))
        body.pop("name")
        if body.get("precision", "fp32") not in PRECISIONS or body.get("format") not in ("tflite", "onnx"):
            raise UserError(
                f"{path}: variants.{name}: format/precision {body.get('format')}/{body.get('precision')} not supported"
            )
        if body.get("weight_type", "int8") not in WEIGHT_TYPES:
            raise UserError(
                f"{path}: variants.{name}: weight_type={body['weight_type']!r}; expected one of "
                f"{', '.join(WEIGHT_TYPES)}"
            )
        variants[name] = QuantizationConfig(name=name, **body)
    sets = {k: list(v) for k, v in doc.get("sets", {}).items()}
    for set_name, members in sets.items():
        for member in members:
            if member not in variants:
                raise UserError(f"{path}: sets.{set_name} names unknown variant {member!r}")
    images = doc.get("kernel_check", {}).get("images", 48)
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise UserError(f"{path}: kernel_check.images={images!r}; expected a whole number ≥ 1")
    return Recipes(
        variants=variants, sets=sets, calibration=dict(doc.get("calibration", {})), kernel_check_images=images
    )
