"""Drills of a stack defined by testcontainers objects only (conftest.py): a kill-and-restart drill,
a partition drill, and a sabotaged twin of the first whose runbook never restarts the database."""

import pytest

CHECKLIST = [
    "all-systems-responding",
    "key-functionality",
    "no-error-spike",
    "database-healthy",
    "authentication",
    "critical-journeys",
    "detected-within-objective",
    "recovered-within-rto",
]
OWN = {"runbook": "our-db-runbook", "section": "database restart"}


@pytest.mark.drill(
    id="own-kill-restart", source=OWN, rto="6s", rpo="0s", detection="3s", checklist=CHECKLIST
)
def test_kill_and_restart(drill_stack, fault, runbook, verdict):
    """Our PostgreSQL killed; the runbook restarts it."""
    with fault("kill-postmaster", service="primary"):
        pass
    runbook("restart-service", service="primary", timeout="30s")
    runbook("wait-app-healthy", timeout="20s")
    result = verdict()
    assert result.measurement.rto_s is not None and result.measurement.lost == 0


@pytest.mark.drill(
    id="own-partition", source=OWN, rto="8s", rpo="0s", detection="3s", checklist=CHECKLIST
)
def test_partition(fault, runbook, verdict):
    """The app cut off from our PostgreSQL for 2 s; healed, the app reconnects by itself."""
    with fault("partition", a="app", b="primary"):
        pass
    runbook("hold", duration="2s")
    runbook("heal-partition", a="app", b="primary")
    runbook("wait-app-healthy", timeout="20s")
    verdict()


@pytest.mark.drill(
    id="own-kill-no-restart", source=OWN, rto="6s", rpo="0s", detection="3s", checklist=CHECKLIST
)
def test_sabotaged_kill_without_restart(fault, runbook, verdict):
    """Sabotaged twin: the runbook checks the app but never restarts the database (must fail)."""
    with fault("kill-postmaster", service="primary"):
        pass
    runbook("check-service-status", service="primary", timeout="10s")
    runbook("wait-app-healthy", timeout="2s")
    verdict()
