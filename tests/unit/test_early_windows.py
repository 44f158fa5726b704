"""The steady-state and observation windows end when their evidence is in (never later than the
scenario's window), and a background teardown is joined with its errors kept. No containers."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from drillkit.core import phases
from drillkit.core.measure import LedgerOutcome, Sample, measure
from drillkit.core.phases import (
    evidence_in,
    join_teardowns,
    probe_kinds,
    recovery_evident,
    steady_held,
    tear_down,
    wait_evidence,
)
from drillkit.errors import StepFailed, ValidationError


class FakeProbes:
    """The probe timeline the end conditions read: snapshot, first_failure, extra."""

    def __init__(self, samples: list[Sample], extra: tuple[str, ...] = ()) -> None:
        self.samples = samples
        self.extra = dict.fromkeys(extra)

    in_flight_since: float | None = None
    """When the oldest probe call still running began (None: none)."""

    def oldest_in_flight(self) -> float | None:
        return self.in_flight_since

    def snapshot(self) -> list[Sample]:
        return list(self.samples)

    def first_failure(self, since: float) -> Sample | None:
        return next((s for s in self.samples if s.t >= since and not s.ok), None)


def timeline(probes: tuple[str, ...], start: float, n: int, ok: bool = True) -> list[Sample]:
    """n samples of each probe, 0.1 s apart from `start`."""
    return [
        Sample(p, start + 0.1 * i + 0.01 * j, ok, 0.02)
        for i in range(n)
        for j, p in enumerate(probes)
    ]


def test_evidence_needs_n_passes_of_every_probe_and_no_failure() -> None:
    samples = timeline(("availability", "journey"), 10.0, 5)
    kinds = {"availability", "journey"}
    assert evidence_in(samples, 10.0, 5, kinds)
    assert not evidence_in(samples, 10.0, 6, kinds)
    assert not evidence_in(samples, 10.0, 5, kinds | {"site"})  # a probe not in yet
    assert not evidence_in([*samples, Sample("journey", 10.9, False, 2.0)], 10.0, 5, kinds)
    assert not evidence_in(samples, None, 5, kinds)  # not recovered
    assert not evidence_in(samples, 10.0, 0, kinds)  # 0: the whole window


def test_probe_kinds_include_extra_probes_before_their_first_sample() -> None:
    samples = timeline(("availability",), 1.0, 3)
    assert probe_kinds(samples, 0.0, ("payment",)) == {"availability", "payment"}
    assert probe_kinds(samples, 5.0) == set()


def test_steady_window_ends_on_k_passes_or_on_a_failure() -> None:
    probes: Any = FakeProbes(timeline(("availability", "journey"), 0.0, 4))
    assert not steady_held(probes, 0.0, 5)
    probes.samples += timeline(("availability", "journey"), 0.4, 1)
    assert steady_held(probes, 0.0, 5)
    failing: Any = FakeProbes(
        [*timeline(("availability",), 0.0, 2), Sample("journey", 0.3, False, 0.1)]
    )
    assert steady_held(failing, 0.0, 5)  # ends the wait; the runner then reports it
    assert failing.first_failure(0.0) is not None


def test_observation_ends_only_after_n_passes_since_t_recovered() -> None:
    kinds = ("availability", "journey")
    before = timeline(kinds, 0.0, 5)
    outage = timeline(kinds, 1.0, 10, ok=False)  # fault at 0.9, outage 1.0-1.9
    after = timeline(kinds, 2.0, 9)
    probes = FakeProbes(before + outage + after)
    ctx: Any = SimpleNamespace(probes=probes)
    assert not recovery_evident(ctx, 0.9, 5, 10, [], 1.5)
    probes.samples += timeline(kinds, 2.9, 1)  # availability's 2.0 came before T_recovered
    assert not recovery_evident(ctx, 0.9, 5, 10, [], 1.5)
    probes.samples += timeline(kinds, 3.0, 1)
    assert recovery_evident(ctx, 0.9, 5, 10, [], 1.5)
    # the verdict's T_recovered is the one the early end was judged on
    m = measure(probes.samples, LedgerOutcome(acked=0), 0.9, 5)
    assert m.t_recovered == pytest.approx(2.01)  # journey's first pass after its outage
    probes.samples.append(Sample("journey", 3.15, False, 0.1))  # a flap: the window stays open
    assert not recovery_evident(ctx, 0.9, 5, 10, [], 1.5)


def test_recovered_during_the_runbook_is_still_watched_after_its_end() -> None:
    kinds = ("availability", "journey")
    probes = FakeProbes(timeline(kinds, 1.0, 2, ok=False) + timeline(kinds, 2.0, 30))
    ctx: Any = SimpleNamespace(probes=probes)  # recovered at 2.01, 30 passes each since
    assert recovery_evident(ctx, 0.9, 5, 10, [], 3.0)
    assert not recovery_evident(ctx, 0.9, 5, 10, [], 4.5)  # the runbook ended at 4.5
    probes.samples += timeline(kinds, 5.0, 10)
    assert recovery_evident(ctx, 0.9, 5, 10, [], 4.5)


def test_observation_waits_for_a_settle_condition() -> None:
    kinds = ("availability", "journey")
    probes = FakeProbes(timeline(kinds, 0.0, 3) + timeline(kinds, 1.0, 2, ok=False))
    probes.samples += timeline(kinds, 2.0, 12)
    ctx: Any = SimpleNamespace(probes=probes)
    holds = {"now": False}
    entry = SimpleNamespace(settle=lambda ctx, t_rec: holds["now"])
    item = SimpleNamespace(params={})
    checks: Any = [(item, entry)]
    assert not recovery_evident(ctx, 0.9, 5, 10, checks, 1.5)
    holds["now"] = True
    assert recovery_evident(ctx, 0.9, 5, 10, checks, 1.5)


def test_wait_evidence_is_bounded_by_the_window() -> None:
    ticks = iter(range(1000))
    clock = lambda: float(next(ticks))  # noqa: E731
    assert wait_evidence(lambda: True, 10.0, clock) == 1.0  # two readings, no wait
    assert wait_evidence(lambda: False, 0.05, lambda: 0.0) == 0.0  # window over: returns


def test_background_teardown_is_joined_and_its_failure_kept() -> None:
    gate = threading.Event()
    removed: list[str] = []

    def slow() -> None:
        gate.wait(5)
        removed.append("a")

    def broken() -> None:
        raise RuntimeError("engine gone")

    assert tear_down(slow, background=True) == []
    assert tear_down(broken, background=True) == []
    assert removed == []  # the drill went on before its stack was gone
    gate.set()
    errors = join_teardowns()
    assert removed == ["a"]
    assert errors == ["RuntimeError: engine gone"]
    assert phases.TEARDOWNS == [] and join_teardowns() == []


def test_foreground_teardown_runs_at_once_and_raises() -> None:
    removed: list[str] = []
    assert tear_down(lambda: removed.append("x"), background=False) == []
    assert removed == ["x"]

    def broken() -> None:
        raise RuntimeError("engine gone")

    with pytest.raises(RuntimeError):
        tear_down(broken, background=False)


def test_window_options_resolve_and_bad_values_are_named(tmp_path: Path) -> None:
    from test_options import resolve

    rc = resolve(tmp_path)
    assert (rc.steady_k, rc.evidence_k, rc.background_teardown) == (5, 10, True)
    rc = resolve(
        tmp_path,
        cli={"--drill-steady-k": "0", "--drill-foreground-teardown": True},
        ini={"drill_evidence_k": "20"},
    )
    assert (rc.steady_k, rc.evidence_k, rc.background_teardown) == (0, 20, False)
    with pytest.raises(ValidationError, match="--drill-evidence-k: expected a whole number"):
        resolve(tmp_path, cli={"--drill-evidence-k": "2.5"})


def test_observation_waits_for_a_probe_call_begun_before_recovery() -> None:
    """A journey begun during the outage that waits out its timeouts is stamped when it ends,
    after the probes passed again: the window stays open until it has said how it ended, so
    the early end never hides a late failure (the verdict's T_recovered would then be None)."""
    kinds = ("availability", "journey")
    probes = FakeProbes(timeline(kinds, 1.0, 3, ok=False) + timeline(kinds, 2.0, 15))
    ctx: Any = SimpleNamespace(probes=probes)
    probes.in_flight_since = 1.2  # begun during the outage, still running
    assert not recovery_evident(ctx, 0.9, 5, 10, [], 1.5)
    probes.in_flight_since = 2.5  # only calls begun after T_recovered run: they cannot hide it
    assert recovery_evident(ctx, 0.9, 5, 10, [], 1.5)


def test_probes_know_the_oldest_call_in_flight() -> None:
    from drillkit.core.probes import ProbeConfig, Probes
    from drillkit.stack.spec import REFERENCE_HEALTH

    now = {"t": 10.0}
    probes = Probes(
        lambda: "http://127.0.0.1:9", REFERENCE_HEALTH, ProbeConfig(), "t", clock=lambda: now["t"]
    )
    seen: list[float | None] = []

    def call() -> None:
        now["t"] = 11.0
        seen.append(probes.oldest_in_flight())

    assert probes.oldest_in_flight() is None
    probes._tracked(call)
    assert seen == [10.0] and probes.oldest_in_flight() is None
    with pytest.raises(RuntimeError):
        probes._tracked(lambda: (_ for _ in ()).throw(RuntimeError("probe bug")))
    assert probes.oldest_in_flight() is None  # a call that raised is no longer in flight


def test_the_all_clear_waits_for_a_probe_call_begun_before_recovery() -> None:
    """post-status-update's resolution announces recovery only once no call begun before it is
    still running: a journey stamped later as failed would move T_recovered past the all-clear."""
    from drillkit.catalog.communications import _await_recovery

    kinds = ("availability", "journey")
    probes: Any = FakeProbes(timeline(kinds, 1.0, 3, ok=False) + timeline(kinds, 2.0, 15))
    probes.passing_streak = lambda since: 30
    probes.in_flight_since = 1.2
    ctx: Any = SimpleNamespace(probes=probes)
    with pytest.raises(StepFailed, match="no recovery to announce"):
        _await_recovery(ctx, 0.9, 5, 0.3)
    probes.in_flight_since = None
    assert _await_recovery(ctx, 0.9, 5, 0.3) == pytest.approx(2.01)
