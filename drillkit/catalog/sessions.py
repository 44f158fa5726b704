"""Database sessions: lock holders and blockers, connection exhaustion."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from drillkit.catalog._common import _close_all, _superuser, _table
from drillkit.catalog.credentials import LEAK_APP_NAME
from drillkit.core.context import DrillContext
from drillkit.core.registry import CHECKS, FAULTS, RECOVERY, Duration
from drillkit.errors import CheckFailed, EnvironmentBroken, StepFailed
from drillkit.wait import wait_for

LOCK_HOLDER_APP_NAME = "drill-lock-holder"

LOCK_MODES = (
    "ACCESS SHARE",
    "ROW SHARE",
    "ROW EXCLUSIVE",
    "SHARE UPDATE EXCLUSIVE",
    "SHARE",
    "SHARE ROW EXCLUSIVE",
    "EXCLUSIVE",
    "ACCESS EXCLUSIVE",
)


@dataclass
class LockIncident:
    """The session hold-table-lock opened, and the blockers find-blockers identified."""

    holder_pid: int | None = None
    blocker_pids: list[int] = field(default_factory=list)


@FAULTS("hold-table-lock")
def hold_table_lock(
    ctx: DrillContext,
    table: str = "orders",
    mode: str = "ACCESS EXCLUSIVE",
    max_hold: Duration = Duration(60.0),
) -> str:
    """A client opens a transaction, takes `LOCK TABLE <table> IN <mode> MODE` and holds it (a
    forgotten migration or an interactive session left open). Every statement on the table queues
    behind it; the app answers 503 after its statement timeout. Safety net: the session is ended
    by the server after `max_hold` idle in its transaction (idle_in_transaction_session_timeout),
    so a runbook that never finds the blocker cannot hang the drill's own verification forever."""
    mode = mode.upper()
    if mode not in LOCK_MODES:
        raise StepFailed("hold-table-lock", f"unknown lock mode {mode!r} (one of {LOCK_MODES})")
    conn = ctx.stack.connect(ctx.primary)
    ctx.cleanups.append(lambda: _close_all([conn]))
    conn.execute(f"SET application_name = '{LOCK_HOLDER_APP_NAME}'")
    conn.execute(f"SET idle_in_transaction_session_timeout = {int(max_hold * 1000)}")
    conn.execute("SET lock_timeout = 10000")
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
    conn.autocommit = False
    conn.execute(
        sql.SQL("LOCK TABLE {} IN " + mode + " MODE").format(sql.Identifier(table))  # type: ignore[arg-type]
    )
    ctx.part(LockIncident).holder_pid = int(pid)
    ctx.figure("lock_holder_pid", int(pid))
    return f"session pid {pid} holds {mode} on {table} in an open transaction"


def root_blockers(waiting: Mapping[int, Iterable[int]]) -> list[int]:
    """The sessions at the head of the lock queues: blocking someone and not waiting themselves.
    `waiting` maps each waiting pid to the pids blocking it (pg_blocking_pids). In a cycle (which
    the deadlock detector breaks by itself) every blocker is returned."""
    blockers = {b for bs in waiting.values() for b in bs}
    roots = sorted(b for b in blockers if b not in waiting)
    return roots or sorted(blockers)


@RECOVERY("find-blockers")
def find_blockers(ctx: DrillContext, timeout: Duration = Duration(10.0)) -> str:
    """Seed 003's investigation queries: pg_stat_activity, `pg_locks WHERE NOT granted` and
    pg_blocking_pids(). Records the waiting sessions and the sessions at the head of the queue
    (the blockers to terminate) as evidence."""
    found: dict[str, Any] = {}

    def look() -> bool:
        with ctx.stack.connect(ctx.primary) as conn:
            waiting = conn.execute(
                "SELECT pid, pg_blocking_pids(pid), usename, application_name, state,"
                " wait_event_type, round(extract(epoch from now() - query_start)::numeric, 2),"
                " left(query, 100)"
                " FROM pg_stat_activity WHERE cardinality(pg_blocking_pids(pid)) > 0 ORDER BY pid"
            ).fetchall()
            if not waiting:
                return False
            roots = root_blockers({int(r[0]): [int(b) for b in r[1]] for r in waiting})
            found["waiting"] = waiting
            found["roots"] = roots
            found["blockers"] = conn.execute(
                "SELECT pid, usename, application_name, client_addr::text, state, xact_start,"
                " round(extract(epoch from now() - xact_start)::numeric, 2), left(query, 100)"
                " FROM pg_stat_activity WHERE pid = ANY(%s) ORDER BY pid",
                (roots,),
            ).fetchall()
            found["locks"] = conn.execute(
                "SELECT l.pid, l.locktype, l.relation::regclass::text, l.mode, l.granted"
                " FROM pg_locks l WHERE NOT l.granted"
                " OR l.pid = ANY(%s) AND l.locktype = 'relation' ORDER BY l.granted, l.pid",
                (roots,),
            ).fetchall()
        return True

    try:
        wait_for(look, what="a session waiting on a lock", timeout_s=timeout, interval_s=0.2)
    except EnvironmentBroken as exc:
        raise StepFailed("find-blockers", f"no session waits on a lock: {exc}") from exc
    ctx.part(LockIncident).blocker_pids = found["roots"]
    ctx.figure("lock_waiters", len(found["waiting"]))
    ctx.figure("blocker_pids", found["roots"])
    ctx.evidence(
        "sessions waiting on a lock (pg_stat_activity, pg_blocking_pids)",
        _table(
            found["waiting"],
            ("pid", "blocked_by", "user", "application", "state", "wait", "waiting_s", "query"),
        ),
    )
    ctx.evidence(
        "blocking sessions (head of the lock queue)",
        _table(
            found["blockers"],
            ("pid", "user", "application", "client", "state", "xact_start", "xact_s", "query"),
        ),
    )
    ctx.evidence(
        "pg_locks: not granted, and the blockers' relation locks",
        _table(found["locks"], ("pid", "locktype", "relation", "mode", "granted")),
    )
    desc = ", ".join(
        f"pid {r[0]} ({r[2]}, {r[4]}, {r[6]} s in transaction)" for r in found["blockers"]
    )
    return f"{len(found['waiting'])} sessions wait on a lock; blocked by {desc}"


@RECOVERY("terminate-blockers")
def terminate_blockers(ctx: DrillContext, timeout: Duration = Duration(10.0)) -> str:
    """pg_terminate_backend() of exactly the blocking sessions find-blockers identified (not of
    everything), then wait until they are gone."""
    incident = ctx.part(LockIncident)
    pids = [int(p) for p in incident.blocker_pids]
    if not pids:
        raise StepFailed("terminate-blockers", "no blocking session was identified (find-blockers)")
    with ctx.stack.connect(ctx.primary) as conn:
        rows = conn.execute(
            "SELECT pid, application_name, pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE pid = ANY(%s) AND pid <> pg_backend_pid()",
            (pids,),
        ).fetchall()

    def gone() -> bool:
        with ctx.stack.connect(ctx.primary) as conn:
            left = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
            ).fetchone()
        return left is not None and left[0] == 0

    if not any(r[2] for r in rows):
        raise StepFailed(
            "terminate-blockers", f"none of the blocking sessions {pids} is connected any more"
        )
    wait_for(gone, what=f"sessions {pids} to end", timeout_s=timeout, interval_s=0.1)
    ctx.figure("terminated_pids", [int(r[0]) for r in rows if r[2]])
    holder = incident.holder_pid
    if holder is not None:
        ctx.figure("lock_holder_terminated", int(holder) in pids)
    return f"terminated {[(r[0], r[1]) for r in rows if r[2]]}"


@RECOVERY("terminate-idle-sessions")
def terminate_idle_sessions(
    ctx: DrillContext, role: str = "app", idle_for: Duration = Duration(0.0)
) -> str:
    """Seed 002's "kill all connections", narrowed: pg_terminate_backend() of every session of
    `role` that is idle (state = 'idle', not in a transaction), was opened before this step began,
    and has been idle for at least `idle_for`."""
    cutoff = time.time()
    with _superuser(ctx) as conn:
        rows = conn.execute(
            "SELECT pid, application_name, pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE usename = %s AND state = 'idle' AND backend_start < to_timestamp(%s)"
            " AND state_change <= now() - make_interval(secs => %s) AND pid <> pg_backend_pid()",
            (role, cutoff, float(idle_for)),
        ).fetchall()
    done = [r for r in rows if r[2]]
    ctx.figure("terminated_idle_sessions", len(done))
    if not done:
        raise StepFailed(
            "terminate-idle-sessions", f"no idle session of {role} to terminate (none was found)"
        )
    names = sorted({str(r[1]) for r in done})
    return f"terminated {len(done)} idle sessions of {role} (applications: {names})"


@CHECKS("blockers-gone", title="The blocking sessions are gone and no lock request waits")
def blockers_gone(ctx: DrillContext) -> str:
    """The blocking sessions are gone and no session waits on a lock any more."""
    incident = ctx.part(LockIncident)
    pids = [int(p) for p in incident.blocker_pids]
    holder = incident.holder_pid
    if holder is not None:
        pids.append(int(holder))
    with ctx.stack.connect(ctx.primary) as conn:
        alive = conn.execute(
            "SELECT pid, application_name, state FROM pg_stat_activity WHERE pid = ANY(%s)",
            (pids,),
        ).fetchall()
        waiting = conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()
    if alive:
        raise CheckFailed(f"blocking sessions still connected: {alive}")
    if waiting and waiting[0]:
        raise CheckFailed(f"{waiting[0]} lock requests still not granted")
    return f"blockers {sorted(set(pids))} gone; no lock request waiting"


def _open_until_refused(
    ctx: DrillContext, role: str, password: str, conns: list[psycopg.Connection[Any]], limit: int
) -> str | None:
    """Open sessions as `role` until the server refuses one; the refusal's message (or None when
    `limit` sessions were opened without a refusal)."""
    while len(conns) < limit:
        try:
            conn = ctx.stack.connect(ctx.primary, user=role, password=password)
        except psycopg.OperationalError as exc:
            return str(exc).strip()
        conns.append(conn)
        conn.execute(f"SET application_name = '{LEAK_APP_NAME}'")
    return None


def is_slot_refusal(message: str) -> bool:
    """True for PostgreSQL's "no connection slot left" refusals (SQLSTATE 53300)."""
    return "too many clients" in message or "connection slots are reserved" in message


@FAULTS("exhaust-connections")
def exhaust_connections(
    ctx: DrillContext, role: str = "app", limit: int = 200, evict_app: bool = True
) -> str:
    """A runaway client with the app's credentials (a leaking worker) opens sessions until the
    server refuses with "too many clients" and holds them idle. With `evict_app`, the app's own
    sessions are recycled meanwhile (as by an app restart; the app is frozen for that instant so
    it cannot win the freed slots back): its pool then finds no free slot."""
    password = ctx.stack.secrets["app_db_password"]
    conns: list[psycopg.Connection[Any]] = []
    ctx.cleanups.append(lambda: _close_all(conns))
    app = ctx.stack.container("app")
    if evict_app:
        app.pause()
    try:
        refusal = _open_until_refused(ctx, role, password, conns, limit)
        evicted = 0
        if evict_app:
            with ctx.stack.connect(ctx.primary) as su:
                evicted = len(
                    su.execute(
                        "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE application_name = 'drillkit-app'"
                    ).fetchall()
                )

                def app_gone() -> bool:
                    row = su.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE application_name = 'drillkit-app'"
                    ).fetchone()
                    return row is not None and row[0] == 0

                wait_for(app_gone, what="the app's sessions to end", timeout_s=10, interval_s=0.05)
            refusal = _open_until_refused(ctx, role, password, conns, limit)
    finally:
        if evict_app:
            with contextlib.suppress(Exception):
                app.unpause()
    if refusal is None:
        raise StepFailed(
            "exhaust-connections", f"{len(conns)} sessions opened and the server still accepts more"
        )
    if not is_slot_refusal(refusal):
        raise StepFailed("exhaust-connections", f"unexpected refusal: {refusal}")
    ctx.figure("leaked_sessions", len(conns))
    ctx.figure("app_sessions_evicted", evicted)
    ctx.evidence("connection refusal seen by the leaking client", refusal)
    return f"{len(conns)} idle sessions of {role} held; the server refuses more: {refusal}"


@RECOVERY("check-connections")
def check_connections(ctx: DrillContext) -> str:
    """Seed 003's database analysis query: sessions by user, application and state, against
    max_connections (run as the superuser, in a reserved slot)."""
    with _superuser(ctx) as conn:
        rows = conn.execute(
            "SELECT usename, application_name, state, count(*) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' GROUP BY 1, 2, 3 ORDER BY 4 DESC"
        ).fetchall()
        limits = conn.execute(
            "SELECT current_setting('max_connections')::int,"
            " current_setting('superuser_reserved_connections')::int"
        ).fetchone()
    total = sum(int(r[3]) for r in rows)
    assert limits is not None
    report = (
        f"{total} client sessions; max_connections {limits[0]}, "
        f"superuser_reserved_connections {limits[1]}\n"
        + _table(rows, ("user", "application", "state", "count"))
    )
    ctx.evidence("sessions by user, application and state", report)
    ctx.figure("client_sessions_during_incident", total)
    return report


@CHECKS(
    "connection-count",
    title="Connection slots back to normal (no leaked session left)",
)
def connection_count(ctx: DrillContext, max_used_fraction: float = 0.8) -> str:
    """Client sessions use at most `max_used_fraction` of the slots ordinary roles may take, and
    none of the leaking client's sessions is left."""
    with _superuser(ctx) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE application_name = %s),"
            " current_setting('max_connections')::int"
            " - current_setting('superuser_reserved_connections')::int"
            " FROM pg_stat_activity WHERE backend_type = 'client backend'",
            (LEAK_APP_NAME,),
        ).fetchone()
    assert row is not None
    used, leaked, slots = int(row[0]), int(row[1]), int(row[2])
    detail = f"{used} of {slots} connection slots in use, {leaked} leaked sessions left"
    if leaked or used > max_used_fraction * slots:
        raise CheckFailed(detail + f" (limit {max_used_fraction:.0%} and no leaked session)")
    return detail
