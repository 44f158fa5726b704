"""The cache drills (issue 19 item 5): Redis in the stack (`stack: {cache: true}`, seed 000's
stack), an outage the app must survive degraded, and Redis credential rotation (seed 000
Procedure 2 "Rotate Redis passwords").

The app reads orders through the cache (images/app/app.py, "The order cache"): a hit is served
from Redis, a miss from the database (and stored), and any cache failure falls back to the
database, counted, with `cache: degraded` in its health while it stays healthy. The "cache" probe
(added whenever the stack has the cache) fails while the app's health says the cache is degraded:
it measures the cache's own recovery (seed 001's RTO table: caching 1 h), while the availability
and journey probes must hold throughout (`cache-degraded-gracefully`).

The rotation follows the database's: the new password is added to Redis's default user beside
the old (`ACL SETUSER default >new`, both valid), delivered to the app (its secrets file, then
SIGHUP), and only then is the old one revoked (`CONFIG SET requirepass new`, which leaves the
user one password) and every connection opened before the revocation killed (CLIENT KILL ID: the
attacker's among them; the app's pooled ones reconnect at once with the new password). No password reaches a step's output, a log or an exception.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from drillkit.catalog import credentials
from drillkit.core.context import DrillContext
from drillkit.core.probes import ProbeError
from drillkit.core.registry import CHECKS, FAULTS, PROBES, RECOVERY, Duration, optional_services
from drillkit.errors import CheckFailed, EnvironmentBroken, StepFailed
from drillkit.stack.services.cache import (
    APP_CLIENT_NAME,
    APP_SECRET,
    CACHE,
    SERVER_SECRET,
    Cache,
    RespError,
)
from drillkit.stack.stack import Stack
from drillkit.wait import wait_for

optional_services("cache", CACHE)

CANARY_ORDER = 1
"""The seeded order the journey reads on every tick (core/probes.py CANARY_ORDER_ID)."""


def _cache(stack: Stack) -> Cache:
    kind = stack.kinds.get("cache")
    if not isinstance(kind, Cache):
        raise EnvironmentBroken("the stack has no cache (scenario needs stack: {cache: true})")
    return kind


def app_cache_stats(ctx: DrillContext) -> dict[str, Any]:
    """The app's own cache counters (admin stats: state, hits, misses, fallbacks, errors)."""
    r = requests.get(
        ctx.stack.app_url + "/api/admin/stats",
        headers={"Authorization": f"Bearer {ctx.stack.secrets['admin_token']}"},
        timeout=5,
    )
    if r.status_code != 200:
        raise EnvironmentBroken(f"the app's admin stats answered {r.status_code}")
    return dict(r.json().get("cache") or {})


# ----- the cache probe ------------------------------------------------------------------------
@dataclass(frozen=True)
class CacheSeen:
    t: float
    state: str
    fallbacks: int


class CacheProbe:
    """Reads the app's health; fails unless it says `cache: ok`. Keeps what each tick saw."""

    def __init__(self, stack: Stack, timeout_s: float, clock: Callable[[], float]) -> None:
        self.stack, self.timeout_s, self.clock = stack, timeout_s, clock
        self.seen: list[CacheSeen] = []

    def __call__(self) -> None:
        t = self.clock()
        body = self.stack.app_health(self.timeout_s).json()
        state = str(body.get("cache", "absent"))
        self.seen.append(CacheSeen(t, state, int(body.get("cache_fallbacks", 0))))
        if state != "ok":
            raise ProbeError(f"the app reports cache {state}")


@PROBES("cache")
def cache_probes(stack: Stack, timeout_s: float) -> dict[str, Callable[[], object]]:
    """The "cache" probe for a stack with the cache (none otherwise)."""
    if stack.spec.is_compose or CACHE not in stack.services:
        return {}
    return {"cache": CacheProbe(stack, timeout_s, time.monotonic)}


def _probe(ctx: DrillContext) -> CacheProbe:
    probe = ctx.probes.extra.get("cache")
    if not isinstance(probe, CacheProbe):
        raise EnvironmentBroken("no cache probe ran (the stack has no cache)")
    return probe


# ----- recovery steps -------------------------------------------------------------------------
@RECOVERY("check-cache-status", needs=("cache", "reference-app"))
def check_cache_status(ctx: DrillContext) -> str:
    """The runbook's first look: the cache container's state, the app's health and its cache
    counters (never fails)."""
    c = ctx.stack.container(CACHE)
    health = ctx.stack.app_health().json()
    stats = app_cache_stats(ctx)
    report = (
        f"cache container {c.status}; app health status={health.get('status')} "
        f"cache={health.get('cache')}; app cache counters: "
        + ", ".join(f"{k}={stats.get(k)}" for k in ("hits", "misses", "fallbacks", "errors"))
    )
    ctx.evidence("cache status at the start of recovery", report)
    return report


def _hits_rise(ctx: DrillContext, timeout_s: float, what: str) -> str:
    """Read the canary order through the app until Redis's keyspace_hits and the app's own hit
    counter have both risen: the app is reading from the cache again."""
    cache = _cache(ctx.stack)
    client = ctx.app_client()
    redis0 = int(cache.info()["keyspace_hits"])
    app0 = int(app_cache_stats(ctx).get("hits", 0))
    seen: list[tuple[int, int]] = []

    def rising() -> bool:
        r = client.get_order(CANARY_ORDER)
        if r.status_code != 200:
            return False
        now = (int(cache.info()["keyspace_hits"]), int(app_cache_stats(ctx).get("hits", 0)))
        seen.append(now)
        return now[0] > redis0 and now[1] > app0

    try:
        wait_for(rising, what=what, timeout_s=timeout_s, interval_s=0.1)
    except EnvironmentBroken as exc:
        raise StepFailed("verify-cache", f"the app is not reading from the cache: {exc}") from exc
    redis1, app1 = seen[-1]
    return f"cache hits rising: redis keyspace_hits {redis0} -> {redis1}, app hits {app0} -> {app1}"


@RECOVERY("verify-cache", needs=("cache", "reference-app"))
def verify_cache(ctx: DrillContext, timeout: Duration = Duration(15.0)) -> str:
    """Redis answers, the app reports `cache: ok`, and its reads hit the cache again."""
    cache = _cache(ctx.stack)
    wait_for(lambda: cache.call("PING") == "PONG", what="redis to answer", timeout_s=timeout)
    try:
        wait_for(
            lambda: ctx.stack.app_health().json().get("cache") == "ok",
            what="the app to report cache ok",
            timeout_s=timeout,
            interval_s=0.1,
        )
    except EnvironmentBroken as exc:
        raise StepFailed("verify-cache", str(exc)) from exc
    return _hits_rise(ctx, float(timeout), "the cache hits to rise")


@dataclass
class CacheRotation:
    """What rotate-cache-password did: the client id fence (every connection opened before the
    rotation has a lower id) and the password it replaced."""

    fence_id: int | None = None
    old: str | None = field(default=None, repr=False)


@RECOVERY("rotate-cache-password", needs=("cache",))
def rotate_cache_password(ctx: DrillContext) -> str:
    """Seed 000 "Rotate Redis passwords": a new password for Redis's default user, added beside
    the old one (both valid until revoke-old-cache-password), and the server's secret file
    replaced (a restarted Redis reads the new one)."""
    cache = _cache(ctx.stack)
    secrets = ctx.stack.secrets
    rot = ctx.part(CacheRotation)
    with cache.connect() as conn:
        rot.fence_id = int(conn.call("CLIENT", "ID"))
        old = secrets[SERVER_SECRET]
        new = secrets.generate()
        conn.call("ACL", "SETUSER", "default", f">{new}")
    rot.old = old
    secrets.set(SERVER_SECRET, new)
    return f"redis default user has a second password (rotation fence: client id {rot.fence_id})"


def _app_connections_after(cache: Cache, fence: int) -> list[int]:
    return [
        int(c["id"])
        for c in cache.clients()
        if c.get("name") == APP_CLIENT_NAME and int(c["id"]) > fence
    ]


@RECOVERY("deliver-cache-password", needs=("cache", "reference-app"))
def deliver_cache_password(ctx: DrillContext, timeout: Duration = Duration(15.0)) -> str:
    """Hand the app the new Redis password (its secrets file, then SIGHUP, as for its database
    credentials) and wait until it holds a connection opened with it."""
    cache = _cache(ctx.stack)
    rot = ctx.part(CacheRotation)
    if rot.fence_id is None:
        raise StepFailed("deliver-cache-password", "no rotation to deliver (rotate-cache-password)")
    ctx.stack.secrets.set(APP_SECRET, ctx.stack.secrets[SERVER_SECRET])
    ctx.stack.reload_app()
    fence = rot.fence_id
    client = ctx.app_client()
    found: list[list[int]] = []

    def reconnected() -> bool:
        client.get_order(CANARY_ORDER)  # a read makes the app open its new connection
        found.append(_app_connections_after(cache, fence))
        return bool(found[-1])

    try:
        wait_for(reconnected, what="the app to reconnect to redis", timeout_s=timeout)
    except EnvironmentBroken as exc:
        raise StepFailed("deliver-cache-password", str(exc)) from exc
    return f"the app reconnected to redis with the new password (client ids {found[-1]})"


@RECOVERY("revoke-old-cache-password", needs=("cache",))
def revoke_old_cache_password(ctx: DrillContext) -> str:
    """Leave Redis's default user the new password only (`CONFIG SET requirepass`), then kill
    every connection opened before that (any of them may have authenticated with the old
    password: the attacker's among them; the app reconnects with the new one). Fails when there
    was no rotation."""
    cache = _cache(ctx.stack)
    rot = ctx.part(CacheRotation)
    if rot.fence_id is None:
        raise StepFailed("revoke-old-cache-password", "no rotation (rotate-cache-password)")
    killed: list[int] = []
    with cache.connect() as conn:
        conn.call("CONFIG", "SET", "requirepass", ctx.stack.secrets[SERVER_SECRET])
        me = int(conn.call("CLIENT", "ID"))  # every later connection used the new password
        for c in cache.clients():
            cid = int(c["id"])
            if cid < me:
                try:
                    conn.call("CLIENT", "KILL", "ID", cid)
                    killed.append(cid)
                except RespError:
                    pass  # gone meanwhile
    return (
        f"old redis password revoked; killed {len(killed)} connections opened before it: {killed}"
    )


# ----- the leak -------------------------------------------------------------------------------
@dataclass
class CacheLeak:
    """The attacker's Redis session opened with the leaked password."""

    client_id: int | None = None
    password: str | None = field(default=None, repr=False)
    conn: Any = field(default=None, repr=False)


@FAULTS("leak-credentials-with-cache", needs=("reference-app", "cache"))
def leak_credentials_with_cache(ctx: DrillContext) -> str:
    """leak-credentials (the database password and the signing secret), and the Redis password
    with them: the attacker also holds an authenticated Redis session."""
    said = credentials.leak_credentials(ctx)
    cache = _cache(ctx.stack)
    leak = ctx.part(CacheLeak)
    leak.password = ctx.stack.secrets[SERVER_SECRET]
    leak.conn = cache.connect(leak.password)
    ctx.cleanups.append(leak.conn.close)
    leak.conn.call("CLIENT", "SETNAME", "attacker")
    leak.client_id = int(leak.conn.call("CLIENT", "ID"))
    return f"{said}; and a redis session (client id {leak.client_id})"


# ----- checks ---------------------------------------------------------------------------------
@CHECKS(
    "cache-degraded-gracefully",
    title="The app survived the cache outage degraded: healthy, journeys working, reads from the DB",
    needs=("cache", "journey"),
)
def cache_degraded_gracefully(ctx: DrillContext) -> str:
    """After the fault the app's health said `cache: degraded` (the app noticed), its
    fallback counter (reads served from the database because the cache failed) rose, and no
    availability or journey probe failed at any time after the fault."""
    t_fault = ctx.result.markers.get("fault")
    if t_fault is None:
        raise CheckFailed("no fault time recorded")
    seen = _probe(ctx).seen
    before = [s for s in seen if s.t < t_fault and s.state == "ok"]
    degraded = [s for s in seen if s.t >= t_fault and s.state == "degraded"]
    if not before or not degraded:
        raise CheckFailed(
            f"the app never reported the cache degraded after the fault ({len(degraded)} ticks)"
        )
    f0, f1 = before[-1].fallbacks, max(s.fallbacks for s in degraded)
    if f1 <= f0:
        raise CheckFailed(f"no read fell back to the database while degraded ({f0} -> {f1})")
    failed = [
        s
        for s in ctx.probes.snapshot()
        if s.t >= t_fault and s.probe in ("availability", "journey") and not s.ok
    ]
    if failed:
        first = failed[0]
        raise CheckFailed(
            f"{len(failed)} availability/journey probes failed during the cache outage, "
            f"first: {first.probe}: {first.error}"
        )
    served = sum(1 for s in ctx.probes.snapshot() if s.t >= t_fault and s.probe == "journey")
    return (
        f"cache degraded for {len(degraded)} health ticks; {f1 - f0} reads served from the "
        f"database meanwhile; availability and {served} journeys passed throughout"
    )


@CHECKS("cache-in-use", title="The app reads from the cache (hits rising)", needs=("cache",))
def cache_in_use(ctx: DrillContext) -> str:
    """The app reports `cache: ok` and reads of the canary order raise Redis's keyspace_hits
    and the app's own hit counter."""
    stats = app_cache_stats(ctx)
    if stats.get("state") != "ok":
        raise CheckFailed(f"the app reports its cache {stats.get('state')}: {stats.get('reason')}")
    try:
        return _hits_rise(ctx, 5.0, "the cache hits to rise")
    except StepFailed as exc:
        raise CheckFailed(exc.reason) from exc


def _digest(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


@CHECKS(
    "old-cache-password-rejected", title="The leaked Redis password is refused", needs=("cache",)
)
def old_cache_password_rejected(ctx: DrillContext) -> str:
    """AUTH with the leaked (pre-rotation) password answers WRONGPASS, the current one is
    accepted, and Redis's default user holds exactly one password: the current one."""
    cache = _cache(ctx.stack)
    leaked = ctx.part(CacheLeak).password or ctx.part(CacheRotation).old
    if leaked is None:
        raise CheckFailed("no leaked or rotated-out redis password recorded")
    try:
        cache.connect(leaked).close()
    except RespError as exc:
        if not str(exc).startswith("WRONGPASS"):
            raise CheckFailed(f"unexpected answer to the old password: {str(exc)[:80]}") from exc
    else:
        raise CheckFailed("the old redis password is still accepted")
    user = cache.call("ACL", "GETUSER", "default")
    fields = dict(zip(user[::2], user[1::2], strict=True))
    hashes = list(fields.get("passwords") or [])
    current = _digest(ctx.stack.secrets[SERVER_SECRET])
    if hashes != [current]:
        raise CheckFailed(
            f"redis's default user holds {len(hashes)} passwords, "
            f"{'including' if current in hashes else 'without'} the current one"
        )
    return "old redis password: WRONGPASS; the default user holds only the current password"


@CHECKS(
    "cache-attacker-session-gone",
    title="The attacker's Redis session is gone",
    needs=("cache",),
)
def cache_attacker_session_gone(ctx: DrillContext) -> str:
    """The connection the attacker opened with the leaked password is no longer connected."""
    leak = ctx.part(CacheLeak)
    if leak.client_id is None:
        raise CheckFailed("no attacker redis session was recorded")
    ids = {int(c["id"]) for c in _cache(ctx.stack).clients()}
    if leak.client_id in ids:
        raise CheckFailed(f"the attacker's redis session (client id {leak.client_id}) is connected")
    return f"attacker redis session (client id {leak.client_id}) is gone"
