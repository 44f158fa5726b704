"""How the runner wires a stack's declarations into the probes, for both kinds of stack file: a
reference-style one (drillkit's database image and one `app`; stacks/reference.yaml is one) and a
compose stack (issue 14: the overlay's database service, its `seed` SQL, its apps' health). Either
way the probes are the app's health (or the declared `probes`), the declared journey and the
declared ledger: nothing here knows the reference app.

The stack model's compose fields (`is_compose`, `db`, `apps`, `seed`, `Stack.url`) are read with
getattr so this works before and after the compose kind exists.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from drillkit.core.config import Deadline, RunConfig
from drillkit.core.probes import StackAccess
from drillkit.core.registry import OPTIONAL_SERVICES
from drillkit.core.scenario import Scenario
from drillkit.errors import DrillError
from drillkit.stack import engine
from drillkit.stack.probespec import Declared
from drillkit.stack.spec import HealthSpec, StackSpec
from drillkit.stack.stack import Stack, StackOptions


def is_compose(spec: StackSpec) -> bool:
    return bool(getattr(spec, "is_compose", False))


def first_primary(spec: StackSpec) -> str:
    """The database service acting as primary at start: the overlay's for a compose stack."""
    db = getattr(spec, "db", None)
    return str(db.service) if is_compose(spec) and db is not None else "primary"


def declared_of(spec: StackSpec) -> Declared:
    return Declared(spec.probes, spec.journey, spec.ledger, spec.logs)


def seed_sql(spec: StackSpec, stack: Stack) -> int:
    """Run the stack file's `seed` SQL (already read: each item one script) through drillkit's
    connection to the primary, in order, in one transaction; returns how many ran."""
    statements = [str(s) for s in (getattr(spec, "seed", ()) or ())]
    if not statements:
        return 0
    with stack.connect(first_primary(spec)) as conn:
        for sql_text in statements:
            conn.execute(sql_text.encode())  # the stack file's own SQL (bytes: no placeholders)
        conn.commit()
    return len(statements)


def health_target(spec: StackSpec, stack: Stack) -> tuple[Callable[[], str], HealthSpec]:
    """The availability probe's target (when no `probes` are declared): the `app` service, or a
    compose stack's first app, with its declared health rule."""
    apps: dict[str, Any] | None = getattr(spec, "apps", None)
    if is_compose(spec) and apps:
        name, app = next(iter(apps.items()))
        url: Callable[[str], str] = stack.url  # type: ignore[attr-defined]
        return (lambda: url(name)), app.health
    if is_compose(spec) and not spec.probes:
        raise DrillError(
            f"{spec.source}: probes: a stack with no app needs declared probes "
            "(the drill has nothing to measure recovery by)"
        )
    return (lambda: stack.app_url), spec.app.health


def stack_secret(spec: StackSpec, stack: Stack, name: str) -> str:
    """{secret:NAME} of a declared request: a secret drillkit issued (the reference stack's
    user_password, pg_superuser_password, ...); on a compose stack also the compose file's secret
    NAME (its file's text) or, failing that, the environment variable NAME of the first service
    that sets it. Whatever is read is added to the values every report is scanned for."""
    try:
        return stack.secrets[name]
    except KeyError:
        if not is_compose(spec) or spec.compose is None:
            raise
    compose = spec.compose
    value: str | None = None
    if name in compose.secrets:
        value = compose.secrets[name].read_text().rstrip("\r\n")
    else:
        value = next(
            (svc.environment[name] for svc in compose.services.values() if name in svc.environment),
            None,
        )
    if value is None:
        raise KeyError(f"secret {name}: not a drillkit secret, a compose secret or a service's env")
    if value not in stack.secrets.values():
        stack.secrets._issued.append(value)  # redacted from every record and report
    return value


def stack_access(spec: StackSpec, stack: Stack, primary: Callable[[], str]) -> StackAccess:
    """How declared probes reach this stack (core never imports the stack's services)."""

    def url(service: str) -> str:
        if not is_compose(spec) and service == "app":
            return stack.app_url
        return str(stack.url(service))  # type: ignore[attr-defined]

    return StackAccess(
        url=url,
        connect=lambda service: stack.connect(service),
        secret=lambda name: stack_secret(spec, stack, name),
        tcp=lambda service, port: ("127.0.0.1", stack.port(service, port)),
        primary=primary,
        is_database=lambda service: service in stack.databases,
    )


def data_in_memory(config: RunConfig) -> bool:
    """Whether the run's data directories go on a tmpfs: asked (RunConfig.data_in_memory), the
    small seed scale, and a tmpfs this process can mount where the engine binds from (root, a
    local engine)."""
    return (
        config.data_in_memory
        and config.seed_scale == "small"
        and os.geteuid() == 0
        and engine.current().local
    )


def stack_options(scenario: Scenario, deadline: Deadline, config: RunConfig) -> StackOptions:
    """The stack options the scenario and the run ask for (the one place that builds them)."""
    sc = scenario.stack
    return StackOptions(
        synchronous=sc.get("synchronous"),
        data_fs_mib=sc.get("data_fs_mib"),
        wal_fs_mib=sc.get("wal_fs_mib"),
        data_in_memory=data_in_memory(config),
        optional=frozenset(kind for kind in OPTIONAL_SERVICES if sc.get(kind)),
        ready_timeout_s=min(60.0, max(5.0, deadline.remaining())),
    )
