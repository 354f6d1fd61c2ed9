"""A Mosquitto of the benchmarks' own on a free loopback port (soak.py, fleet_load.py)."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import threading
from pathlib import Path


def start_broker(folder: Path, extra: list[str] | tuple[str, ...] = ()) -> tuple[subprocess.Popen, int]:
    """Mosquitto listening on 127.0.0.1 with `extra` config lines; returns once it says it is running.
    FileNotFoundError when no mosquitto is installed."""
    exe = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).is_file()), None)
    if exe is None:
        raise FileNotFoundError("mosquitto")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # `user`: started as root, mosquitto would switch to its own user, which cannot write this folder
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", f"user {getpass.getuser()}",
             f"persistence_location {folder}/", *extra]
    conf = folder / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # its ready line
        if " running" in line:
            # its log goes on to stderr: read it, or a full pipe would stall the broker
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, port
    raise SystemExit(f"mosquitto did not start (config {conf})")
