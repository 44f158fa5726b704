"""Declared ledgers against real stacks (issue 14).

The reference stack's own journey and SQL-lookup ledger are declared in stacks/reference.yaml, so
every reference drill and twin (drills/, test_drill_verdicts.py) runs on them. Here: the
database-level canary ledger on the reference stack catches the writes a restore to the backup's
consistent point loses, and the record says how many and how long before the fault they were
acknowledged; and a compose stack is drilled by its declared probes and canary ledger."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from drillkit import catalog
from drillkit.core.config import RunConfig
from drillkit.core.results import DrillResult
from drillkit.core.runner import Runner
from drillkit.core.scenario import load_scenario, parse_scenario_text
from drillkit.paths import REFERENCE_STACK, SCENARIOS_DIR
from drillkit.stack.spec import StackSpec, load_stack, parse_stack
from drillkit.validate import load_yaml


def run(scenario_path: Path, spec: StackSpec, config: RunConfig) -> tuple[DrillResult, Runner]:
    catalog.load()
    runner = Runner(load_scenario(scenario_path), config, spec=spec)
    result = runner.run()
    assert result.status in ("passed", "failed"), result.error
    record = (config.results_dir / f"{result.scenario_id}.json").read_text()
    assert not [s for s in runner.secret_values if s in record], "a secret reached the record"
    return result, runner


def canary_spec() -> StackSpec:
    """The reference stack with the canary ledger instead of its declared HTTP one."""
    data: dict[str, Any] = load_yaml(REFERENCE_STACK)
    data["ledger"] = {"canary": {"service": "primary", "table": "drillkit_canary", "rate": 20}}
    return parse_stack(data, "reference-canary.yaml")


def test_the_canary_ledger_catches_the_writes_a_restore_to_the_backup_loses(
    drill_run_config: RunConfig, tmp_path: Path
) -> None:
    path = SCENARIOS_DIR / "sabotage" / "corruption-page-no-wal-replay.yaml"
    # its own results folder: the twin of the same id writes its record to the session's one
    config = dataclasses.replace(drill_run_config, results_dir=tmp_path / "runs")
    result, _ = run(path, canary_spec(), config)
    m = result.measurement
    assert result.status == "failed", result.breaches
    assert any(b.startswith("RPO ") for b in result.breaches), result.breaches
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
