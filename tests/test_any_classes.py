"""Any class set from the folders' own names, through every stage: train → convert → run → validate
→ benchmarks/latency.py, with the labels in every output."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from conftest import COLOURS, cli, smear

ROOT = Path(__file__).resolve().parents[1]
TINTS = list(COLOURS)  # the synthetic smear's colours: one per class


def site(root: Path, classes: tuple[str, ...], patients: int, fields: int, first: int = 0) -> Path:
    """class/patient/*.png: each patient of each class its own folder of fields."""
    for c, name in enumerate(classes):
        for p in range(first, first + patients):
            folder = root / name / f"{name}-patient-{p:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for f in range(fields):
                cv2.imwrite(str(folder / f"field_{f}.png"), smear(TINTS[c], 1000 + p * 10 + f))
    return root


@pytest.mark.host  # trains and converts
@pytest.mark.parametrize("classes", [("healthy", "Blästen"), ("blast", "lymphocyte", "normal")], ids=["2-class", "3-class"])
def test_a_class_set_from_the_folders_goes_through_every_stage(classes, tiny, tmp_path):
    labels = tuple(sorted(classes))
    data = site(tmp_path / "data", classes, patients=10, fields=3)
    run = tmp_path / "run"
    trained = cli("train", "--data", str(data), "--out", str(run), *tiny, "--epochs", "12", "--feature-cache", "off", check_rc=0)
    assert "classes: " + ", ".join(f"{c} 30" for c in labels) + " (one per folder)" in trained.stdout
    assert f"groups: {10 * len(classes)} by sample folders" in trained.stdout
    manifest = json.loads((run / "manifest.json").read_text())
    assert tuple(manifest["labels"]) == labels
    split = json.loads((run / "split.json").read_text())
    sides: dict[str, set] = {}
    for row in split["files"]:
        sides.setdefault(row["group"], set()).add(row["part"])
    assert all(len(p) == 1 for p in sides.values())  # no patient on two sides
    assert list(json.loads((run / "metrics.json").read_text())["test"]["per_class"]) == list(labels)

    cli("convert", str(run / "model.keras"), "--variants", "tflite-int8", "--data", str(data), "--calibration-size", "20",
        "--max-drop", "100", "--out", str(run), check_rc=0)
    assert tuple(json.loads((run / "manifest.json").read_text())["labels"]) == labels

    log = tmp_path / "run.jsonl"
    cli("run", "--model", str(run), "--source", str(data / classes[0] / f"{classes[0]}-patient-00"), "--min-focus", "0",
        "--log", str(log), "--quiet", check_rc=0)
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

    bench = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "latency.py"), "--quick", "--model", str(run),
                            "--variants", "tflite-int8", "--out", str(tmp_path / "bench")], capture_output=True, text=True, timeout=600)
    assert bench.returncode == 0, bench.stderr[-2000:]
    assert json.loads((tmp_path / "bench" / "results.json").read_text())["labels"] == list(labels)
