"""The bad-deployment drill (seed 003 triage "recent deployment -> immediate fallback/rollback",
`disaster-recovery.sh --scenario=rollback`; seed 001 4.3 "Rollback Plan"; seed 002 "Review recent
deployment or configuration changes"): a release goes out, breaks, and is rolled back, image and
schema.

A release is the reference app's image built again with `--build-arg APP_VERSION=<version>`
(images/app/Dockerfile; cached by the hash of its inputs like every image, nothing pulled). Its
code expects its schema version (app.py's Release) and its build carries the migrations up to
it (images/app/migrate.py). Release 2's migration 0002 runs statement by statement in autocommit
and fails at its third statement, leaving a column and an index applied and the version `dirty`;
release 2 writes each order's first event into the table that statement should have created, so
every POST /api/orders fails (503, SQLSTATE 42P01) while its health endpoint answers 200.

The deployment (the fault) records what ran before (image, version, the schema's catalog and the
error rate), runs the release's migration in a one-off container from the release image on the
stack's network (as a release phase does), and replaces the app's container with one from the
release image (services/app.py `deploy`), without gating on the migration's exit code: the
pipeline bug that lets a half-migrated schema go live. The runbook reads the error rate since the
deploy from the app's log, rolls the image back to the recorded previous one and the schema back
by the migration's down steps (run from the release that carries them), and verifies.

The schema is compared as a catalog snapshot (`SCHEMA_SQL`): the public schema's relations,
columns (type, NOT NULL, default), indexes (with their validity), constraints, triggers and
functions, extensions' objects aside. The migration tool's own ledger table is not part of the
app's schema (it appears on the tool's first use); the check reads its rows instead.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import requests

from drillkit.catalog._common import bounded, redact
from drillkit.core.context import DrillContext
from drillkit.core.registry import CHECKS, FAULTS, RECOVERY
from drillkit.errors import CheckFailed, EnvironmentBroken, StepFailed
from drillkit.paths import IMAGES_DIR
from drillkit.stack import images
from drillkit.stack.stack import Stack
from drillkit.wait import wait_for

RELEASE_IMAGE = "app-release"
"""Releases are tagged drillkit/app-release:<hash of the app's build context and version>."""
MIGRATE = ["python3", "/opt/app/migrate.py"]
VERSION_PATH = "/api/version"
VERSION_HEADER = "X-App-Version"
LEDGER_TABLE = "schema_migrations"
_VERSION_RE = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
_MIGRATION_RE = re.compile(r"[0-9]{4}")

SCHEMA_SQL = f"""
WITH rel AS (
  SELECT c.oid, c.relname, c.relkind FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relname <> '{LEDGER_TABLE}'
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                    AND d.objid = c.oid AND d.deptype = 'e')
)
SELECT 'relation', relname, relkind::text FROM rel WHERE relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
UNION ALL
SELECT 'column', r.relname || '.' || a.attname,
       format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
       || coalesce(' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid), '')
FROM rel r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
WHERE r.relkind IN ('r', 'p', 'v', 'm', 'f')
UNION ALL
SELECT 'index', ic.relname,
       pg_get_indexdef(x.indexrelid) || CASE WHEN x.indisvalid THEN '' ELSE ' (INVALID)' END
FROM pg_index x JOIN rel r ON r.oid = x.indrelid JOIN pg_class ic ON ic.oid = x.indexrelid
UNION ALL
SELECT 'constraint', r.relname || '.' || co.conname, pg_get_constraintdef(co.oid)
FROM pg_constraint co JOIN rel r ON r.oid = co.conrelid
UNION ALL
SELECT 'trigger', r.relname || '.' || t.tgname, pg_get_triggerdef(t.oid)
FROM pg_trigger t JOIN rel r ON r.oid = t.tgrelid WHERE NOT t.tgisinternal
UNION ALL
SELECT 'function', p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       md5(p.prosrc)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                  AND d.objid = p.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""
"""The app database's schema as (kind, name, definition) rows, in a stable order."""

Schema = tuple[tuple[str, str, str], ...]


# ----- reading the app's log: the error rate ---------------------------------------------------

REQUEST_LINE = re.compile(
    r'^(\S+) request method="([A-Z]+)" path="((?:[^"\\]|\\.)*)" status=(\d{3})'
    r"(?:.*\bduration_ms=([\d.]+))?"
)
DB_ERROR_LINE = re.compile(r'\bdb_error error_class="(\w+)" sqlstate=(\S+) message=(".*")\s*$')
_ID_SEGMENT = re.compile(r"/[0-9]+(?=/|$)")


@dataclass(frozen=True)
class ErrorRate:
    """Requests the app answered and how many with a 5xx, in total and by route."""

    requests: int = 0
    errors: int = 0
    by_route: tuple[tuple[str, int, int], ...] = ()
    """(route, requests, 5xx) for each route, the most failing first."""
    db_errors: tuple[tuple[str, int], ...] = ()
    """(SQLSTATE and first message line, count), the most frequent first."""

    @property
    def rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def summary(self) -> str:
        text = f"{self.errors} of {self.requests} requests answered 5xx ({self.rate:.1%})"
        failing = [f"{r} {e}/{n}" for r, n, e in self.by_route if e]
        if failing:
            text += "; by route: " + ", ".join(failing[:4])
        if self.db_errors:
            text += "; database errors: " + ", ".join(f"{m} x{n}" for m, n in self.db_errors[:3])
        return text


@dataclass
class Deployment:
    """What the deployment recorded, for the runbook's steps and the checks."""

    previous_image: str = ""
    previous_version: str = ""
    new_image: str = ""
    new_version: str = ""
    schema_before: Schema = ()
    errors_before: ErrorRate | None = None
    migration_exit: int | None = None
    migration_output: str = ""
    deployed_at: float = 0.0
    """Wall time the release's container was being created (its log starts after it)."""
    releases: dict[str, str] = field(default_factory=dict)
    """version -> image tag of each release built this drill."""


def route_of(method: str, path: str) -> str:
    """`POST /api/orders`, `GET /api/orders/{id}`: a request's route, ids folded."""
    return f"{method} {_ID_SEGMENT.sub('/{id}', path)}"


def _line_time(stamp: str) -> float | None:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def error_rate(log: str, began_after: float | None = None) -> ErrorRate:
    """The app log's requests (its `request` lines) and 5xx answers; with `began_after` (a Unix
    time) only the requests begun at or after it (answer time − duration). Its `db_error` lines
    are counted by SQLSTATE and message (after `began_after` by their own time)."""
    routes: dict[str, list[int]] = {}
    db: dict[str, int] = {}
    total = errors = 0
    for line in log.splitlines():
        m = REQUEST_LINE.match(line)
        if m is not None:
            if began_after is not None:
                answered = _line_time(m.group(1))
                began = None if answered is None else answered - float(m.group(5) or 0) / 1000
                if began is not None and began < began_after:
                    continue
            route = routes.setdefault(route_of(m.group(2), m.group(3)), [0, 0])
            route[0] += 1
            total += 1
            if m.group(4).startswith("5"):
                route[1] += 1
                errors += 1
            continue
        d = DB_ERROR_LINE.search(line)
        if d is None:
            continue
        if began_after is not None:
            t = _line_time(line.split(" ", 1)[0])
            if t is not None and t < began_after:
                continue
        try:
            message = str(json.loads(d.group(3)))
        except ValueError:
            message = d.group(3)
        key = f"{d.group(2).strip(chr(34))} {message[:120]}"
        db[key] = db.get(key, 0) + 1
    by_route = sorted(((r, n, e) for r, (n, e) in routes.items()), key=lambda x: (-x[2], x[0]))
    return ErrorRate(
        total,
        errors,
        tuple(by_route),
        tuple(sorted(db.items(), key=lambda kv: (-kv[1], kv[0]))),
    )


# ----- the schema --------------------------------------------------------------------------------


def schema_snapshot(stack: Stack, service: str) -> Schema:
    rows = stack.sql(service, SCHEMA_SQL)
    return tuple((str(k), str(n), str(d)) for k, n, d in rows)


def schema_diff(
    before: Iterable[tuple[str, str, str]], after: Iterable[tuple[str, str, str]]
) -> list[str]:
    """What differs, one line each: `+ kind name: definition` (only after), `- ...` (only
    before), `~ kind name: before -> after` (changed)."""
    old = {(k, n): d for k, n, d in before}
    new = {(k, n): d for k, n, d in after}
    out = []
    for key in sorted(old.keys() | new.keys()):
        kind, name = key
        if key not in old:
            out.append(f"+ {kind} {name}: {new[key]}")
        elif key not in new:
            out.append(f"- {kind} {name}: {old[key]}")
        elif old[key] != new[key]:
            out.append(f"~ {kind} {name}: {old[key]} -> {new[key]}")
    return out


def ledger_rows(stack: Stack, service: str) -> list[tuple[str, bool]]:
    """The migration tool's ledger (version, dirty), empty when the tool never ran."""
    exists = stack.sql(service, f"SELECT to_regclass('public.{LEDGER_TABLE}') IS NOT NULL")
    if not exists or not exists[0][0]:
        return []
    rows = stack.sql(service, f"SELECT version, dirty FROM {LEDGER_TABLE} ORDER BY version")
    return [(str(v), bool(d)) for v, d in rows]


# ----- releases ------------------------------------------------------------------------------


def release_image(stack: Stack, version: str) -> str:
    """The image of release `version` of the stack's app: its build context (a folder of
    images/) built with APP_VERSION=version, cached by content hash."""
    if not _VERSION_RE.fullmatch(version):
        raise StepFailed("release", f"version must be MAJOR.MINOR.PATCH, got {version[:40]!r}")
    ref = stack.spec.app.image
    context = IMAGES_DIR / ref
    if not (context / "Dockerfile").is_file():
        raise EnvironmentBroken(
            f"the app's image {ref!r} is not a build context of {IMAGES_DIR}: a release is "
            "built from the app's own Dockerfile with --build-arg APP_VERSION"
        )
    return images.ensure_context(
        context, RELEASE_IMAGE, buildargs={"APP_VERSION": version}, progress=stack.progress
    )


def served_version(stack: Stack, timeout_s: float = 2.0) -> tuple[str, str]:
    """(version in the body of GET /api/version, version in its X-App-Version header)."""
    r = requests.get(stack.app_url + VERSION_PATH, timeout=timeout_s)
    if r.status_code != 200:
        raise StepFailed("version", f"{VERSION_PATH} answered {r.status_code}: {r.text[:120]}")
    return str(r.json().get("version", "")), r.headers.get(VERSION_HEADER, "")


def run_migration(ctx: DrillContext, image: str, args: list[str]) -> tuple[int, str]:
    """migrate.py `args` in a one-off container of `image` on the stack's network, with the app's
    secrets and config (its db_hosts) mounted as the app has them; (exit code, redacted output)."""
    stack, app = ctx.stack, ctx.stack.spec.app
    res = stack.run_oneoff(
        image,
        [*MIGRATE, *args],
        env=dict(app.env),
        mounts={
            str(stack.secrets.app_dir): {"bind": app.secrets_dir, "mode": "ro"},
            str(stack.kinds["app"].config_dir): {"bind": app.config_dir, "mode": "ro"},
        },
        timeout_s=60,
    )
    return res.exit_code, bounded(redact(ctx, res.output))


def _deploy_app(ctx: DrillContext, image: str) -> None:
    ctx.stack.kinds["app"].deploy(image)


# ----- prepare and fault ------------------------------------------------------------------------


@RECOVERY("build-release", needs=("reference-app",))
def build_release(ctx: DrillContext, version: str = "2.0.0") -> str:
    """CI builds the release: the app's image with APP_VERSION=version (cached by the hash of its
    inputs; a prepare step, so the build is not part of the outage)."""
    tag = release_image(ctx.stack, version)
    ctx.part(Deployment).releases[version] = tag
    return f"release {version}: {tag}"


@FAULTS("deploy-release", needs=("reference-app",))
def deploy_release(ctx: DrillContext, version: str = "2.0.0") -> str:
    """Deploy release `version`: record the running image and version as the previous release,
    the schema's catalog and the error rate since the steady state; run the release's migration
    (migrate.py up, a one-off container from the release image); replace the app's container with
    one from the release image. The pipeline does not gate the rollout on the migration's exit
    code (the bug this drill reproduces): a half-failed migration goes live with the release."""
    stack, d = ctx.stack, ctx.part(Deployment)
    d.previous_image = stack.image_tags["app"]
    d.previous_version, _ = served_version(stack)
    d.new_version = version
    d.new_image = d.releases.get(version) or release_image(stack, version)
    d.releases[version] = d.new_image
    if d.new_image == d.previous_image:
        raise StepFailed("deploy-release", f"release {version} is the running image")
    steady = ctx.result.markers.get("steady")
    since = ctx.result.wall(steady) if steady is not None else time.time() - 10
    d.errors_before = error_rate(ctx.log_since("app", int(since)), began_after=since)
    d.schema_before = schema_snapshot(stack, ctx.primary)
    d.migration_exit, d.migration_output = run_migration(ctx, d.new_image, ["up"])
    ctx.evidence("migration (deploy)", d.migration_output)
    d.deployed_at = time.time()
    _deploy_app(ctx, d.new_image)
    ctx.figure("error_rate_before_deploy", round(d.errors_before.rate, 4))
    return (
        f"{d.previous_version} ({d.previous_image}) -> {version} ({d.new_image}); migration "
        f"exited {d.migration_exit}: {(d.migration_output.strip().splitlines() or [''])[-1]}; the release "
        f"answers its health check; before the deploy {d.errors_before.summary()}"
    )


def _deployment(ctx: DrillContext, what: str) -> Deployment:
    d = ctx.part(Deployment)
    if not d.new_image:
        raise StepFailed(what, "no deployment recorded (the fault is deploy-release)")
    return d


# ----- the runbook -------------------------------------------------------------------------------


@RECOVERY("check-deploy-errors", needs=("reference-app",))
def check_deploy_errors(ctx: DrillContext, min_rate: float = 0.05, min_requests: int = 20) -> str:
    """Seed 003 "Recent Changes Analysis" / seed 002 "Review recent deployment": read the app's
    log since the deploy (its error rate, by route, and its database errors) once it holds
    `min_requests` requests. A rate at least `min_rate` above the pre-deploy rate blames the
    deployment: the runbook rolls back. Otherwise the step fails: the deployment is not the
    cause, and rolling it back would not help."""
    if not 0 < min_rate <= 1 or min_requests < 1:
        raise StepFailed("check-deploy-errors", "min_rate must be in (0, 1], min_requests >= 1")
    d = _deployment(ctx, "check-deploy-errors")

    def enough() -> ErrorRate | None:
        now = error_rate(ctx.log_since("app", d.deployed_at))
        return now if now.requests >= min_requests else None

    try:
        after = wait_for(
            enough,
            what=f"{min_requests} requests in the app's log since the deploy",
            timeout_s=30.0,
            interval_s=0.2,
        )
    except EnvironmentBroken as exc:
        raise StepFailed("check-deploy-errors", str(exc).splitlines()[0]) from exc
    before = d.errors_before or ErrorRate()
    ctx.figure("error_rate_after_deploy", round(after.rate, 4))
    detail = (
        f"since the deploy of {d.new_version} at "
        f"{time.strftime('%H:%M:%S', time.gmtime(d.deployed_at))} UTC: {after.summary()}; "
        f"before it: {before.errors} of {before.requests} ({before.rate:.1%}); migration exited "
        f"{d.migration_exit}"
    )
    if after.rate < before.rate + min_rate:
        raise StepFailed("check-deploy-errors", f"no error spike after the deployment: {detail}")
    return detail + f" -> roll back to {d.previous_version}"


@RECOVERY("rollback-release", needs=("reference-app",))
def rollback_release(ctx: DrillContext) -> str:
    """`disaster-recovery.sh --scenario=rollback`: replace the app's container with one from the
    image recorded as the previous release (same network, secrets, config, log volume), wait
    until it answers, and read the version it serves."""
    d = _deployment(ctx, "rollback-release")
    t = time.monotonic()
    _deploy_app(ctx, d.previous_image)
    served, header = served_version(ctx.stack)
    return (
        f"app recreated from {d.previous_image} in {time.monotonic() - t:.1f} s; it serves "
        f"{served} (header {header})"
    )


@RECOVERY("migrate-down", needs=("reference-app",))
def migrate_down(ctx: DrillContext, migration: str = "0002") -> str:
    """Roll the schema back by the migration's down steps (migrate.py down), run from the release
    that introduced it (the previous release does not carry them), then show the ledger."""
    if not _MIGRATION_RE.fullmatch(migration):
        raise StepFailed("migrate-down", f"a migration is 4 digits, got {migration[:20]!r}")
    d = _deployment(ctx, "migrate-down")
    code, out = run_migration(ctx, d.new_image, ["down", migration])
    ctx.evidence(f"migration {migration} down", out)
    if code != 0:
        raise StepFailed("migrate-down", f"migrate.py down {migration} exited {code}: {out[-400:]}")
    rows = ledger_rows(ctx.stack, ctx.primary)
    return f"{out.strip().splitlines()[-1]}; ledger: " + ", ".join(
        f"{v}{' (dirty)' if dirty else ''}" for v, dirty in rows
    )


@RECOVERY("verify-app-version", needs=("reference-app",))
def verify_app_version(ctx: DrillContext) -> str:
    """The app serves the previous release (GET /api/version, body and header)."""
    d = _deployment(ctx, "verify-app-version")
    served, header = served_version(ctx.stack)
    if served != d.previous_version or header != d.previous_version:
        raise StepFailed(
            "verify-app-version",
            f"the app serves {served!r} (header {header!r}), not {d.previous_version!r}",
        )
    return f"the app serves {served}"


# ----- checks ------------------------------------------------------------------------------------


@CHECKS(
    "app-version",
    title="The app serves the previous release (version, header, image)",
    needs=("reference-app",),
)
def app_version(ctx: DrillContext) -> str:
    """GET /api/version answers the previous release's version in its body and its
    X-App-Version header, and the app's container runs the image recorded as previous."""
    d = ctx.part(Deployment)
    if not d.previous_image:
        raise CheckFailed("no deployment recorded")
    served, header = served_version(ctx.stack)
    c = ctx.stack.container("app")
    image = ctx.stack.client.images.get(d.previous_image)
    problems = []
    if served != d.previous_version or header != d.previous_version:
        problems.append(f"serves {served!r} (header {header!r}), not {d.previous_version!r}")
    if c.attrs.get("Image") != image.id:
        problems.append(f"runs image {str(c.attrs.get('Image'))[:19]}, not {d.previous_image}")
    if problems:
        raise CheckFailed("; ".join(problems))
    return f"{served} from {d.previous_image} (the release {d.new_version} is gone)"


@CHECKS(
    "schema-unchanged",
    title="The schema equals the pre-deploy schema (catalog snapshot; no migration left applied)",
    needs=("reference-app",),
)
def schema_unchanged(ctx: DrillContext) -> str:
    """The catalog snapshot of the app's schema now equals the one taken before the deploy
    (every difference is named), and the migration tool's ledger records nothing past the
    baseline 0001 and nothing dirty."""
    d = ctx.part(Deployment)
    if not d.schema_before:
        raise CheckFailed("no pre-deploy schema snapshot recorded")
    after = schema_snapshot(ctx.stack, ctx.primary)
    diff = schema_diff(d.schema_before, after)
    ledger = ledger_rows(ctx.stack, ctx.primary)
    newer = [f"{v}{' dirty' if dirty else ''}" for v, dirty in ledger if v > "0001" or dirty]
    if diff or newer:
        ctx.evidence("schema drift after the rollback", "\n".join(diff) or "(none)")
        parts = []
        if diff:
            parts.append(
                f"{len(diff)} differences from the pre-deploy schema: " + "; ".join(diff[:4])
            )
        if newer:
            parts.append(f"the migration ledger still records {', '.join(newer)}")
        raise CheckFailed("; ".join(parts))
    return f"{len(after)} catalog entries as before the deploy; ledger: " + (
        ", ".join(v for v, _ in ledger) or "never used"
    )


@CHECKS(
    "error-rate-baseline",
    title="The app's error rate is back to its pre-deploy baseline",
    needs=("reference-app",),
)
def error_rate_baseline(ctx: DrillContext, tolerance: float = 0.0, min_requests: int = 20) -> str:
    """The 5xx rate of the requests begun after T_recovered (the app's log) is at most the
    pre-deploy rate plus `tolerance`, over at least `min_requests` requests."""
    d = ctx.part(Deployment)
    t_rec = ctx.result.markers.get("recovered")
    if t_rec is None:
        raise CheckFailed("never recovered")
    if d.errors_before is None:
        raise CheckFailed("no pre-deploy error rate recorded")
    since = ctx.result.wall(t_rec)
    after = error_rate(ctx.log_since("app", int(since)), began_after=since)
    ctx.figure("error_rate_after_recovery", round(after.rate, 4))
    if after.requests < min_requests:
        raise CheckFailed(f"only {after.requests} requests after recovery (< {min_requests})")
    limit = d.errors_before.rate + tolerance
    detail = f"after recovery {after.summary()}; before the deploy {d.errors_before.rate:.1%}"
    if after.rate > limit:
        raise CheckFailed(detail + f" (limit {limit:.1%})")
    return detail
