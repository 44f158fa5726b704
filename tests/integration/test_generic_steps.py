"""On a real stack: the catalogue's generic steps (issue 14). A team's runbook scripts run as
`prepare:` steps before the fault (a pg_dump in the database service, then a one-off container of
the database's image with its volumes, on the run's network, reading the dump); the postmaster is
found through postmaster.pid and killed; a leaked password is rotated and stops working."""

from __future__ import annotations

from collections.abc import Callable

from drillkit.core.results import DrillResult
from drillkit.core.scenario import Scenario, parse_scenario_text

KILL = """
id: generic-kill-scripts
title: a team's dump script before the fault, then SIGKILL the postmaster found by its pid file
source: {runbook: "-", section: "harness self-test"}
severity: P3
failure_class: database-failure
tags: [selftest]
objectives: {rto: 30s, rpo: 0s}
prepare:
  - name: backup.sh
    action: run-script
    with:
      service: primary
      command: [sh, -c, "pg_dump -h /run/postgresql -d app -Fc -f /var/lib/pgbackrest/dump.pgc && echo dumped"]
  - name: inspect the dump in a one-off container
    action: run-container
    with:
      image: primary
      volumes_from: primary
      command: [sh, -c, "pg_isready -h primary -p 5432 && pg_restore --list /var/lib/pgbackrest/dump.pgc | grep -c 'TABLE DATA'"]
fault: {action: kill-postmaster, with: {service: primary}}
recovery:
  - {action: start-container, with: {service: primary}}
  - {action: wait-app-healthy, timeout: 30s}
checklist: [all-systems-responding, critical-journeys, recovered-within-rto, database-healthy]
observe: 1s
"""

ROTATE = """
id: generic-rotate
title: the app role's password leaks to an attacker session; rotate it, end the session
source: {runbook: "-", section: "harness self-test"}
severity: P3
failure_class: security-breach
tags: [selftest]
objectives: {rto: 30s, rpo: 0s}
fault: {action: leak-db-password}
recovery:
  - {action: rotate-db-password}
  - {action: reload-app}
  - {action: terminate-sessions}
  - {action: wait-app-healthy, timeout: 30s}
checklist: [all-systems-responding, critical-journeys, recovered-within-rto,
            old-db-password-rejected, attacker-session-gone]
observe: 1s
"""


def test_runbook_scripts_before_the_fault_and_a_postmaster_kill(
    run_drill: Callable[[Scenario], DrillResult],
) -> None:
    result = run_drill(parse_scenario_text(KILL))
    steps = {s.name: s for s in result.steps}
    assert [s.kind for s in result.steps][:3] == ["prepare", "prepare", "fault"], result.steps
    assert steps["backup.sh"].ok and "dumped" in steps["backup.sh"].output, steps["backup.sh"]
    inspect = steps["inspect the dump in a one-off container"]
    assert inspect.ok, inspect
    assert "accepting connections" in inspect.output  # on the run's network, by service name
    assert int(inspect.output.strip().splitlines()[-1]) >= 2  # the dump holds the seeded tables
    fault = steps["kill-postmaster"]
    assert fault.ok and "killed with SIGKILL" in fault.output, fault
    assert result.status == "passed", (result.breaches, result.error)


def test_a_leaked_role_password_is_rotated_and_stops_working(
    run_drill: Callable[[Scenario], DrillResult],
) -> None:
    result = run_drill(parse_scenario_text(ROTATE))
    steps = {s.name: s for s in result.steps}
    assert "attacker holds a database session as app" in steps["leak-db-password"].output
    assert steps["rotate-db-password"].ok, steps["rotate-db-password"]
    checks = {c.id: c for c in result.checks}
    assert checks["old-db-password-rejected"].ok, checks["old-db-password-rejected"]
    assert checks["attacker-session-gone"].ok, checks["attacker-session-gone"]
    assert result.status == "passed", (result.breaches, result.error)
