"""The reference app's schema migrations: ``python3 /opt/app/migrate.py up|down VERSION|status``.

Release 1's schema is the one baked into the database image (images/postgres/schema.sql),
version 0001. A release's build carries the migrations up to its own schema version (app.py's
RELEASE_SCHEMAS): release 2 adds 0002_order_status; release 1 has none to run, and cannot undo
0002 (the down steps live in the release that introduced them).

The tool keeps its ledger in ``schema_migrations`` (created on first use, with the baseline 0001).
It runs a migration one statement at a time in autocommit, as migration tools do when a statement
cannot run inside a transaction block (``CREATE INDEX CONCURRENTLY``): a statement that fails
leaves the ones before it applied and the version recorded ``dirty`` (golang-migrate's rule). The
down steps are written to run on a partial apply (``IF EXISTS``), so ``down`` accepts a dirty
version and removes its ledger row when every down statement succeeded.

It connects as the app does (its secrets and its ``db_hosts`` file), to the first host that is
writable. Exit codes: 0 done, 1 a statement failed, 2 bad usage or configuration.
"""

import os
import sys
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import app as reference_app  # the app's settings, config files and release

BASELINE = "0001"
LEDGER_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version text PRIMARY KEY, name text NOT NULL, dirty boolean NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())"
)


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    up: tuple[str, ...]
    down: tuple[str, ...]


MIGRATIONS = (
    Migration(
        "0002",
        "order_status",
        up=(
            "ALTER TABLE orders ADD COLUMN status text NOT NULL DEFAULT 'placed'",
            "CREATE INDEX CONCURRENTLY orders_status ON orders (status)",
            # order_statuses was created by hand on the developer's database and never put in a
            # migration: this statement fails everywhere else (relation does not exist), after
            # the two above were applied.
            "CREATE TABLE order_events ("
            " id bigserial PRIMARY KEY,"
            " order_id bigint NOT NULL REFERENCES orders (id),"
            " status text NOT NULL REFERENCES order_statuses (code),"
            " at timestamptz NOT NULL DEFAULT now())",
        ),
        down=(
            "DROP TABLE IF EXISTS order_events",
            "DROP INDEX CONCURRENTLY IF EXISTS orders_status",
            "ALTER TABLE orders DROP COLUMN IF EXISTS status",
        ),
    ),
)


def available(schema: str) -> tuple[Migration, ...]:
    """The migrations a build whose code expects `schema` carries (those up to it)."""
    return tuple(m for m in MIGRATIONS if m.version <= schema)


def pending(applied: set[str], schema: str) -> tuple[Migration, ...]:
    """The migrations of the build not yet in the ledger, oldest first."""
    return tuple(m for m in available(schema) if m.version not in applied)


def _say(line: str) -> None:
    print(f"migrate: {line}", flush=True)


def _connect(settings: Any, config: Any) -> Any:
    """An autocommit connection to the first writable host of the app's db_hosts."""
    psycopg = reference_app.psycopg
    errors = []
    for host in config.hosts:
        try:
            conn = psycopg.connect(
                host=host.host,
                port=host.port,
                dbname=settings.db_name,
                user=config.db_user,
                password=config.db_password,
                connect_timeout=max(2, settings.connect_timeout_s),
                autocommit=True,
                application_name="migrate",
            )
        except psycopg.Error as exc:
            errors.append(f"{host.host}: {type(exc).__name__}")
            continue
        if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False:
            return conn
        conn.close()
        errors.append(f"{host.host}: in recovery")
    raise RuntimeError("no writable database host (" + "; ".join(errors) + ")")


def _ledger(conn: Any) -> dict[str, bool]:
    conn.execute(LEDGER_DDL)
    conn.execute(
        "INSERT INTO schema_migrations (version, name, dirty) VALUES (%s, 'baseline', false)"
        " ON CONFLICT (version) DO NOTHING",
        (BASELINE,),
    )
    rows = conn.execute("SELECT version, dirty FROM schema_migrations").fetchall()
    return {str(v): bool(d) for v, d in rows}


def _run(conn: Any, statements: tuple[str, ...]) -> str | None:
    """Each statement in autocommit; the first failure's message (None: all ran)."""
    for i, sql in enumerate(statements, 1):
        try:
            conn.execute(sql)
        except reference_app.psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            return f"statement {i}/{len(statements)} failed ({exc.sqlstate}): {first}"
        _say(f"  {i}/{len(statements)} ok: {sql.split('(')[0].strip()[:70]}")
    return None


def up(conn: Any, schema: str) -> int:
    ledger = _ledger(conn)
    dirty = sorted(v for v, d in ledger.items() if d)
    if dirty:
        _say(f"version {dirty[0]} is dirty (a failed migration): fix it or run its down steps")
        return 1
    todo = pending(set(ledger), schema)
    if not todo:
        _say(f"schema is at {max(ledger)}: nothing to do")
        return 0
    conn.execute("SET lock_timeout = '5s'")
    for m in todo:
        _say(f"applying {m.version}_{m.name} ({len(m.up)} statements, autocommit)")
        conn.execute(
            "INSERT INTO schema_migrations (version, name, dirty) VALUES (%s, %s, true)",
            (m.version, m.name),
        )
        failure = _run(conn, m.up)
        if failure is not None:
            _say(f"{m.version}_{m.name}: {failure}; version {m.version} left dirty")
            return 1
        conn.execute("UPDATE schema_migrations SET dirty = false WHERE version = %s", (m.version,))
        _say(f"{m.version}_{m.name} applied")
    return 0


def down(conn: Any, schema: str, version: str) -> int:
    by_version = {m.version: m for m in available(schema)}
    m = by_version.get(version)
    if m is None:
        _say(f"this build (schema {schema}) carries no migration {version}")
        return 2
    ledger = _ledger(conn)
    if version not in ledger:
        _say(f"{version} is not applied: nothing to undo")
        return 0
    state = "dirty (failed half-way)" if ledger[version] else "applied"
    _say(f"undoing {m.version}_{m.name}, {state} ({len(m.down)} statements, autocommit)")
    conn.execute("SET lock_timeout = '5s'")
    failure = _run(conn, m.down)
    if failure is not None:
        _say(f"{m.version}_{m.name} down: {failure}; the ledger still records {version}")
        return 1
    conn.execute("DELETE FROM schema_migrations WHERE version = %s", (version,))
    _say(f"{m.version}_{m.name} undone")
    return 0


def status(conn: Any) -> int:
    for version, dirty in sorted(_ledger(conn).items()):
        _say(f"{version} {'dirty' if dirty else 'applied'}")
    return 0


def main(argv: list[str]) -> int:
    usage = "usage: migrate.py up | down VERSION | status"
    if not argv or argv[0] not in ("up", "down", "status"):
        _say(usage)
        return 2
    if len(argv) != (2 if argv[0] == "down" else 1):
        _say(usage)
        return 2
    try:
        release = reference_app.parse_release(os.environ.get("APP_VERSION"))
        settings = reference_app.Settings.from_env(os.environ)
    except ValueError as exc:
        _say(f"bad configuration: {exc}")
        return 2
    config = reference_app.load_runtime_config(settings)
    if not (config.hosts and config.db_user and config.db_password):
        _say("bad configuration: " + "; ".join(config.problems or ("no database host",)))
        return 2
    try:
        conn = _connect(settings, config)
    except RuntimeError as exc:
        _say(str(exc))
        return 1
    with conn:
        _say(f"release {release.version}, code expects schema {release.schema}")
        if argv[0] == "up":
            return up(conn, release.schema)
        if argv[0] == "down":
            return down(conn, release.schema, argv[1])
        return status(conn)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
