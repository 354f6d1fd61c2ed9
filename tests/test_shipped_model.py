"""Regression guard: the packaged default model on the real images of ../shared (skipped without them)."""

import json
from pathlib import Path

import pytest

from conftest import SHARED, cli
from edgeleuk.runtime.classifier import DEFAULT_MODEL_DIR

DATA = SHARED / "data" / "all4"
pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(
        not DATA.is_dir(), reason="../shared/data/all4 (the real ALL images) is not beside this checkout"
    ),
]


@pytest.fixture(scope="module")
def report():
    return json.loads((DEFAULT_MODEL_DIR / "report.json").read_text())


@pytest.mark.host  # the evaluate stage (scikit-learn)
def test_packaged_int8_accuracy_on_the_test_part(tmp_path):
    from edgeleuk.evaluate.report import EvalRequest, evaluate

    metrics = evaluate(
        EvalRequest(str(DEFAULT_MODEL_DIR), str(DATA), split=str(DEFAULT_MODEL_DIR / "split.json"), out=str(tmp_path))
    )
    assert metrics["n"] == 566
    assert metrics["accuracy"] >= 0.98 and metrics["macro_f1"] >= 0.975
    samples = metrics["samples"]  # runs of 20 file numbers, each pooled as `run` pools a slide
    assert samples["groups_from"] == "runs of 20 file numbers" and samples["n"] == 30 and samples["right"] == 30


def test_runtime_on_a_folder_equals_the_parity_check(report, tmp_path):
    """`edgeleuk run` over the test images predicts exactly what `convert` measured for tflite-int8."""
    folder = tmp_path / "slides"
    folder.mkdir()
    for i, rel in enumerate(report["evaluated_files"]):
        (folder / f"{i:04d}{Path(rel).suffix}").symlink_to(DATA / rel)
    log = tmp_path / "run.jsonl"
    config = tmp_path / "all-frames.toml"  # classify every frame: no quality gate
    config.write_text("[quality]\nmin_focus = 0\nmin_brightness = 0\nmax_brightness = 255\nmax_bright_fraction = 1.0\n"
                      "max_dark_fraction = 1.0\nmax_scale_error = 1000\n[sample]\nmin_confidence = 0\n")
    cli("run", "--source", str(folder), "--log", str(log), "--quiet", "--config", str(config), check_rc=0)
    frames = [json.loads(x) for x in log.read_text().splitlines() if '"class"' in x and '"event"' not in x]
    row = next(r for r in report["rows"] if r["variant"] == "tflite-int8")
    predicted = [report["labels"].index(f["class"]) for f in frames]
    assert len(predicted) == len(row["predictions"])
    assert predicted == row["predictions"]


def test_packaged_variants_keep_the_keras_accuracy(report):
    rows = {r["variant"]: r for r in report["rows"]}
    for name in ("tflite-int8", "onnx-int8"):
        assert rows["keras"]["accuracy"] - rows[name]["accuracy"] <= 0.005
        assert rows[name]["agreement"] >= 0.99
    assert rows["onnx-fp32"]["agreement"] == 1.0 and rows["onnx-fp32"]["max_prob_diff"] < 1e-3


def test_default_quality_gate_accepts_every_real_image():
    """The gate refuses only frames unlike the data: none of the 2,759 real images (all parts), with
    the defaults and with the packaged model's own limits (its leukocyte check included)."""
    from edgeleuk.preprocess import IMAGE_SUFFIXES, load_image
    from edgeleuk.runtime import load
    from edgeleuk.runtime.quality import assess

    files = sorted(p for p in DATA.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    assert len(files) > 2000
    own = load().quality
    assert own is not None and own.min_leukocyte_fraction > 0
    for limits in (None, own):
        refused = [(p.name, q.reason) for p in files if not (q := assess(load_image(p), limits)).usable]
        assert refused == [], limits


@pytest.mark.host  # the evaluate stage (scikit-learn)
def test_packaged_model_judges_its_own_test_part_and_refuses_strangers():
    """The OOD score and the gates on the real test part, and on five of `evaluate --ood`'s sets."""
    from edgeleuk.dataset import load_arrays, scan
    from edgeleuk.evaluate.ood_report import run_sample
    from edgeleuk.evaluate.ood_sets import build_ood_sets
    from edgeleuk.runtime import load
    from edgeleuk.split import read_split

    clf = load()
    assert clf.ood is not None and clf.cell_diameter_px
    found = scan(DATA)
    split = read_split(DEFAULT_MODEL_DIR / "split.json", found.samples, found.root)
    test, labels = load_arrays(split.part(found.samples, "test"), clf.spec, progress=False)
    for c, label in enumerate(clf.labels):  # each class of the test part, as one sample, keeps its class
        row = run_sample(clf, test[labels == c], label)
        assert row["verdict"] == label, row
    whole = run_sample(clf, test, "test")
    assert whole["out_of_distribution"] <= 0.02 and whole["refused"] <= 0.005
    for name, images in build_ood_sets(
        test[::3], names=["magnified_3x", "shrunk_0.33x", "photos", "empty_field"]
    ).items():
        row = run_sample(clf, images, name)
        assert row["flagged_or_refused"] >= 0.95 and row["verdict"] not in clf.labels, (name, row)
    # other stains on the whole test part (a third of it ranges 94-100%): the slide's stain, read on every 8th frame
    row = run_sample(clf, build_ood_sets(test, names=["other_stain"])["other_stain"], "other_stain")
    assert row["flagged_or_refused"] >= 0.95 and row["verdict"] not in clf.labels, row


def test_site_acceptance_of_the_test_part_passes_the_claim_of_97_percent(tmp_path):
    """The run loop's whole path (gate, ruler, int8 file, OOD score), sample verdicts by file-number runs."""
    proc = cli("validate", "--data", str(DATA), "--claim", "0.97", "--groups", "blocks", "--out", str(tmp_path))
    doc = json.loads((tmp_path / "validation.json").read_text())
    assert proc.returncode == 0 and doc["result"] == "PASS", doc["reasons"]
    assert doc["overall"]["n"] == 566 and doc["overall"]["ci95"][0] >= 0.97
    assert doc["samples"]["wrong"] == 0 and doc["overall"]["answered_share"] >= 0.95
