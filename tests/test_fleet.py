"""Publishing to MQTT, collecting and the fleet report, against a real Mosquitto started here on
127.0.0.1 (Debian's package, which tests/system-packages.sh installs; skipped with the reason where it is absent):
the broker stopped and restarted mid-run, the device killed and restarted, the collector restarted,
ten devices at once, a wrong password and an unreachable broker."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest

from conftest import LABELS, cli, smear

pytest.importorskip("paho.mqtt", reason="publishing needs edgeleuk[publish] (paho-mqtt)")
EXE = Path(sys.executable).with_name("edgeleuk")


def _mosquitto() -> str:
    found = shutil.which("mosquitto") or (Path("/usr/sbin/mosquitto").is_file() and "/usr/sbin/mosquitto")
    if not found:
        pytest.skip("needs Eclipse Mosquitto: sh tests/system-packages.sh (as root) installs it")
    return str(found)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A Mosquitto on 127.0.0.1 with persistence (a restart keeps the collector's session and queue).
    `tls`: the certificate folder of `certificates()`; clients must show a certificate, whose name is
    their username, and the ACL of device/README.md keeps each device to its own topics."""

    def __init__(
        self, folder: Path, password: tuple[str, str] | None = None, autosave: int = 1, tls: Path | None = None,
        queue: list[str] | None = None
    ):
        self.exe, self.folder, self.port = _mosquitto(), folder, _free_port()
        self.tls = tls
        folder.mkdir(parents=True, exist_ok=True)
        import getpass

        # `user`: started as root, mosquitto would switch to its own user, which cannot read this folder
        lines = [
            f"listener {self.port} 127.0.0.1", f"user {getpass.getuser()}", "persistence true",
            f"persistence_location {folder}/", f"autosave_interval {autosave}",
            *(["max_queued_messages 100000"] if queue is None else queue)
        ]
        if tls:
            (folder / "acl").write_text(ACL)
            lines += [
                f"cafile {tls}/ca.crt", f"certfile {tls}/broker.crt", f"keyfile {tls}/broker.key",
                "require_certificate true", "use_identity_as_username true", f"acl_file {folder}/acl"
            ]
        elif password:
            pw = folder / "passwd"
            subprocess.run(
                [shutil.which("mosquitto_passwd") or "mosquitto_passwd", "-b", "-c", str(pw), *password], check=True
            )
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        (folder / "mosquitto.conf").write_text("\n".join(lines) + "\n")
        self.proc = None
        self.start()

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}/lab"

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.folder / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("mosquitto did not start")

    def stop(self, crash: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            # SIGTERM: it writes its persistence file, as a service stop does; SIGKILL: a crash or power cut
            self.proc.send_signal(signal.SIGKILL if crash else signal.SIGTERM)
            self.proc.wait(timeout=10)


# The ACL device/README.md documents (there with the prefix `lab` too)
ACL = """pattern write lab/%u/#
user collector
topic read lab/#
"""


def certificates(folder: Path) -> Path:
    """A laboratory CA, the broker's certificate for 127.0.0.1 and client certificates (openssl)."""
    openssl = shutil.which("openssl") or pytest.skip("needs the openssl command to make test certificates")
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=folder)

    for ca in ("ca", "other-ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=edgeleuk test {ca}",
            "-keyout", f"{ca}.key", "-out", f"{ca}.crt")
    for name in ("broker", "scope-a", "scope-b", "collector"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name if name != 'broker' else '127.0.0.1'}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr")
        (folder / f"{name}.ext").write_text(
            "subjectAltName=IP:127.0.0.1\n" if name == "broker" else "extendedKeyUsage=clientAuth\n"
        )
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", f"{name}.ext", "-out", f"{name}.crt")
    return folder


def tls_config(path: Path, certs: Path, name: str, ca: str = "ca") -> Path:
    path.write_text(
        f'[publish]\nca_file = "{certs}/{ca}.crt"\ncertfile = "{certs}/{name}.crt"\nkeyfile = "{certs}/{name}.key"\n'
        f'queue = "{path.with_suffix(".outbox")}"\n'
    )  # each its own device
    path.chmod(0o600)
    return path


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker")
    yield b
    b.stop()


class CollectorProcess:
    def __init__(
        self, url: str, db: Path | str, seconds: float = 120, config: Path | None = None, env: dict | None = None
    ):
        self.db = db
        self.proc = subprocess.Popen(
            [str(EXE), "collect", url, "--db", str(db), "--seconds", str(seconds)]
            + (["--config", str(config)] if config else []),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines = []
        for line in self.proc.stdout:  # its ready line: subscribed, the broker queues for its client id from here on
            self.lines.append(line)
            if "collect: subscribed to" in line:
                break
        else:
            raise AssertionError(
                f"the collector never subscribed: {''.join(self.lines)}{self.proc.stderr.read()[-1500:]}"
            )

    def stop(self, kill: bool = False) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.proc.wait(timeout=20)


def _ids(db: Path, kind: str = "frame") -> list[str]:
    if not db.exists():
        return []
    con = sqlite3.connect(str(db), timeout=30)
    try:
        return [r[0] for r in con.execute("SELECT id FROM messages WHERE kind = ?", (kind,))]
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def _wait_for(db: Path, n: int, kind: str = "frame", seconds: float = 40) -> list[str]:
    deadline = time.time() + seconds
    ids = _ids(db, kind)
    while len(ids) < n and time.time() < deadline:
        time.sleep(0.2)
        ids = _ids(db, kind)
    return ids


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fleetclip") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (160, 120))
    frames = [cv2.resize(smear(label, 60 + k), (160, 120)) for k, label in enumerate(LABELS)]
    for i in range(30 * 8):
        writer.write(frames[(i // 10) % 4])
    writer.release()
    return path


def _run(converted, source, tmp_path, url, *extra, realtime=True, name="run"):
    return subprocess.Popen(
        [
            str(EXE), "run", "--model", str(converted), "--source", str(source), "--min-focus", "0", "--quiet",
            "--log", str(tmp_path / f"{name}.jsonl"), "--publish", url, "--publish-frames", "--device-id", "scope-a",
            *(["--realtime"] if realtime else []), *extra
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _frame_lines(log: Path) -> int:
    return sum('"frame"' in line and '"event"' not in line for line in log.read_text().splitlines())


def _every_frame_arrives_once(device, collector, tmp_path: Path) -> tuple[list[str], int]:
    """The device ends cleanly, and the collector holds each of its logged frames exactly once."""
    out, err = device.communicate(timeout=60)
    assert device.returncode == 0, err
    frames = _frame_lines(tmp_path / "run.jsonl")
    ids = _wait_for(tmp_path / "fleet.sqlite", frames)
    collector.stop()
    assert len(ids) == len(set(ids)) == frames
    return ids, frames


def test_broker_stopped_and_restarted_mid_run_loses_and_duplicates_nothing(converted, clip, broker, tmp_path):
    collector = CollectorProcess(broker.url, tmp_path / "fleet.sqlite")
    device = _run(converted, clip, tmp_path, broker.url)
    time.sleep(2.0)
    broker.stop()
    time.sleep(2.0)  # frames go on being classified and queued
    broker.start()
    ids, frames = _every_frame_arrives_once(device, collector, tmp_path)
    assert sorted(int(i.rsplit(":f", 1)[1]) for i in ids) == list(range(1, frames + 1))
    assert len(_ids(tmp_path / "fleet.sqlite", "verdict")) == 1


def test_device_killed_while_the_broker_is_away_sends_its_queue_at_the_next_start(converted, clip, tmp_path):
    queue = tmp_path / "state" / "outbox.sqlite"
    down = f"mqtt://127.0.0.1:{_free_port()}/lab"
    config = tmp_path / "edgeleuk.toml"
    config.write_text(f'[publish]\nqueue = "{queue}"\n')
    device = _run(converted, clip, tmp_path, down, "--config", str(config))
    time.sleep(3.0)
    device.send_signal(signal.SIGKILL)  # a power cut: no summary, no clean-up
    device.wait(timeout=20)
    con = sqlite3.connect(str(queue))
    waiting = {r[0] for r in con.execute("SELECT id FROM outbox")}
    con.close()
    assert len(waiting) >= 10  # committed to disk before the kill
    broker = Broker(tmp_path / "broker")
    try:
        collector = CollectorProcess(broker.url, tmp_path / "fleet.sqlite")
        again = _run(
            converted, smear_folder(tmp_path), tmp_path, broker.url, "--config", str(config), realtime=False,
            name="again"
        )
        out, err = again.communicate(timeout=60)
        assert again.returncode == 0, err
        ids = set(_wait_for(tmp_path / "fleet.sqlite", len(waiting) + 2))
        collector.stop()
    finally:
        broker.stop()
    assert waiting <= ids  # everything the killed run had queued arrived
    assert len(ids) == len(waiting) + 2  # plus the second run's own two frames, each once


def smear_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "two"
    folder.mkdir(exist_ok=True)
    for i, label in enumerate(LABELS[:2]):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.resize(smear(label, 90 + i), (160, 120)))
    return folder


def test_collector_restarted_mid_run_misses_nothing(converted, clip, broker, tmp_path):
    collector = CollectorProcess(broker.url, tmp_path / "fleet.sqlite")
    device = _run(converted, clip, tmp_path, broker.url)
    time.sleep(2.0)
    collector.stop(kill=True)  # the broker keeps its session's messages
    time.sleep(2.0)
    collector = CollectorProcess(broker.url, tmp_path / "fleet.sqlite")
    ids, frames = _every_frame_arrives_once(device, collector, tmp_path)


def test_ten_devices_for_a_fixed_time_and_the_collector_keeps_up(broker, tmp_path):
    from edgeleuk.runtime.publish import Publisher, PublishTarget
    from edgeleuk.runtime.records import FrameRecord, SampleSummary

    collector = CollectorProcess(broker.url, tmp_path / "fleet.sqlite")
    sent = [0] * 10
    stop = time.monotonic() + 4.0

    def device(k: int) -> None:
        target = PublishTarget(broker.url, tmp_path / f"q{k}.sqlite", f"dev{k}", frames=True)
        pub = Publisher(target, {"name": "m", "sha256": "0" * 64}, warn=lambda t: None)
        n = 0
        while time.monotonic() < stop:
            n += 1
            pub.frame(type("R", (), {"record": FrameRecord("2026-12-08T00:00:00", "camera", n)})(), None, None)
            time.sleep(0.01)
        pub.close(SampleSummary("summary", "2026-12-08T00:00:00", 1, frames_seen=n, verdict={"decision": "Pre"}))
        sent[k] = n

    threads = [threading.Thread(target=device, args=(k,)) for k in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    ids = _wait_for(tmp_path / "fleet.sqlite", sum(sent), seconds=60)
    verdicts = _wait_for(tmp_path / "fleet.sqlite", 10, "verdict")
    collector.stop()
    assert sum(sent) > 1000 and len(ids) == len(set(ids)) == sum(sent) and len(verdicts) == 10
    report = cli("fleet", "--db", str(tmp_path / "fleet.sqlite"), "--json", str(tmp_path / "fleet.json"), check_rc=0)
    data = json.loads((tmp_path / "fleet.json").read_text())["devices"]
    assert sorted(d["device"] for d in data) == [f"dev{k}" for k in range(10)]
    assert all(d["frame_records"] == sent[int(d["device"][3:])] and d["verdicts"] == {"Pre": 1} for d in data)
    assert "| dev0 |" in report.stdout


def test_a_wrong_password_and_an_unreachable_broker_keep_the_device_classifying(converted, tmp_path):
    frames = smear_folder(tmp_path)
    secured = Broker(tmp_path / "secured", password=("scope", "right-password-123"))
    try:
        config = tmp_path / "edgeleuk.toml"
        config.write_text('[publish]\nusername = "scope"\npassword = "wrong-password-456"\n')
        config.chmod(0o644)
        refused = cli(
            "run", "--model", str(converted), "--source", str(frames), "--publish", secured.url, "--config",
            str(config), check_rc=1
        )
        assert f"{config} holds publish.password but every user of this computer can read it" in refused.stderr
        config.chmod(0o600)
        proc = cli(
            "run", "--model", str(converted), "--source", str(frames), "--min-focus", "0", "--publish", secured.url,
            "--config", str(config), "--log", str(tmp_path / "w.jsonl"), check_rc=0
        )
        assert "publish: the broker refused the credentials (" in proc.stderr and "classifying goes on" in proc.stderr
        assert "verdict:" in proc.stdout and "message(s) kept in the queue for the next start" in proc.stderr
    finally:
        secured.stop()
    port = _free_port()
    proc = cli("run", "--model", str(converted), "--source", str(frames), "--min-focus", "0",
               "--publish", f"mqtt://127.0.0.1:{port}/lab", "--log", str(tmp_path / "u.jsonl"), check_rc=0)
    assert f"publish: broker 127.0.0.1:{port} unreachable" in proc.stderr and "verdict:" in proc.stdout
    assert "kept in the queue for the next start" in proc.stderr


@pytest.mark.parametrize(
    "url,message",
    [("http://x/lab", "expected mqtt://HOST"), ("mqtt://u:p@x/lab", "not in the URL"), ("mqtt://x/lab/#", "wildcards")],
)
def test_bad_publish_urls_are_clear_errors(url, message):
    from edgeleuk.errors import UserError
    from edgeleuk.runtime.mqtt_link import BrokerAddress

    with pytest.raises(UserError, match=message):
        BrokerAddress.parse(url)


@pytest.mark.parametrize("window", [300, 0])
def test_a_broker_crash_loses_nothing_the_resend_window_covers(converted, clip, tmp_path, window):
    """Mosquitto acknowledges a message before it saves it: killed before its next autosave, it loses
    what it held for an offline collector. The device keeps what was acknowledged for `resend_window`
    seconds and sends it again on the reconnect; window 0 (the control) shows the loss is real."""
    db = tmp_path / "fleet.sqlite"
    broker = Broker(tmp_path / "broker", autosave=3600)
    try:
        CollectorProcess(broker.url, db).stop()  # its session exists from here
        broker.stop()
        broker.start()  # SIGTERM saved that session; nothing after this point is saved before the crash
        config = tmp_path / "edgeleuk.toml"
        config.write_text(f'[publish]\nresend_window = {window}\nqueue = "{tmp_path / "outbox.sqlite"}"\n')
        device = _run(converted, clip, tmp_path, broker.url, "--config", str(config))
        time.sleep(3.0)  # ~90 frames acknowledged, waiting in the broker for the offline collector
        broker.stop(crash=True)
        time.sleep(1.0)
        broker.start()
        out, err = device.communicate(timeout=60)
        assert device.returncode == 0, err
        frames = _frame_lines(tmp_path / "run.jsonl")
        collector = CollectorProcess(broker.url, db)
        ids = _wait_for(db, frames, seconds=20 if window else 5)
        collector.stop()
    finally:
        broker.stop()
    assert len(ids) == len(set(ids))
    if window:
        assert len(ids) == frames
    else:
        assert len(ids) < frames - 30  # the frames acknowledged before the crash are gone


def test_tls_client_certificates_and_the_acl_keep_each_device_to_its_own_topics(converted, tmp_path):
    certs = certificates(tmp_path / "certs")
    broker = Broker(tmp_path / "broker", tls=certs)
    folder = smear_folder(tmp_path)
    db = tmp_path / "fleet.sqlite"

    def device(name: str, ca: str = "ca") -> subprocess.CompletedProcess:
        config = tls_config(tmp_path / f"{name}-{ca}.toml", certs, name, ca)
        return cli(
            "run", "--model", str(converted), "--source", str(folder), "--min-focus", "0", "--publish", broker.url,
            "--publish-frames", "--device-id", "scope-a", "--config", str(config), "--log",
            str(tmp_path / f"{name}.jsonl"), check_rc=0
        )

    try:
        collector = CollectorProcess(broker.url, db, config=tls_config(tmp_path / "collector.toml", certs, "collector"))
        device("scope-a")  # its own certificate, its own topics
        device("scope-b")  # scope-b's certificate trying to write scope-a's topics: the ACL drops it
        wrong = device("scope-a", ca="other-ca")  # a broker this device's CA did not sign
        ids = _wait_for(db, 2)
        time.sleep(1.5)
        collector.stop()
        out, err = collector.proc.communicate()
    finally:
        broker.stop()
    assert (
        f"publish: broker 127.0.0.1:{broker.port} unreachable (" in wrong.stderr
        and "CERTIFICATE_VERIFY_FAILED" in wrong.stderr
    )
    assert "verdict:" in wrong.stdout and "kept in the queue for the next start" in wrong.stderr
    assert "stored 3 message(s)" in out  # scope-a's two frames and its verdict, nothing of scope-b's
    assert len(ids) == 2 and len(_ids(db, "verdict")) == 1


class Postgres:
    """A PostgreSQL server of its own on 127.0.0.1 (Debian's postgresql, which tests/system-packages.sh
    installs), with password authentication; as root it runs as the `postgres` user, as it must."""

    password = "pg-test-password-789"

    def __init__(self) -> None:
        import pwd
        import tempfile

        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
        if not found:
            pytest.skip("needs a PostgreSQL server: sh tests/system-packages.sh (as root) installs Debian's postgresql")
        bin_dir = found[-1].parent
        # then postgres runs as its own user, which must reach the folder: under /tmp, not $TMPDIR
        root = os.geteuid() == 0
        self.folder = Path(tempfile.mkdtemp(prefix="edgeleuk-pg-", dir="/tmp" if root else None))
        self.prefix: list[str] = []
        if root:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("PostgreSQL refuses to run as root and there is no postgres user")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        pwfile = self.folder / "pw"
        pwfile.write_text(self.password + "\n")
        if self.prefix:
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        subprocess.run(
            [
                *self.prefix, str(bin_dir / "initdb"), "-D", str(self.folder / "data"), "-U", "edgeleuk", "-E",
                "UTF8", "--auth=scram-sha-256", f"--pwfile={pwfile}", "--no-sync"
            ],
            check=True,
            capture_output=True,
        )
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [
                *self.prefix, str(bin_dir / "postgres"), "-D", str(self.folder / "data"), "-h", "127.0.0.1", "-p",
                str(self.port), "-k", str(self.folder), "-F"
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import psycopg

        deadline = time.time() + 20
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise AssertionError("postgres did not start") from None
                time.sleep(0.2)

    def url(self, password: str | None = None) -> str:
        return f"postgresql://edgeleuk:{password or self.password}@127.0.0.1:{self.port}/postgres"

    def ids(self, kind: str = "frame") -> list[str]:
        import psycopg

        with psycopg.connect(self.url()) as con:
            return [r[0] for r in con.execute("SELECT id FROM messages WHERE kind = %s", (kind,))]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def postgres():
    pytest.importorskip("psycopg", reason="a PostgreSQL --db needs edgeleuk[postgres] (psycopg)")
    server = Postgres()
    yield server
    server.stop()


def test_the_collector_stores_into_postgresql_once_each_across_restarts(converted, clip, broker, postgres, tmp_path):
    """The same guarantees with PostgreSQL by URL: the collector killed and restarted mid-run, a
    redelivered message ignored, and the fleet report read from the server."""
    url = f"postgresql://edgeleuk@127.0.0.1:{postgres.port}/postgres"  # the password from PGPASSWORD, as libpq reads it
    env = {"PGPASSWORD": postgres.password}

    first = CollectorProcess(broker.url, url, env=env)
    device = _run(converted, clip, tmp_path, broker.url)
    time.sleep(2.0)
    first.stop(kill=True)
    second = CollectorProcess(broker.url, url, env=env)
    out, err = device.communicate(timeout=60)
    assert device.returncode == 0, err
    frames = _frame_lines(tmp_path / "run.jsonl")
    deadline = time.time() + 40
    while len(postgres.ids()) < frames and time.time() < deadline:
        time.sleep(0.2)
    import paho.mqtt.client as mqtt
    import psycopg

    (verdict_id,) = postgres.ids("verdict")  # sent once more, as a lost PUBACK would make the device send it
    with psycopg.connect(postgres.url()) as con:
        topic, payload = con.execute("SELECT topic, payload FROM messages WHERE id = %s", (verdict_id,)).fetchone()
    again = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="again")
    again.connect("127.0.0.1", broker.port)
    again.loop_start()
    again.publish(topic, payload, qos=1).wait_for_publish(timeout=10)
    again.loop_stop()
    time.sleep(1.0)
    second.proc.send_signal(signal.SIGTERM)
    out, err = second.proc.communicate(timeout=20)
    out = "".join(second.lines) + out  # with its first lines, read while waiting for it to subscribe
    ids = postgres.ids()
    assert len(ids) == len(set(ids)) == frames and postgres.ids("verdict") == [verdict_id]
    assert f"into postgresql://edgeleuk@127.0.0.1:{postgres.port}/postgres" in out
    assert "redelivered duplicate(s) ignored" in out and ", 0 redelivered" not in out
    cli("fleet", "--db", postgres.url(), "--json", str(tmp_path / "fleet.json"), check_rc=0)
    (report,) = json.loads((tmp_path / "fleet.json").read_text())["devices"]
    assert report["device"] == "scope-a" and report["frame_records"] == frames and report["samples"] == 1


def test_a_wrong_database_password_is_a_clear_error_that_does_not_print_it(broker, postgres):
    for command in (["collect", broker.url, "--seconds", "1"], ["fleet"]):
        proc = cli(*command, "--db", postgres.url("wrong-pg-password"), check_rc=1)
        assert f"cannot open the database postgresql://edgeleuk:***@127.0.0.1:{postgres.port}/postgres (" in proc.stderr
        assert "password authentication failed" in proc.stderr and "wrong-pg-password" not in proc.stderr + proc.stdout
        assert "Traceback" not in proc.stderr


def test_the_outbox_keeps_acknowledged_messages_for_the_window_and_reads_an_old_queue(tmp_path):
    from edgeleuk.runtime.publish import Outbox

    old = tmp_path / "old.sqlite"  # a queue written before the resend window existed
    con = sqlite3.connect(str(old))
    con.execute(
        "CREATE TABLE outbox (id TEXT PRIMARY KEY, topic TEXT NOT NULL, payload TEXT NOT NULL, created REAL NOT NULL)"
    )
    con.execute("INSERT INTO outbox VALUES ('d:r:f1', 'lab/d/frame', '{}', 1.0)")
    con.commit()
    con.close()
    box = Outbox(old, resend_window=60)
    assert [r[0] for r in box.pending(set())] == ["d:r:f1"] and box.count() == 1
    box.put("d:r:f2", "lab/d/frame", "{}")
    box.acknowledged("d:r:f1")
    assert [r[0] for r in box.pending(set())] == ["d:r:f2"] and box.count() == 1
    assert box.resend_recent() == 1 and box.count() == 2  # a reconnect: the acknowledged one goes out again
    box.acknowledged("d:r:f1")
    box.db.execute("UPDATE outbox SET acked = acked - 61 WHERE id = 'd:r:f1'")
    box.forget_old()
    assert box.resend_recent() == 0 and [r[0] for r in box.pending(set())] == ["d:r:f2"]  # past the window: gone
    box.close()


def test_the_fleet_report_flags_a_device_whose_refusals_or_ood_share_depart_from_its_own_history(tmp_path):
    import csv

    from edgeleuk.fleet import INSERT, Store

    db = tmp_path / "fleet.sqlite"
    store = Store(db)

    def sample(device: str, k: int, refused: int, ood: int) -> None:
        summary = {"time": 1000.0 + k, "frames_seen": 100, "frames_rejected": {"out of focus": refused},
                   "frames_out_of_distribution": ood, "verdict": {"decision": "Pre"}}
        store.execute(
            INSERT,
            (
                f"{device}:r:s{k}",
                "verdict",
                device,
                "r",
                k,
                "m",
                "ab" * 32,
                "0",
                1000.0 + k,
                2000.0 + k,
                f"lab/{device}/verdict",
                json.dumps({"summary": summary}),
            ),
        )

    for k in range(10):
        sample("steady", k, 5, 1)
        sample("dirty-lens", k, 5 if k < 5 else 60, 1)
        sample("new-stain", k, 5, 1 if k < 5 else 40)
    store.close()
    proc = cli(
        "fleet", "--db", str(db), "--csv", str(tmp_path / "fleet.csv"), "--json", str(tmp_path / "fleet.json"),
        check_rc=0
    )
    report = {r["device"]: r for r in json.loads((tmp_path / "fleet.json").read_text())["devices"]}
    assert report["steady"]["drift"] is None
    assert report["dirty-lens"]["drift"] == "refused share 60% over the last 5 samples, 5% before"
    assert report["new-stain"]["drift"] == "out-of-distribution share 40% over the last 5 samples, 1% before"
    assert report["steady"]["sample_times"] == [1000.0 + k for k in range(10)] and report["steady"]["verdicts"] == {
        "Pre": 10
    }
    rows = {r["device"]: r for r in csv.DictReader((tmp_path / "fleet.csv").open())}
    assert rows["dirty-lens"]["last_refused_share"] == "0.6" and rows["new-stain"]["last_ood_share"] == "0.4"
    assert rows["steady"]["drift"] == ""
    assert "| dirty-lens |" in proc.stdout


def test_fleet_since_reports_only_the_messages_received_in_its_window(tmp_path):
    from edgeleuk.fleet import INSERT, Store

    db = tmp_path / "fleet.sqlite"
    store = Store(db)
    now = time.time()
    for device, ages in (("old-scope", (30, 20)), ("busy-scope", (30, 2, 1))):  # days ago
        for k, days in enumerate(ages):
            body = _verdict(device, k, refused=k)
            row = (body["id"], "verdict", device, "r", k, "m", "ab" * 32, "0", now - days * 86400,
                   now - days * 86400, f"lab/{device}/verdict", json.dumps(body))
            store.execute(INSERT, row)
    store.close()
    cli("fleet", "--db", str(db), "--since", "7d", "--json", str(tmp_path / "week.json"), check_rc=0)
    week = json.loads((tmp_path / "week.json").read_text())["devices"]
    assert [(d["device"], d["samples"]) for d in week] == [("busy-scope", 2)]
    cli("fleet", "--db", str(db), "--json", str(tmp_path / "all.json"), check_rc=0)
    every = {d["device"]: d["samples"] for d in json.loads((tmp_path / "all.json").read_text())["devices"]}
    assert every == {"busy-scope": 3, "old-scope": 2}
    bad = cli("fleet", "--db", str(db), "--since", "last week")
    assert bad.returncode == 2 and "--since last week; expected a duration" in bad.stderr
    assert "Traceback" not in bad.stderr


def _shipped_queue_settings() -> list[str]:
    """device/mosquitto.conf's queue and in-flight lines, as the README tells a laboratory to use them."""
    text = (Path(__file__).resolve().parents[1] / "device" / "mosquitto.conf").read_text()
    return [line for line in text.splitlines() if line.startswith(("max_queued", "max_inflight"))]


@pytest.mark.parametrize("settings,kept", [("shipped", 5000), ("mosquitto's defaults", None)])
def test_the_shipped_broker_settings_keep_a_burst_for_a_stopped_collector(tmp_path, settings, kept):
    """5,000 verdicts while the collector is down: with device/mosquitto.conf every one is stored once
    when it starts again; with Mosquitto's default queue of 1,000 the rest are dropped in silence."""
    broker = Broker(tmp_path / "broker", queue=_shipped_queue_settings() if settings == "shipped" else [])
    try:
        db = tmp_path / "fleet.sqlite"
        CollectorProcess(broker.url, db).stop()  # its persistent session: the broker queues for it from here on
        _publish_raw(
            broker, [("lab/scope-b/verdict", json.dumps(_verdict("scope-b", k)).encode()) for k in range(5000)]
        )
        again = CollectorProcess(broker.url, db)
        ids = _wait_for(db, 5000, "verdict", seconds=60 if kept else 8)
        again.stop()
    finally:
        broker.stop()
    assert len(ids) == len(set(ids))
    if kept:
        assert len(ids) == kept
    else:
        assert len(ids) < 2000, len(ids)  # the default queue and the messages in flight, no more


def test_a_collector_killed_mid_batch_loses_no_acknowledged_message(broker, tmp_path):
    """Batches are acknowledged only after their commit: SIGKILLed while messages stream in, the
    collector has acknowledged nothing it had not stored, and after a restart every message is
    stored once."""
    db = tmp_path / "fleet.sqlite"
    collector = CollectorProcess(broker.url, db)
    messages = [("lab/scope-k/verdict", json.dumps(_verdict("scope-k", k)).encode()) for k in range(3000)]
    sender = threading.Thread(target=_publish_raw, args=(broker, messages))
    sender.start()
    stored = _wait_for(db, 300, "verdict")
    collector.stop(kill=True)
    assert 300 <= len(stored) < len(messages), "killed before the stream ended"
    sender.join(timeout=120)
    again = CollectorProcess(broker.url, db)
    ids = _wait_for(db, len(messages), "verdict", seconds=120)
    again.stop()
    assert len(ids) == len(set(ids)) == len(messages)


def test_fleet_json_into_a_missing_folder_onto_a_folder_or_a_full_disk_is_a_clear_error(tmp_path):
    import resource

    from edgeleuk.fleet import INSERT, Store

    db = tmp_path / "fleet.sqlite"
    store = Store(db)
    for k in range(1000):  # a report of some 100 kB
        body = _verdict("scope-a", k)
        store.execute(
            INSERT,
            (
                body["id"],
                "verdict",
                "scope-a",
                "r",
                k,
                "m",
                None,
                "0",
                body["sent_at"],
                body["sent_at"] + k,
                "lab/scope-a/verdict",
                json.dumps(body),
            ),
        )
    store.close()
    # files may grow to 40 kB (as a full disk): the database's 32 kB shared-memory file fits, the report does not
    full = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, resource.RLIM_INFINITY))  # noqa: E731
    for flag, target, said, limit in (("--json", tmp_path / "gone" / "fleet.json", "the folder", None),
                                      ("--csv", tmp_path, "cannot write", None),
                                      ("--json", tmp_path / "fleet.json", "cannot write the report to", full)):
        bad = cli("fleet", "--db", str(db), flag, str(target), preexec=limit)
        assert bad.returncode == 1 and said in bad.stderr and "Traceback" not in bad.stderr, bad.stderr[-1500:]
    # nothing half-written
    assert not [p.name for p in tmp_path.iterdir() if p.name == "fleet.json" or p.name.startswith(".fleet.")]


def _verdict(device: str, k: int, refused: int = 0, sent_at: float | None = None) -> dict:
    summary = {"event": "sample_end", "sample": k, "frames_seen": 10, "frames_rejected": {"out of focus": refused},
               "frames_out_of_distribution": 0, "verdict": {"decision": "Pre"}}
    return {
        "id": f"{device}:r:s{k}",
        "kind": "verdict",
        "device": device,
        "run": "r",
        "sample": k,
        "model": "m",
        "model_sha256": "ab" * 32,
        "edgeleuk": "0",
        "sent_at": time.time() if sent_at is None else sent_at,
        "summary": summary,
    }


# Each of these stopped the collector, or `fleet`, with a traceback: not JSON objects, wrong types, a
# verdict without its summary, bytes that are not UTF-8, NaN, a device speaking for another
POISON = [
    ("lab/scope-p/verdict", b"[]"),
    ("lab/scope-p/verdict", b"7"),
    ("lab/scope-p/verdict", b'{"id": ["x"], "kind": "verdict", "device": "scope-p"}'),
    ("lab/scope-m/verdict", b'{"id": "m1", "kind": "verdict", "device": "scope-m"}'),
    ("lab/scope-p/frame", b"\xff\xfe{"),
    ("lab/scope-p/verdict", b'{"id": "n", "kind": "verdict", "device": "scope-p", "sent_at": NaN}'),
    ("lab/scope-q/verdict", json.dumps(_verdict("scope-p", 9)).encode()),
]


def _publish_raw(broker: Broker, messages: list[tuple[str, bytes]], retain_first: bool = False) -> None:
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="raw")
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    for i, (topic, payload) in enumerate(messages):
        c.publish(topic, payload, qos=1, retain=retain_first and i == 0).wait_for_publish(timeout=10)
    c.loop_stop()
    c.disconnect()


def _rejected(db: Path) -> list[tuple[str, str]]:
    con = sqlite3.connect(str(db), timeout=30)
    try:
        return con.execute("SELECT topic, reason FROM rejected ORDER BY received_at").fetchall()
    finally:
        con.close()


def test_poison_messages_are_set_aside_acknowledged_and_reported(broker, tmp_path):
    db = tmp_path / "fleet.sqlite"
    collector = CollectorProcess(broker.url, db)
    _publish_raw(
        broker, POISON + [("lab/scope-p/verdict", json.dumps(_verdict("scope-p", 1)).encode())], retain_first=True
    )
    assert len(_wait_for(db, 1, "verdict")) == 1  # after every poison message: one client's messages keep their order
    collector.stop()
    out, _ = collector.proc.communicate()
    assert f"{len(POISON)} malformed message(s) set aside" in out and "stored 1 message(s)" in out
    # a restart: nothing comes back (they were acknowledged), and the retained one is set aside once only
    again = CollectorProcess(broker.url, db)
    _publish_raw(broker, [("lab/scope-p/verdict", json.dumps(_verdict("scope-p", 2)).encode())])
    assert len(_wait_for(db, 2, "verdict")) == 2
    again.stop()
    out, _ = again.proc.communicate()
    assert "stored 1 message(s)" in out and "0 malformed message(s)" in out, out
    reasons = dict(enumerate(r for _, r in _rejected(db)))
    assert len(reasons) == len(POISON) and reasons[0] == "a JSON list, not an object"
    assert (
        "summary" in reasons[3]
        and "not UTF-8 JSON" in reasons[4]
        and "do not match the topic lab/scope-q/verdict" in reasons[6]
    )
    proc = cli("fleet", "--db", str(db), "--json", str(tmp_path / "fleet.json"), check_rc=0)
    report = json.loads((tmp_path / "fleet.json").read_text())
    assert [(d["device"], d["samples"]) for d in report["devices"]] == [("scope-p", 2)]
    assert {x["topic"]: x["messages"] for x in report["rejected"]} == {
        "lab/scope-m/verdict": 1,
        "lab/scope-p/frame": 1,
        "lab/scope-p/verdict": 4,
        "lab/scope-q/verdict": 1,
    }
    assert "set aside by the collector: 4 message(s) on lab/scope-p/verdict" in proc.stdout


def test_a_malformed_verdict_an_older_collector_stored_does_not_stop_the_report(tmp_path):
    from edgeleuk.fleet import INSERT, Store

    store = Store(tmp_path / "fleet.sqlite")
    rows = [("m1", '{"id":"m1","kind":"verdict","device":"scope-m"}'), ("m2", json.dumps(_verdict("scope-m", 2)))]
    for k, (mid, payload) in enumerate(rows):
        store.execute(
            INSERT,
            (mid, "verdict", "scope-m", "r", k, "m", None, "0", None, 1000.0 + k, "lab/scope-m/verdict", payload)
        )
    store.close()
    proc = cli("fleet", "--db", str(tmp_path / "fleet.sqlite"), check_rc=0)
    assert "| scope-m |" in proc.stdout and "Pre 1 (1 unreadable)" in proc.stdout and "Traceback" not in proc.stderr


def test_clock_skew_orders_samples_by_arrival_and_is_flagged(tmp_path):
    from edgeleuk.fleet import INSERT, Store

    store = Store(tmp_path / "fleet.sqlite")
    now, year = time.time(), 365 * 86400.0

    def put(device: str, k: int, refused: int, offset: float) -> None:
        body = _verdict(device, k, refused, sent_at=now + k + offset)
        store.execute(INSERT, (body["id"], "verdict", device, "r", k, "m", None, "0", body["sent_at"], now + k,
                               f"lab/{device}/verdict", json.dumps(body)))

    put("pi-ntp-late", 0, 9, year)  # before NTP: a year ahead, and refusing most frames
    for k in (1, 2, 3):
        put("pi-ntp-late", k, 1, 0.2)  # NTP has set the clock since
        put("flat-battery", k, 1, year)
    store.close()
    cli("fleet", "--db", str(tmp_path / "fleet.sqlite"), "--json", str(tmp_path / "fleet.json"), check_rc=0)
    report = {d["device"]: d for d in json.loads((tmp_path / "fleet.json").read_text())["devices"]}
    late = report["pi-ntp-late"]
    # the last sample is the last to arrive
    assert late["refused_share_by_sample"] == [0.9, 0.1, 0.1, 0.1] and late["clock"] is None
    assert report["flat-battery"]["clock"] == "device clock 365.0 days ahead"


@pytest.mark.parametrize(
    "payload,reason",
    [
        (
            b'{"id": "a", "kind": "verdict", "device": "d", "summary": {"verdict": {"decision": "Pre"}, '
            b'"frames_rejected": {"x": -1}}}',
            "x is -1; expected a whole number",
        ),
        (
            b'{"id": "a", "kind": "verdict", "device": "d", "summary": {"verdict": {"decision": "Pre"}, '
            b'"frames_seen": true}}',
            "frames_seen is true",
        ),
        (
            b'{"id": "a", "kind": "verdict", "device": "d", "sent_at": 1e300, "summary": {"verdict": {"decision": '
            b'"Pre"}}}',
            "sent_at is 1e+300",
        ),
        (
            b'{"id": "a\\u001b[2J", "kind": "verdict", "device": "d", "summary": {"verdict": {"decision": "Pre"}}}',
            "expected printable text",
        ),
        (b'{"id": "a", "kind": "frame", "device": "d"}', "a frame message without its record object"),
        (b'{"id": "a", "kind": "status", "device": "d"}', "do not match the topic"),
        (b" " * (1 << 20) + b"{}", "more than 1048576"),
    ],
)
def test_a_message_is_read_only_when_every_field_the_fleet_uses_is_right(payload, reason):
    from edgeleuk.messages import Rejected, parse

    with pytest.raises(Rejected) as caught:
        parse(payload, "lab/d/frame" if b'"frame"' in payload else "lab/d/verdict")
    assert reason in str(caught.value)
    good = parse(
        b'{"id": "a", "kind": "verdict", "device": "d", "summary": {"verdict": {"decision": "Pre"}}}', "lab/d/verdict"
    )
    assert (good.id, good.device, good.sent_at) == ("a", "d", None)


def test_messages_without_and_with_schema_version_are_read_and_a_newer_one_is_set_aside():
    from edgeleuk.messages import Rejected, parse, sample_summary

    summary = {"sample": 2, "frames_seen": 10, "frames_rejected": {"blurred": 3}, "frames_out_of_distribution": 1,
               "verdict": {"decision": "Pre"}}
    body = {"id": "a", "kind": "verdict", "device": "d", "summary": summary}
    for doc in (body, {**body, "schema_version": 2}):  # before schema_version (1), and 2
        read = sample_summary(parse(json.dumps(doc).encode(), "lab/d/verdict").body)
        assert (read.decision, read.refused, read.sample, read.frames_seen) == ("Pre", 3, 2, 10)
    with pytest.raises(Rejected, match="schema_version 3; this collector reads up to 2"):
        parse(json.dumps({**body, "schema_version": 3}).encode(), "lab/d/verdict")


def test_a_full_disk_under_the_publish_queue_keeps_the_device_classifying(converted, clip, tmp_path):
    """The queue's files may grow to 48 kB (RLIMIT_FSIZE, as a full disk), the broker is away and every
    frame is published: the queue stops taking messages, the run says so once, classifies on, and
    says at the end how many were lost, the final verdict among them."""
    import resource

    config = tmp_path / "edgeleuk.toml"
    config.write_text(f'[publish]\nframes = true\nqueue = "{tmp_path / "q" / "outbox.sqlite"}"\n')
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (48_000, resource.RLIM_INFINITY))  # noqa: E731
    proc = cli(
        "run", "--model", str(converted), "--source", str(clip), "--min-focus", "0", "--quiet", "--config",
        str(config), "--publish", f"mqtt://127.0.0.1:{_free_port()}/lab", preexec=limit, check_rc=0
    )
    assert proc.stderr.count("publish: the queue cannot take messages (") == 1, proc.stderr[-2000:]
    lost = re.search(
        r"publish: (\d+) message\(s\) could not be queued \(.+\) and were not sent, this run's last verdict among them",
        proc.stderr
    )
    assert lost and int(lost.group(1)) > 0 and "Traceback" not in proc.stderr and "verdict:" in proc.stdout


def test_the_collector_and_the_report_start_without_numpy_or_opencv():
    """They read the devices' lines and the broker, not images: importing them must not load the
    device's numpy, OpenCV and runtime backends (a third of a second, and 200 MB on a small server)."""
    code = ("import sys, edgeleuk.cli.collect, edgeleuk.cli.fleet, edgeleuk.fleet, edgeleuk.fleet_report, "
            "edgeleuk.runtime.settings; print(sorted(m for m in ('numpy', 'cv2') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout
