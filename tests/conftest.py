"""tests/team_project is a team's project (its own pytest.ini, drills and catalogue), run by
tests/integration/test_team_catalog.py in a subprocess: not collected as part of drillkit's tests.

`make test` runs two xdist workers on the one Docker engine (`-n 2 --dist loadscope`):
- a module is one unit of work (its tests may share a module-scoped stack), but the drills of
  the SPREAD modules are independent and go to either worker one by one;
- the longest modules go first, so that no worker is left with a long tail;
- a SOLO module judges timing in milliseconds or runs several stacks itself: it holds the
  engine alone while it runs (drillkit.stack.share); every other module holds it shared, and a
  SPREAD module's drills hold it one by one as `make drill`'s do (alone when tagged `solo`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drillkit.plugin import engine_share

collect_ignore = ["team_project"]

SPREAD = {"test_drill_verdicts"}
"""Modules whose tests are independent drills, scheduled one by one."""

FIRST = ("test_example_ha", "test_example_shop", "test_wheel_install", "test_engines")
"""The longest modules (minutes each), scheduled before the rest in this order."""

SOLO = {"test_rto_accuracy", "test_engines", "test_signals_and_xdist"}
"""Modules that judge timing or load the machine themselves: they hold the engine alone."""


def module_of(nodeid: str) -> str:
    return Path(nodeid.split("::", 1)[0]).stem


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        module = module_of(item.nodeid)
        return FIRST.index(module) if module in FIRST else len(FIRST)

    items.sort(key=rank)  # stable: collection order within a rank


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadscope`, with a module as the scope (a SPREAD module's test as its own) and
    the collection's order kept."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return nodeid if Path(module).stem in SPREAD else module

    config.option.loadscopereorder = False
    return ModuleScheduling(config, log)


@pytest.fixture(scope="module", autouse=True)
def engine_share_module(request: pytest.FixtureRequest) -> Iterator[None]:
    """Hold the engine for the module (SOLO alone, others shared, so a module-scoped stack is
    covered too). A SPREAD module's drills hold it themselves, one by one (drillkit.plugin's
    `run_drill`: alone when tagged `solo`); a drill inside a held module takes nothing more."""
    share = engine_share(request.config)
    module = module_of(request.node.nodeid)
    if share is None or module in SPREAD:
        yield
        return
    with share.hold(solo=module in SOLO):
        yield
