"""The host's own speed, measured beside the probes: the control performance-baseline judges by.

A journey's latency depends on the stack and on the host: on a shared CI runner (2 cores, steal
from the hypervisor's other tenants, another drill beside it) the same healthy stack answers 2 to
3 times slower for a minute and then fast again. A check that compares the journeys after
recovery with the steady-state ones cannot tell those apart without a control: a fixed piece of
work, outside the stack, timed at the same moments as the journeys.

The control is a child process (not a thread: a journey's latency is hops between processes,
each waiting to be scheduled) that answers each request after a fixed CPU task (SHA-256 chains,
about 1 ms on an idle core here) and a 4 KiB write with fsync (the journeys' orders are
fsync'ed commits). Its round trip, measured by the drill's clock, is one control sample. The
stack under drill is not on its path: a fault in the stack (a slow database path, a lock, a
cold cache) leaves it alone, while whatever slows the host slows it too.

What it cannot tell apart: the stack itself loading the host. A recovery that leaves the stack
burning every core slows the control as well; `MAX_HOST_RATIO` bounds how much slack that can
buy, and the detail states the ratio so it is never silent.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from drillkit.core.measure import Sample

PROBE = "host-control"
"""The control's samples' probe name (kept apart from the stack's samples: never judged as
availability)."""

MAX_HOST_RATIO = 3.0
"""The most a slower host can scale performance-baseline's limit by (see `host_ratio`)."""

_SERVER = r"""
import hashlib, os, sys
block = os.urandom(65536)
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
out = sys.stdout.buffer
while sys.stdin.buffer.read(1):
    h = b""
    for _ in range(16):
        h = hashlib.sha256(h + block).digest()
    os.pwrite(fd, block[:4096], 0)
    os.fsync(fd)
    out.write(b".")
    out.flush()
"""


class HostControl:
    """The control process and its samples, on the drill's clock; one round trip per tick."""

    def __init__(self, clock: Callable[[], float], interval_s: float = 0.1) -> None:
        self.clock = clock
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="drillkit-control-")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(Path(self._folder.name) / "control")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="probe-host-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()  # type: ignore[union-attr]
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def _loop(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        next_at = self.clock()
        warm = False  # the first answer waits for the interpreter to start: not a sample
        while not self._stop.is_set():
            start = self.clock()
            try:
                proc.stdin.write(b".")
                proc.stdin.flush()
                answered = proc.stdout.read(1) == b"."
            except OSError:
                answered = False
            if not answered:  # the control is gone: the check judges without it
                return
            end = self.clock()
            if warm:
                with self._lock:
                    self.samples.append(Sample(PROBE, end, True, end - start))
            warm = True
            next_at = max(next_at + self.interval_s, end)
            self._stop.wait(next_at - self.clock())

    def snapshot(self) -> list[Sample]:
        with self._lock:
            return list(self.samples)


@dataclass(frozen=True)
class HostRatio:
    """How much slower the host ran over a window than over the steady-state window."""

    ratio: float
    """The windows' control medians' ratio, within [1, MAX_HOST_RATIO]."""
    baseline_s: float
    window_s: float

    @property
    def detail(self) -> str:
        return (
            f"host control round trip {self.window_s * 1000:.1f} ms vs "
            f"{self.baseline_s * 1000:.1f} ms at baseline: limit x {self.ratio:.2f}"
        )


def control_median(
    samples: list[Sample], since: float, until: float = float("inf"), least: int = 1
) -> float | None:
    """The median control round trip (s) of the samples stamped in [since, until]; None: fewer
    than `least` of them."""
    window = [s.latency_s for s in samples if since <= s.t <= until]
    return statistics.median(window) if window and len(window) >= least else None


def host_ratio(
    baseline_s: float | None, samples: list[Sample], since: float, until: float
) -> HostRatio | None:
    """The host's slowdown over [since, until] against the steady-state control median: None
    without a baseline or with fewer than 3 control samples in the window (the limit is then
    unscaled). A faster host never tightens the limit (the ratio is at least 1)."""
    mid = control_median(samples, since, until, least=3)
    if baseline_s is None or baseline_s <= 0 or mid is None:
        return None
    return HostRatio(min(MAX_HOST_RATIO, max(1.0, mid / baseline_s)), baseline_s, mid)
