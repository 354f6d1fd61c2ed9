"""Frames kept by `run --save-frames DIR`.

- With `--label CLASS` (a slide whose class is known), or a live view's "Save this field as <class>"
  button: a labelled site set. The full frame goes into DIR/<class>/<sample>/, with a sidecar JSON
  beside it (time, the model, the scale, the frame's log record: quality, stain and ruler readings,
  the model's answer). That is the layout `train` and `validate` read: one folder per class, one
  sub-folder per sample (its group, so a sample is never split between training and test).
- Without a label: the frames worth a look (refused, out of distribution, low confidence), flat.

Every file is written whole or not at all (a temporary name, then a rename)."""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2

from edgeleuk.errors import UsageError, UserError
from edgeleuk.files import atomic_write_bytes, atomic_write_text

_UNSAFE = re.compile(r"[\\/:*?\"<>|\x00-\x1f]")


def folder_name(text: str, what: str) -> str:
    """A class or sample name that is one folder: no separators, not hidden, not '..'."""
    name = text.strip()
    if not name or name.startswith(".") or _UNSAFE.search(name) or len(name) > 120:
        raise UsageError(
            f"Received: {what} {text!r}; expected a folder name (no / \\ : * ? \" < > |, not starting with '.')"
        )
    return name


def write_frame(path: Path, frame) -> None:
    """The full frame as captured (an edgeleuk.runtime.sources.Frame), as JPEG. Encoded in memory and
    written by Python: OpenCV's own writer crashed (SIGSEGV) on a file name that is not UTF-8, as
    names from a USB stick can be, and reported no cause on a failed write."""
    image = frame.image if frame.color_order == "BGR" else cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".jpg", image)
    if not ok:
        raise UserError(f"cannot encode frame {frame.index} as JPEG ({image.shape}, {image.dtype})")
    try:
        atomic_write_bytes(path, data.tobytes())
    except OSError as exc:  # never lose a kept frame silently, and name the real cause
        raise UserError(f"cannot save frame {frame.index} to {path.parent}: {exc.strerror or exc}") from None


class SiteSet:
    """DIR/<class>/<sample>/<frame>.jpg and .json. Thread-safe (the web page saves from its thread)."""

    def __init__(self, folder: Path, model: dict[str, Any], scale: float | None, sample: str | None = None) -> None:
        self.folder, self.model, self.scale = folder, model, scale
        self.prefix = folder_name(sample, "--sample") if sample else f"{datetime.now():%Y%m%d-%H%M%S}"
        self.saved: dict[str, int] = {}
        self._lock = threading.Lock()

    def sample_name(self, number: int) -> str:
        """The run's first sample is the prefix (a patient's name, or the start time); later ones -2, -3, …"""
        return self.prefix if number <= 1 else f"{self.prefix}-{number}"

    def save(self, frame, label: str, record: Any) -> Path:
        """One full frame of `label` (a records.Frame, and its records.FrameRecord); returns the image's path."""
        sample = self.sample_name(int(record.sample))
        target = self.folder / folder_name(label, "class") / sample
        stem = f"{Path(str(record.source)).stem}-{int(record.frame):06d}"
        note = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "label": label, "sample": sample,
                "model": self.model, "scale": self.scale, "frame": record.as_json()}
        with self._lock:  # the sidecar first, and gone again if the frame cannot follow: never one without the other
            try:
                target.mkdir(parents=True, exist_ok=True)
                atomic_write_text(target / f"{stem}.json", json.dumps(note, indent=1, default=str) + "\n")
            except OSError as exc:
                raise UserError(f"cannot save frame {record.frame} to {target}: {exc.strerror or exc}") from None
            try:
                write_frame(target / f"{stem}.jpg", frame)
            except UserError:
                (target / f"{stem}.json").unlink(missing_ok=True)
                raise
            self.saved[label] = self.saved.get(label, 0) + 1
        return target / f"{stem}.jpg"


def save_shown(site: SiteSet | None, labels: tuple[str, ...], shown, label: str) -> tuple[int, dict[str, Any]]:
    """The live view's "Save this field as <class>": the frame on screen (a FrameResult, or None
    before the first) as `label`, which must be one of the model's classes. (HTTP status, reply)."""
    if site is None:
        return 409, {"error": "this run saves no fields: start it with --save-frames DIR"}
    if label not in labels:
        return 404, {"error": f"{label!r} is not one of the model's classes ({', '.join(labels)})"}
    if shown is None:
        return 409, {"error": "no field yet"}
    try:
        path = site.save(shown.frame, label, shown.record)
    except UserError as exc:
        return 507, {"error": str(exc)}
    return 201, {"ok": True, "file": path.relative_to(site.folder).as_posix(), "saved": dict(site.saved)}


class SaverSink:
    """The run loop's sink: with a label every usable frame (answered or not: a site set must hold the
    fields the model refuses too), into the site set; without one, the frames worth a look."""

    def __init__(
        self, folder: Path, min_confidence: float, site: SiteSet | None = None, label: str | None = None
    ) -> None:
        self.folder, self.min_confidence, self.site, self.label = folder, min_confidence, site, label
        folder.mkdir(parents=True, exist_ok=True)

    def frame(self, result, verdict, summary) -> None:
        if result.quality is None or result.frame.image is None:
            return
        if self.label is not None:
            if result.probs is not None:
                self.site.save(result.frame, self.label, result.record)  # type: ignore[union-attr]
            return
        reason = result.quality.reason if result.probs is None else (
            "out-of-distribution" if result.in_distribution is False else
            "low-confidence" if result.probs.max() < self.min_confidence else None)
        if reason is not None:
            name = f"{Path(result.frame.name).stem}-{result.frame.index:06d}-{reason.replace(' ', '-')}.jpg"
            write_frame(self.folder / name, result.frame)

    def sample(self, record) -> None:
        pass

    def close(self, record) -> None:
        pass
