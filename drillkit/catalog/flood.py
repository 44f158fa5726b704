"""The traffic flood drill (seed 001 2.2 "Implement rate limiting for affected endpoints"; seed 004
"Security Threats: DDoS attacks"): a bounded flood from a drill container on the run's internal
network saturates an endpoint behind the web front; the runbook finds the top talker in the web
log and turns on rate limiting at the front (nginx `limit_req` on the flooded path, keyed by the
client address, installed as a conf include and `nginx -s reload`) while the flood goes on.

The flood client (drillkit/catalog/_flood_client.py, run by `python3 -c` in the app image) targets
only the web front's address on the internal network, and is bounded in duration, concurrency,
request rate and request count. Its container carries the run's labels; it is killed when the
step that starts it is stopped, removed at teardown (a cleanup) and reaped by label like every
harness container. It prints running totals (requests, answers by status) that the checks read.

The harness's own clients reach the front through its port published on 127.0.0.1, so nginx sees
them from another address than the flood client: a per-address limit refuses the flood and lets
them through. The checks prove recovery under flood: the flood is still running when they run,
its requests are refused (429) since the limit, and journeys through the front (the flooded login
included) succeed at the steady state's latency.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors

from drillkit import cancel
from drillkit.catalog.checks import PERFORMANCE_FACTOR, PERFORMANCE_FLOOR_MS
from drillkit.core.context import DrillContext
from drillkit.core.probes import AppClient
from drillkit.core.registry import CHECKS, FAULTS, RECOVERY, Duration
from drillkit.errors import CheckFailed, EnvironmentBroken, StepFailed
from drillkit.stack.seed import PROBE_USER
from drillkit.stack.services.web import WEB_PORT
from drillkit.stack.stack import Stack
from drillkit.wait import wait_for

WEB = "web"
LIMITS_DIR = "/etc/nginx/drillkit-limits.d"
"""Included by images/web/nginx.conf in its http block (`*.conf`; empty in the image)."""
LIMIT_FILE = f"{LIMITS_DIR}/rate-limit.conf"
CLIENT_SOURCE = Path(__file__).with_name("_flood_client.py")
DEFAULT_BODY = '{"email": "flood@attacker.invalid", "password": "guess"}'
"""A credential-stuffing login: an unknown user (the app still hashes a dummy password)."""
MAX_CONCURRENCY = 256
MAX_RATE = 2000.0
MAX_DURATION_S = 300.0
MAX_REQUESTS = 500_000
MAX_LIMIT_RATE = 1000.0
MAX_BURST = 1000
REJECTED = ("429", "503")
"""The statuses a limit answers refused requests with (limit_req_status, and nginx's default),
when the front answers them itself: the client counts the app's own answers as "<status> app"."""
APP_ORIGIN_HEADER = "X-App-Version"
"""Set by the reference app on every answer and passed through by the front; the front's own
answers (a limit's refusals) lack it. It keeps the app's 503s under load (its database pool
busy) from counting as the front refusing the flood."""
SAFE_PATH = re.compile(r"^/[A-Za-z0-9._~/-]{0,200}$")
ACCESS_LINE = re.compile(r'^(\S+) \S+ \S+ \[[^\]]*\] "([A-Z]+) (\S+)[^"]*" (\d{3}) ')


# ----- pure parts (unit-tested) ------------------------------------------------------------------


@dataclass(frozen=True)
class FloodStats:
    """The flood client's running totals at `t` seconds after it began."""

    t: float = 0.0
    sent: int = 0
    done: int = 0
    status: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    running: bool = False

    @property
    def rejected(self) -> int:
        return sum(self.status.get(s, 0) for s in REJECTED)

    @property
    def rejected_share(self) -> float:
        """The share of the answered requests (not errors or timeouts) the front refused."""
        return self.rejected / max(1, self.done - self.errors)

    def since(self, earlier: FloodStats) -> FloodStats:
        """The totals between `earlier` and this (status counts subtracted)."""
        keys = set(self.status) | set(earlier.status)
        return FloodStats(
            t=self.t - earlier.t,
            sent=self.sent - earlier.sent,
            done=self.done - earlier.done,
            status={k: self.status.get(k, 0) - earlier.status.get(k, 0) for k in sorted(keys)},
            errors=self.errors - earlier.errors,
            running=self.running,
        )

    def describe(self) -> str:
        rate = self.done / self.t if self.t > 0 else 0.0
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.status.items()) if v) or "none"
        return (
            f"{self.done} requests in {self.t:.1f} s ({rate:.0f}/s; answers {codes}; "
            f"{self.errors} errors or timeouts)"
        )


def parse_stats(log: str) -> FloodStats | None:
    """The last totals line of the flood client's output (None before its first)."""
    for line in reversed(log.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            d = json.loads(line)
            return FloodStats(
                t=float(d["t"]),
                sent=int(d["sent"]),
                done=int(d["done"]),
                status={str(k): int(v) for k, v in dict(d["status"]).items()},
                errors=int(d["errors"]),
                running=bool(d["running"]),
            )
        except (ValueError, KeyError, TypeError):
            continue
    return None


def check_path(path: str, what: str) -> str:
    """A URL path safe to write into nginx's configuration and a command line."""
    if not SAFE_PATH.match(path):
        raise StepFailed(
            what, f"path must be / followed by letters, digits and ._~/- (got {path[:80]!r})"
        )
    return path


def limit_conf(path: str, rate: float, burst: int) -> str:
    """nginx http-level configuration that limits requests to exactly `path` to `rate` per second
    per client address (a burst of `burst` served at once), refusing the rest with 429. Requests
    to other paths map to an empty key, which limit_req does not count."""
    check_path(path, "rate-limit")
    if not 0 < rate <= MAX_LIMIT_RATE:
        raise StepFailed("rate-limit", f"rate must be in (0, {MAX_LIMIT_RATE:g}] per second")
    if not 0 <= burst <= MAX_BURST:
        raise StepFailed("rate-limit", f"burst must be in [0, {MAX_BURST}]")
    per_minute = max(1, round(rate * 60))
    return (
        "# Installed by drillkit's rate-limit step (seed 001: rate limiting for affected endpoints).\n"
        "map $uri $drillkit_limit_key {\n"
        '    default "";\n'
        f'    "{path}" $binary_remote_addr;\n'
        "}\n"
        f"limit_req_zone $drillkit_limit_key zone=drillkit_flood:1m rate={per_minute}r/m;\n"
        f"limit_req zone=drillkit_flood burst={burst} nodelay;\n"
        "limit_req_status 429;\n"
        "limit_req_log_level info;\n"
    )


def top_talkers(log: str, n: int = 5) -> list[tuple[str, str, int]]:
    """(client address, 'METHOD path', requests) of an nginx access log (combined format), most
    requests first; query strings dropped."""
    counts: Counter[tuple[str, str]] = Counter()
    for line in log.splitlines():
        m = ACCESS_LINE.match(line)
        if m:
            counts[(m.group(1), f"{m.group(2)} {m.group(3).split('?', 1)[0]}")] += 1
    return [(addr, req, c) for (addr, req), c in counts.most_common(n)]


def worker_pids(ps: str) -> tuple[set[str], set[str]]:
    """(serving, shutting down) nginx worker pids from lines `<pid> <cmdline>`."""
    serving, leaving = set(), set()
    for line in ps.splitlines():
        pid, _, cmd = line.strip().partition(" ")
        if "nginx: worker process" not in cmd:
            continue
        (leaving if "shutting down" in cmd else serving).add(pid)
    return serving, leaving


# ----- the flood container ------------------------------------------------------------------------


@dataclass
class Flood:
    """The drill's flood (one per drill), handed from the fault to the steps and checks."""

    container: Any = None
    target: str = ""
    request: str = ""
    started_wall: float = 0.0
    limited_path: str = ""
    at_limit: FloodStats | None = None
    """The flood's totals when the rate limit took effect."""


def web_address(stack: Stack) -> str:
    """The web front's address on the run's internal network."""
    c = stack.container(WEB)
    nets = c.attrs["NetworkSettings"]["Networks"] or {}
    ip = (nets.get(stack.net.name) or {}).get("IPAddress")
    if not ip:
        raise EnvironmentBroken(f"{c.name} has no address on {stack.net.name}")
    return str(ip)


def flood_stats(flood: Flood) -> FloodStats | None:
    if flood.container is None:
        return None
    try:
        return parse_stats(flood.container.logs(tail=5).decode("utf-8", "replace"))
    except docker.errors.NotFound:
        return None


def flood_running(flood: Flood) -> bool:
    if flood.container is None:
        return False
    try:
        flood.container.reload()
    except docker.errors.NotFound:
        return False
    return flood.container.status == "running"


def _remove(container: Any) -> None:
    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
        container.remove(force=True)


@FAULTS("flood-endpoint", needs=("web", "reference-app"))
def flood_endpoint(
    ctx: DrillContext,
    path: str = "/api/auth/login",
    method: str = "POST",
    body: str = DEFAULT_BODY,
    concurrency: int = 128,
    rate: float = 300.0,
    duration: Duration = Duration(120.0),
    max_requests: int = 100_000,
) -> str:
    """A bounded flood of `method path` (with `body`) at the web front from a drill container on
    the run's internal network: `concurrency` keep-alive connections, at most `rate` requests per
    second, for at most `duration` or `max_requests` requests. The step ends once the flood is
    under way; the flood goes on through the runbook (it is stopped with the step if the step is
    stopped, and removed at teardown)."""
    stack = ctx.stack
    check_path(path, "flood-endpoint")
    if method not in ("GET", "POST"):
        raise StepFailed("flood-endpoint", f"method must be GET or POST (got {method[:20]!r})")
    bounds = (
        (1 <= concurrency <= MAX_CONCURRENCY, f"concurrency must be 1..{MAX_CONCURRENCY}"),
        (0 < rate <= MAX_RATE, f"rate must be in (0, {MAX_RATE:g}] per second"),
        (0 < duration <= MAX_DURATION_S, f"duration must be in (0, {MAX_DURATION_S:g}] s"),
        (1 <= max_requests <= MAX_REQUESTS, f"max_requests must be 1..{MAX_REQUESTS}"),
        (len(body) <= 4096 and body.isprintable(), "body must be printable, at most 4096 chars"),
    )
    for ok, problem in bounds:
        if not ok:
            raise StepFailed("flood-endpoint", problem)
    flood = ctx.part(Flood)
    if flood.container is not None:
        raise StepFailed("flood-endpoint", "a flood is already running in this drill")
    target = web_address(stack)
    argv = [
        "python3", "-c", CLIENT_SOURCE.read_text(),
        "--target", target, "--port", str(WEB_PORT), "--method", method, "--path", path,
        "--body", body, "--concurrency", str(concurrency), "--duration", f"{duration:g}",
        "--max-requests", str(max_requests), "--rate", f"{rate:g}",
        "--origin-header", APP_ORIGIN_HEADER,
    ]  # fmt: skip
    c = stack.client.containers.create(
        stack.image_tags["app"],
        entrypoint=["timeout", "-s", "KILL", f"{duration + 5:g}"],  # a hard bound besides its own
        command=argv,
        name=stack.name("flood"),
        labels=stack.labels("flood"),
        init=True,
        detach=True,
        network=stack.net.name,  # internal: the client reaches nothing but the run's services
    )
    ctx.cleanups.append(lambda: _remove(c))
    flood.container, flood.target, flood.request = c, target, f"{method} {path}"
    flood.started_wall = time.time()
    with cancel.killable(lambda: _remove(c)):
        c.start()
        stats = wait_for(
            lambda: (s := flood_stats(flood)) is not None and s.done >= concurrency and s,
            what="the flood client to get its first answers",
            timeout_s=15.0,
            interval_s=0.1,
            context=lambda: c.logs(tail=10).decode("utf-8", "replace"),
        )
    ctx.figure("flood_target", f"{method} {path} at {target}:{WEB_PORT}")
    ctx.figure("flood_bounds", {
        "concurrency": concurrency, "rate_rps": rate, "duration_s": duration,
        "max_requests": max_requests,
    })  # fmt: skip
    return (
        f"flood of {method} {path} at the web front ({target}:{WEB_PORT}) from {c.name}: "
        f"{concurrency} connections, <= {rate:g}/s, <= {duration:g} s, <= {max_requests} requests;"
        f" so far {stats.describe()}"
    )


# ----- runbook steps ------------------------------------------------------------------------------


@RECOVERY("identify-flood", needs=("web",))
def identify_flood(ctx: DrillContext, window: Duration = Duration(3.0)) -> str:
    """Seed 001 1.2 "Check error logs"/"Check performance metrics": the web log's last `window`
    seconds, requests counted by client address and path (the top talkers), kept as evidence. It
    records what it finds and never fails."""
    stack = ctx.stack
    stack.container(WEB)  # this run's (blast radius)
    log = ctx.log_since(WEB, time.time() - window)
    talkers = top_talkers(log)
    table = "\n".join(f"{c:>8}  {addr:<16} {req}" for addr, req, c in talkers) or "(no requests)"
    ctx.evidence(f"web log: top talkers over the last {window:g} s", table)
    if not talkers:
        return f"no requests in the web log over the last {window:g} s"
    addr, req, count = talkers[0]
    ctx.figure("flood_top_talker", {"address": addr, "request": req, "per_s": count / window})
    return f"top talker {addr}: {count} x {req} in {window:g} s ({count / window:.0f}/s)"


def _nginx_workers(stack: Stack) -> tuple[set[str], set[str]]:
    res = stack.exec(
        WEB,
        "for p in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null) || continue;"
        ' echo "${p#/proc/} $c"; done',
        user="root",
        timeout_s=10,
    )
    return worker_pids(res.output)


@RECOVERY("rate-limit", needs=("web",))
def rate_limit(
    ctx: DrillContext,
    path: str,
    rate: float = 5.0,
    burst: int = 10,
    timeout: Duration = Duration(20.0),
) -> str:
    """Seed 001 2.2 "Implement rate limiting for affected endpoints": requests to `path` are
    limited at the web front to `rate` per second per client address (bursts of `burst`), the
    excess refused with 429. The limit is written to an include of nginx's http block, checked by
    `nginx -t` (a bad file is removed again) and applied by `nginx -s reload`; the step waits
    until new workers serve and the old ones have finished their requests."""
    stack = ctx.stack
    conf = limit_conf(path, rate, burst)
    before, _ = _nginx_workers(stack)
    res = stack.exec(
        WEB,
        f"set -e; mkdir -p {LIMITS_DIR}; printf '%s' {shlex.quote(conf)} > {LIMIT_FILE}.tmp;"
        f" mv {LIMIT_FILE}.tmp {LIMIT_FILE}; nginx -t 2>&1 || {{ rm -f {LIMIT_FILE}; exit 1; }};"
        " nginx -s reload",
        user="root",
        timeout_s=30,
    )
    if res.exit_code != 0:
        raise StepFailed("rate-limit", f"nginx refused the limit: {res.output[-400:]}")

    def reloaded() -> bool:
        serving, leaving = _nginx_workers(stack)
        return bool(serving) and not serving & before and not leaving

    try:
        wait_for(
            reloaded,
            what="nginx to serve with the new configuration (old workers gone)",
            timeout_s=timeout,
            interval_s=0.05,
            context=stack.log_context(WEB),
        )
    except EnvironmentBroken as exc:
        raise StepFailed("rate-limit", str(exc)) from exc
    flood = ctx.part(Flood)
    flood.limited_path = path
    flood.at_limit = _next_report(flood, timeout)
    ctx.evidence("nginx rate limit (installed)", conf)
    ctx.figure("rate_limit", {"path": path, "rate_rps": rate, "burst": burst})
    return f"{path} limited to {rate:g}/s per client address (burst {burst}); nginx reloaded"


def _next_report(flood: Flood, timeout_s: float) -> FloodStats | None:
    """The flood client's first report after now (it reports every 0.5 s): the totals of an
    older one would count requests answered before the limit as answered since."""
    last = flood_stats(flood)
    if last is None:
        return None
    try:
        return wait_for(
            lambda: (s := flood_stats(flood)) is not None and s.t > last.t and s,
            what="the flood client's next report",
            timeout_s=timeout_s,
            interval_s=0.05,
        )
    except EnvironmentBroken:
        return None  # the flood ended: flood-contained says so


# ----- checks -------------------------------------------------------------------------------------


def _flood_since_limit(ctx: DrillContext) -> tuple[Flood, FloodStats, FloodStats]:
    """The flood, its totals now, and its totals since the limit took effect."""
    flood = ctx.part(Flood)
    if flood.container is None:
        raise CheckFailed("no flood was started in this drill")
    if flood.at_limit is None:
        raise CheckFailed("no rate limit was installed while the flood ran")
    now = flood_stats(flood)
    if now is None:
        raise CheckFailed("the flood client reported nothing")
    return flood, now, now.since(flood.at_limit)


def flood_settled(ctx: DrillContext, t_recovered: float, min_rejected_share: float = 0.8) -> bool:
    """flood-contained's settle condition: the share refused since the limit has reached
    `min_rejected_share` (the limit's burst and the first report's requests weigh less the
    longer the window), or there is nothing to judge (no flood, no limit, no report)."""
    try:
        _, now, after = _flood_since_limit(ctx)
    except CheckFailed:
        return True
    return not now.running or after.rejected_share >= min_rejected_share


@CHECKS(
    "flood-contained",
    title="The flood goes on and the front refuses it",
    settle=flood_settled,
    needs=("web",),
)
def flood_contained(ctx: DrillContext, min_rejected_share: float = 0.8) -> str:
    """The flood client is still running now (recovery is judged under flood), and since the
    rate limit took effect at least `min_rejected_share` of its answered requests were refused
    (429/503) by the front itself (the app's own 503s under load are not the front's).
    Observation goes on (up to the scenario's `settle`) while the share is below it."""
    flood, now, after = _flood_since_limit(ctx)
    if not flood_running(flood) or not now.running:
        raise CheckFailed(f"the flood is no longer running ({now.describe()}): not judged under it")
    ctx.figure("flood_total", {"requests": now.done, "seconds": now.t, "status": now.status})
    ctx.figure("flood_since_limit", {"requests": after.done, "rejected": after.rejected,
                                     "seconds": after.t, "status": after.status})  # fmt: skip
    share = after.rejected_share
    detail = f"since the limit: {after.describe()}; {share:.0%} refused"
    if after.done == 0 or share < min_rejected_share:
        raise CheckFailed(f"the front lets the flood through ({detail})")
    return f"flood still running ({now.describe()} in all); {detail}"


@CHECKS(
    "journeys-under-flood",
    title="User journeys through the web front work at normal speed during the flood",
    needs=("web", "reference-app"),
)
def journeys_under_flood(
    ctx: DrillContext,
    count: int = 8,
    factor: float = PERFORMANCE_FACTOR,
    floor_ms: float = PERFORMANCE_FLOOR_MS,
) -> str:
    """`count` journeys through the web front from the harness's address (log in on the flooded
    path, create an order, read it back) while the flood runs: every one succeeds, and their
    median latency is within factor x the steady state's journey median + floor_ms."""
    flood = ctx.part(Flood)
    stack = ctx.stack
    if ctx.baseline is None:
        raise CheckFailed("no steady-state baseline was recorded")
    client = AppClient(
        lambda: stack.web_url, PROBE_USER, lambda: stack.secrets["user_password"], 5.0
    )
    before = flood_stats(flood)
    latencies, problems = [], []
    for i in range(count):
        t0 = time.monotonic()
        try:
            token = client.login()
            key = f"front-{stack.run_id}-{time.monotonic_ns()}"
            r = client.create_order(key, f"under flood {i}", token)
            if r.status_code not in (200, 201):
                raise CheckFailed(f"create order answered {r.status_code}")
            r2 = client.get_order(int(r.json()["id"]), token)
            if r2.status_code != 200:
                raise CheckFailed(f"read back answered {r2.status_code}")
        except Exception as exc:  # a refused login (429) or a timeout is a failed journey
            problems.append(f"journey {i + 1}: {type(exc).__name__}: {str(exc)[:120]}")
            continue
        latencies.append(time.monotonic() - t0)
    if before is None or not flood_running(flood):
        raise CheckFailed("the flood was not running while the journeys ran")
    try:  # its totals are printed every half second: wait for the next line
        after = wait_for(
            lambda: (s := flood_stats(flood)) is not None and s.done > before.done and s,
            what="the flood client's totals to advance",
            timeout_s=5.0,
            interval_s=0.1,
        )
    except EnvironmentBroken as exc:
        raise CheckFailed(f"the flood was not running while the journeys ran ({exc})") from exc
    if problems:
        raise CheckFailed(f"{len(problems)} of {count} journeys failed: " + "; ".join(problems[:3]))
    med = statistics.median(latencies)
    limit = ctx.baseline.journey_median_s * factor + floor_ms / 1000
    ctx.figure("journeys_under_flood_median_ms", round(med * 1000, 1))
    detail = (
        f"{count} journeys through the front, median {med * 1000:.1f} ms vs "
        f"{ctx.baseline.journey_median_s * 1000:.1f} ms baseline (limit {limit * 1000:.1f} ms); "
        f"the flood sent {after.done - before.done} requests meanwhile"
    )
    if med > limit:
        raise CheckFailed(detail)
    return detail
