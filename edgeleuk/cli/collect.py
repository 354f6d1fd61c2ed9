"""edgeleuk collect: subscribe to the devices' MQTT topics and store every message once (SQLite or PostgreSQL)."""

from __future__ import annotations

import argparse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeleuk collect", description=__doc__)
    p.add_argument("url", help="mqtt://HOST[:PORT]/PREFIX (mqtts:// for TLS), as the devices publish to")
    p.add_argument(
        "--db",
        default="fleet.sqlite",
        help="SQLite file (default: fleet.sqlite) or postgresql://USER@HOST[:PORT]/DB (password from PGPASSWORD or "
        "~/.pgpass; needs edgeleuk[postgres])",
    )
    p.add_argument(
        "--config", help="TOML with [publish] username, password, ca_file, certfile, keyfile (kept private: chmod 600)"
    )
    p.add_argument(
        "--client-id", default="edgeleuk-collector",
        help="fixed, so the broker keeps the session while the collector is down"
    )
    p.add_argument("--seconds", type=float, help="stop after this long (default: until Ctrl-C)")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from edgeleuk.cli import sigterm_as_interrupt
    from edgeleuk.fleet import Collector
    from edgeleuk.runtime.config import read_config
    from edgeleuk.runtime.mqtt_link import BrokerLogin
    from edgeleuk.runtime.settings import device_settings

    conf = device_settings(read_config(args.config) if args.config else {}, []).publish
    sigterm_as_interrupt()
    collector = Collector(args.url, args.db, args.client_id, BrokerLogin.of(conf))
    print(
        f"collecting {collector.address.prefix}/+/verdict and /frame from "
        f"{collector.address.host}:{collector.address.port} into {collector.db.name}",
        flush=True,
    )
    try:
        collector.run(args.seconds)
    except KeyboardInterrupt:
        pass
    n = collector.counts
    print(f"stored {n['stored']} message(s), {n['duplicates']} redelivered duplicate(s) ignored, "
          f"{n['rejected']} malformed message(s) set aside in the table rejected")
    return 0
