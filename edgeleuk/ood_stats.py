"""The out-of-distribution statistics a manifest carries (and each model file embeds): per feature
space, the class centres and whitening with a threshold, and the stain's limits per class. Stdlib
only, like the manifest that holds them; `ood.py` fits and scores them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from edgeleuk.errors import UserError
from edgeleuk.strict import checked

OOD_METHOD = "mahalanobis"
TARGET_FLAGGED = 0.01  # share of in-distribution validation frames the threshold flags
MAX_OOD_FRACTION = 0.25  # a sample with more of its usable frames out of distribution is referred


@dataclass(frozen=True)
class OODComponent:
    """One feature space the score reads: class centres and the whitening of their shared covariance."""

    features: str  # "head": the Dense(128, relu) output; "field": block_12's pooled output (stain, texture, scale)
    means: tuple[tuple[float, ...], ...]  # one centre per class, in label order (classes × dims)
    whitening: tuple[tuple[float, ...], ...]  # W with W Wᵀ = Σ⁻¹ (dims × dims)
    threshold: float  # its distance above which a frame is out of distribution
    shrinkage: float = 0.0

    def __post_init__(self) -> None:
        dims = len(self.whitening)
        if not self.means or any(len(m) != dims for m in self.means) or any(len(r) != dims for r in self.whitening):
            raise UserError(f"manifest: ood component {self.features!r}: means and whitening disagree in size")
        if not (math.isfinite(self.threshold) and self.threshold > 0):
            raise UserError(
                f"manifest: ood component {self.features!r}: threshold={self.threshold!r}; expected a positive number"
            )

    @property
    def dims(self) -> int:
        return len(self.whitening)


@dataclass(frozen=True)
class StainStats:
    """How strongly each class's training fields are stained (log of the leukocytes' median optical
    density over the background, and of the red cells'; `runtime.quality.stain_strength`). A frame
    stained beyond either limit of the class the model names is out of distribution: the limit is
    the class's natural spread times the suite's severity-3 stain, which the model must still read
    (`export.domain.fit_stain`). The red-cell fields are absent in models converted before them."""

    log_limit: tuple[float, ...]  # leukocytes, per class, in label order
    log_mean: tuple[float, ...]
    log_sd: tuple[float, ...]
    calibration: str = ""
    red_log_limit: tuple[float, ...] | None = None  # red cells, per class; None: not judged
    red_log_mean: tuple[float, ...] | None = None
    red_log_sd: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not self.log_limit or not len(self.log_limit) == len(self.log_mean) == len(self.log_sd):
            raise UserError("manifest: ood.stain: log_limit, log_mean and log_sd need one value per class")
        red = (self.red_log_limit, self.red_log_mean, self.red_log_sd)
        if any(r is not None for r in red) and not all(r is not None and len(r) == len(self.log_limit) for r in red):
            raise UserError(
                "manifest: ood.stain: red_log_limit, red_log_mean and red_log_sd need one value per class, all three "
                "or none"
            )
        if not all(
            math.isfinite(v) for v in (*self.log_limit, *self.log_mean, *self.log_sd, *(v for r in red if r for v in r))
        ):
            raise UserError("manifest: ood.stain: every value must be a finite number")


@dataclass(frozen=True)
class OODStats:
    """What the runtime needs to judge a frame; travels in the manifest. A frame is out of
    distribution when any component's distance passes that component's threshold."""

    components: tuple[OODComponent, ...]
    method: str = OOD_METHOD
    target_flagged: float = TARGET_FLAGGED
    max_ood_fraction: float = MAX_OOD_FRACTION
    calibration: str = ""
    stain: StainStats | None = None  # None: the stain's strength is not judged (models converted before it)

    def __post_init__(self) -> None:
        if self.method != OOD_METHOD:
            raise UserError(f"manifest: ood.method={self.method!r}; this edgeleuk computes {OOD_METHOD!r}")
        if not self.components:
            raise UserError("manifest: ood.components is empty")
        if len({c.dims for c in self.components}) != len(self.components):
            raise UserError("manifest: ood.components must differ in size (the outputs are matched by size)")
        if not 0 < self.max_ood_fraction <= 1:
            raise UserError(f"manifest: ood.max_ood_fraction={self.max_ood_fraction!r}; expected 0 … 1")

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(c.dims for c in self.components)


def read_ood(data: dict[str, Any]) -> OODStats:
    """The `ood` object of a manifest or of a model file's embedded info, checked."""
    ood = dict(checked(OODStats, data, "ood", "manifest"))
    try:
        components = []
        for i, item in enumerate(ood.get("components", ())):
            item = dict(checked(OODComponent, item, f"ood.components[{i}]", "manifest"))
            for key in ("means", "whitening"):
                item[key] = tuple(tuple(float(v) for v in row) for row in item.get(key, ()))
            components.append(OODComponent(**item))
        ood["components"] = tuple(components)
        if ood.get("stain") is not None and not isinstance(ood["stain"], StainStats):
            stain = dict(checked(StainStats, ood["stain"], "ood.stain", "manifest"))
            ood["stain"] = StainStats(
                **{k: v if k == "calibration" or v is None else tuple(float(x) for x in v) for k, v in stain.items()}
            )
        return OODStats(**ood)
    except (TypeError, ValueError) as exc:
        raise UserError(f"manifest: ood: {exc}") from None
