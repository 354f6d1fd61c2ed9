"""Ctrl-C and SIGTERM held back over work that must not be cut in half, then raised as KeyboardInterrupt.

Python runs a signal handler between two bytecodes of the main thread, so a KeyboardInterrupt raised
there can land anywhere: halfway through an import, or inside TensorFlow's or tf2onnx's own Python
code while their C++ threads go on. A conversion stopped that way died with SIGSEGV instead of
removing its staging folder. With `Held`, the signal is noted and raised at the next `checkpoint()`
(or `release()`), where the caller's clean-up is safe; a second signal stops at once, for a user who
will not wait.
"""

from __future__ import annotations

import os
import signal
import sys
import threading


class Held:
    """`with Held(notice) as held:` installs handlers for SIGINT and SIGTERM (main thread only; they
    are put back on leaving). While held (from the start, or between `hold()` and `release()`), a
    signal waits for `checkpoint()`; `notice`, when given, tells the user what they are waiting for."""

    def __init__(self, notice: str | None = None, held: bool = True) -> None:
        self.notice, self.active, self.pending, self.saved = notice, held, False, {}
        self.stderr: int | None = None

    def _handler(self, signum, frame) -> None:
        if not self.active or (self.pending and self.notice is not None):
            raise KeyboardInterrupt
        self.pending = True
        # the terminal's stderr, also while a converter's output goes to a log
        if self.notice and self.stderr is not None:
            os.write(self.stderr, f"\n{self.notice} (Ctrl-C again to stop at once)\n".encode(errors="replace"))

    def __enter__(self) -> "Held":
        if self.notice:
            sys.stderr.flush()
            self.stderr = os.dup(2)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self.saved.items():
            signal.signal(sig, old)
        if self.stderr is not None:
            os.close(self.stderr)
            self.stderr = None

    def hold(self) -> None:
        self.active = True

    def release(self) -> None:
        self.active = False
        self.checkpoint()

    def checkpoint(self) -> None:
        """Raise KeyboardInterrupt here when a signal came while held."""
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt
