"""A drill's record in the Allure report: labels, links, parameters, steps and attachments.

`attach_to_allure(result)` is called while the drill's pytest test runs (in its fixture or its
body); it writes straight into that test's Allure result, not through `allure.step` (which would
file everything under the fixture's "Set up"): each step with its start and stop on the drill's
own clock (converted to wall time), its title also carrying the measured duration and outcome;
the attachments on the test. After teardown the plugin calls `set_test_window`, so the test
spans the drill's UTC window and each label appears once. Outside an Allure run: nothing.
A failed step says FAILED in its title and carries its error as an attachment; the test's own
verdict (an assertion on the breaches) is the plugin's business, not this module's.

The results-folder files (`environment.properties`, `executor.json`, `categories.json`) are
written by `write_environment`, `write_executor` and `write_categories`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import allure

from drillkit.core.measure import fmt_s
from drillkit.core.results import DrillResult, StepRecord
from drillkit.reporting import (
    checklist_counts,
    fmt_secs,
    fmt_wall,
    is_secret_key,
    redact_result,
    t_detected,
    t_fault,
    t_recovered,
)
from drillkit.reporting.charts import timeline_png
from drillkit.reporting.evidence import checklist_table, objectives_table, standalone_html

EPIC = "Disaster-recovery drills"
SEVERITY = {
    "P0": allure.severity_level.BLOCKER,
    "P1": allure.severity_level.CRITICAL,
    "P2": allure.severity_level.NORMAL,
    "P3": allure.severity_level.MINOR,
}
PARAMETER_KEYS = re.compile(r"version|engine|image|commit|platform|arch|kernel", re.IGNORECASE)
"""Environment keys shown as test parameters (secret-like keys are never shown)."""

CATEGORIES: list[dict[str, Any]] = [
    {"name": "RTO breach", "messageRegex": r"(?s).*\bRTO[ :].*", "matchedStatuses": ["failed"]},
    {"name": "RPO breach", "messageRegex": r"(?s).*\bRPO[ :].*", "matchedStatuses": ["failed"]},
    {
        "name": "Missed detection",
        "messageRegex": r"(?s).*\b(MTTD .*> objective|not detected|no probe failed).*",
        "matchedStatuses": ["failed"],
    },
    {
        "name": "Checklist failure",
        "messageRegex": r"(?s).*checklist: .*",
        "matchedStatuses": ["failed"],
    },
    {
        "name": "Recovery step failed",
        "messageRegex": r"(?s).*step .*",
        "matchedStatuses": ["failed", "broken"],
    },
    {
        "name": "Sabotaged drill not caught",
        "messageRegex": r"(?s).*sabotaged drill .* was not caught.*",
        "matchedStatuses": ["failed"],
    },
    {"name": "Environment broken", "matchedStatuses": ["broken"]},
]
"""Allure matches messageRegex against the whole message ("AssertionError: RTO ...\\n"), without
DOTALL, so each pattern allows a prefix and newlines: the spec's "RTO .*" as a search."""


@dataclass
class StepLine:
    """One Allure step to write: its title, error text (for FAILED steps) and sub-steps."""

    title: str
    failed: bool = False
    error: str | None = None
    output: str | None = None
    children: list[StepLine] = field(default_factory=list)
    start: float | None = None
    """Wall-clock seconds (unix) when it began on the drill's clock; None: unknown."""
    stop: float | None = None
    broken: bool = False
    """The environment failed here (not a breach): Allure's 'broken' status."""


def _outcome(step: StepRecord) -> str:
    if step.ok is None:
        return "not finished" if step.t_end is None else "not judged"
    return "ok" if step.ok else "FAILED"


def _step_line(label: str, step: StepRecord, result: DrillResult) -> StepLine:
    duration = "did not finish" if step.t_end is None else fmt_s(step.t_end - step.t_start)
    outcome = _outcome(step)
    failed = step.ok is False or step.t_end is None
    if failed and "FAILED" not in outcome:
        outcome = f"FAILED ({outcome})"
    return StepLine(
        f"{label}: {step.name} — {duration} — {outcome}",
        failed=failed,
        error=step.error,
        output=step.output or None,
        start=result.wall(step.t_start),
        stop=result.wall(step.t_end if step.t_end is not None else step.t_start),
    )


def step_plan(result: DrillResult) -> list[StepLine]:
    """The steps `attach_to_allure` writes, in drill order: lifecycle phases and runbook steps
    (by time), then the validation checklist, then the verdict."""
    m, obj = result.measurement, result.objectives
    tf, td, tr = t_fault(result), t_detected(result), t_recovered(result)
    timed: list[tuple[float, int, StepLine]] = []

    def rel(t: float) -> str:
        ref = tf if tf is not None else result.t0_monotonic
        return f"T{'+' if t >= ref else '−'}{fmt_s(abs(t - ref))}"

    named = {"steady": "steady state: probes passing", "fault": "fault injection began"}
    for name, t in result.markers.items():
        if name in ("detected", "recovered"):
            continue
        title = named.get(name, f"phase: {name}")
        line = StepLine(f"{title} — {rel(t)} ({fmt_wall(result.wall(t))})")
        line.start = line.stop = result.wall(t)
        timed.append((t, 0, line))
    if td is not None and tf is not None:
        mttd = td - tf
        late = obj.detection_s is not None and mttd > obj.detection_s
        goal = f" (objective {fmt_secs(obj.detection_s)})" if obj.detection_s is not None else ""
        title = f"detected: first failed probe — MTTD {fmt_secs(mttd)}{goal} — "
        line = StepLine(title + ("FAILED" if late else "ok"), failed=late)
        line.start, line.stop = result.wall(tf), result.wall(td)
        timed.append((td, 0, line))
    elif tf is not None and m is not None:
        line = StepLine("detected: no probe failed after the fault — ok")
        line.start = line.stop = result.wall(tf)
        timed.append((tf, 2, line))
    for kind, label in (("fault", "fault"), ("recovery", "recovery")):
        steps = [s for s in result.steps if s.kind == kind]
        for i, step in enumerate(steps, 1):
            timed.append((step.t_start, 1, _step_line(f"{label} {i}/{len(steps)}", step, result)))
    others = [s for s in result.steps if s.kind not in ("fault", "recovery")]
    for step in others:
        timed.append((step.t_start, 1, _step_line(step.kind or "step", step, result)))
    if tr is not None and tf is not None:
        rto = tr - tf
        late = rto > obj.rto_s
        title = (
            f"recovered: probes passing again — RTO {fmt_secs(rto)} "
            f"(objective {fmt_secs(obj.rto_s)}) — {'FAILED' if late else 'ok'}"
        )
        line = StepLine(title, failed=late, start=result.wall(tf), stop=result.wall(tr))
        timed.append((tr, 3, line))
    elif m is not None and m.rto_s is None:
        end = max((t for t, _, _ in timed), default=result.t0_monotonic)
        timed.append(
            (
                end,
                3,
                StepLine(
                    f"recovered: never, within the observation (objective {fmt_secs(obj.rto_s)}) "
                    "— FAILED",
                    failed=True,
                ),
            )
        )
    plan = [line for _, _, line in sorted(timed, key=lambda x: (x[0], x[1]))]
    # after recovery: the ledger, the checklist and the verdict, from the last timed event to
    # the end of the drill (their own times are not recorded one by one)
    after = max((line.stop for line in plan if line.stop is not None), default=result.t0_wall)
    end = result.wall_end if result.wall_end is not None else after
    end = max(end, after)

    if m is not None:
        lost = m.lost + m.altered
        rpo_bad = m.rpo_s > obj.rpo_s or (obj.rpo_s == 0 and lost > 0)
        plan.append(
            StepLine(
                f"write ledger: {m.lost} lost, {m.altered} altered of {m.acked} acknowledged — "
                f"RPO {fmt_secs(m.rpo_s)} (objective {fmt_secs(obj.rpo_s)}) — "
                f"{'FAILED' if rpo_bad else 'ok'}",
                failed=rpo_bad,
                start=after,
                stop=end,
            )
        )
    passed, total = checklist_counts(result)
    if total:
        checklist = StepLine(
            f"validation checklist — {passed}/{total} passed — "
            f"{'ok' if passed == total else 'FAILED'}",
            failed=passed != total,
            start=after,
            stop=end,
        )
        for check in result.checks:
            checklist.children.append(
                StepLine(
                    f"{check.title} — {'ok' if check.ok else 'FAILED'}",
                    failed=not check.ok,
                    error=None if check.ok else check.detail or None,
                    output=check.detail if check.ok and check.detail not in ("", "ok") else None,
                    start=after,
                    stop=end,
                )
            )
        plan.append(checklist)
    if result.error:
        first = result.error.strip().splitlines()[0] if result.error.strip() else "error"
        plan.append(
            StepLine(
                f"drill error — FAILED: {first}",
                failed=True,
                broken=True,
                error=result.error,
                start=end,
                stop=end,
            )
        )
    verdict = StepLine(
        f"verdict — {result.status.upper()}",
        failed=result.status not in ("passed",),
        broken=result.status in ("error", "aborted", "interrupted"),
        start=end,
        stop=end,
    )
    verdict.children = [
        StepLine(f"breach: {b}", failed=True, start=end, stop=end) for b in result.breaches
    ]
    plan.append(verdict)
    return plan


def lost_writes_csv(result: DrillResult) -> str:
    """kind,key,payload_hash,t_ack_relative_to_fault_s,ack_wall_utc: one row per lost/altered."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["kind", "key", "payload_hash", "t_ack_relative_to_fault_s", "ack_wall_utc"])
    tf = t_fault(result)
    for kind, writes in (("lost", result.lost), ("altered", result.altered)):
        for w in sorted(writes, key=lambda w: w.t_ack):
            rel = "" if tf is None else f"{w.t_ack - tf:.3f}"
            writer.writerow([kind, w.key, w.payload_hash, rel, fmt_wall(result.wall(w.t_ack))])
    return buf.getvalue()


def runbook_link(source: Mapping[str, str], base_url: str | None = None) -> tuple[str, str] | None:
    """(url, name) for the source runbook section, or None without a URL to give.

    The name reads "runbook 000: Procedure 1: Complete System Outage"; the url is
    source["url"], else `base_url` joined with source["file"]; a bare file path is no URL (a
    report reader cannot open it), so it makes no link.
    """
    runbook, section = source.get("runbook", ""), source.get("section", "")
    url = source.get("url")
    if not url and base_url and source.get("file"):
        url = base_url.rstrip("/") + "/" + source["file"].lstrip("/")
    if not url:
        return None
    name = f"runbook {runbook}: {section}" if section else f"runbook {runbook}"
    return url, name


def parameters(result: DrillResult) -> dict[str, float | str]:
    """Test parameters: objectives (seconds) and engine/database versions from the environment."""
    obj = result.objectives
    params: dict[str, float | str] = {
        "objective RTO (s)": obj.rto_s,
        "objective RPO (s)": obj.rpo_s,
        "objective detection (s)": "not judged" if obj.detection_s is None else obj.detection_s,
        "evidence": result.evidence_status or "not judged (an older record)",
    }
    for key, value in sorted(result.environment.items()):
        if PARAMETER_KEYS.search(key) and not is_secret_key(key):
            params[key] = str(value)
    return params


def _current_test() -> Any | None:
    """The Allure TestResult of the running pytest test, or None outside an Allure run."""
    from allure_commons import plugin_manager
    from allure_commons.model2 import TestResult

    for plugin in plugin_manager.get_plugins():
        logger = getattr(plugin, "allure_logger", None)
        if logger is not None and hasattr(logger, "get_last_item"):
            return logger.get_last_item(TestResult)
    return None


def test_result_of(item: Any) -> Any | None:
    """The Allure TestResult of a pytest item (allure-pytest's listener), or None."""
    listener = item.config.pluginmanager.get_plugin("allure_listener")
    if listener is None:
        return None
    uuid = listener._cache.get(item.nodeid)
    return listener.allure_logger.get_test(uuid) if uuid else None


def _ms(t: float | None) -> int | None:
    return None if t is None else round(t * 1000)


class _Writer:
    """Writes attachments into the results folder and builds model objects for them."""

    def __init__(self) -> None:
        from allure_commons import plugin_manager

        self.hook = plugin_manager.hook

    def attachment(self, body: str | bytes, name: str, kind: Any) -> Any:
        import uuid

        from allure_commons.model2 import Attachment

        file_name = f"{uuid.uuid4()}-attachment.{kind.extension}"
        self.hook.report_attached_data(body=body, file_name=file_name)
        return Attachment(name=name, source=file_name, type=kind.mime_type)

    def step(self, line: StepLine, start: int | None, stop: int | None) -> Any:
        from allure_commons.model2 import Status, StatusDetails, TestStepResult

        status = Status.BROKEN if line.broken else (Status.FAILED if line.failed else Status.PASSED)
        step = TestStepResult(
            name=line.title,
            status=status,
            start=_ms(line.start) if line.start is not None else start,
            stop=_ms(line.stop) if line.stop is not None else stop,
        )
        if line.error:
            step.statusDetails = StatusDetails(message=line.error.strip().splitlines()[0][:500])
            step.attachments.append(
                self.attachment(line.error, "error", allure.attachment_type.TEXT)
            )
        if line.output:
            step.attachments.append(
                self.attachment(line.output, "output", allure.attachment_type.TEXT)
            )
        step.steps = [self.step(child, step.start, step.stop) for child in line.children]
        return step


def _add_label(test: Any, name: str, value: str) -> None:
    from allure_commons.model2 import Label

    if not any(label.name == name and label.value == value for label in test.labels):
        test.labels.append(Label(name=name, value=value))


def _set_label(test: Any, name: str, value: str) -> None:
    """One label of this name (allure-pytest may have put a default there already)."""
    from allure_commons.model2 import Label

    test.labels = [label for label in test.labels if label.name != name]
    test.labels.append(Label(name=name, value=value))


def attach_to_allure(
    result: DrillResult, redact: Sequence[str] = (), runbook_base_url: str | None = None
) -> None:
    """Label, link, parametrise, step and attach the drill to the current Allure test.

    Written into the test itself (not under a fixture's set-up, where a drill run by a fixture
    would otherwise land): each step with its start and stop on the drill's own clock. `redact`
    lists secrets to replace by "[redacted]" in everything attached (results are secret-free
    already; this is a second line of defence). Outside an Allure run: nothing.
    """
    test = _current_test()
    if test is None:
        return
    from allure_commons.model2 import Link, Parameter

    result = redact_result(result, redact)
    _set_label(test, "epic", EPIC)
    _set_label(test, "feature", result.failure_class)
    _set_label(test, "story", result.scenario_id)
    severity = SEVERITY.get(result.severity.upper(), allure.severity_level.NORMAL)
    _set_label(test, "severity", severity.value)
    for tag in dict.fromkeys(t for t in result.tags if t):  # once each, marks or not
        _add_label(test, "tag", tag)
    link = runbook_link(result.source or {}, runbook_base_url)
    if link and not any(existing.url == link[0] for existing in test.links):
        test.links.append(Link(type="link", url=link[0], name=link[1]))
    known = {p.name for p in test.parameters}
    for name, value in parameters(result).items():
        if name in known:
            continue
        # excluded: an objective or version change must not split the test's Allure history
        test.parameters.append(Parameter(name=name, value=repr(value), excluded=True))

    writer = _Writer()
    plan = step_plan(result)
    test.steps.extend(writer.step(line, None, None) for line in plan)

    att = allure.attachment_type
    files: list[tuple[str | bytes, str, Any]] = [
        (timeline_png(result), "timeline", att.PNG),
        (
            standalone_html(f"{result.scenario_id}: objectives", objectives_table(result)),
            "objectives vs measured",
            att.HTML,
        ),
        (
            standalone_html(f"{result.scenario_id}: checklist", checklist_table(result)),
            "validation checklist",
            att.HTML,
        ),
        (
            lost_writes_csv(result),
            f"lost and altered writes ({len(result.lost) + len(result.altered)})",
            att.CSV,
        ),
    ]
    if result.scenario_text:
        files.append((result.scenario_text, "scenario", att.YAML))
    files += [(text, f"log tail: {svc}", att.TEXT) for svc, text in sorted(result.logs.items())]
    if result.pg_errors:
        files.append(("\n".join(result.pg_errors), "PostgreSQL errors seen", att.TEXT))
    files += [(text, f"evidence: {n}", att.TEXT) for n, text in sorted(result.evidence.items())]
    test.attachments.extend(writer.attachment(body, name, kind) for body, name, kind in files)


def set_test_window(test: Any, result: DrillResult) -> None:
    """The test's start and stop: the drill's own (a drill run in a fixture would otherwise
    show the test body's few milliseconds); and each label once (allure-pytest adds a tag per
    pytest mark after the set-up, where the scenario's tags already are)."""
    seen: set[tuple[str, str]] = set()
    labels = []
    for label in test.labels:
        if (label.name, label.value) not in seen:
            seen.add((label.name, label.value))
            labels.append(label)
    test.labels = labels
    end = result.wall_end
    if end is None:
        stops = [s.stop for s in test.steps if s.stop is not None]
        end = max(stops) / 1000 if stops else None
    test.start = _ms(result.t0_wall)
    if end is not None:
        test.stop = _ms(end)


def _prop_escape(text: str, key: bool) -> str:
    """Java .properties escaping (ISO-8859-1 file: everything else as \\uXXXX)."""
    out = []
    for i, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch in "=:#!" or (ch == " " and (key or i == 0)):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) > 0x7E:
            out.extend(f"\\u{unit:04x}" for unit in _utf16_units(ch))
        else:
            out.append(ch)
    return "".join(out)


def _utf16_units(ch: str) -> list[int]:
    data = ch.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def write_environment(results_dir: Path, env: Mapping[str, Any]) -> Path:
    """Write Allure's environment.properties; secret-like keys (password, token, ...) are left
    out. Returns the file."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{_prop_escape(str(k), key=True)}={_prop_escape(str(v), key=False)}"
        for k, v in sorted(env.items(), key=lambda kv: str(kv[0]))
        if not is_secret_key(str(k))
    ]
    path = results_dir / "environment.properties"
    path.write_text("".join(line + "\n" for line in lines), encoding="ascii")
    return path


def write_executor(results_dir: Path, info: Mapping[str, Any]) -> Path:
    """Write Allure's executor.json (name, type, buildName, buildUrl, reportUrl, ...)."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    data = {"name": "drillkit", "type": "drillkit", **dict(info)}
    path = results_dir / "executor.json"
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def write_categories(results_dir: Path) -> Path:
    """Write Allure's categories.json: RTO breach, RPO breach, missed detection, checklist
    failure, recovery step failed, sabotaged drill not caught, environment broken."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "categories.json"
    path.write_text(json.dumps(CATEGORIES, indent=1) + "\n", encoding="utf-8")
    return path


__all__ = [
    "CATEGORIES",
    "EPIC",
    "SEVERITY",
    "StepLine",
    "attach_to_allure",
    "lost_writes_csv",
    "parameters",
    "runbook_link",
    "set_test_window",
    "step_plan",
    "test_result_of",
    "write_categories",
    "write_environment",
    "write_executor",
]
