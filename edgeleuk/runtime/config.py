"""The device configuration file (`device/edgeleuk.toml`) read by `edgeleuk run --config`.

Strict: an unknown key or a value of the wrong type is an error that names the key.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeleuk.errors import UserError
from edgeleuk.files import read_text
from edgeleuk.strict import checked

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# key → (type, check, meaning)
SCHEMA: dict[str, dict[str, tuple[type | tuple, str]]] = {
    "model": {
        "path": (str, "artifact file or conversion folder; empty: the packaged default"),
        "variant": (str, "manifest variant name"),
        "backend": (str, "litert, tflite-runtime or onnxruntime"),
        "threads": (int, "inference threads"),
    },
    "camera": {
        "device": ((int, str), "camera number or 'picamera2'"),
        "source": (str, "video/image/folder instead of a camera"),
        "width": (int, "capture width"),
        "height": (int, "capture height"),
        "roi": (list, "[x, y, w, h] region of interest"),
        "scale": ((int, float), "frame pixels per training-image pixel (edgeleuk calibrate-scale writes it)"),
    },
    "quality": {
        "min_focus": ((int, float), ""),
        "min_brightness": ((int, float), ""),
        "max_brightness": ((int, float), ""),
        "max_dark_fraction": ((int, float), ""),
        "max_bright_fraction": ((int, float), ""),
        "min_leukocyte_fraction": ((int, float), "0 … 1: refuse fields with less stained-leukocyte area (0: never)"),
        "max_scale_error": ((int, float), "refuse while cells look this many times larger or smaller than in training"),
    },
    "sample": {
        "frames": (int, "accepted frames per sample"),
        "min_confidence": ((int, float), "0 … 1"),
        "max_ood_fraction": (
            (int, float),
            "0 … 1: above this share of out-of-distribution frames the sample is referred",
        ),
    },
    "log": {
        "folder": (str, "folder for JSONL logs"),
        "save_frames": (str, "folder for the frames worth a second look (run --save-frames)"),
    },
    "publish": {
        "url": (str, "mqtt://HOST[:PORT]/PREFIX (mqtts:// for TLS): results to a broker (run --publish)"),
        "device_id": (str, "this device's name in the topics (default: the host name)"),
        "frames": (bool, "also publish every frame's record (default: only each sample's verdict)"),
        "queue": (str, "the durable outbox (SQLite; default: beside the logs, or ~/.local/state/edgeleuk)"),
        "username": (str, ""),
        "password": (str, ""),
        "ca_file": (str, "TLS: the broker's CA"),
        "certfile": (str, "TLS client certificate"),
        "keyfile": (str, "TLS client key"),
        "resend_window": (
            (int, float),
            "seconds an acknowledged message stays queued and is sent again after a "
            "reconnect, in case the broker crashed before saving it (default 300; keep it above "
            "the broker's autosave_interval; 0: off)",
        ),
    },
    "serve": {
        "address": ((int, str), "[HOST:]PORT of the live view (run --serve); empty: none"),
        "token": (str, "the live view's token (default: a new one per run when the host is not loopback)"),
        "hosts": (
            list,
            'other names the device is reached by, e.g. ["scope-3.local"] (the Host header; loopback '
            "names and the bound address are always accepted)",
        ),
    },
}


@dataclass(frozen=True)
class Bound:
    """The range a number must lie in, declared once for the config key and the flag that overrides it."""

    low: float | None = None
    high: float | None = None
    above: bool = False  # strictly above `low`
    text: str = ""  # the range in words, for the error

    def holds(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            return False
        return self.high is None or value <= self.high


_SHARE = Bound(0, 1, text="0 … 1")
_AT_LEAST_0 = Bound(0, text="a number ≥ 0")
BOUNDS: dict[str, Bound] = {
    "model.threads": Bound(1, 256, text="1 … 256"),
    "camera.scale": Bound(0.05, 50, text="0.05 … 50 (frame pixels per training-image pixel)"),
    "sample.frames": Bound(1, text="at least 1"),
    "sample.min_confidence": _SHARE,
    "sample.max_ood_fraction": _SHARE,
    "quality.max_scale_error": Bound(1, above=True, text="a number above 1"),
    "publish.resend_window": Bound(0, 7 * 86400, text="0 … 604800 seconds"),
    **{
        f"quality.{key}": _SHARE if "fraction" in key else _AT_LEAST_0
        for key in SCHEMA["quality"]
        if key != "max_scale_error"
    },
}


def out_of_bounds(name: str, value: Any) -> str | None:
    """What is wrong with a number for `name` ("section.key"), in words; None when it is in range
    or has no declared range."""
    bound = BOUNDS.get(name)
    if bound is None or isinstance(value, bool) or not isinstance(value, (int, float)) or bound.holds(value):
        return None
    return f"out of range, expected {bound.text}" if not math.isfinite(value) else f"expected {bound.text}"


def good_roi(roi: Any) -> bool:
    return (len(roi) == 4 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in roi)
            and roi[2] != 0 and roi[3] != 0)


def _section(name: str, keys: dict[str, tuple[type | tuple, str]]) -> type:
    """The section as a dataclass (every key optional), so strict.checked reads it like the manifest."""
    def hint(kind):
        if isinstance(kind, tuple):
            return typing.Union[tuple(kind)]  # noqa: UP007 (built at run time)
        return kind
    return dataclasses.make_dataclass(f"{name.title()}Section", [(k, hint(kind) | None, dataclasses.field(default=None))
                                                                  for k, (kind, _) in keys.items()], frozen=True)


SECTIONS = {name: _section(name, keys) for name, keys in SCHEMA.items()}


def read_config(path: str | Path) -> dict[str, dict[str, Any]]:
    path = Path(path)
    text = read_text(path, "config file", "a TOML file")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    for section, body in doc.items():
        if section not in SCHEMA:
            raise UserError(f"{path}: unknown section [{section}]; expected one of {', '.join(SCHEMA)}")
        if not isinstance(body, dict):
            raise UserError(f"{path}: {section} must be a table")
        checked(SECTIONS[section], body, section, str(path))
    roi = doc.get("camera", {}).get("roi")
    if roi is not None and not good_roi(roi):
        raise UserError(f"{path}: camera.roi = {roi!r}; expected [x, y, w, h] with non-negative integers and w, h > 0")
    for section, body in doc.items():
        for key, value in body.items():
            problem = out_of_bounds(f"{section}.{key}", value)
            if problem:
                raise UserError(f"{path}: {section}.{key} = {value}; {problem}")
    token = doc.get("serve", {}).get("token")
    secrets = [k for k, v in (("serve.token", token), ("publish.password", doc.get("publish", {}).get("password")),
                              ("publish.keyfile", doc.get("publish", {}).get("keyfile"))) if v is not None]
    if secrets and path.stat().st_mode & 0o004:
        raise UserError(f"{path} holds {secrets[0]} but every user of this computer can read it; "
                        f"make it private first: chmod 600 {path} (or 640 with the service's group)")
    if token is not None and len(token) < 16:
        raise UserError(f"{path}: serve.token is too short ({len(token)} characters); use at least 16 (e.g. python -c "
                        "'import secrets; print(secrets.token_urlsafe(18))')")
    return doc
