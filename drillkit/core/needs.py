"""What a scenario needs from the stack, checked before anything starts.

Every catalogue entry declares what it needs (`needs=` on its decorator: 'reference-app',
'pgbackrest', 'replica', 'proxy', 'web', 'payments', 'data_fs', 'wal_fs', 'journey', ...). The
stack provides capabilities: `StackSpec.provides` (what its kind gives: drillkit's database
image has pgBackRest and PostgreSQL, a replica unless turned off; plus the file's `provides` list,
e.g. the reference stack's `reference-app`). The scenario
adds what its `stack:` options turn on (a proxy, a web front, a data filesystem, ...). A fault,
recovery step or checklist item needing what is not provided refuses the scenario, naming the
step and what it lacks: `drillkit validate --stack FILE` and the runner (before provisioning)
both call `check_needs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drillkit.core.registry import CHECKS, FAULTS, OPTIONAL_SERVICES, RECOVERY, Registry
from drillkit.core.scenario import Scenario
from drillkit.stack import engine
from drillkit.validate import Problems


def base_provides(spec: Any) -> frozenset[str]:
    """The stack file's capabilities, before the scenario's options (`StackSpec.provides`: what
    its kind gives, plus its `provides` list), and `journey` when it declares one."""
    out = set(spec.provides)
    if getattr(spec, "journey", ()):
        out.add("journey")  # the stack file declares one
    return frozenset(out)


def stack_provides(spec: Any, scenario: Scenario) -> frozenset[str]:
    """What the stack has for this scenario: its capabilities, without the replica when the
    scenario turns it off, plus every optional part its `stack:` options turn on."""
    out = set(base_provides(spec))
    sc = scenario.stack
    if sc.get("replica") is False:
        out.discard("replica")
    out.update(kind for kind in OPTIONAL_SERVICES if sc.get(kind))
    out.update(key for key in ("data_fs", "wal_fs") if sc.get(f"{key}_mib"))
    out.update(engine.current().provides())  # host-access: an engine on this host
    return frozenset(out)


def _lacks(registry: Registry, name: str, provides: frozenset[str]) -> tuple[str, ...]:
    entry = registry.entries.get(name)
    if entry is None:
        return ()
    return tuple(need for need in entry.needs if need not in provides)


HOW = {
    "reference-app": "only the reference app has this API",
    "pgbackrest": "the stack's database image has no pgBackRest (declare provides: [pgbackrest])",
    "replica": "the stack has no replica",
    "journey": "declare a journey in the stack file",
    "proxy": "add stack: {proxy: true}",
    "web": "add stack: {web: true}",
    "payments": "add stack: {payments: true}",
    "cache": "add stack: {cache: true}",
    "data_fs": "add stack: {data_fs: 64MiB}",
    "wal_fs": "add stack: {wal_fs: 64MiB}",
    "host-access": "it acts on the engine's host (nsenter, iptables): run it on a local engine",
}


def missing_needs(scenario: Scenario, provides: frozenset[str]) -> list[tuple[str, str]]:
    """(path in the scenario file, reason) for each step or check needing what is not provided."""
    out: list[tuple[str, str]] = []
    items = [("fault", FAULTS, scenario.fault.action, scenario.fault.name)]
    items += [
        (f"recovery[{i}]", RECOVERY, step.action, step.name)
        for i, step in enumerate(scenario.recovery)
    ]
    items += [
        (f"checklist[{i}]", CHECKS, check.id, check.id)
        for i, check in enumerate(scenario.checklist)
    ]
    for path, registry, action, name in items:
        lacking = _lacks(registry, action, provides)
        if lacking:
            why = "; ".join(HOW.get(n, f"the stack does not provide {n}") for n in lacking)
            shown = f"'{name}' ({action})" if name != action else f"'{action}'"
            out.append(
                (
                    path,
                    f"{registry.kind} {shown} needs {', '.join(lacking)}, which the stack lacks ({why})",
                )
            )
    return out


def check_needs(scenario: Scenario, spec: Any, source: str | Path | None = None) -> None:
    """Raise ValidationError (file: path: reason) when the scenario needs what the stack lacks."""
    p = Problems(source or scenario.path or scenario.id)
    stack_name = getattr(spec, "name", "") or "the stack"
    for path, reason in missing_needs(scenario, stack_provides(spec, scenario)):
        p.add(path, reason.replace("the stack lacks", f"stack '{stack_name}' lacks", 1))
    p.raise_if_any()
