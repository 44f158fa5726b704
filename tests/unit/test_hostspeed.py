"""The host control (core/hostspeed.py): a real child process timed by the drill's clock, its
samples kept apart from the stack's, and the ratio performance-baseline scales its limit by."""

import time

import pytest

from drillkit.core.hostspeed import MAX_HOST_RATIO, PROBE, HostControl, control_median, host_ratio
from drillkit.core.measure import Sample
from drillkit.wait import wait_for


def _control(t, ms):
    return Sample(PROBE, t, True, ms / 1000)


def test_the_control_times_round_trips_and_stops_its_process():
    control = HostControl(time.monotonic, interval_s=0.02)
    control.start()
    proc = control._proc
    try:
        wait_for(lambda: len(control.snapshot()) >= 5, what="5 control samples", timeout_s=10)
    finally:
        control.stop()
    samples = control.snapshot()
    assert all(s.probe == PROBE and s.ok and 0 < s.latency_s < 5 for s in samples)
    assert [s.t for s in samples] == sorted(s.t for s in samples)
    assert proc is not None and proc.poll() is not None  # the child is gone, not left behind


def test_a_control_whose_process_died_stops_sampling():
    control = HostControl(time.monotonic, interval_s=0.02)
    control.start()
    try:
        wait_for(lambda: control.snapshot(), what="a control sample", timeout_s=10)
        control._proc.kill()
        wait_for(lambda: not control._thread.is_alive(), what="the sampler to end", timeout_s=10)
        n = len(control.snapshot())
    finally:
        control.stop()
    assert len(control.snapshot()) == n


def test_the_median_is_of_the_window_only():
    samples = [_control(t, ms) for t, ms in [(1, 1.0), (2, 2.0), (3, 3.0), (4, 30.0)]]
    assert control_median(samples, 1, 3) == pytest.approx(0.002)
    assert control_median(samples, 5) is None
    assert control_median(samples, 1, 2, least=3) is None


@pytest.mark.parametrize(
    ("baseline_ms", "window_ms", "ratio"),
    [(2.0, 5.0, 2.5), (2.0, 1.0, 1.0), (2.0, 100.0, MAX_HOST_RATIO)],
)
def test_the_ratio_is_at_least_one_and_bounded(baseline_ms, window_ms, ratio):
    samples = [_control(t, window_ms) for t in range(10)]
    found = host_ratio(baseline_ms / 1000, samples, 0, 9)
    assert found is not None and found.ratio == pytest.approx(ratio)


def test_no_ratio_without_a_baseline_or_enough_samples():
    samples = [_control(t, 5.0) for t in range(10)]
    assert host_ratio(None, samples, 0, 9) is None
    assert host_ratio(0.002, samples[:2], 0, 9) is None
