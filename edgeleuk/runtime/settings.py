"""The device's settings: the config file's sections with the command line's flags laid over them,
as one typed object. The ranges are declared once (`config.BOUNDS`): the file's values are checked
as it is read, each flag's value as it is laid over, so every number is checked exactly once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from edgeleuk.errors import UsageError
from edgeleuk.runtime.config import SCHEMA, SECTIONS, good_roi, out_of_bounds


@dataclass(frozen=True)
class DeviceSettings:
    """One attribute per config section (`settings.camera.scale`); a key neither the file nor a flag
    set is None."""

    model: Any
    camera: Any
    quality: Any
    sample: Any
    log: Any
    publish: Any
    serve: Any

    def given(self, section: str) -> dict[str, Any]:
        """The keys of `section` that were set, as a dict."""
        body = getattr(self, section)
        return {f.name: getattr(body, f.name) for f in dataclasses.fields(body) if getattr(body, f.name) is not None}


@dataclass(frozen=True)
class Flag:
    """A command-line value over a config key (`key` is "section.key"); `value` None clears the key."""

    key: str
    name: str  # the flag as typed, e.g. "--min-focus"
    value: Any


def device_settings(doc: dict[str, dict[str, Any]], flags: list[Flag]) -> DeviceSettings:
    """The config (already read and checked by config.read_config) with the flags over it."""
    merged = {name: dict(doc.get(name, {})) for name in SCHEMA}
    for flag in flags:
        problem = out_of_bounds(flag.key, flag.value)
        if problem:
            raise UsageError(f"Received: {flag.name} {flag.value}; {problem}")
        section, key = flag.key.split(".")
        merged[section][key] = flag.value
    return DeviceSettings(**{name: SECTIONS[name](**body) for name, body in merged.items()})


def parse_roi(text: str, flag: str = "--roi") -> tuple[int, int, int, int]:
    """x,y,w,h from the command line (the config's camera.roi is a list, checked as it is read)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not good_roi(values):
        raise UsageError(f"Received: {flag} {text}; expected x,y,w,h (non-negative integers, w and h > 0)")
    return values  # type: ignore[return-value]


def camera_flags(camera: Any, source: str | None) -> list[Flag]:
    """--camera and --source each set their own key and clear the other's: the flag wins over the file."""
    if camera is not None and source:
        raise UsageError("pass either --camera or --source, not both")
    if camera is not None:
        return [Flag("camera.device", "--camera", camera), Flag("camera.source", "--camera", None)]
    if source:
        return [Flag("camera.source", "--source", source), Flag("camera.device", "--source", None)]
    return []
