"""Helpers shared by the catalogue's domain modules (not entries)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable
from typing import Any

import psycopg

from drillkit.core.context import DrillContext
from drillkit.wait import wait_for


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _close_all(conns: Iterable[psycopg.Connection[Any]]) -> None:
    for conn in list(conns):
        with contextlib.suppress(Exception):
            conn.close()


def _table(rows: Iterable[Iterable[Any]], header: Iterable[str]) -> str:
    lines = ["\t".join(header)]
    lines += ["\t".join("" if v is None else str(v) for v in row) for row in rows]
    return "\n".join(lines)


def _superuser(ctx: DrillContext, timeout_s: float = 20.0) -> psycopg.Connection[Any]:
    """A superuser session on the primary, retried: during a connection storm the clients being
    refused still hold a process slot while they authenticate, so even the slots reserved for
    superusers are taken now and then ("sorry, too many clients already"); an operator retries."""
    return wait_for(
        lambda: ctx.stack.connect(ctx.primary),
        what=f"a superuser session on {ctx.primary}",
        timeout_s=timeout_s,
        interval_s=0.1,
        transient=(psycopg.OperationalError,),
    )


# ----- what any stack offers (reference or compose), read through the issue-14 Stack API --------

REDACTED = "[redacted]"
OUTPUT_HEAD = 1000
OUTPUT_TAIL = 2500
"""A step's recorded output: its first and last characters (a runbook script can print a lot)."""


def is_compose(ctx: DrillContext) -> bool:
    """Whether the stack comes from a team's compose file (StackSpec.is_compose)."""
    return bool(getattr(ctx.stack.spec, "is_compose", False))


def data_dir(ctx: DrillContext, service: str) -> str:
    """The PostgreSQL data directory inside a database service: the overlay's `data` for a
    compose stack, /pgdata for drillkit's own image."""
    db = getattr(ctx.stack.spec, "db", None)
    if is_compose(ctx) and db is not None:
        return str(getattr(db, "data", "") or "/var/lib/postgresql/data")
    return "/pgdata"


def secret_values(ctx: DrillContext) -> list[str]:
    """Every secret of the run: the issued ones (rotated-out included) and the superuser's."""
    values = list(ctx.stack.secrets.values())
    creds = getattr(ctx.stack, "db_credentials", None)
    if callable(creds):
        with contextlib.suppress(Exception):
            values.append(str(creds()[1]))
    return [v for v in values if v]


def redact(ctx: DrillContext, text: str) -> str:
    """The text with every secret of the run replaced by [redacted] (longest first, so a secret
    that contains another is hidden whole)."""
    for value in sorted(set(secret_values(ctx)), key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, REDACTED)
    return text


def bounded(text: str, head: int = OUTPUT_HEAD, tail: int = OUTPUT_TAIL) -> str:
    """At most head + tail characters: the start and the end, with how much was left out."""
    if len(text) <= head + tail:
        return text
    return f"{text[:head]}\n[... {len(text) - head - tail} characters left out ...]\n{text[-tail:]}"


def register_secret(ctx: DrillContext, name: str, value: str) -> None:
    """Record a value as a secret of the run (reports redact it). A name that is none of the
    reference stack's secret files is only recorded, no file is written."""
    register = getattr(ctx.stack.secrets, "register", None)
    if callable(register):
        register(name, value)
    else:
        ctx.stack.secrets.set(name, value)
