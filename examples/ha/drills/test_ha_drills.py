"""The HA team's drill suite: one test per scenario file of `drill_scenarios`."""

from drillkit.plugin import assert_verdict


def test_drill(drill_scenario, drill_result):
    assert_verdict(drill_result, drill_scenario)
