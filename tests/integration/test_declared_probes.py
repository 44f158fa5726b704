"""Declared probes, journey and ledger against the real reference stack (issue 14).

The reference stack with its probes, journey and writer declared in the stack file
(stacks/reference-declared.yaml) gives db-kill-restart the same verdict as the built-in ones;
the declared ledger catches the writes a restore to the backup's consistent point loses (by the
SQL lookup on orders, and by a canary table written through drillkit's own connection), and the
record says how many and how long before the fault they were acknowledged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from drillkit import catalog
from drillkit.core.config import RunConfig
from drillkit.core.results import DrillResult
from drillkit.core.runner import Runner
from drillkit.core.scenario import load_scenario, parse_scenario_text
from drillkit.stack.spec import StackSpec, load_stack, parse_stack
from drillkit.validate import load_yaml

ROOT = Path(__file__).resolve().parents[2]
DECLARED = Path(__file__).parent / "stacks" / "reference-declared.yaml"


def run(scenario_path: Path, spec: StackSpec, config: RunConfig) -> tuple[DrillResult, Runner]:
    catalog.load()
    runner = Runner(load_scenario(scenario_path), config, spec=spec)
    result = runner.run()
    assert result.status in ("passed", "failed"), result.error
    record = (config.results_dir / f"{result.scenario_id}.json").read_text()
    assert not [s for s in runner.secret_values if s in record], "a secret reached the record"
    return result, runner


def canary_spec() -> StackSpec:
    data: dict[str, Any] = load_yaml(DECLARED)
    data["ledger"] = {"canary": {"service": "primary", "table": "drillkit_canary", "rate": 20}}
    return parse_stack(data, "reference-canary.yaml")


def test_db_kill_restart_passes_with_the_declared_probes_journey_and_ledger(
    drill_run_config: RunConfig,
) -> None:
    result, _ = run(
        ROOT / "scenarios" / "db-kill-restart.yaml", load_stack(DECLARED), drill_run_config
    )
    assert result.status == "passed", result.breaches
    assert {s.probe for s in result.samples} == {"availability", "journey"}
    m = result.measurement
    assert m is not None and m.acked > 20 and m.lost == 0 and m.altered == 0
    assert m.failed_samples > 0  # the fault was seen by the declared probes
    assert (
        m.lost_oldest_s is None
        and result.extra["ledger"] == f"no acknowledged write lost (of {m.acked})"
    )


@pytest.mark.parametrize("ledger", ["sql-lookup", "canary"])
def test_a_declared_ledger_catches_the_writes_a_restore_to_the_backup_loses(
    ledger: str, drill_run_config: RunConfig
) -> None:
    spec = load_stack(DECLARED) if ledger == "sql-lookup" else canary_spec()
    path = ROOT / "scenarios" / "sabotage" / "corruption-page-no-wal-replay.yaml"
    result, _ = run(path, spec, drill_run_config)
    m = result.measurement
    assert result.status == "failed" and result.category == "rpo", result.breaches
    assert m is not None and m.lost > 0
    assert m.lost_oldest_s is not None and m.lost_newest_s is not None
    assert m.lost_oldest_s >= m.lost_newest_s  # the oldest loss was acknowledged earliest
    assert m.lost_oldest_s > 0  # writes acknowledged before the fault are gone
    assert result.extra["ledger"].startswith(f"lost {m.lost} writes of {m.acked}, acknowledged")
    assert any("acknowledged between" in b and "before" in b for b in result.breaches)


COMPOSE = Path(__file__).parent / "compose_stack" / "declared.yaml"
COMPOSE_DRILL = """
id: compose-db-kill
title: The compose stack's database container is killed; the runbook starts it again
source: {runbook: "000", section: "Procedure 1: Complete System Outage (database failure)"}
severity: P1
failure_class: database-failure
tags: [compose]
objectives: {rto: 30s, rpo: 0s, detection: 5s}
fault: {name: kill the database container, action: kill-container, with: {service: db}}
recovery:
  - {name: start the database, action: restart-service, with: {service: db}, timeout: 60s}
checklist: [all-systems-responding, critical-journeys, recovered-within-rto, no-error-spike,
            database-healthy]
"""


def test_a_compose_stack_is_drilled_by_its_declared_probes_and_canary_ledger(
    drill_run_config: RunConfig,
) -> None:
    catalog.load()
    spec = load_stack(COMPOSE)
    scenario = parse_scenario_text(COMPOSE_DRILL, "compose-db-kill.yaml", services=spec.services)
    runner = Runner(scenario, drill_run_config, spec=spec)
    result = runner.run()
    assert result.status == "passed", (result.error, result.breaches)
    assert {s.probe for s in result.samples} == {"web", "notes", "db-port", "journey"}
    m = result.measurement
    assert m is not None and m.acked > 20 and m.lost == 0
    assert m.failed_samples > 0 and m.rto_s is not None and m.rto_s > 0
    spike = next(c for c in result.checks if c.id == "no-error-spike")
    assert spike.ok and "web" in spike.detail and "db" in spike.detail
    assert "baseline_backup_s" not in result.extra  # no pgBackRest on this stack
    healthy = next(c for c in result.checks if c.id == "database-healthy")
    assert healthy.ok and "pg_amcheck clean" in healthy.detail
