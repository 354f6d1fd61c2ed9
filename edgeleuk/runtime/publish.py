"""`run --publish mqtt://HOST:PORT/PREFIX`: verdicts (and, if asked, every frame's record) to an MQTT
broker, with nothing lost when the network or the broker goes away.

Every message is first committed to a local outbox (SQLite in WAL mode) by the run loop, then sent
by a thread beside it at QoS 1 and deleted only when the broker acknowledges it. A broker down for
minutes, a reboot or a Ctrl-C in between leaves the message in the outbox; the next start sends it.
A message may reach the broker twice (an acknowledgement lost on the way back): each carries an id
that the collector stores once. The run loop never waits on the network.

A broker that crashes (killed, power cut) loses what it acknowledged since its last autosave. So an
acknowledged message stays in the outbox for `resend_window` seconds, and every (re)connect sends
that window again: harmless duplicates, which the collector ignores. Keep the window above the
broker's `autosave_interval` (device/README.md).

Topics are per device: PREFIX/DEVICE/verdict and PREFIX/DEVICE/frame (device/README.md gives a
Mosquitto ACL that keeps each device to its own). paho-mqtt, the Eclipse client.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeleuk.errors import UserError
from edgeleuk.runtime.mqtt_link import BrokerAddress, BrokerLogin, Link, client, refusal
from edgeleuk.runtime.records import RECORD_SCHEMA, SampleStart, SampleSummary

KINDS = ("verdict", "frame")


@dataclass(frozen=True)
class PublishTarget:
    """Where and what a device publishes: the broker's URL, its local queue, its name in the topics."""

    url: str
    queue: Path
    device_id: str
    frames: bool = False  # every frame's record too, not only each sample's verdict
    resend_window: float = 300.0  # seconds an acknowledged message stays queued (see the module's docstring)
    drain_seconds: float = 5.0  # how long close() waits for the queue to empty


class Outbox:
    """Messages on disk until the broker has acknowledged them, and for `resend_window` seconds after."""

    def __init__(self, path: Path, resend_window: float = 300.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.resend_window = resend_window
        try:
            self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # with WAL: a committed row survives a killed process
            self.db.execute("CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, topic TEXT NOT NULL, "
                            "payload TEXT NOT NULL, created REAL NOT NULL, due INTEGER NOT NULL DEFAULT 1, acked REAL)")
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(outbox)")}
            if "due" not in columns:  # a queue written before the resend window: every row is still due
                self.db.execute("ALTER TABLE outbox ADD COLUMN due INTEGER NOT NULL DEFAULT 1")
                self.db.execute("ALTER TABLE outbox ADD COLUMN acked REAL")
            self.db.execute("CREATE INDEX IF NOT EXISTS outbox_due ON outbox (due, created)")
        except sqlite3.Error as exc:
            raise UserError(f"cannot open the publish queue {path} ({exc})") from None
        self.lock = threading.Lock()
        self.problem: str | None = None  # the last write the database refused (a full disk): the publisher reports it

    def _write(self, sql: str, params: tuple = ()) -> int | None:
        """Rows changed, or None when the database refused the write (the caller goes on without it)."""
        try:
            return self.db.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            self.problem = str(exc)
            return None

    def put(self, message_id: str, topic: str, payload: str) -> bool:
        """False when the queue could not take it (a full disk): the message is lost, and counted."""
        with self.lock:
            return (
                self._write(
                    "INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, ?, 1, NULL)",
                    (message_id, topic, payload, time.time())
                )
                is not None
            )

    def pending(self, exclude: set[str], limit: int = 200) -> list[tuple[str, str, str]]:
        with self.lock:
            rows = self.db.execute("SELECT id, topic, payload FROM outbox WHERE due = 1 ORDER BY created LIMIT ?",
                                   (limit + len(exclude),)).fetchall()
        return [r for r in rows if r[0] not in exclude][:limit]

    def acknowledged(self, message_id: str) -> None:
        with self.lock:
            # not written: it stays due and goes out again, which the collector ignores as a duplicate
            if self.resend_window > 0:
                # the first acknowledgement's time: a resent message does not stretch its window
                self._write(
                    "UPDATE outbox SET due = 0, acked = COALESCE(acked, ?) WHERE id = ?", (time.time(), message_id)
                )
            else:
                self._write("DELETE FROM outbox WHERE id = ?", (message_id,))

    def resend_recent(self) -> int:
        """After a (re)connect: what the broker acknowledged within the window goes out again."""
        with self.lock:
            self._forget_old()
            return self._write("UPDATE outbox SET due = 1 WHERE due = 0") or 0

    def forget_old(self) -> None:
        with self.lock:
            self._forget_old()

    def _forget_old(self) -> None:
        self._write("DELETE FROM outbox WHERE due = 0 AND acked < ?", (time.time() - self.resend_window,))

    def count(self) -> int:
        """Messages the broker has not acknowledged yet."""
        with self.lock:
            return int(self.db.execute("SELECT COUNT(*) FROM outbox WHERE due = 1").fetchone()[0])

    def close(self) -> None:
        with self.lock:
            self.db.close()


class Publisher:
    """A run-loop sink: each sample's verdict (and each frame's record when `frames`) goes to the
    outbox at once; a thread sends the outbox to the broker whenever it can."""

    def __init__(
        self, target: PublishTarget, model: dict[str, Any], login: BrokerLogin = BrokerLogin(), warn=print
    ) -> None:
        url, queue, device_id, frames = target.url, target.queue, target.device_id, target.frames
        drain_seconds, resend_window = target.drain_seconds, target.resend_window
        self.address = BrokerAddress.parse(url)
        self.device_id = _check_id(device_id)
        self.model, self.frames, self.drain_seconds, self.warn = model, frames, drain_seconds, warn
        self.run_id = uuid.uuid4().hex[:12]
        self.outbox = Outbox(queue, resend_window)
        self.client = client(f"edgeleuk-{self.device_id}", self.address, login)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.connected = threading.Event()
        self.stop = threading.Event()
        self.inflight: dict[int, str] = {}  # paho message id → outbox id, until its PUBACK
        self.inflight_lock = threading.Lock()
        self.last_problem: str | None = None
        self.retry_after = 0.0
        self.refusal_warned = False
        self.sent = 0
        self.resent = 0
        self.frame_count = 0
        self.lost, self.lost_last = 0, False  # messages the queue could not take; the final verdict among them
        self.thread = threading.Thread(target=self._loop, name="edgeleuk-publish", daemon=True)
        self.thread.start()

    @property
    def topic_base(self) -> str:
        return f"{self.address.prefix}/{self.device_id}"

    # --- the sink: the loop's thread; one SQLite insert, never the network -----------------------
    def _put(self, kind: str, body: dict, message_id: str) -> None:
        from edgeleuk import __version__

        payload = {"id": message_id, "kind": kind, "device": self.device_id, "run": self.run_id,
                   "model": self.model.get("name"), "model_sha256": self.model.get("sha256"), "edgeleuk": __version__,
                   "sent_at": time.time(), "schema_version": RECORD_SCHEMA, **body}
        if not self.outbox.put(message_id, f"{self.topic_base}/{kind}", json.dumps(payload)):
            self.lost += 1
            if self.lost == 1:  # once: the run goes on classifying, and close() says how many
                self.warn(
                    f"publish: the queue cannot take messages ({self.outbox.problem}); they are lost until it can"
                )

    def frame(self, result, verdict, summary) -> None:
        if self.frames:
            self.frame_count += 1
            self._put("frame", {"sample": result.record.sample, "record": result.record.as_json()},
                      f"{self.device_id}:{self.run_id}:f{self.frame_count}")

    def sample(self, record: SampleSummary | SampleStart) -> None:
        if isinstance(record, SampleSummary) and record.event == "sample_end":
            self._put("verdict", {"sample": record.sample, "summary": record.as_json()},
                      f"{self.device_id}:{self.run_id}:s{record.sample}")

    def close(self, record: SampleSummary) -> None:
        lost = self.lost
        self._put("verdict", {"sample": record.sample, "summary": record.as_json(), "final": True},
                  f"{self.device_id}:{self.run_id}:s{record.sample}")
        self.lost_last = self.lost > lost
        deadline = time.monotonic() + self.drain_seconds
        # still connecting (a TLS handshake) is worth the wait; a refusal or an unreachable broker is not
        while self.outbox.count() and time.monotonic() < deadline and self.last_problem is None:
            time.sleep(0.05)
        self.stop.set()
        self.thread.join(timeout=5)
        left = self.outbox.count()
        if self.lost:
            self.warn(f"publish: {self.lost} message(s) could not be queued ({self.outbox.problem}) and were not sent"
                      + (", this run's last verdict among them" if self.lost_last else ""))
        if left:
            self.warn(
                f"publish: {left} message(s) kept in the queue for the next start "
                f"({self.last_problem or 'broker not reached'})"
            )
        self.outbox.close()

    # --- the sender: its own thread ---------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason, properties=None) -> None:
        if reason.is_failure:
            self.last_problem = refusal(reason)
            self.retry_after = time.monotonic() + 5.0  # a refusal is not a network blip: do not hammer the broker
            if not self.refusal_warned:
                self.warn(f"publish: {self.last_problem}; classifying goes on, messages wait in the queue")
                self.refusal_warned = True
            return
        self.last_problem = None
        self.resent += self.outbox.resend_recent()
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason, properties=None) -> None:
        self.connected.clear()
        with self.inflight_lock:
            self.inflight.clear()  # unacknowledged: sent again after the reconnect (the collector keeps one)

    def _on_publish(self, client, userdata, mid, reason=None, properties=None) -> None:
        with self.inflight_lock:
            message_id = self.inflight.pop(mid, None)
        if message_id is not None:
            self.outbox.acknowledged(message_id)
            self.sent += 1

    def _loop(self) -> None:
        link, warned = Link(self.client, self.address), False
        tidied = time.monotonic()
        while not self.stop.is_set():
            if time.monotonic() - tidied > 10:
                self.outbox.forget_old()
                tidied = time.monotonic()
            if time.monotonic() < self.retry_after:
                self.stop.wait(0.2)
                continue
            problem = link.step(0.05)
            if problem is not None:
                self.last_problem = problem
                if not warned:
                    self.warn(f"publish: {problem}; classifying goes on, messages wait in the queue")
                    warned = True
                self.stop.wait(1.0)
                continue
            warned = False
            if not link.up:
                self.stop.wait(0.5)
            elif self.connected.is_set():
                self._send_due()
        link.close()

    def _send_due(self) -> None:
        """Queue what is due and not in flight, up to 100 unacknowledged at a time."""
        with self.inflight_lock:
            busy = set(self.inflight.values())
        for message_id, topic, payload in self.outbox.pending(busy, limit=max(0, 100 - len(busy))):
            info = self.client.publish(topic, payload, qos=1)
            if info.rc != 0:
                break
            with self.inflight_lock:
                self.inflight[info.mid] = message_id


def _check_id(device_id: str) -> str:
    if not device_id or any(c in device_id for c in "/+#") or len(device_id) > 64:
        raise UserError(f"Received: device id {device_id!r}; expected 1-64 characters without /, + or #")
    return device_id
