"""Training stage: the study's exact model, the CLI's run folder, bad input, Ctrl-C."""

import csv
import json
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import TINY_ARCH, cli, make_dataset

pytestmark = pytest.mark.host


def test_parameter_counts_equal_the_study():
    from edgeleuk.train.model import build_model

    model = build_model(weights=None)
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    assert model.count_params() == 2_422_468
    assert trainable == 164_484
    assert model.count_params() - trainable == 2_257_984
    assert model.get_layer("dense").count_params() == 163_968
    assert model.get_layer("dense_1").count_params() == 516


def test_fine_tuning_keeps_batch_norm_frozen():
    import keras

    from edgeleuk.train.model import build_model, unfreeze_top

    model = build_model(alpha=0.35, input_size=64, weights=None)
    unfreeze_top(model, "block_15")
    base = model.get_layer("mobilenetv2_base")
    assert all(not layer.trainable for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert any(layer.trainable for layer in base.layers if layer.name.startswith("block_16"))
    assert not any(layer.trainable for layer in base.layers if layer.name.startswith("block_1_"))


def test_offline_imagenet_suggests_weights_path(monkeypatch):
    import keras

    from edgeleuk.errors import UserError
    from edgeleuk.train.model import build_model

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure")

    monkeypatch.setattr(keras.applications, "MobileNetV2", offline)
    with pytest.raises(UserError, match="--weights PATH"):
        build_model(weights="imagenet")


def test_model_takes_raw_pixels():
    import numpy as np

    from edgeleuk.train.model import build_model

    model = build_model(alpha=0.35, input_size=64, weights=None)
    assert model.layers[1].name == "normalize"
    out = model.predict(np.full((1, 64, 64, 3), 255.0, np.float32), verbose=0)
    assert out.shape == (1, 4) and abs(float(out.sum()) - 1) < 1e-5


def test_run_folder_is_complete(trained):
    for name in (
        "model.keras",
        "split.json",
        "config.json",
        "history.csv",
        "metrics.json",
        "curves.png",
        "confusion.png",
        "manifest.json",
    ):
        assert (trained / name).is_file(), name
    metrics = json.loads((trained / "metrics.json").read_text())["test"]
    # a random tiny backbone does not generalise, but the head must fit its training images
    rows = list(csv.DictReader((trained / "history.csv").open()))
    assert max(float(r["accuracy"]) for r in rows if r["stage"] == "frozen") >= 0.9
    assert {r["stage"] for r in rows} == {"frozen", "fine-tune"}
    confusion = metrics["confusion"]
    assert sum(map(sum, confusion)) == metrics["n"] == 26
    assert abs(metrics["accuracy"] - sum(confusion[i][i] for i in range(4)) / metrics["n"]) < 1e-9
    assert metrics["accuracy_ci95"][0] <= metrics["accuracy"] <= metrics["accuracy_ci95"][1]
    split = json.loads((trained / "split.json").read_text())
    assert {"file", "class", "sha256", "part"} <= set(split["files"][0])


def test_split_is_reusable(trained, dataset, tiny, tmp_path):
    out = tmp_path / "again"
    cli(
        "train", "--data", str(dataset), "--out", str(out), *tiny, "--epochs", "2", "--split",
        str(trained / "split.json"), "--feature-cache", "off", check_rc=0
    )
    a = json.loads((trained / "split.json").read_text())["files"]
    b = json.loads((out / "split.json").read_text())["files"]
    assert [(r["file"], r["part"]) for r in a] == [(r["file"], r["part"]) for r in b]


@pytest.mark.parametrize("case,message", [
    ("missing", "data folder {data} does not exist"),
    ("unknown-class", "Normal"),
    ("duplicate", "x.jpg"),
    ("bad-weights", "Received: --weights {tmp}/nope.weights.h5; no such file"),
])
def test_bad_input_is_a_message_not_a_traceback(tmp_path, case, message):
    data = tmp_path / "data"
    args = []
    if case != "missing":
        make_dataset(data, per_class=12)
    if case == "unknown-class":
        (data / "Normal").mkdir()
    if case == "duplicate":
        (data / "Pro" / "x.jpg").write_bytes((data / "Pre" / "WBC-Pre-010.jpg").read_bytes())
    if case == "bad-weights":
        args = ["--weights", str(tmp_path / "nope.weights.h5")]
    proc = cli(
        "train", "--data", str(data), "--out", str(tmp_path / "out"), *TINY_ARCH, *(args or ["--weights", "none"])
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("edgeleuk train: error: ")
    assert message.format(data=data, tmp=tmp_path) in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()  # a failed run leaves no folder behind


def test_out_that_cannot_be_written_is_refused_before_work(dataset, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = cli(
        "train", "--data", str(dataset), "--out", str(blocker / "run"), *TINY_ARCH, "--weights", "none", check_rc=1
    )
    assert f"cannot write into --out {blocker / 'run'}" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("train", "--data", str(dataset), "--out", str(blocker), *TINY_ARCH, "--weights", "none", check_rc=1)
    assert f"--out {blocker} is a file, not a folder" in proc.stderr


def test_a_trained_model_is_replaced_only_with_overwrite_and_leaves_no_stale_files(trained, dataset, tiny, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(trained, out)
    (out / "model_int8.tflite").write_bytes(b"a variant of the old model")
    (out / "robustness.json").write_text("{}")
    before = (out / "model.keras").read_bytes()
    proc = cli(
        "train", "--data", str(dataset), "--out", str(out), *tiny, "--epochs", "1", "--feature-cache", "off", check_rc=1
    )
    assert f"--out {out} already holds a trained model (model.keras" in proc.stderr and "--overwrite" in proc.stderr
    assert (out / "model.keras").read_bytes() == before and (out / "model_int8.tflite").exists()
    cli(
        "train", "--data", str(dataset), "--out", str(out), *tiny, "--epochs", "1", "--feature-cache", "off",
        "--overwrite", check_rc=0
    )
    assert not (out / "model_int8.tflite").exists() and not (out / "robustness.json").exists()
    assert (out / "model.keras").read_bytes() != before and (out / "manifest.json").is_file()


def test_ctrl_c_keeps_best_checkpoint(dataset, tiny, tmp_path):
    out = tmp_path / "run"
    exe = [
        sys.executable, "-m", "edgeleuk", "train", "--data", str(dataset), "--out", str(out), *tiny, "--epochs", "3",
        "--fine-tune", "--fine-tune-epochs", "200", "--fine-tune-from", "block_16", "--feature-cache", "off"
    ]
    proc = subprocess.Popen(exe, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while time.time() < deadline:
        history = out / "history.csv"
        if history.is_file() and "fine-tune" in history.read_text():
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted" in stdout
    baseline = float(re.search(r"stage-1 model's validation loss ([\d.]+) to replace it", stdout).group(1))
    kept = re.search(r"stage 2: kept (the stage-1 model|epoch \d+) \(validation loss ([\d.]+)", stdout)
    assert kept and float(kept.group(2)) <= baseline, stdout[-3000:]  # never worse than what stage 1 had
    assert (out / "model.keras").is_file() and (out / "metrics.json").is_file()
    assert json.loads((out / "metrics.json").read_text())["interrupted"] is True


def test_ctrl_c_in_the_frozen_stage_leaves_a_complete_run_folder(dataset, tiny, tmp_path):
    out = tmp_path / "run"
    exe = [sys.executable, "-m", "edgeleuk", "train", "--data", str(dataset), "--out", str(out), *tiny,
           "--epochs", "500", "--feature-cache", "off"]
    proc = subprocess.Popen(exe, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while time.time() < deadline and not (
        (out / "history.csv").is_file() and "frozen" in (out / "history.csv").read_text()
    ):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    for name in ("model.keras", "metrics.json", "config.json", "manifest.json", "history.csv", "split.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["interrupted"] is True and metrics["test_frozen"] is None
