"""benchmarks/latency.py --quick on the tiny conversion."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import quick_benchmark

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_writes_every_output(converted, tmp_path):
    out = tmp_path / "bench"
    proc = quick_benchmark(converted, out, "tflite-int8,onnx-int8,tflite-fp32")
    assert proc.returncode == 0, proc.stderr[-3000:]
    import importlib.util

    for name in ("results.json", "results.csv", "results.md"):
        assert (out / name).is_file(), name
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "latency.png").is_file()
    else:  # a device environment: the figure needs edgeleuk[bench], and the run says so
        assert "matplotlib not installed: no latency.png" in proc.stdout + proc.stderr
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
    gpu = results["gpu_reference"]
    if _cuda_here():
        assert gpu["eager_b1"]["p50_ms"] > 0
    else:  # either the recorded reference (labelled so) or a row saying why there is none
        assert (
            gpu.get("source", "").startswith("recorded")
            or "no GPU" in gpu.get("skipped", "")
            or "not installed" in gpu.get("skipped", "")
        ), gpu
    missing = [r for r in rows if r["backend"] == "tflite-runtime"]
    assert missing
    if importlib.util.find_spec("tflite_runtime") is None:
        assert all("tflite_runtime" in r["skipped"] or "tflite-runtime" in r["skipped"] for r in missing), missing
    else:
        assert all(r["p50_ms"] > 0 for r in missing)
    assert "| variant |" in proc.stdout


def test_bad_model_folder_is_an_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "latency.py"), "--quick", "--model", str(tmp_path)],
        capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1 and "no manifest.json" in proc.stderr


def _latency_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("latency", ROOT / "benchmarks" / "latency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recorded_gpu_reference_is_labelled_and_matched_to_its_model(converted, tmp_path):
    latency = _latency_module()
    shipped = ROOT / "benchmarks" / "reference" / "gpu-h200.json"
    recorded = json.loads(shipped.read_text())
    assert recorded["gpu_reference"]["graph_b1"]["p50_ms"] > 0 and recorded["machine"]["gpu"]
    # a reference recorded for the packaged model file: labelled as recorded, no warning (the shipped one was
    # recorded for the previous packaged model, so a copy carries the current file's hash)
    packaged = latency.DEFAULT_MODEL_DIR / "model_fp32.onnx"
    matched = tmp_path / "matched.json"
    recorded["gpu_reference"]["model_sha256"] = latency._model_sha(packaged)
    matched.write_text(json.dumps(recorded))
    ref = latency.recorded_reference(matched, packaged)
    assert "recorded on NVIDIA H200" in ref["source"] and "WARNING" not in ref["source"]
    # for any other model it says so instead of passing the numbers off as that model's
    ref = latency.recorded_reference(shipped, converted / "model_fp32.onnx")
    assert "WARNING: recorded for another model file" in ref["source"]
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(latency.UserError, match="not a results.json"):
        latency.recorded_reference(bad, converted / "model_fp32.onnx")


def test_gpu_rounds_combine_to_medians():
    latency = _latency_module()
    row = {"p90_ms": 2.0, "p99_ms": 3.0, "mean_ms": 1.0, "throughput_ips": 1000.0, "runs": 10}
    rounds = [{"gpu": "g", "eager_b1": {**row, "p50_ms": p}} for p in (1.0, 3.0, 2.0)] + [{"skipped": "lost"}]
    combined = latency.combine_gpu(rounds)
    assert combined["eager_b1"]["p50_ms"] == 2.0 and combined["eager_b1"]["runs"] == 30
    assert combined["eager_b1"]["p50_rounds_ms"] == [1.0, 3.0, 2.0]
    assert latency.combine_gpu([{"skipped": "no GPU"}]) == {"skipped": "no GPU"}


def test_figures_come_from_undisturbed_rounds_and_a_lone_fast_round_gets_more(monkeypatch):
    latency = _latency_module()
    timings = {
        "steady": iter([2.0, 2.02, 2.01]),
        "bimodal": iter([2.6, 2.0, 2.7, 2.5, 2.05]),
        "lone": iter([2.0, 3.0, 2.9, 2.95, 2.04]),
    }
    monkeypatch.setattr(latency, "run_job", lambda job: {**job, "p50_ms": next(timings[job["variant"]]), "runs": 10})
    rows = latency.run_rounds([{"variant": v} for v in timings], 3, lambda row: None, max_rounds=6)
    steady, bimodal, lone = rows
    assert len(steady["p50_rounds_ms"]) == 3 and steady["p50_ms"] == 2.01 and steady["rounds_used"] == 3
    # one fast round among slow ones is not enough: more rounds until a second one agrees with it
    assert bimodal["p50_rounds_ms"] == [2.6, 2.0, 2.7, 2.5, 2.05] and bimodal["p50_ms"] == pytest.approx(2.025)
    assert lone["p50_rounds_ms"] == [2.0, 3.0, 2.9, 2.95, 2.04] and lone["rounds_used"] == 2 and lone["runs"] == 20


@pytest.mark.parametrize("mode", [[], ["--decoded"]])
def test_pipeline_benchmark_reports_the_path_against_invoke(converted, tmp_path, mode):
    """benchmarks/pipeline.py on a short synthetic clip: every step of the path is reported, and the
    path, which contains the invoke(), is never reported as shorter than it."""
    out = tmp_path / "pipe"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pipeline.py"), "--model", str(converted),
                           "--frames", "30", "--size", "320x240", "--out", str(out), *mode],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / ("pipeline-decoded.json" if mode else "pipeline.json")).read_text())
    assert result["frames"] == 30
    assert {"handoff", "preprocess", "quality", "inference", "postprocess", "total", "invoke"} <= set(
        result["path_p50_ms"]
    )
    assert result["path_over_invoke_in_loop"] >= 1.0 and result["bare_invoke_p50_ms"] > 0
    assert (result["peak_rss_mb"] is None) == bool(mode)


def test_score_cost_alternates_the_model_without_its_score_with_features_only_and_as_is(converted, tmp_path):
    """pipeline.py --score-cost: three compared arms per round and a fourth with timers, the score
    step empty without statistics, and the model's own folder left as it was (the arms are copies)."""
    before = (converted / "manifest.json").read_bytes()
    out = tmp_path / "cost"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "pipeline.py"),
            "--model",
            str(converted),
            "--score-cost",
            "--pairs",
            "2",
            "--frames",
            "20",
            "--size",
            "320x240",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "pipeline-score-cost.json").read_text())
    assert [(r["arm"], r["round"]) for r in result["runs"]] == [
        (a, i) for i in range(2) for a in ("none", "features", "full", "timed")
    ]
    assert len(result["added_ms"]["features"]) == len(result["added_ms"]["full"]) == 2
    timers = {k for r in result["runs"] for k in r if k.endswith(" p50")}
    # no numpy feature score: the file's own layers compute it
    assert timers == {"stain_strength p50", "leukocyte_mask p50"}
    # the compared arms run without timers
    assert all(("stain_strength p50" in r) == (r["arm"] == "timed") for r in result["runs"])
    # with its score layers, and without them scored with numpy
    assert set(result["inference_step_us"]) == {"layers", "numpy", "layers range", "numpy range"}
    # from the runs' means too: the stain is read on every 8th frame only
    assert len(result["added_ms_mean"]["full"]) == 2
    # read on some frames only, and timed
    assert 0 < result["stain_read_share"] < 0.5 and result["stain_reading_ms"] > 0
    assert all(r["scored"] == (0.0 if r["arm"] == "none" else 1.0) for r in result["runs"])  # no statistics, no score
    assert (converted / "manifest.json").read_bytes() == before


def test_every_configuration_failing_is_a_non_zero_exit(converted, tmp_path):
    """A folder whose variant files load in no runtime (hashes kept consistent, so only loading fails)."""
    import shutil
    from dataclasses import replace

    from edgeleuk.manifest import read_manifest, sha256_file, write_manifest

    broken = tmp_path / "broken"
    shutil.copytree(converted, broken)
    manifest = read_manifest(broken)
    (broken / "model_int8.tflite").write_bytes(b"not a flatbuffer" * 64)
    variants = [
        replace(v, sha256=sha256_file(broken / v.file)) if v.file == "model_int8.tflite" else v
        for v in manifest.variants
    ]
    write_manifest(broken, replace(manifest, variants=tuple(variants)))
    proc = quick_benchmark(broken, tmp_path / "out")
    assert proc.returncode == 1 and "every configuration failed or was skipped" in proc.stderr, proc.stderr[-2000:]


def _cuda_here() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def test_stain_layers_stand_in_computes_what_numpy_does_and_is_timed(tmp_path):
    """The stand-in for a stain reading inside the model file (benchmarks/stain_layers.py): the
    script stops when its graph's outputs differ from numpy's, on the packaged model's file."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import stain_layers
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from ai_edge_litert.interpreter import Interpreter

    from edgeleuk.preprocess import preprocess
    from edgeleuk.runtime import load

    classifier = load(None)
    it = Interpreter(model_content=stain_layers.stand_in(classifier.path.read_bytes(), gather=True))
    it.allocate_tensors()
    x = preprocess(stain_layers.fields(None, 1)[0], classifier.spec).reshape(1, 224, 224, 3)
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    got = it.get_tensor(it.get_output_details()[-1]["index"]).reshape(-1)
    want = stain_layers.stand_in_numpy(x[0])
    assert want[1] > 100 and want[3] > 0  # the synthetic field shows leukocyte and red-cell pixels
    assert got == pytest.approx(want, rel=1e-3)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "stain_layers.py"), "--runs", "20", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "stain-layers.json").read_text())
    assert (
        set(result["invoke_us"]) == {"as is", "with the stand-in", "with its 56×56 copy only"}
        and result["stain_strength_after_invoke_us"] > 0
    )
