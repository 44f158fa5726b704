"""Which control-framework requirements a drill evidence pack supports, and with what.

The requirement texts are our paraphrases, not quotations of the standards; an auditor reads the
standard itself. `evidence` names what in the pack shows the control operating. `applies_to`
selects the drills in a pack that bear on the control: "*" is every drill, otherwise word
prefixes matched against a drill's failure class, tags and scenario id.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from drillkit.core.results import DrillResult


@dataclass(frozen=True)
class Control:
    framework: str
    control_id: str
    name: str
    requirement: str
    """One sentence, paraphrased."""
    evidence: str
    """What in the pack evidences it: sections, files, fields."""
    applies_to: tuple[str, ...] = ("*",)

    @property
    def label(self) -> str:
        return f"{self.framework} {self.control_id}"


ALL_DRILLS = ("*",)
BACKUP = ("backup", "restore", "pitr", "data-loss", "corruption", "wal", "disk-full")
REDUNDANCY = ("failover", "replica", "promot", "split-brain", "redundan", "standby")
SECURITY = (
    "security",
    "breach",
    "credential",
    "secret",
    "rotation",
    "leak",
    "defacement",
    "compromise",
)

CONTROLS: tuple[Control, ...] = (
    Control(
        "SOC 2",
        "A1.3",
        "Recovery plan testing",
        "The organisation periodically tests its recovery plan procedures to show that the system "
        "can be restored in line with its recovery objectives.",
        "Every drill: the timed recovery steps, measured RTO and RPO against the objectives, the "
        "validation checklist and the verdict (summary table; drill-*.json fields steps, "
        "measurement, objectives, checks, status).",
        ALL_DRILLS,
    ),
    Control(
        "SOC 2",
        "CC7.5",
        "Recovery from security incidents",
        "The organisation has defined and carries out activities to restore operations after an "
        "identified security incident.",
        "Security-incident drills (credential leak and rotation, isolation, defacement): the "
        "recovery steps performed, the checklist proving authentication and journeys work "
        "afterwards, and the secret scan of this pack.",
        SECURITY,
    ),
    Control(
        "ISO/IEC 27001:2022",
        "A.5.29",
        "Information security during disruption",
        "The organisation plans how to keep information security at an appropriate level while "
        "operations are disrupted.",
        "Checklist items run during and after each disruption (authentication working, no error "
        "spike, database integrity) and the per-drill incident report; security drills show "
        "credentials rotated under disruption.",
        ALL_DRILLS,
    ),
    Control(
        "ISO/IEC 27001:2022",
        "A.5.30",
        "ICT readiness for business continuity",
        "ICT readiness is planned, implemented, maintained and tested against the business "
        "continuity objectives.",
        "Objectives versus measured RTO, RPO and detection time per drill (summary table), the "
        "timeline charts, and the drill history with drills overdue for a re-run.",
        ALL_DRILLS,
    ),
    Control(
        "ISO/IEC 27001:2022",
        "A.8.13",
        "Information backup",
        "Backup copies of information and systems are kept and regularly tested according to the "
        "agreed backup policy.",
        "Drills that restore from backup or to a point in time: restore steps with timings, and "
        "the write ledger proving which acknowledged writes survived (measurement.lost, "
        "measurement.rpo_s, drill-*.json lost/altered).",
        BACKUP,
    ),
    Control(
        "ISO/IEC 27001:2022",
        "A.8.14",
        "Redundancy of information processing facilities",
        "Processing facilities have enough redundancy to meet availability requirements.",
        "Failover and replica drills: promotion steps, time to writable (RTO) and writes lost to "
        "replication lag (RPO, lost count, extra figures such as replication lag).",
        REDUNDANCY,
    ),
    Control(
        "HIPAA",
        "164.308(a)(7)(ii)(D)",
        "Testing and revision procedures",
        "Contingency plans are tested periodically and revised according to the results "
        "(addressable implementation specification).",
        "The dated run record (run id, date, operator, environment), the breaches each drill "
        "found as inputs to plan revision, and the drill history showing how often each "
        "procedure is tested.",
        ALL_DRILLS,
    ),
    Control(
        "PCI DSS 4.0",
        "12.10.2",
        "Incident response plan reviewed and tested",
        "At least every twelve months the incident response plan is reviewed, updated as needed "
        "and tested, covering its required elements.",
        "The drills exercised here, each tied to the runbook section it tests (source), with its "
        "date; the history shows the interval between tests.",
        ALL_DRILLS,
    ),
    Control(
        "DORA",
        "Art. 11",
        "Response and recovery",
        "Financial entities keep ICT business continuity and response and recovery plans, with "
        "recovery objectives, and test them regularly.",
        "Each drill is a test of a response and recovery plan: fault, detection, timed recovery "
        "steps and verdict against RTO/RPO objectives.",
        ALL_DRILLS,
    ),
    Control(
        "DORA",
        "Art. 12",
        "Backup policies, restoration and recovery",
        "Backup, restoration and recovery procedures are defined, and restoration from backups is "
        "tested periodically without endangering the live systems.",
        "Backup and restore drills on a disposable replica of the stack: restore timings, "
        "integrity checks (checklist) and data loss measured by the write ledger.",
        BACKUP,
    ),
    Control(
        "DORA",
        "Art. 24",
        "Digital operational resilience testing programme",
        "A risk-based resilience testing programme is established and run, with critical systems "
        "tested at least yearly.",
        "The scenario catalogue behind this run (scenario_text and source per drill), the run "
        "metadata (operator, environment, git commit) and the history with overdue drills.",
        ALL_DRILLS,
    ),
    Control(
        "DORA",
        "Art. 25",
        "Testing of ICT tools and systems",
        "The testing programme includes suitable tests such as scenario-based, performance and "
        "end-to-end tests.",
        "Scenario-based end-to-end drills under live traffic: continuous availability and user "
        "journey probes, the write ledger and latency in the timeline charts.",
        ALL_DRILLS,
    ),
)


def applies(control: Control, result: DrillResult) -> bool:
    """True when the drill bears on the control (see the module docstring)."""
    if "*" in control.applies_to:
        return True
    words = " ".join([result.failure_class or "", result.scenario_id, *result.tags]).lower()
    return any(re.search(rf"(?<![a-z0-9]){re.escape(key)}", words) for key in control.applies_to)


def drills_for(control: Control, results: Sequence[DrillResult]) -> list[str]:
    """Scenario ids in `results` that evidence the control, in order, without repeats."""
    seen: list[str] = []
    for result in results:
        if applies(control, result) and result.scenario_id not in seen:
            seen.append(result.scenario_id)
    return seen


__all__ = ["CONTROLS", "Control", "applies", "drills_for"]
