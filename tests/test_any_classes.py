"""Any class set from the folders' own names, through every stage: train → convert → run → validate
→ benchmarks/latency.py, with the labels in every output. The 2-class model also runs in the
device-only environment (conftest's `two_class`)."""

import json
from pathlib import Path

import pytest

from conftest import TWO_CLASSES, cli, quick_benchmark, site

ROOT = Path(__file__).resolve().parents[1]


def _split_keeps_groups_whole(run: Path) -> bool:
    sides: dict[str, set] = {}
    for row in json.loads((run / "split.json").read_text())["files"]:
        sides.setdefault(row["group"], set()).add(row["part"])
    return all(len(p) == 1 for p in sides.values())


def _device_stages(run: Path, labels: tuple[str, ...], classes: tuple[str, ...], tmp_path: Path) -> None:
    """run, validate and the latency benchmark on a converted run folder: no TensorFlow needed."""
    log = tmp_path / "run.jsonl"
    frames = site(tmp_path / "frames", classes[:1], patients=1, fields=3, first=70)
    cli(
        "run", "--model", str(run), "--source", str(frames / classes[0] / f"{classes[0]}-patient-70"), "--min-focus",
        "0", "--log", str(log), "--quiet", check_rc=0
    )
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert all(set(r["probabilities"]) == set(labels) for r in records if "probabilities" in r)

    new = site(tmp_path / "site", classes, patients=3, fields=4, first=50)  # never seen by the model
    out = tmp_path / "validation"
    proc = cli("validate", str(run), "--data", str(new), "--claim", "0.5", "--out", str(out))
    assert proc.returncode in (0, 3), proc.stderr
    doc = json.loads((out / "validation.json").read_text())
    assert doc["labels"] == list(labels) and list(doc["per_class"]) == list(labels)
    assert doc["overall"]["n"] == 12 * len(classes) and doc["samples"]["n"] == 3 * len(classes)
    assert {r["class"] for r in doc["samples"]["rows"]} == set(labels)
    assert doc["result"] == ("PASS" if proc.returncode == 0 else "FAIL") and f"result: {doc['result']}" in proc.stdout
    assert (out / "validation.md").read_text().startswith(f"# Site acceptance: {doc['result']}")

    bench = quick_benchmark(run, tmp_path / "bench")
    assert bench.returncode == 0, bench.stderr[-2000:]
    assert json.loads((tmp_path / "bench" / "results.json").read_text())["labels"] == list(labels)


@pytest.mark.host  # trains and converts
def test_three_classes_from_the_folders_go_through_every_stage(tiny, tmp_path):
    classes = ("blast", "lymphocyte", "normal")
    data = site(tmp_path / "data", classes, patients=10, fields=3)
    run = tmp_path / "run"
    trained = cli(
        "train", "--data", str(data), "--out", str(run), *tiny, "--epochs", "12", "--feature-cache", "off", check_rc=0
    )
    assert "classes: blast 30, lymphocyte 30, normal 30 (one per folder)" in trained.stdout
    assert "groups: 30 by sample folders" in trained.stdout and _split_keeps_groups_whole(run)
    assert list(json.loads((run / "metrics.json").read_text())["test"]["per_class"]) == list(classes)
    cli(
        "convert", str(run / "model.keras"), "--variants", "tflite-int8", "--data", str(data), "--calibration-size",
        "20", "--max-drop", "100", "--out", str(run), check_rc=0
    )
    assert tuple(json.loads((run / "manifest.json").read_text())["labels"]) == classes
    _device_stages(run, classes, classes, tmp_path)


@pytest.mark.host
def test_two_classes_are_trained_with_their_folder_names(two_class):
    labels = tuple(sorted(TWO_CLASSES))
    assert tuple(json.loads((two_class / "manifest.json").read_text())["labels"]) == labels
    assert list(json.loads((two_class / "metrics.json").read_text())["test"]["per_class"]) == list(labels)
    assert _split_keeps_groups_whole(two_class)


def test_two_classes_run_validate_and_benchmark_on_the_device_side(two_class, tmp_path):
    _device_stages(two_class, tuple(sorted(TWO_CLASSES)), TWO_CLASSES, tmp_path)
