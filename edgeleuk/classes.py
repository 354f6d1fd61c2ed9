"""Which class each image folder holds. The labels come from the data: every class folder, in sorted
order, or the order of `--classes`, which may also merge folders (`healthy=Benign,blast=Early+Pre+Pro`).
From training on they live in the manifest, and every later stage reads them from there.

The one fixed table here is the known public dataset's (Aria et al.): its Kaggle folder names map to
Benign, Early, Pre and Pro, in that order. Device-safe: stdlib only.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from edgeleuk.errors import UserError

KNOWN_DATASET = ("Benign", "Early", "Pre", "Pro")  # the ALL dataset's classes, in its own order
_ALIASES = {
    "benign": "Benign", "hematogone": "Benign", "hematogones": "Benign",
    "early": "Early", "earlypreb": "Early", "malignantearlypreb": "Early", "malignantearly": "Early",
    "pre": "Pre", "preb": "Pre", "malignantpreb": "Pre", "malignantpre": "Pre",
    "pro": "Pro", "prob": "Pro", "malignantprob": "Pro", "malignantpro": "Pro",
}
MIN_CLASSES = 2
_RESERVED = set(",=+/\\")


def clean_name(name: str) -> str:
    """A folder or label name as compared and stored: Unicode NFC, outer spaces removed."""
    return unicodedata.normalize("NFC", name).strip()


def known_alias(folder_name: str) -> str | None:
    """The known dataset's class for one of its folder names ('[Malignant] Pro-B' → 'Pro'), else None."""
    key = re.sub(r"[^a-z]", "", clean_name(folder_name).lower())
    return _ALIASES.get(key)


def same_folder(a: str, b: str) -> bool:
    """Whether two names denote the same class folder: equal up to case and Unicode form, or the
    known dataset's aliases of one class."""
    if clean_name(a).casefold() == clean_name(b).casefold():
        return True
    alias = known_alias(a)
    return alias is not None and alias == known_alias(b)


@dataclass(frozen=True)
class ClassMap:
    """The labels in output order, and for a label that merges folders, the folders it takes."""

    labels: tuple[str, ...]
    folders: dict[str, tuple[str, ...]] = field(default_factory=dict)  # label → folder names (absent: its own name)

    def names_of(self, label: str) -> tuple[str, ...]:
        return self.folders.get(label) or (label,)

    def label_of(self, folder_name: str) -> str | None:
        for label in self.labels:
            if any(same_folder(folder_name, name) for name in self.names_of(label)):
                return label
        return None

    def describe(self) -> str:
        return ", ".join(label if label not in self.folders else f"{label} (= {' + '.join(self.folders[label])})"
                         for label in self.labels)


def _check_labels(labels: list[str], where: str) -> None:
    if len(labels) < MIN_CLASSES:
        raise UserError(
            f"{where}: {len(labels)} class{'' if len(labels) == 1 else 'es'} ({', '.join(labels) or 'none'}); "
            f"a classifier needs at least {MIN_CLASSES}"
        )
    seen: dict[str, str] = {}
    for label in labels:
        if not label or _RESERVED & set(label):
            raise UserError(f"{where}: class name {label!r}; expected a non-empty name without , = + / or \\")
        if label.casefold() in seen:
            raise UserError(f"{where}: class {label!r} is named twice")
        seen[label.casefold()] = label


def parse_classes(spec: str) -> ClassMap:
    """`--classes a,b,c` (order) or `healthy=Benign,blast=Early+Pre+Pro` (merged folders)."""
    labels: list[str] = []
    folders: dict[str, tuple[str, ...]] = {}
    for item in spec.split(","):
        label, sep, names = item.partition("=")
        label = clean_name(label)
        labels.append(label)
        if sep:
            parts = tuple(clean_name(n) for n in names.split("+"))
            if not all(parts):
                raise UserError(f"--classes: {item!r} names an empty folder; expected label=folder+folder")
            folders[label] = parts
    _check_labels(labels, "--classes")
    classes = ClassMap(tuple(labels), folders)
    every = [(label, name) for label in labels for name in classes.names_of(label)]
    for i, (label, name) in enumerate(every):
        for other, other_name in every[i + 1:]:
            if other != label and same_folder(name, other_name):
                raise UserError(f"--classes: folder {name!r} is given to both {label!r} and {other!r}")
    return classes


def discover(folder_names: list[str], where: str) -> ClassMap:
    """Every class folder is a class, in sorted order; the known dataset's folder names give its
    four classes in their own order."""
    if folder_names and all(known_alias(name) for name in folder_names):
        present = {known_alias(name) for name in folder_names}
        labels = [label for label in KNOWN_DATASET if label in present]
    else:
        labels = sorted(clean_name(name) for name in folder_names)
    _check_labels(labels, where)
    return ClassMap(tuple(labels))


def class_map(spec: "str | ClassMap | None", folder_names: list[str], where: str) -> ClassMap:
    """The classes of a data folder: `spec` when given (a --classes string or a model's map), else
    discovered from the folder names."""
    if spec is None:
        return discover(folder_names, where)
    return parse_classes(spec) if isinstance(spec, str) else spec


def bare_labels(outputs: int) -> tuple[str, ...]:
    """A model file with no manifest: four outputs are the known dataset's classes (every model before
    labels came from the data), any other count class_0, class_1, …"""
    return KNOWN_DATASET if outputs == len(KNOWN_DATASET) else tuple(f"class_{i}" for i in range(outputs))


def read_classes(data: dict, schema: int) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """A manifest's labels and class folders; before schema 5 every model had the known dataset's labels."""
    if "labels" not in data and schema >= 5:
        raise UserError("manifest: no labels; expected the class names in output order")
    folders = data.get("class_folders", {})
    if not isinstance(folders, dict) or not all(isinstance(v, (list, tuple)) for v in folders.values()):
        raise UserError("manifest: class_folders must map each label to a list of folder names")
    return tuple(data.get("labels", KNOWN_DATASET)), {str(k): tuple(str(n) for n in v) for k, v in folders.items()}
