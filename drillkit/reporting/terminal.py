"""The terminal reporter: a live progress line per lifecycle event (a real subscriber of the
drill's event bus, shown with `-v`) and the `drillkit summary` table at the end of the session."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from drillkit.core.events import Event, Phase
from drillkit.core.results import DrillResult


def progress_line(event: Event, t0: float) -> str:
    """'  [db-kill-restart +  3.21 s] step_ended recovery 'Restart' ok in 1.20 s'."""
    detail = ""
    if event.phase in (Phase.STEP_STARTED, Phase.STEP_ENDED):
        detail = f" {event.data.get('kind')} '{event.data.get('step')}'"
        if event.phase == Phase.STEP_ENDED:
            ok = "ok" if event.data.get("ok") else "FAILED"
            detail += f" {ok} in {event.data.get('duration_s', 0):.2f} s"
    return f"  [{event.data.get('scenario')} +{event.t - t0:6.2f} s] {event.phase}{detail}"


def progress_subscriber(write_line: Callable[[str], None], t0: float) -> Callable[[Event], None]:
    """A bus subscriber writing `progress_line` of each event through `write_line`."""

    def show(event: Event) -> None:
        write_line(progress_line(event, t0))

    return show


def summary_lines(results: Sequence[DrillResult], results_dir: Path) -> list[str]:
    """The session's table: one row per drill (verdict, MTTD, RTO and RPO against their
    objectives, lost writes, checks, wall time), its breaches, then a total line."""
    lines = [
        f"{'drill':28} {'verdict':8} {'MTTD':>7} {'RTO':>8} {'obj':>6} {'RPO':>7} {'obj':>6} "
        f"{'lost':>9} {'checks':>7} {'wall':>7}"
    ]
    for r in results:
        m = r.measurement

        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}"

        checks = f"{sum(c.ok for c in r.checks)}/{len(r.checks)}"
        wall = (r.wall_end or r.t0_wall) - r.t0_wall
        lines.append(
            f"{r.scenario_id:28} {r.status:8} {f(m.mttd_s if m else None):>7} "
            f"{'never' if m and m.rto_s is None else f(m.rto_s if m else None):>8} {r.objectives.rto_s:>6g} "
            f"{f(m.rpo_s if m else None):>7} {r.objectives.rpo_s:>6g} "
            f"{(f'{m.lost + m.altered}/{m.acked}' if m else '-'):>9} {checks:>7} {wall:6.1f}s"
        )
        for b in r.breaches:
            lines.append(f"    breach: {b}")
        if r.evidence_status.startswith("not evidence"):
            lines.append(f"    {r.evidence_status}")
    total = sum((r.wall_end or r.t0_wall) - r.t0_wall for r in results)
    lines.append(f"{len(results)} drills, {total:.1f} s of drill time; records in {results_dir}")
    return lines


__all__ = ["progress_line", "progress_subscriber", "summary_lines"]
