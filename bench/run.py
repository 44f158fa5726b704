"""drillkit benchmarks: medians over repeated runs, compared within the same run.

Writes reports/bench/results.json and a Markdown table reports/bench/results.md. Nothing here is
a test: no thresholds are asserted; targets are printed beside the figures.

  python -m bench.run [--repeat 5] [--only ready,drills,floor,clock,scaling,rss]
"""

from __future__ import annotations

import argparse
import json
import resource
import secrets
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from drillkit import catalog
from drillkit.core.events import EventBus, Phase
from drillkit.core.phases import join_teardowns
from drillkit.core.runner import RunConfig, Runner
from drillkit.core.scenario import load_scenario, parse_scenario_text
from drillkit.paths import ROOT, SCENARIOS_DIR
from drillkit.stack.spec import load_stack
from drillkit.stack.stack import Stack, StackOptions

OUT = ROOT / "reports" / "bench"
CORE = ("db-kill-restart", "corruption-page", "partition-app-db", "credential-leak", "disk-full")


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def median(xs: list[float]) -> float:
    return round(statistics.median(xs), 3) if xs else float("nan")


def stack_ready(n_parallel: int = 1, in_memory: bool = False) -> list[float]:
    """Seconds from nothing to primary + replica + app healthy, for n stacks started together
    (data directories on volumes, or on the run's tmpfs when `in_memory`)."""
    times: list[float] = []
    opts = StackOptions(data_in_memory=in_memory)
    stacks = [
        Stack(load_stack(), "b" + secrets.token_hex(3), ROOT / ".run" / f"bench-{i}", opts)
        for i in range(n_parallel)
    ]
    errors: list[BaseException] = []

    def up(s: Stack) -> None:
        t = time.monotonic()
        try:
            s.up()
            times.append(time.monotonic() - t)
        except BaseException as exc:  # reported below, never swallowed
            errors.append(exc)

    threads = [threading.Thread(target=up, args=(s,)) for s in stacks]
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        for s in stacks:
            s.down()
    if errors:
        raise errors[0]
    return times


def bench_ready(repeat: int) -> dict[str, Any]:
    log("stack ready: cold (page cache dropped) ...")
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        cold_kind = "page cache dropped"
    except OSError:
        cold_kind = "page cache NOT dropped (not root)"
    cold = stack_ready()[0]
    log(f"stack ready: warm x{repeat}, data on volumes and on tmpfs alternating ...")
    warm: list[float] = []
    memory: list[float] = []
    for _ in range(repeat):  # each from a clean page cache: the last stack's writeback done
        subprocess.run(["sync"], check=False)
        warm.append(stack_ready()[0])
        subprocess.run(["sync"], check=False)
        memory.append(stack_ready(in_memory=True)[0])
    return {
        "cold_s": round(cold, 3),
        "cold_kind": cold_kind,
        "warm_median_s": median(warm),
        "warm_runs_s": [round(x, 3) for x in warm],
        "memory_median_s": median(memory),
        "memory_runs_s": [round(x, 3) for x in memory],
        "target_warm_s": 1.2,
    }


def run_drill(scenario: Any, config: RunConfig) -> tuple[Any, dict[str, float]]:
    bus = EventBus()
    result = Runner(scenario, config, bus).run()
    returned = time.monotonic()  # the drill's critical path: a background teardown runs on
    ev = bus.history
    t = {e.phase: e.t for e in ev if e.phase not in (Phase.STEP_STARTED, Phase.STEP_ENDED)}
    start = result.t0_monotonic
    phases: dict[str, float] = {}
    order = [
        ("provision", Phase.PROVISIONED),
        ("seed", Phase.SEEDED),
        ("baseline", Phase.BASELINE),
        ("steady", Phase.STEADY),
        ("inject", Phase.INJECTED),
    ]
    prev = start
    for name, ph in order:
        if ph in t:
            phases[name] = round(t[ph] - prev, 3)
            prev = t[ph]
    steps = [e for e in ev if e.phase == Phase.STEP_ENDED and e.data.get("kind") == "recovery"]
    phases["recovery_steps"] = round(sum(e.data["duration_s"] for e in steps), 3)
    if Phase.VERIFIED in t:
        phases["recovered+observe+verify"] = round(
            t[Phase.VERIFIED] - prev - phases["recovery_steps"], 3
        )
        prev = t[Phase.VERIFIED]
    phases["teardown"] = round(returned - prev, 3)  # on the critical path (not in background)
    if Phase.RECOVERED in t and Phase.VERIFIED in t:
        phases["recovered→verified"] = round(t[Phase.VERIFIED] - t[Phase.RECOVERED], 3)
    phases["total"] = round(returned - start, 3)
    # what depends on the fault: the fault step, the runbook's steps, the wait for recovery
    ended = [e for e in ev if e.phase == Phase.STEP_ENDED]
    fault = sum(e.data["duration_s"] for e in ended if e.data.get("kind") == "fault")
    rec_wait = t[Phase.RECOVERED] - ended[-1].t if Phase.RECOVERED in t and ended else 0.0
    phases["fault_dependent"] = round(fault + phases["recovery_steps"] + max(0.0, rec_wait), 3)
    return result, phases


def bench_drills(config: RunConfig, repeat: int, drills: tuple[str, ...] = CORE) -> dict[str, Any]:
    out: dict[str, Any] = {"ids": list(drills)}
    for sid in drills:
        sc = load_scenario(SCENARIOS_DIR / f"{sid}.yaml")
        runs = []
        for i in range(repeat):
            log(f"drill {sid} run {i + 1}/{repeat} ...")
            result, phases = run_drill(sc, config)
            m = result.measurement
            runs.append(
                {
                    "status": result.status,
                    "phases": phases,
                    "rto_s": m.rto_s if m else None,
                    "mttd_s": m.mttd_s if m else None,
                }
            )
        out[sid] = {
            "runs": runs,
            "wall_median_s": median([r["phases"]["total"] for r in runs]),
            "rto_median_s": median([r["rto_s"] for r in runs if r["rto_s"] is not None]),
            "phases_median_s": {
                k: median([r["phases"].get(k, 0.0) for r in runs]) for k in runs[0]["phases"]
            },
        }
    out["core_total_median_s"] = round(sum(out[s]["wall_median_s"] for s in drills), 3)
    out["target_core_total_s"] = 90.0
    return out


WHOLE_WINDOWS = {"steady_k": 0, "evidence_k": 0, "background_teardown": False}
"""The run as before issue 20: the whole steady and observation windows, teardown in the way."""


def bench_compare(config: RunConfig, repeat: int, drills: tuple[str, ...]) -> dict[str, Any]:
    """Each drill with the whole windows and a foreground teardown ('whole', as before issue 20),
    then with the config's early ends and background teardown ('early'), alternating so both see
    the same machine: medians of the critical-path wall (start to the runner returning), its
    fixed cost (wall minus the fault step, the runbook's steps and the wait for recovery after
    them), the verdicts, and the ratio of the walls."""
    import dataclasses

    old = dataclasses.replace(config, **WHOLE_WINDOWS)
    out: dict[str, Any] = {"ids": list(drills)}
    for sid in drills:
        sc = load_scenario(SCENARIOS_DIR / f"{sid}.yaml")
        runs: dict[str, list[dict[str, Any]]] = {"whole": [], "early": []}
        for i in range(repeat):
            for label, cfg in (("whole", old), ("early", config)):
                log(f"compare {sid} {label} run {i + 1}/{repeat} ...")
                result, phases = run_drill(sc, cfg)
                m = result.measurement
                runs[label].append(
                    {
                        "status": result.status,
                        "category": result.category,
                        "phases": phases,
                        "fixed_s": round(phases["total"] - phases.get("fault_dependent", 0.0), 3),
                        "rto_s": m.rto_s if m else None,
                    }
                )
        entry: dict[str, Any] = {"runs": runs}
        for label, rs in runs.items():
            entry[label] = {
                "wall_median_s": median([r["phases"]["total"] for r in rs]),
                "fixed_median_s": median([r["fixed_s"] for r in rs]),
                "rto_median_s": median([r["rto_s"] for r in rs if r["rto_s"] is not None]),
                "verdicts": sorted({f"{r['status']}/{r['category']}" for r in rs}),
                "phases_median_s": {
                    k: median([r["phases"].get(k, 0.0) for r in rs]) for k in rs[0]["phases"]
                },
            }
        entry["wall_ratio"] = round(
            entry["early"]["wall_median_s"] / entry["whole"]["wall_median_s"], 3
        )
        entry["fixed_ratio"] = round(
            entry["early"]["fixed_median_s"] / entry["whole"]["fixed_median_s"], 3
        )
        out[sid] = entry
    return out


def bench_floor(config: RunConfig, repeat: int) -> dict[str, Any]:
    """db-kill-restart's RTO against PostgreSQL's own crash recovery (kill -> accepting again),
    measured on the same machine in the same run."""
    raw: list[float] = []
    s = Stack(load_stack(), "b" + secrets.token_hex(3), ROOT / ".run" / "bench-floor")
    try:
        s.up()
        for _ in range(repeat):
            c = s.container("primary")
            t = time.monotonic()
            s.exec("primary", "kill -KILL $(head -1 /pgdata/postmaster.pid)", timeout_s=10)
            c.wait(timeout=10)
            c.start()
            s.wait_pg("primary", 60, writable=True)
            raw.append(time.monotonic() - t)
    finally:
        s.down()
    sc = load_scenario(SCENARIOS_DIR / "db-kill-restart.yaml")
    rtos = []
    for i in range(repeat):
        log(f"floor: db-kill-restart {i + 1}/{repeat}")
        result, _ = run_drill(sc, config)
        if result.measurement and result.measurement.rto_s is not None:
            rtos.append(result.measurement.rto_s)
    return {
        "raw_crash_recovery_median_s": median(raw),
        "drill_rto_median_s": median(rtos),
        "overhead_s": round(median(rtos) - median(raw), 3),
        "target_overhead_s": 0.3,
        "raw_runs_s": [round(x, 3) for x in raw],
        "rto_runs_s": [round(x, 3) for x in rtos],
    }


CLOCK = """
id: clock-{how}-{n}
title: app {how} for exactly {n} s
source: {{runbook: "-", section: "benchmark"}}
severity: P3
failure_class: self-test
tags: [bench]
objectives: {{rto: 60s, rpo: 0s}}
fault: {fault}
recovery:
  - {{action: wait-app-healthy, timeout: 30s}}
checklist: [all-systems-responding]
observe: 1s
"""


def bench_clock(config: RunConfig, repeat: int) -> dict[str, Any]:
    """Measured RTO vs outages of known length. 'refused': the app's port refuses connections for
    exactly N s (a sharp end: the harness's own clock error). 'frozen': the app is paused for N s
    (includes the app's own time to drain its backlog after the thaw)."""
    out: dict[str, Any] = {}
    kinds = {
        "refused": "{{action: block-port, with: {{service: app, port: 8080, duration: {n}s}}}}",
        "frozen": "{{action: pause-service, with: {{service: app, duration: {n}s}}}}",
    }
    for kind, fault in kinds.items():
        for n in (2, 5, 10):
            errs = []
            for _ in range(max(1, repeat // 2)):
                text = CLOCK.format(n=n, how=kind, fault=fault.format(n=n))
                result, _ = run_drill(parse_scenario_text(text), config)
                errs.append(result.measurement.rto_s - result.extra["true_outage_s"])
            out[f"{kind} {n}s"] = {
                "error_median_ms": round(median(errs) * 1000, 1),
                "errors_ms": [round(e * 1000, 1) for e in errs],
            }
    out["target_error_ms"] = 100
    out["probe_interval_ms"] = config.probe_interval_s * 1000
    return out


def bench_restore_scale(config: RunConfig) -> dict[str, Any]:
    """A point-in-time-restore drill on the 'large' seed (~1 GB) against the raw cost of the same
    work done by hand in the same run: stop, `pgbackrest restore` to the same target, start,
    writable."""
    import dataclasses

    from drillkit.stack.seed import seed

    big = dataclasses.replace(config, seed_scale="large")
    sc = dataclasses.replace(
        load_scenario(SCENARIOS_DIR / "corruption-logical.yaml"), max_duration_s=1200.0
    )
    log("restore at scale: PITR drill on the large seed ...")
    result, _ = run_drill(sc, big)
    step = next(s for s in result.steps if s.action == "restore-backup")
    drill_restore = step.t_end - step.t_start
    log("restore at scale: raw restore of the same size ...")
    s = Stack(load_stack(), "b" + secrets.token_hex(3), ROOT / ".run" / "bench-restore")
    try:
        s.up()
        with s.connect("primary") as conn:
            seed(conn, s.secrets["user_password"], "large")
        size = s.sql("primary", "SELECT pg_database_size('app')")[0][0]
        s.pgbackrest("backup", "--type=full", timeout_s=900)
        # the drill's own destruction, so both restores replay the same WAL: recovery to an
        # exclusive xid target reads the destructive transaction's records up to its commit
        xid = s.sql(
            "primary",
            "WITH d AS (DELETE FROM orders RETURNING 1) SELECT txid_current() FROM d LIMIT 1",
        )[0][0]
        s.sql("primary", "SELECT pg_switch_wal()")
        s.pgbackrest("check")
        t = time.monotonic()
        c = s.container("primary")
        c.stop(timeout=30)
        s.run_tool(
            "primary",
            [
                "pgbackrest",
                "--stanza=main",
                "--delta",
                "restore",
                "--type=xid",
                f"--target={xid}",
                "--target-exclusive",
                "--target-action=promote",
            ],
        )
        c.start()
        s.wait_pg("primary", 300, writable=True)
        raw = time.monotonic() - t
    finally:
        s.down()
    return {
        "database_bytes": size,
        "drill_restore_step_s": round(drill_restore, 3),
        "raw_restore_s": round(raw, 3),
        "ratio": round(drill_restore / raw, 3),
        "drill_status": result.status,
        "target_ratio": 1.2,
    }


def bench_scaling() -> dict[str, Any]:
    out = {}
    for n in (1, 2, 4):
        log(f"scaling: {n} stacks side by side ...")
        times = stack_ready(n)
        out[str(n)] = {"ready_median_s": median(times), "ready_max_s": round(max(times), 3)}
    return out


def main() -> None:
    catalog.load()
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", default="ready,drills,floor,clock,scaling,restore,rss")
    ap.add_argument("--drills", default=",".join(CORE), help="the drills of `drills`")
    ap.add_argument(
        "--foreground-teardown", action="store_true", help="as --drill-foreground-teardown"
    )
    ap.add_argument("--steady-k", type=int, default=5, help="as --drill-steady-k (0: whole window)")
    ap.add_argument(
        "--evidence-k", type=int, default=10, help="as --drill-evidence-k (0: whole window)"
    )
    ap.add_argument(
        "--compare",
        action="store_true",
        help="drills: each run twice, alternating, with the whole windows and a foreground "
        "teardown (as before issue 20) and with the defaults: the ratio beside the figures",
    )
    args = ap.parse_args()
    only = set(args.only.split(","))
    config = RunConfig(
        results_dir=OUT / "runs",
        background_teardown=not args.foreground_teardown,
        steady_k=args.steady_k,
        evidence_k=args.evidence_k,
    )
    results: dict[str, Any] = {
        "machine": machine(),
        "repeat": args.repeat,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if "ready" in only:
        results["stack_ready"] = bench_ready(args.repeat)
    if "drills" in only:
        ids = tuple(args.drills.split(","))
        n = max(1, args.repeat // 2 + 1)
        if args.compare:
            results["drills_compare"] = bench_compare(config, n, ids)
        else:
            results["drills"] = bench_drills(config, n, ids)
    if "floor" in only:
        results["floor"] = bench_floor(config, args.repeat)
    if "clock" in only:
        results["clock"] = bench_clock(config, args.repeat)
    if "scaling" in only:
        results["scaling"] = bench_scaling()
    if "restore" in only:
        results["restore_scale"] = bench_restore_scale(config)
    if "rss" in only:
        results["harness_peak_rss_mb"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        )
        results["target_rss_mb"] = 300
    join_teardowns()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=1))
    (OUT / "results.md").write_text(table(results))
    print(table(results))


def machine() -> str:
    import os

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {mem:.0f} GiB, {os.uname().release}"


def table(r: dict[str, Any]) -> str:
    lines = [
        f"Measured {r['date']} on {r['machine']} (medians of {r['repeat']} unless noted)",
        "",
        "| measure | result | target |",
        "|---|---|---|",
    ]
    if "stack_ready" in r:
        s = r["stack_ready"]
        lines.append(
            "| stack ready, warm, data on volumes (primary + replica + app healthy) "
            f"| {s['warm_median_s']} s | ≤ {s['target_warm_s']} s |"
        )
        if "memory_median_s" in s:
            lines.append(
                f"| stack ready, warm, data on tmpfs (drills' default as root) "
                f"| {s['memory_median_s']} s | ≤ {s['target_warm_s']} s |"
            )
        lines.append(f"| stack ready, cold ({s['cold_kind']}) | {s['cold_s']} s | |")
    if "drills" in r:
        d = r["drills"]
        for sid in d.get("ids", CORE):
            ph = d[sid]["phases_median_s"]
            detail = ", ".join(f"{k} {v}" for k, v in ph.items() if k != "total")
            lines.append(f"| drill `{sid}` wall ({detail}) | {d[sid]['wall_median_s']} s | |")
        n = len(d.get("ids", CORE))
        lines.append(f"| {n} drills above, total | {d['core_total_median_s']} s | |")
    if "drills_compare" in r:
        d = r["drills_compare"]
        for sid in d["ids"]:
            e = d[sid]
            w, n = e["whole"], e["early"]
            lines.append(
                f"| drill `{sid}` fixed cost: whole windows + foreground teardown → early ends + "
                f"background teardown (verdicts {', '.join(w['verdicts'])} → "
                f"{', '.join(n['verdicts'])}) | {w['fixed_median_s']} s → {n['fixed_median_s']} s "
                f"({e['fixed_ratio']}×) | ≤ 3 s |"
            )
            lines.append(
                f"| drill `{sid}` wall, same runs (RTO {w['rto_median_s']} → {n['rto_median_s']} s) "
                f"| {w['wall_median_s']} s → {n['wall_median_s']} s ({e['wall_ratio']}×) | |"
            )
            ph = ", ".join(f"{k} {v}" for k, v in n["phases_median_s"].items() if k != "total")
            lines.append(f"| drill `{sid}` phases, early ({ph}) | | |")
    if "floor" in r:
        f = r["floor"]
        lines.append(
            f"| db-kill-restart RTO − raw crash recovery ({f['drill_rto_median_s']} − "
            f"{f['raw_crash_recovery_median_s']}) | {f['overhead_s']} s | ≤ {f.get('target_overhead_s', 0.3)} s |"
        )
    if "clock" in r:
        c = r["clock"]
        for k in ("refused 2s", "refused 5s", "refused 10s"):
            lines.append(
                f"| RTO error vs a known outage (app port {k}) | "
                f"{c[k]['error_median_ms']} ms | ≤ 100 ms |"
            )
        for k in ("frozen 2s", "frozen 5s", "frozen 10s"):
            lines.append(
                f"| RTO − pause length, app {k} (incl. the app's post-thaw drain) | "
                f"{c[k]['error_median_ms']} ms | |"
            )
    if "scaling" in r:
        for n, v in r["scaling"].items():
            lines.append(
                f"| stack ready with {n} side by side | {v['ready_median_s']} s (max {v['ready_max_s']}) | |"
            )
    if "restore_scale" in r:
        x = r["restore_scale"]
        lines.append(
            f"| PITR restore step on {x['database_bytes'] / 2**30:.2f} GiB vs raw pgbackrest "
            f"restore ({x['drill_restore_step_s']} s / {x['raw_restore_s']} s) | "
            f"{x['ratio']}× | ≤ 1.2× |"
        )
    if "harness_peak_rss_mb" in r:
        lines.append(f"| harness peak RSS | {r['harness_peak_rss_mb']} MB | ≤ 300 MB |")
    return "\n".join(lines) + "\n"


def render() -> None:
    """Re-render the table from the last results.json (python -m bench.run --render)."""
    print(table(json.loads((OUT / "results.json").read_text())))


if __name__ == "__main__":
    if "--render" in sys.argv:
        render()
    else:
        main()
