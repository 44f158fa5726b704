"""Waiting on a condition, never on the clock: every wait has a timeout, a poll interval, and says
what it waited for (with the service's last log lines) when it gives up."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from drillkit import cancel
from drillkit.errors import EnvironmentBroken

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T | None],
    *,
    what: str,
    timeout_s: float,
    interval_s: float = 0.05,
    transient: tuple[type[BaseException], ...] = (Exception,),
    context: Callable[[], str] | None = None,
) -> T:
    """Poll `condition` until it returns a truthy value and return it.

    Exceptions of the `transient` kinds count as "not yet". On timeout raise EnvironmentBroken with
    `what`, the last transient error and, when given, `context()` (e.g. a service's log tail).
    In a step's thread a stop (drillkit.cancel) ends the wait with StepStopped.
    """
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        cancel.check()
        try:
            value = condition()
            if value:
                return value
        except EnvironmentBroken:
            raise  # the condition knows it can never hold (e.g. the container exited)
        except transient as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            msg = f"timed out after {timeout_s:g} s waiting for {what}"
            if last_error is not None:
                msg += (
                    f" (last error: {type(last_error).__name__}: {str(last_error).strip()[:300]})"
                )
            if context is not None:
                msg += "\n" + context()
            raise EnvironmentBroken(msg)
        cancel.sleep(interval_s)
