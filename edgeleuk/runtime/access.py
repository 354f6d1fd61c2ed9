"""Who may use the live view: the address it listens on, the token, and the names it answers to.

A page elsewhere must not drive a live view on the device's loopback by rebinding its own name to
127.0.0.1 (DNS rebinding): every request's Host must be a name the view is served under (the
loopback names when it listens there, the bound address, and `serve.hosts` from the config); a
view on every interface (0.0.0.0) takes any name, and its token guards it. Stdlib only."""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from edgeleuk.errors import UsageError

COOKIE = "edgeleuk_token"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARDS = ("0.0.0.0", "::")


@dataclass(frozen=True)
class ServeSettings:
    address: str  # [HOST:]PORT
    token: str | None = None  # the config's; None: a new one per run when the host is not loopback
    hosts: tuple[str, ...] = ()  # other names the device is reached by (a Host header the view accepts)


def parse_address(text: str) -> tuple[str, int]:
    """'8000' → loopback:8000; 'HOST:PORT' (IPv6 in brackets) as given."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise UsageError(f"Received: --serve {text}; expected [HOST:]PORT, e.g. 8000 or 0.0.0.0:8000") from None
    if not 0 <= number <= 65535:
        raise UsageError(f"Received: --serve {text}; the port must be 0 … 65535")
    return host, number


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def needs_token(host: str, configured: str | None) -> bool:
    """Beyond the loopback always; on it only when the config sets one."""
    return configured is not None or not is_loopback(host)


def allowed_hosts(bound: str, listed: tuple[str, ...]) -> frozenset[str] | None:
    """The Host names a view bound to `bound` answers to; None: any (bound to every interface)."""
    if bound in WILDCARDS:
        return None
    names = {bound.lower(), *(n.lower().strip("[]") for n in listed)}
    return frozenset(names | set(LOOPBACK_NAMES)) if is_loopback(bound) else frozenset(names)


def host_of(scope) -> str | None:
    """The Host header's name, without the port (IPv6 brackets removed); None when absent."""
    for key, value in scope.get("headers", []):
        if key == b"host":
            text = value.decode("latin-1").strip().lower()
            if text.startswith("["):
                return text[1:text.find("]")] if "]" in text else text
            return text.rsplit(":", 1)[0] if text.count(":") == 1 else text
    return None


def authorised(scope, token: str) -> bool:
    """The token from the Authorization header, the page's cookie or the printed address's query."""
    from starlette.requests import Request

    request = Request(scope)
    auth = request.headers.get("authorization", "")
    offered = [auth[7:].strip()] if auth.lower().startswith("bearer ") else []
    offered += [v for v in (request.cookies.get(COOKIE), request.query_params.get("token")) if v]
    return any(hmac.compare_digest(o.encode(), token.encode()) for o in offered)
