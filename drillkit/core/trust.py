"""What a scenario file may not do (DESIGN "Trust model"): the bounds and rules that
`drillkit.core.scenario` applies on top of the schema.

A scenario file is data, not code: its tags never decide a verdict (RESERVED_TAGS), an expected
failure is honoured only for the suite's sabotaged twins (SABOTAGE_DIR), numbers are finite and
within their ranges (INT_BOUNDS, FLOAT_BOUNDS, the duration caps), identifiers that reach SQL are
plain names (IDENTIFIER), host-exec needs the operator's opt-in, and a drill counts as evidence
only with the checklist minimum of its failure class (EVIDENCE_BASE, EVIDENCE_BY_CLASS).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drillkit.paths import SCENARIOS_DIR
from drillkit.validate import Problems, bounded, check_keys, excerpt, parse_duration, typed

SABOTAGE_DIR = SCENARIOS_DIR / "sabotage"
"""The suite's sabotaged twins: the only scenarios whose `expect: {outcome: fail}` is honoured."""
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,79}")
"""Scenario ids, failure classes and tags: lower-case ASCII letters, digits, '-' and '_'."""
RESERVED_TAGS = frozenset(
    {
        "skip",
        "skipif",
        "xfail",
        "usefixtures",
        "filterwarnings",
        "parametrize",
        "tryfirst",
        "trylast",
        "timeout",
        "flaky",
        "order",
        "dependency",
        "asyncio",
        "anyio",
        "no_cover",
        "allure_label",
        "allure_link",
        "allure_description",
        "allure_display_name",
    }
)
"""Tags that name a pytest mark with an effect on the outcome (skip, xfail, reruns, ...). The
plugin never applies a tag that names another plugin's marker either; these are refused early."""
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
"""Database identifiers a scenario may name (table, role, user): unquoted-style lower case."""
IDENTIFIER_PARAMS = ("table", "role", "user")
PARAM_CHOICES: dict[str, tuple[str, ...]] = {
    "stream": ("upstream", "downstream"),
    "started_before": ("rotation", "now"),
    "signal": ("KILL", "TERM", "INT", "HUP", "QUIT", "STOP", "CONT", "USR1", "USR2"),
    "mode": (
        "ACCESS SHARE",
        "ROW SHARE",
        "ROW EXCLUSIVE",
        "SHARE UPDATE EXCLUSIVE",
        "SHARE",
        "SHARE ROW EXCLUSIVE",
        "EXCLUSIVE",
        "ACCESS EXCLUSIVE",
    ),
}
TOXIC_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_STRING = 4096
INT_BOUNDS: dict[str, tuple[int, int]] = {
    "port": (1, 65535),
    "expect_exit": (0, 255),
    "limit": (1, 10_000),
    "users": (1, 1000),
    "leave_bytes": (0, 2**40),
    "max_fill_mib": (1, 65536),
    "bytes": (0, 2**40),
    "latency": (0, 600_000),
    "jitter": (0, 600_000),
    "delay": (0, 600_000),
    "timeout": (0, 600_000),
    "add_mib": (1, 65_536),
    "min_requests": (1, 100_000),
}
"""Integer parameters with their own range; any other is 0..1,000,000."""
FLOAT_BOUNDS: dict[str, tuple[float, float]] = {
    "toxicity": (0.0, 1.0),
    "factor": (1.0, 100.0),
    "floor_ms": (0.0, 60_000.0),
    "max_s": (0.0, 3600.0),
    "max_used_fraction": (0.01, 1.0),
    "min_rate": (0.001, 1.0),
    "tolerance": (0.0, 1.0),
}
"""Number parameters with their own range; any other is 0..1,000,000."""
DEFAULT_INT_BOUNDS = (0, 1_000_000)
DEFAULT_FLOAT_BOUNDS = (0.0, 1_000_000.0)
MAX_DRILL_S = 3600.0
"""max_duration, step timeouts: at most an hour. Observation, settle, steady state: 10 minutes."""
MAX_PHASE_S = 600.0

EVIDENCE_BASE = ("all-systems-responding", "critical-journeys", "recovered-within-rto")
"""Every drill that counts as evidence verifies at least these (DESIGN "Trust model")."""
EVIDENCE_BY_CLASS: dict[str, tuple[str, ...]] = {
    "database-failure": ("database-healthy", "old-primary-fenced", "blockers-gone"),
    "deployment": ("schema-unchanged", "app-version"),
    "data-corruption": ("database-healthy", "destruction-undone"),
    "infrastructure": ("tls-certificate-valid",),
    "network": ("app-fails-fast", "old-primary-fenced", "replica-caught-up"),
    "outage": ("database-healthy", "replica-caught-up"),
    "payment-failure": ("payments-reconciled", "payments-degraded-gracefully"),
    "cache-failure": ("cache-degraded-gracefully", "cache-in-use"),
    "performance-degradation": ("performance-baseline", "no-error-spike"),
    "replication": ("replica-caught-up", "replica-lag-within"),
    "resource-exhaustion": (
        "database-healthy",
        "connection-count",
        "wal-archiving",
        "flood-contained",
    ),
    "security-breach": (
        "old-db-password-rejected",
        "attacker-session-gone",
        "old-token-rejected",
        "issued-tokens-rejected",
        "attacker-rows-gone",
        "tampered-rows-restored",
        "site-integrity",
        "attacker-token-rejected",
        "compromised-password-rejected",
    ),
}
"""Besides the base, at least one check of its failure class (the check that shows the specific
damage undone). A class not listed needs at least one check beyond the base."""
TEAM_BASE = ("all-systems-responding", "recovered-within-rto")
"""The base for a failure class EVIDENCE_BY_CLASS does not list (plus a check of its own)."""
TWIN_MINIMUM = ("all-systems-responding",)
"""A sabotaged twin (expect: fail) must still verify something."""


def is_sabotage_twin(source: str | Path, sabotage_dir: Path = SABOTAGE_DIR) -> bool:
    """Whether `source` is a file of the suite's sabotage folder (resolved: no symlink trick)."""
    if not isinstance(source, Path):
        return False
    try:
        return source.resolve().parent == sabotage_dir.resolve()
    except OSError:
        return False


def evidence_gap(failure_class: str, checks: list[str], twin: bool = False) -> str:
    """Why a checklist is below the evidence minimum of its failure class ('' when it is not).

    A listed class: EVIDENCE_BASE plus one check of EVIDENCE_BY_CLASS. A class not listed (a
    team's own, whose app the reference journeys may not describe): TEAM_BASE plus one check
    beyond EVIDENCE_BASE (the team's check of what the fault damaged). A sabotaged twin (expected
    to fail) needs only TWIN_MINIMUM."""
    have = set(checks)
    specific = EVIDENCE_BY_CLASS.get(failure_class)
    base = TWIN_MINIMUM if twin else EVIDENCE_BASE if specific is not None else TEAM_BASE
    missing = [c for c in base if c not in have]
    if missing:
        return f"the checklist lacks {', '.join(missing)} (every such drill verifies them)"
    if twin:
        return ""
    if specific is None:
        if not have - set(EVIDENCE_BASE):
            return (
                f"the checklist verifies nothing specific to {failure_class!r} "
                "(add a check of what the fault damaged)"
            )
        return ""
    if not have & set(specific):
        return (
            f"a {failure_class} drill verifies at least one of {', '.join(specific)} "
            "(the check that shows its damage undone)"
        )
    return ""


def string_ok(p: Problems, where: str, key: str, value: str) -> bool:
    """A string parameter within its rules: database identifiers match IDENTIFIER (they are also
    quoted where used), enumerations are one of their choices, toxic names are short and plain."""
    if len(value) > MAX_STRING:
        p.add(where, f"at most {MAX_STRING} characters, got {len(value)}")
        return False
    if key in IDENTIFIER_PARAMS and not IDENTIFIER.fullmatch(value):
        p.add(
            where,
            f"expected a database identifier (lower-case letters, digits, '_'), got {excerpt(value)}",
        )
        return False
    choices = PARAM_CHOICES.get(key)
    if choices and value.upper() not in {c.upper() for c in choices}:
        p.add(where, f"expected one of {', '.join(choices)}, got {excerpt(value)}")
        return False
    if key == "name" and where.endswith(".with.name") and not TOXIC_NAME.fullmatch(value):
        p.add(where, f"expected letters, digits, '_', '.', '-' (at most 64), got {excerpt(value)}")
        return False
    return True


def _steps_with(fault: Any, recovery: list[Any]) -> list[tuple[str, Any]]:
    steps = [("fault", fault)] if fault else []
    return [*steps, *((f"recovery[{i}]", s) for i, s in enumerate(recovery))]


@dataclass(frozen=True)
class TrustInputs:
    """What trust_checks needs of a parsed scenario (steps and checks as validated)."""

    source: str | Path
    fault: Any
    recovery: list[Any]
    checklist: list[Any]
    expect: Any
    twin: bool
    allow_host_exec: bool


def trust_checks(
    p: Problems,
    data: dict[str, Any],
    t: TrustInputs,
    below_minimum: str = "refuse",
    sabotage_dir: Path = SABOTAGE_DIR,
) -> str:
    """Record what the file may not do; returns why it is not evidence ('' when it is). Below
    the evidence minimum, `below_minimum` 'refuse' records a problem, 'mark' only returns it."""
    gap = _trust_checks(p, data, t, sabotage_dir)
    if gap and below_minimum == "refuse":
        p.add("checklist", f"not evidence: {gap}")
    return gap


def _trust_checks(p: Problems, data: dict[str, Any], t: TrustInputs, sabotage_dir: Path) -> str:
    if "expect" in data and not t.twin:
        p.add(
            "expect",
            "an expected outcome is honoured only for the suite's sabotaged twins "
            f"(files of {sabotage_dir}); remove it",
        )
    if not t.allow_host_exec:
        for where, step in _steps_with(t.fault, t.recovery):
            if step.action == "host-exec":
                p.add(
                    f"{where}.action",
                    f"step {excerpt(step.name)} runs a shell on the host: refused unless the "
                    "operator opts in (--drill-allow-host-exec or ini drill_allow_host_exec)",
                )
    if not isinstance(data.get("failure_class"), str):
        return ""
    failing = isinstance(t.expect, dict) and t.expect.get("outcome") == "fail"
    return evidence_gap(data["failure_class"], [c.id for c in t.checklist], failing)


def parse_probes(p: Problems, raw: Any) -> dict[str, float]:
    if not typed(
        p, "probes", raw, dict, "a mapping (interval, timeout, degraded_after, writer_rate)"
    ):
        return {}
    check_keys(p, "probes", raw, ("interval", "timeout", "degraded_after", "writer_rate", "k"), ())
    out: dict[str, float] = {}
    for key in ("interval", "timeout", "degraded_after"):
        if key in raw:
            v = parse_duration(
                p, f"probes.{key}", raw[key], allow_zero=False, min_s=0.01, max_s=MAX_PHASE_S
            )
            if v is not None:
                out[key] = v
    if "interval" in out and out["interval"] >= 1.0:
        p.add(
            "probes.interval",
            "must be sub-second (DESIGN: probes run at a fixed sub-second interval)",
        )
    if "timeout" in out and out["timeout"] > 60:
        p.add("probes.timeout", f"must be at most 60 s, got {out['timeout']:g} s")
    if "writer_rate" in raw and typed(
        p, "probes.writer_rate", raw["writer_rate"], (int, float), "a number"
    ):
        if raw["writer_rate"] <= 0:
            p.add("probes.writer_rate", f"must be > 0, got {raw['writer_rate']}")
        elif bounded(p, "probes.writer_rate", raw["writer_rate"], 0.1, 1000, "/s"):
            out["writer_rate"] = float(raw["writer_rate"])
    if "k" in raw and typed(p, "probes.k", raw["k"], int, "a whole number of probes"):
        if bounded(p, "probes.k", raw["k"], 1, 100):
            out["k"] = float(raw["k"])
    return out


def parse_expect(p: Problems, expect: Any) -> Any:
    if typed(p, "expect", expect, dict, "a mapping (outcome, breach)"):
        check_keys(p, "expect", expect, ("outcome", "breach"), ("outcome",))
        if expect.get("outcome") not in ("pass", "fail"):
            p.add("expect.outcome", f"expected 'pass' or 'fail', got {expect.get('outcome')!r}")
        if "breach" in expect and expect["breach"] not in (
            "rto",
            "rpo",
            "detection",
            "checklist",
            "recovery-step",
        ):
            p.add("expect.breach", "expected one of rto, rpo, detection, checklist, recovery-step")
    return expect
