"""Memory leak and restart (seed 003 "Application Performance Issues": memory leaks;
`pm2 restart boutique-client-portal --max-memory-restart 400M`).

The fault puts the app's container under a memory limit (`docker update --memory`), switches the
reference app's leak on (its `memory_leak` config file: every request then retains a buffer for
the life of the process) and drives traffic until the kernel OOM-kills it. The runbook finds it
(`docker inspect` State.OOMKilled and exit code, the engine's `oom` events, `docker stats`),
restarts the app with a memory guard (a restart policy, and the app's own pm2-style
`max_memory_restart`: at that RSS it restarts itself in place, on the same listening socket) and
verifies. The leak stays on, as a leak in the code does: the checks prove that during the
observation window the guard held the memory below the limit and nothing was OOM-killed again.

A sampler started by the fault polls the container (state, OOMKilled, restart count) and the
app's `GET /api/admin/memory` (RSS, guard, guard restarts) five times a second until teardown.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import docker.errors
import requests

from drillkit.core.context import DrillContext
from drillkit.core.registry import CHECKS, FAULTS, RECOVERY, Duration, Service
from drillkit.errors import CheckFailed, EnvironmentBroken, StepFailed
from drillkit.wait import wait_for

MIB = 1 << 20
MIN_LIMIT_MIB = 64
MAX_LIMIT_MIB = 4096
RESTART_POLICIES = ("always", "unless-stopped", "on-failure")
SAMPLE_INTERVAL_S = 0.2
GUARD_TOLERANCE = 0.25
"""How far above its guard a sampled RSS may be: the guard polls every 50 ms and lets a request
in flight finish before it restarts, and the leak keeps allocating meanwhile."""
DRIVERS = 4
"""Concurrent clients of the fault's traffic."""
_SIZE_RE = re.compile(r"([0-9]{1,7})(KiB|MiB)")


def parse_size(text: str, what: str, step: str) -> int:
    """Bytes of a '256KiB' / '96MiB' size; StepFailed naming the parameter otherwise."""
    match = _SIZE_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or int(match.group(1)) == 0:
        raise StepFailed(step, f"{what} {text!r}: expected a size such as 256KiB or 96MiB")
    return int(match.group(1)) * (1024 if match.group(2) == "KiB" else MIB)


def mib(value: float | None) -> str:
    return "?" if value is None else f"{value / MIB:.1f} MiB"


@dataclass(frozen=True)
class MemorySample:
    t: float
    status: str
    oom_killed: bool
    restart_count: int
    rss_bytes: int | None = None
    """The app's own RSS (None when it did not answer)."""
    guard_bytes: int | None = None
    guard_restarts: int | None = None


@dataclass
class MemoryWatch:
    """What the memory fault set up and what the sampler saw."""

    service: str = "app"
    limit_bytes: int | None = None
    leak_bytes: int = 0
    fault_wall: float | None = None
    found_at: float | None = None
    """Clock time find-memory-exhaustion ran (the runbook took over)."""
    restarted_at: float | None = None
    """Clock time the guarded restart finished (None: no guarded restart ran)."""
    restarted_wall: float | None = None
    guard_bytes: int | None = None
    samples: list[MemorySample] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def since(self, t: float) -> list[MemorySample]:
        with self.lock:
            return [s for s in self.samples if s.t >= t]


def _admin_memory(ctx: DrillContext, timeout_s: float = 1.0) -> dict[str, Any]:
    r = requests.get(
        ctx.stack.app_url + "/api/admin/memory",
        headers={"Authorization": f"Bearer {ctx.stack.secrets['admin_token']}"},
        timeout=timeout_s,
    )
    r.raise_for_status()
    out: dict[str, Any] = r.json()
    return out


def _sample(ctx: DrillContext, watch: MemoryWatch) -> MemorySample:
    c = ctx.stack.containers[watch.service]
    c.reload()
    state = c.attrs.get("State") or {}
    sample = MemorySample(
        t=ctx.clock(),
        status=c.status,
        oom_killed=bool(state.get("OOMKilled")),
        restart_count=int(c.attrs.get("RestartCount") or 0),
    )
    if c.status != "running":
        return sample
    # EnvironmentBroken: the app went down since the reload (no published port while its restart
    # policy restarts it): in a run with a CPU hog beside it that killed the sampler thread, and
    # memory-within-guard then judged 0 samples
    with contextlib.suppress(requests.RequestException, ValueError, KeyError, EnvironmentBroken):
        body = _admin_memory(ctx)
        return MemorySample(
            sample.t,
            sample.status,
            sample.oom_killed,
            sample.restart_count,
            rss_bytes=int(body["rss_bytes"]),
            guard_bytes=body.get("max_memory_restart_bytes"),
            guard_restarts=int(body["guard_restarts"]),
        )
    return sample


def _start_sampler(ctx: DrillContext, watch: MemoryWatch) -> None:
    def run() -> None:
        while not watch.stop.wait(SAMPLE_INTERVAL_S):
            with contextlib.suppress(docker.errors.APIError, requests.RequestException):
                sample = _sample(ctx, watch)
                with watch.lock:
                    watch.samples.append(sample)

    thread = threading.Thread(target=run, name="memory-sampler", daemon=True)
    thread.start()
    ctx.cleanups.append(lambda: (watch.stop.set(), thread.join(timeout=5)))


def oom_events(ctx: DrillContext, service: str, since_wall: float) -> list[float]:
    """Unix times of the engine's `oom` events for the service's container since `since_wall`
    (`docker events --filter event=oom`)."""
    c = ctx.stack.containers[service]
    events = ctx.stack.client.events(
        since=int(since_wall) - 1,
        until=int(time.time()) + 1,
        filters={"container": c.id, "event": "oom"},
        decode=True,
    )
    found: list[float] = []
    for e in events:
        if e.get("timeNano"):  # exact: an OOM kill just before `since_wall` is not after it
            t = float(e["timeNano"]) / 1e9
            if t >= since_wall:
                found.append(t)
        elif float(e.get("time", 0)) >= int(since_wall):  # whole seconds: that second counts
            found.append(float(e["time"]))
    return found


def _drive(url: str, stop: threading.Event) -> Iterator[int]:
    """Requests to the app's health endpoint until `stop`; yields each answer's status (0: none)."""
    with requests.Session() as session:
        while not stop.is_set():
            try:
                yield session.get(url, timeout=2).status_code
            except requests.RequestException:
                yield 0
                time.sleep(0.05)


@FAULTS("memory-leak", needs=("reference-app",))
def memory_leak(
    ctx: DrillContext,
    limit: str = "128MiB",
    leak: str = "256KiB",
    timeout: Duration = Duration(20.0),
    service: Service = Service("app"),
) -> str:
    """Put the app under a memory limit of `limit` (`docker update --memory`, no swap), switch its
    leak on (each request retains `leak` bytes) and send requests from 4 clients until the kernel
    OOM-kills it (the container exits with OOMKilled). Fails when it survives `timeout`."""
    step = "memory-leak"
    limit_b, leak_b = parse_size(limit, "limit", step), parse_size(leak, "leak", step)
    if not MIN_LIMIT_MIB * MIB <= limit_b <= MAX_LIMIT_MIB * MIB:
        raise StepFailed(step, f"limit {limit}: expected {MIN_LIMIT_MIB}MiB to {MAX_LIMIT_MIB}MiB")
    if leak_b > 16 * MIB:
        raise StepFailed(step, f"leak {leak}: at most 16MiB per request")
    c = ctx.stack.container(service)
    if c.status != "running":
        raise StepFailed(step, f"{service} is not running (container {c.status})")
    watch = ctx.part(MemoryWatch)
    watch.service, watch.limit_bytes, watch.leak_bytes = service, limit_b, leak_b
    watch.fault_wall = time.time()
    c.update(mem_limit=limit_b, memswap_limit=limit_b)
    ctx.stack.kinds["app"].set_memory_leak(leak)
    ctx.stack.reload_app()
    _start_sampler(ctx, watch)
    url = ctx.stack.app_url + "/api/health"
    stop, sent = threading.Event(), [0]
    started = ctx.clock()

    def client() -> None:
        for _ in _drive(url, stop):
            sent[0] += 1

    with ThreadPoolExecutor(DRIVERS, thread_name_prefix="leak-traffic") as pool:
        for _ in range(DRIVERS):
            pool.submit(client)
        try:
            wait_for(
                lambda: (c.reload(), c.status != "running")[1],
                what=f"{service} to be OOM-killed",
                timeout_s=float(timeout),
                interval_s=0.05,
                transient=(docker.errors.APIError,),
            )
        except EnvironmentBroken as exc:
            raise StepFailed(
                step, f"{service} survived {sent[0]} requests for {timeout:g} s under {limit}"
            ) from exc
        finally:
            stop.set()
    state = c.attrs.get("State") or {}
    took = ctx.clock() - started
    ctx.figure("memory_limit_mib", round(limit_b / MIB, 1))
    ctx.figure("oom_after_requests", sent[0])
    ctx.figure("oom_after_s", round(took, 2))
    peak = max((s.rss_bytes or 0 for s in watch.since(started)), default=0)
    if peak:
        ctx.figure("rss_peak_before_oom_mib", round(peak / MIB, 1))
    if not state.get("OOMKilled"):
        raise StepFailed(
            step, f"{service} stopped (exit {state.get('ExitCode')}) but was not OOM-killed"
        )
    return (
        f"{service} leaking {leak} per request under a {limit} limit: OOM-killed after "
        f"{sent[0]} requests in {took:.1f} s (exit code {state.get('ExitCode')}; RSS last seen "
        f"{mib(peak or None)})"
    )


@RECOVERY("find-memory-exhaustion", needs=("reference-app",))
def find_memory_exhaustion(ctx: DrillContext, service: Service = Service("app")) -> str:
    """The runbook's memory analysis: the container's state (OOMKilled, exit code, restart count),
    its memory limit, the engine's `oom` events since the fault and, while it runs, `docker
    stats`' memory usage. Recorded as evidence; fails when nothing points at memory (no OOM kill,
    no oom event, usage below 90 % of the limit)."""
    c = ctx.stack.container(service)
    state = c.attrs.get("State") or {}
    limit = int((c.attrs.get("HostConfig") or {}).get("Memory") or 0)
    watch = ctx.part(MemoryWatch)
    watch.found_at = ctx.clock()
    since = watch.fault_wall or ctx.result.wall(ctx.result.markers.get("fault", ctx.clock()))
    events = oom_events(ctx, service, since)
    lines = [
        f"container {c.name}: {c.status}, exit code {state.get('ExitCode')}, "
        f"OOMKilled {bool(state.get('OOMKilled'))}, restart count {c.attrs.get('RestartCount')}",
        f"memory limit (HostConfig.Memory): {mib(limit) if limit else 'none'}",
        f"oom events since the fault: {len(events)}",
    ]
    usage = 0
    if c.status == "running":
        stats = c.stats(stream=False, one_shot=True)
        mem = stats.get("memory_stats") or {}
        usage = int(mem.get("usage") or 0)
        lines.append(f"docker stats: memory usage {mib(usage)} of {mib(mem.get('limit'))}")
    report = "\n".join(lines)
    ctx.evidence(f"{service} memory at the start of recovery", report)
    ctx.figure("oom_events", len(events))
    exhausted = bool(state.get("OOMKilled")) or bool(events) or (limit and usage >= 0.9 * limit)
    if not exhausted:
        raise StepFailed("find-memory-exhaustion", f"nothing points at memory: {report}")
    return report.replace("\n", "; ")


@RECOVERY("restart-with-memory-guard", needs=("reference-app",))
def restart_with_memory_guard(
    ctx: DrillContext,
    max_memory: str,
    restart: str = "unless-stopped",
    service: Service = Service("app"),
) -> str:
    """`pm2 restart app --max-memory-restart SIZE`: set the app's own memory guard (its
    `max_memory_restart` config file: at that RSS it restarts itself in place), give the
    container a restart policy (`docker update --restart`, the backstop should the kernel still
    OOM-kill it), restart it and verify the guard is active. The guard must be below the
    container's memory limit."""
    step = "restart-with-memory-guard"
    guard = parse_size(max_memory, "max_memory", step)
    if restart not in RESTART_POLICIES:
        raise StepFailed(
            step, f"restart {restart!r}: expected one of {', '.join(RESTART_POLICIES)}"
        )
    c = ctx.stack.container(service)
    limit = int((c.attrs.get("HostConfig") or {}).get("Memory") or 0)
    if limit and guard >= limit:
        raise StepFailed(
            step, f"max_memory {max_memory} is not below the memory limit {mib(limit)}"
        )
    ctx.stack.kinds["app"].set_max_memory_restart(max_memory)
    c.update(restart_policy={"Name": restart})
    if c.status == "running":
        c.restart(timeout=10)
    else:
        c.start()
    ctx.stack.wait_app(30)
    reported = _admin_memory(ctx, 5.0).get("max_memory_restart_bytes")
    if reported != guard:
        raise StepFailed(step, f"the app reports max_memory_restart {reported}, not {guard}")
    watch = ctx.part(MemoryWatch)
    watch.guard_bytes, watch.restarted_at, watch.restarted_wall = guard, ctx.clock(), time.time()
    ctx.figure("memory_guard_mib", round(guard / MIB, 1))
    return f"{service} restarted with restart policy {restart} and max_memory_restart {max_memory}"


@dataclass(frozen=True)
class MemoryVerdict:
    ok: bool
    detail: str
    peak_bytes: int | None
    guard_restarts: int


def judge_memory(
    samples: list[MemorySample],
    guard: int | None,
    limit: int | None,
    oom_kills: int,
    tolerance: float = GUARD_TOLERANCE,
) -> MemoryVerdict:
    """Judge the samples taken since the restart: no OOM kill, RSS never above the guard (plus
    `tolerance`) nor the limit, and how often the guard restarted the app meanwhile."""
    rss = [s.rss_bytes for s in samples if s.rss_bytes is not None]
    peak = max(rss) if rss else None
    counts = [s.guard_restarts for s in samples if s.guard_restarts is not None]
    acted = (max(counts) - min(counts)) if counts else 0
    problems = []
    if oom_kills:
        problems.append(f"OOM-killed again ({oom_kills} oom event(s)) after the restart")
    stopped = [s for s in samples if s.status != "running"]
    restarts = [s.restart_count for s in samples]
    if stopped or (restarts and max(restarts) > min(restarts)):
        problems.append(
            f"the container stopped after the restart ({len(stopped)} sample(s) not running, "
            f"{max(restarts) - min(restarts)} restart(s) by its policy)"
        )
    if guard is None:
        problems.append("no memory guard was set: the leak grows unchecked")
    elif peak is not None and peak > guard * (1 + tolerance):
        problems.append(f"RSS reached {mib(peak)}, above the guard {mib(guard)}")
    if limit and peak is not None and peak >= limit:
        problems.append(f"RSS reached {mib(peak)}, the memory limit {mib(limit)}")
    if not rss:
        problems.append("the app never reported its memory after the restart")
    detail = (
        f"peak RSS {mib(peak)} (guard {mib(guard) if guard else 'none'}, limit "
        f"{mib(limit) if limit else 'none'}) over {len(samples)} samples; the guard restarted "
        f"the app {acted} time(s); {oom_kills} OOM kill(s)"
    )
    if problems:
        return MemoryVerdict(False, "; ".join(problems) + f" ({detail})", peak, acted)
    return MemoryVerdict(True, detail, peak, acted)


def _window(ctx: DrillContext) -> tuple[MemoryWatch, float, float]:
    """The watch, and the clock and wall time the observed window starts: the guarded restart, or
    else the end of the recovery (the twin's plain restart)."""
    watch = ctx.part(MemoryWatch)
    if watch.restarted_at is not None and watch.restarted_wall is not None:
        return watch, watch.restarted_at, watch.restarted_wall
    t = window_start(watch.since(watch.found_at or ctx.clock()))
    t = ctx.clock() if t is None else t
    return watch, t, ctx.result.wall(t)


def window_start(samples: list[MemorySample]) -> float | None:
    """Without a guarded restart: the first sample of the app running again after it was found
    down (the runbook's own restart), None when it never ran again."""
    down = next((i for i, s in enumerate(samples) if s.status != "running"), None)
    if down is None:
        return samples[0].t if samples else None
    return next((s.t for s in samples[down:] if s.status == "running"), None)


def guard_acted(ctx: DrillContext, t_recovered: float) -> bool:
    """memory-within-guard's settle condition: the guard has restarted the app at least once since
    the guarded restart (or there is no guard to wait for)."""
    watch = ctx.part(MemoryWatch)
    if watch.restarted_at is None:
        return True
    return (
        judge_memory(watch.since(watch.restarted_at), watch.guard_bytes, None, 0).guard_restarts > 0
    )


@CHECKS(
    "memory-within-guard",
    title="Memory held under the guard (no OOM kill after the restart)",
    needs=("reference-app",),
    settle=guard_acted,
)
def memory_within_guard(ctx: DrillContext) -> str:
    """Since the restart, with the leak still on: no `oom` event and no OOMKilled container, the
    app's sampled RSS never above its guard (plus 25 %) nor the limit. The observation is extended
    (up to the scenario's settle) until the guard has acted at least once."""
    watch, t0, wall0 = _window(ctx)
    kills = len(oom_events(ctx, watch.service, wall0))
    verdict = judge_memory(watch.since(t0), watch.guard_bytes, watch.limit_bytes, kills)
    ctx.figure("guard_restarts", verdict.guard_restarts)
    if verdict.peak_bytes is not None:
        ctx.figure("rss_peak_after_restart_mib", round(verdict.peak_bytes / MIB, 1))
    ctx.figure("oom_kills_after_restart", kills)
    lines = [
        line
        for line in ctx.log_since(watch.service, wall0).splitlines()
        if " memory_guard_" in line or " started " in line
    ]
    ctx.evidence("memory guard restarts (app log)", "\n".join(lines[-200:]) or "none")
    if not verdict.ok:
        raise CheckFailed(verdict.detail)
    return verdict.detail


@CHECKS("memory-guard-set", title="Memory guard and restart policy set", needs=("reference-app",))
def memory_guard_set(ctx: DrillContext) -> str:
    """The app reports an active max_memory_restart below its container's memory limit, and the
    container has a restart policy (always, unless-stopped or on-failure)."""
    watch = ctx.part(MemoryWatch)
    c = ctx.stack.container(watch.service)
    policy = ((c.attrs.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or "no"
    limit = int((c.attrs.get("HostConfig") or {}).get("Memory") or 0)
    if c.status != "running":
        state = c.attrs.get("State") or {}
        raise CheckFailed(
            f"{watch.service} is not running (container {c.status}, exit code "
            f"{state.get('ExitCode')}, OOMKilled {bool(state.get('OOMKilled'))}; restart policy "
            f"{policy})"
        )
    try:
        guard = _admin_memory(ctx, 5.0).get("max_memory_restart_bytes")
    except (requests.RequestException, ValueError, EnvironmentBroken) as exc:
        raise CheckFailed(f"the app does not report its memory guard: {exc}") from None
    detail = f"max_memory_restart {mib(guard)}, limit {mib(limit) if limit else 'none'}, restart policy {policy}"
    if not guard:
        raise CheckFailed(f"no memory guard: {detail}")
    if limit and guard >= limit:
        raise CheckFailed(f"the guard is not below the limit: {detail}")
    if policy not in RESTART_POLICIES:
        raise CheckFailed(f"no restart policy: {detail}")
    return detail
