"""The history dashboard: one self-contained HTML page beside the Allure report
(reports/dashboard.html): per drill its last run, the trend of RTO and RPO against the
objectives (inline SVG, no scripts), and whether it is overdue.

Built from the history rows (reporting/history.py) alone, so it needs no records and holds
nothing a record's summary line does not (no secrets by construction).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drillkit.reporting import fmt_secs
from drillkit.reporting.evidence.html import CSS

TREND_RUNS = 20
"""The newest runs a trend shows."""
W, H, PAD = 260, 60, 4


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def sparkline(values: Sequence[float | None], objective: float | None, label: str) -> str:
    """An inline SVG: the values as a line with a dot per run (red above the objective), the
    objective as a dashed line; a run with no value leaves a gap."""
    known = [v for v in values if v is not None]
    if not known:
        return f'<span class="na">no {_e(label)} measured</span>'
    top = max([*known, objective or 0.0]) * 1.15 or 1.0
    n = len(values)

    def x(i: int) -> float:
        return PAD + (W - 2 * PAD) * (i / (n - 1) if n > 1 else 0.5)

    def y(v: float) -> float:
        return H - PAD - (H - 2 * PAD) * (v / top)

    parts = [
        f'<svg class="spark" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" '
        f'aria-label="{_e(label)} trend">'
    ]
    if objective is not None:
        parts.append(
            f'<line x1="{PAD}" x2="{W - PAD}" y1="{y(objective):.1f}" y2="{y(objective):.1f}" '
            'stroke="#9e9e9e" stroke-dasharray="4 3"><title>objective '
            f"{_e(fmt_secs(objective))}</title></line>"
        )
    segment: list[str] = []
    for i, v in enumerate(values):
        if v is None:
            if len(segment) > 1:
                parts.append(
                    f'<polyline fill="none" stroke="#1565c0" points="{" ".join(segment)}"/>'
                )
            segment = []
            continue
        segment.append(f"{x(i):.1f},{y(v):.1f}")
    if len(segment) > 1:
        parts.append(f'<polyline fill="none" stroke="#1565c0" points="{" ".join(segment)}"/>')
    for i, v in enumerate(values):
        if v is None:
            continue
        bad = objective is not None and v > objective
        parts.append(
            f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" '
            f'fill="{"#c62828" if bad else "#2e7d32"}"><title>{_e(fmt_secs(v))}</title></circle>'
        )
    parts.append("</svg>")
    return "".join(parts)


def dashboard_html(
    rows: Sequence[dict[str, Any]],
    scenario_ids: Sequence[str],
    stale: Sequence[tuple[str, str]],
    generated: str,
) -> str:
    """The page: one table row per scenario (known ones first, then any only in the history)."""
    overdue = dict(stale)
    ids = list(dict.fromkeys([*scenario_ids, *(str(r.get("scenario_id")) for r in rows)]))
    body = [
        "<h1>Drill history</h1>",
        f'<p class="small">Generated {_e(generated)} from reports/history/drills.jsonl. Trends: '
        f"the newest {TREND_RUNS} runs, oldest left; dashed line = objective, red dot = above "
        "it. Overdue: no pass within the re-run interval.</p>",
        '<table class="dashboard"><tr><th>Drill</th><th>Last run (UTC)</th><th>Status</th>'
        "<th>RTO trend</th><th>RPO trend</th><th>Overdue</th></tr>",
    ]
    for sid in ids:
        mine = [r for r in rows if r.get("scenario_id") == sid][-TREND_RUNS:]
        last = mine[-1] if mine else None
        obj = (last or {}).get("objectives") or {}
        status = str(last.get("status")) if last else "never run"
        cls = {"passed": "ok", "failed": "bad"}.get(status, "warn")
        rto = sparkline([_num(r.get("rto_s")) for r in mine], _num(obj.get("rto_s")), "RTO")
        rpo = sparkline([_num(r.get("rpo_s")) for r in mine], _num(obj.get("rpo_s")), "RPO")
        flag = overdue.get(sid)
        body.append(
            f'<tr id="drill-{_e(sid)}"><td>{_e(sid)}</td>'
            f"<td>{_e(last.get('wall_end') if last else '—')}</td>"
            f'<td class="{cls}">{_e(status.upper())}</td><td>{rto}</td><td>{rpo}</td>'
            + (f'<td class="warn">OVERDUE: {_e(flag)}</td>' if flag else '<td class="ok">no</td>')
            + "</tr>"
        )
    body.append("</table>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Drill history'
        f"</title><style>{CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_dashboard(
    path: Path,
    rows: Sequence[dict[str, Any]],
    scenario_ids: Sequence[str],
    stale: Sequence[tuple[str, str]],
    generated: str,
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dashboard_html(rows, scenario_ids, stale, generated), encoding="utf-8")
    return path


__all__ = ["TREND_RUNS", "dashboard_html", "sparkline", "write_dashboard"]
