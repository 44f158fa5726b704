"""The facts on registry entries (title, restores, needs, settle, module) and that the runner's
helpers use them, not side tables or names: a team's check with settle= is honoured like the
built-in performance-baseline, and a team's probe factory is called like the site probe."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from drillkit.core import phases
from drillkit.core.config import RunConfig
from drillkit.core.measure import Sample
from drillkit.core.registry import (
    CHECKS,
    FAULTS,
    NOT_LOADED,
    OPTIONAL_SERVICES,
    PROBES,
    RECOVERY,
    CatalogNotLoaded,
    Registry,
)
from drillkit.core.runner import Runner
from drillkit.core.scenario import Check, parse_scenario_text, restores_backup
from drillkit.stack.services.payments import PROVIDERS

REGISTRIES = (FAULTS, RECOVERY, CHECKS, PROBES)
SCENARIO = """
id: t
title: test
source: {runbook: "000", section: "Procedure 1"}
severity: P0
failure_class: database-failure
tags: [nightly]
objectives: {rto: 10s, rpo: 0s, detection: 2s}
fault: {action: kill-postmaster}
recovery:
  - {action: restart-service, with: {service: primary}}
checklist: [all-systems-responding]
"""


def every_entry() -> list[Any]:
    """drillkit's own entries (a team module another test loaded is the team's business)."""
    return [e for r in REGISTRIES for e in r.entries.values() if e.module.startswith("drillkit.")]


def test_every_entry_has_a_docstring_and_every_check_a_title() -> None:
    undocumented = [f"{e.kind} {e.name}" for e in every_entry() if not e.doc.strip()]
    assert not undocumented
    untitled = [c.name for c in every_entry() if c.kind == "check" and not c.title]
    assert not untitled


def test_entries_know_their_module() -> None:
    assert CHECKS.get("performance-baseline").module == "drillkit.catalog.checks"
    assert RECOVERY.get("restore-site-content").module == "drillkit.catalog.web"
    assert PROBES.get("payment").module == "drillkit.catalog.payments"


def test_restores_is_a_fact_of_the_step() -> None:
    assert [e.name for e in RECOVERY.entries.values() if e.restores] == ["restore-backup"]
    sc = parse_scenario_text(SCENARIO)
    assert not restores_backup(sc.recovery)
    assert not phases.wants_baseline_backup(sc, "auto")
    assert phases.wants_baseline_backup(sc, "always")
    restoring = sc.recovery[0].__class__("r", "restore-backup", {}, 60.0)
    sc = replace(sc, recovery=(*sc.recovery, restoring))
    assert phases.wants_baseline_backup(sc, "auto") and not phases.wants_baseline_backup(
        sc, "never"
    )


def test_an_rto_of_zero_is_refused_for_a_step_declared_restoring(team_restore: str) -> None:
    text = SCENARIO.replace("rto: 10s", "rto: 0s").replace(
        "checklist:", f"  - {{action: {team_restore}}}\nchecklist:"
    )
    with pytest.raises(Exception, match="RTO of 0 is impossible"):
        parse_scenario_text(text)


def test_needs_are_declared() -> None:
    assert "pgbackrest" in RECOVERY.get("restore-backup").needs
    assert "replica" in RECOVERY.get("promote-replica").needs
    assert "proxy" in FAULTS.get("toxic-add").needs
    assert "web" in CHECKS.get("site-integrity").needs
    assert "payments" in FAULTS.get("fail-payment-provider").needs


def test_the_catalogue_declares_its_services() -> None:
    assert OPTIONAL_SERVICES["payments"] == PROVIDERS
    assert OPTIONAL_SERVICES["web"] == ("web",) and OPTIONAL_SERVICES["proxy"] == ("proxy",)


def test_an_empty_registry_says_the_catalogue_is_not_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(CatalogNotLoaded, match=r"call drillkit\.catalog\.load\(\)"):
        Registry("fault").require_loaded()
    monkeypatch.setattr(FAULTS, "entries", {})
    with pytest.raises(CatalogNotLoaded) as exc:
        parse_scenario_text(SCENARIO)
    assert NOT_LOADED in str(exc.value)


# ----- a team's entries, registered in the test -------------------------------------------


@pytest.fixture
def team_restore() -> Iterator[str]:
    name = "team-restore-from-snapshot"

    @RECOVERY(name, restores=True)
    def restore(ctx: Any) -> str:
        """A team's restore from its own snapshots."""
        return "restored"

    yield name
    del RECOVERY.entries[name]


@pytest.fixture
def team_check() -> Iterator[dict[str, list[float]]]:
    """A check with a settle condition: settled once `threshold` is reached."""
    name = "team-queue-drained"
    calls: dict[str, list[float]] = {"t_recovered": []}

    def drained(ctx: Any, t_recovered: float, threshold: int = 3) -> bool:
        calls["t_recovered"].append(t_recovered)
        return ctx.depth <= threshold

    @CHECKS(name, title="The team's queue drained", settle=drained)
    def queue_drained(ctx: Any, threshold: int = 3) -> str:
        """The queue is back under `threshold`."""
        return "drained"

    yield calls
    del CHECKS.entries[name]


def _ctx(depth: int, recovered: bool = True) -> Any:
    samples = [Sample("availability", 10.0 + 0.1 * i, True, 0.01) for i in range(10)]
    if not recovered:
        samples = [replace(s, ok=False) for s in samples]
    return SimpleNamespace(depth=depth, probes=SimpleNamespace(snapshot=lambda: samples))


def test_a_team_check_with_settle_is_honoured(team_check: dict[str, list[float]]) -> None:
    sc = parse_scenario_text(
        SCENARIO.replace(
            "checklist: [all-systems-responding]",
            "checklist: [all-systems-responding, {check: team-queue-drained, with: {threshold: 5}}]",
        )
    )
    checks = phases.settle_checks(sc)
    assert [item.id for item, _ in checks] == ["team-queue-drained"]
    assert checks[0][0] == Check("team-queue-drained", {"threshold": 5})
    assert not phases.settled(_ctx(depth=9), checks, t_fault=9.0, k=5)
    assert phases.settled(_ctx(depth=4), checks, t_fault=9.0, k=5)
    assert len(team_check["t_recovered"]) == 2  # called with T_recovered, once per look
    assert phases.settled(_ctx(depth=9, recovered=False), checks, t_fault=9.0, k=5)


def test_performance_baseline_settles_through_its_entry() -> None:
    sc = parse_scenario_text(SCENARIO.replace("[all-systems-responding]", "[performance-baseline]"))
    assert [item.id for item, _ in phases.settle_checks(sc)] == ["performance-baseline"]
    assert phases.settle_checks(parse_scenario_text(SCENARIO)) == []


def test_the_runner_calls_every_probe_factory(tmp_path: Any) -> None:
    name = "team-queue"
    seen: list[float] = []

    @PROBES(name)
    def queue_probes(stack: Any, timeout_s: float) -> dict[str, Any]:
        """A team's probe of its queue."""
        seen.append(timeout_s)
        return {"queue": lambda: None}

    try:
        runner = Runner(parse_scenario_text(SCENARIO), RunConfig(results_dir=tmp_path))
        stack = SimpleNamespace(services=("primary", "app"), app_url="", spec=runner.spec)
        probes = runner._probes(stack)  # type: ignore[arg-type]
    finally:
        del PROBES.entries[name]
    assert seen == [2.0]
    assert set(probes.extra) == {"queue"}  # the site and payment factories add nothing here
