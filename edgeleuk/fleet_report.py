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
    since: float | None = None  # only messages received from then on (seconds since 1970); None: all


def fleet_report(db_path: str | Path, settings: ReportSettings = ReportSettings()) -> dict[str, Any]:
    """{"devices": one row per device, "rejected": what the collector set aside, per topic}. Each
    table is read once for all devices, through the collector's indexes, not once per device."""
    db = Store(db_path)
    try:
        since = settings.since if settings.since is not None else float("-inf")
        devices = _totals(db, since)
        verdicts = _verdicts(db, since)
        rows = [_device(device, totals, verdicts.get(device, ([], 0)), _clock_offset(db, device), settings)
                for device, totals in sorted(devices.items())]
        rejected = [
            {"topic": topic, "messages": n, "last_received": last, "last_reason": reason}
            for topic, n, last, reason in db.execute(
                "SELECT topic, COUNT(*), MAX(received_at), (SELECT reason FROM rejected r2 WHERE r2.topic = r.topic "
                "ORDER BY received_at DESC LIMIT 1) FROM rejected r WHERE received_at >= ? "
                "GROUP BY topic ORDER BY topic",
                (since,),
            )
        ]
        return {"devices": rows, "rejected": rejected}
    finally:
        db.close()


def _totals(db: Store, since: float) -> dict[str, dict[str, Any]]:
    """Per device, in one pass: last seen, the models it ran, its frame records."""
    out: dict[str, dict[str, Any]] = {}
    for device, sha, last, frames in db.execute(
        "SELECT device, model_sha256, MAX(received_at), SUM(CASE WHEN kind = 'frame' THEN 1 ELSE 0 END) "
        "FROM messages WHERE received_at >= ? GROUP BY device, model_sha256", (since,)
    ):
        d = out.setdefault(device, {"last_seen": last, "models": [], "frames": 0})
        d["last_seen"] = max(d["last_seen"], last)
        d["frames"] += int(frames)
        if sha is not None:
            d["models"].append(sha)
    return out


def _verdicts(db: Store, since: float) -> dict[str, tuple[list, int]]:
    """Per device, its verdicts' summaries in arrival order, and how many could not be read."""
    out: dict[str, tuple[list, int]] = {}
    rows = db.execute("SELECT device, payload FROM messages WHERE kind = 'verdict' AND received_at >= ? "
                      "ORDER BY device, received_at, id", (since,))
    for device, payload in rows.fetchall():
        samples, unreadable = out.get(device, ([], 0))
        try:  # a database an older collector filled may hold messages that were never checked
            samples.append(sample_summary(json.loads(payload)))
        except (Rejected, ValueError):
            unreadable += 1
        out[device] = (samples, unreadable)
    return out


def _device(device: str, totals: dict[str, Any], verdicts: tuple[list, int], skew: float | None,
            settings: ReportSettings) -> dict[str, Any]:
    samples, unreadable = verdicts
    refused = [round(s.refused / max(s.frames_seen, 1), 4) for s in samples]
    ood = [round(s.frames_out_of_distribution / max(s.frames_seen, 1), 4) for s in samples]
    decisions: dict[str, int] = {}
    for s in samples:
        decisions[s.decision] = decisions.get(s.decision, 0) + 1
    return {
        "device": device,
        "last_seen": totals["last_seen"],
        "model_sha256": sorted(totals["models"]),
        "samples": len(samples),
        "verdicts": decisions,
        "refused_share_by_sample": refused,
        "ood_share_by_sample": ood,
        "sample_times": [s.time for s in samples],
        "drift": _drift(refused, ood, settings),
        "clock_offset_s": skew,
        "clock": _clock_note(skew),
        "unreadable_verdicts": unreadable,
        "frame_records": totals["frames"],
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
