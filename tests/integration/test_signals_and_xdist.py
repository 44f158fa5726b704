"""SIGTERM in the middle of a fault tears everything down and leaves a record marked
interrupted; two drills run side by side under pytest-xdist (-n 2) without colliding."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from drillkit.core.scenario import DEFAULT_CHECKLIST
from drillkit.stack.reaping import leftovers

ROOT = Path(__file__).resolve().parents[2]

LONG = """
id: long-fault
title: a fault held long enough to be interrupted
source: {runbook: "-", section: "harness self-test"}
severity: P3
failure_class: self-test
tags: [selftest]
objectives: {rto: 60s, rpo: 0s}
fault: {action: partition, with: {a: app, b: primary}}
recovery:
  - {action: hold, with: {duration: 120s}, timeout: 130s}
"""


def run_pytest(tmp_path, *args, **kwargs):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            *args,
            f"--drill-results={tmp_path / 'reports'}",
            "--rootdir",
            str(ROOT),
            "-c",
            str(ROOT / "pyproject.toml"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def test_sigterm_mid_fault_tears_down_and_records_interrupted(tmp_path):
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "long-fault.yaml").write_text(LONG)
    proc = run_pytest(
        tmp_path, str(ROOT / "drills" / "test_drills.py"), "-v", f"--drill-scenarios={scenarios}"
    )
    run_id = None
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    for (
        line
    ) in proc.stdout:  # live progress lines: "[long-fault +  3.21 s] step_started recovery 'hold'"
        if "step_started recovery" in line:
            break
        assert time.monotonic() < deadline, "the drill never reached its recovery step"
    records = list((tmp_path / "reports" / "runs").glob("*/long-fault.json"))
    assert records
    run_id = json.loads(records[0].read_text())["run_id"]
    assert leftovers(run_id), "the fault should be active with the stack up"
    os.kill(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=90)
    assert leftovers(run_id) == [], "SIGTERM left resources behind"
    record = json.loads(records[0].read_text())
    assert record["status"] == "interrupted"
    assert record["phase"] == "recovery"


def test_two_drills_in_parallel_under_xdist(tmp_path):
    # Isolation, not speed: two drills on two cores slow each other down, so the copies run here
    # leave out the performance item (which compares against an idle baseline); all else is kept.
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    for sid in ("db-kill-restart", "credential-leak"):
        data = yaml.safe_load((ROOT / "scenarios" / f"{sid}.yaml").read_text())
        data["checklist"] = [
            c for c in data.get("checklist", list(DEFAULT_CHECKLIST)) if c != "performance-baseline"
        ]
        (scenarios / f"{sid}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    proc = run_pytest(
        tmp_path,
        str(ROOT / "drills" / "test_drills.py"),
        "-n",
        "2",
        f"--drill-scenarios={scenarios}",
    )
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert "2 passed" in out
    records = list((tmp_path / "reports" / "runs").glob("*/*.json"))
    run_ids = {json.loads(r.read_text())["run_id"] for r in records}
    assert len(records) == 2 and len(run_ids) == 2
    for run_id in run_ids:
        assert leftovers(run_id) == []
