"""A team's own catalogue module, loaded through the `drillkit_catalog` ini key of the team's
project (tests/team_project: pytest.ini, team_catalog.py, scenarios/, drills/), drives a real drill
without any drillkit file changing; a missing module is a usage error, not a traceback."""

import json
import shutil
import subprocess
from pathlib import Path

from project_pytest import run_project_pytest

ROOT = Path(__file__).resolve().parents[2]
TEAM = ROOT / "tests" / "team_project"


def run_team_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest in the team's project (its own rootdir and pytest.ini)."""
    return run_project_pytest(project, project / "reports", *args)


def team_project(tmp_path: Path) -> Path:
    project = tmp_path / "team"
    shutil.copytree(TEAM, project)
    return project


def test_a_team_catalogue_module_runs_a_drill(tmp_path):
    project = team_project(tmp_path)
    proc = run_team_pytest(project, "-v", "-o", "drillkit_catalog=team_catalog.py")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "test_drill[team-app-stop] PASSED" in proc.stdout
    (path,) = (project / "reports" / "runs").glob("*/team-app-stop.json")
    record = json.loads(path.read_text())
    assert record["status"] == "passed", record["breaches"]
    steps = [(s["kind"], s["action"], s["ok"]) for s in record["steps"]]
    assert steps == [("fault", "team-stop-app", True), ("recovery", "team-start-app", True)]
    checks = {c["id"]: c for c in record["checks"]}
    assert checks["team-app-answers"]["ok"], checks["team-app-answers"]
    assert checks["team-app-answers"]["detail"] == "/api/health answered 200"


def test_a_missing_team_module_is_a_usage_error(tmp_path):
    project = team_project(tmp_path)
    proc = run_team_pytest(project, "-o", "drillkit_catalog=missing_catalog.py", "--co")
    assert proc.returncode == 4, proc.stdout + proc.stderr  # pytest's USAGE_ERROR
    assert "catalogue module 'missing_catalog.py': no such file" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_dotted_team_module_that_does_not_import_is_a_usage_error(tmp_path):
    project = team_project(tmp_path)
    proc = run_team_pytest(project, "--drill-catalog", "team.not_there", "--co")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "catalogue module 'team.not_there'" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
