"""The one strict reader of structured files (the manifest, the model files' embedded copy of it, the
conversion recipes, the device config): unknown, missing and mistyped keys are each an error that
names the key.

Stdlib only. The fields and their types are the dataclass's own, so the check cannot drift from
what the code reads.
"""

from __future__ import annotations

import dataclasses
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
            raise UserError(f"{source}: {where}.{name} = {_short(value)} has the wrong type; expected {_name(hints[name])}")
    return dict(data)


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


def _name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
