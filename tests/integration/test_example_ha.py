"""examples/ha, drilled from YAML only as its team would (`pytest` in the example's folder): a
repmgr cluster whose failover is automatic (repmgrd), HAProxy following the primary, and a Perl
app reading its database password from a file. The drills pass; the sabotaged twin (repmgrd
paused, so no failover happens) fails, at the step that waits for the failover."""

import json
import shutil
from pathlib import Path

from project_pytest import run_project_pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ha"


def example(tmp_path: Path) -> Path:
    project = tmp_path / "ha"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("reports", "__pycache__"))
    return project


def record(project: Path, scenario_id: str) -> dict:
    (path,) = (project / "reports" / "runs").glob(f"*/{scenario_id}.json")
    return json.loads(path.read_text())


def test_ha_drills_pass_with_repmgrd_failing_over(tmp_path):
    project = example(tmp_path)
    proc = run_project_pytest(project, project / "reports", "-v", timeout=600)
    out = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, out
    for sid in ("ha-primary-kill", "ha-partition-app-proxy", "ha-credential-leak"):
        assert f"test_drill[{sid}] PASSED" in proc.stdout, out
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


def test_ha_twin_with_repmgrd_paused_fails_for_its_reason(tmp_path):
    project = example(tmp_path)
    proc = run_project_pytest(
        project, project / "reports", "-v", "-o", "drill_scenarios=scenarios/sabotage", timeout=300
    )
    # the twin's expected failure (expect: recovery-step) is honoured: the run passes
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "test_drill[ha-primary-kill-repmgrd-paused] PASSED" in proc.stdout
    twin = record(project, "ha-primary-kill-repmgrd-paused")
    assert twin["status"] == "failed"
    assert twin["category"] == "recovery-step", (twin["category"], twin["breaches"])
    failed = [s for s in twin["steps"] if s["ok"] is False]
    assert [s["action"] for s in failed] == ["await-failover"], twin["steps"]
    assert "found none" in failed[0]["error"], failed[0]["error"]  # pg2 stayed a standby
