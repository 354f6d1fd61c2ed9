"""Find the labelled images in a folder, in any of the layouts users download.

One sub-folder per class (`DIR/<class>/**/*.jpg`; a sub-folder inside a class folder is a sample or
patient: see edgeleuk.groups), or the Kaggle `DIR/Original/<class>` parent (the Segmented copy
beside it is ignored). Which folder is which class: edgeleuk.classes.
Device-safe: stdlib, numpy and OpenCV only.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeleuk.classes import ClassMap, class_map
from edgeleuk.errors import UserError
from edgeleuk.preprocess import IMAGE_SUFFIXES, ImageError, check_readable, decode_image

MIN_PER_CLASS = 10


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str
    sha256: str
    number: int | None  # the file's sequence number, for patient-block splitting
    class_index: int = 0  # the label's place in the class map's labels
    subfolder: str | None = None  # the first folder below the class folder (a sample or patient), if any


@dataclass(frozen=True)
class Scan:
    samples: tuple[Sample, ...]
    skipped: tuple[tuple[Path, str], ...]  # (file, why) for corrupt or unreadable files
    root: Path
    classes: ClassMap  # the labels and the folders they read

    @property
    def labels(self) -> tuple[str, ...]:
        return self.classes.labels

    def counts(self) -> dict[str, int]:
        return {label: sum(s.label == label for s in self.samples) for label in self.labels}


def file_number(name: str) -> int | None:
    """The sequence number in a file name: WBC-Malignant-Pro-012.jpg → 12; 'Snap_013 (2).jpg' → 13."""
    stem = re.sub(r"\s*\(\d+\)$", "", Path(name).stem)
    found = re.findall(r"\d+", stem)
    return int(found[-1]) if found else None


def class_root(root: Path) -> Path:
    """The folder whose sub-folders are the classes: DIR itself or DIR/Original."""
    if not root.exists():
        raise UserError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; expected one sub-folder per class")
    for parent in ("Original", "original"):
        if (root / parent).is_dir():
            return root / parent
    return root


def _class_folders(root: Path, classes: ClassMap) -> dict[str, list[Path]]:
    """label → its folders; every folder must be a class of the map."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    folders = [p for p in folders if p.name.lower() != "segmented"]
    found: dict[str, list[Path]] = {}
    for folder in folders:
        label = classes.label_of(folder.name)
        if label is None:
            raise UserError(f"unknown class folder {folder.name!r} in {root}; the classes are {classes.describe()}"
                            " (name the folders so, or map them with --classes label=folder+folder)")
        if label in found and label not in classes.folders:
            raise UserError(f"two folders map to class {label}: {found[label][0].name!r} and {folder.name!r}")
        found.setdefault(label, []).append(folder)
    return found


def _check_counts(
    root: Path, found: dict[str, list[Path]], counts: dict[str, int], require_all: bool, least: int
) -> None:
    missing = [label for label in counts if label not in found]
    if missing and require_all:
        raise UserError(f"{root}: no folder for class {', '.join(missing)}; the classes are {', '.join(counts)}")
    few = {k: v for k, v in counts.items() if v < least and (require_all or k in found)}
    if few:
        detail = ", ".join(f"{k}: {v}" for k, v in counts.items())
        raise UserError(f"too few readable images in {', '.join(few)} ({detail}); each class needs at least {least}")


def scan(root: str | Path, check_decode: bool = True, classes: "str | ClassMap | None" = None,
         require_all: bool = True, least: int = MIN_PER_CLASS) -> Scan:
    """List every labelled image under root; corrupt files are skipped and listed, not fatal.

    `classes`: a --classes string or a model's ClassMap (None: every class folder, sorted); `least`:
    the fewest images a class may have (validation judges any number: its intervals say how much it shows).
    Raises UserError for: a missing or empty folder, an unknown class folder, fewer than two classes,
    a missing class (unless not `require_all`) or one with fewer than MIN_PER_CLASS images, and the
    same file under two classes.
    """
    root = class_root(Path(root))
    names = sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name.lower() != "segmented"
    )
    if not names:
        raise UserError(f"{root} holds no class folders; expected one sub-folder per class (or Original/<class>)")
    cmap = class_map(classes, names, str(root))
    found = _class_folders(root, cmap)
    samples: list[Sample] = []
    skipped: list[tuple[Path, str]] = []
    seen: dict[str, Sample] = {}
    for label, folders in found.items():
        for folder in folders:
            for path in sorted(folder.rglob("*")):
                if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                try:
                    check_readable(path)
                except ImageError as exc:
                    skipped.append((path, str(exc).split(": ", 1)[-1]))
                    continue
                data = path.read_bytes()
                digest = hashlib.sha256(data).hexdigest()
                if check_decode:
                    try:
                        # the bytes already read, not the file again
                        decode_image(np.frombuffer(data, dtype=np.uint8), path)
                    except ImageError as exc:
                        skipped.append((path, str(exc).split(": ", 1)[-1]))
                        continue
                if digest in seen and seen[digest].label != label:
                    raise UserError(f"the same image is under two classes: {seen[digest].path} ({seen[digest].label}) "
                                    f"and {path} ({label}); remove one")
                inner = path.relative_to(folder).parts
                sample = Sample(path=path, label=label, sha256=digest, number=file_number(path.name),
                                class_index=cmap.labels.index(label), subfolder=inner[0] if len(inner) > 1 else None)
                seen.setdefault(digest, sample)
                samples.append(sample)
    samples.sort(key=lambda s: (s.class_index, str(s.path)))
    result = Scan(samples=tuple(samples), skipped=tuple(skipped), root=root, classes=cmap)
    _check_counts(root, found, result.counts(), require_all, least)
    return result


def load_arrays(samples, spec=None, progress: bool = True):
    """Preprocess samples into (N, size, size, 3) uint8 RGB and (N,) int labels."""
    import numpy as np

    from edgeleuk.manifest import PreprocessSpec
    from edgeleuk.preprocess import load_image

    spec = spec or PreprocessSpec()
    images = np.empty((len(samples), spec.size, spec.size, 3), dtype=np.uint8)
    iterator = samples
    if progress and len(samples) > 200:
        try:
            from tqdm import tqdm

            iterator = tqdm(samples, desc="reading images", unit="img", leave=False)
        except ImportError:
            pass
    for i, s in enumerate(iterator):
        images[i] = load_image(s.path, spec)
    labels = np.array([s.class_index for s in samples], dtype=np.int64)
    return images, labels
