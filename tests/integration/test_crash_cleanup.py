"""kill -9 of the harness while a fault is active: the next run's start (reap_orphans) and
`drillkit clean` remove everything the dead run left: containers, networks, volumes, loop mounts."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from drillkit.stack.reaping import leftovers, reap_orphans

ROOT = Path(__file__).resolve().parents[2]  # the checkout (tests run in it)

CHILD = r"""
import sys, time
from pathlib import Path
from drillkit import catalog; catalog.load()
from drillkit.core.events import EventBus
from drillkit.core.runner import Runner, RunConfig
from drillkit.core.scenario import parse_scenario_text
text = '''
id: crash
title: harness killed mid-fault
source: {runbook: "-", section: "harness self-test"}
severity: P3
failure_class: self-test
tags: [selftest]
stack: {data_fs: 128MiB}
objectives: {rto: 60s, rpo: 0s}
fault: {action: partition, with: {a: app, b: primary}}
recovery:
  - {action: hold, with: {duration: 120s}, timeout: 130s}
'''
bus = EventBus()
def show(e):
    print(e.phase, e.data.get("run_id"), e.data.get("step", ""), flush=True)
bus.subscribe(show)
cfg = RunConfig(results_dir=Path(sys.argv[1]), run_root=Path(sys.argv[2]), baseline_backup="never")
Runner(parse_scenario_text(text), cfg, bus).run()
"""


def test_kill_9_mid_fault_then_reap(tmp_path):
    run_root = ROOT / ".run"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), str(run_root)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    run_id = None
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    for line in proc.stdout:
        parts = line.split()
        run_id = run_id or (parts[1] if len(parts) > 1 else None)
        if parts and parts[0] == "step_started" and "hold" in line:
            break  # the partition is in place and the fault is active
        assert time.monotonic() < deadline, "the child drill never reached its fault"
    assert run_id
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert leftovers(run_id), "expected the killed run to leave resources behind"
    mount = run_root / run_id / "primary-data"
    assert mount.is_mount()
    reaped = reap_orphans(run_root)
    assert run_id in reaped
    assert leftovers(run_id) == []
    assert not mount.is_mount()
    loops = subprocess.run(
        ["losetup", "-l", "-n", "-O", "BACK-FILE"], capture_output=True, text=True
    ).stdout
    assert str(run_root / run_id) not in loops
    record = Path(tmp_path) / "crash.json"
    assert (
        record.exists() and '"status": "running"' in record.read_text()
    )  # a valid, unfinished record
