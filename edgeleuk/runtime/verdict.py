"""A sample's verdict: probabilities averaged over the accepted frames of one slide.

Frames the out-of-distribution score flags are counted, never averaged in: when more than
`max_ood_fraction` of the usable frames are flagged, the sample is "out of distribution: refer",
whatever the others say."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

REFER = "refer to a specialist"
OOD_DECISION = "out of distribution: refer"
DISCLAIMER = "research use only: not a diagnosis"


@dataclass
class Verdict:
    labels: tuple[str, ...]
    min_confidence: float = 0.8
    max_ood_fraction: float | None = None  # None: the model cannot judge (no statistics)
    total: np.ndarray = field(default=None)  # type: ignore[assignment]
    frames: int = 0
    ood_frames: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0:
            from edgeleuk.errors import UserError

            raise UserError(f"Received: min_confidence={self.min_confidence}; expected 0 … 1")
        self.total = np.zeros(len(self.labels), dtype=np.float64)

    def add(self, probs: np.ndarray) -> None:
        self.total += probs
        self.frames += 1

    def add_out_of_distribution(self) -> None:
        self.ood_frames += 1

    @property
    def ood_fraction(self) -> float:
        usable = self.frames + self.ood_frames
        return self.ood_frames / usable if usable else 0.0

    @property
    def out_of_distribution(self) -> bool:
        return self.max_ood_fraction is not None and self.ood_frames > 0 and (
            self.frames == 0 or self.ood_fraction > self.max_ood_fraction)

    @property
    def probabilities(self) -> np.ndarray:
        return self.total / max(self.frames, 1)

    @property
    def confidence(self) -> float:
        return float(self.probabilities.max()) if self.frames else 0.0

    @property
    def label(self) -> str | None:
        if not self.frames:
            return None
        return self.labels[int(self.probabilities.argmax())]

    @property
    def decision(self) -> str:
        if self.out_of_distribution:
            return OOD_DECISION
        if not self.frames:
            return "no usable frame"
        return self.label if self.confidence >= self.min_confidence else REFER

    def as_dict(self) -> dict:
        return {"decision": self.decision, "class": None if self.out_of_distribution else self.label,
                "confidence": round(self.confidence, 4), "frames": self.frames,
                "frames_out_of_distribution": self.ood_frames, "ood_fraction": round(self.ood_fraction, 4),
                "judged": self.max_ood_fraction is not None, "max_ood_fraction": self.max_ood_fraction,
                "probabilities": {k: round(float(v), 4) for k, v in zip(self.labels, self.probabilities)},
                "min_confidence": self.min_confidence, "note": DISCLAIMER}

    def describe(self) -> str:
        if self.out_of_distribution:
            return (
                f"verdict: {OOD_DECISION} ({self.ood_frames} of {self.frames + self.ood_frames} usable frames are "
                f"unlike the training images; no class is given) — {DISCLAIMER}"
            )
        if not self.frames:
            return f"verdict: no usable frame ({DISCLAIMER})"
        probs = "  ".join(f"{k} {v*100:.1f}%" for k, v in zip(self.labels, self.probabilities))
        ood = f", {self.ood_frames} out of distribution left out" if self.ood_frames else ""
        return (f"verdict: {self.decision} (confidence {self.confidence * 100:.1f}% over {self.frames} frames{ood}; "
                f"{probs}) — {DISCLAIMER}")
