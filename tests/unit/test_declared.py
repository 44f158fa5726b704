"""Declared probes, journey, ledger and log patterns (issue 14): the stack file's schema is refused
with file:path:reason; placeholders and captures; the declared journey, writer and HTTP ledger
lookup run against a real HTTP server in this process (no containers); the lost-writes figures;
log matching; and a scenario needing what the stack lacks is refused before anything starts."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any, ClassVar

import psycopg
import pytest
import requests
import yaml

from drillkit import catalog
from drillkit.catalog.checks import line_time, match_errors
from drillkit.core.declared import StackAccess, answer_problem, capture, fill_placeholders
from drillkit.core.measure import AckedWrite, LedgerOutcome, loss_ages, measure
from drillkit.core.needs import check_needs, stack_provides
from drillkit.core.probes import ProbeConfig, Probes
from drillkit.core.scenario import parse_scenario_text
from drillkit.errors import ValidationError
from drillkit.paths import REFERENCE_STACK
from drillkit.stack.probespec import (
    CanaryLedger,
    HttpLedger,
    HttpProbe,
    SqlProbe,
    TcpProbe,
    parse_probes,
)
from drillkit.stack.spec import load_stack, parse_stack
from drillkit.validate import Problems
from drillkit.wait import wait_for

SERVICES = {"api", "db", "cache"}
COMPOSE_STACK = (
    REFERENCE_STACK.parents[1] / "tests" / "integration" / "compose_stack" / "stack.yaml"
)
FULL = r"""
probes:
  - {name: api, http: {service: api, method: GET, path: /status, status: 200, body_contains: OK,
     json: [{path: ok, equals: true}], headers: {X-Probe: "1"}, timeout: 2}}
  - {name: db, sql: {service: db, query: "SELECT count(*) > 0 FROM notes", expect: true}}
  - {name: cache, tcp: {service: cache, port: 6379}}
journey:
  - {service: api, method: POST, path: /login, json: {user: probe, password: "{secret:probe}"},
     status: 200, capture: {token: json.token}}
  - {method: POST, path: /notes, headers: {Authorization: "Bearer {token}"},
     json: {key: "{key}", text: "journey {key}"}, status: [200, 201], capture: {id: json.id}}
  - {method: GET, path: "/notes/{id}", headers: {Authorization: "Bearer {token}"}, status: 200,
     body_contains: "journey {key}"}
ledger:
  http:
    write: {service: api, method: POST, path: /notes, json: {key: "{key}", text: "{payload}"},
            acked: [200, 201]}
    lookup: {sql: {service: db, query: "SELECT key, text FROM notes WHERE key = ANY(%(keys)s)"}}
logs:
  api: {errors: ['"level":"error"', ' 5\d\d '], timestamp: iso8601}
"""


def parse(text: str, services: set[str] = SERVICES) -> Any:
    p = Problems("stack.yaml")
    declared = parse_probes(p, yaml.safe_load(text), services)
    p.raise_if_any()
    return declared


def refused(text: str, services: set[str] = SERVICES) -> list[str]:
    with pytest.raises(ValidationError) as exc:
        parse(text, services)
    return exc.value.problems


def test_the_contract_example_parses_into_typed_declarations() -> None:
    d = parse(FULL)
    api, db, cache = d.probes
    assert isinstance(api, HttpProbe) and api.request.status == (200,)
    assert api.request.rules[0].path == "ok" and api.request.json is None  # a GET: json = rules
    assert api.request.timeout_s == 2.0 and api.request.headers == {"X-Probe": "1"}
    assert isinstance(db, SqlProbe) and db.expect is True and db.has_expect
    assert isinstance(cache, TcpProbe) and cache.port == 6379
    assert [r.service for r in d.journey] == ["api", "api", "api"]  # inherited service
    assert d.journey[0].capture == {"token": "json.token"}
    assert d.journey[1].status == (200, 201)
    assert isinstance(d.ledger, HttpLedger) and d.ledger.sql is not None
    assert d.ledger.write.status == (200, 201)
    assert d.logs["api"].errors[1].search("GET /x 503 12ms")
    assert d.services == {"api", "db", "cache"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "probes: [{name: a, http: {service: nope, path: /}}]",
            "stack.yaml: probes[0].http.service: no service 'nope' in the stack",
        ),
        (
            "probes: [{name: a, sql: {service: db, query: 'SELECT 1'}, tcp: {service: db, port: 1}}]",
            "probes[0]: needs exactly one of http, sql, tcp",
        ),
        (
            "probes: [{name: a, tcp: {service: db, port: 1}}, {name: a, tcp: {service: db, port: 2}}]",
            "probes[1].name: probe name 'a' is taken",
        ),
        ("probes: [{name: journey, tcp: {service: db, port: 1}}]", "is reserved"),
        ("probes: [{name: a, tcp: {service: db, port: 70000}}]", "probes[0].tcp.port: must be"),
        (
            "journey: [{service: api, path: '/n/{id}'}]",
            "journey[0].path: unknown placeholder {id}",
        ),
        ("journey: [{service: ghost, path: /}]", "journey[0].service: no service 'ghost'"),
        (
            "journey: [{service: api, path: /, capture: {t: body.token}}]",
            "journey[0].capture.t: expected json.dotted.path or header:Name",
        ),
        (
            "ledger: {http: {write: {service: api, method: POST, path: /n}, "
            "lookup: {sql: {service: db, query: 'SELECT k, v FROM t WHERE k = ANY(%(keys)s)'}}}}",
            "ledger.http.write: the write must carry {key}",
        ),
        (
            "ledger: {http: {write: {service: api, method: POST, path: '/n/{key}'}, "
            "lookup: {sql: {service: db, query: 'SELECT k, v FROM t'}}}}",
            "ledger.http.lookup.sql.query: must select (key, payload) rows",
        ),
        (
            "ledger: {canary: {service: db, table: 'x; DROP TABLE y'}}",
            "ledger.canary.table: expected a lowercase SQL identifier",
        ),
        ("ledger: {canary: {service: web}}", "ledger.canary.service: no service 'web'"),
        ("logs: {api: {errors: ['(unclosed']}}", "logs.api.errors[0]: not a regular expression"),
        ("logs: {api: {errors: ['" + "a" * 201 + "']}}", "logs.api.errors[0]: a pattern is 1-200"),
        ("logs: {ghost: {errors: [x]}}", "stack.yaml: logs.ghost: no service 'ghost'"),
        ("logs: {api: {errors: [x], timestamp: rfc2822}}", "logs.api.timestamp: expected one of"),
        (
            "logs: {api: {errors: [x], duration_ms: '(\\d+)ms (\\d+)'}}",
            "logs.api.duration_ms: needs exactly one group (the duration in ms), got 2",
        ),
        (
            "logs: {api: {errors: [x], timestamp: none, duration_ms: '(\\d+)ms'}}",
            "logs.api.duration_ms: needs a timestamp format",
        ),
    ],
)
def test_bad_declarations_are_refused_with_file_path_reason(text: str, expected: str) -> None:
    assert any(expected in line for line in refused(text)), refused(text)


def test_the_reference_stack_file_accepts_declarations_on_its_services() -> None:
    raw = yaml.safe_load(REFERENCE_STACK.read_text())
    raw["probes"] = [{"name": "orders", "sql": {"service": "primary", "query": "SELECT 1"}}]
    spec = parse_stack(raw, "ref.yaml")
    assert isinstance(spec.probes[0], SqlProbe)
    raw["probes"] = [{"name": "orders", "sql": {"service": "db", "query": "SELECT 1"}}]
    with pytest.raises(ValidationError, match=r"ref.yaml: probes\[0\].sql.service: no service"):
        parse_stack(raw, "ref.yaml")


def test_placeholders_keep_types_fill_secrets_and_leave_braces_alone() -> None:
    values = {"key": "k1", "payload": "p", "id": 42}
    body = {"id": "{id}", "text": "item {id} of {key}", "pw": "{secret:probe}", "raw": "{}"}
    assert fill_placeholders(body, values, {"probe": "s3cret"}.__getitem__) == {
        "id": 42,
        "text": "item 42 of k1",
        "pw": "s3cret",
        "raw": "{}",
    }
    assert fill_placeholders(["/n/{id}", 7, None], values, str) == ["/n/42", 7, None]


def response(status: int, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = (json.dumps(body) if not isinstance(body, str) else body).encode()
    r.headers.update(headers or {})
    return r


def test_capture_from_json_paths_and_headers_and_answer_rules() -> None:
    d = parse(
        "journey: [{service: api, method: POST, path: /, status: [200, 201], "
        "rules: [{path: user.ok, equals: true}], body_contains: '{key}', "
        "capture: {token: json.auth.token, first: json.items.0, loc: 'header:Location'}}]"
    )
    req = d.journey[0]
    r = response(
        201,
        {"auth": {"token": "t0"}, "items": [5, 6], "user": {"ok": True}, "k": "K9"},
        {"Location": "/n/9"},
    )
    assert capture(req, r) == {"token": "t0", "first": 5, "loc": "/n/9"}
    assert answer_problem(req, r, {"key": "K9"}) is None
    assert "answered 500 (expected 200 or 201)" in str(answer_problem(req, response(500, "x"), {}))
    assert "user.ok is False" in str(
        answer_problem(req, response(200, {"user": {"ok": False}, "k": "K9"}), {"key": "K9"})
    )
    with pytest.raises(KeyError, match="capture token"):
        capture(req, response(200, {"items": [1]}, {"Location": "/"}))


# ----- the declared journey and HTTP ledger against a real server ---------------------------------
class NotesApp(BaseHTTPRequestHandler):
    """A tiny notes API: POST /login, POST /notes, GET /notes/<id>, GET /by-key/<key>, GET /status."""

    notes: ClassVar[dict[int, dict[str, str]]] = {}
    lock = threading.Lock()
    down = False

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.down:
            return self._answer(503, {"ok": False})
        if self.path == "/status":
            return self._answer(200, {"ok": True, "text": "OK"})
        if self.headers.get("Authorization") != "Bearer tok" and not self.path.startswith("/by"):
            return self._answer(401, {})
        with self.lock:
            if self.path.startswith("/notes/"):
                note = self.notes.get(int(self.path.rsplit("/", 1)[1]))
            else:
                key = self.path.rsplit("/", 1)[1]
                note = next((n for n in self.notes.values() if n["key"] == key), None)
        return self._answer(200, note) if note else self._answer(404, {})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.down:
            return self._answer(503, {})
        if self.path == "/login":
            ok = body == {"user": "probe", "password": "pw-1"}
            return self._answer(200 if ok else 403, {"token": "tok"} if ok else {})
        with self.lock:
            nid = len(self.notes) + 1
            self.notes[nid] = {"key": body["key"], "text": body["text"]}
        return self._answer(201, {"id": nid})


@pytest.fixture
def notes_server() -> Iterator[str]:
    NotesApp.notes, NotesApp.down = {}, False
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotesApp)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


NOTES = """
probes:
  - {name: api, http: {service: api, path: /status, json: {path: ok, equals: true}}}
journey:
  - {service: api, method: POST, path: /login, json: {user: probe, password: "{secret:probe}"},
     capture: {token: json.token}}
  - {method: POST, path: /notes, headers: {Authorization: "Bearer {token}"},
     json: {key: "{key}", text: "journey {key}"}, status: [200, 201], capture: {id: json.id}}
  - {method: GET, path: "/notes/{id}", headers: {Authorization: "Bearer {token}"},
     body_contains: "journey {key}"}
ledger:
  http:
    write: {service: api, method: POST, path: /notes, json: {key: "{key}", text: "{payload}"}}
    lookup: {http: {path: "/by-key/{key}", status: 200, json: text}}
"""


def no_db(service: str) -> psycopg.Connection[Any]:
    raise AssertionError(f"no database in this test ({service})")


def notes_probes(url: str, secret: str = "pw-1") -> Probes:
    access = StackAccess(
        url=lambda service: url,
        connect=no_db,
        secret={"probe": secret}.__getitem__,
        tcp=lambda service, port: ("127.0.0.1", port),
        primary=lambda: "db",
        is_database=lambda service: service == "db",
    )
    return Probes(
        lambda: url,
        load_stack().app.health,
        ProbeConfig(interval_s=0.02, timeout_s=2.0, writer_rate_hz=50.0),
        run_tag="t",
        declared=parse(NOTES, {"api"}),
        access=access,
    )


def test_declared_journey_and_writer_run_and_the_http_lookup_finds_every_ack(
    notes_server: str,
) -> None:
    probes = notes_probes(notes_server)
    probes.start()
    try:
        wait_for(
            lambda: probes.passing_streak(0) >= 10 and len(probes.acked) >= 10,
            what="passing declared probes and acknowledged writes",
            timeout_s=20,
        )
    finally:
        probes.stop()
    assert {s.probe for s in probes.snapshot()} == {"api", "journey"}  # no built-in journey
    outcome = probes.ledger_outcome(lambda: no_db("primary"))
    assert outcome.acked == len(probes.acked) >= 10
    assert outcome.lost == () and outcome.altered == ()


def test_the_http_lookup_sees_lost_and_altered_writes(notes_server: str) -> None:
    probes = notes_probes(notes_server)
    probes.start()
    try:
        wait_for(lambda: len(probes.acked) >= 6, what="acknowledged writes", timeout_s=20)
    finally:
        probes.stop()
    first, second = probes.acked[0].key, probes.acked[1].key
    with NotesApp.lock:  # a "restore" that lost one write and altered another
        for nid, note in list(NotesApp.notes.items()):
            if note["key"] == first:
                del NotesApp.notes[nid]
            elif note["key"] == second:
                note["text"] = "tampered"
    outcome = probes.ledger_outcome(lambda: no_db("primary"))
    assert [w.key for w in outcome.lost] == [first]
    assert [w.key for w in outcome.altered] == [second]


def test_a_failing_journey_step_names_the_step_and_never_the_secret(notes_server: str) -> None:
    probes = notes_probes(notes_server, secret="wrong-secret-value")
    probes.start()
    try:
        wait_for(
            lambda: any(s.probe == "journey" and not s.ok for s in probes.snapshot()),
            what="a failed journey",
            timeout_s=20,
        )
    finally:
        probes.stop()
    failed = next(s for s in probes.snapshot() if s.probe == "journey" and not s.ok)
    assert "step 1 (POST /login): answered 403" in str(failed.error)
    assert "wrong-secret-value" not in str(failed.error)


# ----- the lost-writes figures -----------------------------------------------------------------
def test_lost_writes_say_how_many_and_how_long_before_the_fault() -> None:
    acked = [AckedWrite(f"k{i}", "h", 100.0 + i) for i in range(10)]  # acks at 100..109
    lost = tuple(w for w in acked if w.t_ack >= 104)  # a restore to t=103.5 loses 104..109
    m = measure([], LedgerOutcome(acked=10, lost=lost), t_fault=110.0, k=3)
    assert (m.lost, m.lost_oldest_s, m.lost_newest_s) == (6, 6.0, 1.0)
    assert m.rpo_s == 6.0
    assert m.loss_summary == (
        "lost 6 writes of 10, acknowledged between 6.00 s before and 1.00 s before the fault"
    )
    assert loss_ages([], 5.0) == (None, None)
    after = measure([], LedgerOutcome(acked=2, lost=(AckedWrite("x", "h", 112.5),)), 110.0, 3)
    assert after.lost_oldest_s == -2.5 and "2.50 s after the fault" in after.loss_summary
    nothing = measure([], LedgerOutcome(acked=4), 110.0, 3)
    assert nothing.loss_summary == "no acknowledged write lost (of 4)"


# ----- log matching ------------------------------------------------------------------------------
def test_log_lines_are_judged_by_their_own_time_in_the_declared_format() -> None:
    patterns = parse(r"logs: {api: {errors: ['\"level\":\"error\"', ' 5\d\d ']}}").logs["api"]
    t_rec = line_time("2026-12-01T10:00:00.500Z", "iso8601")
    assert t_rec is not None
    log = "\n".join(
        [
            '2026-12-01T10:00:00.100Z {"level":"error","msg":"during the outage"}',
            '2026-12-01T10:00:00.900Z {"level":"info","msg":"fine"}',
            "2026-12-01T10:00:01.200Z GET /notes 502 3ms",
            'no time here {"level":"error"}',
        ]
    )
    assert match_errors(log, patterns, t_rec) == [
        "2026-12-01T10:00:01.200Z GET /notes 502 3ms",
        'no time here {"level":"error"}',
    ]
    epoch = parse(r"logs: {api: {errors: [ERR], timestamp: epoch}}").logs["api"]
    assert match_errors("1764583200.2 ERR a\n1764583201.7 ERR b", epoch, 1764583201.0) == [
        "1764583201.7 ERR b"
    ]
    assert line_time("[2026-12-01 11:00:00,5 +0100] x", "iso8601") == t_rec


# ----- needs, before anything starts ----------------------------------------------------------
SCENARIO = """
id: t
title: test
source: {runbook: "000", section: "Procedure 1"}
severity: P0
failure_class: database-failure
tags: [nightly]
objectives: {rto: 60s, rpo: 0s, detection: 5s}
fault: {action: kill-postmaster, with: {service: primary}}
recovery:
  - {name: restore last night, action: restore-backup, timeout: 60s}
  - {name: promote, action: promote-replica, with: {service: replica}, timeout: 30s}
checklist: [all-systems-responding, key-functionality, critical-journeys, recovered-within-rto]
"""


def compose_spec(**kw: Any) -> Any:
    base = {"name": "shop", "provides": frozenset({"postgres", "compose"}), "journey": ()}
    return SimpleNamespace(**{**base, **kw})


def test_a_scenario_needing_what_the_stack_lacks_is_refused_naming_step_and_need() -> None:
    catalog.load()
    scenario = parse_scenario_text(SCENARIO, "drill.yaml")
    with pytest.raises(ValidationError) as exc:
        check_needs(scenario, compose_spec())
    lines = exc.value.problems
    assert any(
        line.startswith(
            "drill.yaml: recovery[0]: recovery 'restore last night' (restore-backup) "
            "needs pgbackrest, which stack 'shop' lacks"
        )
        for line in lines
    ), lines
    assert any(
        line.startswith("drill.yaml: recovery[1]:") and "needs replica" in line for line in lines
    )
    assert any("checklist[1]: check 'key-functionality' needs reference-app" in ln for ln in lines)
    assert any("checklist[2]: check 'critical-journeys' needs journey" in ln for ln in lines)
    assert not any("all-systems-responding" in ln or "kill-postmaster" in ln for ln in lines)


def test_the_reference_stack_provides_what_its_drills_need_and_options_add_parts() -> None:
    catalog.load()
    scenario = parse_scenario_text(SCENARIO, "drill.yaml")
    check_needs(scenario, load_stack())  # the reference stack: nothing refused
    assert {"reference-app", "pgbackrest", "replica", "journey"} <= stack_provides(
        load_stack(), scenario
    )
    no_replica = parse_scenario_text(SCENARIO + "stack: {replica: false, proxy: true}\n", "d.yaml")
    provides = stack_provides(load_stack(), no_replica)
    assert "replica" not in provides and "proxy" in provides
    with pytest.raises(ValidationError, match=r"recovery\[1\].*needs replica"):
        check_needs(no_replica, load_stack())
    declared_journey = compose_spec(journey=("a step",), provides=frozenset({"postgres"}))
    assert "journey" in stack_provides(declared_journey, scenario)


def test_canary_ledger_parses_with_defaults() -> None:
    d = parse("ledger: {canary: {service: db}}")
    assert d.ledger == CanaryLedger("db", "drillkit_canary", 20.0)


def test_a_compose_stack_refuses_a_pgbackrest_restore_before_anything_starts(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real compose stack file of the integration tests (parsed only: no container)."""
    catalog.load()
    spec = load_stack(COMPOSE_STACK)
    assert spec.is_compose and "pgbackrest" not in spec.provides
    text = (
        SCENARIO.replace("with: {service: primary}", "with: {service: db}")
        .replace(
            "  - {name: promote, action: promote-replica, with: {service: replica}, timeout: 30s}\n",
            "",
        )
        .replace("checklist: [", "checklist: [database-healthy, ")
    )
    scenario = parse_scenario_text(text, "t.yaml", services=spec.services)
    with pytest.raises(ValidationError) as exc:
        check_needs(scenario, spec)
    expected = (
        "t.yaml: recovery[0]: recovery 'restore last night' (restore-backup) needs pgbackrest, "
        "which stack 'tiny' lacks (the stack's database image has no pgBackRest (declare provides:"
        " [pgbackrest]))"
    )
    assert exc.value.problems[0] == expected
    drill = tmp_path / "t.yaml"
    drill.write_text(text)
    from drillkit.cli import main

    assert main(["validate", "--stack", str(COMPOSE_STACK), str(drill)]) == 1
    err = capsys.readouterr().err
    assert expected.replace("t.yaml", str(drill)) in err
    assert "unknown service" not in err and "1 scenario files, 3 problems" in err


class LogCtx:
    """What no-error-spike reads of a drill: its markers, the stack's spec and services, logs."""

    def __init__(self, spec: Any, logs: dict[str, str], services: tuple[str, ...]) -> None:
        self.result = SimpleNamespace(markers={"recovered": 10.0}, wall=lambda t: 1764583200.0)
        self.stack = SimpleNamespace(spec=spec, services=services, databases=("db",))
        self._logs = logs

    def log_since(self, service: str, since: float) -> str:
        return self._logs[service]

    def part(self, kind: type) -> Any:
        return kind()


def test_no_error_spike_fails_for_an_app_without_declared_patterns_and_matches_declared_ones() -> (
    None
):
    from drillkit.catalog.checks import no_error_spike
    from drillkit.errors import CheckFailed

    spec = load_stack(COMPOSE_STACK)  # the tiny compose stack: app "web", no logs declared
    ctx = LogCtx(spec, {"web": "", "db": "LOG:  ready"}, spec.services)
    with pytest.raises(CheckFailed, match="no error patterns declared for service web"):
        no_error_spike(ctx)  # type: ignore[arg-type]
    declared = dataclasses.replace(
        spec, logs=parse(r"logs: {web: {errors: [' 5\d\d$']}}", {"web"}).logs
    )
    ok = LogCtx(declared, {"web": "2026-12-01T10:00:01Z GET / 200", "db": "LOG: ok"}, spec.services)
    assert "web, db" in no_error_spike(ok)  # type: ignore[arg-type]
    bad = LogCtx(
        declared, {"web": "1764583201 x\n2026-12-01T10:00:01Z GET / 503", "db": ""}, spec.services
    )
    with pytest.raises(CheckFailed, match="1 error lines in the web log"):
        no_error_spike(bad)  # type: ignore[arg-type]


def test_a_compose_secret_placeholder_reads_the_service_env_and_is_redacted(tmp_path: Any) -> None:
    from drillkit.core.wiring import stack_secret
    from drillkit.stack.secrets import Secrets

    spec = load_stack(COMPOSE_STACK)
    stack = SimpleNamespace(secrets=Secrets(tmp_path / "secrets"))
    value = stack_secret(spec, stack, "POSTGRES_PASSWORD")  # type: ignore[arg-type]
    assert value == "s3cret-from-dotenv" and value in stack.secrets.values()
    with pytest.raises(KeyError, match="secret NOPE: not a drillkit secret"):
        stack_secret(spec, stack, "NOPE")  # type: ignore[arg-type]


# ----- the reference stack is one such stack file ------------------------------------------------
def test_the_reference_stack_declares_its_journey_ledger_and_log_patterns() -> None:
    spec = load_stack()
    assert [(r.method, r.path) for r in spec.journey] == [
        ("POST", "/api/auth/login"),
        ("POST", "/api/orders"),
        ("GET", "/api/orders/{id}"),
        ("GET", "/api/orders/1"),  # a seeded order: existing data stays readable
    ]
    ledger = spec.ledger
    assert isinstance(ledger, HttpLedger) and ledger.sql is not None
    assert ledger.sql.service == "primary" and "FROM orders" in ledger.sql.query
    assert ledger.write.status == (200, 201) and "Idempotency-Key" in ledger.write.headers
    waited_out = (  # began before recovery (answered after it): the outage's
        '2026-12-01T10:00:00.400000Z request method="GET" path="/api/health" status=503'
        " duration_ms=900.0"
    )
    not_5xx = '2026-12-01T10:00:00.600000Z request method="GET" path="/x" status=404 duration_ms=1'
    after = '2026-12-01T10:00:00.700000Z request method="POST" path="/api/orders" status=500'
    log = "\n".join([waited_out, not_5xx, after + " duration_ms=2.5"])
    t_rec = line_time("2026-12-01T10:00:00.000Z", "iso8601")
    assert match_errors(log, spec.logs["app"], t_rec) == [after + " duration_ms=2.5"]
    assert match_errors(log, spec.logs["app"], None) == [waited_out, after + " duration_ms=2.5"]


def test_a_reference_style_stack_has_only_what_it_declares() -> None:
    """No journey, writer, app API or log format is assumed for an app the file does not declare:
    the availability probe alone, no ledger (RPO not measured), and no-error-spike asks for the
    app's patterns."""
    from drillkit.catalog.checks import no_error_spike
    from drillkit.core.wiring import declared_of
    from drillkit.errors import CheckFailed

    spec = parse_stack({"name": "mine", "database": {}, "app": {"image": "mine"}}, "mine.yaml")
    assert not {"reference-app", "journey"} & spec.provides
    probes = Probes(
        lambda: "http://127.0.0.1:9",
        spec.app.health,
        ProbeConfig(),
        "t",
        declared=declared_of(spec),
    )
    assert [name for name, _ in probes._parts()] == ["probe-availability"]
    assert not probes.has_writer
    assert probes.ledger_outcome(lambda: no_db("primary")) == LedgerOutcome(acked=0)
    ctx = LogCtx(spec, {"db": ""}, ("primary", "replica", "app"))
    with pytest.raises(CheckFailed, match="no error patterns declared for service app"):
        no_error_spike(ctx)  # type: ignore[arg-type]


def test_errors_are_judged_from_the_runbooks_end_when_no_probe_saw_the_fault() -> None:
    from drillkit.catalog.checks import errors_judged_from
    from drillkit.core.results import StepRecord

    steps = [
        StepRecord("reset half", "toxic-add", "fault", 100.0, 100.1),
        StepRecord("hold", "hold", "recovery", 103.0, 106.0),
        StepRecord("remove", "toxic-remove", "recovery", 106.0, 106.2),
    ]
    unseen = SimpleNamespace(markers={"fault": 100.0, "recovered": 100.0}, steps=steps)
    assert errors_judged_from(unseen) == 106.2  # type: ignore[arg-type]
    seen = SimpleNamespace(markers={"fault": 100.0, "recovered": 104.5}, steps=steps)
    assert errors_judged_from(seen) == 104.5  # type: ignore[arg-type]
    no_runbook = SimpleNamespace(markers={"fault": 100.0, "recovered": 100.0}, steps=steps[:1])
    assert errors_judged_from(no_runbook) == 100.0  # type: ignore[arg-type]
