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
import json
import os
import resource
import subprocess
import sys
import tempfile
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


def _parser() -> argparse.ArgumentParser:
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
    return p


def main() -> int:
    p = _parser()
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
            from serve_cost import compare_serve

            return compare_serve(clip, log, args, out, width, height)
        if args.score_cost:
            from score_cost import score_cost

            return score_cost(clip, log, args, out)
        timing = _one_run(clip, log, args)
        if timing is None:
            return 1
        records = [json.loads(x) for x in log.read_text().splitlines()]
    result = _path_result(records, args, (width, height), timing)
    name = "pipeline-realtime.json" if args.realtime else "pipeline-decoded.json" if args.decoded else "pipeline.json"
    atomic_write_text(out / name, json.dumps(result, indent=2) + "\n")
    _print_path(result, args)
    print(f"wrote {out}")
    return 0


def _one_run(clip: Path, log: Path, args) -> dict | None:
    """One run of the clip: wall time, and (as a subprocess) the cold start and the peak RSS."""
    start, timing = time.perf_counter(), {"first": None, "peak_rss_mb": None}
    if args.decoded:
        run_decoded(clip, log, args.frames, args.model, args.threads)
        return {**timing, "wall": time.perf_counter() - start}
    proc = subprocess.Popen(run_command(clip, log, args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=run_env())
    while proc.poll() is None and timing["first"] is None:
        if log.exists() and log.stat().st_size > 0:
            timing["first"] = time.perf_counter() - start
        time.sleep(0.002)
    _, stderr = proc.communicate()
    if proc.returncode != 0:
        print(stderr, file=sys.stderr)
        return None
    timing["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {**timing, "wall": time.perf_counter() - start}


def _path_result(records: list[dict], args, size: tuple[int, int], timing: dict) -> dict:
    frames = [r for r in records if "latency_ms" in r]
    summary = records[-1]
    parts = {k: float(np.median([f["latency_ms"][k] for f in frames])) for k in frames[0]["latency_ms"]}
    # the same frame's own invoke(): same moment, same caches, so the ratio is what the toolkit adds
    in_loop = float(np.median([f["latency_ms"]["total"] / f["latency_ms"]["invoke"] for f in frames]))
    bare = bare_invoke_ms(args.model, args.threads)
    paced = bare_invoke_ms(args.model, args.threads, runs=300, interval_s=1 / 30) if args.realtime else None
    mode = ("realtime 30 frames/s (camera-like)" if args.realtime else "decoded ahead, back to back, in-process"
            if args.decoded else "every frame, as fast as possible")
    return {"frame_size": f"{size[0]}x{size[1]}", "frames": len(frames), "threads": args.threads, "fps": summary["fps"],
            "bare_invoke_p50_ms": bare, "bare_invoke_at_30fps_p50_ms": paced,
            "path_over_bare_at_30fps": parts["total"] / paced if paced else None, "path_p50_ms": parts,
            "path_over_bare": parts["total"] / bare, "path_over_invoke_in_loop": in_loop,
            "peak_rss_mb": timing["peak_rss_mb"], "cold_start_to_first_result_s": timing["first"],
            "wall_s": timing["wall"], "verdict": summary["verdict"]["decision"],
            "source": "real test images" if args.data else "synthetic cells", "mode": mode}


def _print_path(result: dict, args) -> None:
    parts, paced = result["path_p50_ms"], result["bare_invoke_at_30fps_p50_ms"]
    print(f"{result['frame_size'].replace('x', '×')} MJPG clip, {result['frames']} frames, {args.threads} threads "
          f"({result['source']}; {result['mode']})")
    print("per-frame path p50 (ms): " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))
    print(f"whole path / that frame's own invoke() inside the loop: p50 {result['path_over_invoke_in_loop']:.2f}×")
    print(f"bare invoke() p50: {result['bare_invoke_p50_ms']:.3f} ms; whole path / bare invoke: "
          f"{result['path_over_bare']:.2f}×")
    if paced:
        print(f"bare invoke() once every 33 ms, like the camera's frames: p50 {paced:.3f} ms; "
              f"whole path / that: {result['path_over_bare_at_30fps']:.2f}×")
    if args.decoded:
        print(f"frames per second: {result['fps']} (decoding excluded; peak RSS and cold start: run without --decoded)")
    else:
        print(f"frames per second: {result['fps']}; peak RSS {result['peak_rss_mb']:.0f} MB; cold start to first "
              f"result {result['cold_start_to_first_result_s']:.2f} s")

if __name__ == "__main__":
    sys.exit(main())
