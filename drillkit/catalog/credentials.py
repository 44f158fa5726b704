"""Sessions and credentials: leaked passwords and signing secrets, rotation, session termination."""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import psycopg

from drillkit.catalog._common import _sha256, is_compose, register_secret
from drillkit.core.context import DrillContext
from drillkit.core.registry import CHECKS, FAULTS, RECOVERY
from drillkit.errors import CheckFailed, StepFailed


@dataclass
class CredentialLeak:
    """What leak-credentials gave the attacker: the database password, the session it opened
    with it and the token it forged with the leaked signing secret."""

    db_password: str | None = None
    attacker_pid: int | None = None
    attacker_token: str | None = None
    role: str = "app"
    """The PostgreSQL role whose password leaked."""


@dataclass
class BreachResponse:
    """The breach runbook's own records: audit rows preserved, when the password was rotated."""

    audit_rows_before: int | None = None
    rotated_at_wall: float | None = None


@dataclass
class DbPasswords:
    """Each role's password as the drill last set it (rotate-db-password)."""

    current: dict[str, str] = field(default_factory=dict)


@FAULTS("leak-credentials", needs=("reference-app",))
def leak_credentials(ctx: DrillContext) -> str:
    """The app's database password and token-signing secret leak. The attacker (a client the drill
    controls) opens a database session with the password and forges a token with the secret."""
    import base64
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


def _deliveries(ctx: DrillContext, role: str) -> list[tuple[str, Any]]:
    """(app service, CredDelivery) of each compose app that logs in as `role`."""
    apps = getattr(ctx.stack.spec, "apps", None) or {}
    out = []
    for name, app in apps.items():
        cred = getattr(app, "credentials", None)
        if cred is not None and cred.role == role:
            out.append((name, cred))
    return out


def default_role(ctx: DrillContext) -> str:
    """The role a leak or rotation is about when the scenario names none: the leaked one, else
    the first compose app's database role, else the reference app's `app`."""
    leak = ctx.part(CredentialLeak)
    if leak.db_password is not None:
        return leak.role
    apps = getattr(ctx.stack.spec, "apps", None) or {}
    for app in apps.values():
        cred = getattr(app, "credentials", None)
        if cred is not None:
            return str(cred.role)
    return "app"


def _delivered(ctx: DrillContext, app: str, cred: Any) -> str:
    """The password the app holds now, read where it receives it (env, file, secret)."""
    c = ctx.stack.container(app)
    if cred.kind == "env":
        env = dict(
            e.split("=", 1) for e in (c.attrs.get("Config") or {}).get("Env") or [] if "=" in e
        )
        if cred.target not in env:
            raise StepFailed("leak-db-password", f"{app} has no variable {cred.target}")
        return env[cred.target]
    if cred.kind == "secret":
        copy = secret_copy(ctx, app, cred.target)
        if copy is not None:
            return copy[0].read_text(encoding="utf-8").rstrip("\r\n")
    path = secret_path(cred.target) if cred.kind == "secret" else cred.target
    res = ctx.stack.exec(app, ["cat", path], user="root", timeout_s=10)
    if res.exit_code != 0:
        raise StepFailed("leak-db-password", f"cannot read {path} in {app}: {res.output[:200]}")
    return res.output.strip()


def secret_copy(ctx: DrillContext, app: str, name: str) -> tuple[Path, str] | None:
    """(host file, path in the app) of drillkit's run copy of a compose secret the app mounts: a
    bind mount from the run's directory of a file named as the secret."""
    run_dir = Path(ctx.stack.run_dir).resolve()
    for m in ctx.stack.container(app).attrs.get("Mounts") or []:
        src = Path(str(m.get("Source") or "")).resolve()
        if m.get("Type") == "bind" and src.name == name and src.is_relative_to(run_dir):
            return src, str(m.get("Destination"))
    return None


def secret_path(name: str) -> str:
    """Where a compose secret appears in a service (the Compose default target)."""
    return name if name.startswith("/") else f"/run/secrets/{name}"


def current_password(ctx: DrillContext, role: str) -> str:
    """The role's password now: as rotated by the drill, else where an app receives it, else
    the reference stack's or the overlay superuser's. StepFailed when none is known."""
    known = ctx.part(DbPasswords).current.get(role)
    if known is not None:
        return known
    for app, cred in _deliveries(ctx, role):
        return _delivered(ctx, app, cred)
    creds = getattr(ctx.stack, "db_credentials", None)
    if is_compose(ctx) and callable(creds) and creds()[0] == role:
        return str(creds()[1])
    if not is_compose(ctx) and role == "app":
        return ctx.stack.secrets["app_db_password"]
    raise StepFailed(
        "leak-db-password", f"no password known for role {role!r}: no app's credentials name it"
    )


@FAULTS("leak-db-password")
def leak_db_password(ctx: DrillContext, role: str = "") -> str:
    """A PostgreSQL role's password leaks (default: the app's role): the attacker, a client the
    drill controls, opens a database session with it on the primary (application_name
    'attacker'); the session is recorded for attacker-session-gone."""
    role = role or default_role(ctx)
    password = current_password(ctx, role)
    register_secret(ctx, f"db_password_{role}", password)
    try:
        conn = ctx.stack.connect(ctx.primary, user=role, password=password)
    except psycopg.OperationalError as exc:
        raise StepFailed(
            "leak-db-password", f"the leaked password of {role} does not log in: {exc}"
        ) from exc
    conn.execute("SET application_name = 'attacker'")
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
    ctx.cleanups.append(conn.close)
    leak = ctx.part(CredentialLeak)
    leak.db_password, leak.attacker_pid, leak.role = password, pid, role
    return f"attacker holds a database session as {role} (pid {pid}) with the leaked password"


@RECOVERY("preserve-evidence", needs=("reference-app",))
def preserve_evidence(ctx: DrillContext) -> str:
    """Copy the app's logs and the audit table into the drill's evidence before anything changes."""

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
def rotate_db_password(ctx: DrillContext, role: str = "") -> str:
    """New password for the role (default: the leaked one, else the app's) in the database; once
    the database accepts it, delivered to every app that logs in as the role, as its stack file
    says: env (the container is recreated with it), file (written in the container, then the
    app's reload: a restart or a signal) or secret (drillkit's copy of the secret file is
    rewritten, the app restarted); each app must answer its health check again. The reference
    stack: the app's secret file (a reload-app step follows). The session logs no statement,
    not even a failing one: PostgreSQL's log would otherwise keep the new password."""
    role = role or default_role(ctx)
    with ctx.stack.connect(ctx.primary) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
            raise StepFailed("rotate-db-password", f"no role {role!r} in the database")
        new = ctx.stack.secrets.generate()
        register_secret(ctx, f"db_password_{role}", new)
        conn.execute("SET log_statement = 'none'")
        conn.execute("SET log_min_error_statement = 'panic'")
        conn.execute("SET log_min_duration_statement = -1")
        conn.execute(
            psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                psycopg.sql.Identifier(role), psycopg.sql.Literal(new)
            )
        )
    ctx.part(DbPasswords).current[role] = new
    ctx.part(BreachResponse).rotated_at_wall = time.time()
    try:
        ctx.stack.connect(ctx.primary, user=role, password=new).close()
    except psycopg.OperationalError as exc:
        raise StepFailed(
            "rotate-db-password", f"the new password of {role} does not log in"
        ) from exc
    if not is_compose(ctx):
        if role == "app":
            ctx.stack.secrets.set("app_db_password", new)
        return f"password of role {role} rotated"
    done = [deliver(ctx, app, cred, new) for app, cred in _deliveries(ctx, role)]
    if not done:
        return f"password of role {role} rotated (no app logs in as {role})"
    return f"password of role {role} rotated; " + "; ".join(done)


def deliver(ctx: DrillContext, app: str, cred: Any, new: str) -> str:
    """Hand an app its new password the way it receives it; then wait for its health check."""
    from drillkit.catalog.processes import wait_app_service

    stack: Any = ctx.stack
    if cred.kind == "env":
        stack.recreate(app, env={cred.target: new})
        how = f"{app} recreated with the new {cred.target}"
    elif cred.kind == "file":
        write_in_service(ctx, app, cred.target, new)
        how = f"{cred.target} rewritten in {app}, " + reload_service(ctx, app, cred.reload)
    elif cred.kind == "secret":
        copy = secret_copy(ctx, app, cred.target)
        path = copy[1] if copy is not None else secret_path(cred.target)
        write_in_service(ctx, app, path, new)
        how = f"secret {cred.target} rewritten, {app} " + reload_service(ctx, app, cred.reload)
    else:
        raise StepFailed("rotate-db-password", f"{app}: unknown delivery {cred.kind!r}")
    wait_app_service(ctx, app, 60)
    return how + ", healthy"


def reload_service(ctx: DrillContext, service: str, reload: Any) -> str:
    """An app's reload as its stack file says: 'restart' (default), or a signal ('HUP',
    {signal: HUP})."""
    sig = reload.get("signal") if isinstance(reload, dict) else reload
    c = ctx.stack.container(service)
    if sig in (None, "", "restart"):
        c.restart(timeout=10)
        return "restarted"
    name = str(sig).upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    c.kill(signal=name)
    return f"sent {name}"


def write_in_service(ctx: DrillContext, service: str, path: str, value: str) -> None:
    """Write a credential file a service reads. A file bind-mounted from the run's own directory
    (drillkit's copy of a secret) is rewritten in place on the host; one in the container's own
    filesystem or a volume through the engine, keeping its owner and mode. A bind mount from
    anywhere else (the team's checkout) is refused: drillkit never writes there."""
    c = ctx.stack.container(service)
    run_dir = Path(ctx.stack.run_dir).resolve()
    for m in c.attrs.get("Mounts") or []:
        if m.get("Destination") == path and m.get("Type") == "bind":
            src = Path(m["Source"]).resolve()
            if not src.is_relative_to(run_dir):
                raise StepFailed(
                    "rotate-db-password",
                    f"{path} in {service} is bound from {src}, outside the run's directory: "
                    "drillkit does not write there (deliver it as a compose secret)",
                )
            with open(src, "r+", encoding="utf-8") as f:  # in place: the bind holds the inode
                f.truncate(0)
                f.write(value + "\n")
            return
    res = ctx.stack.exec(service, ["stat", "-c", "%u %g %a", path], user="root", timeout_s=10)
    if res.exit_code != 0:
        raise StepFailed("rotate-db-password", f"no file {path} in {service}: {res.output[:200]}")
    uid, gid, mode = res.output.split()
    data = (value + "\n").encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(PurePosixPath(path).name)
        info.size, info.uid, info.gid, info.mode = len(data), int(uid), int(gid), int(mode, 8)
        tar.addfile(info, io.BytesIO(data))
    if not c.put_archive(str(PurePosixPath(path).parent), buf.getvalue()):
        raise StepFailed("rotate-db-password", f"could not write {path} in {service}")


@RECOVERY("rotate-signing-secret")
def rotate_signing_secret(ctx: DrillContext) -> str:
    """New token-signing secret: every token signed with the old one stops working (all users are
    logged out, seed 003 'force logout all sessions')."""
    ctx.stack.secrets.rotate("jwt_secret")
    return "signing secret rotated"


@RECOVERY("terminate-sessions")
def terminate_sessions(ctx: DrillContext, role: str = "", started_before: str = "rotation") -> str:
    """pg_terminate_backend() for every session of `role` (default: the leaked one, else the
    app's) that began before the rotation. Fails when there is none to end."""
    role = role or default_role(ctx)
    rotated = ctx.part(BreachResponse).rotated_at_wall
    cutoff = (
        (rotated if rotated is not None else time.time())
        if started_before == "rotation"
        else time.time()
    )
    with ctx.stack.connect(ctx.primary) as conn:
        rows = conn.execute(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s"
            " AND backend_start < to_timestamp(%s) AND pid <> pg_backend_pid()",
            (role, float(cutoff)),
        ).fetchall()
    done = [r[0] for r in rows if r[1]]
    if not done:
        raise StepFailed(
            "terminate-sessions", f"no session of {role} opened before the {started_before} to end"
        )
    return f"terminated {len(done)} sessions of {role}: {done}"


LEAK_APP_NAME = "drill-leak"

ATTACKER_APP_NAME = "attacker"

ATTACKER_ITEM = "attacker"


@dataclass
class IssuedTokens:
    """(email, token) of each session issue-tokens opened before the incident."""

    tokens: list[tuple[str, str]] = field(default_factory=list)


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


@CHECKS("old-db-password-rejected", title="The leaked database password is rejected")
def old_db_password_rejected(ctx: DrillContext) -> str:
    """Logging in to the database with the leaked password fails with an authentication error."""
    leaked, role = ctx.part(CredentialLeak).db_password, ctx.part(CredentialLeak).role
    if leaked is None:
        raise CheckFailed("no leaked password recorded")
    try:
        ctx.stack.connect(ctx.primary, user=role, password=leaked).close()
    except psycopg.OperationalError as exc:
        if "password authentication failed" in str(exc):
            return f"leaked password: 'password authentication failed for user \"{role}\"'"
        raise CheckFailed(f"unexpected error with the leaked password: {exc}") from exc
    raise CheckFailed("the leaked database password still logs in")


@CHECKS("attacker-session-gone", title="The attacker's database session is gone")
def attacker_session_gone(ctx: DrillContext) -> str:
    """The session the attacker opened with the leaked password is no longer connected."""
    pid = ctx.part(CredentialLeak).attacker_pid
    if pid is None:
        raise CheckFailed("no attacker session was recorded")
    rows = ctx.stack.sql(
        ctx.primary,
        f"SELECT pid, usename, application_name FROM pg_stat_activity WHERE pid = {int(pid or 0)}",
    )
    if rows:
        raise CheckFailed(f"the attacker's session (pid {pid}) is still connected: {rows[0]}")
    return f"attacker session pid {pid} is gone"


@CHECKS(
    "old-token-rejected",
    title="The forged token is rejected",
    needs=("reference-app",),
)
def old_token_rejected(ctx: DrillContext) -> str:
    """The token the attacker forged with the leaked signing secret answers 401."""
    r = ctx.app_client().me(str(ctx.part(CredentialLeak).attacker_token))
    if r.status_code != 401:
        raise CheckFailed(f"the forged/old token still answers {r.status_code}")
    return "old token answers 401"


@CHECKS(
    "audit-log-intact",
    title="The audit log preserved before the rotation is intact",
    needs=("reference-app",),
)
def audit_log_intact(ctx: DrillContext) -> str:
    """Every audit row preserved before the rotation is still there."""
    before = ctx.part(BreachResponse).audit_rows_before
    if before is None:
        raise CheckFailed("no audit snapshot was preserved")
    now = ctx.stack.sql(ctx.primary, "SELECT count(*) FROM audit_log")[0][0]
    if now < before:
        raise CheckFailed(f"audit_log has {now} rows, {before} were preserved")
    return f"audit_log has {now} rows (≥ {before} preserved)"
