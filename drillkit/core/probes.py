"""Continuous probes and the write ledger, on the drill's monotonic clock.

Everything but the health probe is what the stack file declares (stack/probespec.py; the
reference stack's own file, stacks/reference.yaml, declares its journey, ledger and log patterns
like any team's):

- Availability probe: GET the app's health URL; ok when the answer passes the stack file's health
  rule (`app.health`: status, body text, JSON rules). Declared `probes` replace it, each sampled
  under its own name.
- Journey probe: the declared `journey`, an ordered list of requests; ok when every step answers
  as declared. A journey slower than `degraded_after_s` also fails (a degradation is an outage of
  the journey). A stack that declares none has no journey.
- Extra probes a stack option adds (e.g. the web front's "site" probe: every page served with its
  known-good SHA-256): ok unless their check raises.
- Writer: the declared `ledger` (an HTTP write template, or the canary table drillkit writes
  through its own connection) at a steady rate, recording each acknowledged write (key, payload
  hash, ack time); keys sent but never acknowledged are kept to count "in doubt" rows later. A
  stack that declares none has no writer (RPO is not measured).
The stack is reached only through `StackAccess` (URLs, connections, secrets by callables).

Probes are launched at fixed ticks on a thread pool, so a hung request never delays the next tick.
A sample's `t` is its completion time (when its outcome was known).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
import requests
from psycopg import sql as pgsql

from drillkit.core.declared import (
    PROBE_FAILURES,
    DeclaredParts,
    ProbeError,
    StackAccess,
    lookup_http,
    thread_session,
)
from drillkit.core.hostspeed import HostControl
from drillkit.core.measure import AckedWrite, LedgerOutcome, Sample
from drillkit.stack.probespec import (
    CanaryLedger,
    Declared,
    HttpLedger,
)
from drillkit.stack.spec import REFERENCE_HEALTH, HealthSpec

Clock = Callable[[], float]


def health_verdict(
    status_code: int, body: object, rule: HealthSpec = REFERENCE_HEALTH
) -> str | None:
    """Why a health answer (its text, or its parsed JSON) is not a pass by the stack file's
    health rule, or None when it is one (the reference app's rule fails a 200 that says
    maintenance mode is on: it refuses writes, so recovery is not reached before that)."""
    return rule.verdict(status_code, body)


def payload_hash(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()


DEGRADED_PREFIX = "degraded: "
"""How a sample's error begins when the call succeeded but took longer than degraded_after."""


@dataclass
class ProbeConfig:
    interval_s: float = 0.1
    timeout_s: float = 2.0
    degraded_after_s: float | None = None
    writer_rate_hz: float = 20.0


class AppClient:
    """Minimal client of the reference app's API, for the catalogue's steps and checks that
    declare `needs=("reference-app",)` (the probes and the writer use the stack file's
    declarations)."""

    def __init__(
        self, base_url: Callable[[], str], email: str, password: Callable[[], str], timeout_s: float
    ) -> None:
        self._base = base_url
        self.email = email
        self._password = password
        self.timeout_s = timeout_s
        self._token: str | None = None
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        return thread_session(self._local)

    def url(self, path: str) -> str:
        return self._base() + path

    def login(self) -> str:
        r = self.session.post(
            self.url("/api/auth/login"),
            json={"email": self.email, "password": self._password()},
            timeout=self.timeout_s,
        )
        if r.status_code != 200:
            raise ProbeError(f"login answered {r.status_code}: {r.text[:120]}")
        token = r.json()["token"]
        self._token = token
        return str(token)

    def token(self) -> str:
        return self._token or self.login()

    def create_order(self, key: str, payload: str, token: str | None = None) -> requests.Response:
        return self.session.post(
            self.url("/api/orders"),
            json={"item": "drill", "amount_cents": 100, "payload": payload},
            headers={"Authorization": f"Bearer {token or self.token()}", "Idempotency-Key": key},
            timeout=self.timeout_s,
        )

    def me(self, token: str) -> requests.Response:
        """GET /api/auth/me with a bearer token (any token: the old, the forged, a fresh one)."""
        return self.session.get(
            self.url("/api/auth/me"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=self.timeout_s,
        )

    def get_order(self, order_id: int, token: str | None = None) -> requests.Response:
        return self.session.get(
            self.url(f"/api/orders/{order_id}"),
            headers={"Authorization": f"Bearer {token or self.token()}"},
            timeout=self.timeout_s,
        )


class Probes(DeclaredParts):
    """Runs the availability (or declared) probes, the declared journey and the declared writer
    until stopped."""

    def __init__(
        self,
        base_url: Callable[[], str],
        health: HealthSpec,
        config: ProbeConfig,
        run_tag: str,
        clock: Clock = time.monotonic,
        extra: dict[str, Callable[[], object]] | None = None,
        declared: Declared | None = None,
        access: StackAccess | None = None,
    ) -> None:
        self.config = config
        self.declared = declared or Declared()
        if self.declared.any and access is None:
            raise ValueError("declared probes need a StackAccess (URLs, connections, secrets)")
        self.access = access
        self._canary: psycopg.Connection[Any] | None = None
        self.extra = dict(extra or {})
        """name -> check run at every tick like the built-in probes (fails when it raises)."""
        self.clock = clock
        self.health = health
        self.health_url = lambda: base_url() + health.path
        self.samples: list[Sample] = []
        self.acked: list[AckedWrite] = []
        self.sent: set[str] = set()
        self.run_tag = run_tag
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=24, thread_name_prefix="probe")
        self._threads: list[threading.Thread] = []
        self._seq = itertools.count()
        self._calls = itertools.count()
        self._in_flight: dict[int, float] = {}
        """call number -> when a probe call began, while it runs (its sample comes at its end)."""
        self._lock = threading.Lock()
        self._local = threading.local()
        self.running = False
        self.control = HostControl(clock)
        """The host's speed beside the probes (core/hostspeed.py): its samples are not
        `samples`, so no availability figure ever counts them."""

    # ----- lifecycle ----------------------------------------------------------------------------
    def _parts(self) -> list[tuple[str, Callable[[], None]]]:
        """(thread name, probe) of every probe run at each tick."""
        d = self.declared
        parts: list[tuple[str, Callable[[], None]]] = []
        if d.probes:
            parts += [
                (f"probe-{pr.name}", functools.partial(self._declared, pr)) for pr in d.probes
            ]
        else:
            parts.append(("probe-availability", self._availability))
        if d.journey:
            parts.append(("probe-journey", self._declared_journey))
        return parts

    @property
    def has_writer(self) -> bool:
        return self.declared.ledger is not None

    def start(self) -> None:
        self.running = True
        if isinstance(self.declared.ledger, CanaryLedger):
            self._canary_table()
        self._threads = [
            *(
                threading.Thread(
                    target=self._tick, args=(probe, self.config.interval_s), name=name, daemon=True
                )
                for name, probe in self._parts()
            ),
            *(
                [threading.Thread(target=self._writer_loop, name="writer", daemon=True)]
                if self.has_writer
                else []
            ),
            *(
                threading.Thread(
                    target=self._tick,
                    args=(functools.partial(self._extra, name, check), self.config.interval_s),
                    name=f"probe-{name}",
                    daemon=True,
                )
                for name, check in self.extra.items()
            ),
        ]
        for t in self._threads:
            t.start()
        self.control.start()

    def stop(self) -> None:
        self._stop.set()
        self.control.stop()
        for t in self._threads:
            t.join(timeout=self.config.timeout_s + 1)
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._canary is not None:
            with contextlib.suppress(psycopg.Error):
                self._canary.close()
            self._canary = None
        self.running = False

    def _tick(self, probe: Callable[[], None], interval: float) -> None:
        next_at = self.clock()
        while not self._stop.is_set():
            self._pool.submit(self._tracked, probe)
            next_at += interval
            delay = next_at - self.clock()
            if delay < 0:  # fell behind (overloaded): skip missed ticks, never burst
                next_at = self.clock()
                delay = 0
            self._stop.wait(delay)

    def _tracked(self, probe: Callable[[], None]) -> None:
        """Run one probe call, known as in flight until it has recorded its sample."""
        call = next(self._calls)
        with self._lock:
            self._in_flight[call] = self.clock()
        try:
            probe()
        finally:
            with self._lock:
                self._in_flight.pop(call, None)

    def oldest_in_flight(self) -> float | None:
        """When the oldest probe call still running began (None: none runs). A sample is
        stamped when its call ends, so a call begun during the outage (e.g. a journey waiting
        out its timeouts) can still add a failure after the probes already passed again."""
        with self._lock:
            return min(self._in_flight.values(), default=None)

    def _record(self, probe: str, start: float, ok: bool, error: str | None) -> None:
        end = self.clock()
        latency = end - start
        if (
            ok
            and self.config.degraded_after_s is not None
            and latency > self.config.degraded_after_s
        ):
            ok, error = (
                False,
                f"{DEGRADED_PREFIX}{latency * 1000:.0f} ms > "
                f"{self.config.degraded_after_s * 1000:.0f} ms",
            )
        with self._lock:
            self.samples.append(Sample(probe, end, ok, latency, error))

    # ----- the probes ---------------------------------------------------------------------------
    def _availability(self) -> None:
        start = self.clock()
        try:
            r = requests.get(self.health_url(), timeout=self.config.timeout_s)
            err = health_verdict(r.status_code, r.text, self.health)
            ok = err is None
        except PROBE_FAILURES as exc:
            ok, err = False, f"{type(exc).__name__}: {str(exc)[:160]}"
        self._record("availability", start, ok, err)

    def _extra(self, name: str, check: Callable[[], object]) -> None:
        start = self.clock()
        try:
            check()
            ok, err = True, None
        except (*PROBE_FAILURES, KeyError) as exc:
            ok, err = False, f"{type(exc).__name__}: {str(exc)[:160]}"
        self._record(name, start, ok, err)

    def _writer_loop(self) -> None:
        period = 1.0 / self.config.writer_rate_hz
        next_at = self.clock()
        while not self._stop.is_set():
            self._write_one()
            next_at += period
            delay = next_at - self.clock()
            if delay < 0:
                next_at = self.clock()
                delay = 0
            self._stop.wait(delay)

    def _write_one(self) -> None:
        key = f"w-{self.run_tag}-{next(self._seq)}"
        payload = f"ledger {key} {time.time_ns()}"
        with self._lock:
            self.sent.add(key)
        ledger = self.declared.ledger
        if isinstance(ledger, HttpLedger):
            try:
                r = self._send(ledger.write, {**self.auth_values(), "key": key, "payload": payload})
                if r.status_code == 401 and ledger.auth:  # refused, not written: log in again
                    self._auth = None
                    r = self._send(
                        ledger.write, {**self.auth_values(), "key": key, "payload": payload}
                    )
            except (*PROBE_FAILURES, KeyError):
                return
            if r.status_code in ledger.write.status:
                self._ack(key, payload)
            return
        if isinstance(ledger, CanaryLedger) and self._canary_insert(ledger, key, payload):
            self._ack(key, payload)

    def _ack(self, key: str, payload: str) -> None:
        with self._lock:
            self.acked.append(AckedWrite(key, payload_hash(payload), self.clock()))

    def ledger_outcome(
        self, connect_primary: Callable[[], psycopg.Connection[Any]]
    ) -> LedgerOutcome:
        """Look up every write sent and every one acknowledged, by the declared lookup (SQL or
        HTTP) or in the canary table; with no ledger declared there is nothing to look up."""
        with self._lock:
            acked = list(self.acked)
            sent = set(self.sent)
        ledger = self.declared.ledger
        if isinstance(ledger, HttpLedger) and ledger.http is not None:
            look = ledger.http
            found = lookup_http(self, look.request, look.value, sent | {w.key for w in acked})
            return outcome_of({k: payload_hash(p) for k, p in found.items()}, acked)
        if isinstance(ledger, HttpLedger) and ledger.sql is not None:
            access = self._access()
            service = ledger.sql.service
            conn = connect_primary() if access.is_database(service) else access.connect(service)
            with conn:
                return verify_ledger(conn, acked, sent, ledger.sql.query)
        if isinstance(ledger, CanaryLedger):
            query = pgsql.SQL("SELECT key, payload FROM {} WHERE key = ANY(%(keys)s)").format(
                pgsql.Identifier(ledger.table)
            )
            with connect_primary() as conn:
                return verify_ledger(conn, acked, sent, query)
        return outcome_of({}, acked)  # no ledger: no writes were sent

    # ----- views --------------------------------------------------------------------------------
    def snapshot(self) -> list[Sample]:
        with self._lock:
            return list(self.samples)

    def passing_streak(self, since: float) -> int:
        """Consecutive passing samples (all probes) at the end of the timeline, after `since`."""
        streak = 0
        for s in reversed(self.snapshot()):
            if s.t < since or not s.ok:
                break
            streak += 1
        return streak

    def first_failure(self, since: float) -> Sample | None:
        return next((s for s in self.snapshot() if s.t >= since and not s.ok), None)


def verify_ledger(
    conn: psycopg.Connection[Any],
    acked: list[AckedWrite],
    sent: set[str],
    query: str | pgsql.Composable,
) -> LedgerOutcome:
    """Look up every acknowledged write (and every sent one) in the database after recovery;
    `query` selects rows (key, payload) for the text array %(keys)s."""
    keys = sorted(sent | {w.key for w in acked})
    found: dict[str, str] = {}
    for i in range(0, len(keys), 5000):
        chunk = keys[i : i + 5000]
        rows = conn.execute(query, {"keys": chunk}).fetchall()  # type: ignore[arg-type]
        found.update({str(k): payload_hash(str(p)) for k, p in rows})
    return outcome_of(found, acked)


def outcome_of(found: dict[str, str], acked: list[AckedWrite]) -> LedgerOutcome:
    """Lost, altered and in-doubt writes from what the lookup found (key -> payload hash)."""
    acked_keys = {w.key for w in acked}
    lost = tuple(w for w in acked if w.key not in found)
    altered = tuple(w for w in acked if w.key in found and found[w.key] != w.payload_hash)
    in_doubt = sum(1 for k in found if k not in acked_keys)
    return LedgerOutcome(acked=len(acked), lost=lost, altered=altered, in_doubt=in_doubt)


@dataclass
class Baseline:
    """Steady-state figures the checklist compares against."""

    journey_median_s: float
    availability_median_s: float
    samples: int
    extra: dict[str, Any] = field(default_factory=dict)
    control_median_s: float | None = None
    """The host control's median round trip over the window (core/hostspeed.py); None: none."""


def median(values: list[float]) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
