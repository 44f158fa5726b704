"""Scenario validation: every malformed file is rejected with file:path:reason, before any
container starts (no Docker is touched here: the engine module is never asked for a client)."""

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drillkit.core.scenario import (
    TOP_KEYS,
    discover,
    load_scenario,
    parse_scenario,
    parse_scenario_text,
)
from drillkit.errors import ValidationError

ROOT = Path(__file__).resolve().parents[2]
GOOD = """
id: t
title: test
source: {runbook: "000", section: "Procedure 1"}
severity: P0
failure_class: database-failure
tags: [nightly]
objectives: {rto: 10s, rpo: 0s, detection: 2s}
fault: {action: kill-postmaster, with: {service: primary}}
recovery:
  - {name: restart, action: restart-service, with: {service: primary}, timeout: 30s}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ValidationError) as exc:
        parse_scenario_text(text, "s.yaml")
    return exc.value.problems


def edit(**changes) -> str:
    data = yaml.safe_load(GOOD)
    for path, value in changes.items():
        node = data
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        if value is ...:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return yaml.safe_dump(data)


def test_good_scenario_parses():
    sc = parse_scenario_text(GOOD)
    assert sc.objectives.rto_s == 10 and sc.recovery[0].timeout_s == 30
    assert sc.fault.params == {"service": "primary"}


def test_every_shipped_scenario_is_valid():
    paths = discover(ROOT / "scenarios") + discover(ROOT / "scenarios" / "sabotage")
    assert len(paths) >= 10
    for path in paths:
        load_scenario(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            edit(recovery__0__action="restrat-service"),
            "s.yaml: recovery[0].action: unknown recovery action 'restrat-service' (did you mean 'restart-service'?)",
        ),
        (
            edit(fault__with__service="primry"),
            "s.yaml: fault.with.service: unknown service 'primry' (did you mean 'primary'?)",
        ),
        (edit(objectives__rto=10), "s.yaml: objectives.rto: expected a duration with a unit"),
        (edit(objectives__rto="-5s"), "s.yaml: objectives.rto: must be >= 0"),
        (edit(severity="P9"), "s.yaml: severity: expected one of P0, P1, P2, P3"),
        (edit(tags="nightly"), "s.yaml: tags: expected a list of strings"),
        (edit(title=...), "s.yaml: title: missing (required)"),
        (edit(recovery=[]), "s.yaml: recovery: at least one recovery step is required"),
        (
            edit(recovery__0__timeout="soon"),
            "s.yaml: recovery[0].timeout: expected a duration with a unit",
        ),
        (
            edit(recovery__0__with={"service": "primary", "force": True}),
            "s.yaml: recovery[0].with.force: unknown parameter",
        ),
        (
            edit(fault={"action": "partition", "with": {"a": "app"}}),
            "s.yaml: fault.with.b: missing (required service)",
        ),
        (
            edit(checklist=["databse-healthy"]),
            "s.yaml: checklist[0]: unknown check 'databse-healthy' (did you mean 'database-healthy'?)",
        ),
        (edit(observ="3s"), "s.yaml: observ: unknown key (did you mean 'observe'?)"),
        (edit(probes={"interval": "2s"}), "s.yaml: probes.interval: must be sub-second"),
        (edit(stack={"data_fs": "10GB"}), "s.yaml: stack.data_fs: expected a size"),
        (edit(stack={"wal_fs": "8MiB"}), "s.yaml: stack.wal_fs: expected a size"),
        ("id: [unclosed", "s.yaml: line 1 column"),
        ("- a\n- b\n", "s.yaml: <top>: expected a mapping"),
    ],
)
def test_malformed_scenarios_are_rejected_with_path_and_reason(text, expected):
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found


def test_rto_zero_with_a_restore_is_impossible():
    text = edit(
        objectives__rto="0s", recovery=[{"action": "restore-backup", "with": {"target": "latest"}}]
    )
    assert any("RTO of 0 is impossible" in p for p in problems(text))


def test_all_problems_are_reported_at_once():
    text = edit(severity="P7", recovery__0__action="nope", objectives__rpo="x")
    assert len(problems(text)) >= 3


def test_file_name_must_match_id(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text(GOOD)
    with pytest.raises(ValidationError) as exc:
        load_scenario(path)
    assert "differs from the file name" in str(exc.value)


leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(
        ["10s", "-1s", "0s", "primary", "app", "P0", "restart-service", "kill-postmaster"]
    ),
)
values = st.recursive(
    leaf,
    lambda c: st.one_of(
        st.lists(c, max_size=4), st.dictionaries(st.text(max_size=10), c, max_size=4)
    ),
    max_leaves=20,
)
KEYS = [*TOP_KEYS, "with", "action"]  # every top-level key, and two step keys out of place


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), values, max_size=12))
def test_fuzzed_scenarios_end_in_a_validation_error_or_a_scenario(data):
    """Never a traceback: any input either parses or raises ValidationError with file:path lines."""
    try:
        parse_scenario(data, "fuzz.yaml")
    except ValidationError as exc:
        assert exc.problems and all(p.startswith("fuzz.yaml: ") for p in exc.problems)


@settings(deadline=None)
@given(st.text(max_size=300))
def test_fuzzed_yaml_text_never_crashes(text):
    try:
        parse_scenario_text(text, "fuzz.yaml")
    except ValidationError as exc:
        assert all(p.startswith("fuzz.yaml: ") for p in exc.problems)


@settings(deadline=None)
@given(st.sampled_from(["fault", "recovery"]), values)
def test_fuzzed_steps_of_a_good_scenario(where, junk):
    data = yaml.safe_load(GOOD)
    if where == "fault":
        data["fault"] = junk
    else:
        data["recovery"] = [junk]
    try:
        parse_scenario(data, "fuzz.yaml")
    except ValidationError as exc:
        assert all(p.startswith("fuzz.yaml: ") for p in exc.problems)
