"""Pure logic of the runbook steps in drillkit/catalog/ (no containers), and the shape of its scenarios."""

from pathlib import Path

import pytest

from drillkit.catalog.breach import sql_ident
from drillkit.catalog.replication import lag_seconds, promotion_refusal
from drillkit.catalog.sessions import is_slot_refusal, root_blockers
from drillkit.core.registry import CHECKS, FAULTS, RECOVERY
from drillkit.core.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
DRILLS = {
    "complete-outage": ("complete-outage-app-forgotten", "rto"),
    "db-lock-incident": ("db-lock-incident-wrong-sessions", "rto"),
    "connection-exhaustion": ("connection-exhaustion-no-terminate", "rto"),
    "force-logout": ("force-logout-no-rotation", "checklist"),
    "replica-lag-failover": ("replica-lag-failover-unguarded", "rpo"),
    "breach-restore": ("breach-restore-no-restore", "checklist"),
    "account-compromise": ("account-compromise-no-reset", "checklist"),
    "incident-communications": ("incident-communications-silent", "checklist"),
}


def test_root_blockers_is_the_head_of_the_queue():
    # 10 holds the lock; 11 waits on it; 12 and 13 wait on 10 and on 11 (queued behind it)
    assert root_blockers({11: [10], 12: [10, 11], 13: [11]}) == [10]


def test_root_blockers_of_independent_queues():
    assert root_blockers({5: [1], 6: [2], 7: [2]}) == [1, 2]


def test_root_blockers_in_a_cycle_returns_every_blocker():
    assert root_blockers({1: [2], 2: [1]}) == [1, 2]


def test_root_blockers_nothing_waiting():
    assert root_blockers({}) == []


@pytest.mark.parametrize(
    ("behind", "age", "expected"),
    [(0, 120.0, 0.0), (-5, 3.0, 0.0), (8192, 4.5, 4.5), (8192, None, 0.0), (1, -0.2, 0.0)],
)
def test_lag_seconds(behind, age, expected):
    assert lag_seconds(behind, age) == expected


def test_promotion_guard_refuses_with_the_numbers():
    reason = promotion_refusal(6.5, 123456, 2.0)
    assert reason is not None
    assert "6.50 s" in reason and "123456 bytes" in reason and "max_lag 2 s" in reason


@pytest.mark.parametrize(("lag", "limit"), [(0.0, 0.0), (1.9, 2.0), (2.0, 2.0), (5.0, 86400.0)])
def test_promotion_guard_allows_within_limit(lag, limit):
    assert promotion_refusal(lag, 10, limit) is None


def test_slot_refusal_messages():
    assert is_slot_refusal("connection failed: FATAL:  sorry, too many clients already")
    assert is_slot_refusal(
        "FATAL:  remaining connection slots are reserved for non-replication superuser connections"
    )
    assert not is_slot_refusal('FATAL:  password authentication failed for user "app"')


def test_sql_ident_quotes():
    assert sql_ident("orders") == '"orders"'
    assert sql_ident('a"b') == '"a""b"'


def test_actions_and_checks_registered():
    for name in ("hold-table-lock", "exhaust-connections", "issue-tokens", "pause-replay"):
        assert name in FAULTS.entries
    assert "breach-tamper" in FAULTS.entries
    for name in (
        "check-stack-status",
        "find-blockers",
        "terminate-blockers",
        "terminate-idle-sessions",
        "check-connections",
        "check-replica-lag",
        "resume-replay",
        "promote-if-lag-below",
        "preserve-forensics",
    ):
        assert name in RECOVERY.entries
    for name in (
        "blockers-gone",
        "connection-count",
        "issued-tokens-rejected",
        "replica-lag-within",
        "attacker-rows-gone",
        "tampered-rows-restored",
    ):
        assert name in CHECKS.entries


@pytest.mark.parametrize("drill", sorted(DRILLS))
def test_each_drill_has_a_sabotaged_twin(drill):
    scenario = load_scenario(ROOT / "scenarios" / f"{drill}.yaml")
    twin_id, breach = DRILLS[drill]
    twin = load_scenario(ROOT / "scenarios" / "sabotage" / f"{twin_id}.yaml")
    assert scenario.expect == {"outcome": "pass"}
    assert twin.expect == {"outcome": "fail", "breach": breach}
    assert twin.fault == scenario.fault
    assert twin.source == scenario.source
    assert scenario.source["file"].startswith("seeds/")
    assert "quarterly" in scenario.tags and twin.tags == ("sabotage",)
