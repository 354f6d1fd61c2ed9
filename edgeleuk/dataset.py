"""Find the labelled images in a folder, in any of the layouts users download.

Accepted: `DIR/{Benign,Early,Pre,Pro}`, the Kaggle `DIR/Original/<class>` parent (the Segmented
copy beside it is ignored unless asked for), and the 4-class Kaggle copy's folder names
(`Benign`, `[Malignant] early Pre-B`, `[Malignant] Pre-B`, `[Malignant] Pro-B`).
Device-safe: stdlib, numpy and OpenCV only.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeleuk import LABELS
from edgeleuk.errors import UserError
from edgeleuk.preprocess import IMAGE_SUFFIXES, ImageError, decode_image

MIN_PER_CLASS = 10
_ALIASES = {
    "benign": "Benign", "hematogone": "Benign", "hematogones": "Benign",
    "early": "Early", "earlypreb": "Early", "malignantearlypreb": "Early", "malignantearly": "Early",
    "pre": "Pre", "preb": "Pre", "malignantpreb": "Pre", "malignantpre": "Pre",
    "pro": "Pro", "prob": "Pro", "malignantprob": "Pro", "malignantpro": "Pro",
}


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str
    sha256: str
    number: int | None  # the file's sequence number, for patient-block splitting

    @property
    def class_index(self) -> int:
        return LABELS.index(self.label)


@dataclass(frozen=True)
class Scan:
    samples: tuple[Sample, ...]
    skipped: tuple[tuple[Path, str], ...]  # (file, why) for corrupt or unreadable files
    root: Path


def class_of(folder_name: str) -> str | None:
    """Map a class folder name from any known layout to one of LABELS (None when unknown)."""
    key = re.sub(r"[^a-z]", "", folder_name.lower())
    return _ALIASES.get(key)


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
        raise UserError(f"{root} is not a folder; expected one sub-folder per class ({', '.join(LABELS)})")
    for parent in ("Original", "original"):
        if (root / parent).is_dir():
            return root / parent
    return root


def scan(root: str | Path, check_decode: bool = True) -> Scan:
    """List every labelled image under root; corrupt files are skipped and listed, not fatal.

    Raises UserError for: a missing or empty folder, an unknown class folder, a missing class or
    one with fewer than MIN_PER_CLASS images, and the same file under two classes.
    """
    root = class_root(Path(root))
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    folders = [p for p in folders if p.name.lower() != "segmented"]
    if not folders:
        raise UserError(f"{root} holds no class folders; expected {', '.join(LABELS)} (or Original/<class>)")
    samples: list[Sample] = []
    skipped: list[tuple[Path, str]] = []
    seen: dict[str, Sample] = {}
    found_classes: dict[str, Path] = {}
    for folder in folders:
        label = class_of(folder.name)
        if label is None:
            raise UserError(f"unknown class folder {folder.name!r} in {root}; expected {', '.join(LABELS)} "
                            "or the Kaggle names ('[Malignant] early Pre-B', …)")
        if label in found_classes:
            raise UserError(f"two folders map to class {label}: {found_classes[label].name!r} and {folder.name!r}")
        found_classes[label] = folder
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if check_decode:
                try:
                    decode_image(np.frombuffer(data, dtype=np.uint8), path)  # the bytes already read, not the file again
                except ImageError as exc:
                    skipped.append((path, str(exc).split(": ", 1)[-1]))
                    continue
            if digest in seen and seen[digest].label != label:
                raise UserError(f"the same image is under two classes: {seen[digest].path} ({seen[digest].label}) "
                                f"and {path} ({label}); remove one")
            sample = Sample(path=path, label=label, sha256=digest, number=file_number(path.name))
            seen.setdefault(digest, sample)
            samples.append(sample)
    counts = {label: sum(s.label == label for s in samples) for label in LABELS}
    missing = [label for label in LABELS if label not in found_classes]
    if missing:
        raise UserError(f"{root}: no folder for class {', '.join(missing)}; expected {', '.join(LABELS)}")
    few = {k: v for k, v in counts.items() if v < MIN_PER_CLASS}
    if few:
        detail = ", ".join(f"{k}: {v}" for k, v in few.items())
        raise UserError(f"too few readable images ({detail}); each class needs at least {MIN_PER_CLASS}")
    return Scan(samples=tuple(samples), skipped=tuple(skipped), root=root)


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
