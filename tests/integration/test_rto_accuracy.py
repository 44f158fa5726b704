"""RTO accuracy: outages of known length (the app frozen for exactly N s) against the measured RTO.

The error must stay within the probe interval plus the time to freeze and thaw a container; the
measured figures are written to reports/bench/rto-accuracy.json for the notes and the README.
"""

import json

import pytest

from drillkit.runner import ROOT
from drillkit.scenario import parse_scenario_text

SCENARIO = """
id: rto-accuracy-{n}
title: app frozen for exactly {n} s
source: {{runbook: "-", section: "harness self-test"}}
severity: P3
failure_class: self-test
tags: [selftest]
objectives: {{rto: 30s, rpo: 0s}}
fault: {{action: pause-service, with: {{service: app, duration: {n}s}}}}
recovery:
  - {{action: wait-app-healthy, timeout: 30s}}
checklist: [all-systems-responding, critical-journeys]
observe: 2s
"""


@pytest.mark.parametrize("seconds", [2, 5])
def test_measured_rto_matches_a_known_outage(seconds, run_drill, drill_run_config):
    result = run_drill(parse_scenario_text(SCENARIO.format(n=seconds)))
    truth = result.extra["true_outage_s"]
    rto = result.measurement.rto_s
    error = rto - truth
    out = ROOT / "reports" / "bench" / "rto-accuracy.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(out.read_text()) if out.exists() else {}
    data[str(seconds)] = {
        "true_outage_s": round(truth, 4),
        "rto_s": round(rto, 4),
        "error_s": round(error, 4),
        "probe_interval_s": drill_run_config.probe_interval_s,
    }
    out.write_text(json.dumps(data, indent=1))
    # within one probe interval plus the freeze/thaw round trip of the engine
    assert abs(error) <= drill_run_config.probe_interval_s + 0.15, (truth, rto)
