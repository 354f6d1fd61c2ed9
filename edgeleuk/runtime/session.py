"""The run loop: frame → `Processor.process` (quality gate, inference, OOD score) → `FrameResult` →
the sample verdict and every sink (the log, the status line, the window, the frame saver, the web view).

Sinks only watch; they steer the loop through `Control` (stop, new sample), which the loop reads
between frames, so a sink on another thread never touches the verdict while it is being counted."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import numpy as np

from edgeleuk.errors import UserError
from edgeleuk.interrupts import Held
from edgeleuk.preprocess import ImageError, model_region, preprocess
from edgeleuk.runtime.display import Display
from edgeleuk.runtime.quality import Quality, QualityThresholds, assess
from edgeleuk.runtime.saving import SaverSink, SiteSet
from edgeleuk.runtime.scale import MIN_READINGS as RULER_READINGS, ScaleMonitor, scaled_region
from edgeleuk.runtime.stain import MIN_READINGS as STAIN_READINGS, StainMonitor
from edgeleuk.runtime.verdict import Verdict


@dataclass
class RunOptions:
    frames: int | None = None  # stop after this many accepted frames
    min_confidence: float = 0.8
    roi: tuple[int, int, int, int] | None = None
    thresholds: QualityThresholds | None = None  # None: the model's own (its manifest), else the defaults
    log: Path | None = None
    save_frames: Path | None = None
    site: "SiteSet | None" = None  # with save_frames and a label: the labelled site set (edgeleuk.runtime.saving)
    label: str | None = None  # the class every usable frame is saved as (a slide whose class is known)
    display: bool = False
    status: str = "auto"  # auto: a live line on a terminal, one line per frame otherwise; "off"
    scale: float | None = None  # frame pixels per training-image pixel (calibrate-scale); None: the whole centre square
    max_scale_error: float = 1.5  # refuse frames while the cells look this many times larger or smaller than in training
    max_ood_fraction: float | None = None  # None: the manifest's


LATENCY_WINDOW = 10_000  # frames whose latency the p50 covers: about 5.5 min at 30 frames/s, 0.6 MB; a service's
# one endless sample would otherwise keep every frame's (some 270 MB a day)


@dataclass
class Summary:
    seen: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    out_of_distribution: int = 0
    errors: int = 0
    latency_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))  # the last frames' only
    inference_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    started: float = field(default_factory=time.perf_counter)
    interrupted: bool = False
    stopped_by: str | None = None
    checks: dict = field(default_factory=dict)  # slide-level check → (its readings, the readings it needs) (Processor.checks)

    def as_dict(self, verdict: Verdict) -> dict:
        elapsed = time.perf_counter() - self.started
        lat = np.array(self.latency_ms or [0.0])
        return {"event": "summary", "frames_seen": self.seen, "frames_accepted": self.accepted,
                "frames_rejected": dict(self.rejected), "frames_out_of_distribution": self.out_of_distribution,
                "frames_unreadable": self.errors,
                "latency_ms_p50": round(float(np.median(lat)), 3), "inference_ms_p50": round(float(np.median(self.inference_ms or [0.0])), 3),
                "fps": round(self.seen / elapsed, 2) if elapsed > 0 else None, "seconds": round(elapsed, 2),
                "interrupted": self.interrupted, "stopped_by": self.stopped_by, "verdict": verdict.as_dict(),
                "checks": {name: {"readings": n, "needed": need, "judged": n >= need} for name, (n, need) in self.checks.items()}}

    def unjudged(self) -> list[str]:
        """The slide-level checks that had too few readings to judge this sample, in words."""
        return [f"the {name} check had {n} of the {need} readings it needs: not judged in this sample"
                for name, (n, need) in self.checks.items() if n < need]


class JsonlLog:
    """One JSON object per line, each written by one system call: a killed run still leaves a complete
    log, two runs sharing one file never interleave within a line, and a line the disk cannot take
    whole is cut off again, so the file never ends in half a record."""

    def __init__(self, path: Path | None):
        self.fd: int | None = None
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            except OSError as exc:
                raise UserError(f"cannot write the log {path}: {exc.strerror}") from None

    def write(self, record: dict) -> None:
        if self.fd is None:
            return
        data, written = (json.dumps(record) + "\n").encode(), 0
        try:
            while written < len(data):  # a disk that took part of it: the next write completes it, or says why not
                written += os.write(self.fd, data[written:])
        except OSError as exc:
            self._cut(written)
            raise UserError(f"cannot write the log {self.path} any more ({exc.strerror}); it ends before this frame") from None

    def _cut(self, written: int) -> None:
        """Remove the `written` bytes of a partly written line (the file's size is read only here, off
        the per-frame path); the summary cannot follow either."""
        with contextlib.suppress(OSError):
            if written:
                os.ftruncate(self.fd, os.fstat(self.fd).st_size - written)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class FrameResult:
    """What the loop learned about one frame; every sink reads this and nothing else."""

    frame: object  # sources.Frame: image, name, index, colour order
    record: dict  # its log line
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
    def sample(self, record: dict) -> None: ...  # a sample ended (its summary) or began
    def close(self, record: dict) -> None: ...  # the run's summary line


class Processor:
    """One frame in, one FrameResult out: preprocessing, the quality gate, the red-cell ruler,
    inference and the out-of-distribution score (the features' and the slide's stain), timed step by step."""

    def __init__(self, classifier, options: RunOptions) -> None:
        self.classifier, self.options = classifier, options
        self.limits = options.thresholds or classifier.quality or QualityThresholds()
        self.scale = ScaleMonitor(classifier.cell_diameter_px) if classifier.cell_diameter_px else None
        ood = classifier.ood
        self.stain = StainMonitor(ood) if ood is not None and ood.judges_stain else None

    def checks(self) -> dict[str, tuple[int, int]]:
        """Each slide-level check's readings so far and the readings it needs: the magnification
        (red-cell ruler) and the stain."""
        out = {}
        if self.scale is not None:
            out["magnification"] = (len(self.scale.readings), RULER_READINGS)
        if self.stain is not None:
            out["stain"] = (len(self.stain.readings), STAIN_READINGS)
        return out

    def new_sample(self) -> None:
        """Another slide: the stain is read afresh (the magnification, the optics', carries over)."""
        if self.stain is not None:
            self.stain.reset()

    def process(self, frame) -> FrameResult:
        clf, options = self.classifier, self.options
        record = {"time": _now(), "source": frame.name, "frame": frame.index}
        if frame.image is None:
            return FrameResult(frame, {**record, "error": frame.error}, error=frame.error)
        t0 = time.perf_counter()
        try:
            roi = _region(frame.image, clf.spec, options)
            x = preprocess(frame.image, clf.spec, color_order=frame.color_order, roi=roi)
        except ImageError as exc:
            return FrameResult(frame, {**record, "error": str(exc)}, error=str(exc))
        region = model_region(frame.image.shape[0], frame.image.shape[1], clf.spec, roi)
        t1 = time.perf_counter()
        quality = assess(x, self.limits, stain=self.stain is not None and self.stain.due)
        if quality.usable and self.scale is not None:
            quality = _check_scale(quality, self.scale.update(x), options.max_scale_error)
        t2 = time.perf_counter()
        record["quality"] = quality.as_dict()
        if not quality.usable:
            return FrameResult(frame, record, quality, region=region)
        probs, scores = clf.infer_judged(x)  # the features' score too: inside the interpreter when the file has its layers
        probs = probs[0]
        t3 = time.perf_counter()
        top = int(probs.argmax())
        ood_score = None if scores is None else max(float(scores[0]), self.stain.update(quality, top) if self.stain is not None else 0.0)
        in_distribution = None if ood_score is None else bool(ood_score <= clf.ood.threshold)
        t4 = time.perf_counter()
        timing = {"handoff": frame.handoff_ms, "preprocess": (t1 - t0) * 1e3, "quality": (t2 - t1) * 1e3,
                  "inference": (t3 - t2) * 1e3, "ood": (t4 - t3) * 1e3, "postprocess": 0.0}  # the loop fills in the last
        total = sum(timing.values())
        invoke_ms = getattr(clf.backend, "invoke_ms", 0.0)  # the interpreter's share of "inference"
        record.update({"class": clf.labels[top], "confidence": round(float(probs[top]), 4),
                       "in_distribution": in_distribution, "ood_score": None if ood_score is None else round(ood_score, 4),
                       "probabilities": {k: round(float(v), 4) for k, v in zip(clf.labels, probs)},
                       "latency_ms": {k: round(v, 3) for k, v in {**timing, "total": total, "invoke": invoke_ms}.items()}})
        return FrameResult(frame, record, quality, probs, in_distribution, ood_score, region, total)


def verdict_text(verdict: Verdict) -> str:
    """The sample so far, in one line (the status line, the window and the web view)."""
    if verdict.out_of_distribution:
        return f"sample: {verdict.decision} ({verdict.ood_frames} of {verdict.frames + verdict.ood_frames} usable frames)"
    text = f"sample: {verdict.decision}" + (f" {verdict.confidence * 100:.0f}% ({verdict.frames} frames)" if verdict.frames else "")
    if verdict.ood_frames:
        text += f", {verdict.ood_frames} out of distribution"
    return text


def view_of(result: FrameResult, labels: tuple[str, ...]) -> tuple[np.ndarray | None, Quality | None]:
    """What an overlay shows: the probabilities, or the reason the frame is not answered."""
    if result.in_distribution is False:  # shown like a refused frame: red square, the reason, no class
        return None, replace(result.quality, usable=False, reason="out of distribution: not answered")
    return result.probs, result.quality


class LogSink:
    """The JSONL log: one line per frame, per sample boundary and the summary, flushed per line."""

    def __init__(self, path: Path | None) -> None:
        self.log = JsonlLog(path)

    def frame(self, result, verdict, summary) -> None:
        self.log.write(result.record)

    def sample(self, record: dict) -> None:
        self.log.write(record)

    def close(self, record: dict) -> None:
        self.log.write(record)
        self.log.close()


class StatusSink:
    """The terminal: a live line on a TTY, one line per frame otherwise."""

    def __init__(self, labels: tuple[str, ...], live: bool) -> None:
        self.labels, self.live = labels, live

    def frame(self, result, verdict, summary) -> None:
        f = result.frame
        if result.error is not None:
            _status(f"frame {f.index} ({f.name}): unreadable: {result.error}", False)
            return
        q = result.quality
        if result.probs is None:
            _status(f"frame {f.index}: unusable ({q.reason}; focus {q.focus:.0f}, brightness {q.brightness:.0f})", self.live)
            return
        probs, top = result.probs, int(result.probs.argmax())
        probs_text = " ".join(f"{k} {v:.2f}" for k, v in zip(self.labels, probs))
        answer = (f"out of distribution (score {result.ood_score:.2f})" if result.in_distribution is False
                  else f"{self.labels[top]} {probs[top]*100:.1f}% [{probs_text}]")
        ood = f", {verdict.ood_frames} out of distribution" if verdict.ood_frames else ""
        _status(f"frame {f.index}: {answer} {result.total_ms:.1f} ms | sample: {verdict.decision} "
                f"({verdict.confidence*100:.0f}%, {verdict.frames} frames{ood})", self.live)

    def sample(self, record: dict) -> None:
        if record.get("event") == "sample_end":
            _status(f"sample {record['sample']} ended: {record['verdict']['decision']}", False)

    def close(self, record: dict) -> None:
        if self.live:
            sys.stderr.write("\n")


class DisplaySink:
    """The desktop window; closing it stops the run."""

    def __init__(self, display: Display, labels: tuple[str, ...], control: Control) -> None:
        self.display, self.labels, self.control = display, labels, control

    def frame(self, result, verdict, summary) -> None:
        if result.quality is None:
            return
        probs, quality = view_of(result, self.labels)
        if self.display.show(result.frame.image, result.frame.color_order, result.region, self.labels, probs, quality,
                             verdict_text(verdict)):
            self.control.stop("window closed")

    def sample(self, record: dict) -> None:
        pass

    def close(self, record: dict) -> None:
        self.display.close()


def _status(text: str, live: bool) -> None:
    if live:
        sys.stderr.write("\r" + text[:150].ljust(150))
        sys.stderr.flush()
    else:
        print(text, flush=True)


def run(classifier, source, options: RunOptions, sinks: list | None = None, control: Control | None = None) -> tuple[Summary, Verdict]:
    """Classify frames until the source ends, N frames are accepted, a sink stops it, or Ctrl-C;
    always logs a summary. `sinks` come after the built-in ones (log, status line, saver, window)."""
    judged = classifier.ood is not None
    max_ood = None  # a model that cannot judge never refers for being out of distribution
    if judged:
        max_ood = options.max_ood_fraction if options.max_ood_fraction is not None else classifier.ood.stats.max_ood_fraction
    new_verdict = lambda: Verdict(classifier.labels, options.min_confidence, max_ood_fraction=max_ood)  # noqa: E731
    summary, verdict = Summary(), new_verdict()
    if not judged and options.status != "off":
        print("warning: this model carries no out-of-distribution statistics, so it cannot tell frames unlike its "
              "training images: every usable frame is answered (convert it with --data to add them)", file=sys.stderr, flush=True)
    control = control or Control()
    processor = Processor(classifier, options)
    display = Display() if options.display else None  # before the log: a refused window leaves no log behind
    built: list = [LogSink(options.log)]
    if options.status != "off":
        built.append(StatusSink(classifier.labels, options.status == "auto" and sys.stderr.isatty()))
    if options.save_frames:
        built.append(SaverSink(options.save_frames, options.min_confidence, options.site, options.label))
    if display is not None:
        built.append(DisplaySink(display, classifier.labels, control))
    everyone = built + list(sinks or [])
    sample = 1
    try:
        with Held(held=False) as shield:  # from hold() to release(), Ctrl-C and SIGTERM wait
            for frame in source.frames():
                if control.take_new_sample():
                    summary.checks = processor.checks()
                    ended = {"time": _now(), "event": "sample_end", "sample": sample, **summary.as_dict(verdict)}
                    ended["event"] = "sample_end"  # as_dict's own "event" (summary) would win; the key keeps its place
                    sample += 1
                    summary, verdict = Summary(), new_verdict()
                    processor.new_sample()
                    for sink in everyone:
                        sink.sample(ended)
                        sink.sample({"time": _now(), "event": "sample_start", "sample": sample})
                result = processor.process(frame)
                done = time.perf_counter()
                shield.hold()  # from here to the sinks' end, a signal waits (the frame is counted and logged, or neither)
                result.record["sample"] = sample
                summary.seen += 1
                if result.quality is None:
                    summary.errors += 1
                elif result.probs is None:
                    summary.rejected[result.quality.reason] += 1
                elif result.in_distribution is False:
                    verdict.add_out_of_distribution()
                    summary.out_of_distribution += 1
                else:
                    verdict.add(result.probs)
                    summary.accepted += 1
                if result.total_ms is not None:  # the verdict's bookkeeping is the path's last step
                    post = (time.perf_counter() - done) * 1e3
                    result.total_ms += post
                    result.record["latency_ms"].update(postprocess=round(post, 3), total=round(result.total_ms, 3))
                    summary.latency_ms.append(result.total_ms)
                    summary.inference_ms.append(result.record["latency_ms"]["inference"])
                for sink in everyone:
                    sink.frame(result, verdict, summary)
                shield.release()
                if control.stopping:
                    summary.stopped_by = control.stop_reason
                    break
                if options.frames and summary.accepted >= options.frames:
                    summary.stopped_by = f"{options.frames} accepted frames"
                    break
            else:
                summary.stopped_by = "end of source"
    except KeyboardInterrupt:
        summary.interrupted = True
        summary.stopped_by = "interrupted"
    finally:
        summary.checks = processor.checks()
        final = {"time": _now(), **summary.as_dict(verdict), "sample": sample}
        for sink in everyone:
            try:
                sink.close(final)
            except Exception as exc:  # one sink failing must not lose the others' endings (the log first)
                print(f"warning: {type(sink).__name__} did not close cleanly: {exc}", file=sys.stderr)
    return summary, verdict


def _region(image: np.ndarray, spec, options: RunOptions):
    """The ROI preprocess crops: the configured one, narrowed to the calibrated field when a scale is set."""
    if options.scale is None:
        return options.roi
    return scaled_region(image.shape[0], image.shape[1], spec.size, options.scale, options.roi)


def _check_scale(quality: Quality, ratio: float | None, limit: float) -> Quality:
    """Refuse while the red cells look far larger or smaller than in the training images."""
    if ratio is None or 1 / limit <= ratio <= limit:
        return replace(quality, scale=ratio)
    return replace(quality, scale=ratio, usable=False, reason="wrong magnification")
