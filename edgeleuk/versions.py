"""The one lookup of installed package versions (doctor, manifests, benchmarks, backends). Stdlib only."""

from __future__ import annotations

import importlib.metadata as md


def version_of(*dists: str) -> str | None:
    """The version of the first of these distributions that is installed; None when none is."""
    for dist in dists:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            continue
    return None
