"""RTO, RPO and MTTD from a probe timeline and a write ledger, exactly as DESIGN.md defines them.

All times are seconds on one monotonic clock (`time.monotonic()` of the harness process), shared by
the probes, the writer and the runner, so no two clocks are ever compared.

- T_fault: when fault injection began.
- A sample's time `t` is when its outcome became known (the probe's completion, or its timeout).
  MTTD = t of the first failed sample at or after T_fault − T_fault.
- T_recovered: when every probe that failed after T_fault has passed again (the first passing sample
  of the last probe to recover), provided the final run of passing samples (all probes merged in
  completion order) holds at least K samples; nothing fails after it up to the end of the
  observation window. RTO = T_recovered − T_fault; 0 when no sample failed after T_fault.
  (Per probe, not merged: during a partial outage the health probe passes between two failed
  journeys, and that pass is not the end of the outage.)
- Lost writes: acknowledged and absent, or present with another payload (altered).
  RPO = max(T_fault, newest lost ack) − oldest lost ack, and 0 when nothing is lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Sample:
    """One probe outcome. `t` is its completion time; `latency_s` how long it took."""

    probe: str
    t: float
    ok: bool
    latency_s: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class AckedWrite:
    """A write the application acknowledged: its ledger key, payload digest and ack time."""

    key: str
    payload_hash: str
    t_ack: float


@dataclass(frozen=True)
class LedgerOutcome:
    """What survived: every acknowledged write looked up after recovery."""

    acked: int
    lost: tuple[AckedWrite, ...] = ()
    altered: tuple[AckedWrite, ...] = ()
    in_doubt: int = 0
    """Writes present in the database that were sent but never acknowledged (not a loss)."""

    @property
    def lost_or_altered(self) -> tuple[AckedWrite, ...]:
        return self.lost + self.altered


@dataclass(frozen=True)
class Measurement:
    t_fault: float
    t_detected: float | None
    t_recovered: float | None
    mttd_s: float | None
    rto_s: float | None
    """None: never recovered within the observation."""
    rpo_s: float
    lost: int
    altered: int
    in_doubt: int
    acked: int
    samples: int
    failed_samples: int
    lost_oldest_s: float | None = None
    """Seconds before T_fault of the oldest lost or altered ack (negative: after the fault);
    None when nothing is lost."""
    lost_newest_s: float | None = None
    """Seconds before T_fault of the newest lost or altered ack (negative: after the fault)."""

    @property
    def recovered(self) -> bool:
        return self.rto_s is not None

    @property
    def loss_summary(self) -> str:
        """'lost N writes, acknowledged between X s and Y s before the fault' (or 'no
        acknowledged write lost')."""
        return loss_summary(
            self.lost, self.altered, self.acked, self.lost_oldest_s, self.lost_newest_s
        )


def _when(before_s: float) -> str:
    return f"{fmt_s(before_s)} before" if before_s >= 0 else f"{fmt_s(-before_s)} after"


def loss_summary(
    lost: int, altered: int, acked: int, oldest_s: float | None, newest_s: float | None
) -> str:
    """How many acknowledged writes were lost or altered and how old they were at the fault."""
    if (not lost and not altered) or oldest_s is None or newest_s is None:
        return f"no acknowledged write lost (of {acked})"
    what = f"lost {lost} writes" + (f" and {altered} altered" if altered else "")
    return (
        f"{what} of {acked}, acknowledged between {_when(oldest_s)} and {_when(newest_s)} the fault"
    )


def loss_ages(lost: Iterable[AckedWrite], t_fault: float) -> tuple[float | None, float | None]:
    """(oldest, newest) lost ack as seconds before T_fault (negative: acknowledged after it)."""
    acks = [w.t_ack for w in lost]
    if not acks:
        return None, None
    return round(t_fault - min(acks), 3), round(t_fault - max(acks), 3)


def detection_time(samples: Iterable[Sample], t_fault: float) -> float | None:
    """Completion time of the first failed sample at or after T_fault, or None (no impact seen)."""
    failed = [s.t for s in samples if not s.ok and s.t >= t_fault]
    return min(failed) if failed else None


def recovery_time(samples: Sequence[Sample], t_fault: float, k: int) -> float | None:
    """T_recovered per the module docstring; T_fault itself when nothing failed after it."""
    if k < 1:
        raise ValueError("k must be at least 1")
    after = sorted((s for s in samples if s.t >= t_fault), key=lambda s: s.t)
    last_fail = max((i for i, s in enumerate(after) if not s.ok), default=None)
    if last_fail is None:
        return t_fault
    tail = after[last_fail + 1 :]
    if len(tail) < k:
        return None
    t_rec = tail[0].t
    for probe in {s.probe for s in after if not s.ok}:
        mine = [s for s in after if s.probe == probe]
        last = max(i for i, s in enumerate(mine) if not s.ok)
        if last + 1 == len(mine):
            return None  # it never passed again
        t_rec = max(t_rec, mine[last + 1].t)
    return t_rec


def rpo(lost: Iterable[AckedWrite], t_fault: float) -> float:
    """max(T_fault, newest lost ack) − oldest lost ack; 0 when nothing is lost."""
    acks = [w.t_ack for w in lost]
    if not acks:
        return 0.0
    return max(t_fault, max(acks)) - min(acks)


def measure(
    samples: Sequence[Sample], ledger: LedgerOutcome, t_fault: float, k: int
) -> Measurement:
    t_det = detection_time(samples, t_fault)
    t_rec = recovery_time(samples, t_fault, k)
    oldest, newest = loss_ages(ledger.lost_or_altered, t_fault)
    return Measurement(
        t_fault=t_fault,
        t_detected=t_det,
        t_recovered=t_rec,
        mttd_s=None if t_det is None else t_det - t_fault,
        rto_s=None if t_rec is None else t_rec - t_fault,
        rpo_s=rpo(ledger.lost_or_altered, t_fault),
        lost=len(ledger.lost),
        altered=len(ledger.altered),
        in_doubt=ledger.in_doubt,
        acked=ledger.acked,
        samples=len(samples),
        failed_samples=sum(1 for s in samples if not s.ok),
        lost_oldest_s=oldest,
        lost_newest_s=newest,
    )


@dataclass(frozen=True)
class Objectives:
    """A drill's targets, in seconds. `detection_s` None: detection is not judged."""

    rto_s: float
    rpo_s: float
    detection_s: float | None = None


@dataclass
class Verdict:
    breaches: list[str] = field(default_factory=list)
    category: str | None = None
    """'rto', 'rpo', 'detection' or 'checklist': the first breach's kind, for report categories."""

    @property
    def passed(self) -> bool:
        return not self.breaches


def fmt_s(value: float) -> str:
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def judge(m: Measurement, obj: Objectives, failed_checks: Sequence[str] = ()) -> Verdict:
    """Compare a measurement with its objectives; each breach is a sentence with the numbers."""
    v = Verdict()

    def breach(kind: str, text: str) -> None:
        v.breaches.append(text)
        v.category = v.category or kind

    if m.rto_s is None:
        breach("rto", f"RTO: never recovered (objective {fmt_s(obj.rto_s)})")
    elif m.rto_s > obj.rto_s:
        breach("rto", f"RTO {fmt_s(m.rto_s)} > objective {fmt_s(obj.rto_s)}")
    lost = m.lost + m.altered
    counts = f"{m.lost} acknowledged writes lost, {m.altered} altered, of {m.acked}"
    if lost and m.lost_oldest_s is not None and m.lost_newest_s is not None:
        counts += (
            f"; acknowledged between {_when(m.lost_oldest_s)} and {_when(m.lost_newest_s)} "
            "the fault"
        )
    if m.rpo_s > obj.rpo_s:
        breach("rpo", f"RPO {fmt_s(m.rpo_s)} > objective {fmt_s(obj.rpo_s)} ({counts})")
    elif obj.rpo_s == 0 and lost:  # a loss inside one instant still breaches an RPO of zero
        breach("rpo", f"RPO objective 0 s breached: {counts} (span {fmt_s(m.rpo_s)})")
    if obj.detection_s is not None and m.mttd_s is not None and m.mttd_s > obj.detection_s:
        breach("detection", f"MTTD {fmt_s(m.mttd_s)} > objective {fmt_s(obj.detection_s)}")
    for item in failed_checks:
        breach("checklist", f"checklist: {item}")
    return v
