"""Fault and recovery actions and checks for the rest of the runbooks (seed 000-004): complete
outage, lock incidents, connection exhaustion, force logout, replica lag, pre-incident restore.

Same rules as drillkit/actions.py: every action acts only through the Stack (which refuses anything
this run did not create); a connection a fault holds open is closed by a ctx.cleanups entry,
whatever happens to the drill. What a step hands to later steps and checks is a dataclass below,
one instance per drill (`ctx.part(...)`).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from drillkit.catalog.actions import (
    RestorePoint,
    lag_text,
    measure_lag,
    promote_replica,
)
from drillkit.catalog.actions import (
    lag_seconds as lag_seconds,  # re-exported: the lag query moved to actions.py
)
from drillkit.core.context import DrillContext
from drillkit.core.registry import CHECKS, FAULTS, RECOVERY, Duration, Service
from drillkit.errors import CheckFailed, EnvironmentBroken, StepFailed
from drillkit.wait import wait_for

LEAK_APP_NAME = "drill-leak"
LOCK_HOLDER_APP_NAME = "drill-lock-holder"
ATTACKER_APP_NAME = "attacker"
ATTACKER_ITEM = "attacker"
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


@dataclass
class IssuedTokens:
    """(email, token) of each session issue-tokens opened before the incident."""

    tokens: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Breach:
    """What breach-tamper did: the key prefix of the rows it inserted, and the digest of each
    row it altered as it was before."""

    prefix: str | None = None
    originals: dict[str, str] = field(default_factory=dict)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _close_all(conns: Iterable[psycopg.Connection[Any]]) -> None:
    for conn in list(conns):
        with contextlib.suppress(Exception):
            conn.close()


def _table(rows: Iterable[Iterable[Any]], header: Iterable[str]) -> str:
    lines = ["\t".join(header)]
    lines += ["\t".join("" if v is None else str(v) for v in row) for row in rows]
    return "\n".join(lines)


def _superuser(ctx: DrillContext, timeout_s: float = 20.0) -> psycopg.Connection[Any]:
    """A superuser session on the primary, retried: during a connection storm the clients being
    refused still hold a process slot while they authenticate, so even the slots reserved for
    superusers are taken now and then ("sorry, too many clients already"); an operator retries."""
    return wait_for(
        lambda: ctx.stack.connect(ctx.primary),
        what=f"a superuser session on {ctx.primary}",
        timeout_s=timeout_s,
        interval_s=0.1,
        transient=(psycopg.OperationalError,),
    )


# ---------------------------------------------------------------------------------------------
# complete outage (seed 000 procedure 1, seed 002 "System Outage", seed 003 P0)
# ---------------------------------------------------------------------------------------------


@RECOVERY("check-stack-status")
def check_stack_status(ctx: DrillContext) -> str:
    """The runbook's `docker compose ps`: every service's container state (never fails)."""
    lines = []
    for service in ctx.stack.services:
        c = ctx.stack.container(service)
        state = c.attrs.get("State", {})
        lines.append(f"{service}: {c.status} (exit code {state.get('ExitCode')})")
    report = "\n".join(lines)
    ctx.evidence("service status at the start of recovery", report)
    return report


# ---------------------------------------------------------------------------------------------
# lock incident (seed 003 "Database Incidents": pg_stat_activity, pg_locks, terminate)
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# connection exhaustion (seed 002 "kill all connections", seed 003 connection counts)
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# force logout (seed 003 security incident: "force logout all users")
# ---------------------------------------------------------------------------------------------


@FAULTS("issue-tokens", needs=("reference-app",))
def issue_tokens(ctx: DrillContext, users: int = 5) -> str:
    """Sessions to revoke: `users` users (the probe user first) log in through the API; each token
    is checked to be accepted now. They stand for sessions an attacker may hold."""
    emails = [
        r[0]
        for r in ctx.stack.sql(ctx.primary, f"SELECT email FROM users ORDER BY id LIMIT {users}")
    ]
    tokens: list[tuple[str, str]] = []
    for email in emails:
        client = ctx.app_client(email)
        token = client.login()
        r = client.me(token)
        if r.status_code != 200:
            raise StepFailed("issue-tokens", f"a fresh token of {email} answers {r.status_code}")
        tokens.append((email, token))
    ctx.part(IssuedTokens).tokens = tokens
    ctx.figure("issued_tokens", len(tokens))
    ctx.evidence(
        "sessions issued before the incident (token SHA-256 prefixes)",
        "\n".join(f"{e}\t{_sha256(t)[:16]}" for e, t in tokens),
    )
    return f"{len(tokens)} users logged in; every token is accepted"


@CHECKS(
    "issued-tokens-rejected",
    title="Every token issued before the incident is rejected",
    needs=("reference-app",),
)
def issued_tokens_rejected(ctx: DrillContext) -> str:
    """Every token issued before the incident now answers 401 (all users were logged out)."""
    tokens = ctx.part(IssuedTokens).tokens
    if not tokens:
        raise CheckFailed("no tokens were recorded before the incident")
    accepted = []
    for email, token in tokens:
        r = ctx.app_client(email).me(token)
        if r.status_code != 401:
            accepted.append(f"{email}: {r.status_code}")
    if accepted:
        raise CheckFailed(f"{len(accepted)} of {len(tokens)} old tokens still work: {accepted}")
    return f"all {len(tokens)} tokens issued before the incident answer 401"


# ---------------------------------------------------------------------------------------------
# replication lag (seed 001 "replication lag"): lag figures and the promotion guard
# ---------------------------------------------------------------------------------------------


@FAULTS("pause-replay", needs=("replica",))
def pause_replay(ctx: DrillContext, replica: Service = Service("replica")) -> str:
    """`SELECT pg_wal_replay_pause()` on the standby: it keeps receiving WAL but applies none, so
    its data falls further behind the primary with every write (a stuck apply)."""
    ctx.stack.sql(replica, "SELECT pg_wal_replay_pause()")

    def paused() -> bool:
        return ctx.stack.sql(replica, "SELECT pg_get_wal_replay_pause_state()")[0][0] == "paused"

    wait_for(paused, what=f"replay on {replica} to pause", timeout_s=10, interval_s=0.05)

    def resume() -> None:
        with contextlib.suppress(Exception):
            ctx.stack.sql(replica, "SELECT pg_wal_replay_resume()")

    ctx.cleanups.append(resume)
    return f"WAL replay paused on {replica}"


@RECOVERY("check-replica-lag", needs=("replica",))
def check_replica_lag(
    ctx: DrillContext,
    replica: Service = Service("replica"),
    alert_after: Duration = Duration(0.0),
    timeout: Duration = Duration(30.0),
) -> str:
    """Record the standby's lag: bytes of WAL not replayed (and not received) and seconds
    (now() - pg_last_xact_replay_timestamp()). `alert_after`: the lag alert's threshold; the
    operator looks once the lag has reached it (the step waits for that, up to `timeout`, then
    records whatever it is). Never fails: it is the runbook's observation."""
    lag = measure_lag(ctx, replica)
    if alert_after > 0:
        with contextlib.suppress(EnvironmentBroken):
            wait_for(
                lambda: measure_lag(ctx, replica)["replay_lag_s"] >= alert_after,
                what=f"the replay lag of {replica} to reach {alert_after:g} s",
                timeout_s=timeout,
                interval_s=0.1,
            )
        lag = measure_lag(ctx, replica)
    checks = ctx.result.extra.setdefault("replica_lag_checks", [])
    checks.append({k: v for k, v in lag.items() if k != "in_recovery"})
    ctx.figure("max_replica_lag_s", max(c["replay_lag_s"] for c in checks))
    ctx.figure("max_replica_lag_bytes", max(c["replay_lag_bytes"] for c in checks))
    return f"{replica}: {lag_text(lag)}"


@RECOVERY("resume-replay", needs=("replica",))
def resume_replay(ctx: DrillContext, replica: Service = Service("replica")) -> str:
    """`SELECT pg_wal_replay_resume()` on the standby."""
    ctx.stack.sql(replica, "SELECT pg_wal_replay_resume()")
    state = ctx.stack.sql(replica, "SELECT pg_get_wal_replay_pause_state()")[0][0]
    if state != "not paused":
        raise StepFailed("resume-replay", f"replay on {replica} is still {state}")
    return f"WAL replay resumed on {replica}"


def promotion_refusal(lag_s: float, lag_bytes: int, max_lag_s: float) -> str | None:
    """The guard's decision: a reason to refuse promotion, or None when the standby is close
    enough."""
    if lag_s <= max_lag_s:
        return None
    return (
        f"replay lag {lag_s:.2f} s ({lag_bytes} bytes of WAL not replayed) > max_lag "
        f"{max_lag_s:g} s: promoting now would lose those writes"
    )


@RECOVERY("promote-if-lag-below", needs=("replica",))
def promote_if_lag_below(
    ctx: DrillContext, max_lag: Duration, replica: Service = Service("replica")
) -> str:
    """The runbook's guard: promote the standby only if its replay lag is at most `max_lag`;
    otherwise refuse (the step fails with the numbers)."""
    lag = measure_lag(ctx, replica)
    ctx.figure("lag_at_promotion_decision", {k: v for k, v in lag.items() if k != "in_recovery"})
    refusal = promotion_refusal(lag["replay_lag_s"], lag["replay_lag_bytes"], max_lag)
    if refusal is not None:
        raise StepFailed("promote-if-lag-below", f"refusing to promote {replica}: {refusal}")
    out = promote_replica(ctx, replica)
    return f"{lag_text(lag)} within {max_lag:g} s: {out}"


@CHECKS(
    "replica-lag-within",
    title="The replica replays, within its lag limit",
    needs=("replica",),
)
def replica_lag_within(
    ctx: DrillContext, max_lag: Duration = Duration(1.0), replica: Service = Service("replica")
) -> str:
    """The standby replays (not paused) and its replay lag is at most `max_lag` seconds."""
    lag = measure_lag(ctx, replica)
    if not lag["in_recovery"]:
        raise CheckFailed(f"{replica} is not a standby any more (it was promoted)")
    if lag["replay_state"] != "not paused" or lag["replay_lag_s"] > max_lag:
        raise CheckFailed(f"{replica}: {lag_text(lag)} (limit {max_lag:g} s)")
    return f"{replica}: {lag_text(lag)}"


# ---------------------------------------------------------------------------------------------
# breach and pre-incident restore (seed 000 procedure 2, seed 002 "Security Breach")
# ---------------------------------------------------------------------------------------------


def _order_digest(payload: str, amount_cents: int) -> str:
    return _sha256(f"{amount_cents}\x00{payload}")


@FAULTS("breach-tamper")
def breach_tamper(ctx: DrillContext, inserted: int = 20, tampered: int = 10) -> str:
    """An attacker with the app's database credentials writes rows (orders for item 'attacker')
    and tampers with existing ones (seed orders set to 0 cents), in one transaction whose id and
    start time are recorded: the pre-incident restore point (as destructive-statement does)."""
    keys_rows = ctx.stack.sql(
        ctx.primary,
        "SELECT idempotency_key, payload, amount_cents FROM orders"
        f" WHERE idempotency_key LIKE 'seed-%' ORDER BY id OFFSET 100 LIMIT {int(tampered)}",
    )
    originals = {k: _order_digest(p, a) for k, p, a in keys_rows}
    prefix = f"attacker-{ctx.stack.run_id}-"
    with ctx.stack.connect(
        ctx.primary, user="app", password=ctx.stack.secrets["app_db_password"]
    ) as conn:
        conn.execute(f"SET application_name = '{ATTACKER_APP_NAME}'")
        conn.autocommit = False
        with conn.cursor() as cur:
            cur.execute("SELECT txid_current(), extract(epoch from clock_timestamp())::float8")
            xid, wall = cur.fetchone()  # type: ignore[misc]
            cur.execute(
                "INSERT INTO orders (user_id, idempotency_key, item, amount_cents, payload)"
                " SELECT 3, %s || g, %s, 1, 'exfiltration marker' FROM generate_series(1, %s) g",
                (prefix, ATTACKER_ITEM, int(inserted)),
            )
            n_inserted = cur.rowcount
            cur.execute(
                "UPDATE orders SET amount_cents = 0, payload = 'tampered by attacker'"
                " WHERE idempotency_key = ANY(%s)",
                (list(originals),),
            )
            n_tampered = cur.rowcount
        conn.commit()
    point = ctx.part(RestorePoint)
    point.xid, point.wall = int(xid), float(wall)
    breach = ctx.part(Breach)
    breach.prefix, breach.originals = prefix, originals
    ctx.figure("attacker_rows", n_inserted)
    ctx.figure("tampered_rows", n_tampered)
    ctx.evidence(
        "breach (ground truth)",
        f"transaction {xid} at {time.strftime('%H:%M:%S', time.gmtime(wall))} UTC: "
        f"{n_inserted} orders inserted ({prefix}*), {n_tampered} seed orders altered: "
        + ", ".join(sorted(originals)),
    )
    return f"attacker transaction {xid}: inserted {n_inserted} rows, tampered with {n_tampered}"


def sql_ident(name: str) -> str:
    """A table name quoted for SQL text (identifiers only: no injection through a scenario)."""
    return '"' + name.replace('"', '""') + '"'


@RECOVERY("preserve-forensics")
def preserve_forensics(ctx: DrillContext, table: str = "orders") -> str:
    """Seed 000 procedure 2 step 3 / seed 002 'Preserve Evidence': every service's log with its
    SHA-256, and a pg_dump of `table` (the database as the attacker left it), into the evidence."""
    parts = []
    for service in ctx.stack.services:
        log = ctx.stack.logs(service, tail=2000)
        ctx.evidence(f"{service} log (preserved)", log)
        ctx.evidence(f"{service} log (preserved) sha256", _sha256(log))
        parts.append(f"{service} log {len(log)} bytes")
    cmd = f"pg_dump -h /run/postgresql -U postgres -d app --data-only --table={table}"
    res = ctx.stack.exec(ctx.primary, cmd, timeout_s=120)
    if res.exit_code != 0:
        raise StepFailed(
            "preserve-forensics", f"pg_dump exited {res.exit_code}: {res.output[-400:]}"
        )
    ctx.evidence(f"pg_dump of {table} (preserved)", res.output)
    ctx.evidence(f"pg_dump of {table} (preserved) sha256", _sha256(res.output))
    ctx.figure("forensic_dump_bytes", len(res.output))
    rows = ctx.stack.sql(
        ctx.primary,
        f"SELECT count(*) FILTER (WHERE item = '{ATTACKER_ITEM}') FROM {sql_ident(table)}",
    )
    parts.append(f"pg_dump of {table} {len(res.output)} bytes ({rows[0][0]} attacker rows seen)")
    return "; ".join(parts)


@CHECKS("attacker-rows-gone", title="No row the attacker inserted is left")
def attacker_rows_gone(ctx: DrillContext) -> str:
    """No row the attacker inserted is left."""
    prefix = ctx.part(Breach).prefix
    if not prefix:
        raise CheckFailed("no breach was recorded")
    n = ctx.stack.sql(
        ctx.primary,
        f"SELECT count(*) FROM orders WHERE item = 'attacker' OR idempotency_key LIKE '{prefix}%'",
    )[0][0]
    if n:
        raise CheckFailed(f"{n} rows inserted by the attacker are still in orders")
    return "no attacker row left in orders"


@CHECKS(
    "tampered-rows-restored",
    title="Every row the attacker altered has its pre-incident content",
)
def tampered_rows_restored(ctx: DrillContext) -> str:
    """Every row the attacker altered has its pre-incident content again."""
    originals = ctx.part(Breach).originals
    if not originals:
        raise CheckFailed("no tampered rows were recorded")
    with ctx.stack.connect(ctx.primary) as conn:
        rows = conn.execute(
            "SELECT idempotency_key, payload, amount_cents FROM orders"
            " WHERE idempotency_key = ANY(%s)",
            (list(originals),),
        ).fetchall()
    now = {k: _order_digest(p, a) for k, p, a in rows}
    bad = sorted(k for k, digest in originals.items() if now.get(k) != digest)
    if bad:
        raise CheckFailed(f"{len(bad)} of {len(originals)} tampered rows not restored: {bad[:5]}")
    return f"all {len(originals)} tampered rows have their pre-incident content"
