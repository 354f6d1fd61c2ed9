"""uvicorn's HTTP/1.1 protocol with a connection limit and a request timeout, for the live view.

uvicorn closes an idle keep-alive connection only after a response, and never one that has not
sent a whole request: 1,100 idle or half-sent TCP connections held every descriptor of a service
limited to 1,024, and the run's own files then failed. Here a connection beyond the limit is closed
at once, and one that has not started a request within `REQUEST_TIMEOUT_S` (idle, half-sent
headers, or bytes dripped one at a time) is closed then; a request in progress (the picture stream,
the log) is never cut.
"""

from __future__ import annotations

import asyncio
import resource

from uvicorn.protocols.http.h11_impl import H11Protocol

REQUEST_TIMEOUT_S = 10.0


def connection_limit() -> int:
    """A quarter of this process's descriptors, at most 256: the run keeps the rest for its own files
    (camera, log, queue, saved frames). 200 viewers of the picture stream fit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(8, min(256, (soft if soft != resource.RLIM_INFINITY else 4096) // 4))


class GuardedH11(H11Protocol):
    limit = connection_limit()
    refused_connections = 0  # since the start: the status reports it

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._refused = len(self.connections) >= self.limit
        if self._refused:
            type(self).refused_connections += 1
            transport.abort()
            return
        super().connection_made(transport)
        self._seen = self.cycle
        self._timer = self.loop.call_later(REQUEST_TIMEOUT_S, self._check)

    def _check(self) -> None:
        """Close unless a request has started since the last check or is still being answered."""
        idle = self.cycle is None or self.cycle.response_complete
        if idle and self.cycle is self._seen:
            self.transport.close()
            return
        self._seen = self.cycle
        self._timer = self.loop.call_later(REQUEST_TIMEOUT_S, self._check)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._timer.cancel()
        super().connection_lost(exc)
