"""What the device needs to know about the training data, learned at conversion: the statistics of
the out-of-distribution score (features and stain strength), the red-cell ruler and the quality gate's leukocyte
check. Fitted on the training part, thresholds on
the validation part; the test part is never used here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from edgeleuk.manifest import QualityLimits
from edgeleuk.ood import OODScorer, Parts, fit_ood
from edgeleuk.ood_stats import TARGET_FLAGGED, OODStats, StainStats
from edgeleuk.preprocess import dihedral
from edgeleuk.runtime.quality import leukocyte_fraction, stain_strength
from edgeleuk.runtime.scale import measure_cells

# the gate refuses fields with under a quarter of the leukocyte area of the sparsest training fields
LEUKOCYTE_MARGIN = 0.25


@dataclass
class Domain:
    ood: OODStats
    cell_diameter_px: float | None
    val_scores: np.ndarray  # float model, on the validation views the threshold came from
    quality: QualityLimits | None = None


def features_of(model, images: np.ndarray, batch: int = 64) -> list[np.ndarray]:
    """The OOD features (head, field) of a Keras model with feature outputs (keras_graph.with_features)."""
    return [np.asarray(f) for f in model.predict(images, batch_size=batch, verbose=0)[1:]]


def cell_diameter(images: np.ndarray) -> float | None:
    """Median red-cell diameter over the images that give a reading (model pixels)."""
    readings = [r.diameter_px for r in map(measure_cells, images) if r.diameter_px is not None]
    return round(float(np.median(readings)), 3) if len(readings) >= max(3, len(images) // 10) else None


def fit_stain(
    train: np.ndarray, train_labels: np.ndarray, val: np.ndarray, val_labels: np.ndarray, classes: int
) -> StainStats | None:
    """Each class's stain strength in its training fields, in the leukocytes and in the red cells, and
    its limits: the class's own spread out to the validation part's 99% quantile of |z|, times the
    suite's severity-3 stain (1.42×), which the model must read (a frame stained beyond it is
    referred, not guessed). One-sided: a paler stain reads like exposure and contrast, which the gate
    and the features judge. None when the images show too few leukocytes to fit it; the red cells'
    limits are left out when too few show red cells."""
    readings = [np.array([[np.nan if v is None else v for v in stain_strength(img)] for img in images]).reshape(-1, 2)
                for images in (train, val)]
    leukocytes = _class_limits(readings[0][:, 0], train_labels, readings[1][:, 0], val_labels, classes)
    if leukocytes is None:
        return None
    red = _class_limits(readings[0][:, 1], train_labels, readings[1][:, 1], val_labels, classes)
    note = (
        f"per class: the mean and sd of {leukocytes.fields} training fields, out to z {leukocytes.spread:.2f} (99% of "
        f"{leukocytes.seen} validation fields), times {_envelope():.2f} (the suite's severity-3 stain)"
    )
    extra = {}
    if red is not None:
        extra = {
            "red_log_limit": _rounded(red.limits),
            "red_log_mean": _rounded(red.means),
            "red_log_sd": _rounded(red.sds),
        }
        note += f"; red cells likewise ({red.fields} training fields, z {red.spread:.2f})"
    return StainStats(
        log_limit=_rounded(leukocytes.limits), log_mean=_rounded(leukocytes.means), log_sd=_rounded(leukocytes.sds),
        calibration=note, **extra
    )


class _Limits(NamedTuple):
    """One log strength's per-class limits, means and sds, the validation z spread and the counts."""
    limits: np.ndarray
    means: np.ndarray
    sds: np.ndarray
    spread: float
    fields: int
    seen: int


def _envelope() -> float:
    from edgeleuk.degrade import level_of, stain_factor

    return stain_factor(level_of(3))


def _rounded(values) -> tuple[float, ...]:
    return tuple(round(float(x), 5) for x in values)


def _class_limits(
    s: np.ndarray, train_labels: np.ndarray, v: np.ndarray, val_labels: np.ndarray, classes: int
) -> _Limits | None:
    """One log strength's limits per class (None when too few fields give a reading)."""
    known, seen = ~np.isnan(s), ~np.isnan(v)
    if known.sum() < 10 or seen.sum() < 3:
        return None
    pooled_mean, pooled_sd = float(np.mean(s[known])), float(np.std(s[known]))
    means, sds = [], []
    for c in range(classes):
        own = s[known & (train_labels == c)]
        means.append(float(own.mean()) if len(own) >= 3 else pooled_mean)
        sds.append(max(float(own.std()), 0.02) if len(own) >= 3 else max(pooled_sd, 0.02))
    means_a, sds_a = np.array(means), np.array(sds)
    z = np.abs(v[seen] - means_a[val_labels[seen]]) / sds_a[val_labels[seen]]
    spread = float(np.quantile(z, 0.99))
    return _Limits(
        means_a + spread * sds_a + np.log(_envelope()), means_a, sds_a, spread, int(known.sum()), int(seen.sum())
    )


def fit_domain(model, parts: Parts, target_flagged: float = TARGET_FLAGGED) -> Domain:
    """The OOD statistics (features, and the stain when the validation labels are given), the red-cell
    ruler and the gate's limits, from the training and validation images."""
    train, train_labels, val, classes, val_labels = (
        parts.train,
        parts.train_labels,
        parts.val,
        parts.classes,
        parts.val_labels,
    )
    from edgeleuk.keras_graph import FEATURE_NAMES

    views = dihedral(val)
    val_features = features_of(model, views)
    note = (f"class means and shared covariance of {len(train)} training images in each feature space; thresholds flag "
            f"{target_flagged:.0%} of {len(views)} validation views ({len(val)} images × 8 turns and flips)")
    # fitted on the training images as they are: statistics that also covered the training policy's camera
    # variation flagged fewer noisy and dim frames but 2.3% of the test part and 84-91% of two OOD sets (model card)
    stats = fit_ood(Parts(features_of(model, train), train_labels, val_features, classes), list(FEATURE_NAMES),
                    target_flagged, calibration=note)
    if val_labels is not None:
        stats = dataclasses.replace(stats, stain=fit_stain(train, train_labels, val, val_labels, classes))
    return Domain(stats, cell_diameter(train), OODScorer(stats).score(val_features), quality_limits(train))


def quality_limits(train: np.ndarray) -> QualityLimits:
    """The gate's limits for this model: the leukocyte check from its training images (0, no check,
    when they show no stained cell), the rest the defaults."""
    fractions = np.array([leukocyte_fraction(img) for img in train])
    floor = float(np.quantile(fractions, 0.001))
    return QualityLimits(
        min_leukocyte_fraction=round(floor * LEUKOCYTE_MARGIN, 4),
        calibration=(
            f"min_leukocyte_fraction: {LEUKOCYTE_MARGIN:g} × the 0.1% quantile ({floor:.4f}) of {len(train)} "
            "training images; focus and exposure: the defaults, from the shipped model's robustness suite"
        ),
    )


def ood_agreement(scorer: OODScorer, reference: np.ndarray, features: list[np.ndarray]) -> float:
    """Share of frames where a variant's features give the float model's in/out decision."""
    return float(np.mean(scorer.in_distribution(scorer.score(features)) == scorer.in_distribution(reference)))
