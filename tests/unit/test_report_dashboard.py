"""The history dashboard: per drill its last run, RTO/RPO trends against objectives, overdue."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from drillkit import cli
from drillkit.reporting.dashboard import TREND_RUNS, dashboard_html, sparkline
from drillkit.reporting.history import stale_scenarios


def row(sid: str, status: str, days_ago: float, rto: float | None, rpo: float) -> dict[str, Any]:
    when = datetime(2026, 12, 1, tzinfo=UTC) - timedelta(days=days_ago)
    return {
        "scenario_id": sid,
        "status": status,
        "wall_end": when.isoformat(timespec="seconds"),
        "rto_s": rto,
        "rpo_s": rpo,
        "objectives": {"rto_s": 30.0, "rpo_s": 0.0, "detection_s": None},
    }


ROWS = [
    row("db-kill-restart", "passed", 10, 2.0, 0.0),
    row("db-kill-restart", "failed", 5, 41.0, 0.0),
    row("db-kill-restart", "passed", 1, 3.0, 0.0),
    row("disk-full", "passed", 200, 5.0, 0.0),
    row("partition-failover", "failed", 2, None, 0.4),
]
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _row_html(page: str, sid: str) -> str:
    match = re.search(rf'<tr id="drill-{re.escape(sid)}">(.*?)</tr>', page, re.S)
    assert match, sid
    return match.group(1)


def test_dashboard_rows_last_run_trend_and_overdue() -> None:
    ids = ["db-kill-restart", "disk-full", "partition-failover", "corruption-page"]
    stale = stale_scenarios(ROWS, ids, max_age_days=92, now=NOW)
    page = dashboard_html(ROWS, ids, stale, "2026-12-01 00:00 UTC")
    kill = _row_html(page, "db-kill-restart")
    assert "2026-11-30T00:00:00+00:00" in kill and ">PASSED<" in kill
    assert kill.count("<circle") == 3 + 3  # RTO and RPO, one dot per run
    assert kill.count('fill="#c62828"') == 1  # the 41 s run above the 30 s objective
    assert '<td class="ok">no</td>' in kill
    disk = _row_html(page, "disk-full")
    assert "OVERDUE: last pass 2026-05-15, 200 days ago" in disk
    part = _row_html(page, "partition-failover")
    assert "no RTO measured" in part and ">FAILED<" in part and "OVERDUE: never passed" in part
    assert part.count('fill="#c62828"') == 1  # RPO 0.4 s above 0
    never = _row_html(page, "corruption-page")
    assert "never run" in never.lower() and "OVERDUE: never passed" in never
    assert "<script" not in page


def test_sparkline_keeps_the_newest_runs_and_gaps() -> None:
    svg = sparkline([1.0, None, 2.0, 3.0], 2.5, "RTO")
    assert svg.count("<circle") == 3 and svg.count("<polyline") == 1  # the gap splits the line
    assert "stroke-dasharray" in svg  # the objective
    many = [row("x", "passed", i, float(i), 0.0) for i in range(40, 0, -1)]
    page = dashboard_html(many, ["x"], [], "now")
    assert _row_html(page, "x").count("<circle") == 2 * TREND_RUNS


def test_report_writes_the_dashboard_even_without_allure_results(tmp_path: Path) -> None:
    assert cli.main(["report", "--results", str(tmp_path)]) == 1  # no Allure results yet
    page = (tmp_path / "dashboard.html").read_text()
    assert '<tr id="drill-db-kill-restart">' in page  # every scenario of the project
