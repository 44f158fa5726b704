"""A stack file's declared probes, journey, write ledger and log patterns (issue 14).

```yaml
probes:                      # each named; HTTP, SQL or TCP; every tick, like the health probe
  - {name: api, http: {service: api, method: GET, path: /status, status: 200, body_contains: OK,
     json: [{path: ok, equals: true}], headers: {}, timeout: 2}}
  - {name: db, sql: {service: db, query: "SELECT count(*) > 0 FROM notes", expect: true}}
  - {name: cache, tcp: {service: cache, port: 6379}}
journey:                     # ordered HTTP requests; a step without `service` uses the previous one
  - {service: api, method: POST, path: /login, json: {user: probe, password: "{secret:probe}"},
     status: 200, capture: {token: json.token}}
  - {method: GET, path: "/notes/{id}", headers: {Authorization: "Bearer {token}"}, status: 200}
ledger:
  http:
    auth: [{service: api, method: POST, path: /login, json: {password: "{secret:api}"},
            capture: {token: json.token}}]      # optional: run again when a write answers 401
    write: {service: api, method: POST, path: /notes, json: {key: "{key}", text: "{payload}"},
            acked: [200, 201]}
    lookup: {sql: {service: db, query: "SELECT key, text FROM notes WHERE key = ANY(%(keys)s)"}}
    # or lookup: {http: {path: "/notes/by-key/{key}", status: 200, json: text}}
  # or canary: {service: db, table: drillkit_canary, rate: 20}
logs:
  api: {errors: ['"level":"error"', ' 5\\d\\d '], timestamp: iso8601,
        duration_ms: 'took=([\\d.]+)ms'}     # optional: a line's time minus it is when it began
```

Placeholders in request paths, headers and JSON bodies: `{key}` (a fresh unique key per journey
or per write), `{payload}` (the write's payload), `{secret:NAME}` (a stack secret, read when the
request is sent and never recorded), and `{name}` for a value an earlier journey step captured
(`capture: {name: json.dotted.path}` or `{name: header:Name}`). A string that is exactly one
placeholder takes the value's own type (a captured number stays a number).

This module parses and validates only (no I/O): core/probes.py runs what it describes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from drillkit.stack.spec import JsonRule
from drillkit.validate import Problems, bounded, check_keys, excerpt, typed

PLACEHOLDER = re.compile(r"\{(secret:)?([A-Za-z_][A-Za-z0-9_]{0,63})\}")
BUILTIN_NAMES = frozenset({"key", "payload"})
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
TIMESTAMPS = ("iso8601", "epoch", "none")
MAX_REGEX = 200
"""A log pattern longer than this is refused (patterns run on every log line)."""
MAX_PATTERNS = 20
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
TABLE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
RESERVED_PROBES = frozenset({"journey"})
"""The journey's samples are named `journey`; a probe may not take that name."""


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request and what makes its answer a pass."""

    service: str
    method: str = "GET"
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    body: str | None = None
    status: tuple[int, ...] = (200,)
    body_contains: str | None = None
    rules: tuple[JsonRule, ...] = ()
    capture: dict[str, str] = field(default_factory=dict)
    """name -> 'json.dotted.path' or 'header:Name'."""
    timeout_s: float | None = None
    """None: the scenario's probe timeout."""


@dataclass(frozen=True)
class HttpProbe:
    name: str
    request: HttpRequest


@dataclass(frozen=True)
class SqlProbe:
    name: str
    service: str
    query: str
    expect: Any = None
    """The first column of the first row must equal it (JSON equality); None: the query need
    only succeed."""
    has_expect: bool = False
    timeout_s: float | None = None


@dataclass(frozen=True)
class TcpProbe:
    name: str
    service: str
    port: int
    timeout_s: float | None = None


DeclaredProbe = HttpProbe | SqlProbe | TcpProbe


@dataclass(frozen=True)
class SqlLookup:
    """Rows (key, payload) for the keys in %(keys)s (a text array)."""

    service: str
    query: str


@dataclass(frozen=True)
class HttpLookup:
    """One request per key ({key} in it): `status` means found; 404 means absent; the payload is
    at the JSON path `value` (or, with no path, the body contains it)."""

    request: HttpRequest
    value: str | None = None


@dataclass(frozen=True)
class HttpLedger:
    """Application-level ledger: the writer sends `write` (status in `write.status` is an ack);
    after recovery each key is looked up by SQL or HTTP."""

    write: HttpRequest
    sql: SqlLookup | None = None
    http: HttpLookup | None = None
    auth: tuple[HttpRequest, ...] = ()
    """Requests run before the first write, and again when a write answers 401, whose captured
    values (e.g. a bearer token) fill the write's and the HTTP lookup's placeholders."""


@dataclass(frozen=True)
class CanaryLedger:
    """Database-level ledger: drillkit creates `table` in `service` and inserts a row per write
    through its own connection at `rate` per second; a committed insert is an ack."""

    service: str
    table: str = "drillkit_canary"
    rate: float = 20.0


Ledger = HttpLedger | CanaryLedger


@dataclass(frozen=True)
class LogPatterns:
    service: str
    errors: tuple[re.Pattern[str], ...]
    timestamp: str = "iso8601"
    """How a line's time is read: iso8601 (first ISO-8601 stamp on the line), epoch (first
    10-digit Unix time), none (docker's log timestamps cut the log)."""
    duration_ms: re.Pattern[str] | None = None
    """Where an access-log line says how long its request took (group 1, in milliseconds): the
    line's time minus it is when the request began, so a request that waited out the outage and
    was answered with an error just after recovery is the outage's, not a post-recovery error."""


@dataclass(frozen=True)
class Declared:
    probes: tuple[DeclaredProbe, ...] = ()
    journey: tuple[HttpRequest, ...] = ()
    ledger: Ledger | None = None
    logs: dict[str, LogPatterns] = field(default_factory=dict)

    @property
    def any(self) -> bool:
        return bool(self.probes or self.journey or self.ledger)

    @property
    def services(self) -> frozenset[str]:
        """Every service named by a probe, journey step or ledger (for `stack.url`)."""
        out: set[str] = set()
        for pr in self.probes:
            out.add(pr.request.service if isinstance(pr, HttpProbe) else pr.service)
        out.update(r.service for r in self.journey)
        if isinstance(self.ledger, HttpLedger):
            out.add(self.ledger.write.service)
        elif isinstance(self.ledger, CanaryLedger):
            out.add(self.ledger.service)
        return frozenset(out)


KEYS = ("probes", "journey", "ledger", "logs")


def parse_probes(
    p: Problems, data: dict[str, Any], services: set[str] | frozenset[str]
) -> Declared:
    """The four keys of a stack file's mapping `data` (absent keys: nothing declared). Problems
    are recorded in `p` as path: reason; the caller raises them."""
    probes = _probes(p, data.get("probes", []), services)
    journey = _journey(p, data.get("journey", []), services)
    ledger = _ledger(p, data["ledger"], services) if data.get("ledger") is not None else None
    logs = _logs(p, data.get("logs", {}), services)
    return Declared(probes=probes, journey=journey, ledger=ledger, logs=logs)


# ----- helpers -------------------------------------------------------------------------------------
def _service(p: Problems, path: str, value: Any, services: set[str] | frozenset[str]) -> str | None:
    if not typed(p, path, value, str, "a service name"):
        return None
    if value not in services:
        p.add(
            path,
            f"no service {excerpt(value)} in the stack (services: {', '.join(sorted(services))})",
        )
        return None
    return str(value)


def _timeout(p: Problems, path: str, value: Any) -> float | None:
    if value is None:
        return None
    if typed(p, path, value, (int, float), "a timeout in seconds") and bounded(
        p, path, float(value), 0.05, 60.0, " s"
    ):
        return float(value)
    return None


def _statuses(p: Problems, path: str, value: Any) -> tuple[int, ...]:
    items = value if isinstance(value, list) else [value]
    out: list[int] = []
    for i, s in enumerate(items):
        at = f"{path}[{i}]" if isinstance(value, list) else path
        if typed(p, at, s, int, "an HTTP status (or a list of them)") and bounded(
            p, at, s, 100, 599
        ):
            out.append(s)
    if isinstance(value, list) and not value:
        p.add(path, "expected at least one HTTP status")
    return tuple(out) or (200,)


def placeholders(value: Any) -> list[tuple[bool, str]]:
    """(is_secret, name) of every placeholder in a string, or in a JSON value's strings."""
    if isinstance(value, str):
        return [(bool(m.group(1)), m.group(2)) for m in PLACEHOLDER.finditer(value)]
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in placeholders(k) + placeholders(v)]
    if isinstance(value, list):
        return [x for v in value for x in placeholders(v)]
    return []


def _check_names(p: Problems, path: str, value: Any, known: set[str]) -> None:
    for secret, name in placeholders(value):
        if not secret and name not in known:
            p.add(
                path,
                f"unknown placeholder {{{name}}}: use {{key}}, {{payload}}, {{secret:NAME}} or a "
                f"value captured by an earlier step ({', '.join(sorted(known - BUILTIN_NAMES)) or 'none'})",
            )


def _capture(p: Problems, path: str, raw: Any) -> dict[str, str]:
    if not typed(p, path, raw, dict, "a mapping of names to json.dotted.path or header:Name"):
        return {}
    out: dict[str, str] = {}
    for name, where in raw.items():
        at = f"{path}.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
            p.add(path, f"capture names are identifiers, got {excerpt(name)}")
            continue
        if name in BUILTIN_NAMES:
            p.add(at, f"{{{name}}} is built in; capture under another name")
            continue
        if not typed(p, at, where, str, "json.dotted.path or header:Name"):
            continue
        if where.startswith("json.") and all(where[5:].split(".")):
            out[name] = where
        elif where.startswith("header:") and re.fullmatch(r"[A-Za-z0-9-]{1,64}", where[7:]):
            out[name] = where
        else:
            p.add(at, f"expected json.dotted.path or header:Name, got {excerpt(where)}")
    return out


REQUEST_KEYS = (
    "service",
    "method",
    "path",
    "headers",
    "json",
    "body",
    "status",
    "body_contains",
    "rules",
    "capture",
    "timeout",
)


def _request(
    p: Problems,
    path: str,
    raw: Any,
    services: set[str] | frozenset[str],
    known: set[str],
    default_service: str | None = None,
    extra_keys: tuple[str, ...] = (),
    status_key: str = "status",
    allow_capture: bool = False,
) -> HttpRequest | None:
    if not typed(p, path, raw, dict, "a mapping {service, method, path, ...}"):
        return None
    allowed = [k for k in REQUEST_KEYS if k != "status" or status_key == "status"]
    if status_key != "status":
        allowed.append(status_key)
    if not allow_capture:
        allowed.remove("capture")
    check_keys(p, path, raw, (*allowed, *extra_keys), ())
    n = len(p.items)
    if "service" in raw or default_service is None:
        service = _service(p, f"{path}.service", raw.get("service"), services)
    else:
        service = default_service
    method = raw.get("method", "GET")
    if typed(p, f"{path}.method", method, str, "an HTTP method") and method.upper() not in METHODS:
        p.add(f"{path}.method", f"expected one of {', '.join(METHODS)}, got {excerpt(method)}")
    upath = raw.get("path", "/")
    if typed(p, f"{path}.path", upath, str, "a URL path") and (
        not upath.startswith("/") or len(upath) > 300 or any(c.isspace() for c in upath)
    ):
        p.add(f"{path}.path", f"must start with '/' (a URL path, no spaces), got {excerpt(upath)}")
    headers = raw.get("headers", {})
    if typed(p, f"{path}.headers", headers, dict, "a mapping of header names to strings"):
        for k, v in headers.items():
            if not isinstance(k, str) or not re.fullmatch(r"[A-Za-z0-9-]{1,64}", k):
                p.add(f"{path}.headers", f"expected a header name, got {excerpt(k)}")
            elif not isinstance(v, str):
                p.add(f"{path}.headers.{k}", "expected a string (quote numbers)")
    body = raw.get("body")
    if body is not None:
        typed(p, f"{path}.body", body, str, "a string")
        if "json" in raw:
            p.add(path, "give json or body, not both")
    contains = raw.get("body_contains")
    if contains is not None and typed(p, f"{path}.body_contains", contains, str, "a string"):
        if not contains:
            p.add(f"{path}.body_contains", "must not be empty")
    rules_raw = raw.get("rules", [])
    if (
        isinstance(method, str)
        and method.upper() in ("GET", "HEAD")
        and _looks_like_rules(raw.get("json"))
    ):  # a GET has no body: `json` is the answer's rules, as in app.health
        rules_raw, raw = raw["json"], {k: v for k, v in raw.items() if k != "json"}
        rules_at = f"{path}.json"
    else:
        rules_at = f"{path}.rules"
    rules = parse_json_rules(p, rules_raw, rules_at)
    for where in ("path", "headers", "json", "body", "body_contains"):
        _check_names(p, f"{path}.{where}", raw.get(where), known)
    capture = _capture(p, f"{path}.capture", raw.get("capture", {})) if allow_capture else {}
    statuses = _statuses(
        p, f"{path}.{status_key}", raw.get(status_key, [200, 201] if status_key == "acked" else 200)
    )
    timeout = _timeout(p, f"{path}.timeout", raw.get("timeout"))
    if len(p.items) > n or service is None:
        return None
    return HttpRequest(
        service=service,
        method=method.upper(),
        path=upath,
        headers=dict(headers),
        json=raw.get("json"),
        body=body,
        status=statuses,
        body_contains=contains,
        rules=rules,
        capture=capture,
        timeout_s=timeout,
    )


def _looks_like_rules(value: Any) -> bool:
    items = value if isinstance(value, list) else [value]
    return bool(items) and all(
        isinstance(r, dict) and "path" in r and ("equals" in r or "not_equals" in r) for r in items
    )


RULE_KEYS = ("path", "equals", "not_equals", "reason")


def parse_json_rules(p: Problems, raw: Any, path: str) -> tuple[JsonRule, ...]:
    """A rule {path: dotted.key, equals: V} or {path, not_equals: V} (optional reason), or a
    list of them (the same rules as app.health.json)."""
    items = [raw] if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        p.add(path, "expected a rule {path, equals} or a list of rules")
        return ()
    out: list[JsonRule] = []
    for i, rule in enumerate(items):
        at = path if isinstance(raw, dict) else f"{path}[{i}]"
        if not typed(p, at, rule, dict, "a mapping {path, equals} or {path, not_equals}"):
            continue
        check_keys(p, at, rule, RULE_KEYS, ("path",))
        jpath = rule.get("path", "")
        if not typed(p, f"{at}.path", jpath, str, "a dotted key path") or not all(jpath.split(".")):
            p.add(
                f"{at}.path", f"must be dotted keys like status or checks.db, got {excerpt(jpath)}"
            )
            continue
        has = [k for k in ("equals", "not_equals") if k in rule]
        if len(has) != 1:
            p.add(at, "needs exactly one of equals, not_equals")
            continue
        value = rule[has[0]]
        if value is not None and not isinstance(value, str | int | float | bool):
            p.add(f"{at}.{has[0]}", "expected a scalar (string, number, true/false, null)")
            continue
        reason = rule.get("reason", "")
        if typed(p, f"{at}.reason", reason, str, "a string"):
            out.append(JsonRule(jpath, value, negate=has[0] == "not_equals", reason=reason))
    return tuple(out)


def _named(p: Problems, path: str, name: Any, seen: set[str]) -> bool:
    if not typed(p, path, name, str, "a probe name") or not NAME.fullmatch(name):
        if isinstance(name, str):
            p.add(
                path,
                f"expected lowercase letters, digits, - and _ (at most 40), got {excerpt(name)}",
            )
        return False
    if name in seen or name in RESERVED_PROBES:
        p.add(path, f"probe name {name!r} is {'taken' if name in seen else 'reserved'}")
        return False
    seen.add(name)
    return True


def _probes(
    p: Problems, raw: Any, services: set[str] | frozenset[str]
) -> tuple[DeclaredProbe, ...]:
    if not typed(p, "probes", raw, list, "a list of probes {name, http|sql|tcp}"):
        return ()
    out: list[DeclaredProbe] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        at = f"probes[{i}]"
        if not typed(p, at, item, dict, "a mapping {name, http|sql|tcp: {...}}"):
            continue
        check_keys(p, at, item, ("name", "http", "sql", "tcp"), ("name",))
        kinds = [k for k in ("http", "sql", "tcp") if k in item]
        if len(kinds) != 1:
            p.add(at, "needs exactly one of http, sql, tcp")
            continue
        if not _named(p, f"{at}.name", item.get("name"), seen):
            continue
        name, kind, body = item["name"], kinds[0], item[kinds[0]]
        at = f"{at}.{kind}"
        if kind == "http":
            req = _request(p, at, body, services, set(BUILTIN_NAMES))
            if req is not None:
                out.append(HttpProbe(name, req))
            continue
        if not typed(p, at, body, dict, "a mapping"):
            continue
        if kind == "sql":
            check_keys(p, at, body, ("service", "query", "expect", "timeout"), ("service", "query"))
            service = _service(p, f"{at}.service", body.get("service"), services)
            query = body.get("query")
            if typed(p, f"{at}.query", query, str, "an SQL query") and not 0 < len(query) <= 2000:
                p.add(f"{at}.query", "must be 1-2000 characters")
            expect = body.get("expect")
            if expect is not None and not isinstance(expect, str | int | float | bool):
                p.add(f"{at}.expect", "expected a scalar (string, number, true/false)")
            timeout = _timeout(p, f"{at}.timeout", body.get("timeout"))
            if service and isinstance(query, str):
                out.append(SqlProbe(name, service, query, expect, "expect" in body, timeout))
        else:
            check_keys(p, at, body, ("service", "port", "timeout"), ("service", "port"))
            service = _service(p, f"{at}.service", body.get("service"), services)
            port = body.get("port")
            ok = typed(p, f"{at}.port", port, int, "a port number") and bounded(
                p, f"{at}.port", port, 1, 65535
            )
            timeout = _timeout(p, f"{at}.timeout", body.get("timeout"))
            if service and ok:
                out.append(TcpProbe(name, service, port, timeout))
    return tuple(out)


def _journey(p: Problems, raw: Any, services: set[str] | frozenset[str]) -> tuple[HttpRequest, ...]:
    return _steps(p, raw, services, "journey")[0]


def _steps(
    p: Problems, raw: Any, services: set[str] | frozenset[str], at: str
) -> tuple[tuple[HttpRequest, ...], set[str]]:
    """Ordered requests (a journey, a ledger's auth) and the names they capture."""
    known = set(BUILTIN_NAMES)
    if not typed(p, at, raw, list, "a list of HTTP requests"):
        return (), known
    if len(raw) > 20:
        p.add(at, f"at most 20 steps, got {len(raw)}")
        return (), known
    out: list[HttpRequest] = []
    previous: str | None = None
    for i, item in enumerate(raw):
        req = _request(p, f"{at}[{i}]", item, services, known, previous, allow_capture=True)
        if req is None:
            if isinstance(item, dict) and isinstance(item.get("capture"), dict):
                known.update(k for k in item["capture"] if isinstance(k, str))
            continue
        known.update(req.capture)
        previous = req.service
        out.append(req)
    return tuple(out), known


def _ledger(p: Problems, raw: Any, services: set[str] | frozenset[str]) -> Ledger | None:
    if not typed(p, "ledger", raw, dict, "a mapping with http or canary"):
        return None
    check_keys(p, "ledger", raw, ("http", "canary"), ())
    if len([k for k in ("http", "canary") if k in raw]) != 1:
        p.add("ledger", "needs exactly one of http, canary")
        return None
    if "canary" in raw:
        c = raw["canary"]
        if not typed(p, "ledger.canary", c, dict, "a mapping {service, table, rate}"):
            return None
        check_keys(p, "ledger.canary", c, ("service", "table", "rate"), ("service",))
        service = _service(p, "ledger.canary.service", c.get("service"), services)
        table = c.get("table", "drillkit_canary")
        if typed(p, "ledger.canary.table", table, str, "a table name") and not TABLE.fullmatch(
            table
        ):
            p.add(
                "ledger.canary.table", f"expected a lowercase SQL identifier, got {excerpt(table)}"
            )
            return None
        rate = c.get("rate", 20)
        if not (
            typed(p, "ledger.canary.rate", rate, (int, float), "writes per second")
            and bounded(p, "ledger.canary.rate", float(rate), 0.5, 200)
        ):
            return None
        return CanaryLedger(service, table, float(rate)) if service else None
    h = raw["http"]
    if not typed(p, "ledger.http", h, dict, "a mapping {write, lookup}"):
        return None
    check_keys(p, "ledger.http", h, ("auth", "write", "lookup"), ("write", "lookup"))
    auth, known = _steps(p, h.get("auth", []), services, "ledger.http.auth")
    write = _request(p, "ledger.http.write", h.get("write"), services, known, status_key="acked")
    if write is not None and "{key}" not in str(write.json) + write.path + str(write.headers) + str(
        write.body
    ):
        p.add("ledger.http.write", "the write must carry {key} (the ledger looks writes up by it)")
    lk = h.get("lookup")
    if not typed(p, "ledger.http.lookup", lk, dict, "a mapping with sql or http"):
        return None
    check_keys(p, "ledger.http.lookup", lk, ("sql", "http"), ())
    if len([k for k in ("sql", "http") if k in lk]) != 1:
        p.add("ledger.http.lookup", "needs exactly one of sql, http")
        return None
    if "sql" in lk:
        sql = lk["sql"]
        if not typed(p, "ledger.http.lookup.sql", sql, dict, "a mapping {service, query}"):
            return None
        check_keys(p, "ledger.http.lookup.sql", sql, ("service", "query"), ("service", "query"))
        service = _service(p, "ledger.http.lookup.sql.service", sql.get("service"), services)
        query = sql.get("query")
        if typed(p, "ledger.http.lookup.sql.query", query, str, "an SQL query"):
            if "%(keys)s" not in query:
                p.add(
                    "ledger.http.lookup.sql.query",
                    "must select (key, payload) rows WHERE <key column> = ANY(%(keys)s)",
                )
                return None
        if write is None or service is None or not isinstance(query, str):
            return None
        return HttpLedger(write, sql=SqlLookup(service, query), auth=auth)
    hl = lk["http"]
    if not isinstance(hl, dict):
        typed(p, "ledger.http.lookup.http", hl, dict, "a mapping {path, status, json}")
        return None
    value = hl.get("json")
    req_raw = {k: v for k, v in hl.items() if k != "json"}
    default = write.service if write is not None else None
    known_lookup = (known - BUILTIN_NAMES) | {"key"}
    req = _request(p, "ledger.http.lookup.http", req_raw, services, known_lookup, default)
    if value is not None and (not isinstance(value, str) or not all(value.split("."))):
        p.add("ledger.http.lookup.http.json", f"expected a dotted JSON path, got {excerpt(value)}")
        return None
    if req is not None and "{key}" not in req.path + str(req.json) + str(req.headers):
        p.add("ledger.http.lookup.http.path", "the lookup must carry {key}")
        return None
    if write is None or req is None:
        return None
    return HttpLedger(write, http=HttpLookup(req, value), auth=auth)


def _logs(p: Problems, raw: Any, services: set[str] | frozenset[str]) -> dict[str, LogPatterns]:
    if not typed(p, "logs", raw, dict, "a mapping of service -> {errors, timestamp}"):
        return {}
    out: dict[str, LogPatterns] = {}
    for service, spec in raw.items():
        at = f"logs.{str(service)[:40]}"
        if _service(p, at, service, services) is None:
            continue
        if not typed(p, at, spec, dict, "a mapping {errors: [regex], timestamp}"):
            continue
        check_keys(p, at, spec, ("errors", "timestamp", "duration_ms"), ("errors",))
        ts = spec.get("timestamp", "iso8601")
        if typed(p, f"{at}.timestamp", ts, str, "iso8601, epoch or none") and ts not in TIMESTAMPS:
            p.add(f"{at}.timestamp", f"expected one of {', '.join(TIMESTAMPS)}, got {excerpt(ts)}")
            continue
        errors = spec.get("errors")
        if not typed(p, f"{at}.errors", errors, list, "a list of regular expressions"):
            continue
        if not 0 < len(errors) <= MAX_PATTERNS:
            p.add(f"{at}.errors", f"expected 1-{MAX_PATTERNS} patterns, got {len(errors)}")
            continue
        compiled: list[re.Pattern[str]] = []
        for i, rx in enumerate(errors):
            where = f"{at}.errors[{i}]"
            if not typed(p, where, rx, str, "a regular expression"):
                continue
            if not 0 < len(rx) <= MAX_REGEX:
                p.add(where, f"a pattern is 1-{MAX_REGEX} characters, got {len(rx)}")
                continue
            try:
                compiled.append(re.compile(rx))
            except re.error as exc:
                p.add(where, f"not a regular expression: {exc}")
        duration = _duration(p, f"{at}.duration_ms", spec.get("duration_ms"))
        if duration is not None and ts == "none":
            p.add(
                f"{at}.duration_ms", "needs a timestamp format (iso8601 or epoch) to subtract from"
            )
            continue
        if len(compiled) == len(errors) and (duration is not None or "duration_ms" not in spec):
            out[service] = LogPatterns(service, tuple(compiled), ts, duration)
    return out


def _duration(p: Problems, at: str, rx: Any) -> re.Pattern[str] | None:
    """`duration_ms`: a regular expression with one group, the request's duration in ms."""
    if rx is None or not typed(p, at, rx, str, "a regular expression with one group"):
        return None
    if not 0 < len(rx) <= MAX_REGEX:
        p.add(at, f"a pattern is 1-{MAX_REGEX} characters, got {len(rx)}")
        return None
    try:
        compiled = re.compile(rx)
    except re.error as exc:
        p.add(at, f"not a regular expression: {exc}")
        return None
    if compiled.groups != 1:
        p.add(at, f"needs exactly one group (the duration in ms), got {compiled.groups}")
        return None
    return compiled
