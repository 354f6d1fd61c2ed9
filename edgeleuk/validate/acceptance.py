"""Site acceptance, the run: every labelled field of a site's folder goes through the run loop's own
path (quality gate, red-cell ruler, the model file, the out-of-distribution score), one sample
(a sub-folder, or a --groups group) at a time, so each sample also gets the verdict `run` would give.
Device-safe: no TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeleuk.dataset import Scan
from edgeleuk.groups import Groups
from edgeleuk.runtime.records import SampleStart, SampleSummary
from edgeleuk.runtime.session import FrameResult, RunOptions, run
from edgeleuk.runtime.sources import ImageSource
from edgeleuk.runtime.verdict import OOD_DECISION, REFER, Verdict

ANSWERED, OOD, UNREADABLE = "answered", "out of distribution", "unreadable"
NO_FRAME = "no usable frame"  # Verdict.decision when the gate refused every field of a sample


@dataclass(frozen=True)
class FieldResult:
    file: str  # relative to the data folder
    truth: str
    sample: str
    outcome: str  # ANSWERED, OOD, UNREADABLE, or "refused: <the gate's reason>"
    predicted: str | None = None  # the model's top class wherever it ran (answered or flagged)
    confidence: float | None = None


@dataclass(frozen=True)
class SampleResult:
    name: str
    truth: str
    # as `run` gives it: a class, "refer to a specialist", "out of distribution: refer", "no usable frame"
    decision: str
    confidence: float
    frames: int
    ood_frames: int
    min_confidence: float
    unjudged: tuple[str, ...] = ()  # slide-level checks with too few readings in this sample (Summary.unjudged)

    @property
    def right(self) -> bool:
        return self.decision == self.truth

    @property
    def wrong(self) -> bool:
        """A class is named, and it is not the sample's: the error that matters most."""
        return self.decision not in (self.truth, REFER, OOD_DECISION, NO_FRAME)

    @property
    def margin(self) -> float | None:
        """How far a right verdict's confidence passed min_confidence."""
        return round(self.confidence - self.min_confidence, 4) if self.right else None


@dataclass
class Acceptance:
    labels: tuple[str, ...]
    model: str
    data: str
    groups: str  # how samples were found, in words
    fields: list[FieldResult] = field(default_factory=list)
    samples: list[SampleResult] = field(default_factory=list)
    per_sample: bool = True  # False: no sample folders, so no verdicts


class _Collector:
    """A run sink that keeps each field's outcome; `unit`: the sample's (true class, name)."""

    def __init__(self, root: Path, paths: list[Path], unit: tuple[str, str], out: Acceptance):
        self.root, self.paths, self.out, self.labels = root, paths, out, out.labels
        self.truth, self.sample = unit

    def frame(self, result: FrameResult, verdict: Verdict, summary) -> None:
        path = self.paths[result.frame.index]
        predicted = confidence = None
        if result.probs is not None:
            top = int(result.probs.argmax())
            predicted, confidence = self.labels[top], float(result.probs[top])
        if result.quality is None:
            outcome = UNREADABLE
        elif result.probs is None:
            outcome = f"refused: {result.quality.reason}"
        else:
            outcome = OOD if result.in_distribution is False else ANSWERED
        self.out.fields.append(FieldResult(path.relative_to(self.root).as_posix(), self.truth, self.sample, outcome,
                                           predicted, None if confidence is None else round(confidence, 4)))

    def sample(self, record: SampleSummary | SampleStart) -> None:
        pass

    def close(self, record: SampleSummary) -> None:
        pass


def run_acceptance(classifier, found: Scan, groups: Groups | None, options: RunOptions, model_name: str) -> Acceptance:
    """Each sample through `run`: its fields in file order, its stain read afresh, its own verdict."""
    out = Acceptance(labels=tuple(classifier.labels), model=model_name, data=str(found.root),
                     groups=groups.source if groups else "none (no sample folders): fields judged one by one",
                     per_sample=groups is not None)
    units: dict[tuple[str, str], list[Path]] = {}
    for s in found.samples:
        name = groups.of[s.path] if groups else s.label
        units.setdefault((s.label, name), []).append(s.path)
    for (truth, name), paths in sorted(units.items(), key=lambda kv: (found.labels.index(kv[0][0]), kv[0][1])):
        collector = _Collector(found.root, paths, (truth, name), out)
        summary, verdict = run(classifier, ImageSource(paths, name), options, sinks=[collector])
        if groups is not None:
            out.samples.append(SampleResult(name, truth, verdict.decision, round(verdict.confidence, 4), verdict.frames,
                                            verdict.ood_frames, options.min_confidence, tuple(summary.unjudged())))
    return out
