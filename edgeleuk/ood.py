"""Is a frame like the training data? An in-distribution score on the model's own features.

The softmax is as confident on a stranger's smear as on the test images, so the score looks at the
features instead: in each of two spaces, the distance to the nearest class centre in units of the
training features' own spread (class-conditional Mahalanobis distance, one shared covariance),
divided by √dims. The two spaces are the head's 128 features (what the classifier decides on) and
block 12's pooled 96 channels (the field: stain, texture, cell size, which the head was trained to
ignore). Fitting needs numpy only; the runtime computes it per frame from the statistics in the
manifest: TFLite and ONNX files converted by edgeleuk carry it as float layers after their features
(export/score_layers.py, checked against this code at conversion); other files are scored here. Beside them, the
stain's strength against the
named class's limits, in its leukocytes and its red cells (`stain_score`): a smear stained far more
strongly than training is referred.
`edgeleuk evaluate --ood` compares it with other scores (max softmax, energy, k-nearest neighbours,
a Gaussian mixture) on the same data; benchmarks/README.md says why this one ships.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any

import numpy as np

from edgeleuk.ood_stats import TARGET_FLAGGED, OODComponent, OODStats

# a file's own score output: this, "_", and the fingerprint of the statistics it was built from
SCORE_OUTPUT = "ood_score"


def fingerprint(stats: OODStats) -> str:
    """12 hex digits of the sha256 of what the score reads (the components: centres, whitening,
    thresholds), as the manifest writes them."""
    # not dataclasses.asdict: its deep copy of the matrices is slow, and only the values matter
    fields = [{f.name: getattr(c, f.name) for f in dataclasses.fields(c)} for c in stats.components]
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def score_output_name(stats: OODStats) -> str:
    return f"{SCORE_OUTPUT}_{fingerprint(stats)}"


@dataclasses.dataclass(frozen=True)
class Parts:
    """What a fit reads: the training part with its labels and the validation part (images, or one
    feature array per space); the test part never."""

    train: Any
    train_labels: np.ndarray
    val: Any
    classes: int
    val_labels: np.ndarray | None = None


class _Space:
    """One component as arrays: distances to the nearest whitened class centre, fast."""

    def __init__(self, component: OODComponent):
        self.whitening = np.asarray(component.whitening, dtype=np.float32)
        self.centres = np.asarray(component.means, dtype=np.float32) @ self.whitening  # classes × dims, whitened
        self.centre_norms = (self.centres ** 2).sum(1)
        self.scale = np.float32(1.0 / np.sqrt(component.dims))
        self.threshold = component.threshold

    def distance(self, features: np.ndarray) -> np.ndarray:
        """(N, dims) → (N,) distance to the nearest centre over √dims: about 1 in distribution."""
        z = np.atleast_2d(np.asarray(features, dtype=np.float32)) @ self.whitening
        d2 = (z * z).sum(1)[:, None] - 2.0 * z @ self.centres.T + self.centre_norms[None, :]
        return np.sqrt(np.maximum(d2.min(1), 0.0)) * self.scale


class OODScorer:
    """The statistics as arrays, ready to score frames fast (the manifest holds them as lists).

    The score is the largest of the components' distances, each divided by its own threshold: a
    frame with a score above 1 is out of distribution in at least one feature space."""

    threshold = 1.0

    def __init__(self, stats: OODStats):
        self.stats = stats
        self.spaces = [_Space(c) for c in stats.components]
        # few numpy calls per frame, since each one is slow with caches cold after inference: the spaces
        # side by side, whitened by one block-diagonal matrix (one product instead of one per space),
        # then every class's centres at once and one matrix summing each
        # space's squared differences, already divided by its dims and squared threshold (so the score
        # is one sqrt of a max of mins)
        dims = [c.dims for c in stats.components]
        total, start = sum(dims), np.cumsum([0] + dims)
        self._whitening = np.zeros((total, total), np.float32)
        self._sum = np.zeros((total, len(dims)), np.float32)
        for k, (c, s) in enumerate(zip(stats.components, self.spaces)):
            self._whitening[start[k]:start[k + 1], start[k]:start[k + 1]] = s.whitening
            self._sum[start[k]:start[k + 1], k] = 1.0 / (c.dims * c.threshold ** 2)
        self._centres = np.concatenate([s.centres for s in self.spaces], axis=1)  # classes × total
        stain = stats.stain  # the limits as Python floats: math.exp on a float is cheaper than numpy on a scalar
        self._stain_limit = None if stain is None else tuple(float(v) for v in stain.log_limit)
        self._red_limit = (
            None if stain is None or stain.red_log_limit is None else tuple(float(v) for v in stain.red_log_limit)
        )

    @property
    def matrices(self) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """What `score` computes with, for the files' own layers: each space's whitening (dims × dims,
        the blocks of `score`'s block-diagonal one), the whitened class centres (classes × total) and
        the per-space sums (total × spaces)."""
        return [s.whitening for s in self.spaces], self._centres, self._sum

    @property
    def judges_stain(self) -> bool:
        return self._stain_limit is not None

    def stain_score(self, strength: float | None, top: int, red: float | None = None) -> float:
        """The stain's strength over the limit of the class the model names, in the leukocytes and in
        the red cells, whichever is further (above 1: stained more strongly than that class's
        training fields and the suite's severity 3); 0 when not judged."""
        score = 0.0
        if self._stain_limit is not None and strength is not None:
            score = math.exp(strength - self._stain_limit[top])
        if self._red_limit is not None and red is not None:
            score = max(score, math.exp(red - self._red_limit[top]))
        return score

    def distances(self, features: list[np.ndarray]) -> list[np.ndarray]:
        if len(features) != len(self.spaces):
            raise ValueError(f"{len(features)} feature arrays for {len(self.spaces)} components")
        return [space.distance(f) for space, f in zip(self.spaces, features)]

    def score(self, features: list[np.ndarray]) -> np.ndarray:
        """One (N, dims) array per component, in the manifest's order → (N,) scores (1: the threshold)."""
        if len(features) != len(self.spaces):
            raise ValueError(f"{len(features)} feature arrays for {len(self.spaces)} components")
        z = np.concatenate(features, axis=1) @ self._whitening
        # N × classes × spaces, each already over dims × threshold²
        d2 = np.square(z[:, None, :] - self._centres) @ self._sum
        return np.sqrt(d2.min(1).max(1))

    def in_distribution(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) <= self.threshold


def fit_gaussians(
    features: np.ndarray, labels: np.ndarray, classes: int, shrinkage: float | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """Class means and the whitening matrix of the shared (within-class) covariance.

    The covariance is shrunk towards its mean variance (Ledoit-Wolf's estimate of how much, unless
    given): ReLU features have dead and near-constant units whose raw variance would make the inverse
    blow up, and a frame unlike the training data lights exactly those up.
    """
    features = np.asarray(features, dtype=np.float64)
    means = np.stack(
        [features[labels == c].mean(0) if np.any(labels == c) else features.mean(0) for c in range(classes)]
    )
    centred = features - means[labels]
    n, dims = centred.shape
    cov = centred.T @ centred / max(n - 1, 1)
    mu = np.trace(cov) / dims
    if shrinkage is None:
        shrinkage = _ledoit_wolf(centred, cov, mu)
    shrunk = (1 - shrinkage) * cov + shrinkage * mu * np.eye(dims)
    evals, evecs = np.linalg.eigh(shrunk)
    whitening = evecs / np.sqrt(np.maximum(evals, 1e-12 * evals.max()))[None, :]  # W Wᵀ = Σ⁻¹
    return means, whitening, float(shrinkage)


def _ledoit_wolf(centred: np.ndarray, cov: np.ndarray, mu: float) -> float:
    """Ledoit-Wolf shrinkage towards mu·I: Σ‖xxᵀ − S‖² expanded as Σ‖x‖⁴ − 2Σ xᵀSx + n‖S‖², no n×d×d array."""
    n = len(centred)
    delta = ((cov - mu * np.eye(len(cov))) ** 2).sum()
    norms = (centred ** 2).sum(1)
    beta = ((norms ** 2).sum() - 2.0 * np.einsum("ni,ij,nj->", centred, cov, centred) + n * (cov ** 2).sum()) / n ** 2
    return float(np.clip(beta / max(delta, 1e-12), 0.0, 1.0))


def calibrate_thresholds(distances: list[np.ndarray], target_flagged: float = TARGET_FLAGGED) -> list[float]:
    """Per-component thresholds at one common quantile, chosen so that `target_flagged` of the
    in-distribution (validation) frames fail at least one of them."""
    distances = [np.asarray(d, dtype=np.float64) for d in distances]

    def thresholds(q: float) -> list[float]:
        return [float(np.quantile(d, 1.0 - q)) for d in distances]

    def flagged(q: float) -> float:
        return float(np.mean(np.any([d > t for d, t in zip(distances, thresholds(q))], axis=0)))

    low, high = 0.0, target_flagged
    for _ in range(40):  # bisection: flagged(q) grows with q
        mid = (low + high) / 2
        low, high = (mid, high) if flagged(mid) <= target_flagged else (low, mid)
    return thresholds(low)


def fit_ood(
    features: Parts, names: list[str], target_flagged: float = TARGET_FLAGGED, calibration: str = ""
) -> OODStats:
    """Statistics from the training part, thresholds from the validation part (never the test part);
    `features.train` and `.val` hold one array per feature space, in the order of `names`."""
    train_features, train_labels, val_features, classes = (
        features.train,
        features.train_labels,
        features.val,
        features.classes,
    )
    drafts = []
    for name, train in zip(names, train_features):
        means, whitening, shrinkage = fit_gaussians(train, train_labels, classes)
        drafts.append(OODComponent(features=name, means=_rows(means), whitening=_rows(whitening), threshold=1.0,
                                   shrinkage=round(shrinkage, 6)))
    distances = [_Space(c).distance(v) for c, v in zip(drafts, val_features)]
    limits = calibrate_thresholds(distances, target_flagged)
    components = tuple(dataclasses.replace(c, threshold=round(t, 6)) for c, t in zip(drafts, limits))
    return OODStats(components=components, target_flagged=target_flagged, calibration=calibration)


def _rows(matrix: np.ndarray) -> tuple[tuple[float, ...], ...]:
    # 6 digits: 1e-6, far below the features' own noise
    return tuple(tuple(float(f"{v:.6g}") for v in row) for row in np.asarray(matrix))
