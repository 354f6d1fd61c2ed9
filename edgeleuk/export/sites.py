"""`convert` for a model adapted to a new site (`train --init-from`, perhaps with `--rehearse`).

- With the first site's data (`--rehearse DIR`, or the folder the run rehearsed), the calibration,
  the out-of-distribution statistics and the gate limits are fitted on both sites' training parts
  and the thresholds on both validation parts: both sites are in distribution, strangers still are
  not. The first site's test part is scored for every variant (`first_site_accuracy`).
- A variant is published only when the new site's labelled test part shows the claim: the exact
  lower bound of its accuracy on every field (refused or not: a refusal must never hide a confident
  wrong class) reaches `--claim`, and the share it answers reaches the claim's `min_answered`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from edgeleuk.errors import UserError
from edgeleuk.export.images import Images, load_images
from edgeleuk.manifest import Manifest
from edgeleuk.stats import Claim, clopper_pearson


def adapted(manifest: Manifest | None) -> bool:
    return bool(manifest and manifest.model.get("initialised_from"))


def first_site_folder(config, manifest: Manifest | None) -> tuple[str | None, Path | None]:
    """The first site's data folder and split: --rehearse, or what the run rehearsed (when it is here)."""
    recorded = (manifest.provenance.get("rehearsal") or {}) if manifest else {}
    data = config.rehearse or recorded.get("data")
    if data is None:
        return None, None
    if not Path(data).is_dir():
        if config.rehearse:
            raise UserError(f"--rehearse {data}: no such folder")
        print(
            f"the first site's data ({data}, which the model rehearsed) is not here: its statistics are not refitted; "
            "pass --rehearse DIR"
        )
        return None, None
    return data, Path(config.model).parent / recorded.get("split", "rehearse_split.json") if config.model else None


def with_first_site(images: Images, config, manifest: Manifest | None, load_args: tuple) -> Images:
    """`images` (the new site) joined by the first site's training and validation parts; its test part
    rides along as `first_test`. `load_args`: load_images' arguments after the config."""
    data, split = first_site_folder(config, manifest)
    if data is None or images.train is None:
        return images
    if split is None or not split.is_file():
        raise UserError(
            f"the first site's split ({split}) is missing beside the model; it names which of {data}'s images "
            "the model trained on"
        )
    first = load_images(dataclasses.replace(config, data=data, split=str(split)), *load_args)
    print(
        f"first site {data}: {len(first.train)} training, {len(first.val)} validation and {len(first.test)} test "
        "images join the fit (calibration, out-of-distribution statistics, gate limits)"
    )
    return dataclasses.replace(
        images,
        calibration=np.concatenate([images.calibration, first.calibration]),
        train=np.concatenate([images.train, first.train]),
        train_labels=np.concatenate([images.train_labels, first.train_labels]),
        val=np.concatenate([images.val, first.val]),
        val_labels=np.concatenate([images.val_labels, first.val_labels]),
        first_test=first.test,
        first_test_labels=first.test_labels,
        note=f"{images.note}; first site {data}: its training and validation parts joined the fit, its "
        f"{len(first.test)} test images are scored as first_site_accuracy",
    )


def first_site_row(probs: np.ndarray | None, images: Images) -> dict[str, Any]:
    if probs is None or images.first_test_labels is None:
        return {}
    return {"first_site_accuracy": float(np.mean(probs.argmax(1) == images.first_test_labels)),
            "first_site_n": int(len(probs))}


def site_failures(rows: list[dict[str, Any]], claim: Claim) -> dict[str, str]:
    """Variants of an adapted model whose new-site test part does not show the claim, and why."""
    failed = {}
    for r in rows:
        if r["variant"] == "keras" or r.get("accuracy") is None:
            continue
        n, k = r["n"], round(r["accuracy"] * r["n"])
        low = clopper_pearson(k, n)[0]
        flagged = r.get("ood_flagged_test")
        if low < claim.accuracy:
            failed[r["variant"]] = (
                f"shows {k}/{n} right on the new site's test fields (every field, refused or not; 95% "
                f"lower bound {low:.1%}), under the claim {claim.accuracy:g}"
            )
        elif flagged is not None and 1.0 - flagged < claim.min_answered:
            failed[r["variant"]] = (
                f"answers {1 - flagged:.1%} of the new site's test fields (the rest out of distribution), "
                f"under {claim.min_answered:.0%}"
            )
    return failed
