"""The lines a run writes and sends: a frame's record, a sample's opening line and a sample's (or
the run's) summary, each as its JSON. Stdlib only: the collector and the fleet report read them
without the device's numpy and OpenCV. runtime/records.py gives them with the loop's other records."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

RECORD_SCHEMA = 2  # the format of log lines and MQTT messages: 2 adds `schema_version`; 1 (none) has the same keys

# A frame's record has these groups of keys, each present only when the frame got that far
_CLASSIFIED = ("class", "confidence", "in_distribution", "ood_score", "probabilities", "latency_ms")


@dataclass
class FrameRecord:
    """One frame's log line, and the record a frame message carries: what the loop learned about it.
    Built in session.Processor.process, finished by session.run (sample, the last latency step)."""

    time: str
    source: str
    frame: int
    sample: int = 1
    error: str | None = None  # unreadable: why
    quality: dict[str, Any] | None = None  # the gate's measures and decision (Quality.as_dict); None: unreadable
    label: str | None = None  # the class named ("class" in the JSON); None: not classified
    confidence: float | None = None
    in_distribution: bool | None = None  # None: the model cannot judge
    ood_score: float | None = None
    probabilities: dict[str, float] | None = None
    latency_ms: dict[str, float] | None = None  # per step, with total and the interpreter's own invoke

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"time": self.time, "source": self.source, "frame": self.frame}
        if self.error is not None:
            out["error"] = self.error
        if self.quality is not None:
            out["quality"] = self.quality
        if self.label is not None:
            values = (self.label, self.confidence, self.in_distribution, self.ood_score, self.probabilities)
            out.update(zip(_CLASSIFIED, (*values, self.latency_ms)))
        return {**out, "sample": self.sample, "schema_version": RECORD_SCHEMA}


@dataclass(frozen=True)
class SampleStart:
    """The line that opens a sample after the first (the page's New sample)."""

    time: str
    sample: int
    event: str = "sample_start"

    def as_json(self) -> dict[str, Any]:
        return {"time": self.time, "event": self.event, "sample": self.sample, "schema_version": RECORD_SCHEMA}


@dataclass(frozen=True)
class SampleSummary:
    """A sample's closing line (`event` sample_end) or the run's last (summary): its counts, its
    timing and its verdict. The log writes it, the publisher sends it, the fleet report reads it."""

    event: str  # sample_end or summary
    time: str | float | None
    sample: int
    frames_seen: int = 0
    frames_accepted: int = 0  # answered
    frames_rejected: dict[str, int] = field(default_factory=dict)  # refused by the quality gate, per reason
    frames_out_of_distribution: int = 0
    frames_unreadable: int = 0
    latency_ms_p50: float = 0.0
    inference_ms_p50: float = 0.0
    fps: float | None = None
    seconds: float = 0.0
    interrupted: bool = False
    stopped_by: str | None = None
    verdict: dict[str, Any] = field(default_factory=dict)  # Verdict.as_dict()
    checks: dict[str, Any] = field(default_factory=dict)  # the slide-level checks' readings

    @property
    def decision(self) -> str:
        return str(self.verdict.get("decision", ""))

    @property
    def refused(self) -> int:
        """Frames the quality gate refused, every reason together."""
        return sum(self.frames_rejected.values())

    def as_json(self) -> dict[str, Any]:
        body = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        head = {k: body.pop(k) for k in ("time", "event", "sample")}
        return {**head, **body, "schema_version": RECORD_SCHEMA}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SampleSummary":
        """From a summary line of either format (keys checked by the reader: messages.sample_summary)."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        return cls(**{"event": "summary", "time": None, "sample": 1, **values})
