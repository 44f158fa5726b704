"""On a compose stack drillkit did not ship (tests/integration/compose_stack, generic.yaml): the
catalogue's generic steps. The team's dump runs in a one-off container of the database's image
with its volumes before the fault; the postmaster of an official-image-style PostgreSQL is found
through PGDATA's postmaster.pid and killed; a partition between two compose services is cut and
healed; the app role's leaked password is rotated with env delivery (the app is recreated) and
stops working."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from drillkit.core.config import RunConfig
from drillkit.core.results import DrillResult
from drillkit.core.scenario import Scenario, parse_scenario_text
from drillkit.stack.spec import load_stack

STACK = Path(__file__).parent / "compose_stack" / "generic.yaml"
CHECKS = "[all-systems-responding, critical-journeys, recovered-within-rto"
PROBE = "timeout 2 bash -c '</dev/tcp/web/8000' 2>/dev/null && echo reached || echo cut"

KILL = f"""
id: compose-kill
title: a one-off pg_dump, then SIGKILL the compose database's postmaster
source: {{runbook: "-", section: "harness self-test"}}
severity: P3
failure_class: database-failure
tags: [selftest]
objectives: {{rto: 30s, rpo: 0s}}
prepare:
  - name: backup.sh
    action: run-container
    with:
      image: db
      volumes_from: db
      env: [POSTGRES_PASSWORD]
      command: [sh, -c, "PGPASSWORD=$POSTGRES_PASSWORD pg_dump -h db -U shop -d shopdb -f /var/lib/postgresql/data/dump.sql && grep -c seeded /var/lib/postgresql/data/dump.sql"]
fault: {{action: kill-postmaster, with: {{service: db}}}}
recovery:
  - {{action: ensure-running, with: {{service: db}}}}
  - {{action: wait-app-healthy, timeout: 30s}}
checklist: {CHECKS}, database-healthy]
observe: 1s
"""

PARTITION = f"""
id: compose-partition
title: cut the compose app from its database and heal it
source: {{runbook: "-", section: "harness self-test"}}
severity: P3
failure_class: service-partition
tags: [selftest]
objectives: {{rto: 30s, rpo: 0s}}
fault: {{action: partition, with: {{a: web, b: db}}}}
recovery:
  - {{name: probe cut, action: run-script, with: {{service: db, command: [bash, -c, "{PROBE}"]}}}}
  - {{action: heal-partition, with: {{a: db, b: web}}}}
  - {{name: probe healed, action: run-script, with: {{service: db, command: [bash, -c, "{PROBE}"]}}}}
checklist: {CHECKS}, connection-count]
observe: 1s
"""

ROTATE = f"""
id: compose-rotate
title: the app role's password leaks; rotate it, delivered by env (app recreated)
source: {{runbook: "-", section: "harness self-test"}}
severity: P3
failure_class: security-breach
tags: [selftest]
objectives: {{rto: 60s, rpo: 0s}}
fault: {{action: leak-db-password}}
recovery:
  - {{action: rotate-db-password, timeout: 90s}}
  - {{action: terminate-sessions}}
checklist: {CHECKS}, old-db-password-rejected, attacker-session-gone]
observe: 1s
"""


@pytest.fixture(scope="session")
def drill_run_config(drill_run_config: RunConfig) -> RunConfig:
    return dataclasses.replace(drill_run_config, stack_file=STACK)


def _run(run_drill: Callable[[Scenario], DrillResult], text: str) -> DrillResult:
    return run_drill(parse_scenario_text(text, services=load_stack(STACK).services))


def test_a_one_off_dump_then_a_postmaster_kill(
    run_drill: Callable[[Scenario], DrillResult],
) -> None:
    result = _run(run_drill, KILL)
    steps = {s.name: s for s in result.steps}
    dump = steps["backup.sh"]
    assert dump.kind == "prepare" and dump.ok, dump
    assert dump.output.strip().splitlines()[-1] == "1"  # the seeded row is in the dump
    assert "s3cret-from-dotenv" not in repr(result.to_json())
    assert "killed with SIGKILL" in steps["kill-postmaster"].output, steps["kill-postmaster"]
    assert result.status == "passed", (result.breaches, result.error)


def test_a_partition_between_compose_services(run_drill: Callable[[Scenario], DrillResult]) -> None:
    result = _run(run_drill, PARTITION)
    assert [s.ok for s in result.steps] == [True] * 4, result.steps
    steps = {s.name: s for s in result.steps}
    assert steps["probe cut"].output.endswith("cut"), steps["probe cut"]
    assert steps["probe healed"].output.endswith("reached"), steps["probe healed"]
    assert result.status == "passed", (result.breaches, result.error)


def test_env_delivered_rotation(run_drill: Callable[[Scenario], DrillResult]) -> None:
    result = _run(run_drill, ROTATE)
    steps = {s.name: s for s in result.steps}
    assert "as shop" in steps["leak-db-password"].output
    rotate = steps["rotate-db-password"]
    assert rotate.ok and "web recreated with the new DATABASE_PASSWORD, healthy" in rotate.output
    checks = {c.id: c for c in result.checks}
    assert checks["old-db-password-rejected"].ok, checks["old-db-password-rejected"]
    assert checks["attacker-session-gone"].ok, checks["attacker-session-gone"]
    assert "s3cret-from-dotenv" not in repr(result.to_json())
    assert result.status == "passed", (result.breaches, result.error)
