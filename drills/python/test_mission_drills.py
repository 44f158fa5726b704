"""The five mission drills written in Python: the same faults, runbooks, objectives and checklists
as their YAML twins (scenarios/<id>.yaml), as examples of the style. Each gives the same record,
Allure output and evidence as its twin; ids end in `-py` so both records sit side by side."""

import pytest

from drillkit.core.scenario import DEFAULT_CHECKLIST


def _source(name: str) -> dict[str, str]:
    """The YAML twin's source runbook (its `source:` block)."""
    import yaml

    from drillkit.paths import SCENARIOS_DIR

    return yaml.safe_load((SCENARIOS_DIR / f"{name}.yaml").read_text())["source"]


@pytest.mark.nightly
@pytest.mark.quarterly
@pytest.mark.drill(
    id="db-kill-restart-py",
    title="Primary database killed (SIGKILL of the postmaster); the runbook restarts it",
    source=_source("db-kill-restart"),
    severity="P0",
    failure_class="database-failure",
    tags=["database"],
    rto="15s",
    rpo="0s",
    detection="2s",
)
def test_db_kill_restart(fault, runbook, verdict):
    with fault("kill-postmaster", name="SIGKILL the primary's postmaster", service="primary"):
        pass  # leaving the block: the incident is detected (first failed probe)
    runbook("check-service-status", name="Check database status", service="primary", timeout="10s")
    runbook("restart-service", name="Restart the database", service="primary", timeout="60s")
    runbook("wait-app-healthy", name="Verify the app reconnected", timeout="30s")
    verdict()


@pytest.mark.nightly
@pytest.mark.quarterly
@pytest.mark.drill(
    id="corruption-page-py",
    title="A heap page of the orders table is corrupted on disk; restore from backup and replay WAL",
    source=_source("corruption-page"),
    severity="P1",
    failure_class="data-corruption",
    tags=["database", "backup"],
    rto="40s",
    rpo="0s",
    detection="5s",
    backup=True,
)
def test_corruption_page(fault, runbook, verdict):
    with fault(
        "corrupt-page", name="Overwrite bytes of orders block 0 on disk", table="orders", block=0
    ):
        pass
    runbook("set-maintenance", name="Maintenance mode on (writes refused with 503)", enabled=True)
    runbook("assess-corruption", name="Assess the scope (pg_amcheck, checksum failures)")
    runbook("switch-wal", name="Archive the current WAL")
    runbook(
        "restore-backup",
        name="Restore the backup and replay archived WAL",
        target="latest",
        timeout="120s",
    )
    runbook("rebuild-replica", name="Re-clone the replica from the restored primary", timeout="60s")
    runbook("set-maintenance", name="Maintenance mode off", enabled=False)
    runbook("wait-app-healthy", name="Verify the app")
    verdict()


@pytest.mark.nightly
@pytest.mark.quarterly
@pytest.mark.drill(
    id="partition-app-db-py",
    title="Network partition between the app and the primary; the app fails fast and reconnects",
    source=_source("partition-app-db"),
    severity="P1",
    failure_class="network",
    tags=["network"],
    rto="12s",
    rpo="0s",
    detection="4s",
    checklist=[*DEFAULT_CHECKLIST, "app-fails-fast"],
)
def test_partition_app_db(fault, runbook, verdict):
    with fault("partition", name="Drop all packets between app and primary", a="app", b="primary"):
        pass
    runbook("hold", name="Partition lasts 4 s (the network team's repair time)", duration="4s")
    runbook("heal-partition", name="Heal the partition", a="app", b="primary")
    runbook("wait-app-healthy", name="Verify the app reconnected by itself")
    verdict()


@pytest.mark.nightly
@pytest.mark.quarterly
@pytest.mark.drill(
    id="credential-leak-py",
    title="Database password and token-signing secret leak; rotate everything, evict the attacker",
    source=_source("credential-leak"),
    severity="P0",
    failure_class="security-breach",
    tags=["security"],
    rto="15s",
    rpo="0s",
    checklist=[
        "all-systems-responding",
        "key-functionality",
        "performance-baseline",
        "no-error-spike",
        "database-healthy",
        "authentication",
        "critical-journeys",
        "recovered-within-rto",
        "old-db-password-rejected",
        "attacker-session-gone",
        "old-token-rejected",
        "audit-log-intact",
    ],
)
def test_credential_leak(fault, runbook, verdict):
    # no detection objective: a leak is reported by a third party, the runbook starts at once
    fault("leak-credentials", name="Leak the DB password and signing secret to an attacker")
    runbook("preserve-evidence", name="Preserve evidence (app logs, audit table, sessions)")
    runbook("rotate-db-password", name="Rotate the database password", role="app")
    runbook("reload-app", name="Reload the app with the new credentials")
    runbook(
        "rotate-signing-secret",
        name="Rotate the token-signing secret (force logout of all sessions)",
    )
    runbook("reload-app", name="Reload the app with the new signing secret")
    runbook(
        "terminate-sessions", name="Terminate every session opened before the rotation", role="app"
    )
    runbook("wait-app-healthy", name="Verify the app")
    verdict()


@pytest.mark.nightly
@pytest.mark.quarterly
@pytest.mark.drill(
    id="disk-full-py",
    title="The primary's data filesystem fills up; free space, restart, verify",
    source=_source("disk-full"),
    severity="P1",
    failure_class="resource-exhaustion",
    tags=["database", "disk"],
    stack={"data_fs": "256MiB"},
    rto="20s",
    rpo="0s",
    detection="10s",
)
def test_disk_full(fault, runbook, verdict):
    with fault("fill-disk", name="Fill the data filesystem with a ballast file"):
        pass
    runbook(
        "check-disk",
        name="Check the disk and the database log (the fault stands 3 s, as until an operator looks)",
        after="3s",
    )
    runbook("free-disk", name="Free space (delete the ballast)")
    runbook("ensure-running", name="Start PostgreSQL again if it stopped", service="primary")
    runbook("wait-app-healthy", name="Verify the app")
    verdict()
