"""Camera degradations and the robustness suite."""

import json

import cv2
import numpy as np
import pytest

from conftest import cli, smear
from edgeleuk.degrade import CONDITIONS, SEVERITIES, degrade, random_camera

GEOMETRIC = {"rotation_flip"}  # changes pixels a lot at any angle: checked separately


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    base = cv2.cvtColor(cv2.resize(smear("Early", 7), (224, 224)), cv2.COLOR_BGR2RGB).astype(np.float32)
    texture = cv2.GaussianBlur(rng.normal(0, 25, base.shape).astype(np.float32), (0, 0), 1.0)
    return np.clip(base + texture, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("condition", list(CONDITIONS))
def test_deterministic_and_keeps_shape_and_dtype(image, condition):
    a = degrade(image, condition, 3, seed=5)
    b = degrade(image, condition, 3, seed=5)
    assert a.shape == image.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)


@pytest.mark.parametrize("condition", [c for c in CONDITIONS if c not in GEOMETRIC])
def test_more_severity_more_change(image, condition):
    change = [np.abs(degrade(image, condition, s, seed=1).astype(float) - image).mean() for s in SEVERITIES]
    assert change[0] > 0
    assert all(b >= a * 0.98 for a, b in zip(change, change[1:])), change
    assert change[-1] > change[0]


def test_rotation_changes_the_image(image):
    assert np.abs(degrade(image, "rotation_flip", 1, seed=1).astype(float) - image).mean() > 1


def test_unknown_condition_and_severity(image):
    from edgeleuk.errors import UserError

    with pytest.raises(UserError, match="expected one of"):
        degrade(image, "fog", 3)
    with pytest.raises(UserError, match="severity"):
        degrade(image, "jpeg", 9)


def test_training_policy_varies_and_is_seeded(image):
    a = [random_camera(image, np.random.default_rng(i)) for i in range(10)]
    b = [random_camera(image, np.random.default_rng(i)) for i in range(10)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert len({x.tobytes() for x in a}) > 3


@pytest.mark.host
def test_robustness_suite_end_to_end(converted, dataset, tmp_path):
    out = tmp_path / "rob"
    proc = cli(
        "evaluate", str(converted), "--data", str(dataset), "--split", str(converted.parent.parent / "missing.json"),
        "--robustness", "--out", str(out)
    )
    assert proc.returncode == 1 and "does not exist" in proc.stderr
    proc = cli("evaluate", str(converted), "--data", str(dataset), "--robustness", "--severities", "1,3",
               "--conditions", "jpeg,focus_blur", "--out", str(out), check_rc=0)
    results = json.loads((out / "robustness.json").read_text())
    assert set(results["conditions"]) == {"jpeg", "focus_blur"}
    assert set(results["conditions"]["jpeg"]) == {"1", "3"}
    assert 0 <= results["moderate"]["mean_accuracy"] <= 1
    assert (out / "robustness.png").is_file() and (out / "metrics.json").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"accuracy", "accuracy_ci95", "macro_f1", "ece", "per_class", "confusion"} <= set(metrics)


def test_gate_calibration_cuts_where_the_model_fails_not_where_the_tail_average_does():
    """Brightness bands like the shipped model's: 99% correct up to 240, 97% to 246, 80% beyond, and
    a few saturated frames at the very end that happen to be right. The cut belongs at 246: a rule on
    the whole tail alone stops near 240 (the tail mixes 97% and 80%); a rule on bands alone would stop
    at the saturated frames, or at a cluster of hard images in the middle (planted at 200)."""
    from edgeleuk.evaluate.robustness import calibrate_gate

    rng = np.random.default_rng(0)
    bands = [(150, 240, 20000, 0.99), (199.5, 200.5, 150, 0.70), (240, 246, 3000, 0.97), (246, 252, 2200, 0.80),
             (254, 255, 150, 1.0)]
    rows = []
    for lo, hi, n, acc in bands:
        brightness = rng.uniform(lo, hi, n)
        correct = rng.random(n) < acc
        rows.append(np.column_stack([np.full(n, 300.0), brightness, np.zeros(n), np.zeros(n), correct]))
    frames = np.concatenate(rows)
    clean = np.column_stack([np.full(100, 300.0), rng.uniform(180, 235, 100), np.zeros(100), np.zeros(100)])
    gate = calibrate_gate(frames, clean)
    assert 245 <= gate["max_brightness"] <= 247, gate
    assert "frames beyond it" in gate["basis"]["max_brightness"]
    assert gate["basis"]["min_focus"].startswith("edge of the range")  # nothing fails on the low side


@pytest.mark.host
def test_evaluate_takes_a_folder_of_new_images_whole_and_refuses_a_mixed_one(trained, dataset, tmp_path):
    """A lab's own labelled folder: none of it is in the model's split, so all of it is evaluated
    (no --split needed); a folder mixing split images with new ones is refused with the reason."""
    import shutil

    from conftest import LABELS

    own = tmp_path / "own"
    for label in LABELS:
        (own / label).mkdir(parents=True)
        for i in range(10):  # evaluate needs 10 a class
            cv2.imwrite(str(own / label / f"lab-{i}.jpg"), smear(label, 500 + i))
    proc = cli("evaluate", str(trained / "model.keras"), "--data", str(own), "--out", str(tmp_path / "ev"), check_rc=0)
    assert f"all 40 images of {own} (none is in the model's split.json: new to it)" in proc.stdout, proc.stdout
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["n"] == 40
    mixed = tmp_path / "mixed"
    shutil.copytree(dataset, mixed)
    cv2.imwrite(str(mixed / "Pro" / "lab-new.jpg"), smear("Pro", 900))
    proc = cli(
        "evaluate", str(trained / "model.keras"), "--data", str(mixed), "--out", str(tmp_path / "ev2"), check_rc=1
    )
    assert "1 of the 121 images" in proc.stderr and "pass --split" in proc.stderr and "Traceback" not in proc.stderr
