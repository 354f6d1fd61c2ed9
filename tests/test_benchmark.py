"""benchmarks/latency.py --quick on the tiny conversion."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_writes_every_output(converted, tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "latency.py"), "--quick", "--model", str(converted),
                           "--variants", "tflite-int8,onnx-int8,tflite-fp32", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("results.json", "results.csv", "results.md", "latency.png"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert {"cpu", "arch", "cores", "os", "python", "versions", "gpu"} <= set(results["machine"])
    rows = results["rows"]
    done = [r for r in rows if "skipped" not in r]
    assert {r["variant"] for r in done} == {"tflite-int8", "onnx-int8", "tflite-fp32"}
    for r in done:
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["peak_rss_mb"] > 10 and r["throughput_ips"] > 0 and r["bare_p50_ms"] > 0 and r["e2e_p50_ms"] > 0
        assert {"load_ms", "first_ms", "size_bytes", "backend_version", "threads", "batch"} <= set(r)
    # a missing GPU and a missing backend are rows that say why
    assert results["gpu_reference"].get("skipped") or results["gpu_reference"].get("eager_b1")
    missing = [r for r in rows if r["backend"] == "tflite-runtime"]
    assert missing and all("skipped" in r or r["p50_ms"] > 0 for r in missing)
    assert "| variant |" in proc.stdout


def test_bad_model_folder_is_an_error(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "latency.py"), "--quick", "--model", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "no manifest.json" in proc.stderr
