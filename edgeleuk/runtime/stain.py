"""The slide's stain against the training fields', from recent frames: the stain part of the run's
out-of-distribution score.

A stain belongs to the slide (its dye, its protocol, how long it sat), not to one frame. So the run
reads the stain on a sample's first usable frames until it has MIN_READINGS readings (so a sample of
10 fields is judged too; a slide whose fields give no reading is read so for 24 frames at most),
then, as the red-cell ruler reads magnification, on every `every`-th, and judges each frame by the
largest of the last `window` readings, each against the limits of the class the model named on its
own frame: quick to refer (a strong reading refers the frame it is read on and the next window's
worth) and slow to clear. A new sample (another slide) starts afresh. Reading every frame would
cost more than the features' whole score, and one strongly stained frame says what the slide is;
the cost and the effect on overstained slides are in benchmarks/README.md (the score's cost, and the stain check).

`Classifier.judge` (evaluate's per-frame figures) still reads every frame's own stain.
"""

from __future__ import annotations

from collections import deque

from edgeleuk.ood import OODScorer
from edgeleuk.runtime.quality import Quality

READ_EVERY = 8  # usable frames between readings: about 4 a second at 30 frames/s, as the red-cell ruler
WINDOW = 5  # the readings a frame is judged by
MIN_READINGS = 3  # a sample's first usable frames are each read until it has this many (for 3 × 8 frames at most)


class StainMonitor:
    """The run's stain score: the largest of recent frames' `stain_score` (above 1: stained more
    strongly than the named classes' training fields and the suite's severity 3)."""

    def __init__(self, scorer: OODScorer, every: int = READ_EVERY, window: int = WINDOW):
        self.scorer, self.every = scorer, max(1, every)
        self.readings: deque[float] = deque(maxlen=max(1, window))
        self.count, self.score = 0, 0.0  # 0: nothing read yet (the features judge alone)

    @property
    def due(self) -> bool:
        """Whether the next usable frame is read (`assess(..., stain=monitor.due)`)."""
        early = len(self.readings) < MIN_READINGS and self.count < MIN_READINGS * self.every
        return early or self.count % self.every == 0

    def update(self, quality: Quality, top: int) -> float:
        """After inference on a usable frame: its reading, on its turn, against the named class's limits
        → the running stain score. Counts usable frames only, so a frame refused after its reading (by
        the magnification check) passes its turn to the next."""
        if self.due and (quality.stain is not None or quality.red_stain is not None):
            self.readings.append(self.scorer.stain_score(quality.stain, top, quality.red_stain))
            self.score = max(self.readings)
        self.count += 1
        return self.score

    def reset(self) -> None:
        """A new sample: another slide, maybe another stain."""
        self.readings.clear()
        self.count, self.score = 0, 0.0
