"""The drill lifecycle (DESIGN.md): provision → seed → baseline backup → steady state → inject →
detect → recovery steps → recovered → observe → verify → verdict → teardown.

The runner emits events on an EventBus and writes the DrillResult record (atomically) as it goes;
reporters subscribe to the bus. It never imports a reporter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets as _secrets
import shutil
import signal
import subprocess
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors
import psycopg

from drillkit.catalog.checks import TITLES, settled_performance
from drillkit.catalog.payments import payment_probes
from drillkit.catalog.web import site_probes
from drillkit.core.context import DrillContext
from drillkit.core.events import EventBus, Phase
from drillkit.core.measure import LedgerOutcome, Objectives, judge, measure, recovery_time
from drillkit.core.probes import Baseline, ProbeConfig, Probes, median
from drillkit.core.registry import CHECKS, FAULTS, RECOVERY, call
from drillkit.core.results import CheckResult, DrillResult, StepRecord
from drillkit.core.scenario import RESTORE_ACTIONS, Scenario, Step
from drillkit.errors import CheckFailed, DrillAborted, DrillError, EnvironmentBroken, StepFailed
from drillkit.paths import ROOT
from drillkit.stack import engine, hostfs
from drillkit.stack.seed import PROBE_USER, SCALES, WRITER_USER, seed
from drillkit.stack.spec import StackSpec, load_stack
from drillkit.stack.stack import Stack, StackOptions
from drillkit.wait import wait_for


@dataclass(frozen=True)
class RunConfig:
    """Resolved once from pytest options / ini / CLI."""

    results_dir: Path = ROOT / "reports" / "runs" / "adhoc"
    run_root: Path = ROOT / ".run"
    stack_file: Path | None = None
    probe_interval_s: float = 0.1
    k: int = 5
    keep_on_failure: bool = False
    seed_scale: str = "small"
    objectives: dict[str, dict[str, float]] = field(default_factory=dict)
    """scenario id (or '*') -> {'rto_s':..., 'rpo_s':..., 'detection_s':...} overrides"""
    min_free_disk_gib: float = 2.0
    baseline_backup: str = "auto"
    """'auto': a full backup (taken and verified) when the runbook restores one; 'always'; 'never'."""


def new_run_id() -> str:
    return _secrets.token_hex(4)


def objectives_for(scenario: Scenario, config: RunConfig) -> Objectives:
    obj = scenario.objectives
    for key in ("*", scenario.id):
        override = config.objectives.get(key)
        if override:
            obj = dataclasses.replace(obj, **override)
    return obj


class Deadline:
    """The drill's stop condition: past max_duration it is aborted in whatever phase it is."""

    def __init__(self, limit_s: float, clock: Any = time.monotonic) -> None:
        self.limit_s = limit_s
        self.clock = clock
        self.end = clock() + limit_s

    def remaining(self) -> float:
        return self.end - self.clock()

    def check(self, phase: str) -> None:
        if self.remaining() <= 0:
            raise DrillAborted(phase, self.limit_s)


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
        self.ctx: DrillContext | None = None
        self.secret_values: list[str] = []
        """Every secret the run issued: reporters redact them (they should never be there)."""

    # ----- bookkeeping ----------------------------------------------------------------------------
    def _phase(self, name: str) -> None:
        self.result.phase = name
        self.result.save(self.result_path)

    def _emit(self, phase: Phase, **data: Any) -> None:
        self.bus.emit(phase, run_id=self.run_id, scenario=self.scenario.id, **data)

    # ----- the lifecycle --------------------------------------------------------------------------
    def run(self) -> DrillResult:
        deadline = Deadline(self.scenario.max_duration_s, self.clock)
        run_dir = self.config.run_root / self.run_id
        stack: Stack | None = None
        self._phase("provision")
        try:
            engine.check_guardrails(self.config.min_free_disk_gib)
            stack = Stack(
                self.spec,
                self.run_id,
                run_dir,
                StackOptions(
                    synchronous=self.scenario.stack.get("synchronous"),
                    data_fs_mib=self.scenario.stack.get("data_fs_mib"),
                    wal_fs_mib=self.scenario.stack.get("wal_fs_mib"),
                    proxy=bool(self.scenario.stack.get("proxy")),
                    web=bool(self.scenario.stack.get("web")),
                    payments=bool(self.scenario.stack.get("payments")),
                    ready_timeout_s=min(60.0, max(5.0, deadline.remaining())),
                ),
            )
            self.secret_values = stack.secrets.values()
            stack.up()
            self.result.environment = environment(stack)
            self._emit(Phase.PROVISIONED, services=list(stack.services))
            self._lifecycle(stack, deadline)
        except DrillAborted as exc:
            self.result.status, self.result.category, self.result.error = (
                "aborted",
                "aborted",
                str(exc),
            )
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
            self._finish(stack)
        return self.result

    def _lifecycle(self, stack: Stack, deadline: Deadline) -> None:
        sc, res = self.scenario, self.result
        # seed ------------------------------------------------------------------------------------
        self._phase("seed")
        with stack.connect("primary") as conn:
            report = seed(conn, stack.secrets["user_password"], self.config.seed_scale)
        self._emit(Phase.SEEDED, users=report.users, orders=report.orders)
        # baseline backup ---------------------------------------------------------------------------
        self._phase("baseline")
        restores = any(step.action in RESTORE_ACTIONS for step in sc.recovery)
        if self.config.baseline_backup == "always" or (
            self.config.baseline_backup == "auto" and restores
        ):
            t = self.clock()
            out = stack.pgbackrest("backup", "--type=full")
            if "WARN" in out:  # pgBackRest backs up a bad-checksum page with exit 0 and a WARN
                raise EnvironmentBroken(f"baseline backup reported warnings:\n{out}")
            stack.pgbackrest("verify")
            res.extra["baseline_backup_s"] = round(self.clock() - t, 3)
        self._emit(Phase.BASELINE)
        deadline.check("baseline")
        # steady state ------------------------------------------------------------------------------
        self._phase("steady")
        probes = Probes(
            lambda: stack.app_url,
            stack.spec.app.health,
            lambda: stack.secrets["user_password"],
            ProbeConfig(
                interval_s=sc.probes.get("interval", self.config.probe_interval_s),
                timeout_s=sc.probes.get("timeout", 2.0),
                degraded_after_s=sc.probes.get("degraded_after"),
                writer_rate_hz=sc.probes.get("writer_rate", 20.0),
            ),
            run_tag=self.run_id,
            probe_user=PROBE_USER,
            writer_user=WRITER_USER,
            clock=self.clock,
            extra={
                **site_probes(stack, sc.probes.get("timeout", 2.0)),
                **payment_probes(stack, sc.probes.get("timeout", 2.0)),
            },
        )
        ctx = DrillContext(stack=stack, probes=probes, result=res, clock=self.clock)
        ctx.state["seeded_orders"] = SCALES[self.config.seed_scale][1]
        self.ctx = ctx
        k = int(sc.probes.get("k", self.config.k))
        probes.start()
        t_start = self.clock()
        wait_for(
            lambda: probes.passing_streak(t_start) >= k,
            what=f"{k} consecutive passing probes (steady state)",
            timeout_s=min(30.0, deadline.remaining()),
            context=lambda: "\n".join(f"{s.probe}: {s.error}" for s in probes.snapshot()[-5:]),
        )
        t_steady = self.clock()
        res.markers["steady"] = t_steady
        time.sleep(sc.steady_s)  # the steady-state window is a length of observation, not a wait
        if probes.first_failure(t_steady) is not None:
            raise EnvironmentBroken(f"steady state did not hold: {probes.first_failure(t_steady)}")
        window = [s for s in probes.snapshot() if s.t >= t_steady]
        ctx.baseline = Baseline(
            journey_median_s=median([s.latency_s for s in window if s.probe == "journey"]),
            availability_median_s=median(
                [s.latency_s for s in window if s.probe == "availability"]
            ),
            samples=len(window),
        )
        res.extra["baseline_journey_ms"] = round(ctx.baseline.journey_median_s * 1000, 2)
        self._emit(Phase.STEADY, baseline=dataclasses.asdict(ctx.baseline))
        deadline.check("steady")
        # inject --------------------------------------------------------------------------------------
        self._phase("inject")
        engine.check_guardrails(self.config.min_free_disk_gib)
        t_fault = self.clock()
        res.markers["fault"] = t_fault
        self._run_step(ctx, sc.fault, "fault", FAULTS, 0, 1, deadline)
        self._emit(Phase.INJECTED, t_fault=t_fault)
        # detect ----------------------------------------------------------------------------------------
        self._phase("detect")
        # Detection: when the scenario has a detection objective the operator responds to the
        # first failed probe, so the runbook starts then (or when the objective has passed).
        # Without one (a leak reported by a third party) the runbook starts at once; MTTD is
        # still measured from the probes afterwards.
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
        # recovery ---------------------------------------------------------------------------------------
        self._phase("recovery")
        step_failure: StepFailed | None = None
        for i, step in enumerate(sc.recovery):
            deadline.check(f"recovery step {i + 1} ({step.name})")
            try:
                self._run_step(ctx, step, "recovery", RECOVERY, i, len(sc.recovery), deadline)
            except StepFailed as exc:
                step_failure = exc
                break
        # recovered + observation window ---------------------------------------------------------------------
        self._phase("recovered")
        t_rec_wait = self.clock()
        limit = max(
            5.0, min(deadline.remaining() - sc.observe_s - 5, max(10.0, 2 * res.objectives.rto_s))
        )
        try:
            wait_for(
                lambda: probes.passing_streak(t_rec_wait) >= k,
                what="recovery",
                timeout_s=limit,
                interval_s=0.02,
            )
            self._emit(Phase.RECOVERED)
        except EnvironmentBroken:
            res.extra["recovery"] = f"not recovered {limit:.0f} s after the runbook's last step"
        time.sleep(sc.observe_s)  # the observation window: catches flapping after recovery
        if "recovery" not in res.extra:
            self._settle_performance(ctx, t_fault, k, deadline)
        probes.stop()
        res.samples = probes.snapshot()
        res.acked = list(probes.acked)
        # verify ---------------------------------------------------------------------------------------------
        self._phase("verify")
        ledger_error = None
        try:
            outcome = ctx.ledger()
        except (EnvironmentBroken, psycopg.Error) as exc:
            # A database that cannot be read after "recovery" proves none of the acknowledged
            # writes: each counts as lost (an auditor's reading), and the reason is a breach.
            ledger_error = (
                f"ledger: cannot look up the {len(res.acked)} acknowledged writes ({exc})"
            )
            outcome = LedgerOutcome(acked=len(res.acked), lost=tuple(res.acked))
        m = measure(res.samples, outcome, t_fault, k)
        res.measurement = m
        res.lost, res.altered = list(outcome.lost), list(outcome.altered)
        if m.t_recovered is not None:
            res.markers["recovered"] = m.t_recovered
        during = [x for x in res.samples if t_fault <= x.t <= (m.t_recovered or float("inf"))]
        if during:
            res.extra["error_rate_during_fault"] = round(
                sum(not x.ok for x in during) / len(during), 3
            )
            res.extra["journey_p50_ms_during_fault"] = round(
                1000 * median([x.latency_s for x in during if x.probe == "journey"] or [0.0]), 1
            )
        failed_checks = self._checklist(ctx)
        verdict = judge(m, res.objectives, failed_checks)
        if ledger_error is not None:
            verdict.breaches.append(ledger_error)
        if step_failure is not None:
            verdict.breaches.insert(0, f"recovery {step_failure}")
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
        registry: Any,
        i: int,
        n: int,
        deadline: Deadline,
    ) -> None:
        rec = StepRecord(name=step.name, action=step.action, kind=kind, t_start=self.clock())
        self.result.steps.append(rec)
        self._emit(Phase.STEP_STARTED, step=step.name, kind=kind, index=i, count=n)
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["output"] = call(registry.get(step.action), ctx, step.params)
            except BaseException as exc:
                outcome["error"] = exc

        th = threading.Thread(target=target, name=f"step-{step.action}", daemon=True)
        th.start()
        th.join(max(0.0, min(step.timeout_s, deadline.remaining())))
        rec.t_end = self.clock()
        if th.is_alive() and deadline.remaining() <= 0:
            rec.ok, rec.error = False, "stopped: the drill reached its maximum duration"
            self.result.save(self.result_path)
            raise DrillAborted(f"{kind} step {i + 1}/{n} '{step.name}'", deadline.limit_s)
        if th.is_alive():
            rec.ok, rec.error = (
                False,
                f"overran its timeout of {step.timeout_s:g} s and was abandoned",
            )
        elif "error" in outcome:
            exc = outcome["error"]
            rec.ok, rec.error = False, f"{type(exc).__name__}: {exc}"
        else:
            rec.ok, rec.output = True, str(outcome.get("output") or "")[:4000]
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
            err = outcome.get("error")
            if kind == "fault" and isinstance(err, (EnvironmentBroken, DrillError)):
                raise err
            if kind == "fault":
                raise EnvironmentBroken(f"fault step '{step.name}' failed: {rec.error}")
            raise StepFailed(f"{i + 1}/{n} '{step.name}' ({step.action})", rec.error or "failed")

    def _settle_performance(
        self, ctx: DrillContext, t_fault: float, k: int, deadline: Deadline
    ) -> None:
        """Observe longer, up to the scenario's `settle`, while the settled journey median is over
        the performance-baseline limit: on 2 busy cores a host hiccup of a few seconds can land in
        a short window; a lasting degradation is still over the limit when the bound runs out, and
        the check then fails with its numbers."""
        check = next((c for c in self.scenario.checklist if c.id == "performance-baseline"), None)
        if check is None or ctx.baseline is None or self.scenario.settle_s <= 0:
            return
        started = self.clock()

        def settled() -> bool:
            t_rec = recovery_time(ctx.probes.snapshot(), t_fault, k)
            return t_rec is None or settled_performance(ctx, t_rec, **check.params).within

        with contextlib.suppress(EnvironmentBroken):  # not settled: the check says by how much
            wait_for(
                settled,
                what="journey latency to settle",
                timeout_s=min(self.scenario.settle_s, max(0.0, deadline.remaining() - 5)),
                interval_s=0.25,
                transient=(),
            )
        waited = self.clock() - started
        if waited >= 0.25:
            self.result.extra["performance_settle_s"] = round(waited, 2)

    def _checklist(self, ctx: DrillContext) -> list[str]:
        failed: list[str] = []
        for item in self.scenario.checklist:
            title = TITLES.get(item.id, item.id.replace("-", " ").capitalize())
            try:
                detail = call(CHECKS.get(item.id), ctx, item.params)
                ok = True
            except CheckFailed as exc:
                ok, detail = False, str(exc)
            except Exception as exc:  # a check that crashes is a failed check, with its reason
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            self.result.checks.append(CheckResult(item.id, title, ok, str(detail)[:2000]))
            if not ok:
                failed.append(f"{item.id}: {detail}")
        return failed

    def _finish(self, stack: Stack | None) -> None:
        res = self.result
        if self.ctx is not None:
            if self.ctx.probes.running:
                self.ctx.probes.stop()
                res.samples = self.ctx.probes.snapshot()
                res.acked = list(self.ctx.probes.acked)
            for undo in reversed(self.ctx.cleanups):
                try:
                    undo()
                except Exception as exc:  # cleanup must go on; the record keeps the reason
                    res.extra.setdefault("cleanup_errors", []).append(
                        f"{type(exc).__name__}: {exc}"
                    )
        if stack is not None:
            self.secret_values = stack.secrets.values()
            for service in stack.containers:
                res.logs[service] = stack.logs(service, tail=60)
            res.pg_errors.extend(_pg_errors(res.logs))
        res.wall_end = time.time()
        self._emit(Phase.FINISHED, status=res.status)
        keep = self.config.keep_on_failure and res.status != "passed"
        interrupted: list[int] = []
        if stack is not None and not keep:
            with signals_held() as interrupted:
                try:
                    stack.down()
                finally:
                    hostfs.reap_loopfs(self.config.run_root / self.run_id)
                    shutil.rmtree(self.config.run_root / self.run_id, ignore_errors=True)
            self._emit(Phase.TORN_DOWN)
        elif keep:
            res.extra["kept"] = (
                f"stack kept for debugging: make clean removes it (run {self.run_id})"
            )
        if interrupted and res.status not in ("interrupted", "error"):
            res.status = "interrupted"
        res.save(self.result_path)
        if interrupted:
            raise KeyboardInterrupt(f"signal {interrupted[0]} (held during teardown)")


@contextlib.contextmanager
def signals_held() -> Iterator[list[int]]:
    """Teardown is not interruptible: Ctrl-C or SIGTERM arriving while it runs is recorded in the
    yielded list (the caller raises KeyboardInterrupt once its record is saved)."""
    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {
        sig: signal.signal(sig, lambda signum, frame: pending.append(signum)) for sig in held
    }
    try:
        yield pending
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _pg_errors(logs: dict[str, str]) -> list[str]:
    out = []
    for service, text in logs.items():
        if service == "app":
            continue
        for line in text.splitlines():
            if any(w in line for w in ("ERROR:", "PANIC:", "FATAL:")) and "starting up" not in line:
                out.append(f"{service}: {line.strip()}"[:300])
    return out[-30:]


def environment(stack: Stack) -> dict[str, str]:
    env: dict[str, str] = {}
    try:
        v = engine.client().version()
        env["docker_version"] = str(v.get("Version"))
        env["docker_api"] = str(v.get("ApiVersion"))
        env["postgres_version"] = str(stack.sql("primary", "SHOW server_version")[0][0])
    except (docker.errors.DockerException, psycopg.Error) as exc:
        env["error"] = str(exc)[:200]
    for name, tag in stack.image_tags.items():
        env[f"image_{name}"] = tag
    try:
        env["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = "unknown"
    env["host"] = os.uname().nodename
    return env
