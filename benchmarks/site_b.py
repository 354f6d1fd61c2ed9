"""Simulate a second laboratory: the ALL dataset as another microscope, stain and camera would show it.

One fixed site, as a real one is: 0.75× the magnification (smaller cells, like the foreign fields
whose red cells measured 0.61× the training size), the stain 1.35× as dense and its hue turned,
another white balance, sensor noise and stronger JPEG. OUT/<class>/ holds every field, and
OUT/split.json keeps each field in its site-A part (groups: the same runs of file numbers), so
`train --data OUT --split OUT/split.json` adapts on site B without ever training on a field whose
site-A twin is in the test part. The images are derived from the dataset: keep OUT out of the
repository.

    python benchmarks/site_b.py --data ../shared/data/all4 --out /tmp/site_b
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from edgeleuk.dataset import scan
from edgeleuk.degrade import rescale, scale_stain
from edgeleuk.groups import BLOCK_SIZE, block_groups
from edgeleuk.preprocess import load_image
from edgeleuk.runtime.classifier import DEFAULT_MODEL_DIR
from edgeleuk.split import Split, read_split, write_split

MAGNIFICATION, STAIN, HUE, GAINS, NOISE, QUALITY = 0.75, 1.35, 8, (1.08, 0.96, 0.88), 4.0, 70


def site_b(rgb: np.ndarray, seed: int) -> np.ndarray:
    """One field as site B's microscope shows it (RGB in, RGB out, same size)."""
    image = rescale(rgb, MAGNIFICATION)
    image = scale_stain(image, STAIN)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + HUE) % 180
    image = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32) * np.array(GAINS, np.float32)
    image += np.random.default_rng(seed).normal(0.0, NOISE, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="the ALL dataset (site A)")
    p.add_argument(
        "--split", default=str(DEFAULT_MODEL_DIR / "split.json"),
        help="the split whose parts are kept (default: the packaged model's)"
    )
    p.add_argument("--out", required=True, help="folder to write site B into (outside the repository)")
    args = p.parse_args(argv)
    found = scan(args.data, check_decode=False)
    split = read_split(args.split, found.samples, found.root)
    out = Path(args.out)
    parts = {}
    for i, s in enumerate(found.samples):
        target = (out / s.path.relative_to(found.root)).with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        field = site_b(load_image(s.path), seed=i)
        cv2.imwrite(str(target), cv2.cvtColor(field, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
        parts[target.relative_to(out)] = split.assignment[s.path]
    site = scan(out, check_decode=False, classes=found.classes)
    assignment = {s.path: parts[s.path.relative_to(site.root)] for s in site.samples}
    write_split(out / "split.json", Split(assignment, split.seed, BLOCK_SIZE), site.samples, site.root,
                block_groups(site.samples, BLOCK_SIZE))
    print(f"wrote {len(site.samples)} site-B fields and their split to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
