"""The drill lifecycle (DESIGN.md): provision → seed → baseline backup → steady state → inject →
detect → recovery steps → recovered → observe → verify → verdict → teardown.

One public method per phase, called in that order by `run()` (a fixture may drive them one by
one). The runner emits events on an EventBus and writes the DrillResult record (atomically) as it
goes; it never imports a reporter, a catalogue module or a service kind: faults, steps, checks
and extra probes reach it through the registries.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import traceback
from typing import Any

import docker.errors
import psycopg

from drillkit.core import leaks
from drillkit.core.config import Deadline, RunConfig, new_run_id, objectives_for
from drillkit.core.context import DrillContext
from drillkit.core.declared import create_canary
from drillkit.core.environment import environment, pg_errors
from drillkit.core.events import EventBus, Phase
from drillkit.core.hostspeed import control_median
from drillkit.core.measure import judge, measure
from drillkit.core.needs import check_needs, stack_provides
from drillkit.core.phases import (
    CheckOverran,
    await_steady,
    call_in_thread,
    fault_figures,
    join_abandoned,
    look_up_ledger,
    record_outcome,
    recovery_evident,
    remove_stack,
    run_checklist,
    run_prepare,
    settle_checks,
    step_error,
    stop_and_clean,
    tear_down,
    wait_evidence,
    wait_settled,
    wants_baseline_backup,
)
from drillkit.core.probes import Baseline, ProbeConfig, Probes, median
from drillkit.core.registry import FAULTS, PROBES, RECOVERY, Registry
from drillkit.core.results import DrillResult, StepRecord, evidence_status
from drillkit.core.scenario import Scenario, Step
from drillkit.core.wiring import (
    declared_of,
    first_primary,
    health_target,
    seed_sql,
    stack_access,
    stack_options,
)
from drillkit.errors import DrillAborted, DrillError, EnvironmentBroken, StepFailed
from drillkit.stack import engine
from drillkit.stack.probespec import CanaryLedger
from drillkit.stack.seed import SCALES, seed
from drillkit.stack.spec import StackSpec, load_stack
from drillkit.stack.stack import Stack
from drillkit.wait import wait_for

NO_LEDGER = "no write ledger: RPO not measured (declare ledger: in the stack file)"
__all__ = ["Deadline", "RunConfig", "Runner", "new_run_id", "objectives_for"]


class Runner:
    def __init__(
        self,
        scenario: Scenario,
        config: RunConfig,
        bus: EventBus | None = None,
        spec: StackSpec | None = None,
    ) -> None:
        self.scenario = scenario
        self.config = config
        self.bus = bus or EventBus()
        spec = spec or load_stack(config.stack_file)
        if scenario.stack.get("replica") is False:
            spec = dataclasses.replace(
                spec, database=dataclasses.replace(spec.database, replica=False)
            )
        self.spec = spec
        self.provides = stack_provides(spec, scenario)
        """What the stack has for this scenario (core/needs.py): needs are checked against it
        before provisioning."""
        self.run_id = new_run_id()
        self.clock = time.monotonic
        self.result_path = config.results_dir / f"{scenario.id}.json"
        self.result = DrillResult(
            run_id=self.run_id,
            scenario_id=scenario.id,
            title=scenario.title,
            severity=scenario.severity,
            failure_class=scenario.failure_class,
            tags=list(scenario.tags),
            source=dict(scenario.source),
            scenario_text=scenario.text,
            objectives=objectives_for(scenario, config),
            t0_monotonic=self.clock(),
            t0_wall=time.time(),
        )
        self.stack: Stack | None = None
        self.ctx: DrillContext | None = None
        self.secret_values: list[str] = []
        """Every secret the run issued: reporters redact them (they should never be there)."""
        self.k = int(scenario.probes.get("k", config.k))
        """Consecutive passing probes that make a steady state, and a recovery."""
        self.t_fault: float | None = None
        self.step_failure: StepFailed | None = None
        """The recovery step that failed (the runbook stopped there), if one did."""
        self.recovered = False
        """Whether the probes passed again within the recovery wait (before observation)."""
        self.abandoned: list[threading.Thread] = []
        """Steps that overran and did not end when stopped: joined again before teardown."""

    # ----- bookkeeping ----------------------------------------------------------------------------
    def _phase(self, name: str) -> None:
        self.result.phase = name
        self.result.save(self.result_path)

    def _emit(self, phase: Phase, **data: Any) -> None:
        self.bus.emit(phase, run_id=self.run_id, scenario=self.scenario.id, **data)

    def _context(self) -> DrillContext:
        if self.ctx is None:
            raise RuntimeError("no drill context yet: the steady phase creates it")
        return self.ctx

    def _stack(self) -> Stack:
        if self.stack is None:
            raise RuntimeError("no stack yet: the provision phase creates it")
        return self.stack

    # ----- the lifecycle --------------------------------------------------------------------------
    def run(self) -> DrillResult:
        deadline = Deadline(self.scenario.max_duration_s, self.clock)
        self._phase("provision")
        try:
            self.provision(deadline)
            self.seed()
            self.baseline(deadline)
            self.steady(deadline)
            run_prepare(
                self.scenario.prepare, lambda *a: self._run_step(self._context(), *a, deadline)
            )
            self.inject(deadline)
            self.detect(deadline)
            self.recover(deadline)
            self.observe(deadline)
            self.verify(deadline)
        except DrillAborted as exc:
            self.result.status = self.result.category = "aborted"
            self.result.error = str(exc)
        except (EnvironmentBroken, docker.errors.DockerException, psycopg.OperationalError) as exc:
            self.result.status, self.result.category = "error", "environment"
            self.result.error = f"{type(exc).__name__}: {exc}"
        except DrillError as exc:
            self.result.status, self.result.category = "error", "environment"
            self.result.error = str(exc)
        except BaseException as exc:  # KeyboardInterrupt, SIGTERM: record, tear down, re-raise
            self.result.status = "interrupted" if not isinstance(exc, Exception) else "error"
            self.result.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}"
            raise
        finally:
            self.finish()
        return self.result

    def provision(self, deadline: Deadline) -> Stack:
        """Refuse a scenario needing what the stack lacks; check the host's guardrails, start the
        stack, record the environment."""
        check_needs(self.scenario, self.spec)
        engine.check_guardrails(self.config.min_free_disk_gib)
        run_dir = self.config.run_root / self.run_id
        stack = self.stack = Stack(
            self.spec, self.run_id, run_dir, stack_options(self.scenario, deadline, self.config)
        )
        self.secret_values = stack.secrets.values()
        stack.up()
        self.result.environment = environment(stack, self.config.project_dir)
        self._emit(Phase.PROVISIONED, services=list(stack.services))
        return stack

    def seed(self) -> None:
        """What the stack file's `seed` declares: a named generator (`reference`: the reference
        app's users and orders, sized by the seed scale) and/or SQL run in order."""
        self._phase("seed")
        stack = self._stack()
        if isinstance(self.spec.ledger, CanaryLedger):
            with stack.connect(first_primary(self.spec)) as conn:
                create_canary(conn, self.spec.ledger)
        facts: dict[str, int] = {}
        if self.spec.seed_generator == "reference":
            with stack.connect(first_primary(self.spec)) as conn:
                report = seed(conn, stack.secrets["user_password"], self.config.seed_scale)
            facts = {"users": report.users, "orders": report.orders}
        self._emit(Phase.SEEDED, statements=seed_sql(self.spec, stack), **facts)

    def baseline(self, deadline: Deadline) -> None:
        """A full backup, taken and verified, when the runbook restores one (or by config)."""
        self._phase("baseline")
        if "pgbackrest" in self.provides and wants_baseline_backup(
            self.scenario, self.config.baseline_backup
        ):
            stack = self._stack()
            t = self.clock()
            out = stack.pgbackrest("backup", "--type=full")
            if "WARN" in out:  # pgBackRest backs up a bad-checksum page with exit 0 and a WARN
                raise EnvironmentBroken(f"baseline backup reported warnings:\n{out}")
            stack.pgbackrest("verify")
            self.result.extra["baseline_backup_s"] = round(self.clock() - t, 3)
        self._emit(Phase.BASELINE)
        deadline.check("baseline")

    def _probes(self, stack: Stack) -> Probes:
        sc = self.scenario
        timeout_s = sc.probes.get("timeout", 2.0)
        extra: dict[str, Any] = {}
        for factory in PROBES.entries.values():
            extra.update(factory.fn(stack, timeout_s))
        base_url, health = health_target(self.spec, stack)
        return Probes(
            base_url,
            health,
            ProbeConfig(
                interval_s=sc.probes.get("interval", self.config.probe_interval_s),
                timeout_s=timeout_s,
                degraded_after_s=sc.probes.get("degraded_after"),
                writer_rate_hz=sc.probes.get("writer_rate", 20.0),
            ),
            run_tag=self.run_id,
            clock=self.clock,
            extra=extra,
            declared=declared_of(self.spec),
            access=stack_access(
                self.spec,
                stack,
                lambda: self.ctx.primary if self.ctx is not None else first_primary(self.spec),
            ),
        )

    def steady(self, deadline: Deadline) -> DrillContext:
        """Start the probes; wait for k consecutive passes; observe the steady-state window and
        record its baseline."""
        self._phase("steady")
        stack, res, k = self._stack(), self.result, self.k
        probes = self._probes(stack)
        ctx = DrillContext(stack=stack, probes=probes, result=res, clock=self.clock)
        ctx.primary = first_primary(self.spec)
        ctx.seeded_orders = SCALES[self.config.seed_scale][1] if self.spec.seed_generator else 0
        self.ctx = ctx
        probes.start()
        # the window ends once every probe passed steady_k times, unless a check judges the baseline
        n = 0 if settle_checks(self.scenario) else self.config.steady_k
        try:
            t_steady, window_s, slow = await_steady(
                probes,
                k,
                n,
                self.scenario.steady_s,
                min(30.0, deadline.remaining()),
                self.clock,
            )
        finally:
            deadline.check("steady")
        res.markers["steady"] = t_steady
        res.extra["steady_window_s"] = round(window_s, 3)
        if slow:
            res.extra["steady_restarts"] = [
                f"{s.probe} {s.latency_s * 1000:.0f} ms ({s.error})" for s in slow
            ]
        window = [s for s in probes.snapshot() if s.t >= t_steady]
        ctx.baseline = Baseline(
            journey_median_s=median([s.latency_s for s in window if s.probe == "journey"]),
            availability_median_s=median(  # the health probe, or every declared probe
                [
                    s.latency_s
                    for s in window
                    if s.probe != "journey" and s.probe not in probes.extra
                ]
            ),
            samples=len(window),
            control_median_s=control_median(probes.control.snapshot(), t_steady),
        )
        res.extra["baseline_journey_ms"] = round(ctx.baseline.journey_median_s * 1000, 2)
        self._emit(Phase.STEADY, baseline=dataclasses.asdict(ctx.baseline))
        deadline.check("steady")
        return ctx

    def inject(self, deadline: Deadline) -> None:
        self._phase("inject")
        engine.check_guardrails(self.config.min_free_disk_gib)
        t_fault = self.t_fault = self.clock()
        self.result.markers["fault"] = t_fault
        self._run_step(self._context(), self.scenario.fault, "fault", FAULTS, 0, 1, deadline)
        self._emit(Phase.INJECTED, t_fault=t_fault)

    def _t_fault(self) -> float:
        if self.t_fault is None:
            raise RuntimeError("no fault injected yet: the inject phase records its time")
        return self.t_fault

    def detect(self, deadline: Deadline) -> None:
        """When the scenario has a detection objective the operator responds to the first failed
        probe, so the runbook starts then (or when the objective has passed). Without one (a
        leak reported by a third party) the runbook starts at once; MTTD is still measured from
        the probes afterwards."""
        self._phase("detect")
        sc, res, probes, t_fault = (
            self.scenario,
            self.result,
            self._context().probes,
            self._t_fault(),
        )
        first = None
        if sc.objectives.detection_s is not None:
            window_s = min(sc.objectives.detection_s, 10.0, max(0.0, deadline.remaining()))
            try:
                first = wait_for(
                    lambda: probes.first_failure(t_fault),
                    what="a failed probe",
                    timeout_s=window_s,
                    interval_s=0.02,
                )
            except EnvironmentBroken:
                res.extra["detection"] = f"no probe failed within {window_s:g} s of injection"
        if first is not None:
            res.markers["detected"] = first.t
            self._emit(Phase.DETECTED, t=first.t, probe=first.probe, error=first.error)
        deadline.check("detect")

    def recover(self, deadline: Deadline) -> None:
        """The runbook's steps in order; the first that fails stops it (`step_failure`)."""
        self._phase("recovery")
        ctx, steps = self._context(), self.scenario.recovery
        for i, step in enumerate(steps):
            deadline.check(f"recovery step {i + 1} ({step.name})")
            try:
                self._run_step(ctx, step, "recovery", RECOVERY, i, len(steps), deadline)
            except StepFailed as exc:
                self.step_failure = exc
                break

    def observe(self, deadline: Deadline) -> None:
        """Wait for k consecutive passes (recovered), then the observation window (catches
        flapping), extended while a check's settle condition does not hold; stop the probes."""
        self._phase("recovered")
        sc, res, ctx, k = self.scenario, self.result, self._context(), self.k
        t_rec_wait = self.clock()
        limit = deadline.bound(
            max(
                5.0,
                min(deadline.remaining() - sc.observe_s - 5, max(10.0, 2 * res.objectives.rto_s)),
            )
        )
        try:
            wait_for(
                lambda: ctx.probes.passing_streak(t_rec_wait) >= k,
                what="recovery",
                timeout_s=limit,
                interval_s=0.02,
            )
            self.recovered = True
            self._emit(Phase.RECOVERED)
        except EnvironmentBroken:
            res.extra["recovery"] = f"not recovered {limit:.0f} s after the runbook's last step"
        n, checks = (self.config.evidence_k if self.recovered else 0), settle_checks(sc)
        evident = lambda: recovery_evident(ctx, self._t_fault(), k, n, checks, t_rec_wait)  # noqa: E731
        res.extra["observe_window_s"] = round(  # catches flapping; ends when the evidence is in
            wait_evidence(evident, deadline.bound(sc.observe_s), self.clock), 3
        )
        deadline.check("observe")
        if self.recovered:
            self._settle(ctx, deadline)
        ctx.probes.stop()
        res.samples = ctx.probes.snapshot()
        res.acked = list(ctx.probes.acked)

    def _settle(self, ctx: DrillContext, deadline: Deadline) -> None:
        """Observe longer, up to the scenario's `settle`, while a check's settle condition does
        not hold (performance-baseline: on 2 busy cores a host hiccup of a few seconds can land
        in a short window; a lasting degradation still fails, with its numbers)."""
        checks = settle_checks(self.scenario)
        if not checks or self.scenario.settle_s <= 0:
            return
        timeout_s = min(self.scenario.settle_s, max(0.0, deadline.remaining() - 5))
        waited = wait_settled(ctx, checks, self._t_fault(), self.k, timeout_s, self.clock)
        if waited >= 0.25:
            self.result.extra["performance_settle_s"] = round(waited, 2)

    def verify(self, deadline: Deadline | None = None) -> None:
        """The ledger (RPO), the measurement (MTTD, RTO), the checklist, and the verdict; with
        the drill's deadline, the ledger and every check run for at most the time left."""
        self._phase("verify")
        res, ctx, t_fault = self.result, self._context(), self._t_fault()
        deadline = deadline or Deadline(self.scenario.max_duration_s, self.clock)
        outcome, ledger_error = look_up_ledger(ctx, res.acked, deadline)
        m = measure(res.samples, outcome, t_fault, self.k)
        res.measurement = m
        res.lost, res.altered = list(outcome.lost), list(outcome.altered)
        res.extra["ledger"] = m.loss_summary if ctx.probes.has_writer else NO_LEDGER
        if m.t_recovered is not None:
            res.markers["recovered"] = m.t_recovered
        fault_figures(self.result, t_fault, m.t_recovered)
        try:
            failed = run_checklist(self.scenario, ctx, res, deadline.remaining)
        except CheckOverran as exc:
            raise DrillAborted(f"verify ({exc})", deadline.limit_s) from exc
        verdict = judge(m, res.objectives, failed)
        if ledger_error is not None:
            verdict.breaches.append(ledger_error)
        if self.step_failure is not None:
            verdict.breaches.insert(0, f"recovery {self.step_failure}")
            verdict.category = "recovery-step"
        res.breaches = verdict.breaches
        res.category = verdict.category
        res.status = "passed" if verdict.passed else "failed"
        self._emit(Phase.VERIFIED, passed=verdict.passed, breaches=verdict.breaches)

    def _run_step(
        self,
        ctx: DrillContext,
        step: Step,
        kind: str,
        registry: Registry,
        i: int,
        n: int,
        deadline: Deadline,
    ) -> None:
        rec = StepRecord(name=step.name, action=step.action, kind=kind, t_start=self.clock())
        self.result.steps.append(rec)
        self._emit(Phase.STEP_STARTED, step=step.name, kind=kind, index=i, count=n)
        timeout_s = max(0.0, min(step.timeout_s, deadline.remaining()))
        alive, outcome = call_in_thread(registry, step, ctx, timeout_s)
        rec.t_end = self.clock()
        if "thread" in outcome:
            self.abandoned.append(outcome["thread"])
        if alive and deadline.remaining() <= 0:
            rec.ok, rec.error = False, "stopped: the drill reached its maximum duration"
            self.result.save(self.result_path)
            raise DrillAborted(f"{kind} step {i + 1}/{n} '{step.name}'", deadline.limit_s)
        record_outcome(rec, step, alive, outcome)
        self._emit(
            Phase.STEP_ENDED,
            step=step.name,
            kind=kind,
            ok=rec.ok,
            error=rec.error,
            duration_s=rec.t_end - rec.t_start,
        )
        self.result.save(self.result_path)
        if not rec.ok:
            raise step_error(kind, step, i, n, rec, outcome.get("error"))

    def finish(self) -> None:
        """Stop the probes, run the cleanups, keep the logs, record the end; tear the stack down
        (unless kept for debugging) with Ctrl-C and SIGTERM held until the record is saved."""
        res, stack = self.result, self.stack
        join_abandoned(self.abandoned, self.result)
        if self.ctx is not None:
            stop_and_clean(self.ctx, self.result)
        if stack is not None:
            self.secret_values = stack.secrets.values()
            for service in stack.containers:
                res.logs[service] = stack.logs(service, tail=60)
            res.pg_errors.extend(pg_errors(res.logs))
        res.wall_end = time.time()
        leaks.record(self.config.results_dir, self.secret_values, res.t0_wall)  # digests only
        self._emit(Phase.FINISHED, status=res.status)
        keep = self.config.keep_on_failure and res.status != "passed"
        interrupted: list[int] = []
        if stack is not None and not keep:  # in the background only after a verdict
            background = self.config.background_teardown and res.status in ("passed", "failed")
            run_dir, done = self.config.run_root / self.run_id, lambda: self._emit(Phase.TORN_DOWN)
            interrupted = tear_down(lambda: remove_stack(stack, run_dir, done), background)
        elif keep:
            res.extra["kept"] = (
                f"stack kept for debugging: make clean removes it (run {self.run_id})"
            )
        if interrupted and res.status not in ("interrupted", "error"):
            res.status = "interrupted"
        res.evidence_status = evidence_status(res, self.scenario.not_evidence)
        res.save(self.result_path)
        if interrupted:
            raise KeyboardInterrupt(f"signal {interrupted[0]} (held during teardown)")
