"""Every drill, correct and sabotaged, run for real: the correct runbooks PASS, and each sabotaged
runbook FAILS for its stated reason (RTO breach, RPO breach with the lost count, checklist item)."""

from pathlib import Path

import pytest

from drillkit.core.scenario import discover, load_scenario
from drillkit.plugin import SECRETS, assert_verdict
from drillkit.reporting.evidence import build_pack, scan_for_secrets, verify_pack

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = discover(ROOT / "scenarios") + discover(ROOT / "scenarios" / "sabotage")


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_drill_verdict(path, run_drill, request, drill_run_config, tmp_path):
    scenario = load_scenario(path)
    result = run_drill(scenario)
    secrets = request.node.stash[SECRETS]
    record = (drill_run_config.results_dir / f"{scenario.id}.json").read_text()
    assert secrets and not [s for s in secrets if s in record], (
        "a secret leaked into the drill record"
    )
    if scenario.id == "credential-leak":  # the drill that handles secrets: scan a whole pack too
        pack = build_pack(
            [result], tmp_path / "pack", operator="test", run_id="t", environment=result.environment
        )
        assert scan_for_secrets(pack, secrets) == []
        assert verify_pack(pack) == []
    assert_verdict(result, scenario)
    if scenario.expect.get("outcome") == "fail":
        # the failure message carries the numbers, e.g. "RPO 5.12 s > objective 0.00 s (37 ... lost"
        assert result.breaches and all(
            any(ch.isdigit() for ch in b) or ":" in b for b in result.breaches
        )
        if scenario.id == "db-latency-partial-fix":  # recovered, but slow: this check alone
            assert [b.split(":")[1].strip() for b in result.breaches] == ["performance-baseline"]
        if scenario.expect.get("breach") == "rpo":
            assert result.measurement.lost + result.measurement.altered > 0
    else:
        assert result.measurement.lost == 0 or scenario.objectives.rpo_s > 0
