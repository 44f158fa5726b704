"""Where a run's database data directories go: wiring.data_in_memory and the stack options."""

from dataclasses import dataclass

import pytest

from drillkit.core import wiring
from drillkit.core.config import Deadline, RunConfig
from drillkit.core.scenario import load_scenario
from drillkit.paths import SCENARIOS_DIR


@dataclass
class FakeEndpoint:
    local: bool


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch):
    """Root on the engine's host, unless a test says otherwise."""
    state = {"euid": 0, "local": True}
    monkeypatch.setattr(wiring.os, "geteuid", lambda: state["euid"])
    monkeypatch.setattr(wiring.engine, "current", lambda: FakeEndpoint(state["local"]))
    return state


def test_root_on_a_local_engine_at_the_small_scale_puts_them_in_memory(host) -> None:
    assert wiring.data_in_memory(RunConfig()) is True


@pytest.mark.parametrize(
    ("change", "config"),
    [
        ({}, RunConfig(data_in_memory=False)),  # --drill-data-on-disk
        ({}, RunConfig(seed_scale="medium")),  # larger data: on disk
        ({"euid": 1000}, RunConfig()),  # no tmpfs mount without root
        ({"local": False}, RunConfig()),  # a remote engine cannot bind this host's tmpfs
    ],
)
def test_otherwise_they_stay_on_volumes(host, change, config) -> None:
    host.update(change)
    assert wiring.data_in_memory(config) is False


def test_the_stack_options_carry_it(host) -> None:
    scenario = load_scenario(SCENARIOS_DIR / "db-kill-restart.yaml")
    opts = wiring.stack_options(scenario, Deadline(60), RunConfig())
    assert opts.data_in_memory is True
    host["euid"] = 1000
    assert wiring.stack_options(scenario, Deadline(60), RunConfig()).data_in_memory is False
