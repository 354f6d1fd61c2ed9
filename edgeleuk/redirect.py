"""File descriptors pointed elsewhere for a while: the C-level output of native libraries
(TensorFlow's and absl's logs, LiteRT's delegate notice, the converters' chatter), which Python's
sys.stdout and sys.stderr never see. The one redirect every stage uses."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def redirected(target: str | Path = os.devnull, fds: tuple[int, ...] = (2,)) -> Iterator[None]:
    """Point `fds` (default: stderr) at `target`, appended, for the duration; restored on every way out."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    sink = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        for fd in fds:
            os.dup2(sink, fd)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip(fds, saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(sink)
