"""The pieces of the lifecycle the runner's phases share: running one step in a thread with its
timeout, the checklist, the settle conditions of checks, and what a baseline backup needs.

Everything here reads entries through the registries; nothing names one.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psycopg

from drillkit import cancel
from drillkit.core.config import Deadline
from drillkit.core.context import DrillContext
from drillkit.core.environment import signals_held
from drillkit.core.measure import AckedWrite, LedgerOutcome, Sample, recovery_time
from drillkit.core.probes import DEGRADED_PREFIX, Probes, median
from drillkit.core.registry import CHECKS, RECOVERY, Entry, Registry, call
from drillkit.core.results import CheckResult, DrillResult, StepRecord
from drillkit.core.scenario import Check, Scenario, Step, restores_backup
from drillkit.errors import CheckFailed, DrillAborted, DrillError, EnvironmentBroken, StepFailed
from drillkit.stack import hostfs
from drillkit.stack.stack import Stack
from drillkit.wait import wait_for

STOP_GRACE_S = 5.0
"""How long a stopped step's thread gets to end after its killers ran."""


def in_thread(
    name: str, fn: Callable[[], Any], timeout_s: float, grace_s: float | None = None
) -> dict[str, Any]:
    """Run `fn` in a daemon thread, in its own stop scope (drillkit.cancel), for at most
    `timeout_s`. Its outcome: {'output': ...} or {'error': exception}; when it overran, also
    'overran': True, and the scope is cancelled (its registered docker execs and host process
    groups killed, its waits and sleeps ended) and the thread joined `grace_s` more: 'stopped' says
    whether it ended, 'thread' holds it if not (the runner joins it again before teardown)."""
    outcome: dict[str, Any] = {}
    scope = cancel.Scope(name)

    def target() -> None:
        with cancel.running_in(scope):
            try:
                outcome["output"] = fn()
            except BaseException as exc:
                outcome["error"] = exc

    th = threading.Thread(target=target, name=f"step-{name}", daemon=True)
    th.start()
    th.join(timeout_s)
    if th.is_alive():
        outcome["overran"] = True
        outcome["stop_errors"] = scope.cancel()
        th.join(STOP_GRACE_S if grace_s is None else grace_s)
        outcome["stopped"] = not th.is_alive()
        if th.is_alive():
            outcome["thread"] = th
    return outcome


def call_in_thread(
    registry: Registry, step: Step, ctx: DrillContext, timeout_s: float
) -> tuple[bool, dict[str, Any]]:
    """Run the step's entry with `in_thread`; returns whether it overran, and its outcome."""
    outcome = in_thread(
        step.action, lambda: call(registry.get(step.action), ctx, step.params), timeout_s
    )
    return bool(outcome.get("overran")), outcome


def run_prepare(steps: tuple[Step, ...], run_step: Callable[..., None]) -> None:
    """The scenario's `prepare:` steps, after the steady state and before the fault, each run by
    `run_step(step, kind, registry, i, n)` and recorded as kind "prepare"; the first that fails
    stops the drill as an environment error (the runbook did not fail: its baseline did)."""
    for i, step in enumerate(steps):
        try:
            run_step(step, "prepare", RECOVERY, i, len(steps))
        except StepFailed as exc:
            raise EnvironmentBroken(f"prepare {exc}") from exc


def record_outcome(rec: StepRecord, step: Step, overran: bool, outcome: dict[str, Any]) -> None:
    """Fill the step record's ok / error / output from how the step ended."""
    if overran:
        how = (
            "was stopped"
            if outcome.get("stopped")
            else f"did not stop within {STOP_GRACE_S:g} s of being stopped (thread abandoned)"
        )
        rec.ok, rec.error = False, f"overran its timeout of {step.timeout_s:g} s and {how}"
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


def run_checklist(
    scenario: Scenario,
    ctx: DrillContext,
    result: DrillResult,
    remaining: Callable[[], float] | None = None,
) -> list[str]:
    """Run every check of the scenario's checklist; record each; the failed ones' reasons.
    With `remaining` (the drill's deadline), each check runs for at most the time left: one
    that overruns it is stopped, recorded as failed, and CheckOverran is raised."""
    failed: list[str] = []
    for item in scenario.checklist:
        entry = CHECKS.get(item.id)
        if remaining is None:
            outcome = _call_check(entry, ctx, item)
        else:
            outcome = in_thread(
                f"check-{item.id}", lambda e=entry, i=item: call(e, ctx, i.params), remaining()
            )
        if outcome.get("overran"):
            detail = "stopped: the drill reached its maximum duration"
            result.checks.append(CheckResult(item.id, entry.label, False, detail))
            raise CheckOverran(item.id)
        ok, detail = _check_verdict(outcome)
        result.checks.append(CheckResult(item.id, entry.label, ok, str(detail)[:2000]))
        if not ok:
            failed.append(f"{item.id}: {detail}")
    return failed


class CheckOverran(Exception):
    """A checklist item ran past the drill's maximum duration (the runner aborts the drill)."""

    def __init__(self, check: str) -> None:
        self.check = check
        super().__init__(f"check {check}")


def _call_check(entry: Entry, ctx: DrillContext, item: Check) -> dict[str, Any]:
    try:
        return {"output": call(entry, ctx, item.params)}
    except Exception as exc:
        return {"error": exc}


def _check_verdict(outcome: dict[str, Any]) -> tuple[bool, str]:
    """A check that raised CheckFailed failed with its reason; one that crashed failed too."""
    exc = outcome.get("error")
    if exc is None:
        return True, str(outcome.get("output"))
    if isinstance(exc, CheckFailed):
        return False, str(exc)
    return False, f"{type(exc).__name__}: {exc}"


def look_up_ledger(
    ctx: DrillContext, acked: list[AckedWrite], deadline: Deadline
) -> tuple[LedgerOutcome, str | None]:
    """Every acknowledged write looked up, for at most the drill's time left; and the breach
    when the database cannot be read: after "recovery" that proves none of the acknowledged
    writes, so each counts as lost (an auditor's reading)."""
    try:
        looked_up = in_thread("ledger", ctx.ledger, deadline.remaining())
        if looked_up.get("overran"):
            raise DrillAborted("verify (the ledger lookup)", deadline.limit_s)
        if "error" in looked_up:
            raise looked_up["error"]
        return looked_up["output"], None
    except (EnvironmentBroken, psycopg.Error) as exc:
        error = f"ledger: cannot look up the {len(acked)} acknowledged writes ({exc})"
        return LedgerOutcome(acked=len(acked), lost=tuple(acked)), error


def fault_figures(res: DrillResult, t_fault: float, t_recovered: float | None) -> None:
    """The error rate and the journey's median latency between the fault and recovery."""
    during = [x for x in res.samples if t_fault <= x.t <= (t_recovered or float("inf"))]
    if during:
        res.extra["error_rate_during_fault"] = round(sum(not x.ok for x in during) / len(during), 3)
        res.extra["journey_p50_ms_during_fault"] = round(
            1000 * median([x.latency_s for x in during if x.probe == "journey"] or [0.0]), 1
        )


def join_abandoned(abandoned: list[threading.Thread], result: DrillResult) -> None:
    """A stopped step whose thread still runs gets a last chance to end before teardown;
    one that still runs is recorded (its docker execs and host commands were killed)."""
    for th in abandoned:
        th.join(STOP_GRACE_S)
    still = [th.name for th in abandoned if th.is_alive()]
    if still:
        result.extra["steps_running_at_teardown"] = still


def stop_and_clean(ctx: DrillContext, res: DrillResult) -> None:
    """Stop the probes (their samples and acknowledged writes into the record), then run the
    drill's cleanups in reverse order; a failing cleanup is recorded, the others still run."""
    if ctx.probes.running:
        ctx.probes.stop()
        res.samples = ctx.probes.snapshot()
        res.acked = list(ctx.probes.acked)
    for undo in reversed(ctx.cleanups):
        try:
            undo()
        except Exception as exc:  # cleanup must go on; the record keeps the reason
            res.extra.setdefault("cleanup_errors", []).append(f"{type(exc).__name__}: {exc}")


def probe_kinds(samples: list[Sample], since: float, extra: Iterable[str] = ()) -> set[str]:
    """The probes that ran since `since`, and every extra probe (a slow one counts before its
    first sample is in)."""
    return {s.probe for s in samples if s.t >= since} | set(extra)


def evidence_in(samples: list[Sample], since: float | None, n: int, kinds: set[str]) -> bool:
    """True when every probe in `kinds` has at least `n` samples from `since` on and all of
    them passed: the window has seen what it is there to see. False with no `since` (not
    recovered), with n < 1 (observe the whole window), or with any failure since."""
    if since is None or n < 1 or not kinds:
        return False
    counts = dict.fromkeys(kinds, 0)
    for s in samples:
        if s.t < since:
            continue
        if not s.ok:
            return False
        if s.probe in counts:
            counts[s.probe] += 1
    return min(counts.values()) >= n


def wait_evidence(done: Callable[[], bool], window_s: float, clock: Callable[[], float]) -> float:
    """Observe until `done()` or for `window_s` (the upper bound), whichever comes first; the
    time observed."""
    started = clock()
    with contextlib.suppress(EnvironmentBroken):
        wait_for(done, what="the evidence", timeout_s=window_s, interval_s=0.05, transient=())
    return clock() - started


def steady_held(probes: Probes, t_steady: float, n: int) -> bool:
    """The steady-state window's end condition: a probe failed (the runner then says the steady
    state did not hold), or every probe passed `n` times since `t_steady`."""
    samples = probes.snapshot()
    if probes.first_failure(t_steady) is not None:
        return True
    return evidence_in(samples, t_steady, n, probe_kinds(samples, t_steady, probes.extra))


STEADY_RETRIES = 3
"""How many times steady state is established again after a sample that was only slow (past the
scenario's degraded threshold, the call itself succeeded) before the drill is called broken."""


def only_slow(sample: Sample) -> bool:
    """The sample failed only by the degraded threshold: the call answered, late."""
    return (sample.error or "").startswith(DEGRADED_PREFIX)


def await_steady(
    probes: Probes,
    k: int,
    n: int,
    window_s: float,
    budget_s: float,
    clock: Callable[[], float],
) -> tuple[float, float, list[Sample]]:
    """Establish steady state (k consecutive passing probe samples) and observe its window (it
    ends once every probe passed `n` times, 0: the whole `window_s`): (T_steady, the window's
    length, the slow samples that made it start again). A sample that was only slow (the host
    stalled: with a CPU hog and a second drill on 2 cores a journey took 501 and 598 ms against
    db-latency's 500 ms threshold) starts steady state again, up to STEADY_RETRIES times within
    `budget_s`; any other failure, or one slow sample too many, is EnvironmentBroken at once."""
    end = clock() + budget_s
    slow: list[Sample] = []
    while True:
        t_start = clock()
        wait_for(
            lambda: probes.passing_streak(t_start) >= k,  # noqa: B023 (called in this pass)
            what=f"{k} consecutive passing probes (steady state)",
            timeout_s=max(0.0, end - clock()),
            context=lambda: "\n".join(f"{s.probe}: {s.error}" for s in probes.snapshot()[-5:]),
        )
        t_steady = clock()
        held = lambda: steady_held(probes, t_steady, n)  # noqa: E731, B023
        observed = wait_evidence(held, max(0.0, min(window_s, end - clock())), clock)
        failure = probes.first_failure(t_steady)
        if failure is None:
            return t_steady, observed, slow
        if not only_slow(failure) or len(slow) >= STEADY_RETRIES or clock() >= end:
            again = f" (steady state started again after {len(slow)} slow samples)" if slow else ""
            raise EnvironmentBroken(f"steady state did not hold: {failure}{again}")
        slow.append(failure)


def recovery_evident(
    ctx: DrillContext,
    t_fault: float,
    k: int,
    n: int,
    checks: list[tuple[Check, Entry]],
    after: float,
) -> bool:
    """The observation window's end condition: recovered (T_recovered per measure.py), every
    probe passed at least `n` times since T_recovered and since `after` (the runbook's end: a
    service that came back during the runbook is still watched after its last step), no
    failure since (a flap keeps the window open to its end), no probe call begun before then
    still running (its sample, stamped at its end, could be a failure), and every check's
    settle condition holds."""
    samples = ctx.probes.snapshot()
    t_rec = recovery_time(samples, t_fault, k)
    since = None if t_rec is None else max(t_rec, after)
    if not evidence_in(samples, since, n, probe_kinds(samples, t_fault, ctx.probes.extra)):
        return False
    oldest = ctx.probes.oldest_in_flight()
    if since is not None and oldest is not None and oldest < since:
        return False  # a call begun before recovery has yet to say how it ended
    return settled(ctx, checks, t_fault, k)


TEARDOWNS: list[threading.Thread] = []
"""Stacks being torn down in the background: `join_teardowns` waits for them (the plugin at the
end of the session; they are not daemons, so the interpreter waits for them at exit too)."""
TEARDOWN_ERRORS: list[str] = []


def remove_stack(stack: Stack, run_dir: Path, done: Callable[[], None]) -> None:
    """Remove the stack's containers, networks and volumes, then its run folder; `done()`."""
    try:
        stack.down()
    finally:
        hostfs.reap_loopfs(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
    done()


def tear_down(remove: Callable[[], None], background: bool) -> list[int]:
    """Run `remove` now with Ctrl-C and SIGTERM held (the signals that came meanwhile are
    returned), or in a background thread so the next drill starts sooner. A background
    removal that fails is kept in TEARDOWN_ERRORS; what it left is labelled with its run id,
    so `make clean` (and the next session's reaping) still removes it."""
    if not background:
        with signals_held() as interrupted:
            remove()
        return interrupted

    def target() -> None:
        try:
            remove()
        except Exception as exc:  # kept for join_teardowns; the labels let make clean finish
            TEARDOWN_ERRORS.append(f"{type(exc).__name__}: {exc}")

    th = threading.Thread(target=target, name="teardown", daemon=False)
    th.start()
    TEARDOWNS.append(th)
    return []


def await_teardowns(timeout_s: float = 120.0) -> None:
    """Wait for the background teardowns running now; what fails stays for `join_teardowns`."""
    for th in list(TEARDOWNS):
        th.join(timeout_s)


def join_teardowns(timeout_s: float = 120.0) -> list[str]:
    """Wait for every background teardown; what failed (or had not ended in `timeout_s`)."""
    while TEARDOWNS:
        th = TEARDOWNS.pop()
        th.join(timeout_s)
        if th.is_alive():
            TEARDOWN_ERRORS.append(f"a teardown still running after {timeout_s:g} s")
    errors = list(TEARDOWN_ERRORS)
    TEARDOWN_ERRORS.clear()
    for err in errors:
        print(f"drillkit: background teardown failed: {err}", file=sys.stderr)
    return errors
