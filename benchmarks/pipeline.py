#!/usr/bin/env python
"""What `edgeleuk run` costs over the bare interpreter, on a recorded slide video (720p by default).

    python benchmarks/pipeline.py [--model DIR] [--data ../shared/data/all4] [--frames 600] [--threads N] [--size
    640x480]
                                  [--realtime | --decoded] [--serve] [--score-cost]

Records an MJPG clip, 1280×720 unless --size says otherwise (real test images when --data is given, else synthetic
cells), runs
`edgeleuk run --source clip` in a fresh process, and reports: per-frame path (hand-off,
preprocessing, quality gate, inference, post-processing) against a bare `invoke()` loop of the same
model and threads, frames per second, peak RSS and cold start to first result. Device-safe.

Three conditions:
- default: every frame as fast as possible; the capture thread's decoding shares the cores.
- --realtime: paced at 30 frames/s like a camera; every step runs with caches gone cold between frames.
- --decoded: frames decoded ahead (60 distinct frames, so each is read from memory, not cache) and fed
  back to back through the same capture thread and run loop, in this process: the conditions of the
  bare back-to-back invoke() loop, so the ratio is what the toolkit adds.

--score-cost: what the out-of-distribution score adds. Decoded frames as above, alternating three
copies of the model, --pairs rounds: its manifest without `ood` and the file it runs without its
score layers (no score), with the features' statistics only (no stain check), and as it is. What
each adds over the first in the same round: the gate and score steps, plus what the features'
score adds to the inference step, measured apart by alternating call by call the file with its
layers, and then the file without them scored with numpy, with the file without them reading the
probabilities only (the interpreter's drift between runs is far larger than that share). Each from
the steps' p50s and from their means over a run's frames: the stain is read on every 8th usable
frame only (runtime/stain.py), so only the mean counts it. A fourth run per round, not compared,
times the stain reading inside the loop (the timers cost a few µs).

--serve: the same run with the live view (`run --serve`) and one browser-like viewer attached (the
MJPEG stream read as fast as it comes, the status polled twice a second, as the page does),
alternated with runs without it, so the ratio of the frame path's p50 comes from one session.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from edgeleuk.files import atomic_write_text  # noqa: E402
from edgeleuk.runtime import load  # noqa: E402
from edgeleuk.runtime.backends import default_threads  # noqa: E402


def record_clip(path: Path, frames: int, data: str | None, width: int = 1280, height: int = 720) -> None:
    """An MJPG clip: each frame a slide image scaled into the frame, as a microscope camera sees it."""
    sources = []
    if data:
        sources = sorted(Path(data).glob("*/*.jpg"))[::7][:60]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (width, height))
    rng = np.random.default_rng(0)
    side, x0 = min(width, height), (width - min(width, height)) // 2
    for i in range(frames):
        frame = np.full((height, width, 3), 225, np.uint8)
        if sources:
            cell = cv2.resize(cv2.imread(str(sources[i % len(sources)])), (side, side), interpolation=cv2.INTER_CUBIC)
        else:
            cell = cv2.GaussianBlur(rng.integers(150, 255, (side, side, 3), dtype=np.uint8), (0, 0), 2)
            cv2.circle(cell, (side // 2, side // 2), side * 5 // 24, (150, 60, 120), -1)
        frame[(height - side) // 2:(height - side) // 2 + side, x0:x0 + side] = cell
        writer.write(frame)
    writer.release()


def bare_invoke_ms(model: str | None, threads: int, runs: int = 2000, interval_s: float = 0.0) -> float:
    """p50 of a bare invoke() loop: back to back (hot), or one call every interval_s, as frames arrive
    from a camera (the interpreter's threads and caches go cold between calls)."""
    clf = load(model, threads=threads)
    it = clf.backend.interpreter
    clf.backend.set_input(clf.prepare(np.zeros((1, clf.spec.size, clf.spec.size, 3), np.uint8)))
    for _ in range(100):
        it.invoke()
    times = []
    for _ in range(runs):
        if interval_s:
            time.sleep(interval_s)
        t0 = time.perf_counter()
        it.invoke()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


class DecodedClip:
    """OpenCV VideoCapture's interface over frames already decoded: `total` reads, cycling through them."""

    def __init__(self, path: Path, total: int, distinct: int = 60):
        capture, self.frames = cv2.VideoCapture(str(path)), []
        while len(self.frames) < distinct:
            ok, image = capture.read()
            if not ok:
                break
            self.frames.append(image)
        capture.release()
        self.total, self.served = total, 0

    def isOpened(self) -> bool:
        return bool(self.frames)

    def read(self):
        if self.served >= self.total:
            return False, None
        self.served += 1
        return True, self.frames[self.served % len(self.frames)]

    def get(self, prop) -> float:
        return 30.0

    def release(self) -> None:
        pass


def run_decoded(clip: Path, log: Path, frames: int, model: str | None, threads: int) -> None:
    """The run loop of `edgeleuk run` (same capture thread, same session) on frames decoded ahead."""
    from edgeleuk.runtime.session import RunOptions, run
    from edgeleuk.runtime.sources import VideoSource

    classifier = load(model, threads=threads)
    run(classifier, VideoSource(clip, capture=DecodedClip(clip, frames)), RunOptions(log=log, status="off"))


@contextlib.contextmanager
def call_timers():
    """Seconds spent in the score's own calls (and the gate's leukocyte mask), timed where the run loop calls them."""
    import edgeleuk.runtime.quality as quality
    from edgeleuk.ood import OODScorer

    spent: dict[str, list[float]] = {"stain_strength": [], "leukocyte_mask": [], "OODScorer.score": []}
    targets = [(quality, "stain_strength"), (quality, "leukocyte_mask"), (OODScorer, "score")]
    originals = [getattr(owner, name) for owner, name in targets]

    def timed(function, key):
        def call(*a, **k):
            start = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                spent[key].append(time.perf_counter() - start)
        return call

    for (owner, name), function in zip(targets, originals):
        setattr(owner, name, timed(function, "OODScorer.score" if name == "score" else name))
    try:
        yield spent
    finally:
        for (owner, name), function in zip(targets, originals):
            setattr(owner, name, function)


def _strip_score_layers(folder: Path) -> None:
    """The file `load(folder)` runs, without its score layers (and the manifest's hash to match): the
    model as it would be without the score."""
    from edgeleuk.export.score_layers import strip_onnx, strip_tflite
    from edgeleuk.manifest import sha256_file

    chosen = load(str(folder)).path
    manifest = json.loads((folder / "manifest.json").read_text())
    for variant in manifest.get("variants", []):
        if variant["file"] == chosen.name:
            if chosen.suffix == ".tflite":
                chosen.write_bytes(strip_tflite(chosen.read_bytes()))
            else:
                strip_onnx(chosen, chosen)
            variant["sha256"], variant["size_bytes"] = sha256_file(chosen), chosen.stat().st_size
    (folder / "manifest.json").write_text(json.dumps(manifest))


def inference_step_cost_us(
    shipped: str, stripped: str, threads: int, clip: Path, runs: int = 600, pairs: int = 8
) -> dict[str, float] | None:
    """µs the features' score adds to the inference step (`infer_judged`: the interpreter, reading
    its outputs, the score), over reading the probabilities only: with the file's own score layers,
    and with numpy from the features of the file without them. Each alternated call by call with the
    file without them reading the probabilities only, each call after a frame's preprocessing and gate
    as in the run loop (the interpreter's drift between runs is far larger than the difference, so
    the run loop's own timings cannot show it). An interpreter has a speed of its own (pairs of fresh
    ones differed by -22 to +116 µs, 2026-12-01, commit 2e610a9), so each comparison runs on `pairs` fresh pairs
    and gives the median of their differences and the pairs' range."""
    import dataclasses

    from edgeleuk.preprocess import preprocess
    from edgeleuk.runtime.quality import assess
    from edgeleuk.runtime.stain import READ_EVERY

    layers = load(shipped, threads=threads)
    if layers.ood is None or layers.score_index is None:
        return None
    xs = [preprocess(f, layers.spec) for f in DecodedClip(clip, 60).frames]
    xs = [x.reshape(x.shape[-3:]) for x in xs]
    result: dict[str, float] = {}
    for arm in ("layers", "numpy"):
        differences = []
        for _ in range(pairs):
            # interpreters of their own: sharing one made every other call follow a call of its own
            # interpreter, weights still in cache (~100 µs faster)
            bare = load(stripped, threads=threads)
            other = (
                load(shipped, threads=threads)
                if arm == "layers"
                else dataclasses.replace(load(stripped, threads=threads), ood=layers.ood)
            )
            times: list[list[float]] = [[], []]
            for i in range(runs * 2):
                x = xs[(i // 2) % len(xs)]
                assess(x, layers.quality, stain=(i // 2) % READ_EVERY == 0)  # the stain read as the run loop reads it
                t0 = time.perf_counter()
                (other if i % 2 else bare).infer_judged(x)
                times[i % 2].append((time.perf_counter() - t0) * 1e6)
            differences.append(float(np.median(times[1][50:]) - np.median(times[0][50:])))
        result[arm] = float(np.median(differences))
        result[f"{arm} range"] = [min(differences), max(differences)]
    return result


def score_cost(clip: Path, log: Path, args, out: Path) -> int:
    """The model without its `ood` statistics (its files without the score layers), with the features'
    statistics only, and as it is, alternated on the same decoded frames."""
    from edgeleuk.runtime.classifier import packaged_model

    folder = Path(args.model) if args.model else packaged_model("default")
    if folder is None or not (folder / "manifest.json").is_file():
        raise SystemExit("--score-cost needs a conversion folder (--model DIR with a manifest.json)")
    steps = ("quality", "inference", "invoke", "ood", "total")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        arms = {}
        for arm in ("none", "features"):
            arms[arm] = Path(tmp) / arm
            shutil.copytree(folder, arms[arm], ignore=shutil.ignore_patterns("*.keras", "*.png"))
            manifest = json.loads((arms[arm] / "manifest.json").read_text())
            if arm == "none":
                manifest.pop("ood", None)
            else:
                manifest.get("ood", {}).pop("stain", None)
            (arms[arm] / "manifest.json").write_text(json.dumps(manifest))
        _strip_score_layers(arms["none"])
        # timed: the full score again, with timers around its calls (not in the comparison: they cost µs)
        arms["full"] = arms["timed"] = folder
        for i in range(args.pairs):
            for arm, model in arms.items():
                log.unlink(missing_ok=True)
                with call_timers() if arm == "timed" else contextlib.nullcontext({}) as spent:
                    run_decoded(clip, log, args.frames, str(model), args.threads)
                frames = [r for r in map(json.loads, log.read_text().splitlines()) if "latency_ms" in r]
                row = {
                    "arm": arm,
                    "round": i,
                    **{k: float(np.median([f["latency_ms"][k] for f in frames])) for k in steps},
                    "scored": float(np.mean([f.get("ood_score") is not None for f in frames])),
                    # the mean as well: the stain is read on every 8th usable frame only (runtime/stain.py), which a
                    # p50 leaves out
                    "gate and score mean": float(
                        np.mean([f["latency_ms"]["quality"] + f["latency_ms"]["ood"] for f in frames])
                    ),
                    "stain read": float(
                        np.mean(
                            [
                                f["quality"].get("stain") is not None or f["quality"].get("red_stain") is not None
                                for f in frames
                            ]
                        )
                    ),
                    **{f"{k} p50": float(np.median(v)) * 1e3 for k, v in spent.items() if v},
                }
                rows.append(row)
                print(
                    f"round {i + 1}, score {arm}: "
                    + ", ".join(
                        f"{k} {v:.3f}" for k, v in row.items() if k not in ("arm", "round", "scored", "stain read")
                    )
                    + f" ms (p50); stain read on {row['stain read']:.1%} of frames"
                )
        step = inference_step_cost_us(str(folder), str(arms["none"]), args.threads, clip)
    # the file as shipped scores in its layers, else numpy inside the step (timed here)
    inference_us = step["layers"] if step else 0.0

    # the gate and score steps against the same round's run without the score, plus the inference step's share
    def added(arm: str) -> list[float]:
        base = {r["round"]: r["quality"] + r["ood"] for r in rows if r["arm"] == "none"}
        return [r["quality"] + r["ood"] - base[r["round"]] + inference_us / 1e3 for r in rows if r["arm"] == arm]

    def added_mean(arm: str) -> list[float]:  # as `added`, from each run's mean over its frames instead of its p50s
        base = {r["round"]: r["gate and score mean"] for r in rows if r["arm"] == "none"}
        return [r["gate and score mean"] - base[r["round"]] + inference_us / 1e3 for r in rows if r["arm"] == arm]

    # the same with the run loop's own inference timings (noisier by far)
    def added_with_invoke(arm: str) -> list[float]:
        base = {r["round"]: r["quality"] + r["inference"] + r["ood"] for r in rows if r["arm"] == "none"}
        return [r["quality"] + r["inference"] + r["ood"] - base[r["round"]] for r in rows if r["arm"] == arm]

    result = {
        "threads": args.threads,
        "frames": args.frames,
        "model": str(folder),
        "runs": rows,
        "inference_step_us": step,
        "added_ms": {arm: added(arm) for arm in ("features", "full")},
        "added_ms_median": {arm: float(np.median(added(arm))) for arm in ("features", "full")},
        "added_ms_mean": {arm: added_mean(arm) for arm in ("features", "full")},
        "added_ms_mean_median": {arm: float(np.median(added_mean(arm))) for arm in ("features", "full")},
        "added_ms_median_with_loop_invoke": {
            arm: float(np.median(added_with_invoke(arm))) for arm in ("features", "full")
        },
    }
    timed = [r for r in rows if r["arm"] == "timed" and "stain_strength p50" in r]
    # the steadiest estimate of the mean: the p50s (no reading on the median frame) plus the readings' share, timed
    if timed:
        reading_ms = float(np.median([r["stain_strength p50"] for r in timed]))
        share = float(np.median([r["stain read"] for r in timed]))
        result["stain_reading_ms"], result["stain_read_share"] = reading_ms, share
        result["added_ms_full_p50_plus_readings"] = result["added_ms_median"]["full"] + share * reading_ms
    atomic_write_text(out / "pipeline-score-cost.json", json.dumps(result, indent=2) + "\n")
    if step is not None:
        print(
            f"the features' score in the inference step, over reading the probabilities only (alternated call by call, "
            f"median of fresh interpreter pairs): {step['layers']:.1f} µs with the file's own layers (pairs "
            f"{step['layers range'][0]:.1f} to {step['layers range'][1]:.1f}), {step['numpy']:.1f} µs with numpy "
            f"from its features ({step['numpy range'][0]:.1f} to {step['numpy range'][1]:.1f})"
        )
    for arm, what in (("features", "the features' distances"), ("full", "the whole score (distances and stain check)")):
        print(
            f"{what} add per round: "
            + ", ".join(f"{a:.3f}" for a in added(arm))
            + f" ms; median {result['added_ms_median'][arm]:.3f} ms "
            f"(with the loop's own inference timings instead: {result['added_ms_median_with_loop_invoke'][arm]:.3f} ms)"
        )
        print("  from each run's mean over its frames instead: " + ", ".join(f"{a:.3f}" for a in added_mean(arm))
              + f" ms; median {result['added_ms_mean_median'][arm]:.3f} ms")
    if "stain_reading_ms" in result:
        print(
            f"the stain reading, timed in the loop: {result['stain_reading_ms']:.3f} ms, on "
            f"{result['stain_read_share']:.1%} of frames; "
            f"the whole score's p50s plus that share: {result['added_ms_full_p50_plus_readings']:.3f} ms"
        )
    print(f"wrote {out / 'pipeline-score-cost.json'}")
    return 0


def run_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))}


def run_command(clip: Path, log: Path, args, serve: bool = False) -> list[str]:
    extra = []
    if serve and args.serve:
        extra = ["--serve", "127.0.0.1:0", "--exit-at-end"]
    elif serve and args.publish:
        extra = ["--publish", args.publish, "--publish-frames", "--device-id", "bench"]
    return (
        [
            sys.executable, "-m", "edgeleuk", "run", "--source", str(clip), "--log", str(log), "--quiet", "--threads",
            str(args.threads)
        ]
        + (["--model", args.model] if args.model else [])
        + (["--realtime"] if args.realtime else [])
        + extra
    )


def viewer(port: int, stop: threading.Event, counts: dict) -> None:
    """What the page does: read the MJPEG stream as it comes, poll the status twice a second."""
    def stream():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/stream.mjpg")
        response = conn.getresponse()
        try:
            while not stop.is_set():
                chunk = response.read1(65536)
                if not chunk:
                    break
                counts["stream_frames"] += chunk.count(b"--frame")
        except OSError:
            pass

    threading.Thread(target=stream, daemon=True).start()
    while not stop.is_set():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/api/status")
            conn.getresponse().read()
            counts["status_polls"] += 1
        except OSError:
            break
        stop.wait(0.5)


def serve_once(clip: Path, log: Path, args, serve: bool) -> tuple[list[dict], dict]:
    log.unlink(missing_ok=True)
    proc = subprocess.Popen(
        run_command(clip, log, args, serve), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=run_env()
    )
    stop, counts = threading.Event(), {"stream_frames": 0, "status_polls": 0}
    if serve and args.serve:
        for line in proc.stdout:
            found = re.search(r"live view: http://127\.0\.0\.1:(\d+)/", line)
            if found:
                threading.Thread(target=viewer, args=(int(found.group(1)), stop, counts), daemon=True).start()
                break
    proc.communicate()
    stop.set()
    if proc.returncode != 0:
        raise SystemExit(f"edgeleuk run failed (exit {proc.returncode})")
    return [json.loads(x) for x in log.read_text().splitlines()], counts


def compare_serve(clip: Path, log: Path, args, out: Path, width: int, height: int) -> int:
    rows = []
    for _ in range(args.pairs):
        for serve in (False, True):
            records, counts = serve_once(clip, log, args, serve)
            frames = [r for r in records if "latency_ms" in r]
            rows.append({"serve": serve, "path_p50_ms": float(np.median([f["latency_ms"]["total"] for f in frames])),
                         "frames": len(frames), "fps": records[-1]["fps"], **counts})
            what = "the live view" if args.serve else "publishing every frame"
            print(
                f"{'with' if serve else 'without'} {what}: path p50 {rows[-1]['path_p50_ms']:.3f} ms, {len(frames)} "
                f"frames, {records[-1]['fps']} frames/s"
                + (
                    f", {counts['stream_frames']} frames streamed, {counts['status_polls']} status polls"
                    if serve
                    else ""
                )
            )
    with_view = float(np.median([r["path_p50_ms"] for r in rows if r["serve"]]))
    without = float(np.median([r["path_p50_ms"] for r in rows if not r["serve"]]))
    result = {"frame_size": f"{width}x{height}", "threads": args.threads, "realtime": args.realtime, "runs": rows,
              "path_p50_ms_without": without, "path_p50_ms_with_viewer": with_view, "ratio": with_view / without}
    name = "pipeline-serve.json" if args.serve else "pipeline-publish.json"
    atomic_write_text(out / name, json.dumps(result, indent=2) + "\n")
    what = "the live view and one viewer" if args.serve else f"every frame published to {args.publish}"
    print(f"frame path p50: {without:.3f} ms without, {with_view:.3f} ms with {what}: {with_view / without:.3f}×")
    print(f"wrote {out / name}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="conversion folder or .tflite (default: the packaged int8 model)")
    p.add_argument("--data", help="image folder to draw real slide frames from")
    p.add_argument("--frames", type=int, default=600)
    p.add_argument("--threads", type=int, default=default_threads())
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--realtime", action="store_true", help="replay at the clip's 30 frames/s, as a live camera delivers them"
    )
    mode.add_argument(
        "--decoded", action="store_true", help="frames decoded ahead, back to back, in this process (see above)"
    )
    p.add_argument(
        "--serve", action="store_true",
        help="compare runs with the live view and one viewer against runs without (see above)"
    )
    p.add_argument(
        "--publish",
        metavar="URL",
        help="compare runs publishing every frame's record to this MQTT broker (mqtt://127.0.0.1:1883/bench) "
        "against runs without",
    )
    p.add_argument(
        "--score-cost", action="store_true",
        help="compare the model with and without its out-of-distribution statistics (see above)"
    )
    p.add_argument(
        "--pairs", type=int, default=3,
        help="--serve, --publish, --score-cost: rounds of runs with and without, alternated (default 3)"
    )
    p.add_argument("--size", default="1280x720", help="frame size WxH of the recorded clip (default 1280x720)")
    p.add_argument("--out", default="runs/pipeline")
    args = p.parse_args()
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        p.error(f"--size {args.size}: expected WxH, e.g. 640x480")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        clip, log = Path(tmp) / f"slide{width}x{height}.avi", Path(tmp) / "run.jsonl"
        record_clip(clip, args.frames, args.data, width, height)
        if args.serve or args.publish:
            return compare_serve(clip, log, args, out, width, height)
        if args.score_cost:
            return score_cost(clip, log, args, out)
        first, peak_rss_mb = None, None
        start = time.perf_counter()
        if args.decoded:
            run_decoded(clip, log, args.frames, args.model, args.threads)
            wall = time.perf_counter() - start
        else:
            proc = subprocess.Popen(
                run_command(clip, log, args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=run_env()
            )
            while proc.poll() is None and first is None:
                if log.exists() and log.stat().st_size > 0:
                    first = time.perf_counter() - start
                time.sleep(0.002)
            stdout, stderr = proc.communicate()
            wall = time.perf_counter() - start
            if proc.returncode != 0:
                print(stderr, file=sys.stderr)
                return 1
            peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        records = [json.loads(x) for x in log.read_text().splitlines()]
    frames = [r for r in records if "latency_ms" in r]
    summary = records[-1]
    parts = {k: float(np.median([f["latency_ms"][k] for f in frames])) for k in frames[0]["latency_ms"]}
    # the same frame's own invoke(): same moment, same caches, so the ratio is what the toolkit adds
    in_loop = float(np.median([f["latency_ms"]["total"] / f["latency_ms"]["invoke"] for f in frames]))
    bare = bare_invoke_ms(args.model, args.threads)
    paced = bare_invoke_ms(args.model, args.threads, runs=300, interval_s=1 / 30) if args.realtime else None
    result = {
        "frame_size": f"{width}x{height}",
        "frames": len(frames),
        "threads": args.threads,
        "fps": summary["fps"],
        "bare_invoke_p50_ms": bare,
        "bare_invoke_at_30fps_p50_ms": paced,
        "path_over_bare_at_30fps": parts["total"] / paced if paced else None,
        "path_p50_ms": parts,
        "path_over_bare": parts["total"] / bare,
        "path_over_invoke_in_loop": in_loop,
        "peak_rss_mb": peak_rss_mb,
        "cold_start_to_first_result_s": first,
        "wall_s": wall,
        "verdict": summary["verdict"]["decision"],
        "source": "real test images" if args.data else "synthetic cells",
        "mode": "realtime 30 frames/s (camera-like)"
        if args.realtime
        else "decoded ahead, back to back, in-process"
        if args.decoded
        else "every frame, as fast as possible",
    }
    name = "pipeline-realtime.json" if args.realtime else "pipeline-decoded.json" if args.decoded else "pipeline.json"
    atomic_write_text(out / name, json.dumps(result, indent=2) + "\n")
    print(
        f"{width}×{height} MJPG clip, {len(frames)} frames, {args.threads} threads ({result['source']}; "
        f"{result['mode']})"
    )
    print("per-frame path p50 (ms): " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))
    print(f"whole path / that frame's own invoke() inside the loop: p50 {in_loop:.2f}×")
    print(f"bare invoke() p50: {bare:.3f} ms; whole path / bare invoke: {result['path_over_bare']:.2f}×")
    if paced:
        print(f"bare invoke() once every 33 ms, like the camera's frames: p50 {paced:.3f} ms; "
              f"whole path / that: {result['path_over_bare_at_30fps']:.2f}×")
    if args.decoded:
        print(
            f"frames per second: {summary['fps']} (decoding excluded; peak RSS and cold start: run without --decoded)"
        )
    else:
        print(
            f"frames per second: {summary['fps']}; peak RSS {peak_rss_mb:.0f} MB; cold start to first result "
            f"{first:.2f} s"
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
