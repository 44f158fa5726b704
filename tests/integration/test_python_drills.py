"""Drills written in Python (drillkit.fixtures): a project outside drillkit's tree whose stack is
testcontainers objects only (examples/testcontainers) is drilled, with RTO, RPO, records and Allure
results, and its sabotaged twin fails with the numbers; and the Python and YAML forms of
db-kill-restart give the same verdict and comparable figures in one run."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from project_pytest import run_project_pytest

from drillkit.stack.reaping import leftovers

ROOT = Path(__file__).resolve().parents[2]


def run_pytest(cwd: Path, results: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_project_pytest(cwd, results, "-v", *args, timeout=400)


def record(results: Path, drill_id: str) -> dict[str, Any]:
    (path,) = (results / "runs").glob(f"*/{drill_id}.json")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def allure_results(alluredir: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for path in alluredir.glob("*-result.json"):
        data = json.loads(path.read_text())
        out[data["name"]] = data
    return out


def test_an_outside_project_drills_its_own_testcontainers_stack(tmp_path: Path) -> None:
    project = tmp_path / "team"
    shutil.copytree(ROOT / "examples" / "testcontainers", project)
    results, alluredir = tmp_path / "reports", tmp_path / "allure"
    proc = run_pytest(project, results, f"--alluredir={alluredir}", "test_own_stack.py")
    out = proc.stdout + proc.stderr[-3000:]
    assert "test_kill_and_restart PASSED" in proc.stdout, out[-6000:]
    assert "test_partition PASSED" in proc.stdout, out[-6000:]
    assert "test_sabotaged_kill_without_restart FAILED" in proc.stdout, out[-6000:]
    assert proc.returncode == 1, out[-6000:]
    # the breach is a failure with the numbers: the runbook stopped, RTO never, the checklist
    assert "own-kill-no-restart: recovery" in proc.stdout
    assert "[RTO never, RPO" in proc.stdout
    assert "recovered-within-rto" in proc.stdout

    for drill_id in ("own-kill-restart", "own-partition"):
        rec = record(results, drill_id)
        m = rec["measurement"]
        assert rec["status"] == "passed", rec["breaches"]
        assert m["rto_s"] is not None and 0 < m["rto_s"] <= rec["objectives"]["rto_s"], m
        assert m["lost"] == 0 and m["acked"] > 0 and m["rpo_s"] == 0, m
        assert {s["kind"] for s in rec["steps"]} == {"fault", "recovery"}
        assert all(c["ok"] for c in rec["checks"]), rec["checks"]
        # the adopted containers were the test's, labelled for the run, and are gone
        assert rec["environment"].get("postgres_version", "").startswith("15")
    sabotaged = record(results, "own-kill-no-restart")
    assert sabotaged["status"] == "failed" and sabotaged["measurement"]["rto_s"] is None

    allure = allure_results(alluredir)
    assert allure["test_kill_and_restart"]["status"] == "passed"
    assert allure["test_partition"]["status"] == "passed"
    assert allure["test_sabotaged_kill_without_restart"]["status"] == "failed"
    labels = {(x["name"], x["value"]) for x in allure["test_kill_and_restart"]["labels"]}
    assert ("story", "own-kill-restart") in labels
    params = {p["name"]: p["value"] for p in allure["test_partition"]["parameters"]}
    assert params["objective RTO (s)"] == "8.0"

    for drill_id in ("own-kill-restart", "own-partition", "own-kill-no-restart"):
        run = record(results, drill_id)["run_id"]
        assert leftovers(run) == [], f"{drill_id}: the adopted containers outlived the drill"


def test_python_and_yaml_db_kill_restart_agree(tmp_path: Path) -> None:
    results = tmp_path / "reports"
    proc = run_pytest(
        ROOT,
        results,
        "drills/test_drills.py::test_drill[db-kill-restart]",
        "drills/python/test_mission_drills.py::test_db_kill_restart",
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    yaml_rec, py_rec = record(results, "db-kill-restart"), record(results, "db-kill-restart-py")
    assert yaml_rec["status"] == py_rec["status"] == "passed"
    ym, pm = yaml_rec["measurement"], py_rec["measurement"]
    assert ym["lost"] == pm["lost"] == 0 and ym["acked"] > 0 and pm["acked"] > 0
    # comparable figures: the same objectives, RTOs within a generous factor (2 busy cores)
    assert yaml_rec["objectives"] == py_rec["objectives"]
    low, high = sorted([ym["rto_s"], pm["rto_s"]])
    assert high <= max(3 * low, low + 3.0), (ym["rto_s"], pm["rto_s"])
    steps = [[(s["kind"], s["action"]) for s in r["steps"]] for r in (yaml_rec, py_rec)]
    assert steps[0] == steps[1]
    assert [c["id"] for c in yaml_rec["checks"]] == [c["id"] for c in py_rec["checks"]]
