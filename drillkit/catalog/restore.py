"""Corruption and restore: page corruption, destructive statements, pgBackRest restore (PITR), reconciliation."""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass

import psycopg
import requests

from drillkit.catalog._common import data_dir, is_compose
from drillkit.catalog.checks import amcheck_command
from drillkit.core.context import DrillContext
from drillkit.core.registry import CHECKS, FAULTS, RECOVERY, Service
from drillkit.errors import CheckFailed, StepFailed
from drillkit.wait import wait_for


@dataclass
class RestorePoint:
    """The destructive transaction (destructive-statement, breach-tamper): the point-in-time
    recovery target of restore-backup and the replay start of reconcile-from-audit."""

    xid: int | None = None
    wall: float | None = None
    """Its start, a Unix time."""


@RECOVERY("assess-corruption")
def assess_corruption(ctx: DrillContext, service: Service = Service("primary")) -> str:
    """Assess scope: pg_amcheck over the app database (a compose stack's: the overlay's), and the
    checksum failure counters."""
    res = ctx.stack.exec(service, amcheck_command(ctx), timeout_s=60)
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


RELATION_PATH = re.compile(r"(base|global|pg_tblspc)/[0-9A-Za-z_/.]+")
"""What pg_relation_filepath() returns (checked before it reaches a shell)."""


def _qualified(table: str) -> psycopg.sql.Composable:
    """`schema.table` or `table` as quoted identifiers."""
    return psycopg.sql.SQL(".").join(psycopg.sql.Identifier(part) for part in table.split(".", 1))


@FAULTS("corrupt-page")
def corrupt_page(
    ctx: DrillContext, table: str = "orders", block: int = 0, service: Service = Service("primary")
) -> str:
    """Overwrite 64 bytes in the middle of a heap page of `table` on disk (checksums are on).

    The cluster is stopped first (a page cached in shared buffers would hide the damage) and started
    again after, as after a host crash. The bytes are written from a one-off container with the
    service's volumes, into its data directory (a compose stack's: the overlay's `data`).
    """
    with ctx.stack.connect(service) as conn:
        found = conn.execute("SELECT pg_relation_filepath(to_regclass(%s))", (table,)).fetchone()
    path = found[0] if found else None
    if not path or not RELATION_PATH.fullmatch(str(path)):
        raise StepFailed("corrupt-page", f"no table {table[:40]!r} in {service} to corrupt")
    c = ctx.stack.container(service)
    c.stop(timeout=20)
    offset = block * 8192 + 4096
    target = f"{data_dir(ctx, service).rstrip('/')}/{path}"
    script = (
        "printf 'DRILLKIT-CORRUPTION-%.0s' $(seq 1 4) | "
        f"dd of={shlex.quote(target)} bs=1 seek={int(offset)} count=64"
        " conv=notrunc status=none"
    )
    if is_compose(ctx):  # the service's own image: the reference postgres image is not built
        res = ctx.stack.run_oneoff(
            service,
            ["sh", "-c", script],
            volumes_from=service,
            user="root",
            timeout_s=60,
            network=False,
        )
        if res.exit_code != 0:
            raise StepFailed(
                "corrupt-page", f"could not write {target} in {service}: {res.output[:300]}"
            )
    else:
        ctx.stack.run_tool(service, ["sh", "-c", script])
    c.start()
    ctx.stack.wait_pg(service, 60)
    try:
        with ctx.stack.connect(service) as conn:
            conn.execute(psycopg.sql.SQL("SELECT count(*) FROM {}").format(_qualified(table)))
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


@CHECKS("destruction-undone", title="The destroyed rows are back", needs=("reference-app",))
def destruction_undone(ctx: DrillContext) -> str:
    """The rows the destructive statement removed are back."""
    destroyed = int(ctx.result.extra.get("destroyed_rows", 0))
    seeded = ctx.stack.sql(
        ctx.primary, "SELECT count(*) FROM orders WHERE idempotency_key LIKE 'seed-%'"
    )[0][0]
    expected = ctx.seeded_orders
    if seeded < expected:
        raise CheckFailed(
            f"{expected - seeded} of {destroyed} destroyed seed orders are still missing"
        )
    return f"all {expected} seed orders present ({destroyed} had been destroyed)"
