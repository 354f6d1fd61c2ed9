"""The stain-strength check's figures (benchmarks/README.md, "Out of distribution"), with the
shipped statistic (`runtime.quality.stain_strength`, the leukocytes' reading).

Fitted per class on the training part; a frame is flagged when it lies beyond the 99% quantile of
the validation part's z against its own class (its true label here, which the model names for
84-99% of these frames; the device uses the model's answer and a one-sided limit) or, second
figure, against the nearest class. Prints the flagged share of the clean test part, of the test
part with a stain 2.5-3.5× too strong and of the robustness suite's colour conditions at
severities 1, 3 and 5.

    python benchmarks/stain_check.py --data ../shared/data/all4 --split edgeleuk/models/default/split.json
"""

from __future__ import annotations

import argparse

import numpy as np

from edgeleuk.dataset import load_arrays, scan
from edgeleuk.degrade import degrade, scale_stain
from edgeleuk.runtime.quality import stain_strength
from edgeleuk.split import read_split


def strength(image: np.ndarray) -> float:
    """The leukocytes' log stain strength (nan: too few leukocyte pixels)."""
    value = stain_strength(image)[0]
    return float("nan") if value is None else value


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--split", required=True)
    args = p.parse_args()
    found = scan(args.data)
    split = read_split(args.split, found.samples, found.root)
    parts = {name: load_arrays(split.part(found.samples, name), progress=False) for name in ("train", "val", "test")}

    def strengths(images) -> np.ndarray:
        return np.array([strength(i) for i in images])

    train, y_train = strengths(parts["train"][0]), parts["train"][1]
    mean = np.array([np.nanmean(train[y_train == c]) for c in range(4)])
    sd = np.array([np.nanstd(train[y_train == c]) for c in range(4)])
    print("per class: log mean", mean.round(3), "log sd", sd.round(3))

    def own(s, y):
        return np.abs(s - mean[y]) / sd[y]

    def nearest(s, y):
        return np.min(np.abs(s[:, None] - mean[None]) / sd[None], 1)

    val, y_val = strengths(parts["val"][0]), parts["val"][1]
    limits = [np.nanquantile(rule(val, y_val), 0.99) for rule in (own, nearest)]
    print(f"limits (1% of validation): own class z {limits[0]:.2f}, nearest class z {limits[1]:.2f}")
    test, y_test = parts["test"]

    def flagged(images) -> str:
        s = strengths(images)
        return " / ".join(f"{np.nanmean(rule(s, y_test) > t):.3f}" for rule, t in zip((own, nearest), limits))

    print("clean test part:", flagged(test))
    for factor in (2.5, 3.0, 3.5):
        print(f"stain {factor}x too strong:", flagged([scale_stain(i, factor) for i in test]))
    for condition in (
        "stain_intensity",
        "gamma",
        "underexposure",
        "overexposure",
        "contrast",
        "color_cast",
        "vignetting",
    ):
        print(
            condition,
            "  ".join(
                f"s{sev} {flagged([degrade(im, condition, sev, seed=k) for k, im in enumerate(test)])}"
                for sev in (1, 3, 5)
            ),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
