"""await-failover: the drill waits for the stack's own failover (repmgrd, Patroni) and follows the
primary it elected; no election by the timeout is the step's failure, with what the stack said."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from drillkit.catalog.replication import await_failover
from drillkit.core.registry import Duration
from drillkit.errors import EnvironmentBroken, StepFailed


@dataclass
class ElectingStack:
    """current_primary() answers each of `answers` in turn (an exception is raised), then the last."""

    answers: list[str | Exception]
    asked: int = 0
    spec: object = field(default=None)

    def current_primary(self) -> str:
        answer = self.answers[min(self.asked, len(self.answers) - 1)]
        self.asked += 1
        if isinstance(answer, Exception):
            raise answer
        return answer


@dataclass
class Ctx:
    stack: object
    primary: str = "pg1"


NONE = EnvironmentBroken("expected one primary among pg1, pg2, found none (pg1: OperationalError)")


def test_follows_the_primary_the_stack_elected() -> None:
    stack = ElectingStack([NONE, "pg1", NONE, "pg2"])
    ctx = Ctx(stack)
    out = await_failover(ctx, away_from="pg1", timeout=Duration(10.0))  # type: ignore[arg-type]
    assert ctx.primary == "pg2"
    assert out == "pg2 is the primary (was pg1)"
    assert stack.asked == 4  # pg1 still answering as primary was "not yet", like no answer


def test_no_election_is_the_steps_failure_with_the_stacks_answer() -> None:
    ctx = Ctx(ElectingStack([NONE]))
    with pytest.raises(StepFailed, match="found none"):
        await_failover(ctx, away_from="pg1", timeout=Duration(0.3))  # type: ignore[arg-type]
    assert ctx.primary == "pg1"


def test_without_away_from_any_single_primary_will_do() -> None:
    ctx = Ctx(ElectingStack(["pg1"]))
    assert await_failover(ctx, timeout=Duration(1.0)) == "pg1 is the primary"  # type: ignore[arg-type]


def test_a_stack_that_cannot_tell_its_primary_is_refused() -> None:
    with pytest.raises(StepFailed, match="no way to tell its current primary"):
        await_failover(Ctx(object()), timeout=Duration(1.0))  # type: ignore[arg-type]
