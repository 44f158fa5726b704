"""The pieces of the lifecycle the runner's phases share: running one step in a thread with its
timeout, the checklist, the settle conditions of checks, and what a baseline backup needs.

Everything here reads entries through the registries; nothing names one.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from drillkit.core.context import DrillContext
from drillkit.core.measure import recovery_time
from drillkit.core.registry import CHECKS, RECOVERY, Entry, Registry, call
from drillkit.core.results import CheckResult, DrillResult, StepRecord
from drillkit.core.scenario import Check, Scenario, Step, restores_backup
from drillkit.errors import CheckFailed, DrillError, EnvironmentBroken, StepFailed
from drillkit.wait import wait_for


def call_in_thread(
    registry: Registry, step: Step, ctx: DrillContext, timeout_s: float
) -> tuple[bool, dict[str, Any]]:
    """Run the step's entry in a daemon thread for at most `timeout_s`. Returns whether it is
    still running (abandoned) and its outcome: {'output': ...} or {'error': exception}."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["output"] = call(registry.get(step.action), ctx, step.params)
        except BaseException as exc:
            outcome["error"] = exc

    th = threading.Thread(target=target, name=f"step-{step.action}", daemon=True)
    th.start()
    th.join(timeout_s)
    return th.is_alive(), outcome


def run_prepare(steps: tuple[Step, ...], run_step: Callable[..., None]) -> None:
    """The scenario's `prepare:` steps, after the steady state and before the fault, each run by
    `run_step(step, kind, registry, i, n)` and recorded as kind "prepare"; the first that fails
    stops the drill as an environment error (the runbook did not fail: its baseline did)."""
    for i, step in enumerate(steps):
        try:
            run_step(step, "prepare", RECOVERY, i, len(steps))
        except StepFailed as exc:
            raise EnvironmentBroken(f"prepare {exc}") from exc


def record_outcome(rec: StepRecord, step: Step, alive: bool, outcome: dict[str, Any]) -> None:
    """Fill the step record's ok / error / output from how the step ended."""
    if alive:
        rec.ok, rec.error = (
            False,
            f"overran its timeout of {step.timeout_s:g} s and was abandoned",
        )
    elif "error" in outcome:
        exc = outcome["error"]
        rec.ok, rec.error = False, f"{type(exc).__name__}: {exc}"
    else:
        rec.ok, rec.output = True, str(outcome.get("output") or "")[:4000]


def step_error(
    kind: str, step: Step, i: int, n: int, rec: StepRecord, err: BaseException | None
) -> BaseException:
    """What a failed step raises: a failed fault breaks the environment (the drill cannot go
    on), a failed recovery step is the runbook's failure."""
    if kind == "fault" and isinstance(err, (EnvironmentBroken, DrillError)):
        return err
    if kind == "fault":
        return EnvironmentBroken(f"fault step '{step.name}' failed: {rec.error}")
    return StepFailed(f"{i + 1}/{n} '{step.name}' ({step.action})", rec.error or "failed")


def wants_baseline_backup(scenario: Scenario, mode: str) -> bool:
    """'always', 'never', or 'auto': when a recovery step restores a backup (`restores=True`)."""
    return mode == "always" or (mode == "auto" and restores_backup(scenario.recovery))


def settle_checks(scenario: Scenario) -> list[tuple[Check, Entry]]:
    """The scenario's checklist items whose check has a settle condition (`settle=`)."""
    return [
        (item, CHECKS.get(item.id))
        for item in scenario.checklist
        if CHECKS.get(item.id).settle is not None
    ]


def settled(ctx: DrillContext, checks: list[tuple[Check, Entry]], t_fault: float, k: int) -> bool:
    """True when not recovered (nothing to settle) or every settle condition holds."""
    t_rec = recovery_time(ctx.probes.snapshot(), t_fault, k)
    if t_rec is None:
        return True
    return all(entry.settle(ctx, t_rec, **item.params) for item, entry in checks if entry.settle)


def wait_settled(
    ctx: DrillContext,
    checks: list[tuple[Check, Entry]],
    t_fault: float,
    k: int,
    timeout_s: float,
    clock: Callable[[], float],
) -> float:
    """Observe up to `timeout_s` longer while a settle condition does not hold; the time
    waited. Not settled by then is no error: the check then fails with its numbers."""
    started = clock()
    with contextlib.suppress(EnvironmentBroken):
        wait_for(
            lambda: settled(ctx, checks, t_fault, k),
            what="the checks' settle conditions to hold",
            timeout_s=timeout_s,
            interval_s=0.25,
            transient=(),
        )
    return clock() - started


def run_checklist(scenario: Scenario, ctx: DrillContext, result: DrillResult) -> list[str]:
    """Run every check of the scenario's checklist; record each; the failed ones' reasons."""
    failed: list[str] = []
    for item in scenario.checklist:
        entry = CHECKS.get(item.id)
        try:
            detail = call(entry, ctx, item.params)
            ok = True
        except CheckFailed as exc:
            ok, detail = False, str(exc)
        except Exception as exc:  # a check that crashes is a failed check, with its reason
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        result.checks.append(CheckResult(item.id, entry.label, ok, str(detail)[:2000]))
        if not ok:
            failed.append(f"{item.id}: {detail}")
    return failed
