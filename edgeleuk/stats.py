"""Exact binomial figures for method verification (CLSI EP12, ISO 15189): the Clopper-Pearson
interval, the claim test on its lower bound, and how many images would show the claim.
Shared by `validate` (site acceptance) and `convert` (an adapted model is published only when its
new site's test part shows the claim). Stdlib only: it runs on the device, where SciPy is not installed."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeleuk.errors import UsageError

ALPHA = 0.05  # a two-sided 95% interval: the claim is shown when its lower bound (one-sided 97.5%) reaches it


def _log_pmf(k: int, n: int, p: float) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)


def _upper_tail(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    terms = [_log_pmf(i, n, p) for i in range(k, n + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def _solve(f, target: float, increasing: bool) -> float:
    lo, hi = 0.0, 1.0
    for _ in range(60):  # 2^-60: far below any figure shown
        mid = (lo + hi) / 2
        if (f(mid) < target) == increasing:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson(k: int, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """The exact (Clopper-Pearson) two-sided 1 - alpha interval for k successes in n trials."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= k <= n:
        raise ValueError(f"k={k} outside 0 … n={n}")
    lower = 0.0 if k == 0 else _solve(lambda p: _upper_tail(k, n, p), alpha / 2, increasing=True)
    upper = 1.0 if k == n else _solve(lambda p: 1.0 - _upper_tail(k + 1, n, p), alpha / 2, increasing=False)
    return lower, upper


def images_needed(k: int, n: int, claim: float, alpha: float = ALPHA, limit: int = 1_000_000) -> int | None:
    """The fewest images at which the observed accuracy k/n (held, rounded down) gives a lower bound
    at or above `claim`; None when no number would (the accuracy is not above the claim)."""
    if n <= 0 or k / n <= claim:
        return None
    rate = k / n

    def shows(m: int) -> bool:
        return clopper_pearson(math.floor(rate * m + 1e-9), m, alpha)[0] >= claim

    if shows(n):
        return n
    hi = n
    while not shows(hi):
        hi *= 2
        if hi > limit:
            return None
    lo = hi // 2
    while hi - lo > 1:  # the bound rises with m but for the rounding of k: the first m found, then checked upward
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if shows(mid) else (mid, hi)
    return hi


@dataclass(frozen=True)
class Claim:
    """What the site asks the model to show."""

    accuracy: float = 0.95  # the lower bound of the exact 95% interval of accuracy on answered fields must reach it
    min_answered: float = 0.9  # the share of fields the model must answer (not refused by the gate or the OOD score)

    def __post_init__(self) -> None:
        for name, value in (("--claim", self.accuracy), ("--min-answered", self.min_answered)):
            if not 0.0 < value < 1.0:
                raise UsageError(f"Received: {name} {value}; expected a share between 0 and 1 (e.g. 0.95)")
