"""Steady state is established again after a sample that was only slow (the host stalled), never
after any other failure, and not forever. No containers: a scripted probe timeline."""

from __future__ import annotations

import pytest

from drillkit.core import phases
from drillkit.core.measure import Sample
from drillkit.core.probes import Probes
from drillkit.errors import EnvironmentBroken


class Timeline:
    """Probe samples at fixed times, seen as the fake clock passes them (a wait's poll moves it)."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = sorted(samples, key=lambda s: s.t)
        self.now = 0.0
        self.extra: dict[str, object] = {}

    def clock(self) -> float:
        return self.now

    def wait_for(self, condition, *, what, timeout_s, interval_s=0.05, transient=(), context=None):
        """drillkit.wait.wait_for on the fake clock."""
        end = self.now + timeout_s
        while True:
            try:
                value = condition()
            except EnvironmentBroken:
                raise
            except transient:
                value = None
            if value:
                return value
            if self.now >= end:
                raise EnvironmentBroken(f"timed out after {timeout_s:g} s waiting for {what}")
            self.now = round(self.now + interval_s, 6)

    def snapshot(self) -> list[Sample]:
        return [s for s in self.samples if s.t <= self.now]

    # the real Probes' readings of a timeline, over this one's snapshot
    passing_streak = Probes.passing_streak
    first_failure = Probes.first_failure


@pytest.fixture
def timeline(monkeypatch: pytest.MonkeyPatch):
    def make(samples: list[Sample]) -> Timeline:
        tl = Timeline(samples)
        monkeypatch.setattr(phases, "wait_for", tl.wait_for)
        return tl

    return make


def passing(t0: float, t1: float) -> list[Sample]:
    """Both probes passing every 0.1 s from t0 to t1."""
    out, t = [], t0
    while t < t1:
        out += [Sample("availability", t, True, 0.01), Sample("journey", t + 0.01, True, 0.03)]
        t = round(t + 0.1, 3)
    return out


def slow(t: float, ms: int = 598) -> Sample:
    return Sample("journey", t, False, ms / 1000, f"degraded: {ms} ms > 500 ms")


def test_a_clean_start_needs_no_second_try(timeline) -> None:
    tl = timeline(passing(0.0, 10.0))
    t_steady, window, again = phases.await_steady(tl, 5, 5, 1.5, 30.0, tl.clock)
    assert again == [] and t_steady > 0 and window < 1.5


def test_a_sample_that_was_only_slow_starts_steady_state_again(timeline) -> None:
    samples = [s for s in passing(0.0, 10.0) if s.t != 0.41] + [slow(0.41)]  # in the window
    tl = timeline(samples)
    t_steady, _, again = phases.await_steady(tl, 5, 5, 1.5, 30.0, tl.clock)
    assert [s.t for s in again] == [0.41]
    assert t_steady > 0.41  # the window that counts began after the slow sample


def test_any_other_failure_is_broken_at_once(timeline) -> None:
    refused = Sample("availability", 0.45, False, 0.001, "ConnectionError: refused")
    tl = timeline([*passing(0.0, 10.0), refused])
    with pytest.raises(EnvironmentBroken, match=r"did not hold: .*refused") as err:
        phases.await_steady(tl, 5, 5, 1.5, 30.0, tl.clock)
    assert "started again" not in str(err.value)


def test_slow_samples_in_every_window_are_broken_after_the_retries(timeline) -> None:
    samples = passing(0.0, 30.0)
    samples += [slow(round(0.75 + 1.0 * i, 3)) for i in range(20)]  # one each second
    tl = timeline(samples)
    with pytest.raises(EnvironmentBroken, match=r"started again after 3 slow samples"):
        phases.await_steady(tl, 5, 0, 1.5, 30.0, tl.clock)
    assert phases.STEADY_RETRIES == 3


def test_the_budget_bounds_the_retries(timeline) -> None:
    samples = [*passing(0.0, 30.0), slow(0.45)]
    tl = timeline(samples)
    with pytest.raises(EnvironmentBroken, match="steady state"):
        phases.await_steady(tl, 5, 0, 1.5, 0.6, tl.clock)  # too little time left to start again
    assert tl.now <= 0.6 + 0.05
