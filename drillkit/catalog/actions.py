"""Built-in fault and recovery actions: real faults on real processes, and the runbooks' steps.

Every action acts only through the Stack, which refuses containers without this run's label.
Runbook references: seed 000 (procedures 1-3), 002 (database failure, data corruption, breach),
003 (database incidents, force logout), 001 (resource exhaustion).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors
import psycopg
import requests

from drillkit.core.context import DrillContext
from drillkit.core.registry import FAULTS, RECOVERY, Duration, Service, optional_services
from drillkit.errors import EnvironmentBroken, StepFailed
from drillkit.stack.netns import nsenter
from drillkit.stack.services.payments import PROVIDERS
from drillkit.wait import wait_for

optional_services("proxy", "proxy")

# ---------------------------------------------------------------------------------------------
# what these steps hand to later steps and to checks (one instance per drill: ctx.part(...))
# ---------------------------------------------------------------------------------------------


@dataclass
class Fencing:
    """The old primary `fence` made a standby: it is not expected to serve."""

    service: str | None = None


@dataclass
class RestorePoint:
    """The destructive transaction (destructive-statement, breach-tamper): the point-in-time
    recovery target of restore-backup and the replay start of reconcile-from-audit."""

    xid: int | None = None
    wall: float | None = None
    """Its start, a Unix time."""


@dataclass
class Partitions:
    """The iptables rules of each partition (a, b), kept so healing removes exactly them."""

    rules: dict[tuple[str, str], list[tuple[str, list[str]]]] = field(default_factory=dict)


@dataclass
class CredentialLeak:
    """What leak-credentials gave the attacker: the database password, the session it opened
    with it and the token it forged with the leaked signing secret."""

    db_password: str | None = None
    attacker_pid: int | None = None
    attacker_token: str | None = None


@dataclass
class BreachResponse:
    """The breach runbook's own records: audit rows preserved, when the password was rotated."""

    audit_rows_before: int | None = None
    rotated_at_wall: float | None = None


@dataclass
class DiskBallast:
    """The file fill-disk wrote (free-disk deletes it)."""

    path: str | None = None


# ---------------------------------------------------------------------------------------------
# generic steps: a team's own runbook commands
# ---------------------------------------------------------------------------------------------


@FAULTS("service-exec")
@RECOVERY("service-exec")
def service_exec(
    ctx: DrillContext,
    service: Service,
    command: str,
    user: str = "root",
    expect_exit: int = 0,
    timeout: Duration = Duration(60.0),
) -> str:
    """Run a shell command inside a service; the step fails unless it exits with expect_exit."""
    res = ctx.stack.exec(service, command, user=user, timeout_s=timeout)
    if res.exit_code != expect_exit:
        raise StepFailed(
            "service-exec",
            f"`{command}` in {service} exited {res.exit_code} "
            f"(expected {expect_exit}): {res.output[-400:]}",
        )
    return res.output


@FAULTS("host-exec")
@RECOVERY("host-exec")
def host_exec(
    ctx: DrillContext, command: str, expect_exit: int = 0, timeout: Duration = Duration(60.0)
) -> str:
    """Run a shell command on the host (env DRILLKIT_RUN_ID, DRILLKIT_APP_URL are set)."""
    import subprocess

    env = {**os.environ, "DRILLKIT_RUN_ID": ctx.stack.run_id, "DRILLKIT_APP_URL": ctx.stack.app_url}
    try:
        proc = subprocess.run(
            ["sh", "-c", command], capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired as exc:
        raise StepFailed("host-exec", f"`{command}` overran {timeout:g} s") from exc
    if proc.returncode != expect_exit:
        raise StepFailed("host-exec", f"`{command}` exited {proc.returncode}: {proc.stderr[-400:]}")
    return proc.stdout


@FAULTS("hold")
@RECOVERY("hold")
def hold(ctx: DrillContext, duration: Duration) -> str:
    """Let the fault last (or let an operator observe) for a fixed time: a drill parameter, not a
    wait for a condition."""
    time.sleep(duration)
    return f"held {duration:g} s"


# ---------------------------------------------------------------------------------------------
# process faults
# ---------------------------------------------------------------------------------------------


@FAULTS("kill-postmaster")
def kill_postmaster(ctx: DrillContext, service: Service = Service("primary")) -> str:
    """SIGKILL the PostgreSQL postmaster (its container then exits, as a crashed database would)."""
    c = ctx.stack.container(service)
    res = ctx.stack.exec(service, "kill -KILL $(head -1 /pgdata/postmaster.pid)", timeout_s=10)
    # The outcome is the proof, not the exec's exit status: the postmaster's death stops the
    # container, which can take the exec'd shell with it before it reports (exit 137, no output).
    try:
        wait_for(
            lambda: (c.reload(), c.status != "running")[1], what=f"{service} to die", timeout_s=10
        )
    except EnvironmentBroken as exc:
        raise StepFailed(
            "kill-postmaster",
            f"{service} still running after the kill (exit "
            f"{res.exit_code}: {res.output.strip()[:300]})",
        ) from exc
    return f"postmaster of {service} killed with SIGKILL; container {c.status}"


@FAULTS("kill-container")
def kill_container(ctx: DrillContext, service: Service) -> str:
    """SIGKILL a service's whole container; it stays dead."""
    c = ctx.stack.container(service)
    c.kill(signal="SIGKILL")
    wait_for(lambda: (c.reload(), c.status != "running")[1], what=f"{service} to die", timeout_s=10)
    return f"container {c.name} killed"


@FAULTS("stop-services")
def stop_services(ctx: DrillContext, services: list[str]) -> str:
    """Stop several services at once (a complete outage)."""
    threads = [
        threading.Thread(target=lambda s=s: ctx.stack.container(s).kill("SIGKILL"))
        for s in services
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return f"killed {', '.join(services)}"


@FAULTS("pause-service")
def pause_service(ctx: DrillContext, service: Service, duration: Duration) -> str:
    """Freeze a service (SIGSTOP via the cgroup freezer) for exactly `duration`: an outage of known
    length, used to measure the harness's own clock accuracy."""
    c = ctx.stack.container(service)
    c.pause()

    def resume() -> None:
        with contextlib.suppress(docker.errors.APIError):
            c.unpause()

    _undo_after(ctx, duration, resume)
    return f"{service} paused for {duration:g} s"


def _undo_after(ctx: DrillContext, duration: float, undo: Callable[[], object]) -> None:
    """Undo a fault exactly `duration` after now, in the background, and record the true outage
    length (figure `true_outage_s`). Teardown ends the timer early if the drill stops first."""
    t_start = ctx.clock()
    done = threading.Event()

    def run() -> None:
        done.wait(max(0.0, duration - (ctx.clock() - t_start)))
        undo()
        ctx.figure("true_outage_s", ctx.clock() - t_start)

    timer = threading.Thread(target=run, daemon=True)
    timer.start()
    ctx.cleanups.append(lambda: (done.set(), timer.join()))


@FAULTS("block-port")
def block_port(ctx: DrillContext, service: Service, port: int, duration: Duration) -> str:
    """Refuse every TCP connection to a service's port (iptables REJECT with a reset, inside its
    namespace) for exactly `duration`. The service itself keeps running, so the outage ends
    sharply: the ground truth for the harness's own clock accuracy."""
    c = ctx.stack.container(service)
    rule = [
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        str(port),
        "-m",
        "comment",
        "--comment",
        f"drillkit:{ctx.stack.run_id}",
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ]
    proc = nsenter(c, "iptables", "-w", "-I", *rule)
    if proc.returncode != 0:
        raise EnvironmentBroken(f"iptables in {service}: {proc.stderr.strip()}")
    _undo_after(ctx, duration, lambda: nsenter(c, "iptables", "-w", "-D", *rule))
    return f"{service}:{port} refuses connections for {duration:g} s"


# ---------------------------------------------------------------------------------------------
# database recovery steps
# ---------------------------------------------------------------------------------------------


@RECOVERY("check-service-status")
def check_service_status(ctx: DrillContext, service: Service) -> str:
    """The runbook's first look: container state and pg_isready (never fails the step)."""
    c = ctx.stack.container(service)
    line = f"{service}: container {c.status}"
    if c.status == "running":
        res = ctx.stack.exec(service, "pg_isready -h /run/postgresql", timeout_s=5)
        line += f"; pg_isready: {res.output.strip()}"
    return line


@RECOVERY("restart-service")
def restart_service(ctx: DrillContext, service: Service) -> str:
    """Start (or restart) a service's container and wait until it serves again."""
    c = ctx.stack.container(service)
    if c.status == "running":
        c.restart(timeout=10)
    else:
        c.start()
    _wait_service(ctx, service)
    return f"{service} restarted"


def _wait_service(ctx: DrillContext, service: str, timeout_s: float = 60) -> None:
    if service == "app":
        ctx.stack.wait_app(timeout_s)
    elif service == "web":
        ctx.stack.wait_web(timeout_s)
    elif service in PROVIDERS:
        ctx.stack.wait_provider(service, timeout_s)
    else:
        ctx.stack.wait_pg(service, timeout_s)


@RECOVERY("restart-services")
def restart_services(ctx: DrillContext, order: list[str]) -> str:
    """Start services one after another in dependency order, each ready before the next."""
    for service in order:
        restart_service(ctx, Service(service))
    return f"restarted in order: {', '.join(order)}"


@RECOVERY("wait-app-healthy")
def wait_app_healthy(ctx: DrillContext, timeout: Duration = Duration(60.0)) -> str:
    """Verify the app answers its health check (it reconnects to the database by itself)."""
    ctx.stack.wait_app(timeout)
    return ctx.stack.app_health().text.strip()


@RECOVERY("promote-replica", needs=("replica",))
def promote_replica(ctx: DrillContext, service: Service = Service("replica")) -> str:
    """pg_promote() on the standby; it becomes the writable primary."""
    rows = ctx.stack.sql(service, "SELECT pg_promote(wait => true, wait_seconds => 30)")
    if not rows or rows[0][0] is not True:
        raise StepFailed("promote-replica", f"pg_promote on {service} returned {rows}")
    ctx.stack.wait_pg(service, 30, writable=True)
    ctx.primary = service
    return f"{service} promoted"


@RECOVERY("point-app")
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


@RECOVERY("set-maintenance", needs=("reference-app",))
def set_maintenance(ctx: DrillContext, enabled: bool) -> str:
    """Maintenance mode: the app refuses writes with 503 (seed 002 data-corruption step 1)."""
    ctx.stack.set_maintenance(enabled)
    if enabled:
        r = ctx.app_client().create_order(f"maintenance-check-{ctx.clock()}", "must be refused")
        if r.status_code != 503:
            raise StepFailed("set-maintenance", f"app still accepts writes ({r.status_code})")
        return f"maintenance on: writes answer {r.status_code} {r.text.strip()}"
    return "maintenance off"


@RECOVERY("assess-corruption")
def assess_corruption(ctx: DrillContext, service: Service = Service("primary")) -> str:
    """Assess scope: pg_amcheck over the app database, and the checksum failure counters."""
    res = ctx.stack.exec(
        service, "pg_amcheck -h /run/postgresql -d app --heapallindexed 2>&1", timeout_s=60
    )
    rows = ctx.stack.sql(
        service,
        "SELECT datname, checksum_failures FROM pg_stat_database WHERE checksum_failures > 0",
    )
    report = f"pg_amcheck exit {res.exit_code}\n{res.output.strip()}\nchecksum failures: {rows}"
    ctx.evidence("corruption assessment", report)
    ctx.figure("pg_amcheck_exit", res.exit_code)
    for line in res.output.splitlines():
        if "invalid page" in line or "checksum" in line or "corrupt" in line:
            ctx.result.pg_errors.append(line.strip())
    return report


@RECOVERY("switch-wal")
def switch_wal(ctx: DrillContext, service: Service = Service("primary")) -> str:
    """Close the current WAL segment and wait until it is archived (nothing recent is left behind)."""
    rows = ctx.stack.sql(service, "SELECT pg_walfile_name(pg_switch_wal())")
    wal = rows[0][0]

    def archived() -> bool:
        last = ctx.stack.sql(service, "SELECT last_archived_wal FROM pg_stat_archiver")[0][0]
        return last is not None and last >= wal

    wait_for(archived, what=f"WAL {wal} to be archived", timeout_s=30)
    return f"WAL switched and archived up to {wal}"


@RECOVERY("stop-service")
def stop_service(ctx: DrillContext, service: Service) -> str:
    """Stop a service's container gracefully (20 s), if it runs."""
    c = ctx.stack.container(service)
    if c.status == "running":
        c.stop(timeout=20)
    return f"{service} stopped"


RECOVERY_TARGET_SETTINGS = (
    "recovery_target",
    "recovery_target_xid",
    "recovery_target_time",
    "recovery_target_name",
    "recovery_target_lsn",
    "recovery_target_inclusive",
    "recovery_target_action",
)


@RECOVERY("restore-backup", restores=True, needs=("pgbackrest",))
def restore_backup(
    ctx: DrillContext,
    service: Service = Service("primary"),
    target: str = "latest",
    replay_wal: bool = True,
) -> str:
    """pgBackRest restore into the service's data directory, replaying archived WAL.

    target: 'latest' (end of the archive), 'before-destruction' (the transaction id recorded by the
    destructive fault, exclusive), or 'backup' (the backup's consistent point only).
    """
    c = ctx.stack.container(service)
    if c.status == "running":
        c.stop(timeout=20)
    args = ["pgbackrest", "--stanza=main", "--delta", "restore"]
    if target == "before-destruction":
        xid = ctx.part(RestorePoint).xid
        if xid is None:
            raise StepFailed("restore-backup", "no destructive transaction was recorded")
        args += ["--type=xid", f"--target={xid}", "--target-exclusive", "--target-action=promote"]
    elif target == "backup" or not replay_wal:
        args += ["--type=immediate", "--target-action=promote"]
    elif target != "latest":
        raise StepFailed("restore-backup", f"unknown target {target!r}")
    out = ctx.stack.run_tool(service, args)
    c.start()
    ctx.stack.wait_pg(service, 120, writable=True)
    # pgBackRest wrote the recovery target into postgresql.auto.conf; left there, a standby cloned
    # from this primary would stop at the same target and promote itself.
    ctx.stack.sql(
        service,
        *(f"ALTER SYSTEM RESET {g}" for g in RECOVERY_TARGET_SETTINGS),
        "SELECT pg_reload_conf()",
    )
    ctx.figure("restore_target", target)
    return f"restored {service} ({target}): {out.strip()[-300:]}"


@RECOVERY("rebuild-replica", needs=("replica",))
def rebuild_replica(ctx: DrillContext, service: Service = Service("replica")) -> str:
    """Discard the standby's data and re-clone it from the (restored) primary."""
    ctx.stack.rebuild_replica(service)
    return f"{service} re-cloned and streaming"


@RECOVERY("reconcile-from-audit", needs=("reference-app",))
def reconcile_from_audit(ctx: DrillContext) -> str:
    """Seed 002 'Data Reconciliation': re-apply writes made after the restore point from the app's
    append-only audit log (its own file, not the restored database)."""
    since = ctx.part(RestorePoint).wall
    if since is None:
        raise StepFailed("reconcile-from-audit", "no restore point time recorded")
    # the figure "before reconciliation" is what a restore alone would have cost
    before = ctx.ledger()
    ctx.figure("lost_before_reconciliation", len(before.lost_or_altered))
    from drillkit.core.measure import rpo

    ctx.figure(
        "rpo_before_reconciliation_s",
        round(rpo(before.lost_or_altered, ctx.result.markers["fault"]), 3),
    )
    r = requests.post(
        ctx.stack.app_url + "/api/admin/replay-audit",
        json={
            "since": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(since))
            + f".{int(since % 1 * 1e6):06d}Z"
        },
        headers={"Authorization": f"Bearer {ctx.stack.secrets['admin_token']}"},
        timeout=60,
    )
    if r.status_code != 200:
        raise StepFailed(
            "reconcile-from-audit", f"replay-audit answered {r.status_code}: {r.text[:200]}"
        )
    return f"replayed from audit log: {r.text.strip()}"


# ---------------------------------------------------------------------------------------------
# data faults
# ---------------------------------------------------------------------------------------------


@FAULTS("corrupt-page")
def corrupt_page(
    ctx: DrillContext, table: str = "orders", block: int = 0, service: Service = Service("primary")
) -> str:
    """Overwrite 64 bytes in the middle of a heap page of `table` on disk (checksums are on).

    The cluster is stopped first (a page cached in shared buffers would hide the damage) and started
    again after, as after a host crash.
    """
    path = ctx.stack.sql(service, f"SELECT pg_relation_filepath('{table}'::regclass)")[0][0]
    c = ctx.stack.container(service)
    c.stop(timeout=20)
    offset = block * 8192 + 4096
    script = (
        f"printf 'DRILLKIT-CORRUPTION-%.0s' $(seq 1 4) | "
        f"dd of=/pgdata/{path} bs=1 seek={offset} count=64 conv=notrunc status=none"
    )
    ctx.stack.run_tool(service, ["sh", "-c", script])
    c.start()
    ctx.stack.wait_pg(service, 60)
    try:
        ctx.stack.sql(service, f"SELECT count(*) FROM {table}")
        seen = "no error on a full scan"
    except psycopg.Error as exc:
        seen = f"SQLSTATE {exc.sqlstate}: {str(exc).strip()}"
        ctx.result.pg_errors.append(seen)
    ctx.evidence("corruption injected", f"{table} block {block} ({path}) offset {offset}: {seen}")
    return seen


@FAULTS("destructive-statement")
def destructive_statement(
    ctx: DrillContext, sql: str = "DELETE FROM orders", service: Service = Service("primary")
) -> str:
    """Run a destructive statement (a bulk DELETE, DROP TABLE) and record its transaction id and
    time: the point-in-time recovery target."""
    with ctx.stack.connect(service) as conn:
        conn.autocommit = False
        with conn.cursor() as cur:
            cur.execute("SELECT txid_current(), extract(epoch from clock_timestamp())")
            xid, wall = cur.fetchone()  # type: ignore[misc]
            cur.execute(sql)  # type: ignore[arg-type]
            count = cur.rowcount
        conn.commit()
    point = ctx.part(RestorePoint)
    point.xid, point.wall = int(xid), float(wall)
    ctx.figure("destroyed_rows", count)
    return f"`{sql}` destroyed {count} rows in transaction {xid}"


# ---------------------------------------------------------------------------------------------
# network faults: iptables inside the containers' network namespaces (no tc netem here)
# ---------------------------------------------------------------------------------------------


def _ip(ctx: DrillContext, service: str) -> str:
    c = ctx.stack.container(service)
    return str(c.attrs["NetworkSettings"]["Networks"][ctx.stack.net.name]["IPAddress"])


def _rules(ctx: DrillContext, a: str, b: str) -> list[tuple[str, list[str]]]:
    tag = ["-m", "comment", "--comment", f"drillkit:{ctx.stack.run_id}"]
    ip_a, ip_b = _ip(ctx, a), _ip(ctx, b)
    return [
        (a, ["INPUT", "-s", ip_b, *tag, "-j", "DROP"]),
        (a, ["OUTPUT", "-d", ip_b, *tag, "-j", "DROP"]),
        (b, ["INPUT", "-s", ip_a, *tag, "-j", "DROP"]),
        (b, ["OUTPUT", "-d", ip_a, *tag, "-j", "DROP"]),
    ]


@FAULTS("partition")
@RECOVERY("partition")
def partition(ctx: DrillContext, a: Service, b: Service) -> str:
    """Cut every packet between two services, both directions (iptables DROP in both namespaces).
    The exact rules are kept, so healing removes them even after an address changed."""
    rules = _rules(ctx, a, b)
    for service, rule in rules:
        proc = nsenter(ctx.stack.container(service), "iptables", "-w", "-I", *rule)
        if proc.returncode != 0:
            raise EnvironmentBroken(f"iptables in {service}: {proc.stderr.strip()}")
    ctx.part(Partitions).rules[(a, b)] = rules
    return f"partitioned {a} <-> {b}"


@RECOVERY("heal-partition")
def heal_partition(ctx: DrillContext, a: Service, b: Service) -> str:
    """Remove the partition's rules (from the containers still running; a stopped container's
    network namespace, and its rules, are gone already)."""
    rules = ctx.part(Partitions).rules.pop((a, b), None)
    if rules is None:
        return f"no partition between {a} and {b}"
    for service, rule in rules:
        c = ctx.stack.container(service)
        if c.status == "running":
            nsenter(c, "iptables", "-w", "-D", *rule)
    return f"healed {a} <-> {b}"


def _others(ctx: DrillContext, service: str) -> list[str]:
    return [s for s in ctx.stack.services if s != service]


@FAULTS("isolate")
def isolate(ctx: DrillContext, service: Service) -> str:
    """Cut a service off from every other service of the stack (both directions)."""
    for other in _others(ctx, service):
        partition(ctx, service, Service(other))
    return f"{service} isolated from {', '.join(_others(ctx, service))}"


@RECOVERY("heal-isolation")
def heal_isolation(ctx: DrillContext, service: Service) -> str:
    """Remove every rule that isolated the service (the network comes back)."""
    for other in _others(ctx, service):
        heal_partition(ctx, service, Service(other))
    return f"{service} reconnected"


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


# ---------------------------------------------------------------------------------------------
# credential faults and rotation (seed 000 procedure 2, seed 002 security breach, seed 003)
# ---------------------------------------------------------------------------------------------


@FAULTS("leak-credentials", needs=("reference-app",))
def leak_credentials(ctx: DrillContext) -> str:
    """The app's database password and token-signing secret leak. The attacker (a client the drill
    controls) opens a database session with the password and forges a token with the secret."""
    import base64
    import hashlib
    import hmac
    import json

    secrets = ctx.stack.secrets
    leak = ctx.part(CredentialLeak)
    leak.db_password = secrets["app_db_password"]
    conn = ctx.stack.connect(ctx.primary, user="app", password=secrets["app_db_password"])
    conn.execute("SET application_name = 'attacker'")
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
    leak.attacker_pid = pid
    ctx.cleanups.append(conn.close)
    now = int(time.time())
    payload = base64.urlsafe_b64encode(
        json.dumps(
            {"sub": 1, "email": "probe@drill.example", "iat": now, "exp": now + 3600}
        ).encode()
    ).rstrip(b"=")
    sig = hmac.new(secrets["jwt_secret"].encode(), payload, hashlib.sha256).digest()
    token = payload.decode() + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
    r = ctx.app_client().me(token)
    if r.status_code != 200:
        raise StepFailed(
            "leak-credentials", f"forged token rejected before rotation ({r.status_code})"
        )
    leak.attacker_token = token
    return f"attacker holds database session pid {pid} and a forged token accepted by the app"


@RECOVERY("preserve-evidence")
def preserve_evidence(ctx: DrillContext) -> str:
    """Copy the app's logs and the audit table into the drill's evidence before anything changes."""
    import hashlib

    logs = ctx.stack.logs("app", tail=500)
    with ctx.stack.connect(ctx.primary) as conn:
        rows = conn.execute(
            "SELECT id, at, actor, action, detail::text FROM audit_log ORDER BY id"
        ).fetchall()
        sessions = conn.execute(
            "SELECT pid, usename, application_name, client_addr::text, backend_start "
            "FROM pg_stat_activity WHERE usename IS NOT NULL ORDER BY pid"
        ).fetchall()
    audit = "\n".join("\t".join(str(v) for v in row) for row in rows)
    ctx.part(BreachResponse).audit_rows_before = len(rows)
    for name, text in (
        ("app log (preserved)", logs),
        ("audit_log table (preserved)", audit),
        ("database sessions (preserved)", "\n".join(map(str, sessions))),
    ):
        ctx.evidence(name, text)
        ctx.evidence(name + " sha256", hashlib.sha256(text.encode()).hexdigest())
    return (
        f"preserved {len(rows)} audit rows, {len(sessions)} sessions, {len(logs)} bytes of app log"
    )


@RECOVERY("rotate-db-password")
def rotate_db_password(ctx: DrillContext, role: str = "app") -> str:
    """New password for the role in the database and in the app's secret file."""
    _, new = ctx.stack.secrets.rotate("app_db_password")
    with ctx.stack.connect(ctx.primary) as conn:
        conn.execute(
            psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                psycopg.sql.Identifier(role), psycopg.sql.Literal(new)
            )
        )
    ctx.part(BreachResponse).rotated_at_wall = time.time()
    return f"password of role {role} rotated"


@RECOVERY("rotate-signing-secret")
def rotate_signing_secret(ctx: DrillContext) -> str:
    """New token-signing secret: every token signed with the old one stops working (all users are
    logged out, seed 003 'force logout all sessions')."""
    ctx.stack.secrets.rotate("jwt_secret")
    return "signing secret rotated"


@RECOVERY("reload-app")
def reload_app(ctx: DrillContext) -> str:
    """SIGHUP the app: it re-reads its secret files and reconnects with the new credentials."""
    ctx.stack.reload_app()
    ctx.stack.wait_app(30)
    return "app reloaded and healthy"


@RECOVERY("terminate-sessions")
def terminate_sessions(
    ctx: DrillContext, role: str = "app", started_before: str = "rotation"
) -> str:
    """pg_terminate_backend() for every session of `role` that began before the rotation."""
    rotated = ctx.part(BreachResponse).rotated_at_wall
    cutoff = (
        (rotated if rotated is not None else time.time())
        if started_before == "rotation"
        else time.time()
    )
    rows = ctx.stack.sql(
        ctx.primary,
        (
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = "
            f"'{role}' AND backend_start < to_timestamp({cutoff}) AND pid <> pg_backend_pid()"
        ),
    )
    return f"terminated {len(rows)} sessions of {role}: {[r[0] for r in rows]}"


# ---------------------------------------------------------------------------------------------
# disk full (seed 001/003 infrastructure resource exhaustion)
# ---------------------------------------------------------------------------------------------


@FAULTS("fill-disk", needs=("data_fs",))
def fill_disk(ctx: DrillContext, leave_bytes: int = 0) -> str:
    """Fill the primary's data filesystem (a real ext4 on a loop device) with a ballast file."""
    fs = ctx.stack.loopfs
    if fs is None:
        raise EnvironmentBroken(
            "fill-disk needs the stack option data_fs (the data directory on its "
            "own filesystem); add `stack: {data_fs: 96MiB}` to the scenario"
        )
    ballast = Path(fs.mountpoint) / "drillkit-ballast"
    free = fs.free_bytes()
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        # real blocks, reserved at once; then byte writes take whatever fallocate left
        with contextlib.suppress(OSError):
            os.posix_fallocate(fd, 0, max(1, free - leave_bytes))
        chunk = b"\0" * 65536
        with contextlib.suppress(OSError):  # ENOSPC is the point
            while fs.free_bytes() > leave_bytes:
                os.lseek(fd, 0, os.SEEK_END)
                if os.write(fd, chunk) <= 0:
                    break
        os.fsync(fd)
    finally:
        os.close(fd)
    ctx.part(DiskBallast).path = str(ballast)
    return f"filled {free} bytes; {fs.free_bytes()} bytes left on {fs.mountpoint}"


@RECOVERY("check-disk", needs=("data_fs",))
def check_disk(
    ctx: DrillContext, service: Service = Service("primary"), after: Duration = Duration(0.0)
) -> str:
    """df on the data filesystem and what PostgreSQL logged (errors, PANIC) since the fault.
    `after`: how long the fault stands before the operator looks."""
    time.sleep(after)
    fs = ctx.stack.loopfs
    df = f"{fs.free_bytes()} bytes free" if fs else "n/a"
    c = ctx.stack.container(service)
    since = int(ctx.result.wall(ctx.result.markers.get("fault", ctx.clock()))) - 1
    logs = ctx.log_since(service, since)
    errs = [ln.strip() for ln in logs.splitlines() if "No space left" in ln or "PANIC" in ln]
    ctx.result.pg_errors.extend(errs[-10:])
    ctx.figure("disk_full_errors", len(errs))
    ctx.figure("postgres_panicked", any("PANIC" in e for e in errs))
    ctx.evidence("PostgreSQL under a full disk", "\n".join(errs[-20:]) or "(no errors logged)")
    return f"data filesystem: {df}; container {c.status}; {len(errs)} disk errors logged"


@RECOVERY("free-disk")
def free_disk(ctx: DrillContext) -> str:
    """Delete the ballast."""
    ballast = ctx.part(DiskBallast).path
    if ballast:
        Path(ballast).unlink(missing_ok=True)
    return "ballast removed"


@RECOVERY("ensure-running")
def ensure_running(ctx: DrillContext, service: Service) -> str:
    """Start the service if it died (e.g. PostgreSQL PANICked on a full disk), then wait for it."""
    c = ctx.stack.container(service)
    state = c.status
    if state != "running":
        c.start()
    _wait_service(ctx, service)
    return f"{service} was {state}; now serving"


# ---------------------------------------------------------------------------------------------
# degradation through the fault proxy (Toxiproxy API; the stack option `proxy: true`)
# ---------------------------------------------------------------------------------------------

TOXIC_ATTRIBUTES = {
    "latency": ("latency", "jitter"),
    "bandwidth": ("rate",),
    "slow_close": ("delay",),
    "timeout": ("timeout",),
    "reset_peer": ("timeout",),
    "slicer": ("average_size", "size_variation", "delay"),
    "limit_data": ("bytes",),
}


def _proxy(ctx: DrillContext) -> Any:
    if "proxy" not in ctx.stack.services:
        raise EnvironmentBroken("this action needs the fault proxy: add `stack: {proxy: true}`")
    from drillkit.stack.services.proxy import PROXY_NAME

    proxy = ctx.stack.toxiproxy().get_proxy(PROXY_NAME)
    if proxy is None:
        raise EnvironmentBroken(f"the fault proxy has no proxy named {PROXY_NAME!r}")
    return proxy


@FAULTS("toxic-add", needs=("proxy",))
@RECOVERY("toxic-add", needs=("proxy",))
def toxic_add(
    ctx: DrillContext,
    type_: str,
    stream: str = "downstream",
    toxicity: float = 1.0,
    name: str = "",
    latency: int = 0,
    jitter: int = 0,
    rate: int = 0,
    delay: int = 0,
    timeout: int = 0,
    average_size: int = 0,
    size_variation: int = 0,
    bytes_: int = 0,
) -> str:
    """Add a toxic to the app -> primary path through the Toxiproxy API (toxiproxy-python).
    Attributes as Toxiproxy names them: latency/jitter/delay/timeout in ms, rate in KB/s."""
    if type_ not in TOXIC_ATTRIBUTES:
        raise StepFailed(
            "toxic-add", f"unknown toxic type {type_!r}: {', '.join(TOXIC_ATTRIBUTES)}"
        )
    values = {
        "latency": latency,
        "jitter": jitter,
        "rate": rate,
        "delay": delay,
        "timeout": timeout,
        "average_size": average_size,
        "size_variation": size_variation,
        "bytes": bytes_,
    }
    attributes = {k: values[k] for k in TOXIC_ATTRIBUTES[type_]}
    toxic_name = name or f"{type_}_{stream}"
    _proxy(ctx).add_toxic(
        name=toxic_name, type=type_, stream=stream, toxicity=toxicity, attributes=attributes
    )
    return f"toxic {toxic_name}: {type_} {stream} {attributes} toxicity {toxicity:g}"


@RECOVERY("toxic-remove", needs=("proxy",))
def toxic_remove(ctx: DrillContext, name: str) -> str:
    """Remove a toxic by name (the runbook 'removes the cause')."""
    proxy = _proxy(ctx)
    if proxy.get_toxic(name) is None:
        raise StepFailed(
            "toxic-remove",
            f"no toxic named {name!r} on the database path (present: {sorted(proxy.toxics())})",
        )
    proxy.destroy_toxic(name)
    return f"toxic {name} removed"


@FAULTS("proxy-down", needs=("proxy",))
def proxy_down(ctx: DrillContext) -> str:
    """Disable the proxy: its listener closes and every connection through it drops."""
    _proxy(ctx).disable()
    return "database path down (proxy disabled)"


@RECOVERY("proxy-up", needs=("proxy",))
def proxy_up(ctx: DrillContext) -> str:
    """Enable the proxy again: the database path is back."""
    _proxy(ctx).enable()
    return "database path up (proxy enabled)"
