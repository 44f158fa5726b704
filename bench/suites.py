"""The drill sets of issue 20, timed as a user runs them: pytest on `--jobs` xdist workers sharing
the engine, as `make nightly` and `make drill` do (without the report and pack of `finish`).

Issue 20's targets name the sets of the day it was filed (main at 5a41e82): the nightly set of 12
drills (at most 90 s) and the 22-drill `make drill` (at most 150 s). The suite has grown since, so
those sets are timed as they were, beside today's `-m nightly` and `-m quarterly`. Each run's
floor comes from its own records: what the fault and the runbook take (the fault step, the
recovery steps, the wait for recovery after them), summed and shared over the workers, i.e. the
set's wall if a drill cost nothing else.

  python -m bench.suites [--repeat 3] [--sets nightly-12,quarterly-22] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.run import machine
from drillkit.paths import ROOT

OUT = ROOT / "reports" / "bench"

NIGHTLY_12 = (
    "complete-outage",
    "corruption-logical",
    "corruption-page",
    "credential-leak",
    "db-kill-failover",
    "db-kill-restart",
    "db-latency",
    "db-lock-incident",
    "disk-full",
    "partition-app-db",
    "payment-provider-failure",
    "website-defacement",
)
"""The scenarios tagged nightly at 5a41e82, when issue 20 was filed."""

QUARTERLY_22 = (
    *NIGHTLY_12,
    "breach-restore",
    "connection-exhaustion",
    "db-down-via-proxy",
    "db-flaky",
    "db-kill-failover-sync",
    "disk-full-wal",
    "force-logout",
    "partition-failover",
    "partition-replica",
    "replica-lag-failover",
)
"""The 22 scenarios (twins aside) of `make drill` at 5a41e82."""

SETS: dict[str, tuple[list[str], float | None]] = {
    "nightly-12": ([f"drills/test_drills.py::test_drill[{s}]" for s in NIGHTLY_12], 90.0),
    "quarterly-22": ([f"drills/test_drills.py::test_drill[{s}]" for s in QUARTERLY_22], 150.0),
    "nightly": (["drills", "-m", "nightly"], None),
    "quarterly": (["drills", "-m", "quarterly"], None),
}
"""name -> (pytest's selection, issue 20's target in seconds)"""


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def fault_dependent_s(record: dict[str, Any]) -> float:
    """The fault step, the runbook's steps and the wait for recovery after the last of them."""
    steps = record.get("steps") or []
    spent = sum(s["t_end"] - s["t_start"] for s in steps if s.get("kind") in ("fault", "recovery"))
    recovered = (record.get("markers") or {}).get("recovered")
    if recovered is not None and steps:
        spent += max(0.0, recovered - max(s["t_end"] for s in steps))
    return spent


def run_set(name: str, jobs: int) -> dict[str, Any]:
    selection, _ = SETS[name]
    session = time.strftime("%Y%m%d-%H%M%S-bench-") + secrets.token_hex(2)
    xdist = ["-n", str(jobs), "--dist", "load"] if jobs > 1 else []
    with tempfile.TemporaryDirectory(prefix="drillkit-bench-allure-") as allure:
        argv = [sys.executable, "-m", "pytest", *selection, "-q", "-p", "no:randomly", *xdist]
        argv += ["--alluredir", allure]
        t = time.monotonic()
        proc = subprocess.run(
            argv, cwd=ROOT, env={**os.environ, "DRILLKIT_SESSION": session}, check=False
        )
        wall = time.monotonic() - t
    records = [json.loads(p.read_text()) for p in (ROOT / "reports/runs" / session).glob("*.json")]
    walls = [r["wall_end"] - r["t0_wall"] for r in records if r.get("wall_end")]
    dependent = [fault_dependent_s(r) for r in records]
    return {
        "wall_s": round(wall, 1),
        "exit": proc.returncode,
        "drills": len(records),
        "passed": sum(r.get("status") == "passed" for r in records),
        "floor_s": round(sum(dependent) / jobs, 1),
        "drill_wall_median_s": round(statistics.median(walls), 2) if walls else None,
        "fixed_median_s": round(
            statistics.median(w - d for w, d in zip(walls, dependent, strict=False)), 2
        )
        if walls
        else None,
        "session": session,
    }


def table(results: dict[str, Any]) -> str:
    lines = [
        f"Measured {results['date']} on {results['machine']}, pytest on {results['jobs']} workers"
        f" (medians of {results['repeat']})",
        "",
        "| set | wall | floor | drill wall / fixed cost (medians) | passed | target |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in results["sets"].items():
        runs = entry["runs"]
        target = SETS[name][1]
        lines.append(
            f"| {name} | {entry['wall_median_s']} s ({', '.join(str(r['wall_s']) for r in runs)})"
            f" | {entry['floor_median_s']} s | {entry['drill_wall_median_s']} s / "
            f"{entry['fixed_median_s']} s | "
            + ", ".join(f"{r['passed']}/{r['drills']}" for r in runs)
            + (f" | ≤ {target:g} s |" if target else " | |")
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sets", default="nightly-12,quarterly-22")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    names = args.sets.split(",")
    unknown = [n for n in names if n not in SETS]
    if unknown:
        ap.error(f"unknown set(s) {', '.join(unknown)}; known: {', '.join(SETS)}")
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "jobs": args.jobs,
        "repeat": args.repeat,
        "sets": {},
    }
    for name in names:
        runs = []
        for i in range(args.repeat):
            log(f"{name} run {i + 1}/{args.repeat} ...")
            runs.append(run_set(name, args.jobs))
            log(f"{name}: {runs[-1]}")

        def med(key: str, rs: list[dict[str, Any]] = runs) -> float:
            return round(statistics.median(r[key] for r in rs if r[key] is not None), 2)

        results["sets"][name] = {
            "runs": runs,
            "wall_median_s": med("wall_s"),
            "floor_median_s": med("floor_s"),
            "drill_wall_median_s": med("drill_wall_median_s"),
            "fixed_median_s": med("fixed_median_s"),
            "target_s": SETS[name][1],
        }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "suites.json").write_text(json.dumps(results, indent=1))
    (OUT / "suites.md").write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
