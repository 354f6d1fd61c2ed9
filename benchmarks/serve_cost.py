"""`pipeline.py --serve` and `--publish`: what a live view with one viewer, or publishing every
frame's record, costs the run loop; runs with and without, alternated."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import threading
from pathlib import Path

import numpy as np

from edgeleuk.files import atomic_write_text
from pipeline import run_command, run_env


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
