"""Typed registries of fault actions, recovery actions and checklist checks.

An action is a Python function `fn(ctx, **params)`; its parameters and their types are read from
its signature, so the YAML of a scenario is validated against the code that runs it. Parameter types:
str, int, float, bool, Duration (seconds, written '2s' / '250ms'), Service (a service of the stack),
list[str].
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NewType

Duration = NewType("Duration", float)
Service = NewType("Service", str)

_NO_DEFAULT = inspect.Parameter.empty


@dataclass(frozen=True)
class Param:
    name: str
    type: Any
    default: Any = _NO_DEFAULT

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT

    @property
    def type_name(self) -> str:
        return {
            Duration: "duration",
            Service: "service",
            str: "string",
            int: "integer",
            float: "number",
            bool: "true/false",
        }.get(self.type, "list of strings")


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    """'fault', 'recovery' or 'check'"""
    fn: Callable[..., Any]
    params: dict[str, Param]
    doc: str


class Registry:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.entries: dict[str, Entry] = {}

    def __call__(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            hints = typing.get_type_hints(fn)
            sig = inspect.signature(fn)
            params = {
                p.name.rstrip("_"): Param(p.name.rstrip("_"), hints[p.name], p.default)
                for p in list(sig.parameters.values())[1:]
            }
            if name in self.entries:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self.entries[name] = Entry(name, self.kind, fn, params, inspect.getdoc(fn) or "")
            return fn

        return register

    def get(self, name: str) -> Entry:
        return self.entries[name]

    def names(self) -> list[str]:
        return sorted(self.entries)


FAULTS = Registry("fault")
RECOVERY = Registry("recovery")
CHECKS = Registry("check")


def call(entry: Entry, ctx: Any, params: dict[str, Any]) -> Any:
    kwargs = {}
    sig = inspect.signature(entry.fn)
    names = {p.rstrip("_"): p for p in list(sig.parameters)[1:]}
    for k, v in params.items():
        kwargs[names[k]] = v
    return entry.fn(ctx, **kwargs)
