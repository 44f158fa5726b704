"""On the real stack: a heal names its pair in either order, and a heal with nothing left to heal
fails its step with the reason (it used to report ok and leave the drill to fail on RTO)."""

from __future__ import annotations

from collections.abc import Callable

from drillkit.core.results import DrillResult
from drillkit.core.scenario import Scenario, parse_scenario_text

SCENARIO = """
id: trust-heal
title: partition app/primary, heal it named the other way round, then heal again
source: {runbook: "-", section: "harness self-test"}
severity: P3
failure_class: network
tags: [selftest]
objectives: {rto: 30s, rpo: 0s}
fault: {action: partition, with: {a: app, b: primary}}
recovery:
  - {name: heal reversed, action: heal-partition, with: {a: primary, b: app}}
  - {action: wait-app-healthy, timeout: 30s}
  - {name: heal again, action: heal-partition, with: {a: app, b: primary}}
checklist: [all-systems-responding, critical-journeys, recovered-within-rto, app-fails-fast]
observe: 1s
"""


def test_a_heal_with_nothing_to_heal_fails_its_step(
    run_drill: Callable[[Scenario], DrillResult],
) -> None:
    result = run_drill(parse_scenario_text(SCENARIO))
    steps = {s.name: s for s in result.steps}
    assert steps["heal reversed"].ok, steps["heal reversed"]
    assert steps["wait-app-healthy"].ok, steps["wait-app-healthy"]
    again = steps["heal again"]
    assert again.ok is False, again
    assert "no partition between app and primary to heal" in (again.error or ""), again
    assert result.status == "failed"
    assert any("heal again" in b or "no partition" in b for b in result.breaches), result.breaches
