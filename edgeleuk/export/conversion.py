"""A conversion's inputs, read before any variant is made: the settings, the Keras model and its
manifest, the images, the out-of-distribution statistics and the Keras model's own answers."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeleuk.classes import ClassMap, bare_labels
from edgeleuk.errors import UserError
from edgeleuk.export import sites
from edgeleuk.export.images import Images, load_images
from edgeleuk.export.recipes import QuantizationConfig, load_recipes
from edgeleuk.keras_graph import with_features
from edgeleuk.manifest import MANIFEST_NAME, Manifest, PreprocessSpec, read_manifest, sha256_file
from edgeleuk.stats import Claim

DEFAULT_SOURCE = Path(__file__).resolve().parents[1] / "models" / "default" / "model.keras"


@dataclass
class ConvertConfig:
    model: str | None
    out: str
    variants: list[str] = field(default_factory=lambda: ["int8"])
    formats: list[str] | None = None
    data: str | None = None
    split: str | None = None
    calibration_size: int | None = None
    max_drop: float = 1.0
    float_output: bool = False
    part: str = "test"
    # an adapted model's first site (default: the folder its run rehearsed; edgeleuk.export.sites)
    rehearse: str | None = None
    claim: Claim = field(default_factory=Claim)  # what an adapted model's new-site test part must show to be published


def _load_keras(path: Path):
    from edgeleuk.keras_file import load_keras

    return load_keras(path, "model")


@dataclass
class Conversion:
    """One conversion's inputs and what it learned before the variants: read by every step after."""

    config: ConvertConfig
    chosen: list[QuantizationConfig]
    model: Any  # the Keras model
    exported: Any  # the same with the OOD feature outputs (keras_graph.with_features)
    model_path: Path
    source_sha: str
    base: Manifest | None  # the manifest beside the source model
    spec: PreprocessSpec
    classes: ClassMap
    images: Images
    domain: Any = None  # export.domain.Domain, with --data
    keras_probs: np.ndarray | None = None  # the reference every variant is checked against
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return int(self.model.input_shape[1])

    @property
    def learned(self) -> dict[str, Any]:
        d = self.domain
        return {} if d is None else {"ood": d.ood, "cell_diameter_px": d.cell_diameter_px, "quality": d.quality}

    @property
    def in_place(self) -> bool:
        return self.model_path.parent.resolve() == Path(self.config.out).resolve()


def prepare(config: ConvertConfig) -> Conversion:
    """The model, its manifest, the images, the OOD statistics and the Keras reference."""
    from edgeleuk.export.parity import parity

    recipes = load_recipes()
    chosen = _select(recipes, config)
    model_path = Path(config.model) if config.model else DEFAULT_SOURCE
    model = _load_keras(model_path)
    base = read_manifest(model_path.parent) if (model_path.parent / MANIFEST_NAME).is_file() else None
    spec = base.preprocess if base else PreprocessSpec(size=int(model.input_shape[1]))
    classes = base.classes() if base else ClassMap(bare_labels(int(model.output_shape[-1])))
    if sites.adapted(base) and not config.data:
        raise UserError(
            f"{model_path} was adapted to a new site (--init-from): pass --data with that site's images; it is "
            "published only when their test part shows the claim"
        )
    load_args = (model_path, spec, recipes.calibration, any(c.needs_calibration for c in chosen), classes)
    images = sites.with_first_site(load_images(config, *load_args), config, base, load_args)
    if images.calibration is not None:
        picks = np.unique(np.linspace(0, len(images.calibration) - 1, recipes.kernel_check_images).round().astype(int))
        # spread over the classes, which the calibration set holds in order
        images.kernel_sample = images.calibration[picks]
    print(images.note)
    exported = with_features(model)
    conv = Conversion(config, chosen, model, exported, model_path, sha256_file(model_path), base, spec, classes, images)
    conv.domain = _domain(exported, images, len(classes.labels)) if exported is not model else None
    if images.test is not None:
        print(
            f"the Keras model on {len(images.test)} {config.part} images (the reference every variant is checked "
            "against) …",
            flush=True,
        )
        conv.keras_probs = model.predict(images.test, batch_size=32, verbose=0)
        first = model.predict(images.first_test, batch_size=32, verbose=0) if images.first_test is not None else None
        conv.rows.append({"variant": "keras", "size_bytes": model_path.stat().st_size,
                          **parity(conv.keras_probs, conv.keras_probs, images.test_labels),
                          **sites.first_site_row(first, images), "conversion_seconds": None})
    return conv


def _select(recipes, config: ConvertConfig) -> list[QuantizationConfig]:
    chosen = recipes.select(config.variants)
    if config.formats:
        chosen = [c for c in chosen if c.format in config.formats]
        if not chosen:
            raise UserError(
                f"Received: formats={','.join(config.formats)}; none of the selected variants has that format"
            )
    if config.float_output:
        chosen = [replace(c, output_dtype="float32") if c.format == "tflite" else c for c in chosen]
    return chosen


def _domain(exported, images: Images, classes: int):
    """OOD statistics (training part) and threshold (validation part), when the data is given."""
    from edgeleuk.export.domain import fit_domain
    from edgeleuk.ood import Parts

    if images.train is None or images.val is None or not len(images.val):
        print(
            "no --data (or no validation part): the variants carry no out-of-distribution statistics and cannot "
            "judge frames"
        )
        return None
    print(
        f"fitting the out-of-distribution statistics on {len(images.train)} training images, thresholds on "
        f"{len(images.val)} validation images (8 views each) …",
        flush=True,
    )
    domain = fit_domain(exported, Parts(images.train, images.train_labels, images.val, classes, images.val_labels))
    limits = ", ".join(f"{c.features} {c.threshold:.3f}" for c in domain.ood.components)
    if domain.ood.stain is not None:
        stain = domain.ood.stain
        red = "" if stain.red_log_limit is None else f", red cells {stain.red_log_limit}"
        limits += f"; stain limits: leukocytes {stain.log_limit}{red} ({stain.calibration})"
    print(
        f"out-of-distribution score: thresholds {limits} ({domain.ood.calibration}); red cells "
        f"{domain.cell_diameter_px} px"
    )
    return domain
