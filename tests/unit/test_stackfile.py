from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drillkit.errors import ValidationError
from drillkit.stack.spec import REFERENCE, REFERENCE_HEALTH, StackSpec, load_stack, parse_stack
from drillkit.validate import Problems, parse_duration, parse_yaml


def test_reference_stack_loads():
    spec = load_stack()
    assert spec.services == ("primary", "replica", "app")
    assert spec.app.health.path == "/api/health" and spec.app.health == REFERENCE_HEALTH


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
        (
            {"name": "x", "database": {}, "app": {}, "seed": {"generator": "shop"}},
            "stack.yaml: seed.generator: unknown generator 'shop'; known: reference",
        ),
        (
            {"name": "x", "database": {}, "app": {}, "seed": {"scale": "small"}},
            "stack.yaml: seed.scale: unknown key",
        ),
        (
            {"name": "x", "database": {}, "app": {}, "seed": "users.sql"},
            "stack.yaml: seed: expected a list of SQL files or statements, or {generator: NAME}",
        ),
    ],
)
def test_bad_stack_files(data, expected):
    with pytest.raises(ValidationError) as exc:
        parse_stack(data, Path("stack.yaml"))
    assert any(p.startswith(expected) for p in exc.value.problems), exc.value.problems


def test_the_seed_is_what_the_stack_file_declares():
    """The reference stack names its generator; a reference-style stack without `seed` gets no
    seed data (nothing implied by the app's image), and one with SQL gets just that SQL."""
    assert load_stack().seed_generator == "reference"
    bare = parse_stack({"name": "x", "database": {}, "app": {}}, "s")
    assert bare.seed_generator is None and bare.seed == ()
    sql = parse_stack({"name": "x", "database": {}, "app": {}, "seed": ["SELECT 1"]}, "s")
    assert sql.seed == ("SELECT 1",) and sql.seed_generator is None


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
    from drillkit.core.runner import RunConfig, objectives_for
    from drillkit.core.scenario import load_scenario
    from drillkit.plugin import load_policy

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


# ----- fuzz: any stack file ends in a StackSpec or a ValidationError with file:path lines ------

leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["postgres", "app", "/api/health", "health", "8080", "true", "/run/x"]),
)
values = st.recursive(
    leaf,
    lambda c: st.one_of(
        st.lists(c, max_size=4), st.dictionaries(st.text(max_size=10) | leaf, c, max_size=4)
    ),
    max_leaves=16,
)
DB_KEYS = ["image", "replica", "synchronous", "replicas"]
APP_KEYS = ["image", "port", "health", "secrets_dir", "config_dir", "env", "healthz"]


def _parses_or_says_where(data):
    try:
        spec = parse_stack(data, "fuzz.yaml")
    except ValidationError as exc:
        assert exc.problems and all(p.startswith("fuzz.yaml: ") for p in exc.problems)
    else:
        assert isinstance(spec, StackSpec)
        assert 0 < spec.app.port < 65536 and spec.app.health.path.startswith("/")


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from(["name", "database", "app", "services"]), values, max_size=4)
)
def test_fuzzed_stack_top_levels(data):
    _parses_or_says_where(data)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from(DB_KEYS), values, max_size=4),
    st.dictionaries(st.sampled_from(APP_KEYS), values, max_size=7),
)
def test_fuzzed_stack_sections(db, app):
    _parses_or_says_where({"name": "fuzz", "database": db, "app": app})


@settings(deadline=None)
@given(st.text(max_size=300))
def test_fuzzed_stack_yaml_text(text):
    try:
        data = parse_yaml(text, "fuzz.yaml")
    except ValidationError as exc:
        assert all(p.startswith("fuzz.yaml: ") for p in exc.problems)
        return
    _parses_or_says_where(data)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["database", "app"]), st.sampled_from(DB_KEYS + APP_KEYS), values)
def test_fuzzed_field_of_the_reference_stack(section, key, junk):
    data = yaml.safe_load(REFERENCE.read_text())
    data[section] = {**(data.get(section) or {}), key: junk}
    _parses_or_says_where(data)
