"""`run --serve`: the live view, through real HTTP and a real browser (Debian's chromium, driven by
Selenium through chromium-driver), against `edgeleuk run` on a recorded clip, on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import LABELS, smear
from edgeleuk.errors import UserError
from edgeleuk.runtime.access import allowed_hosts, host_of, is_loopback, needs_token, parse_address
from edgeleuk.runtime.config import read_config

pytest.importorskip("starlette", reason="the live view needs edgeleuk[serve]")
TOKEN = "test-token-0123456789abcdef"
FPS = 30


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """90 s at 30 fps of four class-coded fields in turn (each test stops its run long before)."""
    path = tmp_path_factory.mktemp("serve") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (320, 240))
    frames = []
    for k, label in enumerate(LABELS):
        frame = np.full((240, 320, 3), 200, np.uint8)
        frame[:, 40:280] = cv2.resize(smear(label, 50 + k), (240, 240))
        frames.append(frame)
    for i in range(FPS * 90):
        writer.write(frames[(i // 15) % 4])
    writer.release()
    return path


class Run:
    """`edgeleuk run --serve` in the background; stop() presses the page's Stop (or terminates)."""

    def __init__(self, model: Path, clip: Path, log: Path, *extra: str, env: dict | None = None, preexec=None):
        exe = Path(sys.executable).with_name("edgeleuk")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "edgeleuk"]
        self.log = log
        self.proc = subprocess.Popen(
            cmd
            + [
                "run", "--model", str(model), "--source", str(clip), "--realtime", "--quiet", "--min-focus", "0",
                "--log", str(log), "--serve", "127.0.0.1:0", *extra
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
            preexec_fn=preexec,
        )
        self.lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"run ended before serving: {self.proc.stderr.read()[-2000:]}")
            self.lines.append(line)
            found = re.search(r"live view: (http://127\.0\.0\.1:(\d+)/\S*)", line)
            if found:
                self.url, self.port = found.group(1), int(found.group(2))
                break
        else:
            raise AssertionError("no live view address printed")
        threading.Thread(target=self._drain, daemon=True).start()
        self._stderr = threading.Thread(target=self._drain_errors, daemon=True)
        self._stderr.start()
        self._wait_for_frames()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def _drain_errors(self) -> None:  # a full stderr pipe would block the run, which a service's journal never does
        self.errors = self.proc.stderr.read()

    def _wait_for_frames(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = self.status()
            if status.get("frame"):
                return
            time.sleep(0.1)
        raise AssertionError("no frame reached the live view")

    def request(
        self, method: str, path: str, headers: dict | None = None, timeout: float = 10
    ) -> tuple[int, bytes, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        conn.request(method, path, headers={"Authorization": f"Bearer {TOKEN}", **(headers or {})})
        response = conn.getresponse()
        body = response.read()
        conn.close()
        return response.status, body, dict(response.getheaders())

    def status(self) -> dict:
        code, body, _ = self.request("GET", "/api/status")
        assert code == 200, body
        return json.loads(body)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.request("POST", "/api/stop", {"X-Edgeleuk": "1"})
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        return "".join(self.lines)

    def records(self) -> list[dict]:
        return [json.loads(x) for x in self.log.read_text().splitlines()]


@pytest.fixture
def run_with_token(converted, clip, tmp_path):
    config = tmp_path / "edgeleuk.toml"
    config.write_text(f'[serve]\ntoken = "{TOKEN}"\n')
    config.chmod(0o644)
    with pytest.raises(UserError, match="chmod 600"):
        read_config(config)
    config.chmod(0o600)
    run = Run(converted, clip, tmp_path / "run.jsonl", "--config", str(config))
    yield run
    if run.proc.poll() is None:
        run.proc.kill()


def test_addresses_and_when_a_token_is_needed():
    assert parse_address("8000") == ("127.0.0.1", 8000)
    assert parse_address("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    for bad in ("http", "1.2.3.4:99999", "host:"):
        with pytest.raises(UserError, match="--serve"):
            parse_address(bad)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20") and not is_loopback("raspberrypi.local")
    assert needs_token("0.0.0.0", None) and needs_token("192.168.1.20", None) and needs_token("127.0.0.1", TOKEN)
    assert not needs_token("127.0.0.1", None)
    assert allowed_hosts("127.0.0.1", ()) == {"127.0.0.1", "localhost", "::1"} and allowed_hosts("0.0.0.0", ()) is None
    assert allowed_hosts("192.168.1.20", ("Scope-3.local",)) == {"192.168.1.20", "scope-3.local"}
    for header, name in (
        (b"127.0.0.1:8000", "127.0.0.1"),
        (b"[::1]:80", "::1"),
        (b"Attacker.Example", "attacker.example"),
        (b"localhost", "localhost"),
    ):
        assert host_of({"headers": [(b"host", header)]}) == name


def test_every_request_needs_the_token_when_there_is_one(run_with_token):
    run = run_with_token
    for path in ("/", "/api/status", "/frame.jpg", "/stream.mjpg", "/api/log", "/static/app.js"):
        code, _, headers = run.request("GET", path, {"Authorization": "Bearer wrong-token-0000000000"})
        assert code == 401, path
        conn = http.client.HTTPConnection("127.0.0.1", run.port, timeout=5)
        conn.request("GET", path)
        assert conn.getresponse().status == 401, path
        conn.close()
    code, _, _ = run.request("POST", "/api/stop", {"Authorization": "", "X-Edgeleuk": "1"})
    assert code == 401 and run.proc.poll() is None  # a refused stop did not stop it
    assert run.request("GET", "/api/status")[0] == 200  # the header
    assert run.request("GET", f"/api/status?token={TOKEN}", {"Authorization": ""})[0] == 200  # the printed address
    code, _, headers = run.request("GET", f"/?token={TOKEN}", {"Authorization": ""})
    assert (
        code == 200
        and f"edgeleuk_token={TOKEN}" in headers.get("set-cookie", "")
        and "samesite=strict" in headers["set-cookie"].lower()
    )
    # the page's cookie
    assert run.request("GET", "/frame.jpg", {"Authorization": "", "Cookie": f"edgeleuk_token={TOKEN}"})[0] == 200
    run.stop()


def test_state_changes_only_by_post_with_the_header_and_the_log_endpoint_serves_only_the_log(run_with_token):
    run = run_with_token
    assert run.request("GET", "/api/stop")[0] == 405
    assert run.request("POST", "/api/stop")[0] == 403  # no X-Edgeleuk header: what a cross-site form would send
    assert run.request("POST", "/api/save/Pre", {"X-Edgeleuk": "1"})[0] == 409  # no --save-frames: nowhere to save
    assert run.proc.poll() is None
    for path in (
        "/api/log/../../../../etc/passwd",
        "/api/log/%2e%2e/%2e%2e/etc/passwd",
        "/static/../live.py",
        "/static/..%2f..%2fmanifest.py",
        "/static/%2e%2e%2fsession.py",
        "/static/index.html/../../../etc/passwd",
        "/../../etc/passwd",
        "/static/app.js%00.html",
        "//etc/passwd",
    ):
        code, body, _ = run.request("GET", path)
        assert code in (404, 400), (path, code)
        assert b"root:" not in body and b"import" not in body, path
    for query in ("?path=/etc/passwd", "?file=../../etc/passwd", "?name=/etc/shadow", "?log=/etc/hostname"):
        code, body, headers = run.request("GET", "/api/log" + query)
        assert code == 200 and b"root:" not in body
        assert all("frame" in json.loads(line) or "event" in json.loads(line) for line in body.decode().splitlines())
    run.stop()


def test_a_page_that_rebinds_its_name_to_the_loopback_can_neither_read_nor_stop_the_run(converted, clip, tmp_path):
    run = Run(converted, clip, tmp_path / "run.jsonl")  # loopback, no token: only the Host tells a rebound page apart
    try:
        for method, path in (("GET", "/api/status"), ("GET", "/api/log"), ("GET", "/frame.jpg"), ("POST", "/api/stop")):
            code, body, _ = run.request(method, path, {"Host": f"attacker.example:{run.port}", "X-Edgeleuk": "1"})
            assert code == 421 and b"answers to 127.0.0.1, ::1, localhost" in body, (path, code)
        assert run.proc.poll() is None  # the refused stop did not stop it
        assert run.request("GET", "/api/status", {"Host": f"localhost:{run.port}"})[0] == 200
    finally:
        run.stop()


def test_the_page_saves_the_field_on_screen_as_one_of_the_models_classes(converted, clip, tmp_path):
    site = tmp_path / "site"
    run = Run(converted, clip, tmp_path / "run.jsonl", "--save-frames", str(site), "--sample", "slide 1")
    try:
        assert run.request("POST", "/api/save/Pre")[0] == 403
        code, body, _ = run.request("POST", "/api/save/Pre", {"X-Edgeleuk": "1"})
        reply = json.loads(body)
        assert code == 201 and reply["file"].startswith("Pre/slide 1/clip-") and reply["saved"] == {"Pre": 1}
        saved = site / reply["file"]
        assert cv2.imread(str(saved)).shape == (240, 320, 3)  # the full frame, not the model's square
        assert json.loads(saved.with_suffix(".json").read_text())["label"] == "Pre"
        for label in ("Other", "%2e%2e", "..%2fPre", "Pre%00"):
            assert run.request("POST", f"/api/save/{label}", {"X-Edgeleuk": "1"})[0] == 404, label
        status = run.status()
        assert status["saving"] == {"folder": str(site), "saved": {"Pre": 1}} and status["labels"] == list(LABELS)
        # flagged frames lie loose in site/
        saved_as_classes = [p.name for p in site.rglob("*") if p.is_file() and p.parent != site]
        assert sorted(saved_as_classes) == sorted([saved.name, saved.with_suffix(".json").name])
    finally:
        run.stop()


def test_the_live_view_outlives_a_finite_source_until_stop(converted, clip, tmp_path):
    run = Run(converted, clip, tmp_path / "run.jsonl", "--frames", "5")
    deadline = time.monotonic() + 60
    while not any("the source ended" in line for line in run.lines) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any("the source ended (5 accepted frames)" in line for line in run.lines), "".join(run.lines)
    assert run.proc.poll() is None  # still serving: the printed address is not dead
    status = run.status()
    assert status["counts"]["answered"] == 5 and status["frame"]
    code, body, _ = run.request("GET", "/frame.jpg")
    assert code == 200 and body[:2] == b"\xff\xd8"
    run.stop()
    assert run.proc.returncode == 0 and run.records()[-1]["event"] == "summary"


def test_a_stalled_client_and_one_that_disconnects_change_nothing(converted, clip, tmp_path):
    run = Run(converted, clip, tmp_path / "run.jsonl")
    stalled = socket.create_connection(("127.0.0.1", run.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # and never reads
    quitter = socket.create_connection(("127.0.0.1", run.port))
    quitter.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert b"--frame" in quitter.recv(65536) + quitter.recv(65536)
    quitter.close()  # mid-stream
    start = run.status()["counts"]["seen"]
    time.sleep(4)
    seen = run.status()["counts"]["seen"] - start
    code, body, _ = run.request("GET", "/frame.jpg")
    assert code == 200 and body[:2] == b"\xff\xd8"  # other viewers still get frames
    output = run.stop()
    stalled.close()
    assert seen >= 0.85 * FPS * 4, f"{seen} frames in 4 s with a stalled viewer"
    assert "stopped: stopped from the web page" in output
    records = run.records()
    summary = records[-1]
    assert summary["event"] == "summary" and summary["frames_seen"] == sum("frame" in r for r in records[:-1])


def test_a_connection_flood_neither_ends_the_run_nor_holds_the_view(converted, clip, tmp_path):
    """300 idle, half-sent and dripping connections against a service allowed 256 descriptors: the
    view takes 64 of them (a quarter), refuses the rest at once, closes each that has not started a
    request within 10 s, and then answers again; the run classifies on throughout."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limit = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # noqa: E731 (in the child, as systemd's LimitNOFILE)
    run = Run(converted, clip, tmp_path / "run.jsonl", preexec=limit)
    flood = []
    for k in range(300):
        try:
            c = socket.create_connection(("127.0.0.1", run.port), timeout=5)
        except OSError:
            continue
        if k % 3 == 1:
            c.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never finished
        elif k % 3 == 2:
            c.sendall(b"G")  # the first byte of a request dripped
        flood.append(c)
    lines_then = len(run.log.read_text().splitlines())
    closed, deadline = 0, time.monotonic() + 30
    for c in flood:  # each is closed by the view: refused at once, or after 10 s without a request
        c.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            closed += c.recv(1024) == b""
        except ConnectionResetError:
            closed += 1
        except socket.timeout:
            pass
        c.close()
    assert closed == len(flood) >= 250
    status = run.status()
    assert status["connections_refused"] > 100 and status["state"] == "running"
    assert len(run.log.read_text().splitlines()) > lines_then + FPS  # classified while flooded
    output = run.stop()
    run._stderr.join(timeout=30)
    assert run.proc.returncode == 0 and "Traceback" not in run.errors and "stopped from the web page" in output, (
        run.errors[-2000:]
    )


def test_twenty_viewers_for_a_bounded_time_and_the_loop_keeps_its_rate(converted, clip, tmp_path):
    run = Run(converted, clip, tmp_path / "run.jsonl")
    received = [0] * 20
    stop = threading.Event()

    def viewer(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", run.port, timeout=10)
        conn.request("GET", "/stream.mjpg" if i % 2 == 0 else "/api/status")
        response = conn.getresponse()
        while not stop.is_set():
            if i % 2 == 0:
                chunk = response.read1(65536)
                if not chunk:
                    break
                received[i] += chunk.count(b"--frame")
            else:
                response.read()
                received[i] += 1
                conn.request("GET", "/api/status")
                response = conn.getresponse()
        conn.close()

    threads = [threading.Thread(target=viewer, args=(i,), daemon=True) for i in range(20)]
    start = run.status()["counts"]["seen"]
    for t in threads:
        t.start()
    time.sleep(5)
    status = run.status()
    seen = status["counts"]["seen"] - start
    streamed, got = status["frames_streamed"], sum(received[0::2])  # sent by the view, read by the viewers, now
    stop.set()
    for t in threads:
        t.join(timeout=15)
    run.stop()
    assert seen >= 0.85 * FPS * 5, (
        f"the loop classified {seen} frames in 5 s with 20 viewers (the clip plays {FPS * 5})"
    )
    assert min(received[0::2]) >= 10 and min(received[1::2]) >= 10, received  # every viewer was served
    # the view's own count agrees, up to a frame or two in flight each
    assert got > 0 and abs(streamed - got) <= 20, (streamed, got)


def _chromium() -> tuple[str, str]:
    """Debian's chromium and chromium-driver (tests/system-packages.sh installs them; the test command runs it)."""
    import shutil

    def found():
        return shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")

    browser, driver = found()
    if not (browser and driver):
        pytest.skip("needs Debian's chromium and chromium-driver: sh tests/system-packages.sh (as root) installs them")
    return browser, driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (edgeleuk[dev])")
    binary, driver = _chromium()
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900", "--disable-gpu"):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    from selenium.webdriver.chrome.service import Service

    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.downloads = downloads
    yield chrome
    chrome.quit()


def test_the_page_in_a_real_browser(browser, converted, clip, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    run = Run(converted, clip, tmp_path / "run.jsonl", "--save-frames", str(tmp_path / "site"))
    try:
        browser.get(run.url)
        wait = WebDriverWait(browser, 20)
        wait.until(
            lambda b: b.execute_script(
                "const i = document.getElementById('stream'); return i.complete && i.naturalWidth > 0"
            )
        )
        picture = """const i = document.getElementById('stream'), c = document.createElement('canvas');
                     c.width = i.naturalWidth; c.height = i.naturalHeight; c.getContext('2d').drawImage(i, 0, 0);
                     return c.toDataURL('image/png');"""
        first = browser.execute_script(picture)
        # the frame updates (the clip changes field every 0.5 s)
        wait.until(lambda b: b.execute_script(picture) != first)
        wait.until(lambda b: b.find_element(By.ID, "state").text == "live")
        verdict = browser.find_element(By.ID, "verdict")
        wait.until(lambda b: verdict.text not in ("", "–"))
        decision = verdict.get_attribute("data-decision")
        assert decision in (*LABELS, "refer to a specialist", "out of distribution: refer", "no usable frame")
        assert verdict.text.startswith(decision)
        assert "frames seen" in browser.find_element(By.ID, "counts").text
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#save button")) == len(LABELS))
        save = browser.find_element(By.CSS_SELECTOR, f"#save button[data-label='{LABELS[1]}']")
        assert save.text == f"Save this field as {LABELS[1]}"
        save.click()
        wait.until(lambda b: b.find_element(By.ID, "message").text.startswith(f"saved as {LABELS[1]}: {LABELS[1]}/"))
        assert len(list((tmp_path / "site" / LABELS[1]).rglob("*.jpg"))) == 1
        browser.find_element(By.ID, "new-sample").click()
        wait.until(lambda b: b.find_element(By.ID, "sample-id").text == "#2")
        browser.find_element(By.ID, "log").click()
        wait.until(lambda b: any(p.suffix == ".jsonl" for p in browser.downloads.iterdir()))
        downloaded = next(p for p in browser.downloads.iterdir() if p.suffix == ".jsonl")
        wait.until(lambda b: downloaded.stat().st_size > 0)
        events = [json.loads(x).get("event") for x in downloaded.read_text().splitlines()]
        assert "sample_end" in events and "sample_start" in events
        if os.environ.get("EDGELEUK_SCREENSHOT"):
            browser.save_screenshot(os.environ["EDGELEUK_SCREENSHOT"])
        browser.find_element(By.ID, "stop").click()
        run.proc.wait(timeout=30)
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    records = run.records()
    ends = [r for r in records if r.get("event") == "sample_end"]
    # nothing lost from the first sample
    assert len(ends) == 1 and ends[0]["sample"] == 1 and ends[0]["frames_seen"] > 0
    assert (
        records[-1]["event"] == "summary"
        and records[-1]["sample"] == 2
        and records[-1]["stopped_by"] == "stopped from the web page"
    )
