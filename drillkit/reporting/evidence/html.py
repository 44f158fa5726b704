"""The evidence pack's HTML building blocks: the inline CSS, escaped cells, the objectives,
checklist and summary tables, and `standalone_html` (also used for the Allure attachments)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from drillkit.core.measure import fmt_s
from drillkit.core.results import DrillResult
from drillkit.reporting import (
    checklist_counts,
    fmt_secs,
    fmt_wall,
    is_secret_key,
    t_fault,
    verdict_word,
)

WITHHELD = "[withheld: secret-like key]"

CSS = """
body { font: 13px/1.45 -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif; color: #212121;
       margin: 24px auto; max-width: 1240px; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 32px;
     border-bottom: 2px solid #e0e0e0; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; } h4 { font-size: 13px; margin: 12px 0 4px; }
table { border-collapse: collapse; margin: 6px 0 12px; width: 100%; max-width: 100%; }
th, td { border: 1px solid #d0d0d0; padding: 4px 7px; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; word-break: break-word; }
th { background: #f5f5f5; overflow-wrap: normal; word-break: normal; }
td.num { text-align: right; }
table.summary, table.controls { table-layout: fixed; } table.summary td, table.summary th { padding: 3px 5px; }
img { max-width: 100%; } pre, code { overflow-wrap: anywhere; }
.ok { background: #e8f5e9; color: #1b5e20; } .bad { background: #ffebee; color: #b71c1c; }
.warn { background: #fff3e0; color: #e65100; } .na { background: #fafafa; color: #757575; }
.verdict { font-weight: bold; text-transform: uppercase; }
.meta td:first-child, .kv td:first-child { width: 220px; font-weight: 600; background: #fafafa; }
.drill { page-break-before: always; } .chart { width: 100%; border: 1px solid #e0e0e0; }
pre { background: #f5f5f5; padding: 6px 8px; white-space: pre-wrap; word-break: break-word;
      font-size: 11px; }
.small { font-size: 11px; color: #616161; } ul, ol { margin: 4px 0 8px; }
tr, img { page-break-inside: avoid; }
@page { size: A4; margin: 12mm; }
/* print: a 4 mm gutter inside the right margin; content that does not fit would be clipped at
   the margin, in the gutter, where the PDF test (pdftoppm) looks for drawn pixels */
@media print { body { margin: 0; max-width: none; font-size: 11px; padding: 0 4mm 0 0; }
  table { font-size: 10px; } table.summary { font-size: 9.5px; } h2 { margin-top: 20px; } }
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _cell(text: Any, cls: str = "", num: bool = False) -> str:
    classes = " ".join(c for c in (cls, "num" if num else "") if c)
    return f'<td class="{classes}">{_e(text)}</td>' if classes else f"<td>{_e(text)}</td>"


def standalone_html(title: str, body: str) -> str:
    """A complete HTML document with the pack's inline CSS around an HTML fragment."""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def _status_class(status: str) -> str:
    return {"passed": "ok", "failed": "bad"}.get(status, "warn")


def _rel(result: DrillResult, t: float | None) -> str:
    """'T+1.42 s' relative to T_fault (or to the drill's start when there was no fault)."""
    if t is None:
        return ""
    ref = t_fault(result)
    ref = result.t0_monotonic if ref is None else ref
    delta = t - ref
    return f"T{'+' if delta >= 0 else '−'}{fmt_s(abs(delta))}"


def _when(result: DrillResult, t: float | None) -> str:
    return fmt_wall(None if t is None else result.wall(t))


def measured_cells(result: DrillResult) -> dict[str, tuple[str, str, str]]:
    """Per measure: (objective, measured, css class) for RTO, RPO, detection, lost, checklist."""
    obj, m = result.objectives, result.measurement
    out: dict[str, tuple[str, str, str]] = {}
    if m is None:
        out["RTO"] = (fmt_secs(obj.rto_s), "not measured", "na")
        out["RPO"] = (fmt_secs(obj.rpo_s), "not measured", "na")
        det_obj = fmt_secs(obj.detection_s, "not judged")
        out["Detection (MTTD)"] = (det_obj, "not measured", "na")
        out["Lost writes"] = ("", "not measured", "na")
    else:
        if m.rto_s is None:
            out["RTO"] = (fmt_secs(obj.rto_s), "never recovered", "bad")
        else:
            out["RTO"] = (
                fmt_secs(obj.rto_s),
                fmt_secs(m.rto_s),
                "bad" if m.rto_s > obj.rto_s else "ok",
            )
        lost = m.lost + m.altered
        rpo_bad = m.rpo_s > obj.rpo_s or (obj.rpo_s == 0 and lost > 0)
        out["RPO"] = (fmt_secs(obj.rpo_s), fmt_secs(m.rpo_s), "bad" if rpo_bad else "ok")
        if obj.detection_s is None:
            out["Detection (MTTD)"] = ("not judged", fmt_secs(m.mttd_s, "no impact seen"), "na")
        elif m.mttd_s is None:
            out["Detection (MTTD)"] = (fmt_secs(obj.detection_s), "no impact seen", "na")
        else:
            out["Detection (MTTD)"] = (
                fmt_secs(obj.detection_s),
                fmt_secs(m.mttd_s),
                "bad" if m.mttd_s > obj.detection_s else "ok",
            )
        text = f"{m.lost} lost, {m.altered} altered of {m.acked} acknowledged"
        out["Lost writes"] = ("", text, "ok" if lost == 0 else ("bad" if rpo_bad else "warn"))
    passed, total = checklist_counts(result)
    out["Checklist"] = (
        f"{total} items",
        f"{passed}/{total} passed",
        "na" if total == 0 else ("ok" if passed == total else "bad"),
    )
    return out


def objectives_table(result: DrillResult) -> str:
    """HTML fragment: objective vs measured for each measure, plus the drill's extra figures."""
    rows = ["<table><tr><th>Measure</th><th>Objective</th><th>Measured</th></tr>"]
    for name, (objective, measured, cls) in measured_cells(result).items():
        rows.append(
            f"<tr><td>{_e(name)}</td>{_cell(objective, num=True)}"
            f"{_cell(measured, cls, num=True)}</tr>"
        )
    m = result.measurement
    if m is not None:
        rows.append(
            f"<tr><td>Probe samples</td><td></td>"
            f"{_cell(f'{m.failed_samples} failed of {m.samples}', num=True)}</tr>"
        )
        rows.append(
            f"<tr><td>Writes in doubt (sent, not acknowledged, present)</td><td></td>"
            f"{_cell(m.in_doubt, num=True)}</tr>"
        )
    for key, value in sorted(result.extra.items()):
        if isinstance(value, str | int | float | bool) or value is None:
            rows.append(f"<tr><td>{_e(key)}</td><td></td>{_cell(value, num=True)}</tr>")
    rows.append(
        f'<tr><td>Verdict</td><td></td><td class="verdict {_status_class(result.status)}">'
        f"{_e(verdict_word(result))}</td></tr></table>"
    )
    return "\n".join(rows)


def checklist_table(result: DrillResult) -> str:
    """HTML fragment: the validation checklist, one row per item."""
    if not result.checks:
        return '<p class="na">No checklist items were evaluated.</p>'
    rows = ["<table><tr><th>#</th><th>Item</th><th>Result</th><th>Detail</th></tr>"]
    for i, check in enumerate(result.checks, 1):
        rows.append(
            f"<tr>{_cell(i, num=True)}<td>{_e(check.title)}"
            f' <span class="small">({_e(check.id)})</span></td>'
            f"{_cell('pass' if check.ok else 'FAIL', 'ok' if check.ok else 'bad')}"
            f"{_cell(check.detail)}</tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def summary_table(results: Sequence[DrillResult], anchors: Sequence[str]) -> str:
    """HTML fragment: one row per drill, objective vs measured, coloured."""
    widths = (20, 9, 13, 13, 13, 12, 9, 11)  # percent; the table is fixed-layout: fits the page
    cols = "".join(f'<col style="width:{w}%">' for w in widths)
    head = (
        f'<table class="summary"><colgroup>{cols}</colgroup>'
        "<tr><th>Drill</th><th>Severity</th><th>RTO measured / objective</th>"
        "<th>RPO measured / objective</th><th>Detection measured / objective</th>"
        "<th>Lost writes</th><th>Checklist</th><th>Verdict</th></tr>"
    )
    rows = [head]
    for result, anchor in zip(results, anchors, strict=True):
        cells = measured_cells(result)
        tds = []
        for key in ("RTO", "RPO", "Detection (MTTD)"):
            objective, measured, cls = cells[key]
            tds.append(_cell(f"{measured} / {objective}", cls, num=True))
        tds.append(_cell(cells["Lost writes"][1], cells["Lost writes"][2]))
        tds.append(_cell(cells["Checklist"][1], cells["Checklist"][2], num=True))
        rows.append(
            f'<tr><td><a href="#{_e(anchor)}">{_e(result.scenario_id)}</a><br>'
            f'<span class="small">{_e(result.title)}</span></td>{_cell(result.severity)}'
            + "".join(tds)
            + f'<td class="verdict {_status_class(result.status)}">'
            f"{_e(verdict_word(result))}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _kv_table(items: Mapping[str, Any]) -> str:
    if not items:
        return '<p class="na">none recorded</p>'
    rows = "".join(
        f"<tr><td>{_e(k)}</td><td>{_e(WITHHELD if is_secret_key(k) else v)}</td></tr>"
        for k, v in sorted(items.items())
    )
    return f'<table class="kv">{rows}</table>'
