"""examples/shop, a stack drillkit did not ship (a Ruby API with its own health answer and logfmt
logs, PostgreSQL behind an official-image-style entrypoint, Redis, the team's pg_dump backup and
restore scripts), drilled from YAML only in its own folder as the team would: every drill passes
and every sabotaged twin fails for the reason it declares."""

import json
import shutil
from pathlib import Path

from project_pytest import run_project_pytest

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop"
DRILLS = (
    "shop-db-kill",
    "shop-restore-pgdump",
    "shop-partition-api-db",
    "shop-credential-leak",
    "shop-disk-full",
)
TWINS = {
    "shop-db-kill-no-restart": "rto",
    "shop-restore-pgdump-rpo-zero": "rpo",
    "shop-credential-leak-no-terminate": "checklist",
    "shop-disk-full-no-free": "rto",
}


def records(project: Path) -> dict[str, dict]:
    return {
        p.stem: json.loads(p.read_text()) for p in (project / "reports" / "runs").glob("*/*.json")
    }


def test_the_shop_drills_pass_and_its_twins_fail_for_their_reason(tmp_path):
    project = tmp_path / "shop"
    shutil.copytree(SHOP, project, ignore=shutil.ignore_patterns("reports"))
    proc = run_project_pytest(project, project / "reports", "-v", timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    for drill in (*DRILLS, *TWINS):
        assert f"test_drill[{drill}] PASSED" in proc.stdout, out[-4000:]
    recs = records(project)
    assert set(recs) == {*DRILLS, *TWINS}
    for drill in DRILLS:
        assert recs[drill]["status"] == "passed", (drill, recs[drill]["breaches"])
        assert all(c["ok"] for c in recs[drill]["checks"]), recs[drill]["checks"]
    for twin, reason in TWINS.items():
        assert recs[twin]["status"] == "failed", twin
        assert recs[twin]["category"] == reason, (twin, recs[twin]["breaches"])

    # the team's pg_dump restore loses what was acknowledged after the dump, and says so
    restore = recs["shop-restore-pgdump"]
    m = restore["measurement"]
    assert 0 < m["lost"] < m["acked"], m
    assert m["lost_oldest_s"] > 2.5, m  # acknowledged after the dump, before the 3 s hold
    assert restore["extra"]["ledger"].startswith(f"lost {m['lost']} writes of {m['acked']}")
    steps = [(s["kind"], s["action"], s["ok"]) for s in restore["steps"]]
    assert steps == [
        ("prepare", "run-script", True),
        ("prepare", "hold", True),
        ("fault", "destructive-statement", True),
        ("recovery", "run-script", True),
        ("recovery", "wait-app-healthy", True),
    ]
    dump = restore["steps"][0]["output"].split("backup: ")[1].split(" ")[0]
    assert dump.startswith("/backups/shop-") and dump.endswith(".dump")
    assert f"restore: shop restored from {dump}" in restore["steps"][3]["output"]

    # nothing was lost where nothing should be; the API failed fast under the partition
    for drill in (
        "shop-db-kill",
        "shop-partition-api-db",
        "shop-credential-leak",
        "shop-disk-full",
    ):
        assert recs[drill]["measurement"]["lost"] == 0, recs[drill]["measurement"]
    checks = {c["id"]: c for c in recs["shop-partition-api-db"]["checks"]}
    assert checks["app-fails-fast"]["ok"], checks["app-fails-fast"]
    leak = {c["id"]: c for c in recs["shop-credential-leak"]["checks"]}
    assert leak["attacker-session-gone"]["ok"] and leak["old-db-password-rejected"]["ok"]
    twin = {c["id"]: c for c in recs["shop-credential-leak-no-terminate"]["checks"]}
    assert not twin["attacker-session-gone"]["ok"], twin

    # the ballast filled the database's own small filesystem, and PostgreSQL noticed
    disk = recs["shop-disk-full"]
    assert disk["steps"][0]["output"].endswith("/db-data"), disk["steps"][0]
    assert disk["extra"]["disk_full_errors"] > 0, disk["extra"]

    # the leaked and rotated passwords never reach a record
    text = "\n".join(p.read_text() for p in (project / "reports").rglob("*.json"))
    for secret in ("shop-app-dev-password", "shop-admin-dev-password"):
        assert secret not in text
