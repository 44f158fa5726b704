"""The app's health check as the stack file declares it (app.health): expected status, body text,
JSON rules; the reference stack's own rule; bad declarations named file:path:reason."""

from pathlib import Path

import pytest

from drillkit.core.probes import health_verdict
from drillkit.errors import ValidationError
from drillkit.stack.spec import REFERENCE_HEALTH, HealthSpec, load_stack, parse_stack


def health_of(health: object) -> HealthSpec:
    return parse_stack(
        {"name": "t", "database": {}, "app": {"health": health}}, "stack.yaml"
    ).app.health


def test_the_reference_stack_declares_the_reference_apps_rule():
    assert load_stack().app.health == REFERENCE_HEALTH
    assert health_of(REFERENCE_HEALTH) == REFERENCE_HEALTH
    # an app section without `health` is the reference app (every AppSpec default is its)
    assert parse_stack({"name": "t", "database": {}, "app": {}}, "s").app.health == REFERENCE_HEALTH


@pytest.mark.parametrize(
    ("status", "text", "why"),
    [
        (200, '{"status": "ok", "db_host": "primary", "maintenance": false}', None),
        (200, '{"status": "ok"}', None),  # no maintenance key: not in maintenance (as before)
        (200, '{"status": "ok", "maintenance": true}', "health: maintenance mode on"),
        (503, '{"status": "error", "maintenance": false}', "health 503 (expected 200)"),
        (200, '{"status": "UP"}', "health 200: status is 'UP', expected 'ok'"),
        (200, "OK", "health 200: not JSON"),
    ],
)
def test_reference_rule_keeps_the_reference_apps_behaviour(status, text, why):
    got = health_verdict(status, text, load_stack().app.health)
    assert got == why if why is None else (got is not None and got.startswith(why)), got


def test_spring_style_json_rule():
    rule = health_of({"path": "/actuator/health", "json": {"path": "status", "equals": "UP"}})
    assert rule.path == "/actuator/health" and rule.status == 200
    assert rule.verdict(200, '{"status": "UP", "components": {}}') is None
    assert rule.verdict(200, '{"status": "DOWN"}') == "health 200: status is 'DOWN', expected 'UP'"
    assert rule.verdict(200, "{}") == "health 200: status is missing, expected 'UP'"
    assert rule.verdict(503, '{"status": "UP"}').startswith("health 503 (expected 200)")


def test_nested_json_path_and_list_index():
    rule = health_of(
        {
            "path": "/healthz",
            "json": [
                {"path": "checks.db.ok", "equals": True},
                {"path": "nodes.0", "equals": "primary"},
            ],
        }
    )
    assert rule.verdict(200, '{"checks": {"db": {"ok": true}}, "nodes": ["primary"]}') is None
    # JSON types are kept apart: 1 is not true, "true" is not true
    assert rule.verdict(200, '{"checks": {"db": {"ok": 1}}, "nodes": ["primary"]}') is not None
    assert rule.verdict(200, '{"checks": {"db": {"ok": "true"}}, "nodes": ["primary"]}')
    assert "nodes.0 is missing" in rule.verdict(
        200, '{"checks": {"db": {"ok": true}}, "nodes": []}'
    )


def test_plain_text_body_and_another_status():
    rule = health_of({"path": "/ping", "status": 204, "body_contains": "OK"})
    assert rule.verdict(204, "OK\n") is None
    assert rule.verdict(200, "OK").startswith("health 200 (expected 204)")
    assert rule.verdict(204, "starting") == "health 204: body lacks 'OK': starting"
    # a JSON answer is matched as text too
    assert health_of({"path": "/h", "body_contains": '"up"'}).verdict(200, '{"s": "up"}') is None


def test_a_bare_path_checks_the_status_only():
    rule = health_of("/healthz")
    assert rule == HealthSpec(path="/healthz")
    assert rule.verdict(200, "anything at all") is None
    assert rule.verdict(500, "OK") is not None


def test_not_equals_with_its_own_reason():
    rule = health_of(
        {"path": "/h", "json": {"path": "mode", "not_equals": "readonly", "reason": "read-only"}}
    )
    assert rule.verdict(200, '{"mode": "readonly"}') == "health: read-only"
    assert rule.verdict(200, '{"mode": "rw"}') is None
    assert rule.verdict(200, "{}") is None  # absent is not the refused value


@pytest.mark.parametrize(
    ("health", "expected"),
    [
        ("healthz", "stack.yaml: app.health: must start with '/'"),
        (7, "stack.yaml: app.health: expected a URL path or a mapping"),
        ({"status": 200}, "stack.yaml: app.health.path: missing (required)"),
        ({"path": "/h", "status": 42}, "stack.yaml: app.health.status: must be an HTTP status"),
        ({"path": "/h", "status": "200"}, "stack.yaml: app.health.status: expected an HTTP status"),
        ({"path": "/h", "body": "OK"}, "stack.yaml: app.health.body: unknown key"),
        (
            {"path": "/h", "body_contains": ""},
            "stack.yaml: app.health.body_contains: must not be empty",
        ),
        ({"path": "/h", "json": "status=UP"}, "stack.yaml: app.health.json: expected a rule"),
        (
            {"path": "/h", "json": {"path": "status"}},
            "stack.yaml: app.health.json: needs exactly one of",
        ),
        (
            {"path": "/h", "json": [{"path": "a", "equals": 1, "not_equals": 2}]},
            "stack.yaml: app.health.json[0]: needs exactly one of",
        ),
        (
            {"path": "/h", "json": [{"path": "a..b", "equals": 1}]},
            "stack.yaml: app.health.json[0].path: must be dotted keys",
        ),
        (
            {"path": "/h", "json": [{"path": "a", "equals": {"x": 1}}]},
            "stack.yaml: app.health.json[0].equals: expected a scalar",
        ),
        (
            {"path": "/h", "json": [{"path": "a", "equal": 1}]},
            "stack.yaml: app.health.json[0].equal: unknown key (did you mean 'equals'?)",
        ),
        ({"path": "/h", "json": ["status"]}, "stack.yaml: app.health.json[0]: expected a mapping"),
    ],
)
def test_bad_health_declarations(health, expected):
    with pytest.raises(ValidationError) as exc:
        parse_stack({"name": "t", "database": {}, "app": {"health": health}}, Path("stack.yaml"))
    assert any(p.startswith(expected) for p in exc.value.problems), exc.value.problems
