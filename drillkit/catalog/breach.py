"""Data breach: tampered and inserted rows, forensics, restore of what the attacker changed."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from psycopg import sql

from drillkit.catalog._common import _sha256
from drillkit.catalog.credentials import ATTACKER_APP_NAME, ATTACKER_ITEM
from drillkit.catalog.restore import RestorePoint
from drillkit.core.context import DrillContext
from drillkit.core.registry import CHECKS, FAULTS, RECOVERY
from drillkit.errors import CheckFailed, StepFailed


@dataclass
class Breach:
    """What breach-tamper did: the key prefix of the rows it inserted, and the digest of each
    row it altered as it was before."""

    prefix: str | None = None
    originals: dict[str, str] = field(default_factory=dict)


def _order_digest(payload: str, amount_cents: int) -> str:
    return _sha256(f"{amount_cents}\x00{payload}")


@FAULTS("breach-tamper", needs=("reference-app",))
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


SQL_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
"""A table name a scenario may give (validation checks the same; the step checks again)."""


def sql_ident(name: str) -> str:
    """A table name quoted as an identifier (for pg_dump's --table, where psycopg cannot quote)."""
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
    if not SQL_NAME.fullmatch(table):
        raise StepFailed("preserve-forensics", f"not a table name: {table[:40]!r}")
    # pg_dump's --table takes a pattern: the name double-quoted matches exactly that table
    cmd = [
        "pg_dump",
        "-h",
        "/run/postgresql",
        "-U",
        "postgres",
        "-d",
        "app",
        "--data-only",
        f"--table={sql_ident(table)}",
    ]
    res = ctx.stack.exec(ctx.primary, cmd, timeout_s=120)
    if res.exit_code != 0:
        raise StepFailed(
            "preserve-forensics", f"pg_dump exited {res.exit_code}: {res.output[-400:]}"
        )
    ctx.evidence(f"pg_dump of {table} (preserved)", res.output)
    ctx.evidence(f"pg_dump of {table} (preserved) sha256", _sha256(res.output))
    ctx.figure("forensic_dump_bytes", len(res.output))
    with ctx.stack.connect(ctx.primary) as conn:
        rows = conn.execute(
            sql.SQL("SELECT count(*) FILTER (WHERE item = %s) FROM {}").format(
                sql.Identifier(table)
            ),
            (ATTACKER_ITEM,),
        ).fetchall()
    parts.append(f"pg_dump of {table} {len(res.output)} bytes ({rows[0][0]} attacker rows seen)")
    return "; ".join(parts)


@CHECKS(
    "attacker-rows-gone",
    title="No row the attacker inserted is left",
    needs=("reference-app",),
)
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
    needs=("reference-app",),
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
