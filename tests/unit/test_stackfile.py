from pathlib import Path

import pytest

from drillkit.errors import ValidationError
from drillkit.stackfile import load_stack, parse_stack
from drillkit.validate import Problems, parse_duration


def test_reference_stack_loads():
    spec = load_stack()
    assert spec.services == ("primary", "replica", "app")
    assert spec.app.health == "/api/health"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"name": "x", "database": {}, "app": {"port": 70000}},
            "stack.yaml: app.port: must be 1-65535",
        ),
        (
            {"name": "x", "database": {}, "app": {"health": "health"}},
            "stack.yaml: app.health: must start with '/'",
        ),
        (
            {"name": "x", "database": {"replicas": 2}, "app": {}},
            "stack.yaml: database.replicas: unknown key (did you mean 'replica'?)",
        ),
        (
            {"name": "x", "database": {"replica": False, "synchronous": True}, "app": {}},
            "stack.yaml: database.synchronous: synchronous replication needs replica: true",
        ),
        ({"name": "x", "app": {}}, "stack.yaml: database: missing (required)"),
        (
            {"name": "x", "database": {}, "app": {"env": {"A": 1}}},
            "stack.yaml: app.env.A: expected a string",
        ),
        ([], "stack.yaml: <top>: expected a mapping"),
    ],
)
def test_bad_stack_files(data, expected):
    with pytest.raises(ValidationError) as exc:
        parse_stack(data, Path("stack.yaml"))
    assert any(p.startswith(expected) for p in exc.value.problems), exc.value.problems


def test_replica_less_stack():
    spec = parse_stack({"name": "x", "database": {"replica": False}, "app": {}}, "s")
    assert spec.services == ("primary", "app")


@pytest.mark.parametrize(
    ("text", "seconds"), [("250ms", 0.25), ("10s", 10), ("2min", 120), ("1h", 3600), (" 3 s", 3)]
)
def test_durations(text, seconds):
    assert parse_duration(Problems("f"), "x", text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", [10, "10", "ten s", "-1s", "nans", "infs", True, None])
def test_bad_durations(bad):
    p = Problems("f")
    assert parse_duration(p, "x", bad) is None
    assert p.items and p.items[0].startswith("f: x: ")


def test_objective_overrides_from_the_command_line():
    from drillkit.plugin import _merge, parse_objective_overrides

    table = parse_objective_overrides(
        ["rto=10s", "db-kill-restart:rpo=0s", "db-kill-restart:rto=2min"]
    )
    assert table == {"*": {"rto_s": 10.0}, "db-kill-restart": {"rpo_s": 0.0, "rto_s": 120.0}}
    assert _merge({"*": {"rto_s": 1.0, "rpo_s": 5.0}}, table)["*"] == {"rto_s": 10.0, "rpo_s": 5.0}
    with pytest.raises(ValidationError) as exc:
        parse_objective_overrides(["mttr=5s", "rto=fast"])
    assert len(exc.value.problems) == 2


def test_policy_file(tmp_path):
    from drillkit.plugin import load_policy
    from drillkit.runner import RunConfig, objectives_for
    from drillkit.scenario import load_scenario

    path = tmp_path / "policy.yaml"
    path.write_text(
        'objectives:\n  "*": {detection: 5min}\n  db-kill-restart: {rto: 4h, rpo: 1h}\n'
    )
    table = load_policy(path)
    sc = load_scenario(Path(__file__).resolve().parents[2] / "scenarios" / "db-kill-restart.yaml")
    obj = objectives_for(sc, RunConfig(objectives=table))
    assert (obj.rto_s, obj.rpo_s, obj.detection_s) == (14400, 3600, 300)
    path.write_text("objectives:\n  x: {mttr: 5s}\n")
    with pytest.raises(ValidationError, match="unknown objective"):
        load_policy(path)
