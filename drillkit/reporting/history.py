"""The drill history: one JSON line per finished drill, appended safely by concurrent runs.

Each line: run_id, scenario_id, wall_end (ISO 8601 UTC), status, rto_s, rpo_s, mttd_s, lost,
altered, acked, objectives. Appends take an exclusive `fcntl` lock and are fsynced, so parallel
drills (xdist workers, two CI jobs on one host) never interleave or lose a line. A line torn by a
crash is skipped on load, and the next append starts on a fresh line.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from drillkit.core.results import DrillResult
from drillkit.reporting import iso_wall

log = logging.getLogger(__name__)


def history_row(result: DrillResult) -> dict[str, Any]:
    """The history line for one drill (no samples, logs or anything that could hold a secret)."""
    m = result.measurement
    wall_end = result.wall_end if result.wall_end is not None else time.time()
    return {
        "run_id": result.run_id,
        "scenario_id": result.scenario_id,
        "wall_end": iso_wall(wall_end),
        "status": result.status,
        "rto_s": None if m is None else m.rto_s,
        "rpo_s": None if m is None else m.rpo_s,
        "mttd_s": None if m is None else m.mttd_s,
        "lost": None if m is None else m.lost,
        "altered": None if m is None else m.altered,
        "acked": None if m is None else m.acked,
        "objectives": dataclasses.asdict(result.objectives),
    }


def append_history(path: Path, result: DrillResult) -> None:
    """Append the drill's line to the JSON-lines file at `path` (created with its folder)."""
    append_row(path, history_row(result))


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON line to `path` under an exclusive lock, fsynced (created with its folder)."""
    line = json.dumps(row, sort_keys=True).encode() + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # a torn last line from a crash: start afresh
            os.write(fd, line)
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    if created:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def load_history(path: Path) -> list[dict[str, Any]]:
    """Every readable line, in file order; [] when there is no history yet."""
    try:
        with open(path, "rb") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH)
            try:
                data = f.read()
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    except FileNotFoundError:
        return []
    rows: list[dict[str, Any]] = []
    for number, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except ValueError:
            log.warning("%s line %d is not JSON (a torn write?); skipped", path, number)
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _when(row: dict[str, Any]) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(row.get("wall_end")))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def last_pass(history: Iterable[dict[str, Any]], scenario_id: str) -> datetime | None:
    """When the scenario last passed, or None."""
    passes = [
        when
        for row in history
        if row.get("scenario_id") == scenario_id
        and row.get("status") == "passed"
        and (when := _when(row)) is not None
    ]
    return max(passes, default=None)


def stale_scenarios(
    history: Iterable[dict[str, Any]],
    scenario_ids: Sequence[str],
    max_age_days: int = 92,
    now: datetime | None = None,
) -> list[tuple[str, str]]:
    """(scenario id, reason) for each scenario whose last pass is older than `max_age_days`
    (default 92: one quarter) or that never passed, in the order of `scenario_ids`.

    Reasons read "never passed" or "last pass 2026-05-01, 206 days ago". A naive `now` is UTC.
    """
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    rows = list(history)
    stale: list[tuple[str, str]] = []
    for scenario_id in scenario_ids:
        when = last_pass(rows, scenario_id)
        if when is None:
            stale.append((scenario_id, "never passed"))
        elif now - when > timedelta(days=max_age_days):
            days = (now - when).days
            ago = "1 day" if days == 1 else f"{days} days"
            stale.append((scenario_id, f"last pass {when.date().isoformat()}, {ago} ago"))
    return stale


__all__ = [
    "append_history",
    "append_row",
    "history_row",
    "last_pass",
    "load_history",
    "stale_scenarios",
]
