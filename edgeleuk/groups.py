"""Which images share a patient (or a slide, or a staining session): the unit that must never be
split between training and test, and the sample whose fields `validate` pools into one verdict.

Sources (`auto` takes the first that applies of folders, blocks and files; a CSV only when named):
- `folders`: the folder inside each class folder (`Pro/patient_17/*.jpg`), the usual real layout;
- a CSV file (`--groups groups.csv`, columns file and group; file relative to the data folder);
- `blocks`: runs of file numbers (`number // 20`), as in the ALL dataset, whose neighbouring numbers
  often share a patient;
- `files`: every file its own group (nothing known: figures may be optimistic, and edgeleuk says so).
Device-safe: stdlib only.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from edgeleuk.dataset import Sample, Scan
from edgeleuk.errors import UserError
from edgeleuk.files import read_text

BLOCK_SIZE = 20
SOURCES = ("auto", "folders", "blocks", "files")


@dataclass(frozen=True)
class Groups:
    of: dict[Path, str]  # sample path → group name
    source: str  # how the groups were found, in words
    crossing: tuple[str, ...] = ()  # groups that hold images of more than one class

    def members(self) -> dict[str, list[Path]]:
        out: dict[str, list[Path]] = defaultdict(list)
        for path, group in self.of.items():
            out[group].append(path)
        return out

    def note(self) -> str:
        text = f"groups: {len(set(self.of.values()))} by {self.source}"
        if self.crossing:
            text += (
                f"\nwarning: {len(self.crossing)} group(s) hold more than one class ({', '.join(self.crossing[:3])}"
                f"{', …' if len(self.crossing) > 3 else ''}); each stays whole on one side of the split"
            )
        return text


def _by_folders(samples: tuple[Sample, ...]) -> dict[Path, str]:
    loose = [s for s in samples if s.subfolder is None]
    if loose:
        raise UserError(
            f"--groups folders: {len(loose)} of {len(samples)} images lie directly in a class folder "
            f"(e.g. {loose[0].path}); put each in a sample folder, or choose --groups blocks, files or a CSV"
        )
    return {s.path: s.subfolder for s in samples}  # type: ignore[misc]


def block_groups(samples: tuple[Sample, ...], block_size: int) -> dict[Path, str]:
    """Runs of file numbers within each folder (a class folder that `--classes` merged keeps its own)."""
    out = {}
    for s in samples:
        folder = s.label if s.path.parent.name == s.label else f"{s.label}/{s.path.parent.name}"
        start = None if s.number is None else s.number // block_size * block_size
        out[s.path] = f"{folder}/{s.path.name}" if start is None else f"{folder}/{start}-{start + block_size - 1}"
    return out


def _by_csv(found: Scan, path: Path) -> dict[Path, str]:
    text = read_text(path, "groups file", "a CSV with columns file, group")
    rows = list(csv.reader(text.splitlines()))
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["file", "group"]:
        rows = rows[1:]
    table: dict[str, str] = {}
    for n, row in enumerate(rows, 2):
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise UserError(f"{path}: line {n} is {','.join(row)!r}; expected file,group")
        table[row[0].strip().replace("\\", "/")] = row[1].strip()
    out, unlisted = {}, []
    for s in found.samples:
        relative = s.path.relative_to(found.root).as_posix()
        group = table.get(relative) or table.get(s.path.name)
        if group is None:
            unlisted.append(relative)
        else:
            out[s.path] = group
    if unlisted:
        raise UserError(f"{path}: {len(unlisted)} of {len(found.samples)} images are not listed (e.g. {unlisted[0]}); "
                        "list every image as file,group (file relative to the data folder, or its name)")
    return out


def assign_groups(found: Scan, source: str = "auto", block_size: int = BLOCK_SIZE) -> Groups:
    """Every sample's group, by `source`: one of SOURCES or the path of a CSV file."""
    samples = found.samples
    if source == "auto":
        if samples and all(s.subfolder is not None for s in samples):
            source = "folders"
        elif any(s.number is not None for s in samples):
            source = "blocks"
        else:
            source = "files"
    if source == "folders":
        of, words = _by_folders(samples), "sample folders inside the class folders"
    elif source == "blocks":
        of, words = block_groups(samples, block_size), f"runs of {block_size} file numbers"
    elif source == "files":
        of, words = {s.path: s.path.relative_to(found.root).as_posix() for s in samples}, \
            "file (no patients known: fields of one patient may fall on both sides, so test figures may be optimistic)"
    else:
        path = Path(source)
        if not path.is_file():
            raise UserError(f"--groups {source}: expected {', '.join(SOURCES)} or an existing CSV file")
        of, words = _by_csv(found, path), f"{path.name}"
    classes: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        classes[of[s.path]].add(s.label)
    crossing = tuple(sorted(g for g, labels in classes.items() if len(labels) > 1))
    return Groups(of=of, source=words, crossing=crossing)
