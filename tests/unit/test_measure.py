"""Measurement on synthetic timelines and ledgers: DESIGN.md's definitions, edge cases included."""

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from drillkit.catalog.checks import (
    PERFORMANCE_WINDOW,
    CheckFailed,
    match_errors,
    performance_baseline,
    performance_settled,
    settled_performance,
)
from drillkit.core.hostspeed import MAX_HOST_RATIO
from drillkit.core.hostspeed import PROBE as CONTROL
from drillkit.core.measure import (
    AckedWrite,
    LedgerOutcome,
    Objectives,
    Sample,
    detection_time,
    judge,
    measure,
    recovery_time,
    rpo,
)
from drillkit.core.probes import Baseline, health_verdict
from drillkit.stack.spec import load_stack

APP_LOGS = load_stack().logs["app"]
"""The reference app's log patterns, as stacks/reference.yaml declares them."""


def server_errors(app_log: str, began_after: float | None = None) -> list[str]:
    """The app-log lines no-error-spike counts, by the reference stack's declared patterns."""
    return match_errors(app_log, APP_LOGS, began_after)


T_FAULT = 100.0


def timeline(*spans, probe="availability", step=0.1, start=90.0, end=120.0):
    """Samples every `step` s from start to end; ok except inside the (from, to) spans."""
    out = []
    n = round((end - start) / step)
    for i in range(n + 1):
        t = round(start + i * step, 6)
        ok = not any(a <= t < b for a, b in spans)
        out.append(Sample(probe, t, ok, 0.01, None if ok else "down"))
    return out


def w(key, t):
    return AckedWrite(key, f"h-{key}", t)


def test_no_impact_gives_zero_rto_and_no_detection():
    s = timeline()
    assert detection_time(s, T_FAULT) is None
    assert recovery_time(s, T_FAULT, k=5) == T_FAULT
    m = measure(s, LedgerOutcome(acked=10), T_FAULT, k=5)
    assert m.rto_s == 0 and m.mttd_s is None and m.rpo_s == 0 and m.lost == 0


def test_simple_outage_rto_and_mttd():
    s = timeline((100.3, 102.0))
    m = measure(s, LedgerOutcome(acked=0), T_FAULT, k=5)
    assert m.mttd_s == pytest.approx(0.3)
    assert m.rto_s == pytest.approx(2.0)  # first passing sample at 102.0 starts the final run


def test_failures_before_the_fault_are_ignored():
    s = timeline((95.0, 96.0))
    assert detection_time(s, T_FAULT) is None
    assert recovery_time(s, T_FAULT, k=3) == T_FAULT


def test_flapping_after_recovery_moves_t_recovered_to_the_last_failure():
    s = timeline((100.2, 101.0), (103.0, 103.3))
    assert recovery_time(s, T_FAULT, k=5) == pytest.approx(103.3)


def test_never_recovered_when_the_final_passing_run_is_shorter_than_k():
    s = timeline((100.2, 119.8))  # passes only at 119.8, 119.9, 120.0
    assert recovery_time(s, T_FAULT, k=5) is None
    m = measure(s, LedgerOutcome(acked=0), T_FAULT, k=5)
    assert m.rto_s is None and not m.recovered
    v = judge(m, Objectives(rto_s=10, rpo_s=0))
    assert not v.passed and v.category == "rto" and "never recovered" in v.breaches[0]


def test_k_consecutive_counts_both_probes_merged():
    a = timeline((100.0, 101.0), probe="availability", step=0.2)
    j = timeline((100.0, 101.5), probe="journey", step=0.2, start=90.1)
    t = recovery_time(a + j, T_FAULT, k=4)
    assert t == pytest.approx(101.5, abs=0.11)  # the journey's recovery is the later one


def test_t_recovered_waits_for_every_probe_that_failed():
    """A partial outage (disk full: reads work, writes fail): the health probe passes throughout,
    so the first merged pass after the journey's last failure is a health sample taken while
    writes still failed. Recovery is the journey's first pass (a writer's refused write between
    the two failed no-error-spike in a flake run)."""
    a = timeline(probe="availability", step=0.1, start=90.0)
    j = timeline((100.0, 103.0), probe="journey", step=0.1, start=90.05)
    t = recovery_time(a + j, T_FAULT, k=5)
    assert t == pytest.approx(103.05)
    merged_first_pass = min(s.t for s in a + j if s.t > 102.95)
    assert merged_first_pass == pytest.approx(103.0) and t > merged_first_pass


def test_never_recovered_while_one_probe_has_not_passed_again():
    a = timeline(probe="availability", step=0.1, start=90.0)
    j = timeline((100.0, 121.0), probe="journey", step=0.1, start=90.05, end=119.0)
    assert recovery_time(a + j, T_FAULT, k=5) is None


def test_rpo_zero_when_nothing_lost():
    assert rpo([], T_FAULT) == 0


def test_rpo_restore_to_an_older_point_is_t_fault_minus_oldest_lost():
    lost = [w("a", 95.0), w("b", 97.0), w("c", 99.5)]
    assert rpo(lost, T_FAULT) == pytest.approx(5.0)


def test_rpo_for_writes_lost_after_t_fault_spans_their_window():
    lost = [w("a", 101.0), w("b", 104.0)]  # split-brain writes acknowledged after the fault
    assert rpo(lost, T_FAULT) == pytest.approx(3.0)


def test_rpo_mixed_before_and_after_fault():
    lost = [w("a", 99.0), w("b", 103.0)]
    assert rpo(lost, T_FAULT) == pytest.approx(4.0)


def test_altered_rows_count_as_lost_for_rpo_and_breach():
    out = LedgerOutcome(acked=3, altered=(w("x", 98.0),))
    m = measure(timeline(), out, T_FAULT, k=5)
    assert m.altered == 1 and m.lost == 0 and m.rpo_s == pytest.approx(2.0)
    v = judge(m, Objectives(rto_s=10, rpo_s=0))
    assert v.category == "rpo" and "1 altered" in v.breaches[0]


def test_rpo_objective_zero_fails_even_on_a_single_write_lost_in_the_same_instant():
    out = LedgerOutcome(acked=5, lost=(w("x", T_FAULT),))
    m = measure(timeline(), out, T_FAULT, k=5)
    assert m.rpo_s == 0
    v = judge(m, Objectives(rto_s=10, rpo_s=0))
    assert not v.passed and "1 acknowledged writes lost" in v.breaches[0]


def test_in_doubt_writes_are_not_losses():
    out = LedgerOutcome(acked=5, in_doubt=2)
    m = measure(timeline(), out, T_FAULT, k=5)
    assert m.in_doubt == 2 and m.rpo_s == 0 and judge(m, Objectives(10, 0)).passed


def test_writer_and_probe_share_one_clock_ack_times_compare_with_t_fault():
    # a write acknowledged just before the fault and lost: RPO is measured on the same clock
    out = LedgerOutcome(acked=1, lost=(w("x", T_FAULT - 0.05),))
    m = measure(timeline(), out, T_FAULT, k=5)
    assert m.rpo_s == pytest.approx(0.05)


def test_breach_messages_carry_the_numbers():
    m = measure(timeline((100.1, 114.2)), LedgerOutcome(acked=0), T_FAULT, k=5)
    v = judge(m, Objectives(rto_s=10, rpo_s=0, detection_s=0.05))
    assert v.breaches[0] == "RTO 14.2 s > objective 10.0 s"
    assert any(b.startswith("MTTD 0.10 s > objective 0.05 s") for b in v.breaches)


def test_checklist_failures_fail_the_verdict():
    m = measure(timeline(), LedgerOutcome(acked=0), T_FAULT, k=5)
    v = judge(m, Objectives(10, 0), ["database-healthy: replica not streaming"])
    assert not v.passed and v.category == "checklist"


def test_k_must_be_positive():
    with pytest.raises(ValueError):
        recovery_time([], T_FAULT, k=0)


def test_no_error_spike_reads_the_apps_5xx_lines():
    log = "\n".join(
        [
            '2026-12-01T06:00:00.000001Z request method="GET" path="/api/health" status=200 duration_ms=1.2',
            '2026-12-01T06:00:00.100001Z request method="POST" path="/api/orders" status=503 duration_ms=0.8',
            '2026-12-01T06:00:00.200001Z request method="GET" path="/api/orders/5031" status=404 duration_ms=0.5',
            '2026-12-01T06:00:00.300001Z db_error error="status=500 from upstream"',
            '2026-12-01T06:00:00.400001Z request method="POST" path="/api/orders/7/pay" status=500 duration_ms=3.0',
            '2026-12-01T06:00:00.500001Z request method="GET" path="/api/health" status=5030 duration_ms=1.0',
        ]
    )
    found = server_errors(log)
    assert [ln.split(" status=")[1][:3] for ln in found] == ["503", "500"]
    assert server_errors(log.splitlines()[0]) == []


def test_a_5xx_to_a_request_that_began_before_recovery_is_the_outages():
    recovered = datetime(2026, 12, 1, 7, 58, 19, tzinfo=UTC).timestamp()
    waited_out = '2026-12-01T07:58:20.120725Z request method="GET" path="/api/health" status=503 duration_ms=2215.0'
    after = '2026-12-01T07:58:20.120725Z request method="POST" path="/api/orders" status=503 duration_ms=3.5'
    unreadable = 'yesterday request method="GET" path="/api/health" status=500 duration_ms=1.0'
    log = "\n".join([waited_out, after, unreadable])
    assert server_errors(log, began_after=recovered) == [after, unreadable]
    assert server_errors(log) == [waited_out, after, unreadable]


# ----- performance-baseline: the last journeys after recovery ---------------------


def _perf_ctx(latencies_after, t_rec=10.0, baseline_ms=40.0, control_ms=(2.0, 2.0)):
    """A context whose journeys start at t_rec and run every 100 ms with the given latencies;
    the host control took control_ms[0] at baseline and control_ms[1] after recovery."""
    samples = [
        Sample("journey", t_rec + 0.1 * i + lat, True, lat) for i, lat in enumerate(latencies_after)
    ]
    end = max(s.t for s in samples) if samples else t_rec
    control = [
        Sample(CONTROL, t_rec + 0.2 * i, True, control_ms[1] / 1000)
        for i in range(int((end - t_rec) / 0.2) + 1)
    ]
    return SimpleNamespace(
        baseline=Baseline(baseline_ms / 1000, 0.01, 15, control_median_s=control_ms[0] / 1000),
        probes=SimpleNamespace(
            snapshot=lambda: list(samples), control=SimpleNamespace(snapshot=lambda: control)
        ),
        result=SimpleNamespace(markers={"recovered": t_rec}, extra={}),
    )


def test_performance_back_to_the_baseline_passes():
    ctx = _perf_ctx([0.041] * 30)
    perf = settled_performance(ctx, 10.0)
    assert perf.within and perf.count == PERFORMANCE_WINDOW
    assert "journey median 41.0 ms" in performance_baseline(ctx)


def test_a_slow_start_after_recovery_is_not_a_regression():
    # cold caches right after a restore: the first journeys are slow, the last 10 normal
    ctx = _perf_ctx([0.300] * 15 + [0.042] * 15)
    assert settled_performance(ctx, 10.0).within


def test_a_lasting_degradation_fails_with_its_numbers():
    ctx = _perf_ctx([0.150] * 30)  # 3.75x the 40 ms baseline; the limit is 1.5x + 25 ms = 85 ms
    perf = settled_performance(ctx, 10.0)
    assert not perf.within and perf.limit_s == pytest.approx(0.085)
    with pytest.raises(CheckFailed, match=r"journey median 150.0 ms .* \(limit 85.0 ms\)"):
        performance_baseline(ctx)


def test_a_degradation_at_the_end_of_the_window_fails():
    # recovered, then slow again (e.g. the wrong fix): the last journeys are the slow part
    ctx = _perf_ctx([0.040] * 15 + [0.200] * 15)
    assert not settled_performance(ctx, 10.0).within


def test_the_extended_observation_is_stated_in_the_detail():
    ctx = _perf_ctx([0.041] * 30)
    ctx.result.extra["performance_settle_s"] = 2.5
    assert "observation extended 2.5 s" in performance_baseline(ctx)


def test_a_host_slowed_by_its_other_load_scales_the_limit():
    # 2.6x the baseline, as a CI runner's journeys ran with another drill beside them: the
    # control outside the stack ran 2.5x slower over the same window, so it is not the stack's
    ctx = _perf_ctx([0.104] * 30, control_ms=(2.0, 5.0))
    perf = settled_performance(ctx, 10.0)
    assert perf.within and perf.host.ratio == pytest.approx(2.5)
    assert perf.limit_s == pytest.approx(0.040 * 1.5 * 2.5 + 0.025)
    assert "host control round trip 5.0 ms vs 2.0 ms at baseline: limit x 2.50" in (
        performance_baseline(ctx)
    )


def test_a_degradation_on_a_steady_host_still_fails():
    # the wrong fix of db-latency: 200 ms on the database path; the control is not on it
    ctx = _perf_ctx([0.240] * 30, control_ms=(2.0, 2.2))
    assert not settled_performance(ctx, 10.0).within
    with pytest.raises(CheckFailed, match=r"journey median 240.0 ms .*limit x 1.10"):
        performance_baseline(ctx)


def test_the_host_slack_is_bounded():
    # a host 10x slower (or a stack burning every core) buys at most MAX_HOST_RATIO
    ctx = _perf_ctx([0.400] * 30, control_ms=(2.0, 20.0))
    perf = settled_performance(ctx, 10.0)
    assert perf.host.ratio == MAX_HOST_RATIO and not perf.within


def test_a_faster_host_never_tightens_the_limit():
    ctx = _perf_ctx([0.080] * 30, control_ms=(4.0, 1.0))
    perf = settled_performance(ctx, 10.0)
    assert perf.host.ratio == 1.0 and perf.limit_s == pytest.approx(0.085) and perf.within
    assert "limit x 1.00" in performance_baseline(ctx)


def test_without_a_control_the_limit_is_unscaled():
    ctx = _perf_ctx([0.150] * 30, control_ms=(2.0, 5.0))
    ctx.baseline.control_median_s = None
    perf = settled_performance(ctx, 10.0)
    assert perf.host is None and perf.limit_s == pytest.approx(0.085) and not perf.within


def test_a_handful_of_journeys_does_not_settle_the_observation():
    # 5 post-recovery journeys: within the limit, but the median of 5 is one host hiccup's; the
    # observation goes on (the check, if it must judge them, passes them)
    ctx = _perf_ctx([0.041] * 5)
    assert settled_performance(ctx, 10.0).within
    assert not performance_settled(ctx, 10.0)
    ctx = _perf_ctx([0.041] * PERFORMANCE_WINDOW)
    assert performance_settled(ctx, 10.0)


def test_the_check_judges_the_window_the_observation_settled_on():
    # settled at 55 ms against an 85 ms limit; the journeys that finished while the probes were
    # being stopped (slow: the host stalled) do not flip the verdict the observation ended on
    ctx = _perf_ctx([0.055] * 30)
    assert performance_settled(ctx, 10.0)
    end = ctx.result.extra["performance_window_end"]
    late = [Sample("journey", end + 0.1 * i, True, 0.400) for i in range(1, 40)]
    snapshot = ctx.probes.snapshot() + late
    ctx.probes.snapshot = lambda: list(snapshot)
    assert not settled_performance(ctx, 10.0).within  # judged on everything, it would fail
    assert "journey median 55.0 ms" in performance_baseline(ctx)


def test_too_few_journeys_after_recovery_fail():
    ctx = _perf_ctx([0.041] * 2)
    assert not settled_performance(ctx, 10.0).within
    with pytest.raises(CheckFailed, match="only 2 successful journeys"):
        performance_baseline(ctx)


@pytest.mark.parametrize(
    ("status", "body", "why"),
    [
        (200, {"status": "ok", "maintenance": False}, None),
        (200, {"status": "ok", "maintenance": True}, "maintenance mode on"),
        (503, {"status": "error", "error": "database unavailable"}, "health 503"),
        (200, {"status": "error"}, "health 200"),
        (200, "<html>proxy error</html>", "health 200"),
    ],
)
def test_health_verdict(status: int, body: object, why: str | None) -> None:
    """Maintenance mode is not availability: with it counted as a pass, T_recovered could fall
    before maintenance was off and a refused write land after it (a CI failure of
    corruption-logical on no-error-spike)."""
    got = health_verdict(status, body)
    if why is None:
        assert got is None
    else:
        assert got is not None and why in got
