"""Grouped cross-validation: folds that never split a group, and `train --cv` on real images."""

import json
import shutil
from collections import Counter

import pytest

from conftest import SHARED, cli, make_dataset
from edgeleuk.dataset import scan
from edgeleuk.groups import assign_groups
from edgeleuk.metrics import sample_verdicts
from edgeleuk.split import make_folds

DATA = SHARED / "data" / "all4"


def test_each_image_is_tested_once_and_no_group_is_split(tmp_path):
    found = scan(make_dataset(tmp_path, per_class=40))
    group_of = assign_groups(found, "blocks").of
    folds = make_folds(list(found.samples), 4, group_of, seed=3)
    tested = Counter(p for f in folds for p, part in f.assignment.items() if part == "test")
    assert set(tested.values()) == {1} and len(tested) == len(found.samples)
    for fold in folds:
        sides: dict[str, set] = {}
        for s in found.samples:
            sides.setdefault(group_of[s.path], set()).add(fold.assignment[s.path])
        assert all(len(v) == 1 for v in sides.values())
        assert set(fold.assignment.values()) == {"train", "val", "test"}


def test_sample_verdicts_pool_a_groups_fields():
    import numpy as np

    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])
    v = sample_verdicts(probs, np.array([0, 0, 1, 1, 1]), ["a", "a", "b", "b", "b"], ("x", "y"))
    assert v["right"] == 1 and v["n"] == 2 and v["lowest_margin"] == pytest.approx(0.05)
    assert [r["decision"] for r in v["rows"]] == ["x", "refer to a specialist"]  # b pools to 0.667 < 0.8


@pytest.mark.host
@pytest.mark.shared
@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data/all4 (the real ALL images) is not beside this checkout")
def test_train_cv_5_on_a_subset_of_the_real_images(tiny, tmp_path):
    subset = tmp_path / "all4"
    for folder in sorted(p for p in DATA.iterdir() if p.is_dir()):
        (subset / folder.name).mkdir(parents=True)
        for path in sorted(folder.glob("*.jpg"))[::12]:
            shutil.copy(path, subset / folder.name / path.name)
    out = tmp_path / "run"
    proc = cli(
        "train", "--data", str(subset), "--out", str(out), *tiny, "--epochs", "8", "--feature-cache", "off", "--cv",
        "5", check_rc=0
    )
    doc = json.loads((out / "cv.json").read_text())
    assert len(doc["folds"]) == 5 and doc["labels"] == ["Benign", "Early", "Pre", "Pro"]
    assert all(f["samples"] >= 1 and 0 <= f["accuracy"] <= 1 for f in doc["folds"])
    assert "| mean ± sd |" in proc.stdout and (out / "cv.md").is_file()
    assert sum(f["n"] for f in doc["folds"]) == len(json.loads((out / "split.json").read_text())["files"]) - json.loads(
        (out / "metrics.json").read_text())["split"]["test"]


def test_too_few_folds_is_a_usage_error(tmp_path):
    proc = cli("train", "--data", str(tmp_path), "--cv", "2")
    assert proc.returncode == 2 and "expected K ≥ 3 folds" in proc.stderr
