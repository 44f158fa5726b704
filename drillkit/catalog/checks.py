"""The validation checklist: each item a real check against the recovered stack.

From seed 003's Recovery Validation Checklist and seed 001's validation checklist, plus the
drill-specific proofs the runbooks ask for (old credentials rejected, old primary fenced, ...).
A check returns a detail string when it holds and raises CheckFailed when it does not."""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass
from datetime import datetime

import psycopg
import requests

from drillkit.catalog.replication import Fencing, wait_replica_caught_up
from drillkit.core.context import DrillContext
from drillkit.core.hostspeed import HostRatio, host_ratio
from drillkit.core.probes import median
from drillkit.core.registry import CHECKS, Service
from drillkit.core.results import DrillResult
from drillkit.errors import CheckFailed, EnvironmentBroken
from drillkit.stack.probespec import LogPatterns
from drillkit.stack.services.cache import CACHE, RespError
from drillkit.stack.services.payments import PROVIDERS, STATUS_PATH
from drillkit.stack.services.statuspage import STATUS_PATH as STATUSPAGE_STATUS
from drillkit.stack.services.statuspage import STATUSPAGE
from drillkit.wait import wait_for


@CHECKS("all-systems-responding", title="All systems responding")
def all_systems_responding(ctx: DrillContext) -> str:
    """Every service of the stack answers: the app's health, and each database accepts a query."""
    out = []
    for service in ctx.stack.services:
        if ctx.stack.spec.is_compose:  # compose names: a "web" or "proxy" is the team's own
            out.append(compose_service_responding(ctx, service))
        elif service == "proxy":
            ctx.stack.toxiproxy().proxies()
            out.append("proxy API ok")
        elif service == "app":
            r = ctx.stack.app_health(5)
            # responding: the declared status (the availability probe judges the body)
            if r.status_code != ctx.stack.spec.app.health.status:
                raise CheckFailed(f"app health answered {r.status_code}: {r.text[:200]}")
            out.append(f"app {r.status_code}")
        elif service == "web":
            r = ctx.stack.web_health(5)
            if r.status_code != 200:
                raise CheckFailed(f"web front answered {r.status_code}: {r.text[:200]}")
            out.append("web 200")
        elif service in PROVIDERS:
            r = requests.get(ctx.stack.provider_url(service) + STATUS_PATH, timeout=5)
            if r.status_code != 200:
                raise CheckFailed(f"{service} status page answered {r.status_code}")
            out.append(f"{service} {r.json()['status']['indicator']}")
        elif service == STATUSPAGE:
            kind = ctx.stack.kinds[STATUSPAGE]
            r = requests.get(kind.url + STATUSPAGE_STATUS, timeout=5)
            if r.status_code != 200:
                raise CheckFailed(f"the status page answered {r.status_code}")
            out.append(f"statuspage {r.json()['status']['indicator']}")
        elif service == CACHE:
            try:
                ctx.stack.kinds[CACHE].call("PING")
            except (OSError, RespError) as exc:
                raise CheckFailed(f"the cache does not answer PING: {exc}") from exc
            out.append("cache PONG")
        elif service == ctx.part(Fencing).service:
            out.append(f"{service} fenced (not expected to serve)")
        else:
            try:
                ctx.stack.sql(service, "SELECT 1")
            except (psycopg.Error, Exception) as exc:
                raise CheckFailed(f"{service} does not answer: {exc}") from exc
            out.append(f"{service} ok")
    return ", ".join(out)


def compose_service_responding(ctx: DrillContext, service: str) -> str:
    """A compose stack's service: an app answers its declared health status, a database a
    query, any other service runs."""
    apps = ctx.stack.spec.apps
    if service in apps:
        health = apps[service].health
        r = requests.get(ctx.stack.url(service) + health.path, timeout=5)
        if r.status_code != health.status:
            raise CheckFailed(f"{service} health answered {r.status_code}: {r.text[:200]}")
        return f"{service} {r.status_code}"
    if service == ctx.part(Fencing).service:
        return f"{service} fenced (not expected to serve)"
    if service in ctx.stack.databases:
        try:
            ctx.stack.sql(service, "SELECT 1")
        except psycopg.Error as exc:
            raise CheckFailed(f"{service} does not answer: {exc}") from exc
        return f"{service} ok"
    try:
        ctx.stack.require_running(service)
    except EnvironmentBroken as exc:
        raise CheckFailed(str(exc)[:300]) from exc
    return f"{service} running"


@CHECKS("key-functionality", title="Key functionality working", needs=("reference-app",))
def key_functionality(ctx: DrillContext) -> str:
    """Create an order and read it back now."""
    client = ctx.app_client()
    key = f"check-{ctx.stack.run_id}-{time.monotonic_ns()}"
    r = client.create_order(key, "checklist order")
    if r.status_code not in (200, 201):
        raise CheckFailed(f"create order answered {r.status_code}: {r.text[:200]}")
    r2 = client.get_order(int(r.json()["id"]))
    if r2.status_code != 200 or r2.json().get("payload") != "checklist order":
        raise CheckFailed(f"read back answered {r2.status_code}: {r2.text[:200]}")
    return f"order {r.json()['id']} created and read back"


PERFORMANCE_FACTOR = 1.5

"""Seed 003: >50 % slower is significant degradation."""

PERFORMANCE_FLOOR_MS = 25.0


PERFORMANCE_WINDOW = 10
"""The settled window: the last this many journeys begun after recovery. The observation goes
on until it holds this many (the median of a handful is one host hiccup's: CI at stop 25
judged 5 journeys over 0.45 s) and their median is within the limit, up to the scenario's
`settle`: a slow start (cold caches after a restore, a host busy for a few seconds) passes
once it is over, a lasting degradation never settles and fails with its numbers."""

WINDOW_END = "performance_window_end"
"""result.extra key: the end (drill clock, s) of the window the settle condition last judged;
the check judges the same window, so a verdict the observation settled on cannot flip on the
journeys that finished while the probes were being stopped."""


@dataclass(frozen=True)
class SettledPerformance:
    median_s: float
    """Median journey latency over the settled window (inf when it holds no journey)."""
    limit_s: float
    baseline_s: float
    count: int
    host: HostRatio | None = None
    """How much slower the host ran over the settled window (scales the limit); None: no
    control measurement."""
    end: float = 0.0
    """The window's end: the last journey's finish (drill clock, s)."""

    @property
    def within(self) -> bool:
        return self.count >= 3 and self.median_s <= self.limit_s

    @property
    def settled(self) -> bool:
        """Within, on enough journeys to say so (the settle condition)."""
        return self.within and self.count >= PERFORMANCE_WINDOW


def settled_performance(
    ctx: DrillContext,
    t_recovered: float,
    factor: float = PERFORMANCE_FACTOR,
    floor_ms: float = PERFORMANCE_FLOOR_MS,
    until: float | None = None,
) -> SettledPerformance:
    """The last PERFORMANCE_WINDOW journeys that began after recovery (and finished by `until`,
    when given), against limit = factor × the steady-state median × the host's slowdown over
    that window + floor_ms (millisecond noise is not a regression; a host made slower by its
    other load, measured by the control outside the stack, is not the stack's regression:
    core/hostspeed.py). The runner keeps observing, up to the scenario's `settle`, while this
    is not `settled`."""
    if ctx.baseline is None:
        raise CheckFailed("no steady-state baseline was recorded")
    journeys = sorted(  # journeys that began after recovery (not ones stuck behind the fault)
        (
            s
            for s in ctx.probes.snapshot()
            if s.probe == "journey"
            and s.t - s.latency_s >= t_recovered
            and s.ok
            and (until is None or s.t <= until)
        ),
        key=lambda s: s.t,
    )[-PERFORMANCE_WINDOW:]
    after = [s.latency_s for s in journeys]
    end = journeys[-1].t if journeys else t_recovered
    start = journeys[0].t - journeys[0].latency_s if journeys else t_recovered
    base = ctx.baseline.journey_median_s
    host = host_ratio(ctx.baseline.control_median_s, ctx.probes.control.snapshot(), start, end)
    return SettledPerformance(
        median_s=median(after) if after else float("inf"),
        limit_s=base * factor * (host.ratio if host else 1.0) + floor_ms / 1000,
        baseline_s=base,
        count=len(after),
        host=host,
        end=end,
    )


def performance_settled(
    ctx: DrillContext,
    t_recovered: float,
    factor: float = PERFORMANCE_FACTOR,
    floor_ms: float = PERFORMANCE_FLOOR_MS,
) -> bool:
    """performance-baseline's settle condition: the median of the last PERFORMANCE_WINDOW
    journeys is within its limit (or there is no baseline to judge it against). Records the
    window it judged (WINDOW_END) for the check to judge the same."""
    if ctx.baseline is None:
        return True
    perf = settled_performance(ctx, t_recovered, factor, floor_ms)
    ctx.result.extra[WINDOW_END] = perf.end
    return perf.settled


@CHECKS(
    "performance-baseline",
    title="Performance within normal range of the baseline",
    settle=performance_settled,
    needs=("journey",),
)
def performance_baseline(
    ctx: DrillContext, factor: float = PERFORMANCE_FACTOR, floor_ms: float = PERFORMANCE_FLOOR_MS
) -> str:
    """Median of the last journeys once the service has settled after recovery ≤ factor × the
    steady-state median (× the host's slowdown) + floor_ms (see `settled_performance`)."""
    t_rec = ctx.result.markers.get("recovered")
    if t_rec is None:
        raise CheckFailed("never recovered: no post-recovery samples")
    perf = settled_performance(ctx, t_rec, factor, floor_ms, ctx.result.extra.get(WINDOW_END))
    if perf.count < 3:
        raise CheckFailed(f"only {perf.count} successful journeys after recovery")
    detail = (
        f"journey median {perf.median_s * 1000:.1f} ms after recovery vs "
        f"{perf.baseline_s * 1000:.1f} ms baseline (limit {perf.limit_s * 1000:.1f} ms)"
    )
    if perf.host is not None:
        detail += f"; {perf.host.detail}"
    extended = ctx.result.extra.get("performance_settle_s")
    if extended:
        detail += f"; observation extended {extended:.1f} s for performance to settle"
    if not perf.within:
        raise CheckFailed(detail)
    return detail


@CHECKS("no-error-spike", title="No error spike in the logs after recovery")
def no_error_spike(ctx: DrillContext, max_errors: int = 0) -> str:
    """No error lines in any app's log and no FATAL/PANIC in the databases' logs after recovery.

    Every service the stack file declares `logs: {service: {errors: [regex, ...], timestamp,
    duration_ms}}` for is matched against its patterns, judging only lines after T_recovered (by
    the line's own time, less the request's duration when the format gives them, else docker's
    log timestamps). An app with no declared patterns is not passed silently: the check fails,
    saying so. When no probe saw the fault (T_recovered = T_fault), the errors the fault itself
    caused while it lasted are not "after recovery": lines are judged from the end of the
    runbook's last step instead (db-flaky: the app's 503s while half the connections were reset,
    recorded as its error rate, failed this check in a run whose probes were all lucky)."""
    t_from = errors_judged_from(ctx.result)
    if t_from is None:
        raise CheckFailed("never recovered")
    t_rec_wall = ctx.result.wall(t_from)
    since = int(t_rec_wall) + 1
    problems: list[str] = []
    declared = ctx.stack.spec.logs
    checked: list[str] = []
    for service in app_services(ctx):
        if service not in declared:
            problems.append(
                f"no error patterns declared for service {service} (add logs: {{{service}: "
                "{errors: [regex, ...]}} to the stack file)"
            )
    for service, patterns in declared.items():
        bad = declared_errors(ctx, service, patterns, t_rec_wall)
        if len(bad) > max_errors:
            problems.append(f"{len(bad)} error lines in the {service} log, e.g. {bad[0][:160]}")
        checked.append(service)
    fenced = ctx.part(Fencing).service
    for service in ctx.stack.databases:
        if service == fenced or service in declared:
            continue
        log = ctx.log_since(service, since)
        bad = [
            ln
            for ln in log.splitlines()
            if "PANIC" in ln
            or ("FATAL" in ln and "terminating" not in ln and "starting up" not in ln)
        ]
        if bad:
            problems.append(f"{service}: {bad[0][:200]}")
        checked.append(service)
    if problems:
        raise CheckFailed("; ".join(problems))
    return (
        f"no errors in the logs of {', '.join(dict.fromkeys(checked))} since "
        f"{time.strftime('%H:%M:%S', time.gmtime(since))} UTC"
    )


def errors_judged_from(result: DrillResult) -> float | None:
    """T_recovered, or the end of the runbook's last step when no probe saw the fault (then
    T_recovered is T_fault: the fault lasted until the runbook removed its cause); None: never
    recovered."""
    t_recovered, t_fault = result.markers.get("recovered"), result.markers.get("fault")
    if t_recovered is None or t_fault is None or t_recovered > t_fault:
        return t_recovered
    ends = [s.t_end for s in result.steps if s.kind == "recovery" and s.t_end is not None]
    return max([t_recovered, *ends])


def app_services(ctx: DrillContext) -> list[str]:
    """The stack's apps: a compose stack's `apps`, else its `app` service."""
    spec = ctx.stack.spec
    if spec.is_compose:
        return list(spec.apps)
    return [s for s in ctx.stack.services if s == "app"]


ISO_STAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})([.,]\d{1,9})?\s?(Z|[+-]\d{2}:?\d{2})?"
)
EPOCH_STAMP = re.compile(r"(?<![\d.])(1\d{9})(\.\d{1,9})?(?![\d])")


def line_time(line: str, fmt: str) -> float | None:
    """A log line's own time (Unix seconds) in the declared format, or None when it has none."""
    if fmt == "epoch":
        m = EPOCH_STAMP.search(line)
        return float(m.group(1) + (m.group(2) or "")) if m else None
    if fmt != "iso8601":
        return None
    m = ISO_STAMP.search(line)
    if m is None:
        return None
    frac = (m.group(3) or ".0").replace(",", ".")[:7]
    zone = m.group(4) or "+00:00"
    zone = "+00:00" if zone == "Z" else zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
    try:
        return datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}{frac}{zone}").timestamp()
    except ValueError:
        return None


def match_errors(text: str, patterns: LogPatterns, after: float | None) -> list[str]:
    """The lines matching any of the service's error patterns; with `after`, only those whose
    request began at or after it: the line's own time (when the format gives one) less the
    request's duration (when `duration_ms` finds one). A line without a time is kept (the
    caller has already cut the log at docker's timestamp)."""
    out = []
    for ln in text.splitlines():
        if not any(rx.search(ln[:4000]) for rx in patterns.errors):
            continue
        t = line_time(ln, patterns.timestamp) if after is not None else None
        if t is not None and patterns.duration_ms is not None:
            took = patterns.duration_ms.search(ln[:4000])
            if took is not None:
                try:
                    t -= float(took.group(1)) / 1000
                except ValueError:
                    pass
        if t is not None and after is not None and t < after:
            continue
        out.append(ln)
    return out


def declared_errors(
    ctx: DrillContext, service: str, patterns: LogPatterns, t_rec_wall: float
) -> list[str]:
    """A service's log lines after recovery matching its declared patterns: cut at the second
    of T_recovered by docker, then by each line's own time; with timestamp: none, docker's cut
    alone (at sub-second precision)."""
    if patterns.timestamp == "none":
        return match_errors(ctx.log_since(service, t_rec_wall), patterns, None)
    return match_errors(ctx.log_since(service, int(t_rec_wall)), patterns, t_rec_wall)


@CHECKS(
    "database-healthy",
    title="Database operating normally (primary writable, replica streaming, amcheck clean)",
)
def database_healthy(ctx: DrillContext) -> str:
    """Primary writable, replica streaming and caught up, pg_amcheck clean on the app database."""
    primary = ctx.primary
    if ctx.stack.sql(primary, "SELECT pg_is_in_recovery()")[0][0]:
        raise CheckFailed(f"{primary} is read-only (in recovery)")
    ctx.stack.sql(primary, "CREATE TEMP TABLE drillkit_write_check (x int)")
    parts = [f"{primary} writable"]
    fenced = ctx.part(Fencing).service
    replicas = [s for s in ctx.stack.databases if s != primary and s != fenced]
    for replica in replicas:
        if replica == "replica" and primary == "replica":
            continue
        try:
            if ctx.stack.spec.is_compose:
                wait_receiving(ctx, replica, timeout_s=20)
            else:
                ctx.stack.wait_streaming(timeout_s=20, primary=primary, replica=replica)
        except EnvironmentBroken as exc:
            raise CheckFailed(f"{replica} is not streaming from {primary}: {exc}") from exc
        wait_replica_caught_up(ctx, Service(replica), timeout=30.0)
        parts.append(f"{replica} streaming and caught up")
    res = ctx.stack.exec(primary, amcheck_command(ctx), timeout_s=120)
    if res.exit_code == 127:
        raise CheckFailed(f"pg_amcheck is not installed in {primary} (the check needs it)")
    if res.exit_code != 0:
        raise CheckFailed(f"pg_amcheck exit {res.exit_code}: {res.output.strip()[:400]}")
    parts.append("pg_amcheck clean")
    return ", ".join(parts)


def wait_receiving(ctx: DrillContext, replica: str, timeout_s: float) -> None:
    """Until the standby's WAL receiver streams (pg_stat_wal_receiver, asked on the standby: a
    compose stack's standby names itself to the primary as it likes, so the primary's
    pg_stat_replication cannot be matched to the service)."""

    def streaming() -> bool:
        ctx.stack.require_running(replica)
        rows = ctx.stack.sql(replica, "SELECT status FROM pg_stat_wal_receiver")
        return bool(rows) and rows[0][0] == "streaming"

    wait_for(
        streaming,
        what=f"{replica}'s WAL receiver to stream",
        timeout_s=timeout_s,
        transient=(psycopg.Error,),
        context=ctx.stack.log_context(replica),
    )


def amcheck_command(ctx: DrillContext) -> str:
    """pg_amcheck on the app database: the reference stack's over its socket; a compose stack's
    as the overlay's superuser over TCP inside the container (amcheck installed if missing)."""
    if not ctx.stack.spec.is_compose:
        return "pg_amcheck -h /run/postgresql -d app --heapallindexed 2>&1"
    user, password, dbname = ctx.stack.db_credentials()
    port = ctx.stack.spec.db.port if ctx.stack.spec.db is not None else 5432
    return (
        f"PGPASSWORD={shlex.quote(password)} pg_amcheck -h 127.0.0.1 -p {int(port)} "
        f"-U {shlex.quote(user)} -d {shlex.quote(dbname)} --install-missing --heapallindexed 2>&1"
    )


@CHECKS("authentication", title="User authentication working", needs=("reference-app",))
def authentication(ctx: DrillContext) -> str:
    """A user logs in with the current password and the token is accepted."""
    client = ctx.app_client()
    r = client.me(client.login())
    if r.status_code != 200:
        raise CheckFailed(f"/api/auth/me with a fresh token answered {r.status_code}")
    return "login and token check work"


@CHECKS("critical-journeys", title="Critical user journeys working", needs=("journey",))
def critical_journeys(ctx: DrillContext) -> str:
    """The journey probe has passed continuously since recovery (and at least 3 times)."""
    t_rec = ctx.result.markers.get("recovered")
    if t_rec is None:
        raise CheckFailed("never recovered")
    after = [s for s in ctx.probes.snapshot() if s.probe == "journey" and s.t >= t_rec]
    failed = [s for s in after if not s.ok]
    if failed or len(after) < 3:
        raise CheckFailed(
            f"{len(failed)} of {len(after)} journeys failed after recovery"
            + (f": {failed[0].error}" if failed else "")
        )
    return f"{len(after)} journeys passed after recovery"


@CHECKS("detected-within-objective", title="Detected within the detection objective")
def detected_within_objective(ctx: DrillContext) -> str:
    """MTTD (first failed probe after the fault) within the detection objective; nothing to
    detect when no probe failed."""
    m = ctx.result.measurement
    obj = ctx.result.objectives.detection_s
    if m is None:
        raise CheckFailed("no measurement")
    if m.mttd_s is None:
        return "no probe failed: nothing to detect (no user-visible impact)"
    if obj is not None and m.mttd_s > obj:
        raise CheckFailed(f"MTTD {m.mttd_s:.2f} s > objective {obj:g} s")
    return f"MTTD {m.mttd_s:.2f} s"


@CHECKS("recovered-within-rto", title="Recovered within RTO")
def recovered_within_rto(ctx: DrillContext) -> str:
    """RTO (T_recovered - T_fault) within the objective."""
    m = ctx.result.measurement
    obj = ctx.result.objectives.rto_s
    if m is None or m.rto_s is None:
        raise CheckFailed("never recovered")
    if m.rto_s > obj:
        raise CheckFailed(f"RTO {m.rto_s:.2f} s > objective {obj:g} s")
    return f"RTO {m.rto_s:.2f} s"


@CHECKS("app-fails-fast", title="The app failed fast during the fault (no hung request)")
def app_fails_fast(ctx: DrillContext, max_s: float = 3.5) -> str:
    """During the fault no probe hung: every failed sample answered within max_s."""
    t_fault = ctx.result.markers.get("fault", 0.0)
    slow = [s for s in ctx.probes.snapshot() if s.t >= t_fault and not s.ok and s.latency_s > max_s]
    if slow:
        raise CheckFailed(
            f"{len(slow)} failed requests took longer than {max_s} s "
            f"(slowest {max(s.latency_s for s in slow):.1f} s)"
        )
    return f"every failed request answered within {max_s} s"
