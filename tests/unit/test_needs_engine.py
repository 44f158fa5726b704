"""host-access (nsenter, iptables, loop devices) is the engine's to provide, not the stack's: a
partition drill is accepted on a local engine and refused, naming the step, on a remote one."""

from __future__ import annotations

import pytest

from drillkit import catalog
from drillkit.core.needs import check_needs
from drillkit.core.scenario import load_scenario
from drillkit.errors import ValidationError
from drillkit.paths import SCENARIOS_DIR
from drillkit.stack import engine, engines
from drillkit.stack.spec import load_stack


def test_a_partition_drill_needs_an_engine_on_this_host(monkeypatch: pytest.MonkeyPatch) -> None:
    catalog.load()
    scenario = load_scenario(SCENARIOS_DIR / "partition-app-db.yaml")
    local = engines.parse_one("unix:///var/run/docker.sock")
    monkeypatch.setattr(engine, "current", lambda: local)
    check_needs(scenario, load_stack())  # accepted: the engine shares this host's kernel
    remote = engines.parse_one("ssh://drill@engine.example")
    monkeypatch.setattr(engine, "current", lambda: remote)
    with pytest.raises(ValidationError, match=r"fault.*partition.*host-access"):
        check_needs(scenario, load_stack())
