"""The typed drill context: core facts are fields, catalogue facts are parts (one instance of a
catalogue dataclass per drill), and its helpers (app client, log since T)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from drillkit.catalog.credentials import CredentialLeak
from drillkit.catalog.replication import Fencing
from drillkit.catalog.restore import RestorePoint
from drillkit.core.context import DrillContext, app_client
from drillkit.stack.seed import PROBE_USER


@dataclass
class TeamFacts:
    seen: list[str] = field(default_factory=list)


def _ctx(stack: Any = None) -> DrillContext:
    return DrillContext(stack=stack, probes=None, result=None, clock=lambda: 0.0)  # type: ignore[arg-type]


def test_core_facts_are_fields() -> None:
    ctx = _ctx()
    assert ctx.primary == "primary" and ctx.seeded_orders == 0 and ctx.cleanups == []
    ctx.primary = "replica"
    assert ctx.primary == "replica"
    assert not hasattr(ctx, "state")


def test_a_part_is_one_instance_per_drill() -> None:
    a, b = _ctx(), _ctx()
    a.part(TeamFacts).seen.append("x")
    assert a.part(TeamFacts).seen == ["x"] and a.part(TeamFacts) is a.part(TeamFacts)
    assert b.part(TeamFacts).seen == []
    assert a.part(RestorePoint).xid is None and a.part(Fencing).service is None
    a.part(CredentialLeak).attacker_pid = 42
    assert a.part(CredentialLeak).attacker_pid == 42


def test_app_client_logs_in_with_the_current_password() -> None:
    stack = SimpleNamespace(app_url="http://app", secrets={"user_password": "one"})
    client = _ctx(stack).app_client(timeout_s=3.0)
    assert client.email == PROBE_USER and client.timeout_s == 3.0
    assert client.url("/x") == "http://app/x"
    stack.secrets["user_password"] = "two"  # rotated: the next login uses it
    assert client._password() == "two"
    assert app_client(stack, "someone@drill.example").email == "someone@drill.example"  # type: ignore[arg-type]


def test_log_since_reads_the_containers_log_from_t() -> None:
    asked: list[float] = []

    def logs(since: float) -> bytes:
        asked.append(since)
        return "line \xe9\n".encode() + b"\xff"

    stack = SimpleNamespace(containers={"app": SimpleNamespace(logs=logs)})
    assert _ctx(stack).log_since("app", 12.5) == "line \xe9\n\ufffd"
    assert asked == [12.5]
