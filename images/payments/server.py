#!/usr/bin/env python3
"""A stub payment provider: a tiny Stripe-like charge API that fails on command.

Python 3.11 standard library only. One process is one provider (its name from PROVIDER_NAME); the
stack runs two containers of this image, the primary provider and the backup.

- ``POST /v1/charges`` (``Idempotency-Key`` header required; body ``{"amount_cents", "currency",
  "description"}``) captures a charge and answers it. A key seen before answers the charge it made
  then (Stripe's idempotency: a retry never charges twice at the same provider); the same key with
  another amount is refused (409).
- ``GET /v1/charges`` lists every charge (the provider's ledger, as its dashboard shows it);
  ``?idempotency_key=K`` filters; ``GET /v1/charges/<id>`` one charge.
- After each capture a webhook ``charge.succeeded`` goes to WEBHOOK_URL, signed with HMAC-SHA256
  of the body under the secret in WEBHOOK_SECRET_FILE (header ``X-Provider-Signature:
  sha256=<hex>``), retried a few times.
- ``GET /api/v2/status.json``: the status page (status.stripe.com's shape), ``major`` while failing.
- ``/_drill/fault`` (GET, PUT, DELETE): the drill's control. PUT ``{"pattern": [...],
  "drop_webhooks": bool}``: every charge request then takes the next behaviour of the pattern in
  turn: ``ok``; ``error`` (500 at once, nothing captured); ``hang`` (nothing captured, no answer
  until the fault ends or HANG_MAX_S pass, then the connection is closed); ``capture-hang`` (the
  charge is captured, then no answer: the client cannot know it was charged). With
  ``drop_webhooks`` no webhook leaves (each counted as dropped). The status page, the ledger and
  the control stay up: a partial outage of charge creation, as providers' incidents usually are.
  Only the harness may call it: every control call carries ``Authorization: Bearer <token>``, the
  per-run token in CONTROL_TOKEN_FILE (the app never sees it); without it the answer is 401 (and
  with no token configured the control refuses every call).

Request bodies are bounded (MAX_BODY); a Content-Length that is not a non-negative integer is a
400, a larger one a 413.

The ledger is in memory: a restart of the container empties it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

BEHAVIOURS = ("ok", "error", "hang", "capture-hang")
HANG_MAX_S = 30.0
WEBHOOK_ATTEMPTS = (0.0, 0.2, 0.5, 1.0)
"""Delay before each delivery attempt of one webhook, in seconds."""
MAX_BODY = 1 << 16
MAX_KEY_LEN = 300


def log(event: str, **fields: Any) -> None:
    stamp = (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() % 1 * 1e6):06d}Z"
    )
    parts = [stamp, event, *(f"{k}={json.dumps(v)}" for k, v in fields.items())]
    sys.stdout.write(" ".join(parts) + "\n")
    sys.stdout.flush()


def behaviour_for(pattern: list[str], n: int) -> str:
    """The behaviour of the n-th (0-based) charge request under a fault pattern ('ok' if empty)."""
    return pattern[n % len(pattern)] if pattern else "ok"


def validate_pattern(raw: Any) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(b, str) for b in raw):
        raise ValueError("pattern must be a list of behaviour names")
    unknown = [b for b in raw if b not in BEHAVIOURS]
    if unknown:
        raise ValueError(f"unknown behaviours {unknown}; known: {', '.join(BEHAVIOURS)}")
    return list(raw)


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


@dataclass
class Charge:
    id: str
    idempotency_key: str
    amount_cents: int
    currency: str
    description: str
    provider: str
    status: str = "succeeded"
    created: float = field(default_factory=time.time)
    webhook: str = "pending"
    """'pending', 'delivered', 'dropped' or 'failed' (every attempt failed)."""


class Provider:
    def __init__(
        self, name: str, webhook_url: str, secret: bytes, control_token: bytes = b""
    ) -> None:
        self.name = name
        self.webhook_url = webhook_url
        self.secret = secret
        self.control_token = control_token
        self.lock = threading.Lock()
        self.charges: dict[str, Charge] = {}
        self.by_key: dict[str, str] = {}
        self.pattern: list[str] = []
        self.drop_webhooks = False
        self.fault_since: float | None = None
        self.requests = 0
        self.released = threading.Event()
        self.counts = {"captured": 0, "errors": 0, "hung": 0, "replayed": 0, "webhooks_dropped": 0}

    # ---- the drill's control -------------------------------------------------------------
    def set_fault(self, pattern: list[str], drop_webhooks: bool) -> None:
        with self.lock:
            self.pattern, self.drop_webhooks = pattern, drop_webhooks
            self.requests = 0
            self.fault_since = time.time()
            self.released = threading.Event()
        log("fault_set", pattern=pattern, drop_webhooks=drop_webhooks)

    def clear_fault(self) -> None:
        with self.lock:
            self.pattern, self.drop_webhooks, self.fault_since = [], False, None
            released = self.released
        released.set()
        log("fault_cleared")

    def fault(self) -> dict[str, Any]:
        with self.lock:
            return {
                "pattern": list(self.pattern),
                "drop_webhooks": self.drop_webhooks,
                "since": self.fault_since,
                "counts": dict(self.counts),
            }

    def failing(self) -> bool:
        with self.lock:
            return bool(self.pattern) and any(b != "ok" for b in self.pattern)

    # ---- charges ---------------------------------------------------------------------------
    def next_behaviour(self) -> tuple[str, threading.Event]:
        with self.lock:
            b = behaviour_for(self.pattern, self.requests)
            self.requests += 1
            return b, self.released

    def capture(
        self, key: str, amount: int, currency: str, description: str
    ) -> tuple[Charge, bool]:
        """The charge for `key` (made now, or the one made before: replayed=True)."""
        with self.lock:
            existing = self.by_key.get(key)
            if existing is not None:
                charge = self.charges[existing]
                if charge.amount_cents != amount:
                    raise ValueError(
                        f"idempotency key reused with amount {amount} (charged {charge.amount_cents})"
                    )
                self.counts["replayed"] += 1
                return charge, True
            charge = Charge(
                id=f"ch_{self.name}_{len(self.charges) + 1:06d}",
                idempotency_key=key,
                amount_cents=amount,
                currency=currency,
                description=description,
                provider=self.name,
            )
            self.charges[charge.id] = charge
            self.by_key[key] = charge.id
            self.counts["captured"] += 1
            drop = self.drop_webhooks
            if drop:
                charge.webhook = "dropped"
                self.counts["webhooks_dropped"] += 1
        log("charge_captured", id=charge.id, key=key, amount_cents=amount, webhook_dropped=drop)
        if not drop:
            threading.Thread(target=self._deliver, args=(charge,), daemon=True).start()
        return charge, False

    def _deliver(self, charge: Charge) -> None:
        body = json.dumps(
            {"type": "charge.succeeded", "provider": self.name, "data": asdict(charge)},
            sort_keys=True,
        ).encode()
        for delay in WEBHOOK_ATTEMPTS:
            time.sleep(delay)  # a retry schedule (backoff), not a wait for a condition
            req = urllib.request.Request(
                self.webhook_url,
                data=body,
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    "X-Provider-Signature": sign(self.secret, body),
                },
            )
            try:
                with urllib.request.urlopen(req, timeout=2.0) as resp:
                    if 200 <= resp.status < 300:
                        with self.lock:
                            charge.webhook = "delivered"
                        return
            except (urllib.error.URLError, OSError) as exc:
                log("webhook_attempt_failed", id=charge.id, error=str(exc)[:160])
        with self.lock:
            charge.webhook = "failed"

    def list(self, key: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                asdict(c) for c in self.charges.values() if key is None or c.idempotency_key == key
            ]

    def get(self, charge_id: str) -> dict[str, Any] | None:
        with self.lock:
            c = self.charges.get(charge_id)
            return asdict(c) if c else None

    def count_error(self, kind: str) -> None:
        with self.lock:
            self.counts[kind] += 1


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], provider: Provider) -> None:
        self.provider = provider
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "drillkit-payments"
    sys_version = ""
    timeout = 30

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        url = urlsplit(self.path)
        started = time.monotonic()
        try:
            try:
                length = body_length(self.headers.get("Content-Length"))
            except ApiError:
                self.close_connection = True  # the body's end is unknown: never read on
                raise
            if length > MAX_BODY:
                self.close_connection = True
                raise ApiError(413, "body too large")
            raw = self.rfile.read(length) if length else b""
            answer = self.route(self.command, url.path, parse_qs(url.query), raw)
        except ApiError as exc:
            answer = (exc.status, {"error": {"message": exc.message}})
        if answer is None:  # a hung request: no answer at all
            self.close_connection = True
            log("request", method=self.command, path=url.path, status="no answer")
            return
        status, body = answer
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        ms = round((time.monotonic() - started) * 1000, 1)
        log("request", method=self.command, path=url.path, status=status, duration_ms=ms)

    def route(
        self, method: str, path: str, query: dict[str, list[str]], raw: bytes
    ) -> tuple[int, Any] | None:
        p = self.server.provider
        if path == "/api/v2/status.json" and method == "GET":
            failing = p.failing()
            return 200, {
                "page": {"name": p.name},
                "status": {
                    "indicator": "major" if failing else "none",
                    "description": "Charge creation failing"
                    if failing
                    else "All Systems Operational",
                },
            }
        if path == "/v1/charges" and method == "POST":
            return self.create_charge(p, raw)
        if path == "/v1/charges" and method == "GET":
            key = query.get("idempotency_key", [None])[0]
            return 200, {"object": "list", "data": p.list(key)}
        if path.startswith("/v1/charges/") and method == "GET":
            charge = p.get(path.rsplit("/", 1)[1])
            return (200, charge) if charge else (404, {"error": {"message": "no such charge"}})
        if path.startswith("/_drill/") and not self.authorized(p):
            return 401, {"error": {"message": "the drill control needs the harness's token"}}
        if path == "/_drill/fault":
            if method == "GET":
                return 200, p.fault()
            if method == "PUT":
                body = _json(raw)
                try:
                    pattern = validate_pattern(body.get("pattern"))
                except ValueError as exc:
                    raise ApiError(400, str(exc)) from exc
                p.set_fault(pattern, bool(body.get("drop_webhooks", False)))
                return 200, p.fault()
            if method == "DELETE":
                p.clear_fault()
                return 200, p.fault()
        raise ApiError(404, "not found")

    def authorized(self, p: Provider) -> bool:
        """The control call carries the run's token (compared in constant time)."""
        scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
        return (
            bool(p.control_token)
            and scheme == "Bearer"
            and hmac.compare_digest(given.strip().encode(), p.control_token)
        )

    def create_charge(self, p: Provider, raw: bytes) -> tuple[int, Any] | None:
        key = (self.headers.get("Idempotency-Key") or "").strip()
        if not key or len(key) > MAX_KEY_LEN:
            raise ApiError(400, "Idempotency-Key header required (at most 300 characters)")
        body = _json(raw)
        amount = body.get("amount_cents")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise ApiError(400, "amount_cents must be a non-negative integer")
        behaviour, released = p.next_behaviour()
        if behaviour == "error":
            p.count_error("errors")
            raise ApiError(500, "internal error while creating the charge")
        charge = None
        if behaviour in ("ok", "capture-hang"):
            try:
                charge, replayed = p.capture(
                    key, amount, str(body.get("currency", "usd")), str(body.get("description", ""))
                )
            except ValueError as exc:
                raise ApiError(409, str(exc)) from exc
        if behaviour in ("hang", "capture-hang"):
            p.count_error("hung")
            released.wait(HANG_MAX_S)
            return None
        assert charge is not None
        return (200 if replayed else 201), asdict(charge)


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def body_length(raw: str | None) -> int:
    """The Content-Length: absent is 0; anything but digits (a sign, a space inside, a word) is a
    400, so the connection is never read by a length it cannot mean."""
    if raw is None:
        return 0
    text = raw.strip()
    if not text.isdigit() or not text.isascii():
        raise ApiError(400, "bad Content-Length")
    return int(text)


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise ApiError(400, "body must be JSON") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    return body


def main() -> int:
    name = os.environ.get("PROVIDER_NAME", "provider")
    port = int(os.environ.get("PORT", "8090"))
    webhook_url = os.environ.get("WEBHOOK_URL", "http://app:8080/api/payments/webhook")
    secret_file = os.environ.get(
        "WEBHOOK_SECRET_FILE", "/run/drillkit/secrets/payments_webhook_secret"
    )
    token_file = os.environ.get(
        "CONTROL_TOKEN_FILE", "/run/drillkit/secrets/payments_control_token"
    )
    try:
        with open(secret_file, encoding="utf-8") as f:
            secret = f.read().strip().encode()
        with open(token_file, encoding="utf-8") as f:
            token = f.read().strip().encode()
    except OSError as exc:
        sys.stderr.write(f"server.py: a secret is unreadable: {exc}\n")
        return 2
    server = Server(("0.0.0.0", port), Provider(name, webhook_url, secret, token))

    def stop(_signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    log("started", provider=name, port=port, webhook_url=webhook_url)
    try:
        server.serve_forever(poll_interval=0.5)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
