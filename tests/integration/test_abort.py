"""A drill past its maximum duration (its stop condition) is aborted, reported with the phase it
was in, and torn down: nothing it made remains."""

from drillkit.core.runner import Runner
from drillkit.core.scenario import parse_scenario_text
from drillkit.stack.reaping import leftovers

SCENARIO = """
id: overlong
title: a runbook step that would outlast the drill's maximum duration
source: {runbook: "-", section: "harness self-test"}
severity: P3
failure_class: self-test
tags: [selftest]
objectives: {rto: 60s, rpo: 0s}
max_duration: 25s
fault: {action: partition, with: {a: app, b: primary}}
recovery:
  - {name: wait for a repair that never comes, action: hold, with: {duration: 120s}, timeout: 130s}
"""


def test_a_drill_past_its_maximum_duration_is_aborted_and_torn_down(drill_run_config):
    runner = Runner(parse_scenario_text(SCENARIO), drill_run_config)
    result = runner.run()
    assert result.status == "aborted" and result.category == "aborted"
    assert "recovery step 1/1 'wait for a repair that never comes'" in result.error
    assert "maximum duration 25 s" in result.error
    assert result.steps[-1].error == "stopped: the drill reached its maximum duration"
    assert leftovers(runner.run_id) == []
