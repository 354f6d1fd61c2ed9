"""`edgeleuk collect` and `edgeleuk fleet`: every device's messages into one database, once each, and
the per-device report a laboratory reads (last seen, model, verdicts, refusal share and its drift).

The collector keeps a persistent MQTT session (a fixed client id, clean session off), so the broker
holds QoS 1 messages while it is down; each message is stored (ON CONFLICT DO NOTHING on its id,
which the device chose) and committed before it is acknowledged, so a redelivery after a crash or a
lost acknowledgement changes nothing. A SQLite file by default (stdlib); PostgreSQL by URL through
psycopg 3 (`edgeleuk[postgres]`). No TensorFlow.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from edgeleuk.errors import UserError, missing_package
from edgeleuk.runtime.publish import BrokerAddress, client, refusal

# One dialect for both databases: `?` placeholders (turned into %s for psycopg), ON CONFLICT DO NOTHING,
# DOUBLE PRECISION times (PostgreSQL's REAL is 4 bytes: seconds since 1970 would round to minutes).
SCHEMA = """CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, device TEXT NOT NULL, run TEXT, sample INTEGER,
    model TEXT, model_sha256 TEXT, edgeleuk TEXT, sent_at DOUBLE PRECISION, received_at DOUBLE PRECISION NOT NULL,
    topic TEXT NOT NULL, payload TEXT NOT NULL)"""
INSERT = "INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO NOTHING"


def is_postgres(target: str | Path) -> bool:
    return str(target).startswith(("postgres://", "postgresql://"))


def redacted(url: str) -> str:
    """The URL as it may be printed: without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class Store:
    """The collector's database: a SQLite file, or PostgreSQL by URL. Autocommit: a stored message is
    committed before the broker hears its acknowledgement."""

    def __init__(self, target: str | Path) -> None:
        self.target = str(target)
        self.postgres = is_postgres(target)
        if self.postgres:
            try:
                import psycopg
            except ImportError:
                raise missing_package("psycopg (for a PostgreSQL --db)", "postgres") from None
            self.errors: tuple[type[Exception], ...] = (psycopg.Error,)
            try:  # the password may also come from PGPASSWORD or ~/.pgpass, which libpq reads itself
                self.db = psycopg.connect(self.target, autocommit=True, connect_timeout=10)
                self.db.execute(SCHEMA)
            except psycopg.Error as exc:
                raise UserError(f"cannot open the database {redacted(self.target)} ({_first_line(exc)})") from None
        else:
            self.errors = (sqlite3.Error,)
            try:
                Path(self.target).parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(self.target, isolation_level=None, timeout=30, check_same_thread=False)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute(SCHEMA)
            except (sqlite3.Error, OSError) as exc:
                raise UserError(f"cannot open the database {self.target} ({exc})") from None

    @property
    def name(self) -> str:
        return redacted(self.target)

    def execute(self, sql: str, params: tuple = ()):
        return self.db.execute(sql.replace("?", "%s") if self.postgres else sql, params)

    def close(self) -> None:
        self.db.close()


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class Collector:
    """Subscribes to PREFIX/+/verdict and PREFIX/+/frame and stores each message once."""

    def __init__(self, url: str, db_path: str | Path, client_id: str = "edgeleuk-collector", username: str | None = None,
                 password: str | None = None, ca_file: str | None = None, certfile: str | None = None,
                 keyfile: str | None = None, warn=print) -> None:
        self.address = BrokerAddress.parse(url)
        self.db = Store(db_path)
        self.warn = warn
        self.client = client(client_id, self.address, username, password, ca_file, certfile, keyfile, clean=False)
        self.client.manual_ack_set(True)  # acknowledged only once stored
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.stored = 0
        self.duplicates = 0
        self.refused: str | None = None
        self.db_problem: str | None = None
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
            stored = self._store(row)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            self.warn(f"collect: ignored a malformed message on {message.topic} ({exc})")
        else:
            if stored is None:  # not acknowledged: the broker keeps it for the next start
                return
            if stored:
                self.stored += 1
            else:
                self.duplicates += 1
        client.ack(message.mid, message.qos)

    def _store(self, row: tuple) -> bool | None:
        """True when new, False for a duplicate, None when the database failed (the collector stops)."""
        try:
            return bool(self.db.execute(INSERT, row).rowcount)
        except self.db.errors as exc:
            self.db_problem = f"the database {self.db.name} failed ({_first_line(exc)}); nothing acknowledged is lost"
            return None

    def run(self, seconds: float | None = None) -> None:
        """Until Ctrl-C (or `seconds`); reconnects by itself."""
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        try:
            self.client.connect(self.address.host, self.address.port, keepalive=30)
        except OSError as exc:
            raise UserError(f"collect: broker {self.address.host}:{self.address.port} unreachable ({exc.strerror or exc})") from None
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            link = True
            while deadline is None or time.monotonic() < deadline:
                if not link:  # (not is_connected(): that is False until the CONNACK; a second CONNECT breaks the first)
                    try:
                        self.client.reconnect()
                        link = True
                    except OSError:
                        time.sleep(1.0)
                        continue
                link = self.client.loop(timeout=0.2) == 0
                if self.refused:
                    raise UserError(f"collect: {self.refused}")
                if self.db_problem:
                    raise UserError(f"collect: {self.db_problem}")
                if not link:
                    time.sleep(0.5)
        finally:
            self.client.disconnect()
            self.db.close()


def fleet_report(db_path: str | Path, window: int = 5, drift: float = 0.2) -> list[dict[str, Any]]:
    """Per device: last seen, models, samples and their verdicts, refused and out-of-distribution share
    per sample (with each sample's time), and a drift flag when the last `window` samples' refused or
    out-of-distribution share departs from the device's own earlier history by more than `drift`."""
    db = Store(db_path)
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
            flags = []
            for key, what in (("refused_share", "refused"), ("ood_share", "out-of-distribution")):
                if history and recent:
                    before = sum(s[key] for s in history) / len(history)
                    now = sum(s[key] for s in recent) / len(recent)
                    if abs(now - before) > drift:
                        flags.append(f"{what} share {now:.0%} over the last {len(recent)} samples, {before:.0%} before")
            flag = "; ".join(flags) or None
            report.append({"device": device, "last_seen": last_seen, "model_sha256": models, "samples": len(samples),
                           "verdicts": verdicts, "refused_share_by_sample": [s["refused_share"] for s in samples],
                           "ood_share_by_sample": [s["ood_share"] for s in samples],
                           "sample_times": [s["time"] for s in samples], "drift": flag,
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
