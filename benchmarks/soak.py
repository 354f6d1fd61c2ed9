#!/usr/bin/env python
"""Memory over a long run with every sink: does `edgeleuk run` keep its RSS flat?

    python benchmarks/soak.py [--minutes 10] [--model DIR] [--size 640x480] [--out FILE.json]

Runs `edgeleuk run --realtime` at 30 frames/s on a recorded clip for --minutes, with the log, the
live view (one browser-like viewer: the MJPEG stream and the status twice a second), publishing
every frame to a Mosquitto started here on 127.0.0.1 (skipped, and said, where none is installed)
and saving every usable frame; reads the run's RSS from /proc every 5 s. Passes when the RSS at the
end is within 10 MB of its value after the first minute. Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from broker import start_broker  # noqa: E402
from pipeline import record_clip, run_env  # noqa: E402
from serve_cost import viewer  # noqa: E402

ALLOWED_GROWTH_MB = 10.0


def _rss_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(found.group(1)) / 1024 if found else None


def _broker(folder: Path) -> tuple[subprocess.Popen | None, str | None]:
    try:
        proc, port = start_broker(folder)
    except FileNotFoundError:
        print("no mosquitto here: the run does not publish (apt install mosquitto)")
        return None, None
    return proc, f"mqtt://127.0.0.1:{port}/soak"


def soak(args, work: Path) -> dict:
    width, height = (int(x) for x in args.size.split("x"))
    clip = work / "clip.avi"
    record_clip(clip, int(args.minutes * 60 * 30) + 60, None, width, height)
    broker, url = _broker(work)
    cmd = [
        sys.executable, "-m", "edgeleuk", "run", "--source", str(clip), "--realtime", "--quiet", "--min-focus", "0",
        "--log", str(work / "run.jsonl"), "--serve", "127.0.0.1:0", "--exit-at-end", "--save-frames",
        str(work / "saved"), "--label", args.label
    ] + (["--model", args.model] if args.model else [])
    if url:
        cmd += ["--publish", url, "--publish-frames", "--device-id", "soak"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=run_env())
    stop, counts = threading.Event(), {"stream_frames": 0, "status_polls": 0}
    for line in proc.stdout:
        found = re.search(r"live view: http://127\.0\.0\.1:(\d+)/", line)
        if found:
            threading.Thread(target=viewer, args=(int(found.group(1)), stop, counts), daemon=True).start()
            break
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # drained, never blocking the run
    start, samples = time.monotonic(), []
    while proc.poll() is None:
        rss = _rss_mb(proc.pid)
        if rss is not None:
            samples.append((round(time.monotonic() - start, 1), round(rss, 2)))
        time.sleep(5)
    stop.set()
    if broker is not None:
        broker.terminate()
        broker.wait(timeout=30)
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise SystemExit(f"edgeleuk run failed (exit {proc.returncode}): {err[-1500:]}")
    records = [json.loads(x) for x in (work / "run.jsonl").read_text().splitlines()]
    at_one = next(r for t, r in samples if t >= 60)
    end = samples[-1][1]
    return {
        "minutes": args.minutes,
        "size": args.size,
        "frames_logged": sum("frame" in r for r in records),
        "published": url is not None,
        "saved_frames": sum(1 for _ in (work / "saved").rglob("*.jpg")),
        "viewer": counts,
        "rss_mb_at_minute_one": at_one,
        "rss_mb_at_end": end,
        "rss_mb_max": max(r for _, r in samples),
        "growth_mb": round(end - at_one, 2),
        "passed": end - at_one <= ALLOWED_GROWTH_MB,
        "rss_mb_every_5s": samples,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--model", help="conversion folder or model file (default: the packaged model)")
    p.add_argument("--label", default="Benign", help="the class the saved frames are filed under (one of the model's)")
    p.add_argument("--size", default="640x480", help="the clip's frame size")
    p.add_argument("--out", help="write the result as JSON here")
    args = p.parse_args()
    if args.minutes < 1.5:
        raise SystemExit("--minutes must be at least 1.5: the first minute is the baseline")
    with tempfile.TemporaryDirectory(prefix="edgeleuk-soak-") as work:
        result = soak(args, Path(work))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rss_mb_every_5s"}, indent=2))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
