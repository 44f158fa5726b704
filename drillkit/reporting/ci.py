"""What CI reads: the exit code of a drill session, the JUnit properties of each drill, and the
texts of the notifications (a breach, a broken environment, overdue drills).

Exit codes (`pytest drills ...` through the plugin, and `drillkit finish`):

| code | meaning                                                                           |
|------|-----------------------------------------------------------------------------------|
| 0    | every drill passed                                                                |
| 1    | a drill breached its objectives or checklist (or another test failed)             |
| 2    | interrupted (Ctrl-C, SIGTERM): pytest's own                                       |
| 3    | the environment broke (a drill errored or aborted) and nothing breached           |
| 4    | bad input: invalid scenario files, options or catalogue; no drill record to finish |
| 5    | no drill selected: pytest's own                                                   |
| 6    | `drillkit finish` found a secret the session issued in a file under reports/      |

A breach wins over a broken environment: a finding is never hidden behind a flaky host.

Nothing here reads a secret: the texts hold scenario ids, figures, verdicts and breach
messages, all of which a record carries secret-free; callers pass the secrets they know to
`redact_text` as a second line of defence.
"""

from __future__ import annotations

from collections.abc import Sequence

from drillkit.core.results import DrillResult
from drillkit.reporting import checklist_counts, fmt_secs

EXIT_PASSED = 0
EXIT_BREACH = 1
EXIT_INTERRUPTED = 2
EXIT_ENVIRONMENT = 3
EXIT_BAD_INPUT = 4
EXIT_NO_DRILLS = 5
EXIT_SECRET_LEAK = 6

BROKEN_STATUSES = ("error", "aborted", "interrupted")


def _num(value: float | int | None) -> str:
    return "" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def junit_properties(result: DrillResult) -> list[tuple[str, str]]:
    """The drill's figures as JUnit <property> pairs (pytest's `user_properties`): names prefixed
    `drill.`; seconds with three decimals; an empty value where nothing was measured."""
    m, obj = result.measurement, result.objectives
    passed, total = checklist_counts(result)
    props: list[tuple[str, str]] = [
        ("drill.scenario", result.scenario_id),
        ("drill.run_id", result.run_id),
        ("drill.status", result.status),
        ("drill.category", result.category or ""),
        ("drill.rto_s", _num(None if m is None else m.rto_s)),
        ("drill.rto_objective_s", _num(float(obj.rto_s))),
        ("drill.rpo_s", _num(None if m is None else m.rpo_s)),
        ("drill.rpo_objective_s", _num(float(obj.rpo_s))),
        ("drill.mttd_s", _num(None if m is None else m.mttd_s)),
        ("drill.lost_writes", _num(None if m is None else m.lost)),
        ("drill.altered_writes", _num(None if m is None else m.altered)),
        ("drill.acked_writes", _num(None if m is None else m.acked)),
        ("drill.checklist_passed", str(passed)),
        ("drill.checklist_failed", str(total - passed)),
        ("drill.checklist_total", str(total)),
    ]
    if result.breaches:
        props.append(("drill.breach", "; ".join(result.breaches)))
    if result.error and result.status in BROKEN_STATUSES:
        props.append(("drill.error", result.error.strip().splitlines()[0][:500]))
    return props


def session_exit_code(breaches: int, broken: int, other_failures: int, pytest_status: int) -> int:
    """The session's exit code from what its tests did (see the module docstring).

    `breaches`: drill tests whose verdict failed; `broken`: tests that errored because the
    environment broke (EnvironmentBroken); `other_failures`: any other failed or errored test.
    pytest's own codes other than 1 (interrupted, usage error, no tests) stand."""
    if pytest_status != EXIT_BREACH:
        return pytest_status
    if breaches or other_failures:
        return EXIT_BREACH
    return EXIT_ENVIRONMENT if broken else pytest_status


def _figures(result: DrillResult) -> str:
    m = result.measurement
    if m is None:
        return "not measured"
    rto = "never recovered" if m.rto_s is None else fmt_secs(m.rto_s)
    return (
        f"RTO {rto} (objective {fmt_secs(result.objectives.rto_s)}), "
        f"RPO {fmt_secs(m.rpo_s)} (objective {fmt_secs(result.objectives.rpo_s)}), "
        f"lost {m.lost + m.altered}/{m.acked}"
    )


def breach_message(results: Sequence[DrillResult], run_label: str = "") -> str | None:
    """The notification for breached or broken drills; None when every drill passed."""
    bad = [r for r in results if r.status == "failed" or r.status in BROKEN_STATUSES]
    if not bad:
        return None
    failed = sum(1 for r in bad if r.status == "failed")
    head = f"drillkit{f' {run_label}' if run_label else ''}: "
    parts = []
    if failed:
        parts.append(f"{failed} drill{'s' if failed != 1 else ''} breached")
    if len(bad) > failed:
        n = len(bad) - failed
        parts.append(f"{n} broken by the environment")
    lines = [head + ", ".join(parts) + f" (of {len(results)} run)"]
    for r in bad:
        why = "; ".join(r.breaches) if r.status == "failed" else (r.error or r.status)
        why = why.strip().splitlines()[0] if why.strip() else r.status
        lines.append(f"• {r.scenario_id}: {r.status.upper()}: {why[:300]} [{_figures(r)}]")
    return "\n".join(lines)


def overdue_message(stale: Sequence[tuple[str, str]], max_age_days: float) -> str | None:
    """The notification for drills not passed within `max_age_days`; None when none is overdue."""
    if not stale:
        return None
    lines = [
        f"drillkit: {len(stale)} drill{'s' if len(stale) != 1 else ''} overdue "
        f"(no pass within {max_age_days:g} days)"
    ]
    lines += [f"• {sid}: {reason}" for sid, reason in stale]
    return "\n".join(lines)


__all__ = [
    "BROKEN_STATUSES",
    "EXIT_BAD_INPUT",
    "EXIT_BREACH",
    "EXIT_ENVIRONMENT",
    "EXIT_INTERRUPTED",
    "EXIT_NO_DRILLS",
    "EXIT_PASSED",
    "breach_message",
    "junit_properties",
    "overdue_message",
    "session_exit_code",
]
