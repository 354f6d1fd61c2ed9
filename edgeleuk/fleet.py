"""`edgeleuk collect` and `edgeleuk fleet`: every device's messages into one database, once each, and
the per-device report a laboratory reads (last seen, model, verdicts, refusal share and its drift).

The collector keeps a persistent MQTT session (a fixed client id, clean session off), so the broker
holds QoS 1 messages while it is down; each message is stored (INSERT OR IGNORE on its id, which the
device chose) and committed before it is acknowledged, so a redelivery after a crash or a lost
acknowledgement changes nothing. SQLite by default (stdlib); no TensorFlow.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from edgeleuk.errors import UserError
from edgeleuk.runtime.publish import BrokerAddress, client, refusal

SCHEMA = """CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, device TEXT NOT NULL, run TEXT, sample INTEGER,
    model TEXT, model_sha256 TEXT, edgeleuk TEXT, sent_at REAL, received_at REAL NOT NULL, topic TEXT NOT NULL,
    payload TEXT NOT NULL)"""


def open_db(path: str | Path) -> sqlite3.Connection:
    text = str(path)
    if text.startswith(("postgres://", "postgresql://")):
        raise UserError("PostgreSQL is not supported yet: use a SQLite file (--db fleet.sqlite)")
    try:
        Path(text).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(text, isolation_level=None, timeout=30, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(SCHEMA)
    except (sqlite3.Error, OSError) as exc:
        raise UserError(f"cannot open the database {text} ({exc})") from None
    return db


class Collector:
    """Subscribes to PREFIX/+/verdict and PREFIX/+/frame and stores each message once."""

    def __init__(self, url: str, db_path: str | Path, client_id: str = "edgeleuk-collector", username: str | None = None,
                 password: str | None = None, ca_file: str | None = None, certfile: str | None = None,
                 keyfile: str | None = None, warn=print) -> None:
        self.address = BrokerAddress.parse(url)
        self.db = open_db(db_path)
        self.warn = warn
        self.client = client(client_id, self.address, username, password, ca_file, certfile, keyfile, clean=False)
        self.client.manual_ack_set(True)  # acknowledged only once stored
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.stored = 0
        self.duplicates = 0
        self.refused: str | None = None
        self.ready = threading.Event()

    def _on_connect(self, client, userdata, flags, reason, properties=None) -> None:
        if reason.is_failure:
            self.refused = refusal(reason)
            self.warn(f"collect: {self.refused}")
            return
        client.subscribe([(f"{self.address.prefix}/+/verdict", 1), (f"{self.address.prefix}/+/frame", 1)])
        self.ready.set()

    def _on_message(self, client, userdata, message) -> None:
        try:
            body = json.loads(message.payload)
            device_from_topic = message.topic.split("/")[-2]
            if body.get("device") != device_from_topic:  # a device may only speak for itself (the ACL enforces it at the broker)
                raise ValueError(f"device {body.get('device')!r} on {message.topic}")
            row = (body["id"], body["kind"], body["device"], body.get("run"), body.get("sample"), body.get("model"),
                   body.get("model_sha256"), body.get("edgeleuk"), body.get("sent_at"), time.time(), message.topic,
                   message.payload.decode())
            cursor = self.db.execute("INSERT OR IGNORE INTO messages VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", row)
            if cursor.rowcount:
                self.stored += 1
            else:
                self.duplicates += 1
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            self.warn(f"collect: ignored a malformed message on {message.topic} ({exc})")
        client.ack(message.mid, message.qos)

    def run(self, seconds: float | None = None) -> None:
        """Until Ctrl-C (or `seconds`); reconnects by itself."""
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        try:
            self.client.connect(self.address.host, self.address.port, keepalive=30)
        except OSError as exc:
            raise UserError(f"collect: broker {self.address.host}:{self.address.port} unreachable ({exc.strerror or exc})") from None
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            while deadline is None or time.monotonic() < deadline:
                self.client.loop(timeout=0.2)
                if self.refused:
                    raise UserError(f"collect: {self.refused}")
                if not self.client.is_connected():
                    try:
                        self.client.reconnect()
                    except OSError:
                        time.sleep(1.0)
        finally:
            self.client.disconnect()
            self.db.close()


def fleet_report(db_path: str | Path, window: int = 5, drift: float = 0.2) -> list[dict[str, Any]]:
    """Per device: last seen, models, samples and their verdicts, refused and out-of-distribution share
    per sample, and a drift flag when the last `window` samples' refused share departs from the
    device's own earlier history by more than `drift`."""
    db = open_db(db_path)
    try:
        devices = [r[0] for r in db.execute("SELECT DISTINCT device FROM messages ORDER BY device")]
        report = []
        for device in devices:
            last_seen = db.execute("SELECT MAX(received_at) FROM messages WHERE device = ?", (device,)).fetchone()[0]
            models = [r[0] for r in db.execute("SELECT DISTINCT model_sha256 FROM messages WHERE device = ? AND model_sha256 IS NOT NULL", (device,))]
            rows = db.execute("SELECT payload FROM messages WHERE device = ? AND kind = 'verdict' ORDER BY sent_at", (device,)).fetchall()
            samples = []
            for (payload,) in rows:
                s = json.loads(payload)["summary"]
                seen = max(int(s.get("frames_seen", 0)), 1)
                refused = sum(s.get("frames_rejected", {}).values()) / seen
                ood = s.get("frames_out_of_distribution", 0) / seen
                samples.append({"time": s.get("time"), "decision": s["verdict"]["decision"], "frames": s.get("frames_seen", 0),
                                "refused_share": round(refused, 4), "ood_share": round(ood, 4)})
            verdicts: dict[str, int] = {}
            for s in samples:
                verdicts[s["decision"]] = verdicts.get(s["decision"], 0) + 1
            recent, history = samples[-window:], samples[:-window]
            flag = None
            if history and recent:
                before = sum(s["refused_share"] for s in history) / len(history)
                now = sum(s["refused_share"] for s in recent) / len(recent)
                if abs(now - before) > drift:
                    flag = f"refused share {now:.0%} over the last {len(recent)} samples, {before:.0%} before"
            report.append({"device": device, "last_seen": last_seen, "model_sha256": models, "samples": len(samples),
                           "verdicts": verdicts, "refused_share_by_sample": [s["refused_share"] for s in samples],
                           "ood_share_by_sample": [s["ood_share"] for s in samples], "drift": flag,
                           "frame_records": db.execute("SELECT COUNT(*) FROM messages WHERE device = ? AND kind = 'frame'",
                                                       (device,)).fetchone()[0]})
        return report
    finally:
        db.close()


def format_report(report: list[dict[str, Any]]) -> str:
    lines = ["| device | last seen (UTC) | model sha256 | samples | verdicts | refused share (last) | drift |", "|---|---|---|---|---|---|---|"]
    for r in report:
        seen = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["last_seen"])) if r["last_seen"] else "never"
        verdicts = ", ".join(f"{k} {v}" for k, v in r["verdicts"].items()) or "none"
        last = f"{r['refused_share_by_sample'][-1]:.0%}" if r["refused_share_by_sample"] else "–"
        models = ", ".join(m[:12] for m in r["model_sha256"]) or "?"
        lines.append(f"| {r['device']} | {seen} | {models} | {r['samples']} | {verdicts} | {last} | {r['drift'] or 'no'} |")
    return "\n".join(lines)
