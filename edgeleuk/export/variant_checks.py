"""One converted variant checked in the runtime that will run it: parity with the Keras model, the
first site of an adapted model, its out-of-distribution score, and another CPU family's int8 kernels."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from edgeleuk.errors import UserError
from edgeleuk.export import sites
from edgeleuk.export.conversion import Conversion
from edgeleuk.export.images import Images
from edgeleuk.export.recipes import QuantizationConfig


def variant_row(conv: Conversion, cfg: QuantizationConfig, path: Path, classifier, seconds: float) -> dict[str, Any]:
    """One variant's report row: parity with Keras, the first site, the OOD score, the other CPUs' kernels."""
    from edgeleuk.export.parity import parity
    from edgeleuk.runtime.classifier import predict_all

    images = conv.images
    row: dict[str, Any] = {"variant": cfg.name, "size_bytes": path.stat().st_size, "conversion_seconds": seconds}
    if images.test is not None:
        row.update(parity(predict_all(classifier, images.test), conv.keras_probs, images.test_labels))
    if images.first_test is not None:
        row.update(sites.first_site_row(predict_all(classifier, images.first_test), images))
    row.update(ood_checks(conv.domain, classifier, images))
    if cfg.format == "onnx" and cfg.precision == "int8" and images.kernel_sample is not None:
        row.update(kernel_checks(path, images.kernel_sample))
    return row


def ood_checks(domain, classifier, images: Images) -> dict[str, Any]:
    """The variant's own features against the float model's decisions (validation views and test part)."""
    from edgeleuk.export.domain import ood_agreement
    from edgeleuk.ood import OODScorer
    from edgeleuk.preprocess import dihedral
    from edgeleuk.runtime.classifier import Classifier, infer_all

    if domain is None or not classifier.features_indices:
        return {}
    scorer = OODScorer(domain.ood)
    views = dihedral(images.val)
    features = infer_all(classifier, views)[1]
    checks = {"ood_agreement_val": ood_agreement(scorer, domain.val_scores, features)}
    judged = Classifier(
        backend=classifier.backend, labels=classifier.labels, spec=classifier.spec, path=classifier.path, ood=scorer
    )
    if judged.score_index is not None:  # the file's own score layers against numpy on the same features
        own = np.concatenate([judged.infer_judged(views[i:i + 32])[1] for i in range(0, len(views), 32)])
        numpy_scores = scorer.score(features)
        diff = float(np.max(np.abs(own - numpy_scores) / np.maximum(numpy_scores, 1e-6)))
        if not diff <= 1e-4:
            raise UserError(
                f"{classifier.path.name}: its score layers differ from the numpy score by {diff:.2g} (relative); "
                "not published"
            )
        checks["score_layers_max_diff"] = diff
    if images.test is not None:
        scores = scorer.score(infer_all(classifier, images.test)[1])
        checks["ood_flagged_test"] = float(np.mean(~scorer.in_distribution(scores)))
    return checks


def kernel_checks(path: Path, sample: np.ndarray) -> dict[str, Any]:
    """The ONNX int8 file under the other family of CPU int8 kernels (export/kernel_check.py)."""
    from edgeleuk.cpu import EMULATED_MODEL, read_cpu
    from edgeleuk.export.kernel_check import check_file, emulator, other_family

    family = other_family(read_cpu().int8_family)
    if emulator() is not None:
        print(
            f"  checking {path.name} under the {family} int8 kernels (emulated {EMULATED_MODEL[family]}, {len(sample)} "
            "calibration images) …",
            flush=True,
        )
    try:
        check = check_file(path, sample)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(
            f"{path.name}: the emulated kernel check could not run ({exc}); nothing was published"
        ) from None
    if check.skipped:
        print(
            f"  warning: {path.name} was checked under this CPU's {check.checked[0]} int8 kernels only: "
            f"{check.skipped}. `edgeleuk doctor` warns on CPUs of another family."
        )
    row: dict[str, Any] = {"kernels_checked": list(check.checked), "kernel_images": check.images}
    if check.agreement is not None:
        row.update(kernel_agreement=check.agreement, kernel_max_prob_diff=check.max_prob_diff)
    if check.failed:
        row["kernel_failed"] = check.failed
    return row
