"""The MQTT link the publisher and the collector share: the broker's address, the login and TLS
the config names, the paho-mqtt client, and the connect-and-loop step both threads turn."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from edgeleuk.errors import UserError, missing_package


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    prefix: str
    tls: bool

    @classmethod
    def parse(cls, url: str) -> "BrokerAddress":
        parsed = urlparse(url)
        if parsed.scheme not in ("mqtt", "mqtts") or not parsed.hostname:
            raise UserError(f"Received: {url}; expected mqtt://HOST[:PORT]/PREFIX (or mqtts:// for TLS)")
        if parsed.username or parsed.password:
            raise UserError(
                "put the broker's username and password in the config ([publish] username, password), not in the URL"
            )
        prefix = parsed.path.strip("/") or "edgeleuk"
        if any(c in prefix for c in "+#") or "#" in url or "//" in prefix:
            raise UserError(
                f"Received: topic prefix {prefix!r}; MQTT wildcards (+, #) and empty levels are not allowed"
            )
        try:
            port = parsed.port or (8883 if parsed.scheme == "mqtts" else 1883)
        except ValueError:
            raise UserError(f"Received: {url}; the port must be a number 1 … 65535") from None
        return cls(parsed.hostname, port, prefix, parsed.scheme == "mqtts")


@dataclass(frozen=True)
class BrokerLogin:
    """The credentials and TLS files of the config's [publish] section."""

    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    @classmethod
    def of(cls, section: Any) -> "BrokerLogin":
        """From a settings section (or anything with those attributes)."""
        return cls(section.username, section.password, section.ca_file, section.certfile, section.keyfile)


def client(client_id: str, address: BrokerAddress, login: BrokerLogin = BrokerLogin(), clean: bool = True):
    """A paho-mqtt client with the credentials and TLS the config names."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise missing_package("paho-mqtt (for --publish and collect)", "publish") from None
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean, protocol=mqtt.MQTTv311)
    if login.username:
        c.username_pw_set(login.username, login.password)
    if address.tls or login.ca_file or login.certfile:
        try:
            c.tls_set(ca_certs=login.ca_file, certfile=login.certfile, keyfile=login.keyfile)
        except (OSError, ValueError) as exc:
            raise UserError(f"publish: TLS settings refused ({exc})") from None
    c.reconnect_delay_set(min_delay=1, max_delay=10)
    return c


def refusal(reason) -> str:
    """The broker's CONNACK refusal, in words a user can act on."""
    text = str(reason).lower()
    if "password" in text or "user name" in text:
        return "the broker refused the credentials (bad username or password)"
    if "authori" in text:  # Mosquitto answers a wrong password so, too
        return "the broker refused the credentials (not authorised: check [publish] username and password)"
    return f"the broker refused the connection ({reason})"


class Link:
    """The connect-and-loop state machine of one client: CONNECT when the socket is down, then
    paho's loop. `up` is the socket, not the session: is_connected() is False until the CONNACK,
    and a second CONNECT meanwhile would break the first."""

    def __init__(self, client: Any, address: BrokerAddress) -> None:
        self.client, self.address, self.up = client, address, False

    def step(self, timeout: float) -> str | None:
        """One turn; returns why the broker could not be reached, or None."""
        if not self.up:
            try:
                self.client.connect(self.address.host, self.address.port, keepalive=30)
            except OSError as exc:
                return f"broker {self.address.host}:{self.address.port} unreachable ({exc.strerror or exc})"
            self.up = True
        self.up = self.client.loop(timeout=timeout) == 0  # not 0: the socket is gone (paho called on_disconnect)
        return None

    def close(self) -> None:
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001 (closing a broken connection)
            pass
