"""The run loop: frame → quality gate → inference → per-frame log line → sample verdict."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from edgeleuk.errors import UserError
from edgeleuk.preprocess import ImageError, model_region, preprocess
from edgeleuk.runtime.display import Display
from edgeleuk.runtime.quality import Quality, QualityThresholds, assess
from edgeleuk.runtime.scale import ScaleMonitor, scaled_region
from edgeleuk.runtime.verdict import Verdict


@dataclass
class RunOptions:
    frames: int | None = None  # stop after this many accepted frames
    min_confidence: float = 0.8
    roi: tuple[int, int, int, int] | None = None
    thresholds: QualityThresholds = field(default_factory=QualityThresholds)
    log: Path | None = None
    save_frames: Path | None = None
    display: bool = False
    status: str = "auto"  # auto: a live line on a terminal, one line per frame otherwise; "off"
    scale: float | None = None  # frame pixels per training-image pixel (calibrate-scale); None: the whole centre square
    max_scale_error: float = 1.5  # refuse frames while the cells look this many times larger or smaller than in training
    max_ood_fraction: float | None = None  # None: the manifest's


@dataclass
class Summary:
    seen: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    out_of_distribution: int = 0
    errors: int = 0
    latency_ms: list = field(default_factory=list)
    inference_ms: list = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    interrupted: bool = False
    stopped_by: str | None = None

    def as_dict(self, verdict: Verdict) -> dict:
        elapsed = time.perf_counter() - self.started
        lat = np.array(self.latency_ms or [0.0])
        return {"event": "summary", "frames_seen": self.seen, "frames_accepted": self.accepted,
                "frames_rejected": dict(self.rejected), "frames_out_of_distribution": self.out_of_distribution,
                "frames_unreadable": self.errors,
                "latency_ms_p50": round(float(np.median(lat)), 3), "inference_ms_p50": round(float(np.median(self.inference_ms or [0.0])), 3),
                "fps": round(self.seen / elapsed, 2) if elapsed > 0 else None, "seconds": round(elapsed, 2),
                "interrupted": self.interrupted, "stopped_by": self.stopped_by, "verdict": verdict.as_dict()}


class JsonlLog:
    """One JSON object per line, flushed per line: a killed run still leaves a complete log."""

    def __init__(self, path: Path | None):
        self.fh: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.fh = open(path, "a", buffering=1)
            except OSError as exc:
                raise UserError(f"cannot write the log {path}: {exc.strerror}") from None

    def write(self, record: dict) -> None:
        if self.fh:
            self.fh.write(json.dumps(record) + "\n")
            self.fh.flush()

    def close(self) -> None:
        if self.fh:
            self.fh.close()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _status(text: str, live: bool) -> None:
    if live:
        sys.stderr.write("\r" + text[:150].ljust(150))
        sys.stderr.flush()
    else:
        print(text, flush=True)


def run(classifier, source, options: RunOptions) -> tuple[Summary, Verdict]:
    """Classify frames until the source ends, N frames are accepted, or Ctrl-C; always logs a summary."""
    judged = classifier.ood is not None
    max_ood = None  # a model that cannot judge never refers for being out of distribution
    if judged:
        max_ood = options.max_ood_fraction if options.max_ood_fraction is not None else classifier.ood.stats.max_ood_fraction
    summary, verdict = Summary(), Verdict(classifier.labels, options.min_confidence, max_ood_fraction=max_ood)
    if not judged and options.status != "off":
        print("warning: this model carries no out-of-distribution statistics, so it cannot tell frames unlike its "
              "training images: every usable frame is answered (convert it with --data to add them)", file=sys.stderr, flush=True)
    scale = ScaleMonitor(classifier.cell_diameter_px) if classifier.cell_diameter_px else None
    display = Display() if options.display else None  # before the log: a refused window leaves no log behind
    log = JsonlLog(options.log)
    live = options.status == "auto" and sys.stderr.isatty()
    quiet = options.status == "off"
    if options.save_frames:
        options.save_frames.mkdir(parents=True, exist_ok=True)
    try:
        for frame in source.frames():
            summary.seen += 1
            record = {"time": _now(), "source": frame.name, "frame": frame.index}
            if frame.image is None:
                summary.errors += 1
                log.write({**record, "error": frame.error})
                if not quiet:
                    _status(f"frame {frame.index} ({frame.name}): unreadable: {frame.error}", False)
                continue
            t0 = time.perf_counter()
            try:
                roi = _region(frame.image, classifier.spec, options)
                x = preprocess(frame.image, classifier.spec, color_order=frame.color_order, roi=roi)
            except ImageError as exc:
                summary.errors += 1
                log.write({**record, "error": str(exc)})
                continue
            t1 = time.perf_counter()
            quality = assess(x, options.thresholds)
            if quality.usable and scale is not None:
                quality = _check_scale(quality, scale.update(x), options.max_scale_error)
            t2 = time.perf_counter()
            record["quality"] = quality.as_dict()
            if not quality.usable:
                summary.rejected[quality.reason] += 1
                log.write(record)
                _save(options.save_frames, frame, quality.reason)
                if not quiet:
                    _status(f"frame {frame.index}: unusable ({quality.reason}; focus {quality.focus:.0f}, brightness {quality.brightness:.0f})", live)
                if display is not None and _show(display, frame, classifier, options, None, quality, verdict):
                    summary.stopped_by = "window closed"
                    break
                continue
            probs, features = classifier.infer(x)
            probs = probs[0]
            t3 = time.perf_counter()
            scores = classifier.judge(features)
            ood_score = float(scores[0]) if scores is not None else None
            in_distribution = None if ood_score is None else bool(ood_score <= classifier.ood.threshold)
            t4 = time.perf_counter()
            top = int(probs.argmax())
            if in_distribution is False:
                verdict.add_out_of_distribution()
                summary.out_of_distribution += 1
            else:
                verdict.add(probs)
                summary.accepted += 1
            t5 = time.perf_counter()
            timing = {"handoff": frame.handoff_ms, "preprocess": (t1 - t0) * 1e3, "quality": (t2 - t1) * 1e3,
                      "inference": (t3 - t2) * 1e3, "ood": (t4 - t3) * 1e3, "postprocess": (t5 - t4) * 1e3}
            total = sum(timing.values())
            invoke_ms = getattr(classifier.backend, "invoke_ms", 0.0)  # the interpreter's share of "inference"
            summary.latency_ms.append(total)
            summary.inference_ms.append(timing["inference"])
            record.update({"class": classifier.labels[top], "confidence": round(float(probs[top]), 4),
                           "in_distribution": in_distribution, "ood_score": None if ood_score is None else round(ood_score, 4),
                           "probabilities": {k: round(float(v), 4) for k, v in zip(classifier.labels, probs)},
                           "latency_ms": {k: round(v, 3) for k, v in {**timing, "total": total, "invoke": invoke_ms}.items()}})
            log.write(record)
            if in_distribution is False:
                _save(options.save_frames, frame, "out-of-distribution")
            elif probs[top] < options.min_confidence:
                _save(options.save_frames, frame, "low-confidence")
            if not quiet:
                probs_text = " ".join(f"{k} {v:.2f}" for k, v in zip(classifier.labels, probs))
                answer = (f"out of distribution (score {ood_score:.2f})" if in_distribution is False
                          else f"{classifier.labels[top]} {probs[top]*100:.1f}% [{probs_text}]")
                ood = f", {verdict.ood_frames} out of distribution" if verdict.ood_frames else ""
                _status(f"frame {frame.index}: {answer} {total:.1f} ms | sample: {verdict.decision} "
                        f"({verdict.confidence*100:.0f}%, {verdict.frames} frames{ood})", live)
            if display is not None and _show(display, frame, classifier, options, probs, quality, verdict, in_distribution):
                summary.stopped_by = "window closed"
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
        if live:
            sys.stderr.write("\n")
        log.write({"time": _now(), **summary.as_dict(verdict)})
        log.close()
        if display is not None:
            display.close()
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


def _show(display: Display, frame, classifier, options: RunOptions, probs, quality, verdict: Verdict, in_distribution=None) -> bool:
    region = model_region(frame.image.shape[0], frame.image.shape[1], classifier.spec, _region(frame.image, classifier.spec, options))
    text = f"sample: {verdict.decision}" + (f" {verdict.confidence * 100:.0f}% ({verdict.frames} frames)" if verdict.frames else "")
    if verdict.ood_frames:
        text += f", {verdict.ood_frames} out of distribution"
    if in_distribution is False:  # shown like a refused frame: red square, the reason, no class
        quality, probs = replace(quality, usable=False, reason="out of distribution: not answered"), None
    return display.show(frame.image, frame.color_order, region, classifier.labels, probs, quality, text)


def _save(folder: Path | None, frame, reason: str | None) -> None:
    if folder is not None and frame.image is not None:
        name = f"{Path(frame.name).stem}-{frame.index:06d}-{(reason or 'flagged').replace(' ', '-')}.jpg"
        cv2.imwrite(str(folder / name), frame.image)
