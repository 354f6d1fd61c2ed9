"""The conversion's output folder, replaced whole: a staging folder beside it, the earlier output's
other files carried over (variants of another source model dropped), the report's rows merged, and
the swap by two renames, so a failed or interrupted conversion leaves the previous output as it was."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgeleuk.errors import UserError
from edgeleuk.files import umask
from edgeleuk.manifest import MANIFEST_NAME, Manifest, read_manifest


def staging_folder(out: Path) -> Path:
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.staging-"))
    except OSError as exc:
        raise UserError(f"cannot write the output folder {out}: {exc.strerror}") from None
    staging.chmod(0o777 & ~umask())
    return staging


def carry_over(out: Path, staging: Path, source_sha: str, model_path: Path) -> Manifest | None:
    """Start the staging folder as a copy of the existing output (other files stay, e.g. the source
    model, split and reports); variants converted from a different source model are dropped."""
    if not out.is_dir():
        return None
    for item in out.iterdir():
        if item.name.startswith("."):
            continue
        target = staging / item.name
        shutil.copytree(item, target) if item.is_dir() else shutil.copy2(item, target)
    previous = read_manifest(out) if (out / MANIFEST_NAME).is_file() else None
    if previous is not None and previous.source_model_sha256 != source_sha:
        for v in previous.variants:
            stale = staging / v.file
            if v.format != "keras" and stale.is_file() and stale.name != model_path.name:
                stale.unlink()
        return None
    return previous


def merged_rows(previous_report: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The report keeps the rows of variants this run did not convert again (same source model)."""
    try:
        old = json.loads(previous_report.read_text())["rows"]
    except (OSError, KeyError, json.JSONDecodeError):
        return rows
    new = {r["variant"]: r for r in rows}
    merged = [new.pop(r["variant"], r) for r in old]
    return merged + list(new.values())


def swap(staging: Path, out: Path) -> None:
    """Replace out by staging with two renames; the old folder goes only after the new one is in place."""
    backup = None
    if out.exists():
        backup = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, backup)
    os.rename(staging, out)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
