"""The stack file's declared probes, journey and writer at run time (stack/probespec.py parses
them): requests with placeholders filled, answers judged, values captured, the canary table
written through drillkit's own connection. `Probes` (core/probes.py) mixes `DeclaredParts` in.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import re
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
import requests
from psycopg import sql as pgsql

from drillkit.errors import EnvironmentBroken
from drillkit.stack.probespec import (
    PLACEHOLDER,
    CanaryLedger,
    Declared,
    HttpProbe,
    HttpRequest,
    SqlProbe,
    TcpProbe,
)
from drillkit.stack.spec import _MISSING, JsonRule, _same

if TYPE_CHECKING:
    from drillkit.core.probes import ProbeConfig


def thread_session(local: threading.local) -> requests.Session:
    """This thread's requests.Session kept in `local` (a Session is not safe to share between the
    probes' pool threads; one per thread keeps its connections alive)."""
    s = getattr(local, "session", None)
    if s is None:
        s = requests.Session()
        local.session = s
    return s


class ProbeError(Exception):
    pass


PROBE_FAILURES: tuple[type[Exception], ...] = (
    requests.RequestException,
    ValueError,
    ProbeError,
    EnvironmentBroken,  # the app's container is stopped: it has no published port to call
)
"""What a probe records as a failed sample (never what stops the probe or the writer)."""


class DeclaredParts:
    """The declared probes, journey and canary writer; the state is `Probes`'s."""

    config: ProbeConfig
    declared: Declared
    access: StackAccess | None
    run_tag: str
    clock: Callable[[], float]
    _seq: itertools.count[int]
    _local: threading.local
    _canary: psycopg.Connection[Any] | None
    _auth: dict[str, Any] | None = None

    def _record(self, probe: str, start: float, ok: bool, error: str | None) -> None:
        raise NotImplementedError

    def _access(self) -> StackAccess:
        if self.access is None:
            raise RuntimeError("no StackAccess: declared probes cannot reach the stack")
        return self.access

    def _send(
        self, req: HttpRequest, values: dict[str, Any], timeout_s: float | None = None
    ) -> requests.Response:
        """Send a declared request with its placeholders filled from `values` and secrets."""
        access = self._access()
        fill = functools.partial(fill_placeholders, values=values, secret=access.secret)
        kwargs: dict[str, Any] = {
            "headers": {k: str(fill(v)) for k, v in req.headers.items()},
            "timeout": timeout_s or req.timeout_s or self.config.timeout_s,
        }
        if req.json is not None:
            kwargs["json"] = fill(req.json)
        elif req.body is not None:
            kwargs["data"] = str(fill(req.body)).encode()
        url = access.url(req.service) + str(fill(req.path))
        timeout = kwargs.pop("timeout")
        return self.session.request(req.method, url, timeout=timeout, **kwargs)

    @property
    def session(self) -> requests.Session:
        return thread_session(self._local)

    def _declared(self, probe: HttpProbe | SqlProbe | TcpProbe) -> None:
        start = self.clock()
        try:
            if isinstance(probe, HttpProbe):
                r = self._send(probe.request, {"key": f"p-{self.run_tag}-{next(self._seq)}"})
                why = answer_problem(probe.request, r, {})
                if why is not None:
                    raise ProbeError(why)
            elif isinstance(probe, SqlProbe):
                self._sql_probe(probe)
            else:
                timeout = probe.timeout_s or self.config.timeout_s
                host, port = self._access().tcp(probe.service, probe.port)
                with socket.create_connection((host, port), timeout=timeout):
                    pass
            ok, err = True, None
        except (*PROBE_FAILURES, KeyError, OSError, psycopg.Error) as exc:
            ok, err = False, f"{type(exc).__name__}: {str(exc)[:160]}"
        self._record(probe.name, start, ok, err)

    def _sql_probe(self, probe: SqlProbe) -> None:
        timeout = probe.timeout_s or self.config.timeout_s
        with self._access().connect(probe.service) as conn:
            conn.execute(f"SET statement_timeout = {int(timeout * 1000)}")
            row = conn.execute(probe.query).fetchone()  # a query from the stack file
        if probe.has_expect:
            got = row[0] if row else None
            if not _same(got, probe.expect):
                raise ProbeError(f"{probe.name}: got {got!r:.80}, expected {probe.expect!r:.80}")

    def auth_values(self) -> dict[str, Any]:
        """What the declared ledger's `auth` requests captured (run once, again after a 401)."""
        ledger = self.declared.ledger
        auth = getattr(ledger, "auth", ())
        if not auth:
            return {}
        if self._auth is None:
            values: dict[str, Any] = {"key": f"a-{self.run_tag}-{next(self._seq)}"}
            for i, req in enumerate(auth):
                r = self._send(req, values)
                why = answer_problem(req, r, values)
                if why is not None:
                    raise ProbeError(f"ledger auth step {i + 1} ({req.method} {req.path}): {why}")
                values.update(capture(req, r))
            self._auth = {k: v for k, v in values.items() if k != "key"}
        return dict(self._auth)

    def _declared_journey(self) -> None:
        start = self.clock()
        key = f"j-{self.run_tag}-{next(self._seq)}"
        values: dict[str, Any] = {"key": key, "payload": f"journey {key}"}
        try:
            for i, req in enumerate(self.declared.journey):
                r = self._send(req, values)
                why = answer_problem(req, r, values)
                if why is not None:
                    raise ProbeError(f"step {i + 1} ({req.method} {req.path}): {why}")
                values.update(capture(req, r))
            ok, err = True, None
        except (*PROBE_FAILURES, KeyError) as exc:
            ok, err = False, f"{type(exc).__name__}: {str(exc)[:200]}"
        self._record("journey", start, ok, err)

    def _canary_table(self) -> None:
        ledger = self.declared.ledger
        assert isinstance(ledger, CanaryLedger)
        with self._access().connect(self._access().primary()) as conn:
            create_canary(conn, ledger)

    def _canary_insert(self, ledger: CanaryLedger, key: str, payload: str) -> bool:
        """One canary row through drillkit's own connection; True once it is committed."""
        try:
            if self._canary is None or self._canary.closed:
                self._canary = self._access().connect(self._access().primary())
                self._canary.autocommit = True
                self._canary.execute(f"SET statement_timeout = {int(self.config.timeout_s * 1000)}")
            self._canary.execute(
                pgsql.SQL("INSERT INTO {} (key, payload) VALUES (%s, %s)").format(
                    pgsql.Identifier(ledger.table)
                ),
                (key, payload),
            )
            return True
        except (psycopg.Error, EnvironmentBroken, OSError):
            if self._canary is not None:
                with contextlib.suppress(psycopg.Error):
                    self._canary.close()
            self._canary = None
            return False


def create_canary(conn: psycopg.Connection[Any], ledger: CanaryLedger) -> None:
    """The canary table (the runner creates it at seed time, before any baseline backup)."""
    conn.execute(
        pgsql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, payload text NOT NULL,"
            " written_at timestamptz NOT NULL DEFAULT now())"
        ).format(pgsql.Identifier(ledger.table))
    )
    conn.commit()


def lookup_http(
    probes: DeclaredParts, req: HttpRequest, value_path: str | None, keys: set[str]
) -> dict[str, str]:
    """key -> payload of every key the app answers for (one request per key, 8 at a
    time). A 404 is absent; any other answer than the request's status is an error (the ledger
    cannot be verified)."""

    auth = probes.auth_values()

    def one(key: str) -> tuple[str, str | None]:
        r = probes._send(req, {**auth, "key": key}, timeout_s=max(probes.config.timeout_s, 5.0))
        if r.status_code == 404:
            return key, None
        if r.status_code not in req.status:
            raise EnvironmentBroken(
                f"ledger lookup of {key} answered {r.status_code}: {r.text[:120]}"
            )
        if value_path is None:
            return key, r.text
        got = JsonRule(value_path, None).lookup(r.json())
        return key, None if got is _MISSING else str(got)

    found: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="ledger") as pool:
        for key, payload in pool.map(one, sorted(keys)):
            if payload is not None:
                found[key] = payload
    return found


def fill_placeholders(value: Any, values: dict[str, Any], secret: Callable[[str], str]) -> Any:
    """A request part with {key}, {payload}, {secret:NAME} and captured {name} filled in. A
    string that is exactly one placeholder takes the value itself (a captured number stays one).
    Secrets are read at the call and never kept."""
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value)
        if whole is not None and not whole.group(1):
            return values[whole.group(2)]

        def sub(m: re.Match[str]) -> str:
            return secret(m.group(2)) if m.group(1) else str(values[m.group(2)])

        return PLACEHOLDER.sub(sub, value)
    if isinstance(value, dict):
        return {
            fill_placeholders(k, values, secret): fill_placeholders(v, values, secret)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [fill_placeholders(v, values, secret) for v in value]
    return value


def answer_problem(req: HttpRequest, r: requests.Response, values: dict[str, Any]) -> str | None:
    """Why an answer to a declared request is not a pass (status, body text, JSON rules), or
    None."""
    if r.status_code not in req.status:
        want = " or ".join(str(s) for s in req.status)
        return f"answered {r.status_code} (expected {want}): {r.text[:120]}"
    if req.body_contains is not None:
        text = str(fill_placeholders(req.body_contains, values, lambda n: "{secret:" + n + "}"))
        if text not in r.text:
            return f"body lacks {req.body_contains!r:.60}: {r.text[:120]}"
    if req.rules:
        try:
            data = r.json()
        except ValueError:
            return f"not JSON: {r.text[:120]}"
        for rule in req.rules:
            why = rule.problem(data)
            if why is not None:
                return why
    return None


def capture(req: HttpRequest, r: requests.Response) -> dict[str, Any]:
    """The values a journey step captures from its answer (KeyError names a missing one)."""
    out: dict[str, Any] = {}
    data: Any = None
    for name, where in req.capture.items():
        if where.startswith("header:"):
            got = r.headers.get(where[7:])
            if got is None:
                raise KeyError(f"capture {name}: no header {where[7:]}")
            out[name] = got
            continue
        if data is None:
            data = r.json()
        found = JsonRule(where[5:], None).lookup(data)
        if found is _MISSING:
            raise KeyError(f"capture {name}: no {where} in the answer")
        out[name] = found
    return out


@dataclass(frozen=True)
class StackAccess:
    """How declared probes reach the stack, without core importing it: the runner fills these."""

    url: Callable[[str], str]
    """service -> "http://127.0.0.1:<published port>" of its app port."""
    connect: Callable[[str], psycopg.Connection[Any]]
    """service -> a superuser connection to a PostgreSQL service."""
    secret: Callable[[str], str]
    """name -> a stack secret's current value."""
    tcp: Callable[[str, int], tuple[str, int]]
    """(service, container port) -> (host, published port) on 127.0.0.1."""
    primary: Callable[[], str]
    """The database service acting as primary now (the canary writes there)."""
    is_database: Callable[[str], bool]
