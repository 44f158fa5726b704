"""bench.suites: the sets named by issue 20 and the floor arithmetic (no timing asserted)."""

from pathlib import Path

from bench.suites import NIGHTLY_12, QUARTERLY_22, fault_dependent_s
from drillkit.paths import SCENARIOS_DIR


def test_the_issue_sets_name_existing_scenarios() -> None:
    assert len(set(NIGHTLY_12)) == 12
    assert len(set(QUARTERLY_22)) == 22
    missing = [s for s in QUARTERLY_22 if not Path(SCENARIOS_DIR, f"{s}.yaml").is_file()]
    assert missing == []


def test_fault_dependent_counts_fault_runbook_and_the_wait_after_them() -> None:
    record = {
        "steps": [
            {"kind": "fault", "t_start": 10.0, "t_end": 10.5},
            {"kind": "prepare", "t_start": 9.0, "t_end": 9.8},
            {"kind": "recovery", "t_start": 10.5, "t_end": 12.0},
        ],
        "markers": {"fault": 10.0, "recovered": 12.75},
    }
    assert fault_dependent_s(record) == 0.5 + 1.5 + 0.75


def test_fault_dependent_without_recovery_or_steps() -> None:
    assert fault_dependent_s({"steps": [], "markers": {}}) == 0.0
    record = {"steps": [{"kind": "fault", "t_start": 1.0, "t_end": 2.0}], "markers": {}}
    assert fault_dependent_s(record) == 1.0
    record["markers"] = {"recovered": 1.5}  # recovered before the step ended: no wait
    assert fault_dependent_s(record) == 1.0
