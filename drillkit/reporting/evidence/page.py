"""The evidence pack's index page: per drill its section (charts, objectives, incident report in
the headings of runbook 000's Incident Report Template, checklist), the control mapping table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from drillkit.core.measure import fmt_s
from drillkit.core.results import DrillResult
from drillkit.reporting import (
    checklist_counts,
    fmt_secs,
    fmt_wall,
    t_detected,
    t_fault,
    t_recovered,
    verdict_word,
)
from drillkit.reporting.controls import CONTROLS, drills_for
from drillkit.reporting.evidence import audit
from drillkit.reporting.evidence.html import (
    _cell,
    _e,
    _kv_table,
    _rel,
    _status_class,
    _when,
    checklist_table,
    measured_cells,
    objectives_table,
    standalone_html,
    summary_table,
)


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


def _signoff(roles: Mapping[str, str]) -> str:
    """The sign-off block: executor, verifier and approver, with space to sign and date."""
    rows = "".join(
        f"<tr><td>{_e(label)}</td><td>{_e(roles.get(key) or '')}</td><td></td><td></td></tr>"
        for key, label in (
            ("executor", "Executed by"),
            ("verifier", "Verified by"),
            ("approver", "Approved by"),
        )
    )
    return (
        '<h2 id="sign-off">Sign-off</h2><table class="signoff"><tr><th>Role</th><th>Name</th>'
        f"<th>Signature</th><th>Date (UTC)</th></tr>{rows}</table>"
    )


def _controls_table(results: Sequence[DrillResult], anchors: Sequence[str]) -> str:
    cols = "".join(f'<col style="width:{w}%">' for w in (12, 13, 27, 32, 16))
    rows = [
        f'<table class="controls"><colgroup>{cols}</colgroup>'
        "<tr><th>Framework</th><th>Control</th><th>Requirement (paraphrased)</th>"
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


def communications(result: DrillResult) -> str:
    """The incident's status-page messages as posted (status, the page's receive time, text)."""
    rows = result.extra.get("communications") or []
    return "".join(
        f"<p><b>{_e(r.get('status', '?'))}</b>, posted {_e(r.get('posted_at', '?'))}</p>"
        f"<pre>{_e(r.get('text', ''))}</pre>"
        for r in rows
        if isinstance(r, dict)
    )


def _drill_section(
    result: DrillResult,
    anchor: str,
    files: Mapping[str, str],
    roles: Mapping[str, str] | None = None,
) -> str:
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
        f"<tr><td>Counts as evidence</td><td>{_e(result.evidence_status or 'not judged')}"
        "</td></tr>"
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
    parts.append("<h3>Risk rationale</h3>" + audit.risk_rationale(result))
    parts.append("<h3>Objectives and pass criteria</h3>" + audit.pass_criteria(result))
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
    if result.extra.get("communications"):
        parts.append("<h3>Communications</h3>" + communications(result))
    parts.append("<h3>Validation checklist</h3>" + checklist_table(result))
    parts.append("<h3>Integrity proofs</h3>" + audit.integrity_proofs(result))
    parts.append("<h3>Deviations</h3>" + audit.deviations_table(result))
    parts.append("<h3>Remediation</h3>" + audit.remediation_table(result, roles or {}))
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
    *,
    roles: Mapping[str, str] | None = None,
    signed: bool = False,
) -> str:
    roles = dict(roles or {})
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
        "UTC window (first drill start to last drill end)": when,
        "Pack generated": fmt_wall(created),
        "Operator": operator,
        "Drills": f"{len(results)} ({tally})",
    }
    sections = [(a, h) for a, h in audit.SECTIONS if a != "overdue" or stale is not None]
    sections += [(a, f"Drill: {r.scenario_id}") for a, r in zip(anchors, results, strict=True)]
    body = [
        f"<h1>Disaster-recovery drill evidence — run {_e(run_id)}</h1>",
        '<p class="small">Generated by drillkit. Each drill provisions a disposable replica of '
        "the stack, drives traffic, injects a documented failure, runs the documented recovery "
        "procedure and measures RTO (fault injection to recovery), RPO (span of acknowledged "
        "writes lost) and the validation checklist. Times are UTC; T+ is relative to the fault "
        "injection.</p>",
        '<h2 id="plain-summary">Summary in plain language</h2>' + audit.plain_summary(results),
        audit.contents(sections),
        '<h2 id="run">Run</h2><table class="meta">'
        + "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in meta.items())
        + "</table>",
        '<h2 id="roles">Roles</h2>' + audit.roles_table(roles),
        '<h2 id="versions">Versions and images</h2>' + audit.versions_table(results, environment),
        "<h2>Environment</h2>" + _kv_table(environment),
        '<h2 id="summary">Achieved against target</h2>' + summary_table(results, anchors),
    ]
    if stale is not None:
        if stale:
            body.append(
                '<h2 id="overdue">Drills overdue</h2><table><tr><th>Scenario</th><th>Why</th></tr>'
                + "".join(f"<tr>{_cell(s)}{_cell(why, 'warn')}</tr>" for s, why in stale)
                + "</table>"
            )
        else:
            body.append(
                '<h2 id="overdue">Drills overdue</h2><p class="ok">None: every scenario passed '
                "within its re-run interval.</p>"
            )
    body.append(
        '<h2 id="controls">Control mapping (clause to artifact)</h2>'
        '<p class="small">Requirements are paraphrased; read the standard for its '
        "wording. Drills listed are those in this pack bearing on the control; each links to "
        "its section, whose record is drill-&lt;id&gt;.json and chart timeline-&lt;id&gt;.png."
        "</p>" + _controls_table(results, anchors)
    )
    body.append(
        '<h2 id="verifying">Verifying this pack</h2><p class="small">manifest.json lists the SHA-256 '
        "of every file in this folder; manifest.sha256 holds the SHA-256 of "
        "manifest.json (the pack hash). Check with <code>sha256sum -c manifest.sha256"
        "</code>, then each file against manifest.json, and compare the pack hash with "
        "the one recorded when the pack was issued (printed by <code>drillkit finish</code> "
        "and kept in reports/history/packs.jsonl, outside the pack). "
        + (
            "manifest.json.sig is an SSH signature of manifest.json (namespace "
            "drillkit-evidence): <code>drillkit verify-pack PACK --expected-hash HASH "
            "--allowed-signers FILE</code> checks all of it.</p>"
            if signed
            else "This pack is not signed (no signing key was given).</p>"
        )
    )
    body.append(_signoff(roles))
    for result, anchor, entry in zip(results, anchors, files, strict=True):
        body.append(_drill_section(result, anchor, entry, roles))
    return standalone_html(f"Drill evidence — run {run_id}", "\n".join(body))
