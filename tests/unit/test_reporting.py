"""Unit tests of the reporters (drillkit.reporting): charts, Allure, evidence pack, history.

No containers: every DrillResult here is synthetic (`make_result`), shaped like a real drill.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drillkit.measure import AckedWrite, LedgerOutcome, Objectives, Sample, judge, measure
from drillkit.results import CheckResult, DrillResult, StepRecord

T0 = 5000.0
"""The drill clock (monotonic seconds) at the first probe sample's start."""
WALL0 = datetime(2026, 11, 20, 14, 0, 0, tzinfo=UTC).timestamp()
FAULT_AT, BACK_AT = 3.0, 5.0
CHECKLIST = [
    ("responding", "All systems responding"),
    ("key-functionality", "Key functionality working"),
    ("performance", "Performance within normal range of the baseline"),
    ("no-error-spike", "No error spike in the logs after recovery"),
    ("database", "Database operating normally (primary writable, replica streaming, amcheck)"),
    ("authentication", "User authentication working"),
    ("journeys", "Critical user journeys working"),
    ("detected", "Detected within the detection objective"),
    ("rto", "Recovered within RTO"),
]


def make_result(
    *,
    scenario_id: str = "db-kill-restart",
    outage: bool = True,
    lost: int = 3,
    rto_objective: float = 30.0,
    rpo_objective: float = 5.0,
    failed_checks: tuple[str, ...] = (),
    secret: str | None = None,
) -> DrillResult:
    """A realistic finished drill: 10 s of probes every 0.1 s (availability and journey), an outage
    from 3 s to 5 s, 500 acknowledged writes of which `lost` vanished, 1 fault step, 2 recovery
    steps and the 9-item checklist."""
    samples: list[Sample] = []
    for i in range(1, 101):
        t = i * 0.1
        down = outage and FAULT_AT < t <= BACK_AT
        samples.append(Sample("availability", T0 + t, not down, 0.004 + 0.001 * (i % 3),
                              "connection refused" if down else None))
        samples.append(Sample("journey", T0 + t + 0.03, not down,
                              (0.5 if down else 0.022 + 0.002 * (i % 5)),
                              "timeout after 0.5 s" if down else None))
    acked = []
    up_times = [i * 0.016 for i in range(1, 626)]
    up_times = [t for t in up_times if not (outage and FAULT_AT <= t <= BACK_AT)][:500]
    for n, t in enumerate(up_times):
        acked.append(AckedWrite(f"order-{n:05d}", hashlib.sha256(str(n).encode()).hexdigest(),
                                T0 + t))
    before_fault = [w for w in acked if w.t_ack < T0 + FAULT_AT]
    lost_writes = before_fault[-lost:] if lost else []
    t_fault = T0 + FAULT_AT
    m = measure(samples, LedgerOutcome(acked=len(acked), lost=tuple(lost_writes)), t_fault, k=5)
    objectives = Objectives(rto_s=rto_objective, rpo_s=rpo_objective, detection_s=1.0)
    checks = [
        CheckResult(cid, title, cid not in failed_checks,
                    "failed: 3 errors in the app log" if cid in failed_checks else "ok")
        for cid, title in CHECKLIST
    ]
    verdict = judge(m, objectives, [f"{c.id} ({c.detail})" for c in checks if not c.ok])
    steps = [
        StepRecord("Kill the postmaster (SIGKILL)", "kill_postmaster", "fault",
                   t_fault, t_fault + 0.05, True, None, "killed pid 1"),
        StepRecord("Restart PostgreSQL", "restart_service", "recovery",
                   T0 + 3.4, T0 + 4.6, True, None, "primary accepting connections"),
        StepRecord("Verify application health", "http_check", "recovery",
                   T0 + 4.6, T0 + 5.1, True, None, "200 OK"),
    ]
    markers = {"steady": T0 + 0.1, "fault": t_fault}
    if m.t_detected is not None and outage:
        markers["detected"] = m.t_detected
    if m.t_recovered is not None:
        markers["recovered"] = m.t_recovered
    environment = {
        "docker_version": "20.10.24",
        "postgres_version": "15.14",
        "engine": "docker",
        "image_primary": "sha256:0123abcd",
        "git_commit": "abc1234",
    }
    logs = {
        "app": "2026-11-20 14:00:03 ERROR connection refused\n2026-11-20 14:00:05 INFO reconnected\n",
        "primary": "LOG:  database system is ready to accept connections\n",
    }
    evidence = {"fault output": "kill -9 1 -> ok", "audit log copy": "order-00001 created\n"}
    if secret:
        environment["app_db_password"] = secret
        logs["app"] += f"connecting with password={secret}\n"
        evidence["leaked"] = f"token {secret}"
    return DrillResult(
        run_id="run-20261120-1400",
        scenario_id=scenario_id,
        title="Database outage: primary killed, restarted",
        severity="P0",
        failure_class="database-outage",
        tags=["nightly", "postgres", "restart"],
        source={"runbook": "000", "section": "Procedure 1: Complete System Outage",
                "file": "seeds/000_920832fa8850e687.txt"},
        scenario_text=f"id: {scenario_id}\nfault:\n  action: kill_postmaster\n",
        objectives=objectives,
        t0_monotonic=T0,
        t0_wall=WALL0,
        status="passed" if verdict.passed else "failed",
        phase="finished",
        breaches=verdict.breaches,
        category=verdict.category,
        measurement=m,
        steps=steps,
        checks=checks,
        samples=samples,
        acked=acked,
        lost=list(lost_writes),
        markers=markers,
        environment=environment,
        logs=logs,
        pg_errors=["FATAL:  the database system is starting up"] if outage else [],
        evidence=evidence,
        extra={"max_replication_lag_s": 0.12},
        wall_end=WALL0 + 12.0,
    )


def make_error_result() -> DrillResult:
    """A drill whose environment broke before anything was measured."""
    return DrillResult(
        run_id="run-20261120-1400",
        scenario_id="wal-volume-full",
        title="WAL volume full",
        severity="P1",
        failure_class="disk-full",
        tags=["quarterly"],
        source={"runbook": "002", "section": "Database failure", "file": "seeds/002_x.txt"},
        scenario_text="id: wal-volume-full\n",
        objectives=Objectives(rto_s=60.0, rpo_s=0.0),
        t0_monotonic=T0,
        t0_wall=WALL0,
        status="error",
        phase="provisioned",
        error="EnvironmentBroken: loop device unavailable\nTraceback ...",
        category="environment",
        wall_end=WALL0 + 3.0,
    )
