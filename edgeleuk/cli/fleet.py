"""edgeleuk fleet: per device, from the collected database: last seen, model sha256, samples and their
verdicts (in the order they arrived), the refused and out-of-distribution shares per sample, a drift
flag (a device whose shares depart from its own history), the device clock's offset, and the messages
the collector set aside as malformed."""

from __future__ import annotations

import argparse
import csv
import io
import json


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeleuk fleet", description=__doc__)
    p.add_argument("--db", default="fleet.sqlite", help="the collector's SQLite file or postgresql:// URL")
    p.add_argument("--json", help="also write the report as JSON here")
    p.add_argument("--csv", help="also write one row per device as CSV here")
    p.add_argument(
        "--window", type=int, default=5, help="recent samples compared with the device's history (default 5)"
    )
    p.add_argument(
        "--drift", type=float, default=0.2, help="flag a change of the refused share larger than this (default 0.2)"
    )
    p.add_argument("--since", metavar="WHEN",
                   help="only messages received since then: a duration back from now (36h, 7d) or a UTC date or "
                   "time (2026-12-01, 2026-12-01T08:00); default: all")
    return p


def since(text: str | None, now: float) -> float | None:
    """--since as seconds since 1970: `36h` / `7d` back from `now`, or an ISO 8601 date or time (UTC
    unless it names its zone)."""
    from datetime import datetime, timezone

    from edgeleuk.errors import UsageError

    if text is None:
        return None
    units = {"min": 60, "h": 3600, "d": 86400}
    for unit, seconds in units.items():
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return now - float(text[: -len(unit)]) * seconds
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"Received: --since {text}; expected a duration (36h, 7d, 90min) or a date or time "
                         "(2026-12-01, 2026-12-01T08:00)") from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from pathlib import Path

    from edgeleuk.errors import UserError
    from edgeleuk.fleet import is_postgres
    from edgeleuk.fleet_report import ReportSettings, fleet_report, format_report

    if not is_postgres(args.db) and not Path(args.db).is_file():
        raise UserError(f"no database {args.db} (edgeleuk collect writes it)")
    for flag, target in (("--json", args.json), ("--csv", args.csv)):  # before the report: a wrong path costs nothing
        if target and not Path(target).parent.is_dir():
            raise UserError(f"{flag} {target}: the folder {Path(target).parent} does not exist")
    if args.window < 1 or not 0 <= args.drift <= 1:
        raise UserError(
            f"Received: --window {args.window} --drift {args.drift}; expected a window ≥ 1 and a drift 0 … 1"
        )
    import time

    settings = ReportSettings(window=args.window, drift=args.drift, since=since(args.since, time.time()))
    report = fleet_report(args.db, settings)
    print(format_report(report))
    try:
        _write(args, report)
    except OSError as exc:
        raise UserError(
            f"cannot write the report to {exc.filename or args.json or args.csv}: {exc.strerror or exc}"
        ) from None
    return 0


def _write(args, report: dict) -> None:
    """The JSON and CSV copies, each whole or not at all."""
    from edgeleuk.files import atomic_write_text

    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
    if args.csv:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(
            [
                "device", "last_seen", "model_sha256", "samples", "verdicts", "last_refused_share", "last_ood_share",
                "drift", "clock_offset_s", "unreadable_verdicts"
            ]
        )
        for r in report["devices"]:
            writer.writerow(
                [
                    r["device"],
                    r["last_seen"],
                    " ".join(r["model_sha256"]),
                    r["samples"],
                    json.dumps(r["verdicts"]),
                    r["refused_share_by_sample"][-1] if r["refused_share_by_sample"] else "",
                    r["ood_share_by_sample"][-1] if r["ood_share_by_sample"] else "",
                    r["drift"] or "",
                    "" if r["clock_offset_s"] is None else r["clock_offset_s"],
                    r["unreadable_verdicts"],
                ]
            )
        atomic_write_text(args.csv, out.getvalue())
