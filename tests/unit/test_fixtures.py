"""The Python-drill fixtures without containers: the marker becomes a validated Scenario, steps are
validated as scenario files' are, the testcontainers helpers label and publish as the rules say,
and the plugin registers the fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from drillkit.core.scenario import PENDING, parse_step
from drillkit.errors import ValidationError
from drillkit.fixtures import labelled, network_kw, publish_local
from drillkit.fixtures.drill import _step_data, drill_data, python_scenario
from drillkit.stack import engine

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("primary", "replica", "app")


def header(**meta: object) -> dict[str, object]:
    return drill_data(
        {"rto": "15s", "rpo": "0s", **meta}, "test_db_kill", "Kill it.\nMore.", "t::x"
    )


def test_the_marker_defaults_come_from_the_test() -> None:
    data = header()
    assert data["id"] == "db-kill"
    assert data["title"] == "Kill it."
    assert data["source"] == {"runbook": "python", "section": "t::x"}
    assert data["objectives"] == {"rto": "15s", "rpo": "0s"}


def test_a_python_drill_header_is_a_validated_scenario() -> None:
    sc = python_scenario(
        header(id="x-py", detection="2s", checklist=["recovered-within-rto"], tags=["nightly"]),
        "t::x",
        SERVICES,
    )
    assert (sc.objectives.rto_s, sc.objectives.rpo_s, sc.objectives.detection_s) == (15, 0, 2)
    assert [c.id for c in sc.checklist] == ["recovered-within-rto"]
    assert sc.fault is PENDING and sc.recovery == ()
    assert sc.tags == ("nightly",) and "rto: 15s" in sc.text
    assert "lacks all-systems-responding" in sc.not_evidence  # marked: it can never pass


@pytest.mark.parametrize(
    ("meta", "problem"),
    [
        ({"checklist": ["recovered-within-rtoo"]}, "unknown check"),
        ({"rto": "-1s"}, "objectives.rto"),
        ({"severity": "P9"}, "severity"),
        ({"max_duration": "0s"}, "max_duration"),
    ],
)
def test_a_bad_header_is_refused_with_its_reason(meta: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError) as exc:
        python_scenario(header(**meta), "t::x", SERVICES)
    assert problem in "\n".join(exc.value.problems)


def test_an_unknown_marker_key_or_missing_objective_is_named() -> None:
    with pytest.raises(ValidationError, match=r"unknown key.*fault"):
        drill_data({"rto": "1s", "rpo": "0s", "fault": {}}, "test_x", None, "t::x")
    with pytest.raises(ValidationError, match="rpo are required"):
        drill_data({"rto": "1s"}, "test_x", None, "t::x")


def test_steps_are_validated_as_scenario_steps() -> None:
    step = parse_step(
        "recovery", {"action": "restart-service", "with": {"service": "primary"}}, "t"
    )
    assert (step.action, step.params["service"], step.timeout_s) == (
        "restart-service",
        "primary",
        60,
    )
    assert _step_data(step) == {
        "name": "restart-service",
        "action": "restart-service",
        "with": {"service": "primary"},
        "timeout": "60s",
    }
    with pytest.raises(
        ValidationError, match=r"unknown fault action 'kill-postmastr'.*kill-postmaster"
    ):
        parse_step("fault", {"action": "kill-postmastr"}, "t")
    with pytest.raises(ValidationError, match="unknown service 'db'"):
        parse_step("fault", {"action": "kill-postmaster", "with": {"service": "db"}}, "t", SERVICES)
    hold = parse_step("recovery", {"action": "hold", "with": {"duration": "4s"}}, "t")
    assert _step_data(hold)["with"] == {"duration": "4s"}
    with pytest.raises(ValidationError, match="duration"):
        parse_step("recovery", {"action": "hold", "with": {"duration": "soon"}}, "t")


class FakeContainer:
    """The part of testcontainers' DockerContainer the helpers touch (no engine needed)."""

    def __init__(self) -> None:
        self._kwargs: dict[str, object] = {"init": True}
        self._container = None
        self.ports: dict[str, object] = {}

    def with_kwargs(self, **kwargs: object) -> FakeContainer:
        self._kwargs = kwargs
        return self


def test_labelled_keeps_the_other_kwargs_and_refuses_a_started_container() -> None:
    c = labelled(FakeContainer(), {engine.RUN_LABEL: "r1"})
    assert c._kwargs == {"init": True, "labels": {engine.RUN_LABEL: "r1"}}
    c._container = object()
    with pytest.raises(ValueError, match="before start"):
        labelled(c, {})


def test_ports_are_published_on_loopback_only() -> None:
    assert publish_local(FakeContainer(), 5432).ports == {"5432/tcp": ("127.0.0.1", None)}


def test_drill_networks_carry_the_run_labels_and_stay_internal() -> None:
    labels = {engine.RUN_LABEL: "r1"}
    assert network_kw(labels, internal=True)["internal"] is True
    edge = network_kw(labels, internal=False)
    assert edge["options"]["com.docker.network.bridge.host_binding_ipv4"] == "127.0.0.1"
    with pytest.raises(ValueError, match="run's labels"):
        network_kw({}, internal=True)


def test_the_plugin_registers_the_fixtures(pytestconfig: pytest.Config) -> None:
    plugin = pytestconfig.pluginmanager.get_plugin("drillkit.fixtures")
    assert plugin is not None
    for name in ("drill_stack", "traffic", "fault", "runbook", "verdict", "drill_stack_factory"):
        assert hasattr(plugin, name), name


def test_a_drill_marker_with_a_bad_check_is_an_error_before_any_container(tmp_path: Path) -> None:
    (tmp_path / "test_bad.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.drill(rto='15s', rpo='0s', checklist=['no-such-check'])\n"
        "def test_x(drill_stack):\n"
        "    pass\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this drillkit, not an installed one
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "1 error" in proc.stdout, proc.stdout[-3000:]
    assert "invalid drill" in proc.stdout and "unknown check 'no-such-check'" in proc.stdout
