"""Lifecycle events. The runner emits them; subscribers see them live (the terminal progress
reporter, or any callable added through the plugin's drill_bus fixture). The Allure, evidence and
history reporters read the finished record instead. Nothing here knows a subscriber."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    PROVISIONED = "provisioned"
    SEEDED = "seeded"
    BASELINE = "baseline"
    STEADY = "steady"
    INJECTED = "injected"
    DETECTED = "detected"
    STEP_STARTED = "step_started"
    STEP_ENDED = "step_ended"
    RECOVERED = "recovered"
    VERIFIED = "verified"
    FINISHED = "finished"
    TORN_DOWN = "torn_down"


@dataclass(frozen=True)
class Event:
    phase: Phase
    t: float
    """monotonic seconds (the drill's clock)"""
    wall: float
    """unix seconds, for humans and logs"""
    data: dict[str, Any] = field(default_factory=dict)


Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.history: list[Event] = []

    def subscribe(self, fn: Subscriber) -> None:
        self._subscribers.append(fn)

    def emit(self, phase: Phase, **data: Any) -> Event:
        event = Event(phase, time.monotonic(), time.time(), data)
        self.history.append(event)
        for fn in self._subscribers:
            fn(event)
        return event
