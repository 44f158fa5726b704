"""Sessions and credentials: leaked passwords and signing secrets, rotation, session termination."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import psycopg

from drillkit.catalog._common import _sha256
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


@dataclass
class BreachResponse:
    """The breach runbook's own records: audit rows preserved, when the password was rotated."""

    audit_rows_before: int | None = None
    rotated_at_wall: float | None = None


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


@RECOVERY("preserve-evidence")
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
def rotate_db_password(ctx: DrillContext, role: str = "app") -> str:
    """New password for the role in the database, then in the app's secret file (only once the
    database accepted it). The session logs no statement, not even a failing one: PostgreSQL's
    log would otherwise keep the new password of a failed ALTER ROLE."""
    new = ctx.stack.secrets.generate()
    with ctx.stack.connect(ctx.primary) as conn:
        conn.execute("SET log_statement = 'none'")
        conn.execute("SET log_min_error_statement = 'panic'")
        conn.execute("SET log_min_duration_statement = -1")
        conn.execute(
            psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                psycopg.sql.Identifier(role), psycopg.sql.Literal(new)
            )
        )
    ctx.stack.secrets.set("app_db_password", new)
    ctx.part(BreachResponse).rotated_at_wall = time.time()
    return f"password of role {role} rotated"


@RECOVERY("rotate-signing-secret")
def rotate_signing_secret(ctx: DrillContext) -> str:
    """New token-signing secret: every token signed with the old one stops working (all users are
    logged out, seed 003 'force logout all sessions')."""
    ctx.stack.secrets.rotate("jwt_secret")
    return "signing secret rotated"


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
    leaked = ctx.part(CredentialLeak).db_password
    if leaked is None:
        raise CheckFailed("no leaked password recorded")
    try:
        ctx.stack.connect(ctx.primary, user="app", password=leaked).close()
    except psycopg.OperationalError as exc:
        if "password authentication failed" in str(exc):
            return "leaked password: 'password authentication failed for user \"app\"'"
        raise CheckFailed(f"unexpected error with the leaked password: {exc}") from exc
    raise CheckFailed("the leaked database password still logs in")


@CHECKS("attacker-session-gone", title="The attacker's database session is gone")
def attacker_session_gone(ctx: DrillContext) -> str:
    """The session the attacker opened with the leaked password is no longer connected."""
    pid = ctx.part(CredentialLeak).attacker_pid
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


@CHECKS("audit-log-intact", title="The audit log preserved before the rotation is intact")
def audit_log_intact(ctx: DrillContext) -> str:
    """Every audit row preserved before the rotation is still there."""
    before = ctx.part(BreachResponse).audit_rows_before
    if before is None:
        raise CheckFailed("no audit snapshot was preserved")
    now = ctx.stack.sql(ctx.primary, "SELECT count(*) FROM audit_log")[0][0]
    if now < before:
        raise CheckFailed(f"audit_log has {now} rows, {before} were preserved")
    return f"audit_log has {now} rows (≥ {before} preserved)"
