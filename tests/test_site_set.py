"""Building a site's labelled set while scanning: `run --save-frames DIR --label CLASS` and the
live view's "Save this field as <class>" buttons write DIR/<class>/<sample>/ with sidecars, which
`validate` (and `train`) read as they are."""

import json
from pathlib import Path

import cv2
import numpy as np

from conftest import cli, smear


def _slide(root: Path, label: str, first: int, n: int = 4) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(first, first + n):
        cv2.imwrite(str(root / f"field_{i:03d}.png"), cv2.resize(smear(label, i), (224, 224)))
    return root


def test_labelled_scans_become_a_site_set_that_validate_reads(converted, tmp_path):
    site = tmp_path / "site"
    for label, sample, first in (("Pre", "patient 7", 300), ("Pro", "patient 8", 400)):
        slide = _slide(tmp_path / "slides" / sample, label, first)
        proc = cli("run", "--model", str(converted), "--source", str(slide), "--min-focus", "0", "--quiet",
                   "--save-frames", str(site), "--label", label, "--sample", sample, check_rc=0)
        assert f"every usable frame as {label} to {site / label / sample}/" in proc.stdout
    images = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.jpg"))
    assert images == [f"Pre/patient 7/field_{i:03d}-{k:06d}.jpg" for k, i in enumerate(range(300, 304))] + \
                     [f"Pro/patient 8/field_{i:03d}-{k:06d}.jpg" for k, i in enumerate(range(400, 404))]
    note = json.loads((site / "Pre" / "patient 7" / "field_300-000000.json").read_text())
    manifest = json.loads((converted / "manifest.json").read_text())
    assert note["label"] == "Pre" and note["sample"] == "patient 7" and note["frame"]["quality"]["usable"]
    assert note["model"]["sha256"] in {v["sha256"] for v in manifest["variants"]} and "class" in note["frame"]
    saved = cv2.imread(str(site / images[0]))
    assert saved.shape == (224, 224, 3) and not (site / "Pre" / "patient 7" / ".field_300-000000.tmp.jpg").exists()

    proc = cli("validate", str(converted), "--data", str(site), "--claim", "0.5", "--out", str(tmp_path / "v"))
    assert proc.returncode in (0, 3), proc.stderr
    doc = json.loads((tmp_path / "v" / "validation.json").read_text())
    assert doc["overall"]["n"] == 8 and sorted(r["sample"] for r in doc["samples"]["rows"]) == [
        "patient 7", "patient 8"
    ]


def test_labels_and_samples_that_are_not_one_folder_are_refused(converted, tmp_path):
    slide = _slide(tmp_path / "slide", "Pre", 300, n=1)
    for flag, value in (("--label", "../Pre"), ("--sample", "a/b"), ("--label", ".hidden")):
        proc = cli("run", "--model", str(converted), "--source", str(slide), "--save-frames", str(tmp_path / "site"),
                   "--label", "Pre", flag, value)
        assert proc.returncode == 2 and "expected a folder name" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("run", "--model", str(converted), "--source", str(slide), "--label", "Pre")
    assert proc.returncode == 2 and "add --save-frames DIR" in proc.stderr
    assert not (tmp_path / "site").exists() or not any((tmp_path / "site").rglob("*.jpg"))


def test_a_file_name_that_is_not_utf8_and_a_path_too_long_are_saved_or_refused_cleanly(converted, tmp_path):
    import os

    slide = tmp_path / "stick"
    slide.mkdir()
    ok, data = cv2.imencode(".jpg", cv2.resize(smear("Pre", 5), (224, 224)))
    with open(os.path.join(os.fsencode(slide), b"Pr\xe4parat.jpg"), "wb") as fh:  # a Latin-1 name, as from a USB stick
        fh.write(data.tobytes())
    site = tmp_path / "site"
    for extra in ((), ("--label", "Pre")):  # the flagged frames (all, at --min-confidence 1) and the site set
        proc = cli(
            "run", "--model", str(converted), "--source", str(slide), "--min-focus", "0", "--min-confidence", "1",
            "--quiet", "--save-frames", str(site), *extra
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list(site.glob("*.jpg"))) == 1 and len(list((site / "Pre").rglob("*.jpg"))) == 1
    assert all(cv2.imdecode(np.fromfile(p, np.uint8), cv2.IMREAD_COLOR) is not None for p in site.rglob("*.jpg"))

    proc = cli("run", "--model", str(converted), "--source", str(slide), "--save-frames", str(tmp_path / ("a" * 5533)))
    assert proc.returncode == 1 and "File name too long" in proc.stderr and "Traceback" not in proc.stderr
