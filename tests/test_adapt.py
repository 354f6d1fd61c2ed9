"""train --init-from: a trained model as the start of another site's model."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import cli, site

pytestmark = pytest.mark.host  # Keras


def _config(trained, classes=None):
    return SimpleNamespace(init_from=str(trained), classes=classes, alpha=0.35, input_size=64)


def test_the_head_rows_follow_the_new_label_order_and_a_new_class_gets_its_own(trained):
    import keras

    from edgeleuk.train.adapt import warm_start

    source = keras.models.load_model(trained / "model.keras", compile=False)
    kernel, bias = source.get_layer("dense_1").get_weights()
    model = warm_start(
        _config(trained, classes="Pro,Pre,Early,Benign,Other"), ("Pro", "Pre", "Early", "Benign", "Other")
    )
    new_kernel, new_bias = model.get_layer("dense_1").get_weights()
    assert np.array_equal(new_kernel[:, :4], kernel[:, ::-1]) and np.array_equal(new_bias[:4], bias[::-1])
    assert not np.array_equal(new_kernel[:, 4], kernel[:, 0])  # Other: a fresh row
    base = model.get_layer("mobilenetv2_base").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(base, source.get_layer("mobilenetv2_base").get_weights()))


def test_other_labels_without_a_mapping_are_one_clear_error(trained, tmp_path):
    data = site(tmp_path / "data", ("healthy", "blast"), patients=6, fields=2)
    proc = cli(
        "train", "--data", str(data), "--out", str(tmp_path / "run"), "--init-from", str(trained), "--feature-cache",
        "off"
    )
    assert (
        proc.returncode == 1 and "are not the model's (Benign, Early, Pre, Pro): blast, healthy are new" in proc.stderr
    )
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


def test_a_run_from_a_trained_model_keeps_its_size_and_records_where_it_started(trained, dataset, tmp_path):
    out = tmp_path / "run"
    proc = cli("train", "--data", str(dataset), "--out", str(out), "--init-from", str(trained), "--epochs", "3",
               "--feature-cache", "off", "--cv", "3", check_rc=0)
    # each fold starts where the final model does
    assert proc.stdout.count("4 of 4 classes keep the model's head rows") == 4
    assert (
        "input, 64 px, and width, 0.35" in proc.stdout and len(json.loads((out / "cv.json").read_text())["folds"]) == 3
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["initialised_from"] == str(trained) and manifest["model"]["input_size"] == 64


def test_every_batch_holds_the_share_of_rehearsed_images_with_their_labels():
    from edgeleuk.train.augment import AugmentedBatches, BatchRecipe

    new = np.full((8, 32, 32, 3), 200, np.uint8), np.zeros(8, np.int64)
    first = np.full((5, 32, 32, 3), 200, np.uint8), np.array([1, 1, 1, 1, 1])
    batches = AugmentedBatches(
        *new, BatchRecipe(batch_size=4, seed=0, policy="basic", classes=2, rehearsal=first, rehearse_share=0.5)
    )
    for index in range(len(batches)):
        images, targets, weights = batches[index]
        assert len(images) == 6 and targets[:4, 0].tolist() == [1] * 4 and targets[4:, 1].tolist() == [1, 1]


@pytest.fixture(scope="module")
def adapted(trained, dataset, tmp_path_factory):
    """A model adapted from `trained` to another site, rehearsing `trained`'s data."""
    root = tmp_path_factory.mktemp("adapted")
    data = site(root / "data", ("Benign", "Early", "Pre", "Pro"), patients=6, fields=2)
    proc = cli(
        "train", "--data", str(data), "--out", str(root / "run"), "--init-from", str(trained), "--rehearse",
        str(dataset), "--epochs", "2", "--fine-tune", "--fine-tune-epochs", "1", "--feature-cache", "off", check_rc=0
    )
    return SimpleNamespace(data=data, run=root / "run", stdout=proc.stdout)


def test_rehearsing_the_source_data_scores_both_sites_test_parts(adapted, trained, dataset):
    out = adapted.run
    source_test = sum(r["part"] == "test" for r in json.loads((trained / "split.json").read_text())["files"])
    assert f"rehearse {dataset}: train" in adapted.stdout and "test, the first site" in adapted.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_first_site"]["n"] == source_test and metrics["test"]["n"] == metrics["split"]["test"]
    assert (out / "rehearse_split.json").read_bytes() == (trained / "split.json").read_bytes()
    rehearsal = json.loads((out / "manifest.json").read_text())["provenance"]["rehearsal"]
    assert rehearsal == {"data": str(dataset.resolve()), "split": "rehearse_split.json"}


def test_an_adapted_model_is_converted_on_both_sites_and_held_back_below_the_claim(adapted, trained, tmp_path):
    out = tmp_path / "variants"
    proc = cli("convert", str(adapted.run / "model.keras"), "--data", str(adapted.data), "--variants", "tflite-int8",
               "--claim", "0.999", "--out", str(out))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "tflite-int8 shows" in proc.stderr and "under the claim 0.999: not published" in proc.stderr
    report = json.loads((out / "report.json").read_text())
    source_test = sum(r["part"] == "test" for r in json.loads((trained / "split.json").read_text())["files"])
    assert [r["first_site_n"] for r in report["rows"]] == [source_test, source_test]
    assert "first site" in report["note"] and not (out / "model_int8.tflite").exists()


def test_an_adapted_model_without_its_new_site_is_not_converted(adapted, tmp_path):
    proc = cli("convert", str(adapted.run / "model.keras"), "--variants", "onnx-fp32", "--out", str(tmp_path / "v"))
    assert proc.returncode == 1 and "was adapted to a new site (--init-from): pass --data" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "v").exists()


def test_rehearsing_without_a_source_model_is_one_clear_error(dataset, tmp_path):
    proc = cli("train", "--data", str(dataset), "--out", str(tmp_path / "run"), "--rehearse", str(dataset))
    assert proc.returncode == 1 and "--rehearse replays the data of the model named by --init-from" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()
