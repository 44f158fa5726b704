"""Customer account compromise (seed 004 "User account compromise"; Data Breach Recovery: "Secure
compromised accounts, reset security credentials, notify affected users").

An attacker holds one user's password and a session token. The runbook locks that account, revokes
its sessions, forces a password reset (the reset code reaches the user by an email notification)
and records the user's security notification, through the reference app's admin API; every other
user is untouched. The checks prove it from the outside: the attacker's token and password are
refused, the locked user cannot log in until the reset is completed (then can, with the new
password only), the other users' sessions and journeys never noticed, and the notification rows
exist.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

import requests

from drillkit.catalog._common import _sha256, _table
from drillkit.core.context import DrillContext
from drillkit.core.registry import CHECKS, FAULTS, RECOVERY
from drillkit.errors import CheckFailed, StepFailed
from drillkit.stack.seed import PROBE_USER, WRITER_USER, hash_password

COMPROMISED_SECRET = "compromised_user_password"
"""The victim's own password (which the attacker phished), registered as a run secret so that
reporters redact it and the secret scans look for it."""
NOTICE_KIND = "account-compromise"


@dataclass
class AccountCompromise:
    """What compromise-account set up: the victim, the attacker's token, the bystanders' tokens,
    and the database time the compromise began (notifications are compared with it)."""

    user_id: int | None = None
    email: str | None = None
    attacker_token: str | None = None
    bystanders: list[tuple[str, str]] = field(default_factory=list)
    """(email, token) of users logged in before the incident who must stay untouched."""
    db_started_at: _dt.datetime | None = None
    reset_password: str | None = None
    """The new password the user chose when completing the reset (set by the check)."""


def _post(ctx: DrillContext, path: str, body: dict[str, Any] | None = None) -> requests.Response:
    return requests.post(ctx.stack.app_url + path, json=body or {}, timeout=10)


def _login(ctx: DrillContext, email: str, password: str) -> requests.Response:
    return _post(ctx, "/api/auth/login", {"email": email, "password": password})


def _me(ctx: DrillContext, token: str) -> requests.Response:
    return requests.get(
        ctx.stack.app_url + "/api/auth/me",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def _admin(ctx: DrillContext, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    r = requests.request(
        method,
        ctx.stack.app_url + path,
        json=body,
        headers={"Authorization": f"Bearer {ctx.stack.secrets['admin_token']}"},
        timeout=10,
    )
    if r.status_code != 200:
        raise StepFailed(path, f"{method} {path} answered {r.status_code}: {r.text[:200]}")
    return r.json()


def _victim(ctx: DrillContext, step: str) -> AccountCompromise:
    incident = ctx.part(AccountCompromise)
    if incident.user_id is None or incident.email is None:
        raise StepFailed(step, "no compromised account was recorded (compromise-account)")
    return incident


@FAULTS("compromise-account", needs=("reference-app",))
def compromise_account(ctx: DrillContext, bystanders: int = 3) -> str:
    """One user (the third seeded user after the probe user) has a password of their own, which an
    attacker phished: the attacker logs in with it through the API, and uses the token (reads the
    user's profile, places an order as them). `bystanders` other users log in too; their tokens
    must keep working. The probe user's journeys run throughout."""
    with ctx.stack.connect(ctx.primary) as conn:
        rows = conn.execute(
            "SELECT id, email FROM users WHERE email <> ALL(%s) ORDER BY id LIMIT %s",
            ([PROBE_USER, WRITER_USER], int(bystanders) + 1),
        ).fetchall()
    if len(rows) < bystanders + 1:
        raise StepFailed("compromise-account", f"{len(rows)} users seeded, {bystanders + 1} needed")
    (user_id, email), others = rows[-1], rows[:-1]
    password = ctx.stack.secrets.generate()
    ctx.stack.secrets.set(COMPROMISED_SECRET, password)
    with ctx.stack.connect(ctx.primary) as conn:
        conn.execute(
            "UPDATE users SET password_hash = %s WHERE id = %s", (hash_password(password), user_id)
        )
        started = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    incident = ctx.part(AccountCompromise)
    incident.user_id, incident.email, incident.db_started_at = int(user_id), email, started
    r = _login(ctx, email, password)
    if r.status_code != 200:
        raise StepFailed("compromise-account", f"the attacker's login answered {r.status_code}")
    token = str(r.json()["token"])
    incident.attacker_token = token
    if _me(ctx, token).status_code != 200:
        raise StepFailed("compromise-account", "the attacker's token is refused before the runbook")
    order = requests.post(
        ctx.stack.app_url + "/api/orders",
        json={"item": "attacker", "amount_cents": 99_900, "payload": "gift card"},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"attacker-{ctx.clock()}"},
        timeout=10,
    )
    if order.status_code != 201:
        raise StepFailed("compromise-account", f"the attacker's order answered {order.status_code}")
    user_password = ctx.stack.secrets["user_password"]
    for other_id, other in others:
        r = _login(ctx, other, user_password)
        if r.status_code != 200:
            raise StepFailed("compromise-account", f"bystander {other_id} login: {r.status_code}")
        incident.bystanders.append((other, str(r.json()["token"])))
    ctx.figure("compromised_user_id", int(user_id))
    ctx.figure("bystanders", len(incident.bystanders))
    ctx.evidence(
        "account compromise: attacker activity (token SHA-256 prefix, order)",
        f"user {user_id}\ttoken {_sha256(token)[:16]}\torder {order.json().get('id')}",
    )
    return (
        f"attacker logged in as user {user_id} with their password and placed order "
        f"{order.json().get('id')}; {len(incident.bystanders)} other users hold sessions"
    )


@RECOVERY("lock-account", needs=("reference-app",))
def lock_account(ctx: DrillContext, reason: str = "account compromise") -> str:
    """Lock the compromised account: no login, every token of it refused (the admin API)."""
    incident = _victim(ctx, "lock-account")
    _admin(ctx, "POST", f"/api/admin/users/{incident.user_id}/lock", {"reason": reason})
    return f"user {incident.user_id} locked ({reason})"


@RECOVERY("revoke-user-sessions", needs=("reference-app",))
def revoke_user_sessions(ctx: DrillContext) -> str:
    """Revoke every session of the compromised user only (its session generation moves on; no
    global secret rotation: the other users stay logged in)."""
    incident = _victim(ctx, "revoke-user-sessions")
    out = _admin(ctx, "POST", f"/api/admin/users/{incident.user_id}/revoke-sessions")
    return f"user {incident.user_id}: sessions revoked (generation {out['session_generation']})"


@RECOVERY("force-password-reset", needs=("reference-app",))
def force_password_reset(ctx: DrillContext) -> str:
    """Void the user's password and send them a reset code by email (the app's outbox)."""
    incident = _victim(ctx, "force-password-reset")
    out = _admin(ctx, "POST", f"/api/admin/users/{incident.user_id}/force-reset")
    return f"user {incident.user_id}: password voided, reset code sent (notification {out['notification_id']})"


def compromise_notice(ctx: DrillContext) -> tuple[str, str]:
    """The affected user's notification (subject, message), filled from the drill record."""
    fault_at = ctx.result.markers.get("fault")
    when = (
        _dt.datetime.fromtimestamp(ctx.result.wall(fault_at), _dt.UTC).strftime(
            "%Y-%m-%d %H:%M:%S UTC"
        )
        if fault_at is not None
        else "recently"
    )
    subject = "Security notice: your account was accessed by someone else"
    message = (
        f"Reference {ctx.result.run_id}. On {when} someone signed in to your account with your "
        "password. We have locked the account, signed out every session and reset your password: "
        "follow the reset email to choose a new one. Review your recent orders and tell us about "
        "any you did not place."
    )
    return subject, message


@RECOVERY("notify-user", needs=("reference-app",))
def notify_user(ctx: DrillContext, channel: str = "email") -> str:
    """Seed 004 "Notify affected users": record the security notice in the app's outbox."""
    incident = _victim(ctx, "notify-user")
    subject, message = compromise_notice(ctx)
    out = _admin(
        ctx,
        "POST",
        f"/api/admin/users/{incident.user_id}/notify",
        {"channel": channel, "kind": NOTICE_KIND, "subject": subject, "message": message},
    )
    ctx.evidence("notification sent to the affected user", f"{channel}: {subject}\n{message}")
    return f"user {incident.user_id} notified by {channel} (notification {out['notification_id']})"


def _refused(r: requests.Response, what: str) -> int:
    if r.status_code >= 500:
        raise CheckFailed(f"{what}: the app answered {r.status_code} (cannot tell if refused)")
    if r.status_code == 200:
        raise CheckFailed(f"{what} still works (200)")
    return r.status_code


@CHECKS(
    "attacker-token-rejected", title="The attacker's token is refused", needs=("reference-app",)
)
def attacker_token_rejected(ctx: DrillContext) -> str:
    """The token the attacker obtained answers 401 on /api/auth/me and on an order."""
    incident = ctx.part(AccountCompromise)
    if incident.attacker_token is None:
        raise CheckFailed("no attacker token was recorded")
    code = _refused(_me(ctx, incident.attacker_token), "the attacker's token")
    order = requests.post(
        ctx.stack.app_url + "/api/orders",
        json={"item": "attacker", "amount_cents": 1, "payload": "after the runbook"},
        headers={
            "Authorization": f"Bearer {incident.attacker_token}",
            "Idempotency-Key": f"attacker-late-{ctx.clock()}",
        },
        timeout=10,
    )
    _refused(order, "an order with the attacker's token")
    return f"the attacker's token answers {code}; an order with it {order.status_code}"


@CHECKS(
    "compromised-password-rejected",
    title="The attacker's password no longer logs in",
    needs=("reference-app",),
)
def compromised_password_rejected(ctx: DrillContext) -> str:
    """A login with the phished password is refused (401 or 403)."""
    incident = ctx.part(AccountCompromise)
    if incident.email is None:
        raise CheckFailed("no compromised account was recorded")
    code = _refused(
        _login(ctx, incident.email, ctx.stack.secrets[COMPROMISED_SECRET]),
        "the attacker's password",
    )
    return f"login with the phished password answers {code}"


def _reset_code(ctx: DrillContext, user_id: int) -> str | None:
    """The user reads their mailbox: the newest unexpired password-reset email's code."""
    rows = ctx.stack.sql(
        ctx.primary,
        "SELECT message FROM notifications WHERE kind = 'password-reset' AND channel = 'email'"
        f" AND user_id = {int(user_id)} ORDER BY id DESC LIMIT 1",
    )
    if not rows:
        return None
    _, _, code = str(rows[0][0]).rpartition("Reset code: ")
    return code.strip() or None


@CHECKS(
    "locked-until-reset",
    title="The locked user cannot log in until the reset, then can",
    needs=("reference-app",),
)
def locked_until_reset(ctx: DrillContext) -> str:
    """While the reset is pending every login of the user is refused; the user then completes the
    reset with the code from their email, logs in with the new password (accepted), and the old
    password stays refused."""
    incident = ctx.part(AccountCompromise)
    if incident.email is None or incident.user_id is None:
        raise CheckFailed("no compromised account was recorded")
    old = ctx.stack.secrets[COMPROMISED_SECRET]
    before = _refused(_login(ctx, incident.email, old), "login before the reset")
    code = _reset_code(ctx, incident.user_id)
    if code is None:
        raise CheckFailed("no password-reset email reached the user: the password was never reset")
    new_password = ctx.stack.secrets.generate()
    ctx.stack.secrets.set("reset_user_password", new_password)
    incident.reset_password = new_password
    r = _post(ctx, "/api/auth/reset", {"code": code, "password": new_password})
    if r.status_code != 200:
        raise CheckFailed(f"completing the reset answered {r.status_code}: {r.text[:120]}")
    r = _login(ctx, incident.email, new_password)
    if r.status_code != 200:
        raise CheckFailed(f"login with the new password answered {r.status_code}")
    if _me(ctx, str(r.json()["token"])).status_code != 200:
        raise CheckFailed("the token from the new password is refused")
    after = _refused(_login(ctx, incident.email, old), "the old password after the reset")
    if (
        _post(ctx, "/api/auth/reset", {"code": code, "password": new_password + "x"}).status_code
        != 400
    ):
        raise CheckFailed("the reset code works a second time")
    return (
        f"login before the reset {before}; reset completed; new password logs in; "
        f"old password {after}; the code is spent"
    )


@CHECKS(
    "other-users-untouched",
    title="Every other user is untouched",
    needs=("reference-app",),
)
def other_users_untouched(ctx: DrillContext) -> str:
    """The bystanders' tokens from before the incident still work, they log in, no other account
    was locked, revoked or reset, and the probe user's journeys passed throughout (from the fault
    to the end, not only after recovery)."""
    incident = ctx.part(AccountCompromise)
    if not incident.bystanders:
        raise CheckFailed("no bystander sessions were recorded")
    broken = [e for e, t in incident.bystanders if _me(ctx, t).status_code != 200]
    if broken:
        raise CheckFailed(f"{len(broken)} bystander tokens were revoked: {broken}")
    password = ctx.stack.secrets["user_password"]
    refused = [e for e, _ in incident.bystanders if _login(ctx, e, password).status_code != 200]
    if refused:
        raise CheckFailed(f"{len(refused)} bystanders cannot log in: {refused}")
    touched = ctx.stack.sql(
        ctx.primary,
        "SELECT user_id FROM account_security WHERE user_id <> "
        f"{int(incident.user_id or 0)} ORDER BY user_id",
    )
    if touched:
        raise CheckFailed(f"other accounts were changed: {[r[0] for r in touched]}")
    t_fault = ctx.result.markers.get("fault", 0.0)
    journeys = [s for s in ctx.probes.snapshot() if s.probe == "journey" and s.t >= t_fault]
    failed = [s for s in journeys if not s.ok]
    if failed or len(journeys) < 3:
        raise CheckFailed(
            f"{len(failed)} of {len(journeys)} journeys failed since the fault"
            + (f": {failed[0].error}" if failed else "")
        )
    return (
        f"{len(incident.bystanders)} bystander sessions and logins work; no other account "
        f"changed; {len(journeys)} journeys passed since the fault"
    )


@CHECKS(
    "user-notified",
    title="The affected user was notified",
    needs=("reference-app",),
)
def user_notified(ctx: DrillContext) -> str:
    """A security notice for the compromised user is in the outbox, written after the compromise
    began, and no other user got one."""
    incident = ctx.part(AccountCompromise)
    if incident.user_id is None or incident.db_started_at is None:
        raise CheckFailed("no compromised account was recorded")
    with ctx.stack.connect(ctx.primary) as conn:
        rows = conn.execute(
            "SELECT id, user_id, at, channel, kind, subject FROM notifications"
            " WHERE at >= %s ORDER BY id",
            (incident.db_started_at,),
        ).fetchall()
    ctx.evidence(
        "notifications sent since the compromise (outbox; message text not copied)",
        _table(rows, ("id", "user_id", "at", "channel", "kind", "subject")),
    )
    mine = [r for r in rows if r[1] == incident.user_id and r[4] == NOTICE_KIND]
    others = [r for r in rows if r[1] != incident.user_id]
    if not mine:
        raise CheckFailed(f"no {NOTICE_KIND} notification for user {incident.user_id}")
    if others:
        raise CheckFailed(f"{len(others)} notifications went to other users")
    return f"user {incident.user_id} notified: {mine[0][5]!r} by {mine[0][3]} at {mine[0][2]}"
