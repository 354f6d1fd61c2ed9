#!/usr/bin/env python
"""The fleet under load: a local Mosquitto, the real `edgeleuk collect`, and D devices' messages.

    python benchmarks/fleet_load.py                          # 10, 100 and 1,000 devices, SQLite
    python benchmarks/fleet_load.py --db postgresql://…      # the same into PostgreSQL
    python benchmarks/fleet_load.py --report-rows 1000000    # also: the report on a million rows

Each device sends frame records shaped like `run --publish --publish-frames`'s (unique ids), at full
speed from one publishing client. Printed per device count: the ingest rate (first message sent to
the last one stored), messages lost and stored twice, the collector's peak RSS; then, with the
collector stopped while the same number arrive, the drain time once it starts again. `--report-rows`
fills a database directly and times `edgeleuk fleet` on it.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from broker import start_broker  # noqa: E402
from edgeleuk.fleet import INSERT, Store, is_postgres  # noqa: E402
from edgeleuk.runtime.lines import RECORD_SCHEMA  # noqa: E402

EXE = [sys.executable, "-m", "edgeleuk"]


def broker(folder: Path) -> tuple[subprocess.Popen, int]:
    """Mosquitto with device/mosquitto.conf's persistence, queue and in-flight settings."""
    shipped = [line for line in (HERE.parent / "device" / "mosquitto.conf").read_text().splitlines()
               if line.startswith(("max_queued", "persistence ", "autosave", "max_inflight"))]
    return start_broker(folder, shipped)


def collector(url: str, db: str) -> subprocess.Popen:
    proc = subprocess.Popen([*EXE, "collect", url, "--db", db, "--client-id", "bench-collector"],
                            stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if "collect: subscribed to" in line:
            return proc
    raise SystemExit("the collector did not subscribe")


def payloads(devices: int, n: int, tag: str) -> list[tuple[str, bytes]]:
    """`n` frame messages from `devices` devices, round-robin, each with its own id."""
    out = []
    for i in range(n):
        device = f"scope-{i % devices:04d}"
        record = {"time": "2026-12-08T00:00:00.000+00:00", "source": "camera0", "frame": i, "sample": 1,
                  "quality": {"usable": True, "reason": None, "focus": 120.5, "brightness": 201.3},
                  "class": "Pre", "confidence": 0.97, "in_distribution": True, "ood_score": 0.41,
                  "probabilities": {"Benign": 0.01, "Early": 0.01, "Pre": 0.97, "Pro": 0.01},
                  "latency_ms": {"total": 2.7, "inference": 1.9}, "schema_version": RECORD_SCHEMA}
        body = {"id": f"{device}:{tag}:f{i}", "kind": "frame", "device": device, "run": tag, "sample": 1,
                "model": "default", "model_sha256": "ab" * 32, "edgeleuk": "0.1.0", "sent_at": time.time(),
                "schema_version": RECORD_SCHEMA, "record": record}
        out.append((f"bench/{device}/frame", json.dumps(body).encode()))
    return out


def publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-devices-{os.getpid()}")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    infos = [c.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(timeout=600)
    c.loop_stop()
    c.disconnect()


def count(db: str, run: str) -> tuple[int, int]:
    """Rows of this run, and distinct ids among them."""
    store = Store(db)
    try:
        row = store.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM messages WHERE run = ?", (run,)).fetchone()
        return int(row[0]), int(row[1])
    finally:
        store.close()


def stored_so_far(db: str, run: str) -> int:
    """Rows stored so far, read cheaply so that polling takes no time from the collector: a SQLite
    phase has a database of its own, whose last rowid is its row count (a duplicate adds no row)."""
    if is_postgres(db):
        return count(db, run)[0]
    con = sqlite3.connect(db, timeout=30)
    try:
        return int(con.execute("SELECT MAX(rowid) FROM messages").fetchone()[0] or 0)
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        con.close()


def wait_stored(db: str, run: str, n: int, timeout: float) -> tuple[float, int, int]:
    """When the last of `n` messages was stored, then the exact rows and distinct ids."""
    deadline = time.monotonic() + timeout
    while stored_so_far(db, run) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    done = time.monotonic()
    return (done, *count(db, run))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_load(port: int, target: str, devices: int, n: int) -> dict:
    """Full speed into a running collector, then the same number while it is stopped. `target`: a
    PostgreSQL URL, or the stem of one SQLite file per phase."""
    url = f"mqtt://127.0.0.1:{port}/bench"
    db = target if is_postgres(target) else f"{target}-live{devices}.sqlite"
    proc = collector(url, db)
    live = payloads(devices, n, f"live{devices}")
    start = time.monotonic()
    publish(port, live)
    end, rows, distinct = wait_stored(db, f"live{devices}", n, 600)
    rss = peak_rss_mb(proc.pid)
    proc.terminate()
    proc.wait(timeout=30)
    publish(port, payloads(devices, n, f"off{devices}"))  # the collector is down: the broker queues them
    db = target if is_postgres(target) else f"{target}-off{devices}.sqlite"
    restart = time.monotonic()
    proc = collector(url, db)
    drained, off_rows, off_distinct = wait_stored(db, f"off{devices}", n, 600)
    proc.terminate()
    proc.wait(timeout=30)
    return {"devices": devices, "messages": n, "ingest_per_s": round(rows / (end - start)), "lost": n - distinct,
            "duplicates": rows - distinct, "collector_peak_rss_mb": round(rss, 1),
            "offline_lost": n - off_distinct, "offline_duplicates": off_rows - off_distinct,
            "drain_s": round(drained - restart, 2)}


def report_time(db: str, devices: int, rows: int) -> dict:
    """`rows` messages of `devices` devices written straight into a fresh database, then `fleet` timed."""
    store = Store(db)
    batch = []
    for i in range(rows):
        device = f"dev-{i % devices:04d}"
        kind = "verdict" if i % 100 == 0 else "frame"
        body = (
            {
                "summary": {
                    "frames_seen": 100,
                    "frames_rejected": {"out of focus": 3},
                    "frames_out_of_distribution": 1,
                    "verdict": {"decision": "Pre"},
                }
            }
            if kind == "verdict"
            else {}
        )
        batch.append((INSERT, (f"{device}:r:{i}", kind, device, "r", 1, "m", "ab" * 32, "0", float(i), float(i),
                               f"lab/{device}/{kind}", json.dumps(body))))
        if len(batch) == 10_000:
            store.store(batch)
            batch = []
    store.store(batch)
    store.close()
    start = time.monotonic()
    subprocess.run([*EXE, "fleet", "--db", db], capture_output=True, check=True)
    return {"devices": devices, "rows": rows, "report_s": round(time.monotonic() - start, 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", default="10,100,1000", help="device counts, comma-separated")
    p.add_argument("--messages", type=int, default=20_000, help="messages per device count (default 20,000)")
    p.add_argument("--db", help="a postgresql:// URL (default: a fresh SQLite file)")
    p.add_argument("--report-rows", type=int, default=0, help="also time the report on this many rows")
    p.add_argument("--out", default="runs/fleet_load.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        mosquitto, port = broker(Path(tmp))
        try:
            db = args.db or str(Path(tmp) / "fleet")
            rows = [one_load(port, db, int(d), args.messages) for d in args.devices.split(",")]
        finally:
            mosquitto.terminate()
            mosquitto.wait(timeout=30)  # it writes its persistence file as it stops, into the folder
        reports = []
        if args.report_rows:
            for devices in (100, 1000):
                target = args.db if args.db and is_postgres(args.db) else str(Path(tmp) / f"report{devices}.sqlite")
                reports.append(report_time(target, devices, args.report_rows))
    backend = "postgresql" if args.db else "sqlite"
    for r in rows:
        print(f"{backend}: {r['devices']} devices, {r['messages']} messages: {r['ingest_per_s']}/s, lost {r['lost']}, "
              f"twice {r['duplicates']}, collector RSS {r['collector_peak_rss_mb']} MB; collector offline: lost "
              f"{r['offline_lost']}, drained in {r['drain_s']} s")
    for r in reports:
        print(f"{backend}: report on {r['rows']:,} rows of {r['devices']} devices: {r['report_s']} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"backend": backend, "loads": rows, "reports": reports}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
