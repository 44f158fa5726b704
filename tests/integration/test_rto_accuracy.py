"""RTO accuracy: outages of known length against the measured RTO.

The outage is the app's port refusing connections for exactly N s (the app keeps running, so the
outage ends sharply; a frozen app instead needs a few hundred ms to drain its backlog after the
thaw, which is real downtime but not the harness's error). The error must stay within one probe
interval plus one probe's round trip; the figures go to reports/bench/rto-accuracy.json.
"""

import json
from pathlib import Path

import pytest

from drillkit.core.scenario import parse_scenario_text

ROOT = Path(__file__).resolve().parents[2]  # the checkout (tests run in it)

SCENARIO = """
id: rto-accuracy-{n}
title: app port refused for exactly {n} s
source: {{runbook: "-", section: "harness self-test"}}
severity: P3
failure_class: self-test
tags: [selftest]
objectives: {{rto: 30s, rpo: 0s}}
fault: {{action: block-port, with: {{service: app, port: 8080, duration: {n}s}}}}
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
    # within one probe interval plus one probe's round trip (a journey is four requests)
    assert abs(error) <= drill_run_config.probe_interval_s + 0.1, (truth, rto)
