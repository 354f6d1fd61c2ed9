"""The one strict reader of structured files (the manifest, the model files' embedded copy of it, the
conversion recipes, the device config): unknown, missing and mistyped keys are each an error that
names the key.

Stdlib only. The fields and their types are the dataclass's own, so the check cannot drift from
what the code reads.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from edgeleuk.errors import UserError


def checked(cls: type, data: Any, where: str, source: str = "manifest") -> dict[str, Any]:
    """`data` as the keyword arguments of dataclass `cls`, after checking every key against its fields."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: {where} must be an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UserError(f"{source}: unknown key {where}.{unknown[0]!r}; expected one of {sorted(fields)}")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise UserError(f"{source}: {where} lacks {missing[0]!r}")
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        if not _matches(value, hints[name]):
            toml = source.endswith(".toml")  # TOML has no null: an optional key is left out instead
            optional = toml and type(None) in typing.get_args(hints[name])
            expected = _name(hints[name], null=not toml) + (" (or leave the key out)" if optional else "")
            raise UserError(f"{source}: {where}.{name} = {_short(value)} has the wrong type; expected {expected}")
    return dict(data)


def finite(data: Any, where: str, positive: tuple[str, ...] = (), limit: float = 1e12) -> None:
    """Every number in `data` finite and within ±limit (JSON readers accept NaN and Infinity, and a
    NaN threshold or ruler refuses every frame without a word), and the `positive` keys above 0."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in positive and isinstance(value, (int, float)) and not value > 0:
                raise UserError(f"{where}.{key} = {value}; expected a number above 0 (the file is damaged)")
            finite(value, f"{where}.{key}", positive, limit)
    elif isinstance(data, (list, tuple)):
        for i, value in enumerate(data):
            if isinstance(value, (dict, list, tuple)) or (isinstance(value, float) and not -limit <= value <= limit):
                # a row of plain numbers costs no call each (OOD matrices)
                finite(value, f"{where}[{i}]", positive, limit)
    elif isinstance(data, float) and not (math.isfinite(data) and abs(data) <= limit):
        raise UserError(f"{where} = {data}; expected a finite number within ±{limit:g} (the file is damaged)")


def _matches(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is tuple or origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return not args or (len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args)))
    if hint is dict or origin is dict:
        return isinstance(value, dict)
    if hint is list or origin is list:
        return isinstance(value, list)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, (dict, hint))
    return True


_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}


def _name(hint: Any, null: bool = True) -> str:
    """The type in a user's words ("a number or null", "a list, each an integer or null"); without
    `null`, None is left out of unions."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in _NAMES:
        return _NAMES[hint]
    if origin in (typing.Union, types.UnionType):
        # a number includes the integers
        kinds = [a for a in args if not (a is int and float in args) and (null or a is not type(None))]
        # "null or a list, each …", not "a list, each … or null"
        kinds.sort(key=lambda a: typing.get_origin(a) in (tuple, list))
        return " or ".join(dict.fromkeys(_name(a, null) for a in kinds))
    if hint in (tuple, list) or origin in (tuple, list):
        if len(args) == 2 and args[1] is Ellipsis or origin is list and args:
            return f"a list, each {_name(args[0], null)}"
        return f"a list of {len(args)} values" if args else "a list"
    if hint is dict or origin is dict or dataclasses.is_dataclass(hint):
        return "an object"
    return str(hint).replace("typing.", "")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
