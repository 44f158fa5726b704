"""Reporters: the terminal progress and summary, timeline charts, Allure results, the evidence
pack and the drill history.

They know only `DrillResult` (drillkit.core.results) and `Event` (drillkit.core.events); nothing
imports a reporter except the plugin and the command line, which drive them. Only the terminal
progress reporter subscribes to the event bus (live, one line per lifecycle event); the others
work on the finished record, the one thing that holds every figure and verdict: the plugin
attaches each drill's record to Allure once its run (teardown included) is over and writes Allure's
run-level files at the end of the session; `drillkit finish` builds the evidence pack and appends
the history from the records saved in reports/runs/<session>/. This module holds the small helpers
they share and imports neither matplotlib nor allure, so `drillkit.reporting.history` stays cheap
to import.

Modules:
- terminal: `progress_subscriber(write_line, t0)` (an event-bus subscriber), `summary_lines`
- charts: `timeline_png(result)`, `trend_png(history_rows, scenario_id)`
- allure_report: `attach_to_allure(result)`, `write_environment`, `write_executor`,
  `write_categories`
- evidence (a package: html, page, audit, render, pack, sign): `build_pack(...)`,
  `verify_pack(dir, expected_hash, allowed_signers)`,
  `scan_for_secrets(dir, secrets)`
- history: `append_history`, `append_row`, `load_history`, `stale_scenarios`
- controls: `CONTROLS`, the control-framework mapping table
- ci: exit codes, `junit_properties`, the breach and overdue notification texts
- notify: the webhook (`post`: a Slack-compatible JSON POST)
- roles: executor, verifier, approver for the sign-off
- dashboard: the history dashboard page (`write_dashboard`)
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from drillkit.core.results import DrillResult

REDACTED = "[redacted]"

_SECRET_KEY = re.compile(
    r"pass(word|wd)?|secret|token|credential|private|api_?key|auth|dsn|cookie|session",
    re.IGNORECASE,
)


def is_secret_key(name: str) -> bool:
    """True for a mapping key whose value may be a credential (password, token, DSN, ...)."""
    return bool(_SECRET_KEY.search(name))


def fmt_secs(value: float | None, missing: str = "n/a") -> str:
    """Seconds for people: 2 decimals under 10 s, 1 above, minutes/hours past 100 s."""
    if value is None:
        return missing
    if abs(value) < 10:
        return f"{value:.2f} s"
    if abs(value) < 100:
        return f"{value:.1f} s"
    if abs(value) < 3600:
        return f"{value:.0f} s ({value / 60:.1f} min)"
    return f"{value:.0f} s ({value / 3600:.1f} h)"


def fmt_wall(ts: float | None, missing: str = "n/a") -> str:
    """Unix seconds as UTC wall-clock with milliseconds: '2026-11-23 16:47:03.120 UTC'."""
    if ts is None:
        return missing
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def iso_wall(ts: float) -> str:
    """Unix seconds as ISO 8601 UTC, to the second ('2026-11-23T16:47:03+00:00')."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def verdict_word(result: DrillResult) -> str:
    """'PASSED', 'FAILED', 'ERROR', ... from the result's status."""
    return (result.status or "unknown").upper()


def t_fault(result: DrillResult) -> float | None:
    """T_fault on the drill's clock: the marker, else the measurement, else the first fault step."""
    if "fault" in result.markers:
        return result.markers["fault"]
    if result.measurement is not None:
        return result.measurement.t_fault
    starts = [s.t_start for s in result.steps if s.kind == "fault"]
    return min(starts) if starts else None


def t_detected(result: DrillResult) -> float | None:
    if "detected" in result.markers:
        return result.markers["detected"]
    return result.measurement.t_detected if result.measurement else None


def t_recovered(result: DrillResult) -> float | None:
    if "recovered" in result.markers:
        return result.markers["recovered"]
    return result.measurement.t_recovered if result.measurement else None


def checklist_counts(result: DrillResult) -> tuple[int, int]:
    """(passed, total) checklist items."""
    return sum(1 for c in result.checks if c.ok), len(result.checks)


def safe_name(text: str) -> str:
    """A file-name-safe form of a scenario id: letters, digits, '.', '_' and '-' only."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return name or "drill"


def _secret_forms(secret: str) -> list[str]:
    """A secret as it may appear in a text artifact: raw, HTML-escaped, JSON-escaped."""
    forms = {secret, html.escape(secret), html.escape(secret, quote=False)}
    forms.add(json.dumps(secret)[1:-1])
    forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    return sorted(forms, key=len, reverse=True)


def clean_secrets(secrets: Iterable[str]) -> list[str]:
    """Non-empty secrets, longest first (so a secret containing another is replaced whole)."""
    return sorted({s for s in secrets if s}, key=len, reverse=True)


def redact_text(text: str, secrets: Sequence[str]) -> str:
    """Replace every occurrence of each secret (raw, HTML- or JSON-escaped) by '[redacted]'.

    Guaranteed: no secret occurs in the result. Degenerate secrets that '[redacted]' itself
    contains, or that a replacement re-creates at its edges, are deleted instead.
    """
    secrets = clean_secrets(secrets)
    forms = [form for secret in secrets for form in _secret_forms(secret)]
    if not any(form in text for form in forms):
        return text
    mark = REDACTED if not any(s in REDACTED for s in secrets) else ""
    for _ in range(8):
        for form in forms:
            if form in text:
                text = text.replace(form, mark)
        if not any(s in text for s in secrets):
            return text
    while any(s in text for s in secrets):  # each pass shortens the text: terminates
        for secret in secrets:
            text = text.replace(secret, "")
    return text


def redact_data(data: Any, secrets: Sequence[str]) -> Any:
    """A copy of JSON-like data with every string (keys included) redacted."""
    if not secrets:
        return data
    if isinstance(data, str):
        return redact_text(data, secrets)
    if isinstance(data, dict):
        return {redact_data(k, secrets): redact_data(v, secrets) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [redact_data(v, secrets) for v in data]
    return data


def redact_result(result: DrillResult, secrets: Sequence[str]) -> DrillResult:
    """A copy of the result with every secret replaced in every string it carries."""
    secrets = clean_secrets(secrets)
    if not secrets:
        return result
    return DrillResult.from_json(redact_data(result.to_json(), secrets))


__all__ = [
    "REDACTED",
    "checklist_counts",
    "clean_secrets",
    "fmt_secs",
    "fmt_wall",
    "is_secret_key",
    "iso_wall",
    "redact_data",
    "redact_result",
    "redact_text",
    "safe_name",
    "t_detected",
    "t_fault",
    "t_recovered",
    "verdict_word",
]
