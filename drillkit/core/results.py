"""A drill's record: everything measured and decided, serialisable to JSON for reporters.

Times named `t_*` and `t` are monotonic seconds on the drill's clock; `wall_*` are unix seconds.
`t0_monotonic`/`t0_wall` pair the two clocks (wall = t0_wall + (t - t0_monotonic)).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drillkit.core.measure import AckedWrite, Measurement, Objectives, Sample


@dataclass
class StepRecord:
    name: str
    action: str
    kind: str
    """'fault' or 'recovery'"""
    t_start: float
    t_end: float | None = None
    ok: bool | None = None
    error: str | None = None
    output: str = ""


@dataclass
class CheckResult:
    id: str
    title: str
    ok: bool
    detail: str = ""


@dataclass
class DrillResult:
    run_id: str
    scenario_id: str
    title: str
    severity: str
    failure_class: str
    tags: list[str]
    source: dict[str, str]
    """{'runbook': '000', 'section': 'Procedure 1 ...', 'file': 'seeds/000_....txt'}"""
    scenario_text: str
    objectives: Objectives
    t0_monotonic: float
    t0_wall: float
    status: str = "running"
    """running | passed | failed | error | aborted | interrupted"""
    phase: str = "created"
    breaches: list[str] = field(default_factory=list)
    category: str | None = None
    """rto | rpo | detection | checklist | recovery-step | environment | aborted"""
    error: str | None = None
    measurement: Measurement | None = None
    steps: list[StepRecord] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    acked: list[AckedWrite] = field(default_factory=list)
    lost: list[AckedWrite] = field(default_factory=list)
    altered: list[AckedWrite] = field(default_factory=list)
    markers: dict[str, float] = field(default_factory=dict)
    """fault, detected, recovered, steady: monotonic times"""
    environment: dict[str, str] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    pg_errors: list[str] = field(default_factory=list)
    evidence: dict[str, str] = field(default_factory=dict)
    """name -> text preserved during the drill (e.g. audit log copy, fault output)"""
    extra: dict[str, Any] = field(default_factory=dict)
    """drill-specific figures: max replication lag, RPO before reconciliation, ..."""
    wall_end: float | None = None
    evidence_status: str = ""
    """'evidence', or 'not evidence: <why>' (its checklist is below its class's minimum, it did
    not complete, no check ran): set when the drill finishes (`evidence_status`)."""

    def wall(self, t: float) -> float:
        return self.t0_wall + (t - self.t0_monotonic)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DrillResult:
        d = dict(data)
        d["objectives"] = Objectives(**d["objectives"])
        d["measurement"] = Measurement(**d["measurement"]) if d.get("measurement") else None
        d["steps"] = [StepRecord(**s) for s in d.get("steps", [])]
        d["checks"] = [CheckResult(**c) for c in d.get("checks", [])]
        d["samples"] = [Sample(**s) for s in d.get("samples", [])]
        for key in ("acked", "lost", "altered"):
            d[key] = [AckedWrite(**w) for w in d.get(key, [])]
        return cls(**d)

    def save(self, path: Path) -> None:
        """Write atomically: a reader sees the old record or the new one, never half of one."""
        write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> DrillResult:
        return cls.from_json(json.loads(path.read_text()))


def load_all(directory: Path) -> list[DrillResult]:
    """Every drill record of a session folder, in file-name order."""
    return [DrillResult.load(p) for p in sorted(directory.glob("*.json"))]


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def evidence_status(result: DrillResult, not_evidence: str = "") -> str:
    """Whether the record is evidence: 'evidence', or 'not evidence: <why>'. A drill counts
    only when it verified something: its scenario meets the evidence minimum (`not_evidence`
    says why not), it ran to its verdict (passed or failed) and at least one check ran."""
    if not_evidence:
        return f"not evidence: {not_evidence}"
    if result.status not in ("passed", "failed"):
        return f"not evidence: the drill did not reach its verdict (status {result.status})"
    if not result.checks:
        return "not evidence: no checklist item ran"
    return "evidence"
