"""`edgeleuk fleet`: the per-device report a laboratory reads from the collector's database: last seen,
models, samples and their verdicts, refused and out-of-distribution share per sample, drift against
the device's own history, its clock's offset, and the messages the collector set aside.

Samples are in the order they arrived: a device's clock (a Raspberry Pi before NTP, a flat RTC
battery) may be hours or years off, and would otherwise put one sample "last" for good.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeleuk.fleet import Store
from edgeleuk.messages import Rejected, printable, sample_summary

MAX_SKEW_S = 300.0  # a device clock further off than this is flagged (NTP keeps one within a second)


@dataclass(frozen=True)
class ReportSettings:
    window: int = 5  # recent samples compared with the device's earlier history
    drift: float = 0.2  # a change of the refused or out-of-distribution share larger than this is flagged


def fleet_report(db_path: str | Path, settings: ReportSettings = ReportSettings()) -> dict[str, Any]:
    """{"devices": one row per device, "rejected": what the collector set aside, per topic}."""
    db = Store(db_path)
    try:
        devices = [r[0] for r in db.execute("SELECT DISTINCT device FROM messages ORDER BY device")]
        rows = [_device(db, device, settings) for device in devices]
        rejected = [
            {"topic": topic, "messages": n, "last_received": last, "last_reason": reason}
            for topic, n, last, reason in db.execute(
                "SELECT topic, COUNT(*), MAX(received_at), (SELECT reason FROM rejected r2 WHERE r2.topic = r.topic "
                "ORDER BY received_at DESC LIMIT 1) FROM rejected r GROUP BY topic ORDER BY topic"
            )
        ]
        return {"devices": rows, "rejected": rejected}
    finally:
        db.close()


def _device(db: Store, device: str, settings: ReportSettings) -> dict[str, Any]:
    last_seen = db.execute("SELECT MAX(received_at) FROM messages WHERE device = ?", (device,)).fetchone()[0]
    models = [
        r[0]
        for r in db.execute(
            "SELECT DISTINCT model_sha256 FROM messages WHERE device = ? AND model_sha256 IS NOT NULL", (device,)
        )
    ]
    payloads = db.execute(
        "SELECT payload FROM messages WHERE device = ? AND kind = 'verdict' ORDER BY received_at, id", (device,)
    )
    samples, unreadable = [], 0
    for (payload,) in payloads.fetchall():
        try:  # a database an older collector filled may hold messages that were never checked
            samples.append(sample_summary(json.loads(payload)))
        except (Rejected, ValueError):
            unreadable += 1
    refused = [round(s.refused / max(s.frames_seen, 1), 4) for s in samples]
    ood = [round(s.frames_out_of_distribution / max(s.frames_seen, 1), 4) for s in samples]
    verdicts: dict[str, int] = {}
    for s in samples:
        verdicts[s.decision] = verdicts.get(s.decision, 0) + 1
    skew = _clock_offset(db, device)
    return {
        "device": device,
        "last_seen": last_seen,
        "model_sha256": models,
        "samples": len(samples),
        "verdicts": verdicts,
        "refused_share_by_sample": refused,
        "ood_share_by_sample": ood,
        "sample_times": [s.time for s in samples],
        "drift": _drift(refused, ood, settings),
        "clock_offset_s": skew,
        "clock": _clock_note(skew),
        "unreadable_verdicts": unreadable,
        "frame_records": db.execute(
            "SELECT COUNT(*) FROM messages WHERE device = ? AND kind = 'frame'", (device,)
        ).fetchone()[0],
    }


def _drift(refused: list[float], ood: list[float], settings: ReportSettings) -> str | None:
    flags = []
    for shares, what in ((refused, "refused"), (ood, "out-of-distribution")):
        recent, history = shares[-settings.window:], shares[:-settings.window]
        if history and recent:
            before, now = sum(history) / len(history), sum(recent) / len(recent)
            if abs(now - before) > settings.drift:
                flags.append(f"{what} share {now:.0%} over the last {len(recent)} samples, {before:.0%} before")
    return "; ".join(flags) or None


def _clock_offset(db: Store, device: str) -> float | None:
    """The latest message's sent_at − received_at: the device clock's offset from the collector's, less
    the time the message waited in the device's queue. The latest, because a clock that NTP has set
    right since must not be flagged for the samples it sent before."""
    row = db.execute("SELECT sent_at - received_at FROM messages WHERE device = ? AND sent_at IS NOT NULL "
                     "ORDER BY received_at DESC, id DESC LIMIT 1", (device,)).fetchone()
    return None if row is None else round(row[0], 1)


def _clock_note(offset: float | None) -> str | None:
    if offset is None or abs(offset) <= MAX_SKEW_S:
        return None
    if offset > 0:
        return f"device clock {_duration(offset)} ahead"
    return f"last message arrived {_duration(-offset)} after its device time (a clock behind, or a queue sent late)"


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def format_report(report: dict[str, Any]) -> str:
    lines = ["| device | last seen (UTC) | model sha256 | samples | verdicts | refused share (last) | drift | clock |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["devices"]:
        seen = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["last_seen"])) if r["last_seen"] else "never"
        verdicts = ", ".join(f"{k} {v}" for k, v in r["verdicts"].items()) or "none"
        if r["unreadable_verdicts"]:
            verdicts += f" ({r['unreadable_verdicts']} unreadable)"
        last = f"{r['refused_share_by_sample'][-1]:.0%}" if r["refused_share_by_sample"] else "–"
        models = ", ".join(m[:12] for m in r["model_sha256"]) or "?"
        lines.append(
            f"| {r['device']} | {seen} | {models} | {r['samples']} | {verdicts} | {last} | {r['drift'] or 'no'} | "
            f"{r['clock'] or 'ok'} |"
        )
    for x in report["rejected"]:
        lines.append(
            f"set aside by the collector: {x['messages']} message(s) on {printable(x['topic'])} (last: "
            f"{printable(x['last_reason'])})"
        )
    return "\n".join(lines)
