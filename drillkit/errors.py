"""drillkit's exceptions: one base class, a few kinds, each message says what was checked and the fix.

A *breach* (RTO over objective, lost writes, a checklist item failing) is not an exception here: it is
a verdict, reported as a test failure. These exceptions mean the drill could not be carried out.
"""

from __future__ import annotations


class DrillError(Exception):
    """Base of every drillkit error."""


class EnvironmentBroken(DrillError):
    """The machine cannot run a drill (no engine, image build failed, service never came up).

    Reported as a test *error*, never as a drill failure: nothing about recovery was measured.
    """


class ValidationError(DrillError):
    """A scenario, stack or policy file is invalid. Carries one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class StepFailed(DrillError):
    """A fault or recovery step raised or overran its timeout."""

    def __init__(self, step: str, reason: str) -> None:
        self.step = step
        self.reason = reason
        super().__init__(f"step {step}: {reason}")


class CheckFailed(Exception):
    """A validation checklist item does not hold; its message is the evidence (a verdict, not an
    error: the drill ran and recovery was judged)."""


class BlastRadiusError(DrillError):
    """A destructive action was aimed at something this run did not create."""


class DrillAborted(DrillError):
    """The drill passed its maximum duration (its stop condition) and was aborted."""

    def __init__(self, phase: str, limit_s: float) -> None:
        self.phase = phase
        self.limit_s = limit_s
        super().__init__(f"drill aborted in phase '{phase}': maximum duration {limit_s:g} s passed")
