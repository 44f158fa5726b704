"""Typed registries of fault actions, recovery actions, probe factories and checklist checks.

An action is a Python function `fn(ctx, **params)`; its parameters and their types are read from
its signature, so the YAML of a scenario is validated against the code that runs it. Parameter types:
str, int, float, bool, Duration (seconds, written '2s' / '250ms'), Service (a service of the stack),
list[str].

Facts about an entry are decorator arguments and live on its `Entry`: a check's `title`, whether a
recovery step `restores` the database from a backup, what an entry `needs` from the stack, and a
check's `settle` (the runner observes longer while it is false). The registries are filled when
`drillkit.catalog.load()` imports the catalogue; core/ never names an entry.
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
NOT_LOADED = "catalogue not loaded: call drillkit.catalog.load()"


class CatalogNotLoaded(RuntimeError):
    """A registry was read before any catalogue module registered into it."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{NOT_LOADED} (no {what} registered)")


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


Settle = Callable[..., bool]
"""`settle(ctx, t_recovered, **check_params) -> bool`: True once the check's condition has
settled (the runner stops extending the observation window)."""


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    """'fault', 'recovery', 'probe' or 'check'"""
    fn: Callable[..., Any]
    params: dict[str, Param]
    doc: str
    module: str = ""
    """The module that defined it (drillkit.catalog.*, or a team's)."""
    title: str = ""
    """A check's line in the report."""
    restores: bool = False
    """A recovery step that restores the database from a backup (pgBackRest): the runner takes a
    baseline backup first (baseline_backup: auto), and an RTO of 0 is refused."""
    needs: tuple[str, ...] = ()
    """What it needs from the stack (e.g. 'replica', 'pgbackrest', 'proxy', 'web', 'payments',
    'reference-app', 'data_fs', 'wal_fs', 'journey'). Enforced before start: core/needs.py refuses
    a scenario using it on a stack that lacks it."""
    settle: Settle | None = None
    """A check's settle condition (see `Settle`)."""

    @property
    def label(self) -> str:
        """The title, or one made from the name for an entry registered without one."""
        return self.title or self.name.replace("-", " ").capitalize()


class Registry:
    def __init__(self, kind: str, params: bool = True) -> None:
        self.kind = kind
        self.entries: dict[str, Entry] = {}
        self._params = params
        """False for probe factories: `fn(stack, timeout_s)` takes no scenario parameters."""

    def __call__(
        self,
        name: str,
        *,
        title: str = "",
        restores: bool = False,
        needs: tuple[str, ...] = (),
        settle: Settle | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            if name in self.entries:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self.entries[name] = Entry(
                name,
                self.kind,
                fn,
                _params(fn) if self._params else {},
                inspect.getdoc(fn) or "",
                module=fn.__module__,
                title=title,
                restores=restores,
                needs=tuple(needs),
                settle=settle,
            )
            return fn

        return register

    def get(self, name: str) -> Entry:
        return self.entries[name]

    def names(self) -> list[str]:
        return sorted(self.entries)

    def require_loaded(self) -> None:
        """Raise CatalogNotLoaded when nothing is registered (the catalogue was never loaded)."""
        if not self.entries:
            raise CatalogNotLoaded(f"{self.kind}s")


def _params(fn: Callable[..., Any]) -> dict[str, Param]:
    hints = typing.get_type_hints(fn)
    sig = inspect.signature(fn)
    return {
        p.name.rstrip("_"): Param(p.name.rstrip("_"), hints[p.name], p.default)
        for p in list(sig.parameters.values())[1:]
    }


FAULTS = Registry("fault")
RECOVERY = Registry("recovery")
CHECKS = Registry("check")
PROBES = Registry("probe", params=False)
"""Probe factories `fn(stack, timeout_s) -> {probe name: callable}`: extra probes a stack part
adds (none when the stack lacks it). The runner calls every registered factory."""

OPTIONAL_SERVICES: dict[str, tuple[str, ...]] = {}
"""Scenario `stack:` option (a boolean) -> the services it adds to the stack, registered by the
catalogue module that drives them (e.g. 'payments' -> the payment providers)."""


def optional_services(option: str, *services: str) -> None:
    """Declare that `stack: {<option>: true}` adds `services` (validated as Service parameters)."""
    OPTIONAL_SERVICES[option] = tuple(services)


def call(entry: Entry, ctx: Any, params: dict[str, Any]) -> Any:
    kwargs = {}
    sig = inspect.signature(entry.fn)
    names = {p.rstrip("_"): p for p in list(sig.parameters)[1:]}
    for k, v in params.items():
        kwargs[names[k]] = v
    return entry.fn(ctx, **kwargs)
