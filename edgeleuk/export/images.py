"""What `convert` measures on: the calibration images, the training part (OOD statistics, the cell
ruler, the gate limits), the validation part (thresholds) and the evaluated part, from --data and
the split beside the model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeleuk.classes import ClassMap
from edgeleuk.errors import UserError
from edgeleuk.manifest import PreprocessSpec, sha256_file


@dataclass
class Images:
    calibration: np.ndarray | None
    test: np.ndarray | None
    test_labels: np.ndarray | None
    note: str
    test_files: list[str] = field(default_factory=list)  # relative to the data folder, in evaluation order
    train: np.ndarray | None = None  # the whole training part: the OOD statistics and the cell ruler
    train_labels: np.ndarray | None = None
    val: np.ndarray | None = None  # the validation part: the OOD threshold
    split_sha256: str | None = None  # the split file the parts came from (None: made anew)
    val_labels: np.ndarray | None = None
    # calibration images the ONNX int8 files also run on under emulated CPU kernels
    kernel_sample: np.ndarray | None = None
    split_file: Path | None = None  # travels with the variants: validate and evaluate never judge on training images
    first_test: np.ndarray | None = None  # an adapted model's first site: its test part (edgeleuk.export.sites)
    first_test_labels: np.ndarray | None = None



def load_images(config, model_path: Path, spec: PreprocessSpec, calibration: dict, need_calibration: bool,
            classes: ClassMap) -> Images:
    from edgeleuk.dataset import load_arrays, scan
    from edgeleuk.split import make_split, read_split

    if not config.data:
        if need_calibration:
            raise UserError("int8 variants need real calibration images: pass --data DIR (and --split FILE); "
                            "edgeleuk never calibrates on random data")
        return Images(None, None, None, "no --data: accuracy not measured")
    found = scan(config.data, classes=classes)
    split_file = Path(config.split) if config.split else model_path.parent / "split.json"
    if config.split and not split_file.is_file():
        raise UserError(
            f"split file {config.split} does not exist (omit --split to use the split.json beside the model)"
        )
    if split_file.is_file():
        split = read_split(split_file, found.samples, found.root)
        note = f"split: {'split.json beside the model' if split_file.parent == model_path.parent else split_file}"
    else:
        split = make_split(found.samples)
        note = "split: made anew (no split.json beside the model): test figures may be optimistic"
    train = split.part(found.samples, calibration.get("part", "train"))
    size = config.calibration_size or int(calibration.get("size", 300))
    rng = np.random.default_rng(int(calibration.get("seed", 0)))
    by_class: dict[str, list] = {}
    for s in train:
        by_class.setdefault(s.label, []).append(s)
    chosen = []
    for _label, members in sorted(by_class.items()):
        take = max(1, round(size * len(members) / len(train)))
        chosen += [members[i] for i in sorted(rng.choice(len(members), min(take, len(members)), replace=False))]
    test = split.part(found.samples, config.part)
    calib_images, _ = load_arrays(chosen[:size], spec)
    test_images, test_labels = load_arrays(test, spec)
    train_images, train_labels = load_arrays(list(train), spec)
    val = split.part(found.samples, "val")
    val_images, val_labels = load_arrays(val, spec) if val else (None, None)
    return Images(
        calib_images, test_images, test_labels,
        f"{note}; calibration: {len(calib_images)} training images; evaluation: {len(test)} {config.part} images",
        [str(s.path.relative_to(found.root)) for s in test], train_images, train_labels, val_images,
        sha256_file(split_file) if split_file.is_file() else None, val_labels,
        split_file=split_file if split_file.is_file() else None
    )
