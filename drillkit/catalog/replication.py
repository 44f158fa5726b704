"""Replication and failover: promote, fence, re-point the app, rebuild a standby, replica lag."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from drillkit.core.context import DrillContext
from drillkit.core.registry import CHECKS, FAULTS, RECOVERY, Duration, Service
from drillkit.errors import CheckFailed, EnvironmentBroken, StepFailed
from drillkit.wait import wait_for


@dataclass
class Fencing:
    """The old primary `fence` made a standby: it is not expected to serve."""

    service: str | None = None


@RECOVERY("promote-replica", needs=("replica",))
def promote_replica(ctx: DrillContext, service: Service = Service("replica")) -> str:
    """pg_promote() on the standby; it becomes the writable primary."""
    rows = ctx.stack.sql(service, "SELECT pg_promote(wait => true, wait_seconds => 30)")
    if not rows or rows[0][0] is not True:
        raise StepFailed("promote-replica", f"pg_promote on {service} returned {rows}")
    ctx.stack.wait_pg(service, 30, writable=True)
    ctx.primary = service
    return f"{service} promoted"


@RECOVERY("await-failover", needs=("replica",))
def await_failover(
    ctx: DrillContext, away_from: str = "", timeout: Duration = Duration(30.0)
) -> str:
    """Wait for the stack's own failover (repmgrd, Patroni...): until exactly one database is
    writable (`stack.current_primary()`), other than `away_from` when given; that service becomes
    the drill's primary. Fails when none (or more than one) is writable by the timeout: the
    automatic failover did not happen."""
    stack: Any = ctx.stack
    if not callable(getattr(stack, "current_primary", None)):
        raise StepFailed("await-failover", "this stack has no way to tell its current primary")

    last = ["no answer yet"]

    def elected() -> str | None:
        try:
            primary = str(stack.current_primary())
        except EnvironmentBroken as exc:  # none or two writable: not yet
            last[0] = str(exc)
            return None
        last[0] = f"{primary} is still the primary"
        return primary if primary != away_from else None

    try:
        primary = wait_for(
            elected, what="one writable primary", timeout_s=float(timeout), interval_s=0.2
        )
    except EnvironmentBroken as exc:
        raise StepFailed("await-failover", f"{exc.args[0].splitlines()[0]}: {last[0]}") from exc
    before, ctx.primary = ctx.primary, primary
    return f"{primary} is the primary" + (f" (was {before})" if before != primary else "")


@RECOVERY("point-app", needs=("reference-app",))
def point_app(ctx: DrillContext, hosts: list[str]) -> str:
    """Rewrite the app's database host list and reload it (SIGHUP)."""
    ctx.stack.set_db_hosts(hosts)
    ctx.stack.reload_app()
    return f"app pointed at {', '.join(hosts)}"


@RECOVERY("fence", needs=("replica",))
def fence(
    ctx: DrillContext, service: Service = Service("primary"), follow: Service = Service("replica")
) -> str:
    """Fence the old primary: make it a standby (standby.signal in its data directory), so that if
    it ever comes back it is read-only and cannot take writes."""
    c = ctx.stack.container(service)
    if c.status == "running":
        # STONITH: a graceful stop of an isolated primary waits on its partitioned standby
        c.kill(signal="SIGKILL")
        c.wait(timeout=10)
    script = (
        "touch /pgdata/standby.signal && "
        f"echo \"primary_conninfo = 'host={follow} user=replicator application_name={service}'\" "
        ">> /pgdata/postgresql.auto.conf"
    )
    out = ctx.stack.run_tool(service, ["sh", "-c", script])
    ctx.part(Fencing).service = service
    return f"{service} fenced (standby.signal written) {out}".strip()


@RECOVERY("rebuild-replica", needs=("replica",))
def rebuild_replica(ctx: DrillContext, service: Service = Service("replica")) -> str:
    """Discard the standby's data and re-clone it from the (restored) primary."""
    ctx.stack.rebuild_replica(service)
    return f"{service} re-cloned and streaming"


@RECOVERY("watch-replication-lag", needs=("replica",))
def watch_replication_lag(
    ctx: DrillContext, duration: Duration, replica: Service = Service("replica")
) -> str:
    """Sample the replica's lag (bytes of WAL behind the primary) for `duration`; keep the maximum."""
    end = ctx.clock() + duration
    max_lag = 0
    while ctx.clock() < end:
        max_lag = max(max_lag, measure_lag(ctx, replica)["replay_lag_bytes"])
        time.sleep(0.1)
    ctx.figure(
        "max_replication_lag_bytes",
        max(max_lag, ctx.result.extra.get("max_replication_lag_bytes", 0)),
    )
    return f"max lag {max_lag} bytes"


def lag_seconds(behind_bytes: int, since_last_replay_s: float | None) -> float:
    """Replay lag in seconds: 0 when nothing is left to replay (an idle, caught-up standby's last
    replayed transaction can be old), else the age of the last replayed transaction."""
    if behind_bytes <= 0:
        return 0.0
    return max(0.0, since_last_replay_s or 0.0)


def measure_lag(ctx: DrillContext, replica: str) -> dict[str, Any]:
    """The standby's lag behind the current primary, in one query: WAL bytes not replayed and
    not received, seconds since the last replayed transaction, the replay state."""
    primary_lsn = ctx.stack.sql(ctx.primary, "SELECT pg_current_wal_lsn()::text")[0][0]
    row = ctx.stack.sql(
        replica,
        f"SELECT pg_wal_lsn_diff('{primary_lsn}', coalesce(pg_last_wal_replay_lsn(), '0/0'))::bigint,"
        f" pg_wal_lsn_diff('{primary_lsn}', coalesce(pg_last_wal_receive_lsn(), '0/0'))::bigint,"
        " extract(epoch from now() - pg_last_xact_replay_timestamp())::float8,"
        " CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() ELSE 'promoted' END,"
        " pg_is_in_recovery()",
    )[0]
    replay_bytes = max(0, int(row[0]))
    return {
        "primary_lsn": primary_lsn,
        "replay_lag_bytes": replay_bytes,
        "receive_lag_bytes": max(0, int(row[1])),
        "replay_lag_s": round(lag_seconds(replay_bytes, row[2]), 3),
        "replay_state": row[3],
        "in_recovery": bool(row[4]),
    }


def lag_text(lag: Mapping[str, Any]) -> str:
    return (
        f"replay lag {lag['replay_lag_s']:.2f} s / {lag['replay_lag_bytes']} bytes "
        f"(received WAL behind by {lag['receive_lag_bytes']} bytes; replay {lag['replay_state']})"
    )


@RECOVERY("wait-replica-caught-up", needs=("replica",))
def wait_replica_caught_up(
    ctx: DrillContext, replica: Service = Service("replica"), timeout: Duration = Duration(60.0)
) -> str:
    """Wait until the replica has replayed everything the primary had written when the step began."""
    target = ctx.stack.sql(ctx.primary, "SELECT pg_current_wal_lsn()::text")[0][0]

    def caught_up() -> bool:
        rows = ctx.stack.sql(replica, f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")
        return bool(rows[0][0])

    wait_for(caught_up, what=f"{replica} to replay up to {target}", timeout_s=timeout)
    return f"{replica} replayed past {target}"


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


@CHECKS(
    "old-primary-fenced",
    title="The old primary cannot take a write (fenced, no split brain)",
    needs=("replica",),
)
def old_primary_fenced(ctx: DrillContext, service: Service = Service("primary")) -> str:
    """Bring the old primary back and prove it cannot take a write: it either comes up read-only
    (a standby) or refuses to start at all (its history diverged from the new timeline)."""
    c = ctx.stack.container(service)
    if c.status != "running":
        c.start()
    try:
        ctx.stack.wait_pg(service, 60)
    except EnvironmentBroken as exc:
        c.reload()
        if c.status in ("exited", "dead"):
            fatal = [ln for ln in ctx.stack.logs(service, 30).splitlines() if "FATAL" in ln]
            return f"old primary refused to start: {fatal[-1].strip() if fatal else exc}"
        raise CheckFailed(f"old primary neither started nor stopped: {exc}") from exc
    try:
        with ctx.stack.connect(service) as conn:
            conn.execute("CREATE TABLE drillkit_fence_probe (x int)")
    except psycopg.Error as exc:
        if exc.sqlstate == "25006":
            return f"old primary came back read-only: {str(exc).strip()}"
        raise CheckFailed(f"unexpected error writing to the old primary: {exc}") from exc
    finally:
        c.kill(signal="SIGKILL")
    raise CheckFailed(f"the old primary ({service}) came back and ACCEPTED a write (split brain)")


@CHECKS("replica-caught-up", title="The replica has caught up with the primary", needs=("replica",))
def replica_caught_up(ctx: DrillContext, replica: Service = Service("replica")) -> str:
    """The replica replays everything the primary had written when the check began (30 s)."""
    return wait_replica_caught_up(ctx, replica, timeout=30.0)
