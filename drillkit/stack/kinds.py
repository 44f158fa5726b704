"""Service kinds: the add-on protocol for one kind of service in the stack, and their registry.

A kind (database, app, proxy, web, payments) knows what it reads from the stack file and the stack
options, which services and images it adds, and how it is configured (files written into the run
dir before any container starts), started (containers created through `Stack.create`), proven
ready and torn down. `Stack.up` runs each phase over the stack's kinds in the kinds' own order.

The Stack never imports a kind: each module under drillkit/stack/services/ registers its kind
with `@service_kind`, and importing `drillkit.stack.services` imports them all (the catalogue
loader does). Adding a kind is one new module there; no file of stack/ or core/ changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from drillkit.stack.stack import Stack

BASE_KINDS = ("database", "app")
"""The kinds of every reference-style stack (the stack file's `database` and `app` sections); the
others are optional, present when `StackOptions.optional` names them."""
COMPOSE_KINDS = ("compose",)
"""A compose stack's base kind instead (stack/services/compose.py): every compose service."""


class ServiceKind(ABC):
    """One kind of service, for one stack (an instance per Stack, holding that stack's state)."""

    name: ClassVar[str]
    """The registry key, and the name `StackOptions.optional` asks for an optional kind by."""
    stack_file: ClassVar[str | None] = None
    """The stack file section it reads (`database`, `app`), or None."""
    options: ClassVar[tuple[str, ...]] = ()
    """The StackOptions fields it reads (besides ready_timeout_s, which every kind honours)."""
    order: ClassVar[int]
    """Where its services are listed in Stack.services; also the order images are resolved in,
    kinds are configured in and torn down in (reversed)."""
    start_rank: ClassVar[int]
    """When its containers start, lowest first (a kind whose containers others reach starts
    before them)."""
    ready_rank: ClassVar[int]
    """When Stack.up waits for it, lowest first (after every kind has started)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    @abstractmethod
    def services(self) -> tuple[str, ...]:
        """The services (container names' last part, host names on the run's network) it adds."""

    def images(self) -> dict[str, str]:
        """Image key (in Stack.image_tags) -> image name (a folder of images/) it runs."""
        return {}

    def configure(self) -> None:  # noqa: B027 (a phase a kind may skip)
        """Write its files into the run dir, before any container of the stack starts."""

    @abstractmethod
    def start(self) -> None:
        """Create and start its containers (through Stack.create)."""

    def wait_ready(self) -> None:  # noqa: B027 (a phase a kind may skip)
        """Return once its services answer (raise EnvironmentBroken, or time out, if not)."""

    def teardown(self) -> None:  # noqa: B027 (a phase a kind may skip)
        """Release what it holds on the host, after the run's containers, networks and volumes
        are reaped (they carry the run's label: Stack.down removes them all)."""


K = TypeVar("K", bound=type[ServiceKind])

SERVICE_KINDS: dict[str, type[ServiceKind]] = {}
"""Every registered kind, by name."""


def service_kind(cls: K) -> K:
    """Class decorator: register a ServiceKind under its `name`."""
    known = SERVICE_KINDS.get(cls.name)
    if known is not None and (known.__module__, known.__qualname__) != (
        cls.__module__,
        cls.__qualname__,
    ):
        raise ValueError(
            f"service kind '{cls.name}' is registered twice: "
            f"{known.__module__}.{known.__qualname__} and {cls.__module__}.{cls.__qualname__}"
        )
    SERVICE_KINDS[cls.name] = cls
    return cls


def last_rows(conn: Any, statements: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """Run the statements in order on an autocommit connection; the last one's rows (or [] when
    it returns none). The database kinds' `sql`."""
    rows: list[tuple[Any, ...]] = []
    for stmt in statements:
        cur = conn.execute(stmt)
        rows = cur.fetchall() if cur.description else []
    return rows
