"""The messages a device publishes (runtime/publish.py) and the collector stores (fleet.py), checked.
Both formats are read: without `schema_version` (1) and with it (2, runtime/records.py).

Anything on a broker may be sent by anyone who can reach it, and a retained or redelivered message
comes back at every start: `parse` reads a message only when every field the fleet uses has its
type and range, and otherwise raises `Rejected` with the reason, so one bad message is set aside
instead of stopping the collector or the report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from edgeleuk.runtime.lines import RECORD_SCHEMA, SampleSummary

MAX_PAYLOAD = 1 << 20  # bytes; a frame record is about 1 kB, a verdict a few kB
KINDS = ("verdict", "frame")


class Rejected(ValueError):
    """A message that is not one edgeleuk sends; str() is the reason."""


@dataclass(frozen=True)
class Message:
    """The envelope every message carries, and its body (`summary` for a verdict, `record` for a frame)."""

    id: str
    kind: str
    device: str
    run: str | None
    sample: int | None
    model: str | None
    model_sha256: str | None
    edgeleuk: str | None
    sent_at: float | None
    body: dict[str, Any]


def parse(payload: bytes, topic: str) -> Message:
    """The message on `topic` (PREFIX/DEVICE/KIND), or Rejected."""
    if len(payload) > MAX_PAYLOAD:
        raise Rejected(f"{len(payload)} bytes, more than {MAX_PAYLOAD}")
    try:
        body = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Rejected(f"not UTF-8 JSON ({exc})") from None
    if not isinstance(body, dict):
        raise Rejected(f"a JSON {type(body).__name__}, not an object")
    parts = topic.split("/")
    kind, device = _text(body, "kind", 16), _text(body, "device", 64)
    if len(parts) < 3 or (parts[-2], parts[-1]) != (device, kind):
        # a device speaks only for itself
        raise Rejected(f"device {device!r} and kind {kind!r} do not match the topic {printable(topic[:200])}")
    if kind not in KINDS:
        raise Rejected(f"kind {kind!r}; expected one of {', '.join(KINDS)}")
    version = _count(body, "schema_version", optional=True)
    if version is not None and version > RECORD_SCHEMA:
        raise Rejected(f"schema_version {version}; this collector reads up to {RECORD_SCHEMA} (upgrade edgeleuk)")
    message = Message(
        id=_text(body, "id", 200), kind=kind, device=device, run=_text(body, "run", 64, optional=True),
        sample=_count(body, "sample", optional=True), model=_text(body, "model", 300, optional=True, names=True),
        model_sha256=_text(body, "model_sha256", 64, optional=True),
        edgeleuk=_text(body, "edgeleuk", 64, optional=True), sent_at=_time(body.get("sent_at")), body=body
    )
    if kind == "verdict":
        sample_summary(body)
    elif not isinstance(body.get("record"), dict):
        raise Rejected("a frame message without its record object")
    return message


def sample_summary(body: dict[str, Any]) -> SampleSummary:
    """The summary of a verdict message's body, or Rejected."""
    summary = body.get("summary")
    if not isinstance(summary, dict):
        raise Rejected("a verdict without its summary object")
    verdict = summary.get("verdict")
    if not isinstance(verdict, dict):
        raise Rejected("a summary without its verdict object")
    rejected = summary.get("frames_rejected", {})
    if not isinstance(rejected, dict) or not all(isinstance(k, str) for k in rejected):
        raise Rejected("frames_rejected is not an object of counts")
    stamp = summary.get("time")
    if not (stamp is None or isinstance(stamp, str) and len(stamp) <= 64 or _number(stamp)):
        raise Rejected(f"time is {_shown(stamp)}; expected an ISO 8601 time")
    _text(verdict, "decision", 64)
    refused = {k: _count(rejected, k) for k in rejected}
    seen = _count(summary, "frames_seen", optional=True) or 0
    ood = _count(summary, "frames_out_of_distribution", optional=True) or 0
    sample = _count(summary, "sample", optional=True) or 1
    return SampleSummary(event="summary", time=stamp, sample=sample, frames_seen=seen, frames_rejected=refused,
                         frames_out_of_distribution=ood, verdict=verdict)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _text(body: dict, key: str, limit: int, optional: bool = False, names: bool = False) -> str | None:
    """Text of 1 … limit characters; printable unless it `names` a file (whose name the device's disk chose)."""
    value = body.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= limit or not (names or value.isprintable()):
        raise Rejected(f"{key} is {_shown(value)}; expected printable text of 1 to {limit} characters")
    return value


def _count(body: dict, key: str, optional: bool = False) -> int | None:
    value = body.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise Rejected(f"{key} is {_shown(value)}; expected a whole number ≥ 0")
    return value


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _time(value: Any) -> float | None:
    if value is None:
        return None
    if not (_number(value) and 0 <= value < 1e11):
        raise Rejected(f"sent_at is {_shown(value)}; expected seconds since 1970")
    return float(value)


def printable(text: str) -> str:
    """Text from the network as it may be printed: no control characters for the terminal."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _shown(value: Any) -> str:
    text = json.dumps(value) if value is not None else "missing"  # ASCII: escapes control characters
    return text if len(text) <= 40 else text[:37] + "…"
