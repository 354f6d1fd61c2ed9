"""`edgeleuk run --serve [HOST:]PORT`: the live view in a browser, for a microscope computer without
a screen (as OpenFlexure's microscope is driven from its web page).

A sink of the run loop. The loop only hands over references and a small status snapshot; drawing
the overlay (display.render, the same picture as --display) and JPEG encoding happen on the
server's thread, once per new frame, shared by every viewer, and only while someone watches. A slow
viewer gets fewer frames; the loop never waits for a viewer. Starlette on uvicorn: pure Python,
about 6 MB installed (aiohttp with its compiled dependencies: 14 MB). The routes and the token gate
are in web_app.py.

Security: loopback unless a host is named; beyond it every request needs the token (printed at
start, or `serve.token` in the config); state changes only by POST with a custom header (so a web
page elsewhere cannot drive it); the only file it serves is the run's own log; with --save-frames it
saves the field on screen as one of the model's classes, never under a name the client chose.
"""

from __future__ import annotations

import asyncio
import importlib.util
import secrets
import socket
import threading
import time
from collections import deque
from importlib import resources
from pathlib import Path
from typing import Any

import cv2

from edgeleuk.errors import UserError, missing_package
from edgeleuk.runtime.access import ServeSettings, allowed_hosts, needs_token, parse_address
from edgeleuk.runtime.display import FrameRate, Overlay, render, verdict_text, view_of
from edgeleuk.runtime.records import Control, FrameResult, SampleStart, SampleSummary
from edgeleuk.runtime.saving import SiteSet, save_shown

HISTORY_SECONDS = 60.0
MAX_STREAM_FPS = 30.0  # the stream follows the camera, up to this
JPEG_QUALITY = 80
ASSETS = ("index.html", "app.js", "style.css")
# asyncio accepts up to `backlog` waiting connections in one go, before any of them can be refused:
# uvicorn's 2,048 let a burst take every descriptor (EMFILE) ahead of the connection limit
ACCEPT_BATCH = 16


class LiveView:
    """The run loop's sink for the web page: `frame` stores, the server thread reads."""

    def __init__(self, settings: ServeSettings, control: Control, labels: tuple[str, ...], log: Path | None,
                 model: dict[str, Any], site: SiteSet | None = None) -> None:
        if importlib.util.find_spec("starlette") is None or importlib.util.find_spec("uvicorn") is None:
            raise missing_package("starlette and uvicorn (for --serve)", "serve")
        self.host, port = parse_address(settings.address)
        self.hosts = allowed_hosts(self.host, settings.hosts)
        self.control, self.labels, self.log, self.model, self.site = control, labels, log, model, site
        self.token = (settings.token or secrets.token_urlsafe(18)) if needs_token(self.host, settings.token) else None
        self._lock = threading.Lock()
        self._latest: tuple[FrameResult, str, float | None] | None = None
        self._seq = 0
        self._status: dict[str, Any] = {"state": "starting"}
        self._history: deque = deque()
        self._started = time.time()
        self._rate = FrameRate()  # the FPS the picture shows
        self.frames_streamed = 0
        self._socket = self._bind(self.host, port)
        self.port = self._socket.getsockname()[1]
        self._server = None
        self._protocol = None
        self._thread = threading.Thread(target=self._serve, name="edgeleuk-live", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not (self._server is not None and self._server.started):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise UserError(f"the live view could not start on {self.url}")
            time.sleep(0.01)

    @staticmethod
    def _bind(host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise UserError(f"--serve: cannot listen on {host}:{port} ({exc.strerror})") from None
        sock.listen(128)
        sock.set_inheritable(True)
        return sock

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    # --- the sink: called on the loop's thread; stores, never waits -------------------------------
    def frame(self, result: FrameResult, verdict, summary) -> None:
        q = result.quality
        now = time.time()
        current = {"index": result.frame.index, "source": result.frame.name, "usable": bool(q is not None and q.usable),
                   "reason": None if q is None else q.reason, "error": result.error,
                   "class": None, "confidence": None, "probabilities": None,
                   "in_distribution": result.in_distribution, "ood_score": result.ood_score,
                   "latency_ms": None if result.total_ms is None else round(result.total_ms, 3)}
        if result.probs is not None:
            top = int(result.probs.argmax())
            current.update({"class": self.labels[top], "confidence": round(float(result.probs[top]), 4),
                            "probabilities": {k: round(float(v), 4) for k, v in zip(self.labels, result.probs)}})
            if result.in_distribution is False:
                current["reason"] = "out of distribution"
        counts = {
            "seen": summary.seen,
            "usable": summary.accepted + summary.out_of_distribution,
            "answered": summary.accepted,
            "refused": dict(summary.refused),
            "out_of_distribution": summary.out_of_distribution,
            "unreadable": summary.errors,
        }
        status = {"state": "running", "sample": result.record.sample, "frame": current,
                  "verdict": verdict.as_dict(), "verdict_text": verdict_text(verdict), "counts": counts}
        fps = self._rate.tick(now)
        status["fps"] = round(fps, 1) if fps else None
        with self._lock:
            if result.frame.image is not None and q is not None:
                self._latest = (result, status["verdict_text"], status["fps"])
                self._seq += 1
            self._status = status
            self._history.append((now, current["confidence"] if current["class"] and result.answered else None,
                                  current["latency_ms"]))
            while self._history and self._history[0][0] < now - HISTORY_SECONDS:
                self._history.popleft()

    def sample(self, record: SampleSummary | SampleStart) -> None:
        pass

    def close(self, record: SampleSummary) -> None:
        """The run ended: the page shows it. The owner calls shutdown(), after letting the page show the
        result for as long as it wants (cli/run.py keeps it up until Ctrl-C or Stop)."""
        with self._lock:
            self._status = {**self._status, "state": "ended", "stopped_by": record.stopped_by}

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(timeout=5)
        self._socket.close()

    # --- the server: its own thread and event loop ------------------------------------------------
    def status(self) -> dict[str, Any]:
        with self._lock:
            history = [[round(t - self._started, 2), c, lat] for t, c, lat in self._history]
            saving = None if self.site is None else {"folder": str(self.site.folder), "saved": dict(self.site.saved)}
            return {
                **self._status,
                "model": self.model,
                "log": self.log is not None,
                "history": history,
                "labels": list(self.labels),
                "history_seconds": HISTORY_SECONDS,
                "frames_streamed": self.frames_streamed,
                "saving": saving,
                "connections_refused": self._protocol.refused_connections if self._protocol else 0,
            }

    def page_assets(self) -> dict[str, bytes]:
        return {name: (resources.files("edgeleuk.runtime") / "web" / name).read_bytes() for name in ASSETS}

    def save_field(self, label: str) -> tuple[int, dict[str, Any]]:
        """The field on screen, saved as `label`: (HTTP status, reply)."""
        with self._lock:
            shown = None if self._latest is None else self._latest[0]
        return save_shown(self.site, self.labels, shown, label)

    def _jpeg(self) -> tuple[int, bytes | None]:
        with self._lock:
            latest, seq = self._latest, self._seq
        if latest is None:
            return seq, None
        result, text, fps = latest
        probs, quality = view_of(result, self.labels)
        picture = render(
            result.frame.image, result.frame.color_order, result.region,
            Overlay(self.labels, probs, quality, text, fps or 0.0)
        )
        ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        return seq, data.tobytes() if ok else None

    def _serve(self) -> None:
        import uvicorn

        from edgeleuk.runtime.http_guard import GuardedH11

        self._protocol = type("ViewProtocol", (GuardedH11,), {"refused_connections": 0})  # this view's own count
        from edgeleuk.runtime.web_app import create_app

        config = uvicorn.Config(create_app(self, FrameHub(self)), log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=1, ws="none", http=self._protocol, backlog=ACCEPT_BATCH)
        self._server = uvicorn.Server(config)
        self._server.run(sockets=[self._socket])


class FrameHub:
    """One encoding per new frame, shared by all viewers; each viewer takes the newest when it is ready."""

    def __init__(self, view: LiveView) -> None:
        self.view = view
        self.seq, self.data = -1, None
        self._lock: asyncio.Lock | None = None

    async def latest(self) -> bytes | None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            with self.view._lock:
                newest = self.view._seq
            if newest != self.seq:  # encode off the event loop: OpenCV releases the GIL while it works
                self.seq, self.data = await asyncio.to_thread(self.view._jpeg)
        return self.data

    async def stream(self, request):
        last, interval = -1, 1.0 / MAX_STREAM_FPS
        while not (self.view._server is not None and self.view._server.should_exit):
            started = time.monotonic()
            with self.view._lock:
                newest = self.view._seq
            if newest != last:
                data = await self.latest()
                if data is not None:
                    last = self.seq
                    self.view.frames_streamed += 1
                    yield (
                        b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                        + str(len(data)).encode()
                        + b"\r\n\r\n"
                        + data
                        + b"\r\n"
                    )
            await asyncio.sleep(max(0.005, interval - (time.monotonic() - started)))
