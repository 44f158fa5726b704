"""The evidence pack: a self-contained, hashed folder an auditor can read offline and verify.

Contents:
- index.html: run id, dates, operator, environment; a summary of every drill against its
  objectives; per drill its timeline chart, an incident report in the headings of runbook 000's
  Incident Report Template, the checklist and the breaches; the control mapping table.
  Inline CSS; charts are separate PNG files referenced relatively (so the manifest hashes them).
- timeline-<scenario>.png, drill-<scenario>.json (the full DrillResult) per drill; with a history,
  trend-<scenario>.png as well.
- evidence.pdf: index.html printed by headless Chromium, when Chromium is installed.
- manifest.json: SHA-256 and size of every other file; manifest.sha256: the SHA-256 of
  manifest.json in `sha256sum` format. That one hash (the pack hash) pins the whole pack: record
  it elsewhere (ticket, history, signed mail) and `verify_pack(dir, expected_hash=...)` proves the
  pack unchanged.

Secrets: results are secret-free by construction, but `build_pack(redact=[...])` also replaces each
given string with "[redacted]" in everything it renders (before the charts are drawn) and in every
text file it writes; `scan_for_secrets` checks a folder afterwards.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from drillkit.core.measure import fmt_s
from drillkit.core.results import DrillResult
from drillkit.reporting import (
    REDACTED,
    checklist_counts,
    clean_secrets,
    fmt_secs,
    fmt_wall,
    is_secret_key,
    iso_wall,
    redact_data,
    redact_result,
    redact_text,
    safe_name,
    t_detected,
    t_fault,
    t_recovered,
    verdict_word,
)
from drillkit.reporting.charts import timeline_png, trend_png
from drillkit.reporting.controls import CONTROLS, drills_for

PACK_FORMAT = "drillkit-evidence-pack/1"
MANIFEST = "manifest.json"
MANIFEST_HASH = "manifest.sha256"
TEXT_SUFFIXES = {".html", ".json", ".txt", ".csv", ".yaml", ".yml", ".log", ".md"}
CHROMIUM_NAMES = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome",
    "headless_shell",
)
WITHHELD = "[withheld: secret-like key]"

CSS = """
body { font: 13px/1.45 -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif; color: #212121;
       margin: 24px auto; max-width: 1240px; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 32px;
     border-bottom: 2px solid #e0e0e0; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; } h4 { font-size: 13px; margin: 12px 0 4px; }
table { border-collapse: collapse; margin: 6px 0 12px; width: 100%; }
th, td { border: 1px solid #d0d0d0; padding: 4px 7px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; white-space: nowrap; }
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
@media print { body { margin: 0; max-width: none; font-size: 11px; } }
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
    head = (
        "<table><tr><th>Drill</th><th>Severity</th><th>RTO measured / objective</th>"
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


def _affected_services(result: DrillResult) -> str:
    declared = result.extra.get("affected_services")
    if isinstance(declared, list | tuple) and declared:
        services = ", ".join(str(s) for s in declared)
    elif isinstance(declared, str) and declared:
        services = declared
    else:
        services = ", ".join(sorted(result.logs)) or "not recorded"
    failing = {}
    for s in result.samples:
        if not s.ok:
            failing[s.probe] = failing.get(s.probe, 0) + 1
    probes = "; ".join(f"{probe} probe failed {n} times" for probe, n in sorted(failing.items()))
    return f"{services} ({probes})" if probes else f"{services} (no probe failed)"


def _step_line(result: DrillResult, step: Any) -> str:
    duration = "did not finish" if step.t_end is None else fmt_s(step.t_end - step.t_start)
    outcome = "not run" if step.ok is None else ("ok" if step.ok else "FAILED")
    line = (
        f"{step.name} — started {_rel(result, step.t_start)} "
        f"({_when(result, step.t_start)}), {duration} — {outcome}"
    )
    return line + (f": {step.error}" if step.error else "")


def incident_report(result: DrillResult) -> str:
    """HTML fragment in the headings of runbook 000's Incident Report Template."""
    m, obj = result.measurement, result.objectives
    tf, td, tr = t_fault(result), t_detected(result), t_recovered(result)
    faults = [s for s in result.steps if s.kind == "fault"]
    recovery = [s for s in result.steps if s.kind == "recovery"]
    if m is not None and m.rto_s is not None:
        duration = f"{fmt_secs(m.rto_s)} from fault injection to recovery (RTO)"
    elif m is not None:
        duration = "not recovered within the observation window"
    else:
        duration = "not measured: " + (result.error or "the drill ended before measuring")
    if faults:
        root = "; ".join(f"injected fault: {s.name} (action {s.action})" for s in faults)
    else:
        root = "no fault was injected"
    root += f" — failure class {result.failure_class}"
    if m is not None:
        impact = (
            f"service disrupted for {fmt_secs(m.rto_s, 'the whole observation')}; "
            f"{m.failed_samples} of {m.samples} probe samples failed; "
            f"{m.lost} of {m.acked} acknowledged writes lost and {m.altered} altered "
            f"(RPO {fmt_secs(m.rpo_s)})"
        )
    else:
        impact = "not measured"
    details = [
        (
            "Date/Time",
            f"{_when(result, tf) if tf is not None else fmt_wall(result.t0_wall)}"
            " (fault injection)",
        ),
        ("Severity", result.severity),
        ("Duration", duration),
        ("Affected Services", _affected_services(result)),
        ("Root Cause", root),
    ]
    resolution = "".join(f"<li>{_e(_step_line(result, s))}</li>" for s in recovery)
    resolution_html = f"<ol>{resolution}</ol>" if resolution else "no recovery step was run"
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in details)
    rows += f"<tr><td>Resolution</td><td>{resolution_html}</td></tr>"
    rows += f"<tr><td>Impact</td><td>{_e(impact)}</td></tr>"

    mttd = "" if td is None or tf is None else f"MTTD {fmt_secs(td - tf)}"
    if obj.detection_s is not None and mttd:
        mttd += f" (objective {fmt_secs(obj.detection_s)})"
    verified_t = result.markers.get("verified")
    passed, total = checklist_counts(result)
    if verified_t is not None:
        verified, verified_rel = _when(result, verified_t), _rel(result, verified_t)
    else:
        verified, verified_rel = fmt_wall(result.wall_end), ""
        if result.wall_end is not None and tf is not None:
            verified_rel = _rel(result, result.wall_end - result.t0_wall + result.t0_monotonic)
    timeline = [
        (
            "Fault injected",
            _when(result, tf) if tf is not None else "n/a",
            _rel(result, tf),
            root if faults else "",
        ),
        (
            "Detection",
            _when(result, td) if td is not None else "no failed probe",
            _rel(result, td),
            mttd or "no impact observed by the probes",
        ),
        (
            "Response",
            _when(result, recovery[0].t_start) if recovery else "n/a",
            _rel(result, recovery[0].t_start) if recovery else "",
            f"first recovery step started: {recovery[0].name}" if recovery else "",
        ),
        (
            "Resolution",
            _when(result, tr) if tr is not None else "not recovered",
            _rel(result, tr),
            f"probes passing again; RTO {fmt_secs(tr - tf)} (objective {fmt_secs(obj.rto_s)})"
            if tr is not None and tf is not None
            else "",
        ),
        (
            "Verification",
            verified,
            verified_rel,
            f"validation checklist {passed}/{total} passed; verdict {verdict_word(result)}",
        ),
    ]
    trows = "".join(
        f"<tr><td>{_e(a)}</td>{_cell(b)}{_cell(c, num=True)}<td>{_e(d)}</td></tr>"
        for a, b, c, d in timeline
    )

    went_well = [
        f"{name} met: {measured} (objective {objective})"
        for name, (objective, measured, cls) in measured_cells(result).items()
        if cls == "ok" and objective
    ]
    improve = list(result.breaches)
    if result.error:
        improve.append(f"drill error: {result.error.strip().splitlines()[0]}")
    improve += [
        f"recovery step failed: {s.name}: {s.error or 'no detail'}"
        for s in result.steps
        if s.ok is False
    ]
    actions = [f"Investigate and fix: {item}" for item in improve]
    if not actions:
        actions = ["None: procedure met every objective; re-run next quarter."]

    def ul(items: list[str], empty: str) -> str:
        return "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in (items or [empty])) + "</ul>"

    return (
        f'<h4>Incident Details</h4><table class="kv">{rows}</table>'
        "<h4>Timeline</h4><table><tr><th>Phase</th><th>Wall-clock (UTC)</th><th>Relative</th>"
        f"<th>What happened</th></tr>{trows}</table>"
        "<h4>Lessons Learned</h4>"
        f"<p><b>What went well</b></p>{ul(went_well, 'nothing met its objective')}"
        f"<p><b>What could be improved</b></p>{ul(improve, 'nothing: no breach')}"
        f"<p><b>Action items</b></p>{ul(actions, '')}"
    )


def _controls_table(results: Sequence[DrillResult], anchors: Sequence[str]) -> str:
    rows = [
        "<table><tr><th>Framework</th><th>Control</th><th>Requirement (paraphrased)</th>"
        "<th>Evidence in this pack</th><th>Drills in this pack</th></tr>"
    ]
    by_id: dict[str, str] = {}
    for r, anchor in zip(results, anchors, strict=True):
        by_id.setdefault(r.scenario_id, anchor)
    for control in CONTROLS:
        drills = drills_for(control, results)
        links = ", ".join(f'<a href="#{_e(by_id[d])}">{_e(d)}</a>' for d in drills)
        rows.append(
            f"<tr>{_cell(control.framework)}<td><b>{_e(control.control_id)}</b><br>"
            f'<span class="small">{_e(control.name)}</span></td>{_cell(control.requirement)}'
            f"{_cell(control.evidence)}"
            + (f"<td>{links}</td>" if links else _cell("none in this pack", "warn"))
            + "</tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _drill_section(result: DrillResult, anchor: str, files: Mapping[str, str]) -> str:
    src = result.source or {}
    runbook = f"runbook {src.get('runbook', '?')}: {src.get('section', '')}".strip()
    source = _e(runbook)
    if src.get("file"):
        source += f' <span class="small">({_e(src["file"])})</span>'
    parts = [
        f'<section class="drill" id="{_e(anchor)}">',
        f"<h2>{_e(result.scenario_id)} — {_e(result.title)} "
        f'<span class="verdict {_status_class(result.status)}">'
        f"{_e(verdict_word(result))}</span></h2>",
        '<table class="meta">'
        f"<tr><td>Severity / class</td><td>{_e(result.severity)} / "
        f"{_e(result.failure_class)}</td></tr>"
        f"<tr><td>Procedure tested</td><td>{source}</td></tr>"
        f"<tr><td>Tags</td><td>{_e(', '.join(result.tags))}</td></tr>"
        f"<tr><td>Run</td><td>{_e(result.run_id)}, started {_e(fmt_wall(result.t0_wall))}, "
        f"ended {_e(fmt_wall(result.wall_end))}</td></tr>"
        f'<tr><td>Full record</td><td><a href="{_e(files["json"])}">{_e(files["json"])}</a>'
        "</td></tr></table>",
        f'<img class="chart" src="{_e(files["timeline"])}" '
        f'alt="{_e(f"timeline of {result.scenario_id}")}">',
    ]
    if "trend" in files:
        parts.append(
            f'<img class="chart" src="{_e(files["trend"])}" '
            f'alt="{_e(f"RTO and RPO trend of {result.scenario_id}")}">'
        )
    parts.append("<h3>Objectives and measurements</h3>" + objectives_table(result))
    if result.breaches:
        parts.append(
            "<h3>Breaches</h3><ul>"
            + "".join(f'<li class="bad">{_e(b)}</li>' for b in result.breaches)
            + "</ul>"
        )
    if result.error:
        parts.append(f"<h3>Drill error</h3><pre>{_e(result.error)}</pre>")
    parts.append("<h3>Incident report</h3>" + incident_report(result))
    parts.append("<h3>Validation checklist</h3>" + checklist_table(result))
    if result.pg_errors:
        shown = result.pg_errors[:20]
        more = len(result.pg_errors) - len(shown)
        parts.append(
            "<h3>PostgreSQL errors seen</h3><pre>"
            + _e("\n".join(shown))
            + (_e(f"\n… {more} more in {files['json']}") if more > 0 else "")
            + "</pre>"
        )
    parts.append("<h3>Environment</h3>" + _kv_table(result.environment))
    parts.append("</section>")
    return "\n".join(parts)


def _index_html(
    results: Sequence[DrillResult],
    files: Sequence[Mapping[str, str]],
    operator: str,
    run_id: str,
    environment: Mapping[str, Any],
    created: float,
    stale: Sequence[tuple[str, str]] | None,
) -> str:
    anchors = [Path(entry["json"]).stem for entry in files]
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no drills"
    starts = [r.t0_wall for r in results]
    ends = [r.wall_end for r in results if r.wall_end is not None]
    when = (
        f"{fmt_wall(min(starts))} to {fmt_wall(max(ends) if ends else None)}"
        if starts
        else "no drills"
    )
    meta = {
        "Run id": run_id,
        "Drills ran": when,
        "Pack generated": fmt_wall(created),
        "Operator": operator,
        "Drills": f"{len(results)} ({tally})",
    }
    body = [
        f"<h1>Disaster-recovery drill evidence — run {_e(run_id)}</h1>",
        '<p class="small">Generated by drillkit. Each drill provisions a disposable replica of '
        "the stack, drives traffic, injects a documented failure, runs the documented recovery "
        "procedure and measures RTO (fault injection to recovery), RPO (span of acknowledged "
        "writes lost) and the validation checklist. Times are UTC; T+ is relative to the fault "
        "injection.</p>",
        '<table class="meta">'
        + "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in meta.items())
        + "</table>",
        "<h2>Environment</h2>" + _kv_table(environment),
        "<h2>Summary</h2>" + summary_table(results, anchors),
    ]
    if stale is not None:
        if stale:
            body.append(
                "<h2>Drills overdue</h2><table><tr><th>Scenario</th><th>Why</th></tr>"
                + "".join(f"<tr>{_cell(s)}{_cell(why, 'warn')}</tr>" for s, why in stale)
                + "</table>"
            )
        else:
            body.append(
                '<h2>Drills overdue</h2><p class="ok">None: every scenario passed '
                "within its re-run interval.</p>"
            )
    body.append(
        "<h2>Control mapping</h2>"
        '<p class="small">Requirements are paraphrased; read the standard for its '
        "wording. Drills listed are those in this pack bearing on the control.</p>"
        + _controls_table(results, anchors)
    )
    body.append(
        '<h2>Verifying this pack</h2><p class="small">manifest.json lists the SHA-256 '
        "of every file in this folder; manifest.sha256 holds the SHA-256 of "
        "manifest.json (the pack hash). Check with <code>sha256sum -c manifest.sha256"
        "</code>, then each file against manifest.json, and compare the pack hash with "
        "the one recorded when the pack was issued.</p>"
    )
    for result, anchor, entry in zip(results, anchors, files, strict=True):
        body.append(_drill_section(result, anchor, entry))
    return standalone_html(f"Drill evidence — run {run_id}", "\n".join(body))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def find_chromium() -> str | None:
    """Chromium's path: $DRILLKIT_CHROMIUM, else the first of the usual names on PATH."""
    env = os.environ.get("DRILLKIT_CHROMIUM")
    if env:
        return env if Path(env).exists() else shutil.which(env)
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_render(
    page: Path | str,
    out_path: Path,
    mode: Literal["pdf", "png"] = "pdf",
    chromium: str | None = None,
    timeout_s: float = 120.0,
    window: tuple[int, int] = (1280, 2400),
    virtual_time_ms: int | None = None,
) -> None:
    """Print `page` (a file, or a URL such as a report served on 127.0.0.1) to a PDF, or
    screenshot it to a PNG, with headless Chromium.

    Offline by construction: no network services, and every host name resolves to nothing but
    127.0.0.1. `virtual_time_ms` lets a scripted page run that long in virtual
    time before the capture (a JavaScript app such as the Allure report draws after load).
    Raises FileNotFoundError without Chromium, RuntimeError when it fails or times out.
    """
    exe = chromium or find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found (apt-get install -y chromium)")
    out_path = out_path.resolve()
    out_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="drillkit-chromium-") as profile:
        args = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--disable-breakpad",
            "--mute-audio",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--user-data-dir={profile}",
        ]
        if mode == "pdf":
            args += [
                f"--print-to-pdf={out_path}",
                "--no-pdf-header-footer",
                "--print-to-pdf-no-header",
            ]
        else:
            args += [
                f"--screenshot={out_path}",
                f"--window-size={window[0]},{window[1]}",
                "--hide-scrollbars",
            ]
        if virtual_time_ms is not None:
            args.append(f"--virtual-time-budget={virtual_time_ms}")
        args.append(page if isinstance(page, str) else page.resolve().as_uri())
        env = {**os.environ, "HOME": profile}
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise RuntimeError(f"chromium did not finish within {timeout_s:.0f} s") from None
        finally:
            try:  # renderer and zygote helpers must not outlive the call
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if proc.returncode != 0 or not out_path.exists() or out_path.stat().st_size == 0:
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(
            f"chromium exited {proc.returncode} without {out_path.name}: " + " | ".join(tail)
        )


def _unique_names(results: Sequence[DrillResult]) -> list[str]:
    """A file-name stem per result, unique within the pack (a repeated scenario gets -2, -3)."""
    names: list[str] = []
    used: set[str] = set()
    for r in results:
        base = safe_name(r.scenario_id)
        name, n = base, 1
        while name in used:
            n += 1
            name = f"{base}-{n}"
        used.add(name)
        names.append(name)
    return names


def _manifest_files(pack: Path) -> list[str]:
    return sorted(
        p.relative_to(pack).as_posix()
        for p in pack.rglob("*")
        if p.is_file() and p.relative_to(pack).as_posix() not in (MANIFEST, MANIFEST_HASH)
    )


def build_pack(
    results: list[DrillResult],
    out_dir: Path,
    operator: str,
    run_id: str,
    environment: dict[str, Any],
    redact: Sequence[str] = (),
    *,
    pdf: bool = True,
    chromium: str | None = None,
    history: Sequence[dict[str, Any]] | None = None,
    stale: Sequence[tuple[str, str]] | None = None,
    replace: bool = False,
) -> Path:
    """Write the evidence pack into `out_dir` (which must not exist or be empty, unless
    `replace`: then an existing pack there is swapped out); returns `out_dir`.

    The pack is assembled in a sibling temporary folder and renamed into place, so `out_dir`
    never holds half a pack. `pdf=False` skips the PDF; `history` (rows from load_history) adds a
    trend chart per scenario; `stale` (from stale_scenarios) lists overdue drills.
    """
    out_dir = Path(out_dir)
    occupied = out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir()))
    if occupied and not replace:
        raise FileExistsError(f"{out_dir} exists and is not an empty folder")
    secrets = clean_secrets(redact)
    clean = [redact_result(r, secrets) for r in results]
    operator = redact_text(operator, secrets)
    run_id_text = redact_text(run_id, secrets)
    env = redact_data(dict(environment), secrets)
    hist = redact_data(list(history), secrets) if history is not None else None
    stale_rows = redact_data([list(s) for s in stale], secrets) if stale is not None else None
    created = time.time()

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        names = _unique_names(clean)
        files: list[dict[str, str]] = []
        for result, stem in zip(clean, names, strict=True):
            entry = {"timeline": f"timeline-{stem}.png", "json": f"drill-{stem}.json"}
            (build / entry["timeline"]).write_bytes(timeline_png(result))
            data = json.dumps(result.to_json(), indent=1, default=str, ensure_ascii=False)
            (build / entry["json"]).write_text(data + "\n", encoding="utf-8")
            if hist is not None:
                entry["trend"] = f"trend-{stem}.png"
                (build / entry["trend"]).write_bytes(trend_png(hist, result.scenario_id))
            files.append(entry)
        stale_pairs = [(str(a), str(b)) for a, b in stale_rows] if stale_rows is not None else None
        index = _index_html(clean, files, operator, run_id_text, env, created, stale_pairs)
        (build / "index.html").write_text(index, encoding="utf-8")

        # Belt and braces: no secret survives in any text file, whatever produced it.
        if secrets:
            for rel in _manifest_files(build):
                path = build / rel
                if path.suffix in TEXT_SUFFIXES:
                    text = path.read_text(encoding="utf-8")
                    cleaned = redact_text(text, secrets)
                    if cleaned != text:
                        path.write_text(cleaned, encoding="utf-8")

        pdf_note: dict[str, str]
        if not pdf:
            pdf_note = {"status": "skipped", "reason": "not requested (pdf=False)"}
        else:
            exe = chromium or find_chromium()
            if exe is None:
                pdf_note = {
                    "status": "skipped",
                    "reason": "chromium not installed (apt-get install -y chromium)",
                }
            else:
                try:
                    chromium_render(build / "index.html", build / "evidence.pdf", "pdf", exe)
                    pdf_note = {
                        "status": "rendered",
                        "file": "evidence.pdf",
                        "from": "index.html",
                        "renderer": Path(exe).name,
                    }
                except (OSError, RuntimeError) as exc:
                    (build / "evidence.pdf").unlink(missing_ok=True)
                    pdf_note = {
                        "status": "skipped",
                        "reason": redact_text(f"chromium failed: {exc}", secrets),
                    }

        artifacts = {}
        for rel in _manifest_files(build):
            path = build / rel
            artifacts[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        manifest = {
            "format": PACK_FORMAT,
            "run_id": run_id_text,
            "created": iso_wall(created),
            "operator": operator,
            "drills": [
                {
                    "scenario_id": r.scenario_id,
                    "status": r.status,
                    **entry,
                }
                for r, entry in zip(clean, files, strict=True)
            ],
            "pdf": pdf_note,
            "redacted_values": len(secrets),
            "artifacts": artifacts,
        }
        manifest_bytes = (
            json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
        ).encode()
        (build / MANIFEST).write_bytes(manifest_bytes)
        digest = hashlib.sha256(manifest_bytes).hexdigest()
        (build / MANIFEST_HASH).write_text(f"{digest}  {MANIFEST}\n")
        for path in build.iterdir():
            path.chmod(0o644)
        build.chmod(0o755)
        old = None
        if occupied:
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.rename(out_dir, old / out_dir.name)
        elif out_dir.exists():
            out_dir.rmdir()
        os.rename(build, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return out_dir


def pack_hash(pack_dir: Path) -> str:
    """The pack's hash: SHA-256 of its manifest.json."""
    return sha256_file(Path(pack_dir) / MANIFEST)


def verify_pack(pack_dir: Path, expected_hash: str | None = None) -> list[str]:
    """One line per problem, each naming the artifact; [] when the pack is intact.

    Lines: "manifest.json changed" (its hash differs from manifest.sha256), "tampered: <file>
    (sha256 differs)", "missing: <file>", "unlisted: <file>", and, given `expected_hash` (the pack
    hash recorded when the pack was issued), "pack hash differs from the recorded one".
    """
    pack = Path(pack_dir)
    problems: list[str] = []
    manifest_path, hash_path = pack / MANIFEST, pack / MANIFEST_HASH
    if not manifest_path.is_file():
        return [f"missing: {MANIFEST}"]
    actual = sha256_file(manifest_path)
    if not hash_path.is_file():
        problems.append(f"missing: {MANIFEST_HASH}")
    else:
        recorded = hash_path.read_text().split()
        if not recorded or recorded[0].lower() != actual:
            problems.append(f"{MANIFEST} changed")
    if expected_hash is not None and expected_hash.strip().lower() != actual:
        problems.append("pack hash differs from the recorded one")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        artifacts = manifest["artifacts"]
        if not isinstance(artifacts, dict):
            raise TypeError("artifacts is not a mapping")
    except (ValueError, KeyError, TypeError) as exc:
        return [*problems, f"{MANIFEST} unreadable: {exc}"]
    root = pack.resolve()
    for rel, entry in sorted(artifacts.items()):
        path = (pack / rel).resolve()
        if not path.is_relative_to(root) or rel in (MANIFEST, MANIFEST_HASH):
            problems.append(f"invalid entry in {MANIFEST}: {rel}")
        elif not path.is_file():
            problems.append(f"missing: {rel}")
        elif not isinstance(entry, dict) or sha256_file(path) != entry.get("sha256"):
            problems.append(f"tampered: {rel} (sha256 differs)")
    for rel in _manifest_files(pack):
        if rel not in artifacts:
            problems.append(f"unlisted: {rel}")
    return problems


def scan_for_secrets(directory: Path, secrets: Sequence[str]) -> list[str]:
    """Files under `directory` (relative paths, sorted) containing any secret, raw or HTML-,
    JSON- or URL-escaped. Binary files are searched byte-wise too."""
    needles: set[bytes] = set()
    for secret in clean_secrets(secrets):
        for form in (
            secret,
            html.escape(secret),
            html.escape(secret, quote=False),
            json.dumps(secret)[1:-1],
            urllib.parse.quote(secret, safe=""),
        ):
            needles.add(form.encode())
    if not needles:
        return []
    base = Path(directory)
    hits = []
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if any(n in data for n in needles):
            hits.append(path.relative_to(base).as_posix())
    return hits


__all__ = [
    "CSS",
    "MANIFEST",
    "MANIFEST_HASH",
    "REDACTED",
    "build_pack",
    "checklist_table",
    "chromium_render",
    "find_chromium",
    "incident_report",
    "measured_cells",
    "objectives_table",
    "pack_hash",
    "scan_for_secrets",
    "sha256_file",
    "standalone_html",
    "summary_table",
    "verify_pack",
]
