"""`train --init-from MODEL --rehearse DIR`: the source model's own data mixed into every batch, so
adapting to a new site does not forget the first one (rehearsal, or experience replay).

DIR is read with the source model's class map and split.json: only its training and validation parts
are rehearsed, and its test part is scored once at the end, so the run reports both sites' test
parts. The source split travels into the run folder as rehearse_split.json, where `convert
--rehearse` finds it. Host side (numpy; the arrays feed Keras)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeleuk.errors import UserError

SPLIT_NAME = "rehearse_split.json"


@dataclass(frozen=True)
class Rehearsal:
    root: Path  # the first site's data folder
    images: np.ndarray  # (N, size, size, 3) uint8, every image of DIR
    labels: np.ndarray  # (N,) indices into the new run's labels
    parts: dict[str, np.ndarray]  # train, val, test → rows of images
    shas: tuple[str, ...]  # the images' content hashes (the feature cache's key)

    def pool(self) -> tuple[np.ndarray, np.ndarray]:
        """What stage 2 draws from: the training part."""
        rows = self.parts["train"]
        return self.images[rows], self.labels[rows]

    def counts(self) -> str:
        return ", ".join(f"{part} {len(rows)}" for part, rows in self.parts.items())


def load(config, labels: tuple[str, ...], out: Path) -> Rehearsal:
    """The first site's images, in the new run's label order; its split copied into `out`."""
    from edgeleuk.dataset import load_arrays, scan
    from edgeleuk.manifest import PreprocessSpec
    from edgeleuk.split import read_split
    from edgeleuk.train.adapt import source_classes, source_file

    model_file = source_file(config.init_from)
    split_file = model_file.parent / "split.json"
    if not split_file.is_file():
        raise UserError(
            f"--rehearse: no split.json beside {model_file}; it names the source model's test images, which "
            "must stay unseen"
        )
    found = scan(config.rehearse, classes=source_classes(model_file), least=1)
    unknown = [label for label in found.labels if label not in labels]
    if unknown:
        raise UserError(
            f"--rehearse: the source model's class{'es' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"{'are' if len(unknown) > 1 else 'is'} not among this run's ({', '.join(labels)}); name the new "
            "folders as the model's classes, or map them with --classes"
        )
    split = read_split(split_file, found.samples, found.root)
    images, own = load_arrays(list(found.samples), PreprocessSpec(size=config.input_size))
    mapped = np.array([labels.index(found.labels[i]) for i in own], dtype=np.int64)
    parts = {p: np.array([i for i, s in enumerate(found.samples) if split.assignment[s.path] == p], dtype=np.int64)
             for p in ("train", "val", "test")}
    shutil.copyfile(split_file, out / SPLIT_NAME)
    rehearsal = Rehearsal(found.root, images, mapped, parts, tuple(s.sha256 for s in found.samples))
    print(f"rehearse {found.root}: {rehearsal.counts()} (its train part, {config.rehearse_share:g} of each batch; "
          "its test part is scored at the end)")
    return rehearsal


def joined(features: np.ndarray, labels: np.ndarray, parts: dict[str, np.ndarray], rehearsal: Rehearsal,
           rehearsed: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Both sites' rows for stage 1 (the head on cached features): train and val hold both."""
    offset = len(features)
    both = {p: np.concatenate([parts[p], rehearsal.parts[p] + offset]) for p in ("train", "val")}
    return np.concatenate([features, rehearsed]), np.concatenate([labels, rehearsal.labels]), both
