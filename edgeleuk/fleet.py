"""`edgeleuk collect`: every device's messages into one database, once each (fleet_report.py reads it).

The collector keeps a persistent MQTT session (a fixed client id, clean session off), so the broker
holds QoS 1 messages while it is down. Messages are stored in batches, one transaction each (up to
BATCH messages, or what arrived within BATCH_SECONDS), and acknowledged only after their batch
committed: a collector killed mid-batch has acknowledged nothing of it, and the broker sends it again.
Each message is stored once (ON CONFLICT DO NOTHING on its id, which the device chose), so a
redelivery changes nothing. A SQLite file by default (stdlib; WAL, each commit synced to disk);
PostgreSQL by URL through psycopg 3 (`edgeleuk[postgres]`). No TensorFlow.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from edgeleuk.errors import UserError, missing_package
from edgeleuk.messages import Rejected, parse, printable
from edgeleuk.runtime.mqtt_link import BrokerAddress, BrokerLogin, Link, client, refusal

# One dialect for both databases: `?` placeholders (turned into %s for psycopg), ON CONFLICT DO NOTHING,
# DOUBLE PRECISION times (PostgreSQL's REAL is 4 bytes: seconds since 1970 would round to minutes).
# `rejected` holds what failed messages.parse, with the reason, once per topic and payload.
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, device TEXT NOT NULL, run TEXT, sample INTEGER,
    model TEXT, model_sha256 TEXT, edgeleuk TEXT, sent_at DOUBLE PRECISION, received_at DOUBLE PRECISION NOT NULL,
    topic TEXT NOT NULL, payload TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rejected (
    key TEXT PRIMARY KEY, received_at DOUBLE PRECISION NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL,
    payload TEXT NOT NULL)""",
    # the report's reads: every device's models, frames and latest message from the index alone, and
    # the verdicts without the frames
    "CREATE INDEX IF NOT EXISTS messages_device ON messages (device, received_at, model_sha256, kind)",
    # partial: only the verdicts (about one message in a hundred with frames published) pay for it
    "CREATE INDEX IF NOT EXISTS messages_verdicts ON messages (device, received_at) WHERE kind = 'verdict'",
)
INSERT = "INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO NOTHING"
REJECT = "INSERT INTO rejected VALUES (?,?,?,?,?) ON CONFLICT (key) DO NOTHING"
KEPT_BYTES = 4096  # of a rejected payload: enough to see what it was
BATCH = 200  # messages committed (and then acknowledged) together: one disk sync for all of them
BATCH_SECONDS = 0.03  # the longest a message waits for its batch


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
                for statement in SCHEMA:
                    self.db.execute(statement)
            except psycopg.Error as exc:
                raise UserError(f"cannot open the database {redacted(self.target)} ({_first_line(exc)})") from None
        else:
            self.errors = (sqlite3.Error,)
            try:
                Path(self.target).parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(self.target, isolation_level=None, timeout=30, check_same_thread=False)
                self.db.execute("PRAGMA journal_mode=WAL")
                for statement in SCHEMA:
                    self.db.execute(statement)
            except (sqlite3.Error, OSError) as exc:
                raise UserError(f"cannot open the database {self.target} ({exc})") from None

    @property
    def name(self) -> str:
        return redacted(self.target)

    def execute(self, sql: str, params: tuple = ()):
        return self.db.execute(sql.replace("?", "%s") if self.postgres else sql, params)

    def store(self, rows: list[tuple[str, tuple]]) -> list[bool]:
        """Each (statement, row) in one transaction; for each, whether it added a row (False: a duplicate).
        On an error nothing of the batch is kept, and the error is raised."""
        if self.postgres:
            with self.db.transaction():
                return [bool(self.execute(sql, row).rowcount) for sql, row in rows]
        self.db.execute("BEGIN")
        try:
            added = [bool(self.db.execute(sql, row).rowcount) for sql, row in rows]
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        return added

    def close(self) -> None:
        self.db.close()


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class Collector:
    """Subscribes to PREFIX/+/verdict and PREFIX/+/frame and stores each message once."""

    def __init__(
        self, url: str, db_path: str | Path, client_id: str = "edgeleuk-collector",
        login: BrokerLogin = BrokerLogin(), warn=None
    ) -> None:
        self.address = BrokerAddress.parse(url)
        self.db = Store(db_path)
        self.warn = warn or (lambda text: print(text, flush=True))  # a line a service's journal shows at once
        self.client = client(client_id, self.address, login, clean=False)
        self.client.manual_ack_set(True)  # acknowledged only once stored
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.counts = {"stored": 0, "duplicates": 0, "rejected": 0}
        self.pending: list[tuple[str, tuple, object, str | None]] = []  # stored at the next commit, then acknowledged
        self.pending_since = 0.0
        self.arrived = 0  # messages read off the socket so far
        self.refused: str | None = None
        self.db_problem: str | None = None
        self.ready = threading.Event()

    def _on_connect(self, client, userdata, flags, reason, properties=None) -> None:
        if reason.is_failure:
            self.refused = refusal(reason)
            self.warn(f"collect: {self.refused}")
            return
        client.subscribe([(f"{self.address.prefix}/+/verdict", 1), (f"{self.address.prefix}/+/frame", 1)])

    def _on_subscribe(self, client, userdata, mid, reasons, properties=None) -> None:
        if any(r.is_failure for r in reasons):
            self.refused = (
                f"the broker refused the subscription to {self.address.prefix}/+/verdict and /frame (its ACL?)"
            )
            return
        # the ready line: from here on the broker queues this client id's messages while it is away
        if not self.ready.is_set():
            self.warn(f"collect: subscribed to {self.address.prefix}/+/verdict and /frame")
        self.ready.set()

    def _on_message(self, client, userdata, message) -> None:
        received = time.time()
        try:
            m = parse(message.payload, message.topic)
        except Rejected as exc:  # set aside with its reason, acknowledged: a poison message never comes back
            key = hashlib.sha256(message.topic.encode() + b"\0" + message.payload).hexdigest()
            text = message.payload[:KEPT_BYTES].decode("utf-8", errors="replace")
            note = f"collect: set aside a message on {printable(message.topic[:200])} ({exc})"
            self._queue(REJECT, (key, received, message.topic, str(exc), text), message, note)
        else:
            row = (m.id, m.kind, m.device, m.run, m.sample, m.model, m.model_sha256, m.edgeleuk, m.sent_at, received,
                   message.topic, message.payload.decode())
            self._queue(INSERT, row, message, None)

    def _queue(self, sql: str, row: tuple, message, note: str | None) -> None:
        self.arrived += 1
        if not self.pending:
            self.pending_since = time.monotonic()
        self.pending.append((sql, row, message, note))
        if len(self.pending) >= BATCH:
            self.flush()

    def _read_more(self, arrived: int) -> None:
        """paho's loop reads one packet per select(): while messages keep coming, read on without one."""
        while self.arrived > arrived and len(self.pending) < BATCH and not self.db_problem:
            arrived = self.arrived
            if self.client.loop_read() != 0:
                return

    def flush(self) -> None:
        """Commit what is pending, then acknowledge it. A failed database acknowledges nothing: the
        broker keeps those messages for the next start (and the collector stops)."""
        if not self.pending or self.db_problem:
            return
        batch, self.pending = self.pending, []
        try:
            added = self.db.store([(sql, row) for sql, row, _, _ in batch])
        except self.db.errors as exc:
            self.db_problem = f"the database {self.db.name} failed ({_first_line(exc)}); nothing acknowledged is lost"
            return
        for (sql, _, message, note), new in zip(batch, added):
            if sql is REJECT:
                if new:
                    self.counts["rejected"] += 1
                    self.warn(note)
            else:
                self.counts["stored" if new else "duplicates"] += 1
            self.client.ack(message.mid, message.qos)

    def run(self, seconds: float | None = None) -> None:
        """Until Ctrl-C (or `seconds`); reconnects by itself. An unreachable broker at the start is an error."""
        link = Link(self.client, self.address)
        problem = link.step(0.2)
        if problem is not None:
            self.db.close()
            raise UserError(f"collect: {problem}")
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            while deadline is None or time.monotonic() < deadline:
                arrived = self.arrived
                if link.step(0.002 if self.pending else 0.2) is not None:
                    time.sleep(1.0)
                    continue
                if link.up:
                    self._read_more(arrived)
                # commit when the batch is full (in _queue), old enough, or nothing more came: the broker
                # sends only so many unacknowledged messages (max_inflight_messages), then waits
                if self.pending and (self.arrived == arrived or time.monotonic() - self.pending_since >= BATCH_SECONDS):
                    self.flush()
                if self.refused:
                    raise UserError(f"collect: {self.refused}")
                if self.db_problem:
                    raise UserError(f"collect: {self.db_problem}")
                if not link.up:
                    time.sleep(0.5)
            self.flush()  # the end of --seconds: what arrived is stored and acknowledged
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM from a service stop: the same
            self.flush()
            raise
        finally:
            link.close()
            self.db.close()
