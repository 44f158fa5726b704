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
