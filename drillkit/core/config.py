"""A run's resolved configuration, the objectives it applies, and the drill's deadline."""

from __future__ import annotations

import dataclasses
import secrets as _secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from drillkit.core.measure import Objectives
from drillkit.core.scenario import Scenario
from drillkit.errors import DrillAborted
from drillkit.paths import project_root


@dataclass(frozen=True)
class RunConfig:
    """Resolved once by drillkit.options (the --drill-* options, their ini twins, the policy file)."""

    results_dir: Path = field(default_factory=lambda: project_root() / "reports" / "runs" / "adhoc")
    run_root: Path = field(default_factory=lambda: project_root() / ".run")
    project_dir: Path = field(default_factory=project_root)
    """The team's project (pytest's rootdir): its git commit goes into the environment record."""
    stack_file: Path | None = None
    probe_interval_s: float = 0.1
    k: int = 5
    keep_on_failure: bool = False
    seed_scale: str = "small"
    objectives: dict[str, dict[str, float]] = field(default_factory=dict)
    """scenario id (or '*') -> {'rto_s':..., 'rpo_s':..., 'detection_s':...} overrides"""
    min_free_disk_gib: float = 2.0
    baseline_backup: str = "auto"
    """'auto': a full backup (taken and verified) when the runbook restores one; 'always'; 'never'."""
    steady_k: int = 5
    """The steady-state window (the scenario's steady_state duration, its upper bound) ends once
    every probe has passed this many times in it; 0: always the whole window. Not when a check
    of the checklist has a settle condition (performance-baseline): it judges against the
    window's journey median, and a short window's median is too easily a quiet moment's (a
    partition-app-db run failed performance-baseline on a 0.46 s window's 72 ms baseline)."""
    evidence_k: int = 10
    """The observation window (the scenario's observe, its upper bound) ends once every probe has
    passed this many times since T_recovered and every settle condition holds; 0: always the
    whole window. A failure in the window keeps it open to its end."""
    data_in_memory: bool = True
    """Put the databases' data directories on a tmpfs of the run's when this host can (see
    drillkit.core.wiring.data_in_memory): a stack is ready about 0.8 s sooner. Their bytes and
    every fault on them are the same; the data_fs and wal_fs filesystems stay ext4."""
    background_teardown: bool = False
    """Tear a drill's stack down in a background thread once its verdict is recorded (the
    plugin joins it at the end of the session); an aborted or broken drill's, at once."""


def new_run_id() -> str:
    return _secrets.token_hex(4)


def objectives_for(scenario: Scenario, config: RunConfig) -> Objectives:
    obj = scenario.objectives
    for key in ("*", scenario.id):
        override = config.objectives.get(key)
        if override:
            obj = dataclasses.replace(obj, **override)
    return obj


class Deadline:
    """The drill's stop condition: past max_duration it is aborted in whatever phase it is."""

    def __init__(self, limit_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit_s = limit_s
        self.clock = clock
        self.end = clock() + limit_s

    def remaining(self) -> float:
        return self.end - self.clock()

    def bound(self, seconds: float) -> float:
        """`seconds`, cut to the time left (never negative): how long a phase may wait."""
        return max(0.0, min(seconds, self.remaining()))

    def check(self, phase: str) -> None:
        if self.remaining() <= 0:
            raise DrillAborted(phase, self.limit_s)
