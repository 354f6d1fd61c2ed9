"""A deterministic, leakage-aware train/test/val split, written to and read from `split.json`.

Images are split by group (edgeleuk.groups: sample folders, a CSV, or runs of file numbers), with
byte-identical files merged into one group, and whole groups are assigned to parts, stratified per
class, to reach 70/20/10 (train/test/val, the study's proportions). A group that holds more than one
class is placed first, whole, where the parts lack most.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeleuk.dataset import Sample
from edgeleuk.errors import UserError
from edgeleuk.files import atomic_write_text, read_text
from edgeleuk.groups import BLOCK_SIZE, block_groups

PARTS = ("train", "test", "val")
FRACTIONS = {"train": 0.7, "test": 0.2, "val": 0.1}
SPLIT_VERSION = 1


@dataclass(frozen=True)
class Split:
    assignment: dict[Path, str]  # sample path → part
    seed: int
    block_size: int

    def part(self, samples: tuple[Sample, ...] | list[Sample], name: str) -> list[Sample]:
        if name not in PARTS:
            raise UserError(f"Received: part={name!r}; expected one of {', '.join(PARTS)}")
        return [s for s in samples if self.assignment.get(s.path) == name]


def _groups(samples: list[Sample], group_of: dict[Path, str]) -> list[list[Sample]]:
    """Union of groups and byte-identical files."""
    parent = list(range(len(samples)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[object, int] = {}
    for i, s in enumerate(samples):
        for key in (("sha", s.sha256), ("group", group_of[s.path])):
            if key in first:
                parent[find(i)] = find(first[key])
            else:
                first[key] = i
    groups: dict[int, list[Sample]] = defaultdict(list)
    for i, s in enumerate(samples):
        groups[find(i)].append(s)
    return list(groups.values())


def _assign(
    groups: list[list[Sample]], totals: dict[str, int], filled: dict[str, dict[str, int]],
    assignment: dict[Path, str], fractions: dict[str, float] = FRACTIONS
) -> None:
    """Each group in turn goes to the part furthest below its target share of the group's classes."""
    for group in groups:
        held = defaultdict(int)
        for s in group:
            held[s.label] += 1
        part = max(
            fractions,
            key=lambda p: sum(n * (fractions[p] * totals[c] - filled[c][p]) / totals[c] for c, n in held.items())
        )
        for c, n in held.items():
            filled[c][part] += n
        for s in group:
            assignment[s.path] = part


def _place(
    samples: tuple[Sample, ...] | list[Sample], group_of: dict[Path, str], seed: int, fractions: dict[str, float]
) -> dict[Path, str]:
    """Whole groups to parts, stratified per class: mixed groups first, then each class's own."""
    ordered = sorted(samples, key=lambda s: (s.class_index, s.number or -1, str(s.path)))
    groups = _groups(ordered, group_of)
    totals: dict[str, int] = defaultdict(int)
    for s in samples:
        totals[s.label] += 1
    filled = {c: {p: 0 for p in fractions} for c in totals}
    assignment: dict[Path, str] = {}
    mixed = sorted((g for g in groups if len({s.label for s in g}) > 1), key=lambda g: min(str(s.path) for s in g))
    random.Random(seed + 1).shuffle(mixed)
    _assign(mixed, totals, filled, assignment, fractions)
    rng = random.Random(seed)
    for label in sorted(totals, key=lambda c: min(s.class_index for s in samples if s.label == c)):
        own = sorted((g for g in groups if {s.label for s in g} == {label}), key=lambda g: min(str(s.path) for s in g))
        rng.shuffle(own)
        _assign(own, totals, filled, assignment, fractions)
    return assignment


def make_split(samples: tuple[Sample, ...], seed: int = 42, block_size: int = BLOCK_SIZE,
               group_of: dict[Path, str] | None = None) -> Split:
    """Assign whole groups to parts so each class gets close to 70/20/10 of its images.

    `group_of`: sample path → group (edgeleuk.groups); None: runs of `block_size` file numbers."""
    group_of = group_of if group_of is not None else block_groups(samples, block_size)
    return Split(assignment=_place(samples, group_of, seed, FRACTIONS), seed=seed, block_size=block_size)


def make_folds(
    samples: list[Sample], k: int, group_of: dict[Path, str], seed: int = 42, val_share: float = 0.125
) -> list[Split]:
    """K splits for grouped cross-validation: fold i's groups are its test part; of the others'
    groups, `val_share` validate (early stopping) and the rest train. No group is ever split."""
    folds = _place(samples, group_of, seed, {f"fold{i}": 1 / k for i in range(k)})
    out = []
    for i in range(k):
        rest = [s for s in samples if folds[s.path] != f"fold{i}"]
        inner = _place(rest, group_of, seed + 7 + i, {"train": 1 - val_share, "val": val_share})
        assignment = {s.path: "test" for s in samples if folds[s.path] == f"fold{i}"} | inner
        out.append(Split(assignment=assignment, seed=seed, block_size=0))
    return out


def write_split(path: str | Path, split: Split, samples: tuple[Sample, ...], root: Path,
                group_of: dict[Path, str] | None = None) -> None:
    rows = [
        {"file": str(s.path.relative_to(root)), "class": s.label, "sha256": s.sha256, "part": split.assignment[s.path]}
        | ({"group": group_of[s.path]} if group_of else {})
        for s in samples
    ]
    doc = {"version": SPLIT_VERSION, "seed": split.seed, "block_size": split.block_size,
           "fractions": FRACTIONS, "files": rows}
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def read_split(path: str | Path, samples: tuple[Sample, ...], root: Path) -> Split:
    """Reuse a split.json; every sample must be listed with the same class and content hash."""
    path = Path(path)
    text = read_text(path, "split file", "a split.json")
    try:
        doc = json.loads(text)
        rows = {r["file"]: r for r in doc["files"]}
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not an edgeleuk split.json ({exc})") from None
    assignment: dict[Path, str] = {}
    unlisted = []
    for s in samples:
        row = rows.get(str(s.path.relative_to(root)))
        if row is None:
            unlisted.append(s.path)
            continue
        if row["sha256"] != s.sha256 or row["class"] != s.label:
            raise UserError(f"{s.path} differs from the file listed in {path} (content or class changed)")
        if row["part"] not in PARTS:
            raise UserError(f"{path}: part {row['part']!r} for {row['file']}; expected one of {PARTS}")
        assignment[s.path] = row["part"]
    if unlisted:
        raise UserError(f"{len(unlisted)} image(s) are not in {path}, e.g. {unlisted[0]}; "
                        "make a new split (omit --split) or use the data it was made from")
    return Split(assignment=assignment, seed=int(doc.get("seed", -1)), block_size=int(doc.get("block_size", 0)))


def unseen_part(found, split_file: Path, part: str = "test", hint: str = ""):
    """Never the images a model learned from. A folder its split.json does not list at all is new to
    it: (found, True), judged whole. The data the split was made from: (its `part`, False). A mix of
    the two is refused. `found`: an edgeleuk.dataset.Scan; `hint`: the caller's own way out."""
    import dataclasses

    known = listed_hashes(split_file) if split_file.is_file() else set()
    inside = sum(s.sha256 in known for s in found.samples)
    if inside == 0:
        return found, True
    if inside < len(found.samples):
        raise UserError(
            f"{len(found.samples) - inside} of the {len(found.samples)} images in {found.root} are new and {inside} "
            "are in "
            f"the model's {split_file}: use a folder of new images only (all of it is judged) or the data the split "
            f"was made from (its {part} part is){hint}"
        )
    chosen = read_split(split_file, found.samples, found.root).part(found.samples, part)
    return dataclasses.replace(found, samples=tuple(chosen)), False


def listed_hashes(path: str | Path) -> set[str]:
    """The content hashes a split.json lists (empty when it cannot be read: read_split says why)."""
    try:
        return {r["sha256"] for r in json.loads(read_text(Path(path), "split file", "a split.json"))["files"]}
    except (UserError, json.JSONDecodeError, KeyError, TypeError):
        return set()


def average_hash(image_rgb: np.ndarray) -> int:
    """64-bit average hash of the grey thumbnail: equal or close hashes mean near-duplicates."""
    grey = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (8, 8), interpolation=cv2.INTER_AREA).astype(np.float32)
    bits = (small > small.mean()).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def near_duplicates_across(samples: list[Sample], images: np.ndarray, split: Split,
                           max_distance: int = 2) -> list[tuple[Sample, Sample, int]]:
    """Pairs of images in different parts whose average hashes differ in ≤ max_distance bits.

    `images` are the samples' preprocessed RGB arrays (training already holds them: no second decode).
    """
    hashes = np.array([average_hash(img) for img in images], dtype=np.uint64)
    parts = np.array([PARTS.index(split.assignment[s.path]) for s in samples])
    found = []
    for i in range(len(samples)):
        x = np.bitwise_xor(hashes[i + 1 :], hashes[i])
        dist = np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
        for j in np.nonzero((dist <= max_distance) & (parts[i + 1 :] != parts[i]))[0]:
            found.append((samples[i], samples[i + 1 + j], int(dist[j])))
    return found
