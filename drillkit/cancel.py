"""Stopping a step that overran: a scope per step thread that its blocking actions register with.

Python cannot kill a thread, so a step is stopped from the inside: the runner runs each step in a
`Scope`; what a step blocks on registers a killer with the scope it runs in (a host command's
process group, a `docker exec` in a service), and `wait_for` and `sleep` poll the scope. When the
step overruns, `Scope.cancel()` kills what is registered, and every later wait, sleep or exec in
that thread raises `StepStopped`, so the thread ends instead of acting beside the teardown.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from drillkit.errors import DrillError


class StepStopped(DrillError):
    """The step was stopped (it overran its timeout or the drill's maximum duration)."""


class Scope:
    def __init__(self, name: str) -> None:
        self.name = name
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._killers: dict[int, Callable[[], None]] = {}
        self._next = 0

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def on_cancel(self, kill: Callable[[], None]) -> Callable[[], None]:
        """Register `kill` (run once, on cancel; at once if already cancelled); returns the
        function that unregisters it (call it when the action ended by itself)."""
        with self._lock:
            key, self._next = self._next, self._next + 1
            self._killers[key] = kill
        if self.cancelled:
            self._run(key)

        def unregister() -> None:
            with self._lock:
                self._killers.pop(key, None)

        return unregister

    def _run(self, key: int) -> str | None:
        with self._lock:
            kill = self._killers.pop(key, None)
        if kill is None:
            return None
        try:
            kill()
        except Exception as exc:  # a kill that fails is reported, the others still run
            return f"{type(exc).__name__}: {exc}"
        return None

    def cancel(self) -> list[str]:
        """Stop the step: set the flag, run every registered killer; their errors (if any)."""
        self._event.set()
        with self._lock:
            keys = list(self._killers)
        return [err for key in keys if (err := self._run(key)) is not None]

    def check(self) -> None:
        if self.cancelled:
            raise StepStopped(f"step {self.name} was stopped")

    def sleep(self, seconds: float) -> None:
        """Sleep up to `seconds`; raises StepStopped at once when the scope is cancelled."""
        self.check()
        if self._event.wait(max(0.0, seconds)):
            self.check()


_local = threading.local()


def current() -> Scope | None:
    """The scope the calling thread runs in (None outside a step)."""
    return getattr(_local, "scope", None)


@contextlib.contextmanager
def running_in(scope: Scope) -> Iterator[Scope]:
    """Make `scope` the calling thread's scope for the block."""
    previous = current()
    _local.scope = scope
    try:
        yield scope
    finally:
        _local.scope = previous


def check() -> None:
    """Raise StepStopped when the calling thread's step was stopped."""
    scope = current()
    if scope is not None:
        scope.check()


def sleep(seconds: float) -> None:
    """time.sleep that a stop interrupts (in a step's thread)."""
    scope = current()
    if scope is None:
        time.sleep(seconds)
    else:
        scope.sleep(seconds)


@contextlib.contextmanager
def killable(kill: Callable[[], None]) -> Iterator[None]:
    """Register `kill` with the calling thread's scope for the block (no-op outside a step)."""
    scope = current()
    if scope is None:
        yield
        return
    scope.check()
    unregister = scope.on_cancel(kill)
    try:
        yield
    finally:
        unregister()
    scope.check()
