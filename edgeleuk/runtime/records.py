"""The run's typed records: its options, each frame's result, the running summary, and the control
through which sinks and other threads steer the loop. The loop (session.py) makes them; every sink
(sinks.py, saving.py, live.py, publish.py) reads them."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import numpy as np

from edgeleuk.manifest import QualityLimits
from edgeleuk.runtime.lines import RECORD_SCHEMA, FrameRecord, SampleStart, SampleSummary
from edgeleuk.runtime.quality import Quality
from edgeleuk.runtime.saving import SiteSet
from edgeleuk.runtime.verdict import Verdict

__all__ = ["RECORD_SCHEMA", "Control", "Frame", "FrameRecord", "FrameResult", "RunOptions", "SampleStart",
           "SampleSummary", "Sink", "Summary", "now"]


@dataclass
class Frame:
    """One frame as a source hands it over."""

    index: int
    image: np.ndarray | None  # None when this frame could not be read
    name: str  # file name or camera id
    color_order: str = "BGR"
    error: str | None = None
    handoff_ms: float = 0.0  # time from the frame being ready to the consumer having it


@dataclass
class RunOptions:
    frames: int | None = None  # stop after this many accepted frames
    min_confidence: float = 0.8
    roi: tuple[int, int, int, int] | None = None
    limits: QualityLimits | None = None  # the quality gate's; None: the model's own (its manifest), else the defaults
    log: Path | None = None
    save_frames: Path | None = None
    site: "SiteSet | None" = None  # with save_frames and a label: the labelled site set (edgeleuk.runtime.saving)
    label: str | None = None  # the class every usable frame is saved as (a slide whose class is known)
    display: bool = False
    status: str = "auto"  # auto: a live line on a terminal, one line per frame otherwise; "off"
    scale: float | None = None  # frame pixels per training-image pixel (calibrate-scale); None: the whole centre square
    # refuse frames while the cells look this many times larger or smaller than in training
    max_scale_error: float = 1.5
    max_ood_fraction: float | None = None  # None: the manifest's


LATENCY_WINDOW = 10_000  # frames whose latency the p50 covers: about 5.5 min at 30 frames/s, 0.6 MB; a service's
# one endless sample would otherwise keep every frame's (some 270 MB a day)


@dataclass
class Summary:
    seen: int = 0
    accepted: int = 0
    refused: Counter = field(default_factory=Counter)  # by the quality gate, per reason (frames_rejected in the JSON)
    out_of_distribution: int = 0
    errors: int = 0
    latency_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))  # the last frames' only
    inference_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    started: float = field(default_factory=time.perf_counter)
    interrupted: bool = False
    stopped_by: str | None = None
    # slide-level check → (its readings, the readings it needs) (Processor.checks)
    checks: dict = field(default_factory=dict)

    def as_dict(self, verdict: Verdict) -> dict:
        elapsed = time.perf_counter() - self.started
        lat = np.array(self.latency_ms or [0.0])
        return {
            "event": "summary",
            "frames_seen": self.seen,
            "frames_accepted": self.accepted,
            "frames_rejected": dict(self.refused),
            "frames_out_of_distribution": self.out_of_distribution,
            "frames_unreadable": self.errors,
            "latency_ms_p50": round(float(np.median(lat)), 3),
            "inference_ms_p50": round(float(np.median(self.inference_ms or [0.0])), 3),
            "fps": round(self.seen / elapsed, 2) if elapsed > 0 else None,
            "seconds": round(elapsed, 2),
            "interrupted": self.interrupted,
            "stopped_by": self.stopped_by,
            "verdict": verdict.as_dict(),
            "checks": {
                name: {"readings": n, "needed": need, "judged": n >= need} for name, (n, need) in self.checks.items()
            },
        }

    def record(self, verdict: Verdict, event: str, sample: int) -> SampleSummary:
        """The summary line of this sample (`event` sample_end) or of the run (summary)."""
        counts = {k: v for k, v in self.as_dict(verdict).items() if k != "event"}
        return SampleSummary(event=event, time=now(), sample=sample, **counts)

    def unjudged(self) -> list[str]:
        """The slide-level checks that had too few readings to judge this sample, in words."""
        return [f"the {name} check had {n} of the {need} readings it needs: not judged in this sample"
                for name, (n, need) in self.checks.items() if n < need]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class FrameResult:
    """What the loop learned about one frame; every sink reads this and nothing else."""

    frame: object  # sources.Frame: image, name, index, colour order
    record: FrameRecord  # its log line
    quality: Quality | None = None  # None: unreadable
    probs: np.ndarray | None = None  # None: not classified (unreadable or refused)
    in_distribution: bool | None = None  # None: the model cannot judge, or not classified
    ood_score: float | None = None
    region: tuple[int, int, int, int] | None = None  # the model's square in frame pixels
    total_ms: float | None = None
    error: str | None = None

    @property
    def answered(self) -> bool:
        return self.probs is not None and self.in_distribution is not False


class Control:
    """How sinks and other threads steer the loop: it reads these between frames."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._new_sample = threading.Event()
        self.stop_reason: str | None = None

    def stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason
        self._stop.set()

    def new_sample(self) -> None:
        self._new_sample.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait_stop(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a stop (the page's Stop button); True once asked."""
        return self._stop.wait(timeout)

    def take_new_sample(self) -> bool:
        if self._new_sample.is_set():
            self._new_sample.clear()
            return True
        return False


class Sink(Protocol):
    def frame(self, result: FrameResult, verdict: Verdict, summary: Summary) -> None: ...
    def sample(self, record: SampleSummary | SampleStart) -> None: ...  # a sample ended (its summary) or began
    def close(self, record: SampleSummary) -> None: ...  # the run's summary line
