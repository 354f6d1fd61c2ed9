"""Is a frame like the training data? An in-distribution score on the model's own head features.

The softmax is as confident on a stranger's smear as on the test images, so the score looks at the
128 features before it instead: the distance to the nearest class centre, in units of the training
features' own spread (class-conditional Mahalanobis distance, one shared covariance), divided by
√dims so that a typical in-distribution frame scores about 1. Fitting needs numpy only; the runtime
computes it per frame from the statistics in the manifest (a matrix product of 128×128, a few µs).
`edgeleuk evaluate --ood` compares it with other scores (max softmax, energy, k-nearest neighbours,
a Gaussian mixture) on the same data; see the model card for why this one ships.
"""

from __future__ import annotations

import numpy as np

from edgeleuk.manifest import TARGET_FLAGGED, OODStats


class OODScorer:
    """The statistics as arrays, ready to score frames fast (the manifest holds them as lists)."""

    def __init__(self, stats: OODStats):
        self.stats = stats
        self.whitening = np.asarray(stats.whitening, dtype=np.float32)
        self.centres = np.asarray(stats.means, dtype=np.float32) @ self.whitening  # classes × dims, whitened
        self.centre_norms = (self.centres ** 2).sum(1)
        self.scale = 1.0 / np.sqrt(stats.dims)
        self.threshold = stats.threshold

    def score(self, features: np.ndarray) -> np.ndarray:
        """(N, dims) or (dims,) features → (N,) scores; about 1 in distribution, larger farther away."""
        z = np.atleast_2d(np.asarray(features, dtype=np.float32)) @ self.whitening
        d2 = (z ** 2).sum(1)[:, None] - 2.0 * z @ self.centres.T + self.centre_norms[None, :]
        return np.sqrt(np.maximum(d2.min(1), 0.0)) * self.scale

    def in_distribution(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) <= self.threshold


def fit_gaussians(features: np.ndarray, labels: np.ndarray, classes: int, shrinkage: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Class means and the whitening matrix of the shared (within-class) covariance.

    The covariance is shrunk towards its mean variance (Ledoit-Wolf's estimate of how much, unless
    given): ReLU features have dead and near-constant units whose raw variance would make the inverse
    blow up, and a frame unlike the training data lights exactly those up.
    """
    features = np.asarray(features, dtype=np.float64)
    means = np.stack([features[labels == c].mean(0) if np.any(labels == c) else features.mean(0) for c in range(classes)])
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
    n = len(centred)
    delta = ((cov - mu * np.eye(len(cov))) ** 2).sum()
    beta = sum(((np.outer(x, x) - cov) ** 2).sum() for x in centred) / n ** 2
    return float(np.clip(beta / max(delta, 1e-12), 0.0, 1.0))


def calibrate_threshold(scores: np.ndarray, target_flagged: float = TARGET_FLAGGED) -> float:
    """The score above which `target_flagged` of in-distribution (validation) frames lie."""
    return float(np.quantile(np.asarray(scores, dtype=np.float64), 1.0 - target_flagged))


def fit_ood(train_features: np.ndarray, train_labels: np.ndarray, val_features: np.ndarray, classes: int,
            target_flagged: float = TARGET_FLAGGED, calibration: str = "") -> OODStats:
    """Statistics from the training part, the threshold from the validation part (never the test part)."""
    means, whitening, shrinkage = fit_gaussians(train_features, train_labels, classes)
    draft = OODStats(means=_rows(means), whitening=_rows(whitening), threshold=1.0, shrinkage=round(shrinkage, 6))
    threshold = calibrate_threshold(OODScorer(draft).score(val_features), target_flagged)
    return OODStats(means=draft.means, whitening=draft.whitening, threshold=round(threshold, 6),
                    target_flagged=target_flagged, shrinkage=draft.shrinkage, calibration=calibration)


def _rows(matrix: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(f"{v:.6g}") for v in row) for row in np.asarray(matrix))  # 6 digits: 1e-6, far below the features' own noise
