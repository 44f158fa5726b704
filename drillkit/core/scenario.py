"""Scenario files: one drill each (fault, runbook steps, objectives, checklist, source runbook).

Every file is validated before any container starts; each problem is reported as
`<file>: <path>: <reason>` with a suggestion where a name is close to a known one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drillkit.core.measure import Objectives
from drillkit.core.params import parse_params
from drillkit.core.registry import (
    CHECKS,
    FAULTS,
    OPTIONAL_SERVICES,
    RECOVERY,
    Registry,
)
from drillkit.core.trust import (
    MAX_DRILL_S,
    MAX_PHASE_S,
    NAME,
    RESERVED_TAGS,
    SABOTAGE_DIR,
    TrustInputs,
    is_sabotage_twin,
    parse_expect,
    parse_probes,
    trust_checks,
)
from drillkit.stack.spec import SERVICES
from drillkit.validate import (
    Problems,
    check_keys,
    excerpt,
    parse_duration,
    parse_yaml,
    read_text,
    suggest,
    typed,
)

SEVERITIES = ("P0", "P1", "P2", "P3")
DEFAULT_CHECKLIST = (
    "all-systems-responding",
    "key-functionality",
    "performance-baseline",
    "no-error-spike",
    "database-healthy",
    "authentication",
    "critical-journeys",
    "detected-within-objective",
    "recovered-within-rto",
)
TOP_KEYS = (
    "id",
    "title",
    "source",
    "severity",
    "failure_class",
    "tags",
    "objectives",
    "stack",
    "probes",
    "steady_state",
    "prepare",
    "fault",
    "recovery",
    "checklist",
    "observe",
    "settle",
    "max_duration",
    "expect",
    "description",
)
REQUIRED = (
    "id",
    "title",
    "source",
    "severity",
    "failure_class",
    "tags",
    "objectives",
    "fault",
    "recovery",
)
STACK_KEYS = ("synchronous", "data_fs", "wal_fs", "replica")
"""The `stack:` keys core knows; each optional service part the catalogue declares
(`registry.optional_services`) adds its own boolean key."""


@dataclass(frozen=True)
class Step:
    name: str
    action: str
    params: dict[str, Any]
    timeout_s: float


@dataclass(frozen=True)
class Check:
    id: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    source: dict[str, str]
    severity: str
    failure_class: str
    tags: tuple[str, ...]
    objectives: Objectives
    fault: Step
    recovery: tuple[Step, ...]
    checklist: tuple[Check, ...]
    stack: dict[str, Any] = field(default_factory=dict)
    prepare: tuple[Step, ...] = ()
    """Steps run after the steady state and before the fault (e.g. the team's backup.sh taking
    the dump a later restore uses), recorded like recovery steps; one that fails is an
    environment error, not the runbook's failure."""
    probes: dict[str, float] = field(default_factory=dict)
    steady_s: float = 1.5
    observe_s: float = 2.0
    settle_s: float = 8.0
    """How much longer than `observe` the runner may keep observing while a check's settle
    condition does not hold (performance-baseline: fewer than 10 journeys since recovery, or
    their median over the limit; a host hiccup passes, a lasting degradation fails)."""
    max_duration_s: float = 300.0
    expect: dict[str, str] = field(default_factory=lambda: {"outcome": "pass"})
    path: str = ""
    text: str = ""
    not_evidence: str = ""
    """Why this drill is not evidence (its checklist is below the minimum of its failure class);
    empty when it is. Only scenarios built in code (parse_scenario_text) can carry a reason: a
    scenario file below the minimum is refused. A drill that is not evidence never passes."""
    host_exec_allowed: bool = False
    """The operator opted in to `host-exec` (--drill-allow-host-exec) when this was loaded."""


def load_scenario(
    path: Path,
    services: tuple[str, ...] = SERVICES,
    allow_host_exec: bool = False,
    sabotage_dir: Path | None = None,
) -> Scenario:
    """A scenario file, validated (every problem at once, as file: path: reason). The file is
    untrusted: host-exec steps are refused unless `allow_host_exec`, an expected failure is
    refused outside the suite's sabotage folder, a checklist below the evidence minimum is refused."""
    text = read_text(path)
    twins = (
        sabotage_dir
        if sabotage_dir is not None and is_sabotage_twin(path, sabotage_dir)
        else SABOTAGE_DIR
    )
    return parse_scenario(
        parse_yaml(text, path),
        path,
        services,
        text,
        allow_host_exec=allow_host_exec,
        sabotage_dir=twins,
    )


def parse_scenario_text(
    text: str,
    source: str = "<string>",
    services: tuple[str, ...] = SERVICES,
    allow_host_exec: bool = False,
) -> Scenario:
    """A scenario written in code (tests, tools): as a file, except that a checklist below the
    evidence minimum loads with `not_evidence` set (such a drill never passes)."""
    return parse_scenario(
        parse_yaml(text, source),
        source,
        services,
        text,
        allow_host_exec=allow_host_exec,
        below_minimum="mark",
    )


PENDING = Step(name="(injected by the test)", action="", params={}, timeout_s=60.0)
"""The fault of a Python drill before the test injects it (drillkit.fixtures):
`parse_scenario(..., partial=True)` validates such a drill's header, which has no fault or
recovery yet (the test calls them later, `parse_step` checking each)."""


def parse_scenario(
    data: Any,
    source: str | Path,
    services: tuple[str, ...] = SERVICES,
    text: str = "",
    *,
    partial: bool = False,
    allow_host_exec: bool = False,
    below_minimum: str = "refuse",
    sabotage_dir: Path = SABOTAGE_DIR,
) -> Scenario:
    """Validate parsed data. Below the evidence minimum: 'refuse' (files) or 'mark'."""
    p = Problems(source)
    for registry in (FAULTS, RECOVERY, CHECKS):
        registry.require_loaded()
    if not isinstance(data, dict):
        p.add("", f"expected a mapping (id, title, fault, ...), got {type(data).__name__}")
        p.raise_if_any()
    sev, tags, src = _header(p, data, source, partial)
    objectives = _objectives(p, data.get("objectives"))
    stack = _stack(p, data.get("stack", {}))
    for option, added in OPTIONAL_SERVICES.items():
        if stack.get(option):
            services = (*services, *added)
    probes = parse_probes(p, data.get("probes", {}))
    steady = _duration_block(p, data.get("steady_state", {"duration": "1500ms"}), "steady_state")
    twin = is_sabotage_twin(source, sabotage_dir)
    fault, recovery, prepare = _steps(p, data, services, partial, allow_host_exec)
    checklist = _checklist_items(p, data.get("checklist", list(DEFAULT_CHECKLIST)), services)
    observe, settle, max_dur = _timings(p, data)
    expect = parse_expect(p, data.get("expect", {"outcome": "pass"}))
    trust = TrustInputs(source, fault, recovery, checklist, expect, twin, allow_host_exec)
    not_evidence = trust_checks(p, data, trust, below_minimum, sabotage_dir)
    _check_rto(p, objectives, recovery)
    p.raise_if_any()
    assert fault and objectives and observe is not None and settle is not None and max_dur
    return Scenario(
        id=data["id"],
        title=data["title"],
        source=dict(src),
        severity=sev,
        failure_class=data["failure_class"],
        tags=tuple(tags),
        objectives=objectives,
        fault=fault,
        recovery=tuple(recovery),
        prepare=tuple(prepare),
        checklist=tuple(checklist),
        stack=stack,
        probes=probes,
        steady_s=steady or 1.5,
        observe_s=observe,
        settle_s=settle,
        max_duration_s=max_dur,
        expect=dict(expect),
        path=str(source),
        text=text,
        not_evidence=not_evidence,
        host_exec_allowed=allow_host_exec,
    )


def _timings(p: Problems, data: dict[str, Any]) -> tuple[float | None, ...]:
    """observe, settle, max_duration: each bounded (MAX_PHASE_S, MAX_DRILL_S); absent, Scenario's."""
    sc = Scenario
    max_dur = data.get("max_duration", f"{sc.max_duration_s:g}s")
    return (
        parse_duration(p, "observe", data.get("observe", f"{sc.observe_s:g}s"), max_s=MAX_PHASE_S),
        parse_duration(p, "settle", data.get("settle", f"{sc.settle_s:g}s"), max_s=MAX_PHASE_S),
        parse_duration(p, "max_duration", max_dur, allow_zero=False, max_s=MAX_DRILL_S),
    )


def _header(
    p: Problems, data: dict[str, Any], source: str | Path, partial: bool = False
) -> tuple[Any, Any, Any]:
    """The top-level keys, id / title / failure_class, severity, tags and source: (severity,
    tags, source) as found (checked, not converted). A partial header (a Python drill's) needs
    no fault or recovery."""
    required = tuple(k for k in REQUIRED if not partial or k not in ("fault", "recovery"))
    check_keys(p, "", data, TOP_KEYS, required)
    for key in ("id", "title", "failure_class"):
        if key in data and typed(p, key, data[key], str, "a string"):
            if key != "title" and not NAME.fullmatch(data[key]):
                p.add(
                    key, f"expected lower-case ASCII letters, digits, '-', got {excerpt(data[key])}"
                )
            elif key == "title" and not 0 < len(data[key]) <= 200:
                p.add(key, "expected 1 to 200 characters")
    if isinstance(data.get("id"), str) and isinstance(source, Path) and data["id"] != source.stem:
        p.add("id", f"'{data['id']}' differs from the file name '{source.stem}' (rename one)")
    sev = data.get("severity")
    if "severity" in data and sev not in SEVERITIES:
        p.add("severity", f"expected one of {', '.join(SEVERITIES)}, got {sev!r}")
    tags = data.get("tags", [])
    if "tags" in data and typed(p, "tags", tags, list, "a list of strings"):
        for i, t in enumerate(tags):
            if not typed(p, f"tags[{i}]", t, str, "a string"):
                continue
            if not NAME.fullmatch(t):
                p.add(
                    f"tags[{i}]",
                    f"expected lower-case ASCII letters, digits, '-', got {excerpt(t)}",
                )
            elif t in RESERVED_TAGS:
                p.add(
                    f"tags[{i}]",
                    f"'{t}' is a pytest mark that changes a test's outcome; a scenario tag never "
                    "decides a verdict (drop it)",
                )
    src = data.get("source", {})
    if "source" in data and typed(p, "source", src, dict, "a mapping with runbook and section"):
        check_keys(p, "source", src, ("runbook", "section", "file", "url"), ("runbook", "section"))
        for k, v in src.items():
            typed(p, f"source.{k}", v, str, "a string (quote numbers like '000')")
        url = src.get("url")
        if isinstance(url, str) and not re.fullmatch(r"https?://[^\s/]+[^\s]*", url):
            p.add("source.url", "expected an http:// or https:// URL of the runbook section")
    return sev, tags, src


def _check_rto(p: Problems, objectives: Objectives | None, recovery: list[Step]) -> None:
    if objectives and objectives.rto_s == 0 and restores_backup(recovery):
        p.add("objectives.rto", "an RTO of 0 is impossible for a runbook that restores a backup")


def _steps(
    p: Problems,
    data: dict[str, Any],
    services: tuple[str, ...],
    partial: bool,
    allow_host_exec: bool = False,
) -> tuple[Step | None, list[Step], list[Step]]:
    """The fault, the recovery steps and the prepare steps; a partial (Python drill) header has
    no fault or recovery yet: the test injects the fault and calls the steps later, `parse_step`
    checking each."""
    prepare = _step_list(p, data, "prepare", services, allow_host_exec)
    if partial:
        return PENDING, [], prepare
    fault = _step(p, "fault", data.get("fault"), FAULTS, services) if "fault" in data else None
    return fault, _recovery(p, data, services), prepare


def _recovery(p: Problems, data: dict[str, Any], services: tuple[str, ...]) -> list[Step]:
    recovery: list[Step] = []
    rec_raw = data.get("recovery", [])
    if "recovery" in data and typed(p, "recovery", rec_raw, list, "a list of steps"):
        if not rec_raw:
            p.add("recovery", "at least one recovery step is required")
        for i, raw in enumerate(rec_raw):
            step = _step(p, f"recovery[{i}]", raw, RECOVERY, services)
            if step:
                recovery.append(step)
    return recovery


def _step_list(
    p: Problems, data: dict[str, Any], key: str, services: tuple[str, ...], allow_host_exec: bool
) -> list[Step]:
    """An optional list of steps of the recovery catalogue (`prepare:`); host-exec only with the
    operator's opt-in, like in the runbook."""
    steps: list[Step] = []
    raw = data.get(key, [])
    if key in data and typed(p, key, raw, list, "a list of steps"):
        for i, item in enumerate(raw):
            step = _step(p, f"{key}[{i}]", item, RECOVERY, services)
            if step and step.action == "host-exec" and not allow_host_exec:
                p.add(f"{key}[{i}].action", "host-exec is refused unless the operator opts in")
            elif step:
                steps.append(step)
    return steps


def restores_backup(recovery: tuple[Step, ...] | list[Step]) -> bool:
    """Whether a runbook has a step that restores the database from a backup (`restores=True`)."""
    return any(RECOVERY.get(step.action).restores for step in recovery)


def _objectives(p: Problems, raw: Any) -> Objectives | None:
    if raw is None:
        return None
    if not typed(p, "objectives", raw, dict, "a mapping with rto, rpo (and detection)"):
        return None
    check_keys(p, "objectives", raw, ("rto", "rpo", "detection"), ("rto", "rpo"))
    rto = parse_duration(p, "objectives.rto", raw.get("rto", "0s"))
    rpo = parse_duration(p, "objectives.rpo", raw.get("rpo", "0s"))
    det = (
        parse_duration(p, "objectives.detection", raw["detection"]) if "detection" in raw else None
    )
    if rto is None or rpo is None:
        return None
    return Objectives(rto_s=rto, rpo_s=rpo, detection_s=det)


def _stack(p: Problems, raw: Any) -> dict[str, Any]:
    if not typed(p, "stack", raw, dict, "a mapping (synchronous, data_fs)"):
        return {}
    check_keys(p, "stack", raw, (*STACK_KEYS, *OPTIONAL_SERVICES), ())
    out: dict[str, Any] = {}
    for option in OPTIONAL_SERVICES:
        if option in raw and typed(p, f"stack.{option}", raw[option], bool, "true or false"):
            out[option] = raw[option]
    if "synchronous" in raw and typed(
        p, "stack.synchronous", raw["synchronous"], bool, "true or false"
    ):
        out["synchronous"] = raw["synchronous"]
    if "replica" in raw and typed(p, "stack.replica", raw["replica"], bool, "true or false"):
        out["replica"] = raw["replica"]
    for key in ("data_fs", "wal_fs"):
        if key in raw:
            v = raw[key]
            if (
                isinstance(v, str)
                and v.endswith("MiB")
                and v[:-3].isdigit()
                and 32 <= int(v[:-3]) <= 4096
            ):
                out[f"{key}_mib"] = int(v[:-3])
            else:
                p.add(f"stack.{key}", f"expected a size from '32MiB' to '4096MiB', got {v!r}")
    return out


def _duration_block(p: Problems, raw: Any, path: str) -> float | None:
    if not typed(p, path, raw, dict, "a mapping with duration"):
        return None
    check_keys(p, path, raw, ("duration",), ("duration",))
    return parse_duration(
        p, f"{path}.duration", raw.get("duration"), allow_zero=False, max_s=MAX_PHASE_S
    )


def _step(
    p: Problems, path: str, raw: Any, registry: Registry, services: tuple[str, ...]
) -> Step | None:
    if not typed(p, path, raw, dict, "a mapping with action (and name, with, timeout)"):
        return None
    check_keys(p, path, raw, ("name", "action", "with", "timeout"), ("action",))
    action = raw.get("action")
    if not isinstance(action, str):
        if "action" in raw:
            p.add(f"{path}.action", f"expected an action name, got {action!r}")
        return None
    if action not in registry.entries:
        p.add(
            f"{path}.action",
            f"unknown {registry.kind} action {excerpt(action)}{suggest(action, registry.names())}",
        )
        return None
    params = parse_params(p, f"{path}.with", registry.get(action).params, raw.get("with"), services)
    timeout = parse_duration(
        p, f"{path}.timeout", raw.get("timeout", "60s"), allow_zero=False, max_s=MAX_DRILL_S
    )
    name = raw.get("name", action)
    if typed(p, f"{path}.name", name, str, "a string") and len(name) > 200:
        p.add(f"{path}.name", "at most 200 characters")
    return Step(name=str(name), action=action, params=params, timeout_s=timeout or 60.0)


def parse_step(
    kind: str, raw: dict[str, Any], source: str, services: tuple[str, ...] = SERVICES
) -> Step:
    """One fault (`kind` "fault") or recovery step ("recovery") given as a scenario file gives it
    ({action, name, with, timeout}), validated the same way; ValidationError names the problems."""
    p = Problems(source)
    registry = FAULTS if kind == "fault" else RECOVERY
    registry.require_loaded()
    step = _step(p, kind, raw, registry, services)
    p.raise_if_any()
    assert step is not None
    return step


def _checklist_items(p: Problems, raw: Any, services: tuple[str, ...]) -> list[Check]:
    out: list[Check] = []
    if not typed(p, "checklist", raw, list, "a list of check names"):
        return out
    for i, item in enumerate(raw):
        where = f"checklist[{i}]"
        if isinstance(item, str):
            name, params_raw = item, {}
        elif isinstance(item, dict) and "check" in item:
            check_keys(p, where, item, ("check", "with"), ("check",))
            name, params_raw = item["check"], item.get("with", {})
        else:
            p.add(
                where,
                f"expected a check name or {{check: name, with: {{...}}}}, got {excerpt(item)}",
            )
            continue
        if not isinstance(name, str) or name not in CHECKS.entries:
            p.add(where, f"unknown check {excerpt(name)}{suggest(str(name), CHECKS.names())}")
            continue
        out.append(
            Check(
                name,
                parse_params(p, f"{where}.with", CHECKS.get(name).params, params_raw, services),
            )
        )
    return out


def discover(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.yaml"))
