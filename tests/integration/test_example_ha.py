"""examples/ha, drilled from YAML only as its team would (`pytest` in the example's folder): a
repmgr cluster whose failover is automatic (repmgrd), HAProxy following the primary, and a Perl
app reading its database password from a file. The drills pass (kill, partition, credential
leak, page corruption, disk full); the sabotaged twins fail for their reasons: repmgrd paused, so
no failover happens (at the step that waits for it); a corrupt primary kept in service (its
pg_amcheck fails)."""

import json
import shutil
from pathlib import Path

import pytest
from project_pytest import run_project_pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ha"


def record(project: Path, scenario_id: str) -> dict:
    (path,) = (project / "reports" / "runs").glob(f"*/{scenario_id}.json")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def ha_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One `pytest` in a copy of the example: the drills of scenarios/ and, since pytest.ini
    names the sabotage folder, its twins (their expected failures honoured: the run passes)."""
    project = tmp_path_factory.mktemp("example") / "ha"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("reports", "__pycache__"))
    proc = run_project_pytest(project, project / "reports", "-v", timeout=900)
    out = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, out
    return project, proc.stdout


def test_ha_drills_pass_with_repmgrd_failing_over(ha_run: tuple[Path, str]) -> None:
    project, stdout = ha_run
    out = stdout[-6000:]
    for sid in (
        "ha-primary-kill",
        "ha-partition-app-proxy",
        "ha-credential-leak",
        "ha-corruption",
        "ha-disk-full",
    ):
        assert f"test_drill[{sid}] PASSED" in stdout, out
    kill = record(project, "ha-primary-kill")
    assert kill["status"] == "passed", kill["breaches"]
    steps = {s["action"]: s for s in kill["steps"]}
    assert (
        steps["await-failover"]["ok"] and "pg2 is the primary" in steps["await-failover"]["output"]
    )
    assert kill["measurement"]["rto_s"] is not None, kill["measurement"]
    checks = {c["id"]: c for c in kill["checks"]}
    assert "read-only" in checks["old-primary-fenced"]["detail"], checks["old-primary-fenced"]
    leak = record(project, "ha-credential-leak")
    rotate = next(s for s in leak["steps"] if s["action"] == "rotate-db-password")
    assert "/run/secrets/db_password rewritten in kv, sent SIGHUP" in rotate["output"], rotate
    # corruption: the damaged page is seen, the standby takes over, the node is cloned again
    corrupt = record(project, "ha-corruption")
    steps = {s["action"]: s for s in corrupt["steps"]}
    assert "invalid page in block 0" in steps["corrupt-page"]["output"], steps["corrupt-page"]
    assert "pg_amcheck exit 2" in steps["assess-corruption"]["output"]
    assert "pg2 is the primary" in steps["await-failover"]["output"], steps["await-failover"]
    assert "the node clones the current primary" in steps["run-container"]["output"]
    checks = {c["id"]: c for c in corrupt["checks"]}
    assert "pg1 streaming and caught up, pg_amcheck clean" in checks["database-healthy"]["detail"]
    assert "read-only" in checks["old-primary-fenced"]["detail"], checks["old-primary-fenced"]
    assert corrupt["measurement"]["acked"] > 0, corrupt["measurement"]  # the ledger counted
    # disk full: pg1's own filesystem filled, the writes failed, space freed, one primary
    disk = record(project, "ha-disk-full")
    steps = {s["action"]: s for s in disk["steps"]}
    assert "0 bytes left" in steps["fill-disk"]["output"], steps["fill-disk"]
    assert disk["extra"]["disk_full_errors"] > 0, disk["extra"]
    assert disk["measurement"]["failed_samples"] > 0, disk["measurement"]
    assert "bytes freed" in steps["free-disk"]["output"], steps["free-disk"]
    assert " is the primary" in steps["await-failover"]["output"], steps["await-failover"]


def test_ha_twins_fail_for_their_reasons(ha_run: tuple[Path, str]) -> None:
    project, stdout = ha_run
    assert "test_drill[ha-primary-kill-repmgrd-paused] PASSED" in stdout
    twin = record(project, "ha-primary-kill-repmgrd-paused")
    assert twin["status"] == "failed"
    assert twin["category"] == "recovery-step", (twin["category"], twin["breaches"])
    failed = [s for s in twin["steps"] if s["ok"] is False]
    assert [s["action"] for s in failed] == ["await-failover"], twin["steps"]
    assert "found none" in failed[0]["error"], failed[0]["error"]  # pg2 stayed a standby
    assert "test_drill[ha-corruption-no-failover] PASSED" in stdout
    kept = record(project, "ha-corruption-no-failover")
    assert kept["status"] == "failed"
    checks = {c["id"]: c for c in kept["checks"]}
    healthy = checks["database-healthy"]
    assert healthy["ok"] is False, healthy  # the damaged page is still on the primary, pg1
    assert "pg_amcheck exit 2" in healthy["detail"], healthy["detail"]
    assert "page verification failed" in healthy["detail"], healthy["detail"]
