"""Incident communications: status-page updates posted by the runbook, and proof of their timing.

Seed 004 "External Communication: Status Page Updates — update within 5 minutes of incident;
include current status, estimated resolution time"; seed 003's "Initial Alert Template" (INCIDENT:
P[0-3], Incident ID INC-YYYYMMDD-HHMMSS, Started, Status: Investigating) and its final "RESOLVED"
communication (Time, Duration, Root Cause, Resolution, Monitoring, Post-Mortem). The texts are
filled from the drill record (the fault's time, severity, title, the runbook steps done, the
measured duration), posted to the stack's status page (`stack: {statuspage: true}`), and the
checks read them back from the page, whose own receive time is what the deadline is measured by.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import requests

from drillkit.core.context import DrillContext
from drillkit.core.measure import recovery_time
from drillkit.core.registry import CHECKS, RECOVERY, Duration, optional_services
from drillkit.errors import CheckFailed, EnvironmentBroken, StepFailed
from drillkit.stack.services.statuspage import API_KEY, INCIDENTS_PATH, STATUS_PATH, STATUSPAGE
from drillkit.wait import wait_for

optional_services("statuspage", STATUSPAGE)

IC = "drillkit drill operator"
PHASES = ("initial", "resolution")
INITIAL_DEADLINE_S = 300.0
"""Seed 004: "Update within 5 minutes of incident"."""
RESOLUTION_DEADLINE_S = 3600.0
"""Seed 003: final communications "Within 1 hour" of resolution."""


@dataclass
class Communications:
    """What post-status-update posted: the incident's reference, its page id, each message."""

    ref: str | None = None
    page_incident: int | None = None
    messages: dict[str, str] = field(default_factory=dict)
    """phase ('initial', 'resolution') -> the text posted."""


def fmt_utc(wall: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(wall))


def incident_ref(fault_wall: float) -> str:
    """Seed 003's incident id: INC-$(date +%Y%m%d-%H%M%S), of the moment the incident began."""
    return "INC-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime(fault_wall))


def initial_alert(
    ref: str, severity: str, title: str, started_wall: float, eta_s: float | None
) -> str:
    """Seed 003's Initial Alert Template with seed 004's status-page fields (current status,
    estimated resolution time)."""
    eta = f"within {eta_s:g} s (recovery objective)" if eta_s is not None else "under investigation"
    return (
        f"INCIDENT: {severity} - {title}\n"
        f"Incident ID: {ref}\n"
        f"Started: {fmt_utc(started_wall)}\n"
        "Status: Investigating\n"
        f"IC: {IC}\n"
        f"Estimated resolution: {eta}"
    )


def resolution_notice(
    ref: str, resolved_wall: float, duration_s: float, root_cause: str, resolution: list[str]
) -> str:
    """Seed 003's final communication ("RESOLVED - INC-..."), filled from the drill record."""
    return (
        f"RESOLVED - {ref}\n"
        f"Time: {fmt_utc(resolved_wall)}\n"
        f"Duration: {duration_s:.1f} s\n"
        f"Root Cause: {root_cause}\n"
        f"Resolution: {'; '.join(resolution) or 'none recorded'}\n"
        "Monitoring: probes passing; observation window continues\n"
        "Post-Mortem: scheduled with the drill review"
    )


def _page_url(ctx: DrillContext) -> str:
    kind = ctx.stack.kinds.get("statuspage")
    if kind is None:
        raise EnvironmentBroken(
            "the stack has no status page (scenario needs stack: {statuspage: true})"
        )
    return str(kind.url)


def _page_incidents(ctx: DrillContext) -> list[dict[str, Any]]:
    r = requests.get(_page_url(ctx) + INCIDENTS_PATH, timeout=5)
    r.raise_for_status()
    return list(r.json()["incidents"])


def _post(ctx: DrillContext, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = requests.post(
        _page_url(ctx) + path,
        json=body,
        headers={"Authorization": f"Bearer {ctx.stack.secrets[API_KEY]}"},
        timeout=5,
    )
    if r.status_code != 201:
        raise StepFailed(
            "post-status-update", f"the status page answered {r.status_code}: {r.text[:200]}"
        )
    return dict(r.json())


def _fault_step(ctx: DrillContext) -> str:
    faults = [s.name for s in ctx.result.steps if s.kind == "fault"]
    return faults[0] if faults else ctx.result.failure_class


def _await_recovery(ctx: DrillContext, t_fault: float, passes: int, timeout: float) -> float:
    """Until the probes show recovery (every failed probe passing again, `passes` passing samples
    in a row at the end, and no call begun before that still running): the candidate
    T_recovered. A call begun during the outage is stamped when it ends (a journey waiting out
    its timeouts): announced before it ends, the all-clear could precede the verdict's
    T_recovered."""
    found: list[float] = []

    def recovered() -> bool:
        samples = ctx.probes.snapshot()
        t_rec = recovery_time(samples, t_fault, passes)
        if t_rec is None or ctx.probes.passing_streak(t_fault) < passes:
            return False
        oldest = ctx.probes.oldest_in_flight()
        if oldest is not None and oldest < t_rec:
            return False
        found.append(t_rec)
        return True

    try:
        wait_for(recovered, what="the probes to pass again", timeout_s=timeout, interval_s=0.1)
    except EnvironmentBroken as exc:
        raise StepFailed("post-status-update", f"no recovery to announce: {exc}") from exc
    return found[-1]


@RECOVERY("post-status-update", needs=("statuspage",))
def post_status_update(
    ctx: DrillContext, phase: str, passes: int = 5, timeout: Duration = Duration(60.0)
) -> str:
    """Post the incident's status-page update. `initial`: open the incident (status
    investigating) with the initial alert. `resolution`: once the probes show recovery (`passes`
    passing samples in a row), post the RESOLVED update and close the incident."""
    if phase not in PHASES:
        raise StepFailed("post-status-update", f"phase must be one of {PHASES}, got {phase!r}")
    res = ctx.result
    t_fault = res.markers.get("fault")
    if t_fault is None:
        raise StepFailed("post-status-update", "no fault time recorded")
    comms = ctx.part(Communications)
    comms.ref = comms.ref or incident_ref(res.wall(t_fault))
    if phase == "initial":
        text = initial_alert(
            comms.ref, res.severity, res.title, res.wall(t_fault), res.objectives.rto_s
        )
        impact = "critical" if res.severity == "P0" else "major"
        out = _post(
            ctx,
            INCIDENTS_PATH,
            {
                "name": f"{comms.ref}: {res.title}",
                "status": "investigating",
                "impact": impact,
                "body": text,
            },
        )
        comms.page_incident = int(out["id"])
    else:
        t_rec = _await_recovery(ctx, t_fault, passes, float(timeout))
        done = [s.name for s in res.steps if s.kind == "recovery" and s.ok]
        text = resolution_notice(
            comms.ref, res.wall(t_rec), t_rec - t_fault, _fault_step(ctx), done
        )
        if comms.page_incident is None:
            out = _post(
                ctx,
                INCIDENTS_PATH,
                {
                    "name": f"{comms.ref}: {res.title}",
                    "status": "resolved",
                    "impact": "major",
                    "body": text,
                },
            )
            comms.page_incident = int(out["id"])
        else:
            _post(
                ctx,
                f"{INCIDENTS_PATH}/{comms.page_incident}/updates",
                {"status": "resolved", "body": text},
            )
    comms.messages[phase] = text
    ctx.evidence(f"status page: {phase} update", text)
    _record(ctx)
    return f"{phase} update posted for {comms.ref} (status page incident {comms.page_incident})"


def _record(ctx: DrillContext) -> None:
    """The messages as posted, with the page's receive times: the evidence pack's section."""
    comms = ctx.part(Communications)
    rows = []
    for incident in _page_incidents(ctx):
        if incident["id"] != comms.page_incident:
            continue
        for update in incident["updates"]:
            rows.append(
                {
                    "status": update["status"],
                    "posted_at": fmt_utc(float(update["received_at"])),
                    "text": update["body"],
                }
            )
    ctx.figure("communications", rows)


def _updates(ctx: DrillContext) -> tuple[str, list[dict[str, Any]]]:
    comms = ctx.part(Communications)
    if comms.ref is None:
        raise CheckFailed("no status-page update was posted (no incident reference)")
    mine = [i for i in _page_incidents(ctx) if str(i["name"]).startswith(comms.ref)]
    return comms.ref, [u for i in mine for u in i["updates"]]


@CHECKS(
    "status-initial-update",
    title="The initial status-page update was posted within the deadline after detection",
    needs=("statuspage",),
)
def status_initial_update(
    ctx: DrillContext, within: Duration = Duration(INITIAL_DEADLINE_S)
) -> str:
    """The status page holds the incident's 'investigating' update, received after the fault
    and at most `within` after detection (seed 004: 5 minutes), naming the incident id, severity
    and start time from the drill record."""
    res = ctx.result
    t_fault = res.markers.get("fault")
    if t_fault is None:
        raise CheckFailed("no fault time recorded")
    t_detected = res.markers.get("detected", t_fault)
    try:
        ref, updates = _updates(ctx)
    except CheckFailed:
        raise CheckFailed("no initial status-page update was ever posted") from None
    first = [u for u in updates if u["status"] == "investigating"]
    if not first:
        raise CheckFailed(f"no initial ('investigating') update was posted for {ref}")
    at = float(first[0]["received_at"])
    late = at - res.wall(t_detected)
    if at < res.wall(t_fault):
        raise CheckFailed(
            f"the initial update was received {res.wall(t_fault) - at:.1f} s before the fault"
        )
    if late > within:
        raise CheckFailed(
            f"the initial update was posted {late:.1f} s after detection (deadline {within:g} s)"
        )
    text = str(first[0]["body"])
    expected = (f"Incident ID: {ref}", res.severity, f"Started: {fmt_utc(res.wall(t_fault))}")
    missing = [e for e in expected if e not in text]
    if missing:
        raise CheckFailed(f"the initial update does not carry {missing}")
    return f"{ref}: initial update posted {late:.2f} s after detection (deadline {within:g} s)"


@CHECKS(
    "status-resolution-update",
    title="The resolution was posted after recovery, within the deadline",
    needs=("statuspage",),
)
def status_resolution_update(
    ctx: DrillContext, within: Duration = Duration(RESOLUTION_DEADLINE_S)
) -> str:
    """The incident's 'resolved' update was received after T_recovered (never an all-clear while
    users still fail) and at most `within` after it (seed 003: 1 hour); the page shows all
    systems operational again."""
    res = ctx.result
    t_rec = res.markers.get("recovered")
    if t_rec is None:
        raise CheckFailed("never recovered")
    ref, updates = _updates(ctx)
    resolved = [u for u in updates if u["status"] == "resolved"]
    if not resolved:
        raise CheckFailed(f"no resolution update was posted for {ref}")
    at = float(resolved[-1]["received_at"])
    after = at - res.wall(t_rec)
    if after < 0:
        raise CheckFailed(
            f"the resolution was posted {-after:.1f} s before recovery (premature all-clear)"
        )
    if after > within:
        raise CheckFailed(
            f"the resolution was posted {after:.1f} s after recovery (deadline {within:g} s)"
        )
    if f"RESOLVED - {ref}" not in str(resolved[-1]["body"]):
        raise CheckFailed("the resolution update does not name the incident")
    r = requests.get(_page_url(ctx) + STATUS_PATH, timeout=5)
    indicator = r.json()["status"]["indicator"]
    if indicator != "none":
        raise CheckFailed(f"the status page still shows indicator {indicator!r}")
    return f"{ref}: resolution posted {after:.2f} s after recovery; page operational"
