"""`train --init-from MODEL`: start from a trained model's weights (the shipped one included), to
adapt it to another site's images. The base and the first dense layer are copied whole; the head
keeps a row for every class the source knows, in the new label order, and a class it does not know
gets a new row (named in the output). Host side: Keras."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edgeleuk.classes import bare_labels
from edgeleuk.errors import UserError

HEAD = "dense_1"


def source_file(init_from: str) -> Path:
    """The .keras file of a run folder or of a model file given directly."""
    path = Path(init_from)
    return path / "model.keras" if path.is_dir() else path


def source_labels(path: Path, outputs: int) -> tuple[str, ...]:
    from edgeleuk.manifest import MANIFEST_NAME, read_manifest

    return read_manifest(path.parent).labels if (path.parent / MANIFEST_NAME).is_file() else bare_labels(outputs)


def source_classes(path: Path):
    """The source model's class map (labels and the folders each reads), from the manifest beside it."""
    from edgeleuk.manifest import MANIFEST_NAME, read_manifest

    if not (path.parent / MANIFEST_NAME).is_file():
        raise UserError(f"--rehearse: no {MANIFEST_NAME} beside {path}; it names the classes the model was trained on")
    return read_manifest(path.parent).classes()


def resolve(config):
    """The run's settings with the source model's width and input size (the weights fit no other)."""
    from edgeleuk.keras_file import load_keras

    model = load_keras(source_file(config.init_from), "--init-from")
    size = int(model.input_shape[1])
    alpha = _alpha(model)
    if (size, alpha) != (config.input_size, config.alpha):
        print(
            f"--init-from: the run keeps the source model's input, {size} px, and width, {alpha} (not "
            f"{config.input_size} px, "
            f"{config.alpha})"
        )
    return dataclasses.replace(config, input_size=size, alpha=alpha)


def _alpha(model) -> float:
    """MobileNetV2's width from its last projection: 320 × alpha filters, rounded to a multiple of 8."""
    from edgeleuk.train.model import BASE_NAME

    filters = int(model.get_layer(BASE_NAME).get_layer("block_16_project").filters)
    widths = {112: 0.35, 160: 0.5, 240: 0.75, 320: 1.0, 416: 1.3, 448: 1.4}
    if filters not in widths:
        raise UserError(
            f"--init-from: a MobileNetV2 base with {filters} filters in its last block is not one edgeleuk builds"
        )
    return widths[filters]


def check_labels(source: tuple[str, ...], labels: tuple[str, ...], mapped: bool) -> list[str]:
    """The labels the source model does not know; without --classes every label must be one it knows."""
    new = [label for label in labels if label not in source]
    if new and not mapped:
        raise UserError(
            f"--init-from: the data's classes ({', '.join(labels)}) are not the model's ({', '.join(source)}): "
            f"{', '.join(new)} {'is' if len(new) == 1 else 'are'} new. Name the folders as the model's classes, "
            "or give --classes (a class the model does not know then gets a new head row)"
        )
    return new


def warm_start(config, labels: tuple[str, ...]):
    """A model for `labels` with the source's weights; the head's rows follow the new label order."""
    from edgeleuk.keras_file import load_keras
    from edgeleuk.train.model import build_model

    path = source_file(config.init_from)
    source = load_keras(path, "--init-from")
    known = source_labels(path, int(source.output_shape[-1]))
    new = check_labels(known, labels, mapped=bool(config.classes))
    model = build_model(alpha=config.alpha, input_size=config.input_size, weights=None, num_classes=len(labels))
    for layer in source.layers:
        if layer.name != HEAD and layer.get_weights():
            model.get_layer(layer.name).set_weights(layer.get_weights())
    kernel, bias = source.get_layer(HEAD).get_weights()
    fresh_kernel, fresh_bias = model.get_layer(HEAD).get_weights()
    for j, label in enumerate(labels):
        if label in known:
            fresh_kernel[:, j], fresh_bias[j] = kernel[:, known.index(label)], bias[known.index(label)]
    model.get_layer(HEAD).set_weights([fresh_kernel, np.asarray(fresh_bias)])
    kept = [label for label in labels if label in known]
    print(
        f"--init-from {path}: {len(kept)} of {len(labels)} classes keep the model's head rows "
        f"({', '.join(kept) or 'none'})"
        + (f"; new head rows: {', '.join(new)}" if new else "")
    )
    return model
