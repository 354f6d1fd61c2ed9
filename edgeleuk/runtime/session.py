"""The run loop: frame → `Processor.process` (quality gate, inference, OOD score) → `FrameResult` →
the sample verdict and every sink (sinks.compose: the log, the status line, the frame saver, the
window, the live view, the publisher). The records it makes are in records.py.

Sinks only watch; they steer the loop through `Control` (stop, new sample), which the loop reads
between frames, so a sink on another thread never touches the verdict while it is being counted."""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import numpy as np

from edgeleuk.interrupts import Held
from edgeleuk.manifest import QualityLimits
from edgeleuk.preprocess import ImageError, model_region, preprocess
from edgeleuk.runtime.quality import Quality, assess
from edgeleuk.runtime.records import (
    Control,
    FrameRecord,
    FrameResult,
    RunOptions,
    SampleStart,
    SampleSummary,
    Summary,
    now,
)
from edgeleuk.runtime.scale import MIN_READINGS as RULER_READINGS
from edgeleuk.runtime.scale import ScaleMonitor, scaled_region
from edgeleuk.runtime.sinks import compose
from edgeleuk.runtime.stain import MIN_READINGS as STAIN_READINGS
from edgeleuk.runtime.stain import StainMonitor
from edgeleuk.runtime.verdict import Verdict

__all__ = ["Control", "FrameResult", "Processor", "RunOptions", "Summary", "run"]


class Processor:
    """One frame in, one FrameResult out: preprocessing, the quality gate, the red-cell ruler,
    inference and the out-of-distribution score (the features' and the slide's stain), timed step by step."""

    def __init__(self, classifier, options: RunOptions) -> None:
        self.classifier, self.options = classifier, options
        self.limits = options.limits or classifier.quality or QualityLimits()
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
        record = FrameRecord(now(), frame.name, frame.index)
        if frame.image is None:
            record.error = frame.error
            return FrameResult(frame, record, error=frame.error)
        t0 = time.perf_counter()
        try:
            roi = _region(frame.image, clf.spec, options)
            x = preprocess(frame.image, clf.spec, color_order=frame.color_order, roi=roi)
        except ImageError as exc:
            record.error = str(exc)
            return FrameResult(frame, record, error=str(exc))
        region = model_region(frame.image.shape[0], frame.image.shape[1], clf.spec, roi)
        t1 = time.perf_counter()
        quality = assess(x, self.limits, stain=self.stain is not None and self.stain.due)
        if quality.usable and self.scale is not None:
            quality = _check_scale(quality, self.scale.update(x), options.max_scale_error)
        t2 = time.perf_counter()
        record.quality = quality.as_dict()
        if not quality.usable:
            return FrameResult(frame, record, quality, region=region)
        # the features' score too: inside the interpreter when the file has its layers
        probs, scores = clf.infer_judged(x)
        probs = probs[0]
        t3 = time.perf_counter()
        top = int(probs.argmax())
        ood_score = None
        if scores is not None:
            ood_score = max(float(scores[0]), self.stain.update(quality, top) if self.stain is not None else 0.0)
        in_distribution = None if ood_score is None else bool(ood_score <= clf.ood.threshold)
        t4 = time.perf_counter()
        # postprocess: the loop fills it in, the path's last step
        timing = {"handoff": frame.handoff_ms, "preprocess": (t1 - t0) * 1e3, "quality": (t2 - t1) * 1e3,
                  "inference": (t3 - t2) * 1e3, "ood": (t4 - t3) * 1e3, "postprocess": 0.0}
        total = sum(timing.values())
        invoke_ms = getattr(clf.backend, "invoke_ms", 0.0)  # the interpreter's share of "inference"
        record.label, record.confidence = clf.labels[top], round(float(probs[top]), 4)
        record.in_distribution, record.ood_score = in_distribution, None if ood_score is None else round(ood_score, 4)
        record.probabilities = {k: round(float(v), 4) for k, v in zip(clf.labels, probs)}
        record.latency_ms = {k: round(v, 3) for k, v in {**timing, "total": total, "invoke": invoke_ms}.items()}
        return FrameResult(frame, record, quality, probs, in_distribution, ood_score, region, total)


def run(classifier, source, options: RunOptions, sinks: list | None = None, control: Control | None = None,
        composed: list | None = None) -> tuple[Summary, Verdict]:
    """Classify frames until the source ends, N frames are accepted, a sink stops it, or Ctrl-C;
    always logs a summary. `sinks` come after the built-in ones (log, status line, saver, window);
    `composed`: every sink, from sinks.compose (the command's, with the live view and publisher)."""
    new_verdict = _verdicts(classifier, options)
    summary, verdict = Summary(), new_verdict()
    control = control or Control()
    processor = Processor(classifier, options)
    everyone = composed if composed is not None else compose(classifier.labels, options, control, sinks)
    sample = 1
    try:
        with Held(held=False) as shield:  # from hold() to release(), Ctrl-C and SIGTERM wait
            for frame in source.frames():
                if control.take_new_sample():
                    summary.checks = processor.checks()
                    ended = summary.record(verdict, "sample_end", sample)
                    sample += 1
                    summary, verdict = Summary(), new_verdict()
                    processor.new_sample()
                    for sink in everyone:
                        sink.sample(ended)
                        sink.sample(SampleStart(now(), sample))
                result = processor.process(frame)
                done = time.perf_counter()
                # from here to the sinks' end, a signal waits (the frame is counted and logged, or neither)
                shield.hold()
                result.record.sample = sample
                _count(result, summary, verdict, done)
                for sink in everyone:
                    sink.frame(result, verdict, summary)
                shield.release()
                reason = _stop_reason(control, options, summary)
                if reason is not None:
                    summary.stopped_by = reason
                    break
            else:
                summary.stopped_by = "end of source"
    except KeyboardInterrupt:
        summary.interrupted = True
        summary.stopped_by = "interrupted"
    finally:
        summary.checks = processor.checks()
        _close(everyone, summary.record(verdict, "summary", sample))
    return summary, verdict


def _verdicts(classifier, options: RunOptions):
    """A maker of empty sample verdicts for this model and these options (one per sample)."""
    max_ood = None  # a model that cannot judge never refers for being out of distribution
    if classifier.ood is not None:
        max_ood = (
            options.max_ood_fraction if options.max_ood_fraction is not None else classifier.ood.stats.max_ood_fraction
        )
    elif options.status != "off":
        print(
            "warning: this model carries no out-of-distribution statistics, so it cannot tell frames unlike its "
            "training images: every usable frame is answered (convert it with --data to add them)",
            file=sys.stderr,
            flush=True,
        )
    return lambda: Verdict(classifier.labels, options.min_confidence, max_ood_fraction=max_ood)


def _count(result: FrameResult, summary: Summary, verdict: Verdict, done: float) -> None:
    """The frame into the summary and the verdict; the bookkeeping is the path's last timed step."""
    summary.seen += 1
    if result.quality is None:
        summary.errors += 1
    elif result.probs is None:
        summary.refused[result.quality.reason] += 1
    elif result.in_distribution is False:
        verdict.add_out_of_distribution()
        summary.out_of_distribution += 1
    else:
        verdict.add(result.probs)
        summary.accepted += 1
    if result.total_ms is not None:
        post = (time.perf_counter() - done) * 1e3
        result.total_ms += post
        result.record.latency_ms.update(postprocess=round(post, 3), total=round(result.total_ms, 3))
        summary.latency_ms.append(result.total_ms)
        summary.inference_ms.append(result.record.latency_ms["inference"])


def _stop_reason(control: Control, options: RunOptions, summary: Summary) -> str | None:
    if control.stopping:
        return control.stop_reason or ""
    if options.frames and summary.accepted >= options.frames:
        return f"{options.frames} accepted frames"
    return None


def _close(sinks: list, final: SampleSummary) -> None:
    for sink in sinks:
        try:
            sink.close(final)
        except Exception as exc:  # one sink failing must not lose the others' endings (the log first)
            print(f"warning: {type(sink).__name__} did not close cleanly: {exc}", file=sys.stderr)


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
