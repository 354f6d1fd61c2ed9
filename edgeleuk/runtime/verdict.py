"""A sample's verdict: probabilities averaged over the accepted frames of one slide."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

REFER = "refer to a specialist"
DISCLAIMER = "research use only: not a diagnosis"


@dataclass
class Verdict:
    labels: tuple[str, ...]
    min_confidence: float = 0.8
    total: np.ndarray = field(default=None)  # type: ignore[assignment]
    frames: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0:
            from edgeleuk.errors import UserError

            raise UserError(f"Received: min_confidence={self.min_confidence}; expected 0 … 1")
        self.total = np.zeros(len(self.labels), dtype=np.float64)

    def add(self, probs: np.ndarray) -> None:
        self.total += probs
        self.frames += 1

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
        if not self.frames:
            return "no usable frame"
        return self.label if self.confidence >= self.min_confidence else REFER

    def as_dict(self) -> dict:
        return {"decision": self.decision, "class": self.label, "confidence": round(self.confidence, 4),
                "frames": self.frames, "probabilities": {k: round(float(v), 4) for k, v in zip(self.labels, self.probabilities)},
                "min_confidence": self.min_confidence, "note": DISCLAIMER}

    def describe(self) -> str:
        if not self.frames:
            return f"verdict: no usable frame ({DISCLAIMER})"
        probs = "  ".join(f"{k} {v*100:.1f}%" for k, v in zip(self.labels, self.probabilities))
        return f"verdict: {self.decision} (confidence {self.confidence*100:.1f}% over {self.frames} frames; {probs}) — {DISCLAIMER}"
