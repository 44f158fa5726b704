"""drillkit's reference app: the small HTTP API that chaos drills run against.

One file, Python 3.11 standard library plus psycopg 3.1 (Debian bookworm's ``python3-psycopg``).
It serves health, login with HMAC-signed tokens, idempotent orders with an audit trail in the
database and in an fsync'ed JSON-lines file, and an admin replay of that file for the runbooks'
"Data Reconciliation" step after a point-in-time restore.

Payments (when a provider is configured): ``POST /api/orders/<id>/pay`` charges the order at the
configured payment provider (one payment per order, one idempotency key per payment), with a
bounded timeout. When the provider fails or does not answer in time the order is kept and the
payment queued as ``pending`` (202): the app degrades, it never loses the order or answers 5xx for
the provider's failure. Signed ``charge.succeeded`` webhooks from the provider mark payments
captured. Admin endpoints verify pending payments against the ledger of the provider they were
attempted at and process them at the currently configured provider (the runbook's "switch to the
backup provider, verify, process pending"). The provider is read from a config file (SIGHUP).

Configuration comes from environment variables and from files that are re-read on SIGHUP (see
``Settings`` and ``RuntimeConfig``). Every database call is bounded in time: a request answers
within about ``DB_STATEMENT_TIMEOUT_MS`` + 0.5 s whatever the database does (down, frozen,
partitioned, failed over).
"""

import base64
import binascii
import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import json
import math
import os
import re
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeAlias, TypeVar
from urllib.parse import quote as urllib_quote
from urllib.parse import urlsplit

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg.pq import TransactionStatus
    from psycopg.types.json import Jsonb
except ImportError:  # the unit tests import this module for its pure functions only
    psycopg = None  # type: ignore[assignment]

T = TypeVar("T")
DbConnection: TypeAlias = "psycopg.Connection[Any]"

TOKEN_TTL_S = 3600
PBKDF2_ALGORITHM = "pbkdf2_sha256"
PBKDF2_DKLEN = 32
PBKDF2_MAX_ITERATIONS = 10_000_000
MAX_BODY_BYTES = 1 << 20
MAX_IDEMPOTENCY_KEY_LEN = 255
INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1
DEFAULT_DB_PORT = 5432
POOL_MAX_IDLE = 8
POOL_MAX_OPEN = 32
REPLAY_BUDGET_S = 60.0
"""The admin replay is a runbook step, not a probe: it may take longer than a request budget."""

MAINTENANCE_MESSAGE = "maintenance mode: writes are refused"
DEFAULT_PROVIDER_PORT = 8090
PAYMENT_KEY_PREFIX = "pay:"
PAYMENT_BATCH_BUDGET_S = 60.0
"""Verifying or processing the pending payments is a runbook step: it may outlast a request."""


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class ValidationError(ValueError):
    """A request (body, header, parameter) that the app refuses with 400."""


class HttpError(Exception):
    """Ends a request with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra or {}


class DbUnavailableError(Exception):
    """No usable writable database connection within the time budget."""


class NoWritableDatabaseError(DbUnavailableError):
    """Every configured host failed (each failure already logged and counted)."""


class PoolBusyError(DbUnavailableError):
    """Every connection slot stayed in use for the whole budget (the database may be fine)."""


# --------------------------------------------------------------------------------------------
# Passwords and tokens (pure; the harness's seeder duplicates the password format)
# --------------------------------------------------------------------------------------------


def hash_password(password: str, salt: bytes | None = None, iterations: int = 1000) -> str:
    """Return ``pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>``.

    The PBKDF2 salt is the raw salt bytes (the hex in the string decodes to them); the password
    is UTF-8; the derived key is 32 bytes of HMAC-SHA256. A random 16-byte salt when none given.
    """
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    if salt is None:
        salt = os.urandom(16)
    derived = hashlib.pbkdf2_hmac(
        "sha256", password.encode("utf-8"), salt, iterations, dklen=PBKDF2_DKLEN
    )
    return f"{PBKDF2_ALGORITHM}${iterations}${salt.hex()}${derived.hex()}"


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded``; False on a mismatch or a malformed hash."""
    parts = encoded.split("$") if isinstance(encoded, str) else []
    if len(parts) != 4 or parts[0] != PBKDF2_ALGORITHM or not parts[1].isdigit():
        return False
    iterations = int(parts[1])
    if not 1 <= iterations <= PBKDF2_MAX_ITERATIONS:
        return False
    try:
        salt = bytes.fromhex(parts[2])
        expected = bytes.fromhex(parts[3])
    except ValueError:
        return False
    derived = hashlib.pbkdf2_hmac(
        "sha256", password.encode("utf-8"), salt, iterations, dklen=PBKDF2_DKLEN
    )
    return hmac.compare_digest(derived, expected)


_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    if not _B64URL_RE.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _token_signature(signed_part: str, secret: bytes) -> str:
    return _b64url_encode(hmac.new(secret, signed_part.encode("utf-8"), hashlib.sha256).digest())


def sign_token(payload: dict[str, Any], secret: bytes) -> str:
    """``<b64url(json payload)>.<b64url(hmac_sha256(secret, first part))>``, base64 unpadded."""
    if not secret:
        raise ValueError("empty signing secret")
    body = _b64url_encode(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_token_signature(body, secret)}"


def verify_token(token: str, secret: bytes, *, now: float | None = None) -> dict[str, Any] | None:
    """The payload of a well-formed, correctly signed, unexpired token; else None.

    A token is expired once ``now >= exp`` (``now`` in unix seconds, default the current time);
    a payload without a numeric ``exp`` is refused.
    """
    if not secret or not isinstance(token, str):
        return None
    parts = token.split(".")
    if len(parts) != 2:
        return None
    body, signature = parts
    expected = _token_signature(body, secret)
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        return None
    try:
        payload = json.loads(_b64url_decode(body))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(payload, dict):
        return None
    exp = payload.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    if (time.time() if now is None else now) >= exp:
        return None
    return payload


def issue_token(
    user_id: int, email: str, secret: bytes, *, now: float | None = None, generation: int = 0
) -> str:
    """A login token: ``{"sub", "email", "iat", "exp": iat + 3600}``, times in unix seconds, and
    ``"gen"``: the user's session generation when it is not 0 (see ``account_session_refusal``)."""
    iat = int(time.time() if now is None else now)
    payload: dict[str, Any] = {"sub": user_id, "email": email, "iat": iat, "exp": iat + TOKEN_TTL_S}
    if generation:
        payload["gen"] = generation
    return sign_token(payload, secret)


# --------------------------------------------------------------------------------------------
# Request parsing and validation (pure)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderInput:
    item: str
    amount_cents: int
    payload: str


@dataclass(frozen=True)
class Principal:
    user_id: int
    email: str
    generation: int = 0
    """The session generation the token was issued in (its ``gen`` claim; 0 when absent)."""


def parse_json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValidationError("body must be valid JSON") from exc


def _require_text(body: Mapping[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string")
    if "\x00" in value:
        raise ValidationError(f"{field} must not contain NUL characters")
    return value


def validate_login_body(body: Any) -> tuple[str, str]:
    """``(email, password)`` from a login body; both must be strings, the email non-empty."""
    if not isinstance(body, dict):
        raise ValidationError("body must be a JSON object")
    email = _require_text(body, "email")
    password = _require_text(body, "password")
    if not email:
        raise ValidationError("email must not be empty")
    return email, password


def validate_order_body(body: Any) -> OrderInput:
    """An order body: ``item`` str, ``amount_cents`` int in [0, 2**31 - 1], ``payload`` str."""
    if not isinstance(body, dict):
        raise ValidationError("body must be a JSON object")
    item = _require_text(body, "item")
    payload = _require_text(body, "payload")
    amount = body.get("amount_cents")
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValidationError("amount_cents must be an integer")
    if not 0 <= amount <= INT4_MAX:
        raise ValidationError(f"amount_cents must be between 0 and {INT4_MAX}")
    return OrderInput(item=item, amount_cents=amount, payload=payload)


def validate_idempotency_key(value: str | None) -> str:
    """The Idempotency-Key header, stripped; required, at most 255 characters."""
    key = (value or "").strip()
    if not key:
        raise ValidationError("Idempotency-Key header is required")
    if len(key) > MAX_IDEMPOTENCY_KEY_LEN or "\x00" in key:
        raise ValidationError(
            f"Idempotency-Key must be at most {MAX_IDEMPOTENCY_KEY_LEN} characters, without NUL"
        )
    return key


def parse_bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def principal_from_token(token: str | None, secret: bytes) -> Principal | None:
    if token is None:
        return None
    payload = verify_token(token, secret)
    if payload is None:
        return None
    sub, email = payload.get("sub"), payload.get("email")
    if isinstance(sub, bool) or not isinstance(sub, int) or not isinstance(email, str):
        return None
    gen = payload.get("gen", 0)
    if isinstance(gen, bool) or not isinstance(gen, int) or gen < 0:
        return None
    return Principal(user_id=sub, email=email, generation=gen)


# --------------------------------------------------------------------------------------------
# Account security (pure): lock, session revocation, forced password reset, notifications
# --------------------------------------------------------------------------------------------

RESET_TOKEN_TTL_S = 3600
MIN_PASSWORD_LEN = 8
MAX_NOTIFICATION_TEXT = 4000
RESET_REQUIRED_HASH = "!reset-required"
"""What a forced reset leaves in ``users.password_hash``: no password verifies against it."""
USER_ADMIN_ACTIONS = ("lock", "revoke-sessions", "force-reset", "notify", "security")


@dataclass(frozen=True)
class AccountState:
    """A user's row of ``account_security`` (no row: not locked, generation 0, no reset)."""

    locked: bool = False
    generation: int = 0
    reset_pending: bool = False


def account_session_refusal(state: AccountState | None, principal: Principal) -> str | None:
    """Why a correctly signed token of ``principal`` is refused by its account's security state
    (locked; or issued in an older session generation: its sessions were revoked), or None."""
    state = state or AccountState()
    if state.locked:
        return "account locked"
    if principal.generation != state.generation:
        return "session revoked"
    return None


def reset_token_hash(token: str) -> str:
    """How a reset code is stored: its SHA-256 (the code itself only reaches the user)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def validate_reset_body(body: Any) -> tuple[str, str]:
    """``(code, new password)`` of a password reset; the password at least 8 characters."""
    if not isinstance(body, dict):
        raise ValidationError("body must be a JSON object")
    code = _require_text(body, "code")
    password = _require_text(body, "password")
    if not code:
        raise ValidationError("code must not be empty")
    if len(password) < MIN_PASSWORD_LEN:
        raise ValidationError(f"password must be at least {MIN_PASSWORD_LEN} characters")
    return code, password


def validate_notify_body(body: Any) -> tuple[str, str, str, str]:
    """``(channel, kind, subject, message)`` of a user notification; each a bounded string,
    channel one of email/app/sms (seed 004's user notification channels)."""
    if not isinstance(body, dict):
        raise ValidationError("body must be a JSON object")
    channel = body.get("channel", "email")
    if channel not in ("email", "app", "sms"):
        raise ValidationError("channel must be one of email, app, sms")
    fields = [_require_text(body, name) for name in ("kind", "subject", "message")]
    for name, value in zip(("kind", "subject", "message"), fields, strict=True):
        if not value or len(value) > MAX_NOTIFICATION_TEXT:
            raise ValidationError(f"{name} must be 1..{MAX_NOTIFICATION_TEXT} characters")
    return channel, fields[0], fields[1], fields[2]


_USER_ADMIN_RE = re.compile(r"/api/admin/users/([0-9]{1,19})/([a-z-]+)")


def parse_user_admin_path(path: str) -> tuple[int, str] | None:
    """``(user id, action)`` of ``/api/admin/users/<id>/<action>``; None for anything else."""
    match = _USER_ADMIN_RE.fullmatch(path)
    if match is None or match.group(2) not in USER_ADMIN_ACTIONS:
        return None
    user_id = int(match.group(1))
    return (user_id, match.group(2)) if 0 < user_id <= INT8_MAX else None


_ORDER_PATH_RE = re.compile(r"/api/orders/([0-9]{1,19})")


def parse_order_id(path: str) -> int | None:
    """The id of ``/api/orders/<id>`` when it is a bigint; else None."""
    match = _ORDER_PATH_RE.fullmatch(path)
    if match is None:
        return None
    order_id = int(match.group(1))
    return order_id if 0 < order_id <= INT8_MAX else None


def parse_timestamp(value: str) -> datetime:
    """An aware datetime from ISO-8601 (``Z`` or an offset; a naive time is taken as UTC)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("timestamp must be a non-empty ISO-8601 string")
    parsed = datetime.fromisoformat(value.strip())
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 in UTC with microseconds and a ``Z``: ``2026-11-23T16:41:00.123456Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_since(body: Any) -> datetime:
    if not isinstance(body, dict) or not isinstance(body.get("since"), str):
        raise ValidationError('body must be a JSON object with "since" (ISO-8601 timestamp)')
    try:
        return parse_timestamp(body["since"])
    except ValueError as exc:
        raise ValidationError(f"since is not an ISO-8601 timestamp: {exc}") from exc


_REPLAY_DETAIL_FIELDS: dict[str, type] = {
    "idempotency_key": str,
    "user_id": int,
    "item": str,
    "amount_cents": int,
    "payload": str,
}


def select_replay_records(
    lines: Iterable[str], since: datetime
) -> tuple[list[dict[str, Any]], int]:
    """The ``order.create`` records of an audit file whose ``at`` is >= ``since``, in file order.

    Returns ``(records, skipped)``: ``skipped`` counts the lines that could not be used (not
    JSON, no parseable ``at``, or a detail without the fields a re-insert needs), e.g. a torn
    last line.
    """
    records: list[dict[str, Any]] = []
    skipped = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
            if record.get("action") != "order.create":
                continue
            at = parse_timestamp(record.get("at"))
            detail = record.get("detail")
            if not isinstance(detail, dict) or not all(
                isinstance(detail.get(name), kind) and not isinstance(detail.get(name), bool)
                for name, kind in _REPLAY_DETAIL_FIELDS.items()
            ):
                raise ValueError("detail lacks order fields")
        except (ValueError, TypeError):
            skipped += 1
            continue
        if at >= since:
            records.append(record)
    return records, skipped


# --------------------------------------------------------------------------------------------
# Payments (pure)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderTarget:
    """A payment provider's address on the stack's network."""

    host: str
    port: int = DEFAULT_PROVIDER_PORT

    @property
    def name(self) -> str:
        """How payments record it: the host, with the port only when it is not the default."""
        return self.host if self.port == DEFAULT_PROVIDER_PORT else f"{self.host}:{self.port}"


_PROVIDER_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})")


def parse_provider(text: str) -> ProviderTarget:
    """The payment_provider file: one ``host`` or ``host:port`` (e.g. ``provider-backup``)."""
    entry = text.strip()
    host, sep, port_text = entry.partition(":")
    if not _PROVIDER_RE.fullmatch(host):
        raise ValueError(f"bad payment provider host {host!r}")
    if not sep:
        return ProviderTarget(host)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in payment provider {entry!r}")
    return ProviderTarget(host, int(port_text))


_PAY_PATH_RE = re.compile(r"/api/orders/([0-9]{1,19})/pay")


def parse_pay_path(path: str) -> int | None:
    """The order id of ``/api/orders/<id>/pay`` when it is a bigint; else None."""
    match = _PAY_PATH_RE.fullmatch(path)
    if match is None:
        return None
    order_id = int(match.group(1))
    return order_id if 0 < order_id <= INT8_MAX else None


def payment_key(order_key: str) -> str:
    """The idempotency key of an order's payment at the providers: stable for the order, so every
    retry of the same payment at the same provider is the same charge."""
    return PAYMENT_KEY_PREFIX + order_key


def webhook_signature(secret: bytes, body: bytes) -> str:
    """``sha256=<hex of HMAC-SHA256(secret, body)>``: the X-Provider-Signature of a webhook."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_webhook_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    if not secret or not header:
        return False
    return hmac.compare_digest(webhook_signature(secret, body).encode(), header.strip().encode())


@dataclass(frozen=True)
class ChargeInfo:
    """A succeeded charge as a provider reports it."""

    id: str
    idempotency_key: str
    amount_cents: int
    provider: str


def parse_charge(body: Any) -> ChargeInfo:
    """A provider's charge object; only a ``succeeded`` one with every field is accepted."""
    if not isinstance(body, dict):
        raise ValueError("charge must be a JSON object")
    charge_id, key, amount = body.get("id"), body.get("idempotency_key"), body.get("amount_cents")
    provider = body.get("provider")
    if not isinstance(charge_id, str) or not charge_id or not isinstance(key, str) or not key:
        raise ValueError("charge lacks id or idempotency_key")
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValueError("charge lacks an integer amount_cents")
    if not isinstance(provider, str) or not provider:
        raise ValueError("charge lacks its provider")
    if body.get("status") != "succeeded":
        raise ValueError(f"charge status is {body.get('status')!r}, not 'succeeded'")
    return ChargeInfo(id=charge_id, idempotency_key=key, amount_cents=amount, provider=provider)


def validate_webhook_body(body: Any) -> ChargeInfo:
    """A ``charge.succeeded`` webhook's charge."""
    if not isinstance(body, dict) or body.get("type") != "charge.succeeded":
        raise ValidationError('webhook must be a JSON object of type "charge.succeeded"')
    try:
        return parse_charge(body.get("data"))
    except ValueError as exc:
        raise ValidationError(f"webhook data: {exc}") from exc


def succeeded_charge(listing: Any, key: str) -> ChargeInfo | None:
    """The succeeded charge for ``key`` in a provider's ``GET /v1/charges`` answer, if any."""
    data = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(data, list):
        raise ValueError("charge listing has no data list")
    for item in data:
        with contextlib.suppress(ValueError):
            charge = parse_charge(item)
            if charge.idempotency_key == key:
                return charge
    return None


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DbHost:
    host: str
    port: int = DEFAULT_DB_PORT


def parse_hosts(text: str, default_port: int = DEFAULT_DB_PORT) -> tuple[DbHost, ...]:
    """Hosts from the db_hosts file: one line, comma-separated, e.g. ``primary,replica``.

    An entry may carry its own port (``host:port``); otherwise ``default_port``. Blank entries
    are ignored; an empty list is an error.
    """
    hosts: list[DbHost] = []
    for raw in text.replace("\n", ",").split(","):
        entry = raw.strip()
        if not entry:
            continue
        host, port = entry, default_port
        if entry.count(":") == 1:
            host, _, port_text = entry.partition(":")
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ValueError(f"bad port in db host entry {entry!r}")
            port = int(port_text)
        if not host:
            raise ValueError(f"empty host name in db host entry {entry!r}")
        hosts.append(DbHost(host=host, port=port))
    if not hosts:
        raise ValueError("no database host configured")
    return tuple(hosts)


def _env_int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    """What the environment says; fixed for the life of the process."""

    host: str
    port: int
    db_name: str
    db_hosts_file: str
    db_user_file: str
    db_password_file: str
    secret_file: str
    admin_token_file: str
    maintenance_file: str
    audit_file: str
    connect_timeout_s: int
    statement_timeout_ms: int
    # Each DNS lookup and each TCP SYN of a database connect gets this long, the SYN retried
    # within the connect timeout. Docker's embedded DNS answers a name it knows within
    # milliseconds and never answers one it does not (a drill network is internal: no upstream),
    # and a SYN sent while a restarted container's network comes up is lost; the kernel resends
    # it only after 1 s. While a database container restarts, either held a request for the whole
    # connect timeout, failing up to a second after the database was back.
    handshake_timeout_ms: int = 250
    payment_provider_file: str = "/run/drillkit/config/payment_provider"
    webhook_secret_file: str = "/run/drillkit/secrets/payments_webhook_secret"
    payment_timeout_ms: int = 1000

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        return cls(
            host=env.get("APP_HOST", "0.0.0.0"),
            port=_env_int(env, "APP_PORT", 8080, 1),
            db_name=env.get("DB_NAME", "app"),
            db_hosts_file=env.get("DB_HOSTS_FILE", "/run/drillkit/config/db_hosts"),
            db_user_file=env.get("DB_USER_FILE", "/run/drillkit/secrets/app_db_user"),
            db_password_file=env.get("DB_PASSWORD_FILE", "/run/drillkit/secrets/app_db_password"),
            secret_file=env.get("SECRET_FILE", "/run/drillkit/secrets/jwt_secret"),
            admin_token_file=env.get("ADMIN_TOKEN_FILE", "/run/drillkit/secrets/admin_token"),
            maintenance_file=env.get("MAINTENANCE_FILE", "/run/drillkit/config/maintenance"),
            audit_file=env.get("AUDIT_FILE", "/var/log/app/audit.jsonl"),
            connect_timeout_s=_env_int(env, "DB_CONNECT_TIMEOUT_S", 1, 1),
            statement_timeout_ms=_env_int(env, "DB_STATEMENT_TIMEOUT_MS", 2000, 1),
            handshake_timeout_ms=_env_int(env, "DB_HANDSHAKE_TIMEOUT_MS", 250, 1),
            payment_provider_file=env.get(
                "PAYMENT_PROVIDER_FILE", "/run/drillkit/config/payment_provider"
            ),
            webhook_secret_file=env.get(
                "WEBHOOK_SECRET_FILE", "/run/drillkit/secrets/payments_webhook_secret"
            ),
            payment_timeout_ms=_env_int(env, "PAYMENT_TIMEOUT_MS", 1000, 1),
        )

    @property
    def request_db_budget_s(self) -> float:
        """Wall-clock bound of one request's database work, connecting included."""
        return self.statement_timeout_ms / 1000 + 0.5


@dataclass(frozen=True)
class RuntimeConfig:
    """What the files say; replaced as a whole on SIGHUP. Never logged."""

    hosts: tuple[DbHost, ...]
    db_user: str
    db_password: str
    secret: bytes
    admin_token: str
    problems: tuple[str, ...] = ()
    payment_provider: ProviderTarget | None = None
    """None: payments are not configured (no payment_provider file)."""
    webhook_secret: bytes = b""


def _read_config_file(path: str, what: str, problems: list[str]) -> str:
    """The file's text with surrounding whitespace stripped; '' (and a problem) when unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError as exc:
        problems.append(f"{what} file {path} unreadable: {exc.strerror or exc}")
        return ""


def _read_optional_file(path: str, what: str, problems: list[str]) -> str | None:
    """Like _read_config_file, but an absent file is None and no problem (a feature left off)."""
    if not os.path.exists(path):
        return None
    return _read_config_file(path, what, problems)


def load_runtime_config(settings: Settings) -> RuntimeConfig:
    """Read every config and secret file. A missing file is reported, not fatal: the app then
    answers 503 (database), 503 (login) or 401 (tokens, admin) until a SIGHUP fixes it. Without a
    payment_provider file payments are off (503), and that is no problem."""
    problems: list[str] = []
    hosts_text = _read_config_file(settings.db_hosts_file, "db hosts", problems)
    try:
        hosts = parse_hosts(hosts_text)
    except ValueError as exc:
        problems.append(f"db hosts file {settings.db_hosts_file}: {exc}")
        hosts = ()
    provider_text = _read_optional_file(
        settings.payment_provider_file, "payment provider", problems
    )
    provider = None
    if provider_text is not None:
        try:
            provider = parse_provider(provider_text)
        except ValueError as exc:
            problems.append(f"payment provider file {settings.payment_provider_file}: {exc}")
    webhook_secret = ""
    if provider is not None:
        webhook_secret = _read_config_file(settings.webhook_secret_file, "webhook secret", problems)
    return RuntimeConfig(
        hosts=hosts,
        db_user=_read_config_file(settings.db_user_file, "db user", problems),
        db_password=_read_config_file(settings.db_password_file, "db password", problems),
        secret=_read_config_file(settings.secret_file, "token secret", problems).encode("utf-8"),
        admin_token=_read_config_file(settings.admin_token_file, "admin token", problems),
        payment_provider=provider,
        webhook_secret=webhook_secret.encode("utf-8"),
        problems=tuple(problems),
    )


# --------------------------------------------------------------------------------------------
# Logging and counters
# --------------------------------------------------------------------------------------------

_log_lock = threading.Lock()


def log(event: str, **fields: Any) -> None:
    """One line on stdout: ``<UTC time> <event> key=value ...`` (strings JSON-quoted)."""
    parts = [format_timestamp(datetime.now(UTC)), event]
    for key, value in fields.items():
        plain_number = isinstance(value, int | float) and not isinstance(value, bool)
        parts.append(f"{key}={value if plain_number else json.dumps(value, default=str)}")
    line = " ".join(parts) + "\n"
    with _log_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def log_db_error(exc: BaseException) -> None:
    message = str(exc).strip().splitlines()
    log(
        "db_error",
        error_class=type(exc).__name__,
        sqlstate=getattr(exc, "sqlstate", None),
        message=message[0] if message else "",
    )


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.errors_5xx = 0
        self.db_errors = 0
        self.connected_host: str | None = None
        self.payment_attempts = 0
        self.payment_failures: dict[str, int] = {}
        self.payments_in_flight: dict[str, int] = {}

    def count_request(self, status: int) -> None:
        with self._lock:
            self.requests += 1
            if status >= 500:
                self.errors_5xx += 1

    def count_db_error(self) -> None:
        with self._lock:
            self.db_errors += 1

    def set_connected_host(self, host: str | None) -> None:
        with self._lock:
            self.connected_host = host

    @contextlib.contextmanager
    def payment_attempt(self, provider: str) -> Iterator[None]:
        """Counts one attempt at `provider` as in flight while the block runs."""
        with self._lock:
            self.payment_attempts += 1
            self.payments_in_flight[provider] = self.payments_in_flight.get(provider, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self.payments_in_flight[provider] -= 1

    def count_payment_failure(self, kind: str) -> None:
        with self._lock:
            self.payment_failures[kind] = self.payment_failures.get(kind, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "errors_5xx": self.errors_5xx,
                "db_errors": self.db_errors,
                "connected_host": self.connected_host,
                "payment_attempts": self.payment_attempts,
                "payment_failures": dict(self.payment_failures),
                "payments_in_flight": {k: v for k, v in self.payments_in_flight.items() if v},
            }


# --------------------------------------------------------------------------------------------
# Database access
# --------------------------------------------------------------------------------------------

_CONNECTION_SQLSTATES = frozenset({"25006", "57P01", "57P02", "57P03", "53300"})


def is_connection_error(exc: BaseException) -> bool:
    """True when the error means the connection (or the server behind it) is gone or unusable
    for writes: the idle pool is then dropped, not just the connection that failed."""
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate.startswith("08") or sqlstate in _CONNECTION_SQLSTATES
    if psycopg is not None and isinstance(exc, psycopg.InterfaceError | psycopg.OperationalError):
        return True  # client-side: server closed the connection, timeout, no route, ...
    return isinstance(exc, DbUnavailableError)


def resolve_host(host: str, port: int, timeout_s: float) -> str | None:
    """The address to connect to, resolved in a helper thread so that a dead DNS cannot hold a
    request longer than ``timeout_s``. None for a Unix socket directory (libpq handles it)."""
    if host.startswith("/"):
        return None
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(host))
    outcome: list[Any] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            infos.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first, as Docker's DNS
            outcome.append(infos[0][4][0])
        except OSError as exc:
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=lookup, name=f"resolve-{host}", daemon=True).start()
    if not done.wait(timeout_s):
        raise DbUnavailableError(f"resolving {host!r} timed out after {timeout_s:.1f}s")
    if isinstance(outcome[0], OSError):
        raise DbUnavailableError(f"cannot resolve {host!r}: {outcome[0]}")
    return str(outcome[0])


def await_syn_answer(address: str, port: int, attempt_s: float, budget_s: float) -> None:
    """Return once a TCP handshake to the address is answered (accepted or refused: libpq then
    connects, or reports the refusal itself); resend the SYN every ``attempt_s`` rather than the
    kernel's 1 s. DbUnavailableError when nothing answers within ``budget_s``."""
    deadline = time.monotonic() + budget_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DbUnavailableError(f"no answer from {address}:{port} within {budget_s:.1f}s")
        try:
            socket.create_connection((address, port), timeout=min(attempt_s, remaining)).close()
            return
        except TimeoutError:
            continue
        except OSError:
            return  # refused, unreachable: libpq says which


class AccountStates:
    """A short-lived cache of ``account_security`` rows, so an authenticated request costs no
    extra database round trip (a lookup per request slowed every journey several-fold under the
    payment drills' load). This app's own lock, revoke, force-reset and reset forget the user's
    entry at once; a change made behind the app's back (a restore, direct SQL) is seen within
    ``TTL_S``."""

    TTL_S = 1.0
    UNKNOWN: Any = object()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[int, tuple[float, Any]] = {}

    def get(self, user_id: int) -> Any:
        with self._lock:
            hit = self._rows.get(user_id)
        if hit is None or time.monotonic() - hit[0] > self.TTL_S:
            return self.UNKNOWN
        return hit[1]

    def put(self, user_id: int, state: Any) -> None:
        with self._lock:
            if len(self._rows) > 10_000:
                self._rows.clear()
            self._rows[user_id] = (time.monotonic(), state)

    def forget(self, user_id: int) -> None:
        with self._lock:
            self._rows.pop(user_id, None)


class Watchdog:
    """Shuts the socket of a leased connection down when its deadline passes.

    statement_timeout cannot help when the server is frozen or the network is cut, and libpq's
    keepalives need seconds; shutting the socket makes the blocked libpq call fail at once, so
    the request answers 503 in time. The lock makes sure a connection already given back to the
    pool is never touched.
    """

    def __init__(self, conn: DbConnection, timeout_s: float) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._active = True
        self.fired = False
        self._timer = threading.Timer(max(timeout_s, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if not self._active:
                return
            self.fired = True
            try:
                log("db_watchdog_fired", host=self._conn.info.host)
                fd = self._conn.pgconn.socket
                with socket.socket(fileno=os.dup(fd)) as sock:
                    sock.shutdown(socket.SHUT_RDWR)
            except Exception as exc:  # the connection is discarded whatever happens here
                log("watchdog_error", error_class=type(exc).__name__)

    def stop(self) -> bool:
        """Disarm; True when it fired (the connection must then be discarded)."""
        with self._lock:
            self._active = False
        self._timer.cancel()
        return self.fired


class DbPool:
    """A small thread-safe pool of psycopg connections (autocommit off).

    Every lease is bounded by a deadline (connecting, resolving and every statement included).
    Connections are tried host by host in the configured order, each with
    ``target_session_attrs=read-write``, so only a writable primary is ever used. A connection
    that saw any error is closed; a connection-level error, or ``reset()`` (SIGHUP), also drops
    every idle connection, and connections in use at that moment are closed when given back.
    """

    def __init__(
        self, settings: Settings, get_config: Callable[[], RuntimeConfig], stats: Stats
    ) -> None:
        self._settings = settings
        self._get_config = get_config
        self._stats = stats
        self._lock = threading.Lock()
        self._idle: list[tuple[DbConnection, int]] = []
        self._generation = 0
        self._slots = threading.BoundedSemaphore(POOL_MAX_OPEN)

    def reset(self) -> None:
        with self._lock:
            self._generation += 1
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            _close_quietly(conn)
        self._stats.set_connected_host(None)

    @contextlib.contextmanager
    def connection(self, budget_s: float) -> Iterator[DbConnection]:
        deadline = time.monotonic() + budget_s
        if not self._slots.acquire(timeout=budget_s):
            raise PoolBusyError(f"all {POOL_MAX_OPEN} database connections stayed busy")
        try:
            conn, generation = self._take_idle() or self._connect(deadline)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _close_quietly(conn)
                raise DbUnavailableError("time budget spent while connecting")
            watchdog = Watchdog(conn, remaining)
            healthy = False
            try:
                yield conn
                healthy = True
            finally:
                fired = watchdog.stop()
                self._give_back(conn, generation, healthy and not fired)
        finally:
            self._slots.release()

    def _take_idle(self) -> tuple[DbConnection, int] | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn, generation = self._idle.pop()
            if _idle_connection_usable(conn):
                return conn, generation
            _close_quietly(conn)

    def _give_back(self, conn: DbConnection, generation: int, healthy: bool) -> None:
        if healthy and not conn.closed:
            try:
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.rollback()
            except psycopg.Error:
                healthy = False
        with self._lock:
            keep = (
                healthy
                and not conn.closed
                and generation == self._generation
                and len(self._idle) < POOL_MAX_IDLE
            )
            if keep:
                self._idle.append((conn, generation))
        if not keep:
            _close_quietly(conn)

    def _connect(self, deadline: float) -> tuple[DbConnection, int]:
        with self._lock:
            generation = self._generation
        config = self._get_config()
        if not config.hosts:
            raise DbUnavailableError("no database host configured")
        failures: list[str] = []
        for target in config.hosts:
            remaining = deadline - time.monotonic()
            if remaining < 0.05:
                failures.append(f"{target.host}: time budget spent")
                break
            try:
                conn = self._connect_one(target, config, remaining)
            except (psycopg.Error, DbUnavailableError) as exc:
                log_db_error(exc)
                self._stats.count_db_error()
                first = str(exc).strip().splitlines()
                failures.append(f"{target.host}: {first[0] if first else type(exc).__name__}")
                continue
            self._stats.set_connected_host(conn.info.host)
            return conn, generation
        self._stats.set_connected_host(None)
        raise NoWritableDatabaseError("no writable database: " + "; ".join(failures))

    def _connect_one(
        self, target: DbHost, config: RuntimeConfig, remaining_s: float
    ) -> DbConnection:
        """One host, read-write only. psycopg 3.1 drives libpq's asynchronous connect, which
        ignores connect_timeout: given ``host=a,b`` its own wait would give up on a silent ``a``
        without ever trying ``b``. Hence one attempt per host, as psycopg 3.2 does itself."""
        timeout_s = min(self._settings.connect_timeout_s, remaining_s)
        handshake_s = min(timeout_s, self._settings.handshake_timeout_ms / 1000)
        hostaddr = resolve_host(target.host, target.port, handshake_s)
        if hostaddr is not None:
            await_syn_answer(hostaddr, target.port, handshake_s, timeout_s)
        params: dict[str, Any] = {
            "host": target.host,
            "port": str(target.port),
            "dbname": self._settings.db_name,
            "user": config.db_user,
            "password": config.db_password,
            # psycopg 3.1 takes whole seconds here and uses them per wait, not per attempt
            "connect_timeout": str(max(1, math.ceil(timeout_s))),
            "target_session_attrs": "read-write",
            "keepalives": "1",
            "keepalives_idle": "1",
            "keepalives_interval": "1",
            "keepalives_count": "2",
            "tcp_user_timeout": "2000",
            "gssencmode": "disable",
            "application_name": "drillkit-app",
            "options": (
                f"-c statement_timeout={self._settings.statement_timeout_ms}"
                " -c idle_in_transaction_session_timeout=10000"
            ),
        }
        if hostaddr is not None:
            params["hostaddr"] = hostaddr
        return psycopg.connect(autocommit=False, **params)


def _idle_connection_usable(conn: DbConnection) -> bool:
    """An idle connection whose socket is readable has been told something (a termination
    message, or EOF from a dead server): it is not worth a failed request."""
    try:
        if conn.closed or conn.broken:
            return False
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
        return not readable
    except (OSError, ValueError, psycopg.Error):
        return False


def _close_quietly(conn: DbConnection) -> None:
    with contextlib.suppress(Exception):
        conn.close()


# --------------------------------------------------------------------------------------------
# The audit file
# --------------------------------------------------------------------------------------------


class AuditFile:
    """Append-only JSON lines, one per committed order, each fsync'ed before the answer."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def read_lines(self) -> list[str]:
        with self._lock:
            try:
                with open(self.path, encoding="utf-8", errors="replace") as handle:
                    return handle.readlines()
            except FileNotFoundError:
                return []


# --------------------------------------------------------------------------------------------
# The payment provider's API
# --------------------------------------------------------------------------------------------


class PaymentError(Exception):
    """A charge or lookup that did not succeed. ``kind``: timeout, unreachable, error, refused."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class ProviderClient:
    """Calls a provider's charge API, every call bounded by ``timeout_s`` per socket operation
    (connect, send, each read): a hung provider costs a request at most about that long."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s

    def _request(
        self,
        target: ProviderTarget,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection(target.host, target.port, timeout=self.timeout_s)
        try:
            data = json.dumps(body).encode() if body is not None else None
            hdrs = {"Content-Type": "application/json", **(headers or {})}
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
        except TimeoutError as exc:
            raise PaymentError(
                "timeout", f"{target.name} did not answer within {self.timeout_s * 1000:.0f} ms"
            ) from exc
        except (http.client.HTTPException, ConnectionError) as exc:
            raise PaymentError("error", f"{target.name}: {type(exc).__name__}: {exc}") from exc
        except OSError as exc:
            raise PaymentError("unreachable", f"{target.name}: {exc.strerror or exc}") from exc
        finally:
            conn.close()
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError as exc:
            raise PaymentError("error", f"{target.name} answered {resp.status}, not JSON") from exc
        if resp.status >= 500:
            raise PaymentError("error", f"{target.name} answered {resp.status}")
        if resp.status >= 400:
            message = parsed.get("error", {}).get("message") if isinstance(parsed, dict) else None
            raise PaymentError("refused", f"{target.name} answered {resp.status}: {message}")
        return resp.status, parsed

    def charge(
        self, target: ProviderTarget, key: str, amount_cents: int, description: str
    ) -> ChargeInfo:
        _, body = self._request(
            target,
            "POST",
            "/v1/charges",
            {"amount_cents": amount_cents, "currency": "usd", "description": description},
            {"Idempotency-Key": key},
        )
        try:
            charge = parse_charge(body)
        except ValueError as exc:
            raise PaymentError("error", f"{target.name}: {exc}") from exc
        if charge.idempotency_key != key or charge.amount_cents != amount_cents:
            raise PaymentError("error", f"{target.name} answered another charge ({charge.id})")
        return charge

    def lookup(self, target: ProviderTarget, key: str) -> ChargeInfo | None:
        """The succeeded charge the provider's ledger holds for ``key``, or None."""
        query = "/v1/charges?idempotency_key=" + urllib_quote(key)
        _, body = self._request(target, "GET", query)
        try:
            return succeeded_charge(body, key)
        except ValueError as exc:
            raise PaymentError("error", f"{target.name}: {exc}") from exc


@dataclass(frozen=True)
class PaymentRow:
    id: int
    order_id: int
    idempotency_key: str
    amount_cents: int
    status: str
    provider: str
    charge_id: str | None
    verified: bool
    """The provider it was attempted at has no charge for its key (checked by verify)."""


_PAYMENT_COLUMNS = (
    "id, order_id, idempotency_key, amount_cents, status, provider, charge_id,"
    " verified_at IS NOT NULL"
)


# --------------------------------------------------------------------------------------------
# The order cache (Redis, optional): read-through cache of order reads
# --------------------------------------------------------------------------------------------
# On when the config dir holds a `cache` file (host:port); the password is the secrets dir's
# `app_redis_password`; both re-read on SIGHUP. The cache never decides an answer: any failure
# (down, refused password, slow) makes the read go to the database, counted as a fallback, and
# health reports `cache: degraded` while the app stays healthy. A degraded cache is tried again
# at most every CACHE_RETRY_S, so a dead cache costs requests nothing.

CACHE_TIMEOUT_S = 0.3
CACHE_RETRY_S = 0.5
CACHE_TTL_S = 60
CACHE_MAX_IDLE = 8
CACHE_CLIENT_NAME = "drillkit-app"


class CacheDownError(Exception):
    """The cache failed or is being left alone until its next retry; the text has no secret."""


def resp_command(*args: str) -> bytes:
    """One RESP2 command (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode("utf-8")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class RespReader:
    """Replies read off a socket-like `recv`; an error reply raises CacheDownError with its
    first word (WRONGPASS, NOAUTH, ...)."""

    def __init__(self, recv: Callable[[int], bytes]) -> None:
        self.recv = recv
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.recv(65536)
        if not chunk:
            raise CacheDownError("the cache closed the connection")
        self.buf += chunk
        if len(self.buf) > MAX_BODY_BYTES:
            raise CacheDownError("cache reply too long")

    def reply(self) -> Any:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        kind, rest = line[:1], line[1:].decode("utf-8", "replace")
        if kind == b"+":
            return rest
        if kind == b"-":
            raise CacheDownError(f"cache refused: {rest.split(' ', 1)[0]}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            while len(self.buf) < size + 2:
                self._fill()
            data, self.buf = self.buf[:size], self.buf[size + 2 :]
            return data.decode("utf-8", "replace")
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self.reply() for _ in range(max(size, 0))]
        raise CacheDownError(f"unexpected cache reply type {kind!r}")


@dataclass(frozen=True)
class CacheConfig:
    host: str
    port: int
    password: str

    def __repr__(self) -> str:  # never print the password
        return f"CacheConfig(host={self.host!r}, port={self.port})"


def parse_cache_target(text: str) -> tuple[str, int]:
    """``host[:port]`` (port 6379 by default)."""
    host, _, port_text = text.strip().partition(":")
    if not _PROVIDER_RE.fullmatch(host):
        raise ValueError("expected host[:port]")
    port = int(port_text) if port_text else 6379
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return host, port


class CacheConnection:
    def __init__(self, config: CacheConfig) -> None:
        address = resolve_cache_host(config.host, config.port)
        self.sock = socket.create_connection((address, config.port), timeout=CACHE_TIMEOUT_S)
        self.reader = RespReader(self.sock.recv)
        try:
            self.call("AUTH", config.password)
            self.call("CLIENT", "SETNAME", CACHE_CLIENT_NAME)
        except BaseException:
            self.close()
            raise

    def call(self, *args: str) -> Any:
        self.sock.sendall(resp_command(*args))
        return self.reader.reply()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def resolve_cache_host(host: str, port: int) -> str:
    try:
        return resolve_host(host, port, CACHE_TIMEOUT_S) or host
    except DbUnavailableError as exc:
        raise CacheDownError(str(exc)) from exc


class OrderCache:
    """The app's Redis client: a few pooled connections, state ok/degraded, counters."""

    def __init__(self, config_file: str, password_file: str) -> None:
        self.config_file = config_file
        self.password_file = password_file
        self._lock = threading.Lock()
        self._idle: list[CacheConnection] = []
        self.config: CacheConfig | None = None
        self.degraded = False
        self.reason = ""
        self._retry_at = 0.0
        self.counts = {"hits": 0, "misses": 0, "fallbacks": 0, "errors": 0}
        self.reload()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        return cls(
            env.get("CACHE_FILE", "/run/drillkit/config/cache"),
            env.get("CACHE_PASSWORD_FILE", "/run/drillkit/secrets/app_redis_password"),
        )

    def reload(self) -> None:
        """Re-read the files; drop every pooled connection (a new password is used at once)."""
        problems: list[str] = []
        target = _read_optional_file(self.config_file, "cache", problems)
        config = None
        if target is not None:
            password = _read_config_file(self.password_file, "cache password", problems)
            try:
                config = CacheConfig(*parse_cache_target(target), password)
            except ValueError as exc:
                problems.append(f"cache file {self.config_file}: {exc}")
        for problem in problems:
            log("config_problem", problem=problem)
        with self._lock:
            self.config, idle, self._idle = config, self._idle, []
            self._retry_at = 0.0
        for conn in idle:
            conn.close()

    def _call(self, *args: str) -> Any:
        with self._lock:
            config = self.config
            if config is None:
                raise CacheDownError("no cache configured")
            now = time.monotonic()
            if self.degraded and now < self._retry_at:
                raise CacheDownError(self.reason)
            if self.degraded:
                self._retry_at = now + CACHE_RETRY_S  # one attempt per interval
            conn = self._idle.pop() if self._idle else None
        try:
            try:
                reply = conn.call(*args) if conn is not None else None
            except (OSError, CacheDownError, ValueError):
                conn.close()  # a pooled connection the server dropped (restart, CLIENT KILL)
                conn = None
            if conn is None:  # a new connection: one more try after a stale pooled one
                conn = CacheConnection(config)
                reply = conn.call(*args)
        except (OSError, CacheDownError, ValueError) as exc:
            if conn is not None:
                conn.close()
            self._failed(exc)
            raise CacheDownError(self.reason) from exc
        with self._lock:
            if self.degraded:
                log("cache_recovered", after=self.reason)
            self.degraded, self.reason = False, ""
            if config is self.config and len(self._idle) < CACHE_MAX_IDLE:
                self._idle.append(conn)
                conn = None
        if conn is not None:
            conn.close()
        return reply

    def _failed(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {str(exc)[:120]}"
        with self._lock:
            self.counts["errors"] += 1
            first = not self.degraded
            self.degraded, self.reason = True, reason
            self._retry_at = time.monotonic() + CACHE_RETRY_S
            idle, self._idle = self._idle, []  # the others are likely dead too (restart, kill)
        for conn in idle:
            conn.close()
        if first:
            log("cache_degraded", reason=reason)

    def _count(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1

    def get_order(self, order_id: int) -> dict[str, Any] | None:
        """The cached order, or None (a miss, no cache, or the cache down: a fallback)."""
        if self.config is None:
            return None
        try:
            raw = self._call("GET", f"order:{order_id}")
        except CacheDownError:
            self._count("fallbacks")
            return None
        if raw is None:
            self._count("misses")
            return None
        try:
            found = json.loads(raw)
        except ValueError:
            self._count("misses")
            return None
        self._count("hits")
        return found if isinstance(found, dict) else None

    def put_order(self, order_id: int, order: Mapping[str, Any]) -> None:
        if self.config is None:
            return
        with contextlib.suppress(CacheDownError):
            self._call("SET", f"order:{order_id}", json.dumps(order), "EX", str(CACHE_TTL_S))

    def health_fields(self) -> dict[str, Any]:
        """{} without a cache; else its state ("ok" or "degraded", trying it again when due)."""
        if self.config is None:
            return {}
        with contextlib.suppress(CacheDownError):
            self._call("PING")
        with self._lock:
            return {
                "cache": "degraded" if self.degraded else "ok",
                "cache_fallbacks": self.counts["fallbacks"],
            }

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "configured": self.config is not None,
                "state": "off" if self.config is None else "degraded" if self.degraded else "ok",
                "reason": self.reason,
                **self.counts,
            }


# --------------------------------------------------------------------------------------------
# The application
# --------------------------------------------------------------------------------------------

Response = tuple[int, dict[str, Any]]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


class App:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stats = Stats()
        self.config = load_runtime_config(settings)
        self._report_config_problems()
        self.pool = DbPool(settings, lambda: self.config, self.stats)
        self.accounts = AccountStates()
        self.audit = AuditFile(settings.audit_file)
        self.providers = ProviderClient(settings.payment_timeout_ms / 1000)
        self.release = parse_release(os.environ.get("APP_VERSION"))
        self.cache = OrderCache.from_env(os.environ)
        self.memory = MemoryControl(os.environ)

    # ---- lifecycle -------------------------------------------------------------------------

    def reload(self) -> None:
        """SIGHUP: re-read every file, then drop every pooled connection."""
        self.config = load_runtime_config(self.settings)
        self._report_config_problems()
        self.memory.reload()
        self.pool.reset()
        self.cache.reload()
        provider = self.config.payment_provider
        log(
            "config_reloaded",
            db_hosts=",".join(h.host for h in self.config.hosts),
            payment_provider=provider.name if provider else None,
        )

    def _report_config_problems(self) -> None:
        for problem in self.config.problems:
            log("config_problem", problem=problem)

    def maintenance(self) -> bool:
        return os.path.exists(self.settings.maintenance_file)

    # ---- dispatch --------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        method, path = request.method, request.path
        if method == "GET":
            if path == "/api/health":
                return self.health()
            if path == "/api/version":
                return 200, release_info(self.release)
            if path == "/api/auth/me":
                return self.me(request)
            if path == "/api/admin/stats":
                return self.admin_stats(request)
            if path == "/api/admin/payments":
                return self.payments_status(request)
            if path == "/api/admin/memory":
                self._require_admin(request)
                return 200, self.memory.snapshot()
            target = parse_user_admin_path(path)
            if target is not None and target[1] == "security":
                return self.account_security(request, target[0])
            order_id = parse_order_id(path)
            if order_id is not None:
                return self.get_order(request, order_id)
        elif method == "POST":
            if path == "/api/auth/login":
                return self.login(request)
            if path == "/api/orders":
                return self.create_order(request)
            if path == "/api/admin/replay-audit":
                return self.replay_audit(request)
            if path == "/api/payments/webhook":
                return self.payment_webhook(request)
            if path == "/api/admin/payments/verify":
                return self.verify_payments(request)
            if path == "/api/admin/payments/process-pending":
                return self.process_pending(request)
            if path == "/api/auth/reset":
                return self.reset_password(request)
            target = parse_user_admin_path(path)
            if target is not None and target[1] != "security":
                return self.user_admin(request, *target)
            pay_id = parse_pay_path(path)
            if pay_id is not None:
                return self.pay_order(request, pay_id)
        return 404, {"error": "not found"}

    # ---- helpers ---------------------------------------------------------------------------

    def _with_db(self, work: Callable[[DbConnection], T], budget_s: float) -> T:
        """Run ``work`` on a leased connection; any database failure becomes a 503."""
        try:
            with self.pool.connection(budget_s) as conn:
                return work(conn)
        except DbUnavailableError as exc:
            if not isinstance(exc, NoWritableDatabaseError):
                self.stats.count_db_error()
            log("db_unavailable", reason=str(exc))
            if not isinstance(exc, PoolBusyError):
                self.pool.reset()
            raise HttpError(503, "database unavailable") from exc
        except psycopg.Error as exc:
            self.stats.count_db_error()
            log_db_error(exc)
            if is_connection_error(exc):
                self.pool.reset()
            raise HttpError(503, "database unavailable") from exc

    def _principal(self, request: Request) -> Principal:
        token = parse_bearer(request.header("Authorization"))
        principal = principal_from_token(token, self.config.secret)
        if principal is None:
            raise HttpError(401, "invalid or missing token")
        state = self.accounts.get(principal.user_id)
        if state is AccountStates.UNKNOWN:
            state = self._with_db(
                lambda conn: self._account_state(conn, principal.user_id),
                self.settings.request_db_budget_s,
            )
            self.accounts.put(principal.user_id, state)
        refusal = account_session_refusal(state, principal)
        if refusal is not None:
            raise HttpError(401, refusal)
        return principal

    def _require_admin(self, request: Request) -> None:
        token = parse_bearer(request.header("Authorization"))
        expected = self.config.admin_token
        if not token or not expected or not hmac.compare_digest(token.encode(), expected.encode()):
            raise HttpError(401, "invalid or missing admin token")

    @staticmethod
    def _json(request: Request) -> Any:
        try:
            return parse_json_body(request.body)
        except ValidationError as exc:
            raise HttpError(400, str(exc)) from exc

    # ---- endpoints -------------------------------------------------------------------------

    def health(self) -> Response:
        maintenance = self.maintenance()

        def check(conn: DbConnection) -> str:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_is_in_recovery()")
                row = cur.fetchone()
            conn.rollback()
            if row is None or row[0] is not False:
                raise DbUnavailableError(f"{conn.info.host} is in recovery (read-only)")
            return conn.info.host

        try:
            host = self._with_db(check, self.settings.request_db_budget_s)
        except HttpError as exc:
            return exc.status, {"status": "error", "error": exc.message, "maintenance": maintenance}
        return 200, {
            "status": "ok",
            "db_host": host,
            "maintenance": maintenance,
            **self.cache.health_fields(),
        }

    def login(self, request: Request) -> Response:
        try:
            email, password = validate_login_body(self._json(request))
        except ValidationError as exc:
            raise HttpError(400, str(exc)) from exc
        secret = self.config.secret
        if not secret:
            raise HttpError(503, "token signing secret is not configured")

        def authenticate(conn: DbConnection) -> Principal | str | None:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT u.id, u.email, u.password_hash, s.locked_at IS NOT NULL,"
                    " coalesce(s.session_generation, 0)"
                    " FROM users u LEFT JOIN account_security s ON s.user_id = u.id"
                    " WHERE u.email = %s",
                    (email,),
                )
                row = cur.fetchone()
                if row is None or row[3]:
                    verify_password(password, _DUMMY_HASH)  # same work whether or not it exists
                    conn.rollback()
                    return None if row is None else "locked"
                if not verify_password(password, row[2]):
                    conn.rollback()
                    return None
                cur.execute(
                    "INSERT INTO audit_log (actor, action, detail) VALUES (%s, 'login', %s)",
                    (email, Jsonb({"user_id": row[0]})),
                )
            conn.commit()
            return Principal(user_id=row[0], email=row[1], generation=row[4])

        principal = self._with_db(authenticate, self.settings.request_db_budget_s)
        if principal == "locked":
            return 403, {"error": "account locked: a password reset is required"}
        if not isinstance(principal, Principal):
            return 401, {"error": "invalid credentials"}
        token = issue_token(
            principal.user_id, principal.email, secret, generation=principal.generation
        )
        return 200, {"token": token}

    def me(self, request: Request) -> Response:
        principal = self._principal(request)
        return 200, {"user_id": principal.user_id, "email": principal.email}

    def create_order(self, request: Request) -> Response:
        principal = self._principal(request)
        if self.maintenance():
            raise HttpError(503, MAINTENANCE_MESSAGE)
        try:
            key = validate_idempotency_key(request.header("Idempotency-Key"))
            order = validate_order_body(self._json(request))
        except ValidationError as exc:
            raise HttpError(400, str(exc)) from exc

        def insert(conn: DbConnection) -> tuple[int, dict[str, Any] | None]:
            with conn.cursor() as cur:
                try:
                    cur.execute(
                        "INSERT INTO orders (user_id, idempotency_key, item, amount_cents, payload)"
                        " VALUES (%s, %s, %s, %s, %s)"
                        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
                        (principal.user_id, key, order.item, order.amount_cents, order.payload),
                    )
                except pg_errors.ForeignKeyViolation as exc:
                    raise HttpError(401, "the token's user does not exist") from exc
                row = cur.fetchone()
                if row is None:
                    cur.execute("SELECT id FROM orders WHERE idempotency_key = %s", (key,))
                    existing = cur.fetchone()
                    conn.rollback()
                    if existing is None:  # the conflicting insert was rolled back meanwhile
                        raise DbUnavailableError("idempotency key conflict without an order")
                    return existing[0], None
                if self.release.records_order_events:
                    record_order_placed(cur, row[0])
                detail = {
                    "order_id": row[0],
                    "idempotency_key": key,
                    "item": order.item,
                    "amount_cents": order.amount_cents,
                    "payload": order.payload,
                    "user_id": principal.user_id,
                }
                cur.execute(
                    "INSERT INTO audit_log (actor, action, detail) VALUES (%s, 'order.create', %s)",
                    (principal.email, Jsonb(detail)),
                )
            conn.commit()
            return row[0], detail

        order_id, detail = self._with_db(insert, self.settings.request_db_budget_s)
        if detail is None:
            return 200, {"id": order_id, "idempotency_key": key}
        # "at" is taken after COMMIT returned, so it is never earlier than the commit itself.
        record = {
            "at": format_timestamp(datetime.now(UTC)),
            "actor": principal.email,
            "action": "order.create",
            "detail": detail,
        }
        try:
            self.audit.append(record)
        except OSError as exc:
            log("audit_file_error", path=self.audit.path, error=exc.strerror or str(exc))
            raise HttpError(503, "order committed but the audit file write failed") from exc
        return 201, {"id": order_id, "idempotency_key": key}

    def get_order(self, request: Request, order_id: int) -> Response:
        self._principal(request)
        cached = self.cache.get_order(order_id)
        if cached is not None:
            return 200, cached

        def fetch(conn: DbConnection) -> tuple[Any, ...] | None:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT id, user_id, idempotency_key, item, amount_cents, payload, created_at"
                    " FROM orders WHERE id = %s",
                    (order_id,),
                )
                row = cur.fetchone()
            conn.rollback()
            return row

        row = self._with_db(fetch, self.settings.request_db_budget_s)
        if row is None:
            return 404, {"error": "order not found"}
        names = ("id", "user_id", "idempotency_key", "item", "amount_cents", "payload")
        result: dict[str, Any] = dict(zip(names, row[:6], strict=True))
        result["created_at"] = format_timestamp(row[6])
        self.cache.put_order(order_id, result)
        return 200, result

    def replay_audit(self, request: Request) -> Response:
        self._require_admin(request)
        try:
            since = parse_since(self._json(request))
        except ValidationError as exc:
            raise HttpError(400, str(exc)) from exc
        records, skipped = select_replay_records(self.audit.read_lines(), since)

        def replay(conn: DbConnection) -> tuple[int, int]:
            replayed = present = 0
            with conn.cursor() as cur:
                for record in records:
                    detail = record["detail"]
                    cur.execute(
                        "INSERT INTO orders (user_id, idempotency_key, item, amount_cents, payload)"
                        " VALUES (%s, %s, %s, %s, %s)"
                        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
                        (
                            detail["user_id"],
                            detail["idempotency_key"],
                            detail["item"],
                            detail["amount_cents"],
                            detail["payload"],
                        ),
                    )
                    row = cur.fetchone()
                    if row is None:
                        present += 1
                        continue
                    replayed += 1
                    reconcile = {
                        "order_id": row[0],
                        "original_order_id": detail.get("order_id"),
                        "original_at": record["at"],
                        **{name: detail[name] for name in _REPLAY_DETAIL_FIELDS},
                    }
                    cur.execute(
                        "INSERT INTO audit_log (actor, action, detail)"
                        " VALUES ('admin', 'order.reconcile', %s)",
                        (Jsonb(reconcile),),
                    )
            conn.commit()
            return replayed, present

        replayed, present = self._with_db(replay, REPLAY_BUDGET_S)
        log(
            "audit_replayed",
            since=format_timestamp(since),
            replayed=replayed,
            already_present=present,
            skipped_lines=skipped,
        )
        return 200, {"replayed": replayed, "already_present": present}

    def admin_stats(self, request: Request) -> Response:
        self._require_admin(request)
        return 200, {**self.stats.snapshot(), "cache": self.cache.snapshot()}

    # ---- account security ------------------------------------------------------------------

    @staticmethod
    def _account_state(conn: DbConnection, user_id: int) -> AccountState | None:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT locked_at IS NOT NULL, session_generation, reset_token_hash IS NOT NULL"
                " FROM account_security WHERE user_id = %s",
                (user_id,),
            )
            row = cur.fetchone()
        conn.rollback()
        if row is None:
            return None
        return AccountState(locked=row[0], generation=row[1], reset_pending=row[2])

    def user_admin(self, request: Request, user_id: int, action: str) -> Response:
        """Seed 004 "Secure compromised accounts": ``lock`` (no login, every token refused),
        ``revoke-sessions`` (every token issued so far refused), ``force-reset`` (the password
        voided; a reset code sent to the user by an email notification), ``notify`` (a
        notification recorded in the outbox). Each is audited."""
        self._require_admin(request)
        body = self._json(request) if request.body else {}
        if not isinstance(body, dict):
            raise HttpError(400, "body must be a JSON object")
        try:
            notice = validate_notify_body(body) if action == "notify" else None
        except ValidationError as exc:
            raise HttpError(400, str(exc)) from exc
        reason = body.get("reason", "")
        if not isinstance(reason, str) or len(reason) > MAX_NOTIFICATION_TEXT:
            raise HttpError(400, f"reason must be a string of at most {MAX_NOTIFICATION_TEXT}")
        code = _b64url_encode(os.urandom(24)) if action == "force-reset" else ""

        def apply(conn: DbConnection) -> dict[str, Any] | None:
            with conn.cursor() as cur:
                cur.execute("SELECT email FROM users WHERE id = %s FOR UPDATE", (user_id,))
                user = cur.fetchone()
                if user is None:
                    conn.rollback()
                    return None
                cur.execute(
                    "INSERT INTO account_security (user_id) VALUES (%s)"
                    " ON CONFLICT (user_id) DO NOTHING",
                    (user_id,),
                )
                out: dict[str, Any] = {"user_id": user_id}
                if action == "lock":
                    cur.execute(
                        "UPDATE account_security SET locked_at = now(), lock_reason = %s,"
                        " updated_at = now() WHERE user_id = %s",
                        (reason, user_id),
                    )
                elif action == "revoke-sessions":
                    cur.execute(
                        "UPDATE account_security SET session_generation = session_generation + 1,"
                        " updated_at = now() WHERE user_id = %s RETURNING session_generation",
                        (user_id,),
                    )
                    out["session_generation"] = cur.fetchone()[0]  # type: ignore[index]
                elif action == "force-reset":
                    cur.execute(
                        "UPDATE users SET password_hash = %s WHERE id = %s",
                        (RESET_REQUIRED_HASH, user_id),
                    )
                    cur.execute(
                        "UPDATE account_security SET reset_token_hash = %s,"
                        " reset_requested_at = now(), updated_at = now() WHERE user_id = %s",
                        (reset_token_hash(code), user_id),
                    )
                    notice_row = (
                        "email",
                        "password-reset",
                        "A password reset is required on your account",
                        f"Your password was reset for your protection. Reset code: {code}",
                    )
                    out["notification_id"] = self._insert_notification(cur, user_id, notice_row)
                else:
                    assert notice is not None
                    out["notification_id"] = self._insert_notification(cur, user_id, notice)
                cur.execute(
                    "INSERT INTO audit_log (actor, action, detail) VALUES ('admin', %s, %s)",
                    (f"account.{action}", Jsonb({"user_id": user_id, "reason": reason})),
                )
            conn.commit()
            return out

        out = self._with_db(apply, self.settings.request_db_budget_s)
        if out is None:
            return 404, {"error": "user not found"}
        self.accounts.forget(user_id)
        log("account_security", action=action, user_id=user_id)
        return 200, out

    @staticmethod
    def _insert_notification(cur: Any, user_id: int, notice: tuple[str, str, str, str]) -> int:
        cur.execute(
            "INSERT INTO notifications (user_id, channel, kind, subject, message)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (user_id, *notice),
        )
        return int(cur.fetchone()[0])

    def account_security(self, request: Request, user_id: int) -> Response:
        """A user's security state and notifications (their subjects, never their text)."""
        self._require_admin(request)

        def fetch(conn: DbConnection) -> dict[str, Any]:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT locked_at, lock_reason, session_generation, reset_requested_at"
                    " FROM account_security WHERE user_id = %s",
                    (user_id,),
                )
                row = cur.fetchone()
                cur.execute(
                    "SELECT id, at, channel, kind, subject FROM notifications"
                    " WHERE user_id = %s ORDER BY id",
                    (user_id,),
                )
                notes = cur.fetchall()
            conn.rollback()
            stamp = lambda t: None if t is None else format_timestamp(t)  # noqa: E731
            return {
                "user_id": user_id,
                "locked_at": stamp(row[0]) if row else None,
                "lock_reason": row[1] if row else None,
                "session_generation": row[2] if row else 0,
                "reset_requested_at": stamp(row[3]) if row else None,
                "notifications": [
                    {"id": n[0], "at": stamp(n[1]), "channel": n[2], "kind": n[3], "subject": n[4]}
                    for n in notes
                ],
            }

        return 200, self._with_db(fetch, self.settings.request_db_budget_s)

    def reset_password(self, request: Request) -> Response:
        """The user completes a forced reset with the code they were sent: a new password, the
        lock lifted, every older session revoked, the code spent."""
        try:
            code, password = validate_reset_body(self._json(request))
        except ValidationError as exc:
            raise HttpError(400, str(exc)) from exc
        new_hash = hash_password(password)

        def apply(conn: DbConnection) -> int | None:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT user_id FROM account_security WHERE reset_token_hash = %s"
                    " AND reset_requested_at > now() - make_interval(secs => %s) FOR UPDATE",
                    (reset_token_hash(code), RESET_TOKEN_TTL_S),
                )
                row = cur.fetchone()
                if row is None:
                    conn.rollback()
                    return None
                cur.execute("UPDATE users SET password_hash = %s WHERE id = %s", (new_hash, row[0]))
                cur.execute(
                    "UPDATE account_security SET reset_token_hash = NULL,"
                    " reset_requested_at = NULL, locked_at = NULL, lock_reason = NULL,"
                    " session_generation = session_generation + 1, updated_at = now()"
                    " WHERE user_id = %s",
                    (row[0],),
                )
                cur.execute(
                    "INSERT INTO audit_log (actor, action, detail)"
                    " VALUES ('user', 'account.reset', %s)",
                    (Jsonb({"user_id": row[0]}),),
                )
            conn.commit()
            return int(row[0])

        user_id = self._with_db(apply, self.settings.request_db_budget_s)
        if user_id is None:
            return 400, {"error": "invalid or expired reset code"}
        self.accounts.forget(user_id)
        log("account_security", action="reset", user_id=user_id)
        return 200, {"user_id": user_id}

    # ---- payments --------------------------------------------------------------------------

    def _provider(self) -> ProviderTarget:
        target = self.config.payment_provider
        if target is None:
            raise HttpError(503, "no payment provider configured")
        return target

    def pay_order(self, request: Request, order_id: int) -> Response:
        """Pay for one of the caller's orders at the configured provider. 201 captured; 200 when
        it was already captured; 202 pending (the order is kept, the payment queued) when the
        provider failed or did not answer in time, or when an earlier attempt at another provider
        has an unknown outcome (a client retry never charges a second provider)."""
        principal = self._principal(request)
        if self.maintenance():
            raise HttpError(503, MAINTENANCE_MESSAGE)
        target = self._provider()

        def claim(conn: DbConnection) -> PaymentRow:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT user_id, amount_cents, idempotency_key FROM orders WHERE id = %s",
                    (order_id,),
                )
                order = cur.fetchone()
                if order is None or order[0] != principal.user_id:
                    conn.rollback()
                    raise HttpError(404, "order not found")
                cur.execute(
                    "INSERT INTO payments (order_id, idempotency_key, amount_cents, status, provider)"
                    " VALUES (%s, %s, %s, 'pending', %s) ON CONFLICT (order_id) DO NOTHING",
                    (order_id, payment_key(order[2]), order[1], target.name),
                )
                cur.execute(
                    f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE order_id = %s", (order_id,)
                )
                row = cur.fetchone()
            conn.commit()
            if row is None:  # inserted and deleted meanwhile: nothing sensible to do but retry
                raise DbUnavailableError("payment row vanished")
            return PaymentRow(*row)

        payment = self._with_db(claim, self.settings.request_db_budget_s)
        if payment.status == "captured":
            return 200, self._payment_answer(payment, payment.provider, payment.charge_id)
        if payment.provider != target.name and not payment.verified:
            return 202, self._payment_answer(
                payment,
                payment.provider,
                None,
                reason=f"queued: the attempt at {payment.provider} has an unknown outcome",
            )
        charge, error = self._attempt(payment, target)
        if charge is None:
            return 202, self._payment_answer(payment, target.name, None, reason=error)
        return 201, self._payment_answer(payment, charge.provider, charge.id)

    @staticmethod
    def _payment_answer(
        payment: PaymentRow, provider: str, charge_id: str | None, reason: str | None = None
    ) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "order_id": payment.order_id,
            "payment_key": payment.idempotency_key,
            "status": "pending" if charge_id is None else "captured",
            "provider": provider,
            "charge_id": charge_id,
        }
        if reason is not None:
            answer["reason"] = reason
        return answer

    def _attempt(
        self, payment: PaymentRow, target: ProviderTarget
    ) -> tuple[ChargeInfo | None, str | None]:
        """Charge `payment` at `target` and record the outcome: (charge, None) when captured,
        (None, reason) when it stays pending."""
        try:
            with self.stats.payment_attempt(target.name):
                charge = self.providers.charge(
                    target,
                    payment.idempotency_key,
                    payment.amount_cents,
                    f"order {payment.order_id}",
                )
        except PaymentError as exc:
            failure = exc
        else:
            self._with_db(
                lambda conn: self._record_capture(conn, payment, charge, "answer"),
                self.settings.request_db_budget_s,
            )
            return charge, None
        self.stats.count_payment_failure(failure.kind)
        log(
            "payment_pending",
            order_id=payment.order_id,
            provider=target.name,
            kind=failure.kind,
            error=str(failure),
        )
        self._with_db(
            lambda conn: self._record_failure(conn, payment, target, failure),
            self.settings.request_db_budget_s,
        )
        return None, f"{failure.kind}: {failure}"

    @staticmethod
    def _record_failure(
        conn: DbConnection, payment: PaymentRow, target: ProviderTarget, exc: PaymentError
    ) -> None:
        with conn.cursor() as cur:
            cur.execute(
                "UPDATE payments SET attempts = attempts + 1, last_error = %s, provider = %s,"
                " verified_at = NULL WHERE id = %s AND status = 'pending'",
                (f"{exc.kind}: {exc}"[:500], target.name, payment.id),
            )
            cur.execute(
                "INSERT INTO audit_log (actor, action, detail) VALUES ('app', 'payment.pending', %s)",
                (Jsonb({"order_id": payment.order_id, "provider": target.name, "kind": exc.kind}),),
            )
        conn.commit()

    @staticmethod
    def _record_capture(
        conn: DbConnection, payment: PaymentRow, charge: ChargeInfo, source: str
    ) -> str:
        """Mark the payment captured by `charge` (once: a second report of the same charge is a
        no-op). Returns 'captured', 'already' or 'conflict' (captured by another charge: the
        order was charged twice; logged and audited for reconciliation)."""
        with conn.cursor() as cur:
            cur.execute(
                "UPDATE payments SET status = 'captured', charge_id = %s, provider = %s,"
                " source = %s, captured_at = now(), attempts = attempts + %s, last_error = NULL"
                " WHERE id = %s AND status = 'pending' RETURNING id",
                (charge.id, charge.provider, source, int(source == "answer"), payment.id),
            )
            if cur.fetchone() is not None:
                outcome = "captured"
            else:
                cur.execute("SELECT charge_id FROM payments WHERE id = %s", (payment.id,))
                row = cur.fetchone()
                outcome = "already" if row is not None and row[0] == charge.id else "conflict"
            detail = {
                "order_id": payment.order_id,
                "provider": charge.provider,
                "charge_id": charge.id,
                "amount_cents": charge.amount_cents,
                "source": source,
            }
            if outcome != "already":
                cur.execute(
                    "INSERT INTO audit_log (actor, action, detail) VALUES ('app', %s, %s)",
                    (f"payment.{outcome}", Jsonb(detail)),
                )
        conn.commit()
        if outcome == "conflict":
            log("payment_conflict", **detail)
        return outcome

    def payment_webhook(self, request: Request) -> Response:
        """A provider's signed ``charge.succeeded``: the payment it names is captured."""
        secret = self.config.webhook_secret
        if not secret:
            raise HttpError(503, "payments are not configured")
        if not verify_webhook_signature(
            secret, request.body, request.header("X-Provider-Signature")
        ):
            raise HttpError(401, "bad webhook signature")
        try:
            charge = validate_webhook_body(self._json(request))
        except ValidationError as exc:
            raise HttpError(400, str(exc)) from exc

        def apply(conn: DbConnection) -> str:
            with conn.cursor() as cur:
                cur.execute(
                    f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE idempotency_key = %s",
                    (charge.idempotency_key,),
                )
                row = cur.fetchone()
            conn.rollback()
            if row is None:
                return "unknown payment"
            payment = PaymentRow(*row)
            if payment.amount_cents != charge.amount_cents:
                log("payment_amount_mismatch", order_id=payment.order_id, charge_id=charge.id)
                return "amount mismatch"
            return self._record_capture(conn, payment, charge, "webhook")

        result = self._with_db(apply, self.settings.request_db_budget_s)
        log("payment_webhook", provider=charge.provider, charge_id=charge.id, result=result)
        return 200, {"received": True, "result": result}

    def _pending(self) -> list[PaymentRow]:
        def fetch(conn: DbConnection) -> list[PaymentRow]:
            with conn.cursor() as cur:
                cur.execute(
                    f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE status = 'pending' ORDER BY id"
                )
                rows = cur.fetchall()
            conn.rollback()
            return [PaymentRow(*r) for r in rows]

        return self._with_db(fetch, PAYMENT_BATCH_BUDGET_S)

    def payments_status(self, request: Request) -> Response:
        self._require_admin(request)

        def counts(conn: DbConnection) -> dict[str, int]:
            with conn.cursor() as cur:
                cur.execute("SELECT status, count(*) FROM payments GROUP BY status")
                rows = cur.fetchall()
            conn.rollback()
            return {status: n for status, n in rows}

        target = self.config.payment_provider
        stats = self.stats.snapshot()
        return 200, {
            "provider": target.name if target else None,
            "counts": self._with_db(counts, self.settings.request_db_budget_s),
            "in_flight": stats["payments_in_flight"],
            "attempts": stats["payment_attempts"],
            "failures": stats["payment_failures"],
            "timeout_ms": self.settings.payment_timeout_ms,
        }

    def verify_payments(self, request: Request) -> Response:
        """Verify transaction integrity: each pending payment is looked up in the ledger of the
        provider it was attempted at. A charge there means the provider captured it but its
        answer (and webhook) never arrived: recorded as captured. None means it was not charged:
        marked verified, safe to charge at another provider. A provider that does not answer
        leaves the payment unverified."""
        self._require_admin(request)
        found, not_charged, unknown = [], [], []
        for payment in self._pending():
            try:
                target = parse_provider(payment.provider)
                charge = self.providers.lookup(target, payment.idempotency_key)
            except (ValueError, PaymentError) as exc:
                unknown.append(f"order {payment.order_id} at {payment.provider}: {exc}")
                continue
            if charge is not None:
                self._with_db(
                    lambda conn, p=payment, c=charge: self._record_capture(conn, p, c, "verify"),
                    self.settings.request_db_budget_s,
                )
                found.append(payment.order_id)
                continue

            def mark(conn: DbConnection, p: PaymentRow = payment) -> None:
                with conn.cursor() as cur:
                    cur.execute(
                        "UPDATE payments SET verified_at = now()"
                        " WHERE id = %s AND status = 'pending' AND provider = %s",
                        (p.id, p.provider),
                    )
                conn.commit()

            self._with_db(mark, self.settings.request_db_budget_s)
            not_charged.append(payment.order_id)
        log(
            "payments_verified",
            captured_found=len(found),
            not_charged=len(not_charged),
            unknown=len(unknown),
        )
        return 200, {
            "captured_found": found,
            "not_charged": not_charged,
            "unknown": unknown,
        }

    def process_pending(self, request: Request) -> Response:
        """Process pending transactions at the configured provider (same idempotency key per
        payment). With ``verified_only`` (the default) a payment last attempted at another
        provider is charged only once verify has proved that provider did not charge it;
        ``"verified_only": false`` charges every pending payment regardless."""
        self._require_admin(request)
        body = self._json(request) if request.body else {}
        verified_only = body.get("verified_only", True) if isinstance(body, dict) else True
        if not isinstance(verified_only, bool):
            raise HttpError(400, "verified_only must be true or false")
        target = self._provider()
        captured, still_pending, skipped = [], [], []
        for payment in self._pending():
            if verified_only and payment.provider != target.name and not payment.verified:
                skipped.append(payment.order_id)
                continue
            charge, _ = self._attempt(payment, target)
            (captured if charge is not None else still_pending).append(payment.order_id)
        log(
            "payments_processed",
            provider=target.name,
            captured=len(captured),
            still_pending=len(still_pending),
            skipped_unverified=len(skipped),
        )
        return 200, {
            "provider": target.name,
            "captured": captured,
            "still_pending": still_pending,
            "skipped_unverified": skipped,
        }


_DUMMY_HASH = hash_password("drillkit-no-such-user", salt=b"\x00" * 16)


# --------------------------------------------------------------------------------------------
# Releases: the version this build is and the schema its code expects (bad-deployment drill)
# --------------------------------------------------------------------------------------------

DEFAULT_RELEASE = "1.0.0"
RELEASE_SCHEMAS = {1: "0001", 2: "0002"}
"""A release's major version -> the schema version its code expects (migrate.py's ledger)."""
_RELEASE_RE = re.compile(r"([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})")


@dataclass(frozen=True)
class Release:
    """What this build is: its version (the image's APP_VERSION build arg, images/app/Dockerfile)
    and the schema version its code expects. Release 2 records each new order's status in the
    order_events table that migration 0002 creates (images/app/migrate.py); release 1 knows
    neither."""

    version: str
    major: int

    @property
    def schema(self) -> str:
        return RELEASE_SCHEMAS[self.major]

    @property
    def records_order_events(self) -> bool:
        return self.major >= 2


def parse_release(text: str | None) -> Release:
    """APP_VERSION as MAJOR.MINOR.PATCH of a known major; unset or empty: DEFAULT_RELEASE."""
    raw = (text or "").strip() or DEFAULT_RELEASE
    m = _RELEASE_RE.fullmatch(raw)
    if m is None:
        raise ValueError(f"APP_VERSION must be MAJOR.MINOR.PATCH, got {raw[:40]!r}")
    major = int(m.group(1))
    if major not in RELEASE_SCHEMAS:
        known = ", ".join(str(k) for k in sorted(RELEASE_SCHEMAS))
        raise ValueError(f"APP_VERSION {raw}: no release {major} (known: {known})")
    return Release(raw, major)


def release_info(release: Release) -> dict[str, Any]:
    """The body of GET /api/version."""
    return {"version": release.version, "schema": release.schema}


def record_order_placed(cur: Any, order_id: int) -> None:
    """Release 2: the order's first status event, in the order's own transaction."""
    cur.execute(
        "INSERT INTO order_events (order_id, status) SELECT id, status FROM orders WHERE id = %s",
        (order_id,),
    )


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


class AppServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App, bind_and_activate: bool = True) -> None:
        self.app = app
        super().__init__(address, RequestHandler, bind_and_activate)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        CONNECTIONS.opened(request)  # before its thread starts: a restart then hands it over
        return True


class RequestHandler(BaseHTTPRequestHandler):
    server: AppServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes: with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms per response).
    disable_nagle_algorithm = True
    server_version = "drillkit-app"
    sys_version = ""
    timeout = 30  # seconds an idle keep-alive connection may hold its thread

    def handle(self) -> None:
        """Keep-alive requests one by one, each begun only when the client has sent it (so a
        memory-guard restart can hand an idle connection to the next process intact)."""
        self.close_connection = False
        while not self.close_connection:
            if not CONNECTIONS.await_request(self.connection, self.timeout):
                return
            try:
                self.handle_one_request()
            finally:
                CONNECTIONS.done(self.connection)

    def finish(self) -> None:
        CONNECTIONS.closed(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_OPTIONS(self) -> None:
        self._handle()

    def _handle(self) -> None:
        started = time.monotonic()
        path = urlsplit(self.path).path
        app = self.server.app
        app.memory.on_request()
        try:
            request = Request(self.command, path, self.headers, self._read_body())
            status, body = app.dispatch(request)
        except HttpError as exc:
            status, body = exc.status, {"error": exc.message, **exc.extra}
        except Exception as exc:  # a bug: answer 500, keep serving, say what broke
            log("internal_error", error_class=type(exc).__name__, error=str(exc))
            status, body = 500, {"error": "internal error"}
        self._send(status, body)
        app.stats.count_request(status)
        log(
            "request",
            method=self.command,
            path=path,
            status=status,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            raise HttpError(411, "chunked bodies are not supported; send Content-Length")
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b""
        if not raw_length.strip().isdigit():
            self.close_connection = True
            raise HttpError(400, "bad Content-Length")
        length = int(raw_length)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise HttpError(413, f"body larger than {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-App-Version", self.server.app.release.version)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client went away

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Silenced: ``_handle`` logs one line per request itself."""

    def log_message(self, fmt: str, *args: Any) -> None:
        log("http_error", detail=fmt % args)


# --------------------------------------------------------------------------------------------
# Memory: the leak a drill switches on, and the memory guard (pm2's --max-memory-restart)
# --------------------------------------------------------------------------------------------
# The config directory may hold `memory_leak` (a size: every request then retains that many bytes
# for the life of the process: a real leak, RSS grows until the container's memory limit
# OOM-kills it) and `max_memory_restart` (a size, pm2's `--max-memory-restart 400M`: when the
# process's RSS reaches it the app restarts itself gracefully). Both are read at start and on
# SIGHUP; a leak comes back after every restart, as a leak in the code does. The graceful restart
# stops accepting, lets the requests in flight finish, then re-executes the app with the same
# listening socket and the idle keep-alive connections (see `Connections`): a request sent
# meanwhile waits in its socket or in the backlog, so clients see a slower answer, never a
# refused or dropped one (pipelined requests excepted).

MEMORY_LEAK_FILE_DEFAULT = "/run/drillkit/config/memory_leak"
MAX_MEMORY_RESTART_FILE_DEFAULT = "/run/drillkit/config/max_memory_restart"
MAX_LEAK_PER_REQUEST = 16 << 20
MIN_MEMORY_GUARD = 32 << 20
"""A guard below this would restart the app in a loop (its RSS at start is about 25 MiB)."""
GUARD_INTERVAL_S = 0.05
GUARD_MIN_UPTIME_S = 1.0
"""No guard restart sooner than this after the process started (no restart loop)."""
DRAIN_BUDGET_S = 3.0
LISTEN_FD_ENV = "APP_LISTEN_FD"
GUARD_RESTARTS_ENV = "APP_GUARD_RESTARTS"
_SIZE_RE = re.compile(r"([0-9]{1,12})\s*(|b|k|kb|kib|m|mb|mib|g|gb|gib)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_memory_size(text: str) -> int:
    """Bytes of a size as pm2 writes it: ``400M``, ``512K``, ``1G``, also ``400MiB`` or plain
    bytes; the units are powers of 1024."""
    match = _SIZE_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not a size (e.g. 400M, 512K, 1G): {str(text)[:40]!r}")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)[:1].lower()]


def rss_from_status(status: str) -> int:
    """The resident set size in bytes from the text of ``/proc/<pid>/status`` (``VmRSS``)."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                return int(fields[1]) * 1024
    raise ValueError("no VmRSS line")


def current_rss() -> int:
    with open("/proc/self/status", encoding="ascii", errors="replace") as handle:
        return rss_from_status(handle.read())


def guard_due(rss: int, guard: int | None, uptime_s: float) -> bool:
    """Whether the guard restarts the process now: a guard is set, RSS has reached it, and the
    process has lived at least GUARD_MIN_UPTIME_S."""
    return guard is not None and rss >= guard and uptime_s >= GUARD_MIN_UPTIME_S


@dataclass(frozen=True)
class MemoryConfig:
    leak_per_request: int = 0
    guard_bytes: int | None = None
    problems: tuple[str, ...] = ()


def load_memory_config(leak_file: str, guard_file: str) -> MemoryConfig:
    """The two optional files (absent: no leak, no guard); a bad value is a problem, not fatal."""
    problems: list[str] = []
    leak, guard = 0, None
    leak_text = _read_optional_file(leak_file, "memory leak", problems)
    if leak_text:
        try:
            leak = parse_memory_size(leak_text)
            if leak > MAX_LEAK_PER_REQUEST:
                raise ValueError(f"at most {MAX_LEAK_PER_REQUEST >> 20}M per request")
        except ValueError as exc:
            problems.append(f"memory leak file {leak_file}: {exc}")
            leak = 0
    guard_text = _read_optional_file(guard_file, "max memory restart", problems)
    if guard_text:
        try:
            guard = parse_memory_size(guard_text)
            if guard < MIN_MEMORY_GUARD:
                raise ValueError(f"below the {MIN_MEMORY_GUARD >> 20}M floor (a restart loop)")
        except ValueError as exc:
            problems.append(f"max memory restart file {guard_file}: {exc}")
            guard = None
    return MemoryConfig(leak, guard, tuple(problems))


class MemoryControl:
    """The leak (bytes retained per request) and the guard's settings, reread on SIGHUP."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.leak_file = env.get("MEMORY_LEAK_FILE", MEMORY_LEAK_FILE_DEFAULT)
        self.guard_file = env.get("MAX_MEMORY_RESTART_FILE", MAX_MEMORY_RESTART_FILE_DEFAULT)
        raw = env.get(GUARD_RESTARTS_ENV, "0")
        self.guard_restarts = int(raw) if raw.isdigit() else 0
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._retained: list[bytes] = []
        self._retained_bytes = 0
        self.config = MemoryConfig()
        self.reload()

    def reload(self) -> None:
        self.config = load_memory_config(self.leak_file, self.guard_file)
        for problem in self.config.problems:
            log("config_problem", problem=problem)

    def on_request(self) -> None:
        """The leak: keep a freshly written buffer for good (written, so its pages are resident)."""
        size = self.config.leak_per_request
        if size:
            chunk = b"\xa5" * size
            with self._lock:
                self._retained.append(chunk)
                self._retained_bytes += size

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            retained, chunks = self._retained_bytes, len(self._retained)
        return {
            "rss_bytes": current_rss(),
            "leak_bytes_per_request": self.config.leak_per_request,
            "retained_bytes": retained,
            "retained_chunks": chunks,
            "max_memory_restart_bytes": self.config.guard_bytes,
            "guard_restarts": self.guard_restarts,
            "uptime_s": round(time.monotonic() - self.started, 3),
        }


class Connections:
    """The server's open client connections and which of them are inside a request. A restart
    freezes them: no new request begins, the ones in flight finish, and every idle connection is
    handed to the next process as it is (a request the client sends meanwhile waits in the
    socket, unread), so no keep-alive client sees its connection closed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, socket.socket] = {}
        self._busy: set[int] = set()
        self._frozen = False
        self._never = threading.Event()
        self.restarting = threading.Event()

    def opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._open[id(sock)] = sock

    def closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.pop(id(sock), None)
            self._busy.discard(id(sock))

    def await_request(self, sock: socket.socket, timeout_s: float | None) -> bool:
        """Until the client's next request arrives: True (the connection is then busy), or False
        when it stays idle `timeout_s` (or is gone). Once frozen it never returns: the thread
        waits for the exec that hands the socket over."""
        deadline = time.monotonic() + (timeout_s or 30.0)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                readable, _, _ = select.select([sock], [], [], min(0.2, remaining))
            except (OSError, ValueError):
                return False
            with self._lock:
                frozen = self._frozen
                if readable and not frozen:
                    self._busy.add(id(sock))
                    return True
            if frozen:
                self._never.wait()

    def done(self, sock: socket.socket) -> None:
        with self._lock:
            self._busy.discard(id(sock))

    def freeze(self, budget_s: float) -> list[socket.socket]:
        """No new request begins; wait (at most `budget_s`) for those in flight; the idle
        connections, to hand over (a request still running past the budget is not)."""
        with self._lock:
            self._frozen = True
        deadline = time.monotonic() + budget_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._busy:
                    break
            time.sleep(0.005)
        with self._lock:
            return [sock for key, sock in self._open.items() if key not in self._busy]

    def count(self) -> int:
        with self._lock:
            return len(self._open)


CONNECTIONS = Connections()
HANDOVER_FDS_ENV = "APP_HANDOVER_FDS"


def restart_in_place(server: "AppServer", app: "App", rss: int) -> None:
    """The guard's graceful restart: stop accepting, let the requests in flight finish, then
    re-execute the app with the listening socket and the idle connections."""
    guard = app.memory.config.guard_bytes
    log("memory_guard_restart", rss_bytes=rss, max_memory_restart_bytes=guard)
    CONNECTIONS.restarting.set()
    server.shutdown()  # serve_forever returns; the listening socket stays open
    handed = CONNECTIONS.freeze(DRAIN_BUDGET_S)
    app.pool.reset()
    fds = []
    for sock in handed:
        with contextlib.suppress(OSError, ValueError):
            sock.set_inheritable(True)
            fds.append(sock.fileno())
    fd = server.socket.fileno()
    os.set_inheritable(fd, True)
    env = dict(os.environ)
    env[LISTEN_FD_ENV] = str(fd)
    env[HANDOVER_FDS_ENV] = ",".join(str(f) for f in fds)
    env[GUARD_RESTARTS_ENV] = str(app.memory.guard_restarts + 1)
    log("memory_guard_exec", handed_over=len(fds), open_connections=CONNECTIONS.count())
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-u", os.path.abspath(__file__)], env)


def adopt_connections(server: "AppServer", env: Mapping[str, str]) -> int:
    """Serve the client connections a guard restart handed over (APP_HANDOVER_FDS)."""
    adopted = 0
    for raw in env.get(HANDOVER_FDS_ENV, "").split(","):
        if not raw.isdigit():
            continue
        sock = socket.socket(fileno=int(raw))
        sock.set_inheritable(False)
        try:
            peer = sock.getpeername()
        except OSError:
            sock.close()
            continue
        CONNECTIONS.opened(sock)
        server.process_request(sock, peer)
        adopted += 1
    return adopted


def start_memory_guard(server: "AppServer", app: "App") -> threading.Thread:
    """Watch the process's RSS; at the configured guard, restart in place (once)."""

    def watch() -> None:
        while True:
            time.sleep(GUARD_INTERVAL_S)
            try:
                rss = current_rss()
            except (OSError, ValueError):
                continue
            uptime = time.monotonic() - app.memory.started
            if guard_due(rss, app.memory.config.guard_bytes, uptime):
                restart_in_place(server, app, rss)
                return

    thread = threading.Thread(target=watch, name="memory-guard", daemon=True)
    thread.start()
    return thread


def inherited_listen_socket(env: Mapping[str, str]) -> socket.socket | None:
    """The listening socket a guard restart handed over (its fd in APP_LISTEN_FD), if any."""
    raw = env.get(LISTEN_FD_ENV, "")
    if not raw.isdigit():
        return None
    sock = socket.socket(fileno=int(raw))
    sock.set_inheritable(False)
    return sock


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main() -> int:
    if psycopg is None:
        sys.stderr.write("app.py needs psycopg 3 (Debian: python3-psycopg)\n")
        return 2
    try:
        settings = Settings.from_env(os.environ)
    except ValueError as exc:
        sys.stderr.write(f"app.py: bad configuration: {exc}\n")
        return 2
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(settings.audit_file) or ".", exist_ok=True)
    app = App(settings)
    inherited = inherited_listen_socket(os.environ)
    server = AppServer((settings.host, settings.port), app, bind_and_activate=inherited is None)
    if inherited is not None:  # restarted in place by the memory guard: serve the same socket
        server.socket.close()
        server.socket = inherited
        adopt_connections(server, os.environ)

    def on_sighup(_signum: int, _frame: Any) -> None:
        # Work outside the handler: it interrupts the main thread at an arbitrary point.
        threading.Thread(target=app.reload, name="reload", daemon=True).start()

    def on_sigterm(_signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGHUP, on_sighup)
    signal.signal(signal.SIGTERM, on_sigterm)
    log(
        "started",
        address=f"{settings.host}:{settings.port}",
        db_hosts=",".join(f"{h.host}:{h.port}" for h in app.config.hosts),
        db_name=settings.db_name,
        psycopg=psycopg.__version__,
        libpq=psycopg.pq.version(),
    )
    start_memory_guard(server, app)
    try:
        server.serve_forever(poll_interval=0.5)
        while CONNECTIONS.restarting.is_set():  # the memory guard re-executes the app
            time.sleep(1)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        server.server_close()
        app.pool.reset()
        log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
