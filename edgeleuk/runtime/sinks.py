"""The sinks every run can have, and `compose`, the one place that builds a run's sinks: the JSONL
log, the status line, the frame saver, the desktop window, the live view and the publisher."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeleuk.errors import UserError
from edgeleuk.runtime.display import Display, Overlay, verdict_text, view_of
from edgeleuk.runtime.records import Control, RunOptions, SampleStart, SampleSummary, Sink
from edgeleuk.runtime.saving import SaverSink


class JsonlLog:
    """One JSON object per line, each written by one system call: a killed run still leaves a complete
    log, two runs sharing one file never interleave within a line, and a line the disk cannot take
    whole is cut off again, so the file never ends in half a record."""

    def __init__(self, path: Path | None):
        self.fd: int | None = None
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            except OSError as exc:
                raise UserError(f"cannot write the log {path}: {exc.strerror}") from None

    def write(self, record: dict) -> None:
        if self.fd is None:
            return
        data, written = (json.dumps(record) + "\n").encode(), 0
        try:
            while written < len(data):  # a disk that took part of it: the next write completes it, or says why not
                written += os.write(self.fd, data[written:])
        except OSError as exc:
            self._cut(written)
            raise UserError(
                f"cannot write the log {self.path} any more ({exc.strerror}); it ends before this frame"
            ) from None

    def _cut(self, written: int) -> None:
        """Remove the `written` bytes of a partly written line (the file's size is read only here, off
        the per-frame path); the summary cannot follow either."""
        with contextlib.suppress(OSError):
            if written:
                os.ftruncate(self.fd, os.fstat(self.fd).st_size - written)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class LogSink:
    """The JSONL log: one line per frame, per sample boundary and the summary, flushed per line."""

    def __init__(self, path: Path | None) -> None:
        self.log = JsonlLog(path)

    def frame(self, result, verdict, summary) -> None:
        self.log.write(result.record.as_json())

    def sample(self, record: SampleSummary | SampleStart) -> None:
        self.log.write(record.as_json())

    def close(self, record: SampleSummary) -> None:
        self.log.write(record.as_json())
        self.log.close()


class StatusSink:
    """The terminal: a live line on a TTY, one line per frame otherwise."""

    def __init__(self, labels: tuple[str, ...], live: bool) -> None:
        self.labels, self.live = labels, live

    def frame(self, result, verdict, summary) -> None:
        f = result.frame
        if result.error is not None:
            _status(f"frame {f.index} ({f.name}): unreadable: {result.error}", False)
            return
        q = result.quality
        if result.probs is None:
            _status(
                f"frame {f.index}: unusable ({q.reason}; focus {q.focus:.0f}, brightness {q.brightness:.0f})", self.live
            )
            return
        probs, top = result.probs, int(result.probs.argmax())
        probs_text = " ".join(f"{k} {v:.2f}" for k, v in zip(self.labels, probs))
        answer = (f"out of distribution (score {result.ood_score:.2f})" if result.in_distribution is False
                  else f"{self.labels[top]} {probs[top]*100:.1f}% [{probs_text}]")
        ood = f", {verdict.ood_frames} out of distribution" if verdict.ood_frames else ""
        _status(f"frame {f.index}: {answer} {result.total_ms:.1f} ms | sample: {verdict.decision} "
                f"({verdict.confidence*100:.0f}%, {verdict.frames} frames{ood})", self.live)

    def sample(self, record: SampleSummary | SampleStart) -> None:
        if record.event == "sample_end":
            _status(f"sample {record.sample} ended: {record.decision}", False)

    def close(self, record: SampleSummary) -> None:
        if self.live:
            sys.stderr.write("\n")


class DisplaySink:
    """The desktop window; closing it stops the run."""

    def __init__(self, display: Display, labels: tuple[str, ...], control: Control) -> None:
        self.display, self.labels, self.control = display, labels, control

    def frame(self, result, verdict, summary) -> None:
        if result.quality is None:
            return
        probs, quality = view_of(result, self.labels)
        overlay = Overlay(self.labels, probs, quality, verdict_text(verdict))
        if self.display.show(result.frame.image, result.frame.color_order, result.region, overlay):
            self.control.stop("window closed")

    def sample(self, record: SampleSummary | SampleStart) -> None:
        pass

    def close(self, record: SampleSummary) -> None:
        self.display.close()


def _status(text: str, live: bool) -> None:
    if live:
        sys.stderr.write("\r" + text[:150].ljust(150))
        sys.stderr.flush()
    else:
        print(text, flush=True)


@dataclass(frozen=True)
class Outlets:
    """What the device's settings add to a run: the live view ([serve], None: none), the publisher
    ([publish], None: none), and the model they name."""

    serve: Any
    publish: Any
    model: dict[str, Any]


def compose(labels: tuple[str, ...], options: RunOptions, control: Control, extra: list | None = None,
            outlets: Outlets | None = None) -> list[Sink]:
    """Every sink of a run, in the order each frame reaches them: the log first (a frame is logged
    before anything else can fail), the status line, the frame saver, the window, the live view, the
    publisher, then `extra`. The live view and the window open before the log does: a port in use or
    a refused window leaves no log behind."""
    device = _outlets(labels, options, control, outlets) if outlets is not None else []
    display = Display() if options.display else None
    built: list = [LogSink(options.log)]
    if options.status != "off":
        built.append(StatusSink(labels, options.status == "auto" and sys.stderr.isatty()))
    if options.save_frames:
        built.append(SaverSink(options.save_frames, options.min_confidence, options.site, options.label))
    if display is not None:
        built.append(DisplaySink(display, labels, control))
    return built + device + list(extra or [])


def _outlets(labels: tuple[str, ...], options: RunOptions, control: Control, outlets: Outlets) -> list:
    sinks = []
    if outlets.serve is not None:
        sinks.append(_live_view(outlets.serve, labels, options, control, outlets.model))
    if outlets.publish is not None:
        sinks.append(_publisher(outlets.publish, outlets.model, options.log))
    return sinks


def _live_view(conf: Any, labels: tuple[str, ...], options: RunOptions, control: Control, model: dict[str, Any]):
    """The browser live view from the settings' [serve] section (--serve included)."""
    from edgeleuk.runtime.access import ServeSettings
    from edgeleuk.runtime.live import LiveView

    settings = ServeSettings(str(conf.address), conf.token, tuple(str(h) for h in conf.hosts or ()))
    view = LiveView(settings, control, labels, options.log, model, site=options.site)
    where = "loopback only" if view.token is None else "token required: keep this address private"
    print(f"live view: {view.url} ({where})", flush=True)
    return view


def _publisher(conf: Any, model: dict[str, Any], log: Path | None):
    """The MQTT publisher from the settings' [publish] section (flags included)."""
    import socket

    from edgeleuk.runtime.mqtt_link import BrokerLogin
    from edgeleuk.runtime.publish import Publisher, PublishTarget

    queue = conf.queue or str((log.parent if log else Path.home() / ".local" / "state" / "edgeleuk") / "outbox.sqlite")
    target = PublishTarget(conf.url, Path(queue), conf.device_id or socket.gethostname(), frames=bool(conf.frames),
                           resend_window=float(conf.resend_window if conf.resend_window is not None else 300.0))
    publisher = Publisher(target, {"name": model["name"], "sha256": model["sha256"]}, BrokerLogin.of(conf),
                          warn=lambda text: print(text, file=sys.stderr, flush=True))
    print(f"publishing to {publisher.address.host}:{publisher.address.port} as {publisher.topic_base}/… "
          f"(queue {queue}; {publisher.outbox.count()} waiting from before)", flush=True)
    return publisher
