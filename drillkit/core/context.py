"""What a running drill hands its actions and checks.

Core facts are typed fields (`primary`, `seeded_orders`, `cleanups`, ...). What the catalogue's
steps pass to one another or to checks (the attacker's session, a restore point, ...) are
dataclasses the catalogue module defines, one instance per drill: `ctx.part(RestorePoint)`
returns it, created from its defaults on first use. Core names no catalogue type.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from drillkit.core.measure import LedgerOutcome
from drillkit.core.probes import AppClient, Baseline, Probes
from drillkit.core.results import DrillResult
from drillkit.stack.seed import PROBE_USER
from drillkit.stack.stack import Stack

P = TypeVar("P")


def app_client(stack: Stack, user: str = PROBE_USER, timeout_s: float = 5.0) -> AppClient:
    """A client of the stack's app, logging in as `user` (a seeded user) with the current user
    password (read at each login: it can be rotated)."""
    return AppClient(lambda: stack.app_url, user, lambda: stack.secrets["user_password"], timeout_s)


@dataclass
class DrillContext:
    stack: Stack
    probes: Probes
    result: DrillResult
    clock: Callable[[], float]
    baseline: Baseline | None = None
    primary: str = "primary"
    """The service currently acting as primary (changes after a failover)."""
    seeded_orders: int = 0
    """How many orders the seed wrote (the scale's count)."""
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    """Undo actions run at teardown whatever happened (timers, held connections)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    _parts: dict[type, Any] = field(default_factory=dict, repr=False)
    _parts_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def part(self, kind: type[P]) -> P:
        """The drill's one instance of the catalogue dataclass `kind` (made with its defaults on
        first use): how steps hand facts to later steps and checks."""
        with self._parts_lock:
            found = self._parts.get(kind)
            if found is None:
                found = self._parts[kind] = kind()
            return found  # type: ignore[no-any-return]

    def ledger(self) -> LedgerOutcome:
        """Look up every write the writer sent and every one it saw acknowledged, in the database
        acting as primary now (by the stack's declared lookup, when it declares a ledger)."""
        return self.probes.ledger_outcome(lambda: self.stack.connect(self.primary))

    def app_client(self, user: str = PROBE_USER, timeout_s: float = 5.0) -> AppClient:
        """See `app_client`."""
        return app_client(self.stack, user, timeout_s)

    def log_since(self, service: str, since: float) -> str:
        """The service's container log from `since` (a Unix time; an int cuts at the second, a
        float at sub-second precision), decoded."""
        return self.stack.containers[service].logs(since=since).decode("utf-8", "replace")

    def evidence(self, name: str, text: str) -> None:
        self.result.evidence[name] = text

    def figure(self, name: str, value: Any) -> None:
        self.result.extra[name] = value
