"""What a running drill hands its actions and checks."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drillkit.core.measure import LedgerOutcome
from drillkit.core.probes import Baseline, Probes, verify_ledger
from drillkit.core.results import DrillResult
from drillkit.stack.stack import Stack


@dataclass
class DrillContext:
    stack: Stack
    probes: Probes
    result: DrillResult
    clock: Callable[[], float]
    baseline: Baseline | None = None
    state: dict[str, Any] = field(default_factory=dict)
    """Shared between the steps of one drill (the attacker's session, a restore point, ...)."""
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    """Undo actions run at teardown whatever happened (timers, held connections)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def primary(self) -> str:
        """The service currently acting as primary (changes after a failover)."""
        return str(self.state.get("primary", "primary"))

    def ledger(self) -> LedgerOutcome:
        """Look up every write the writer sent and every one it saw acknowledged, in the database
        acting as primary now."""
        with self.probes._lock:
            acked = list(self.probes.acked)
            sent = set(self.probes.sent)
        with self.stack.connect(self.primary) as conn:
            return verify_ledger(conn, acked, sent)

    def evidence(self, name: str, text: str) -> None:
        self.result.evidence[name] = text

    def figure(self, name: str, value: Any) -> None:
        self.result.extra[name] = value
