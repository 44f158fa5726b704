"""The Allure result of a drill run through the plugin (the drill in a fixture, as in the drill
suite): steps in the test body with the drill's own start and stop times, the test's duration
the drill's, labels once, links only as URLs, the categories file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

import drillkit.plugin
import drillkit.reporting.allure_report
import drillkit.reporting.evidence
from drillkit.core.results import DrillResult

sys.path.insert(0, str(Path(__file__).parent))
from test_reporting import WALL0, make_result

ROOT = Path(__file__).resolve().parents[2]
pytest_plugins = ["pytester"]


class FakeRunner:
    """Returns a finished record (test_reporting.make_result) in place of the container runner;
    the plugin's Allure writing after it is the real code."""

    def __init__(self, scenario: Any, config: Any, bus: Any) -> None:
        self.scenario = scenario
        self.secret_values: list[str] = []

    def run(self) -> DrillResult:
        result = make_result(lost=0)
        result.scenario_id = self.scenario.id
        result.source = {**result.source, "url": "https://wiki.example.org/runbooks/000#p1"}
        return result


DRILL_TEST = """
from drillkit.plugin import assert_verdict

def test_drill(drill_scenario, drill_result):
    assert_verdict(drill_result, drill_scenario)
"""


@pytest.fixture
def record(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr(drillkit.plugin, "Runner", FakeRunner)
    monkeypatch.delenv("DRILLKIT_SESSION", raising=False)
    pytester.makepyfile(test_drills=DRILL_TEST)
    out = pytester.path / "allure-results"
    result = pytester.runpytest_inprocess(
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
        f"--alluredir={out}",
        f"--drill-scenarios={ROOT / 'scenarios' / 'db-kill-restart.yaml'}",
        f"--drill-results={pytester.path / 'reports'}",
    )
    assert result.ret == 0
    (path,) = out.glob("*-result.json")
    data = json.loads(path.read_text())
    data["_dir"] = str(out)
    return data


def _walk(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [x for s in steps for x in (s, *_walk(s.get("steps", [])))]


def test_the_test_spans_the_drill_not_its_body(record: dict[str, Any]) -> None:
    assert record["status"] == "passed"
    assert record["start"] == round(WALL0 * 1000)
    assert record["stop"] == round((WALL0 + 12.0) * 1000)  # make_result's wall_end


def test_steps_are_in_the_body_with_their_own_times(record: dict[str, Any]) -> None:
    steps = record["steps"]
    names = [s["name"] for s in steps]
    assert any(n.startswith("fault 1/1: ") for n in names)
    assert any(n.startswith("recovery 1/2: ") for n in names)
    assert any(n.startswith("recovered: probes passing again") for n in names)
    assert any(n.startswith("write ledger: ") for n in names)
    for step in _walk(steps):
        assert step["start"] <= step["stop"], step["name"]
        assert record["start"] <= step["start"] and step["stop"] <= record["stop"], step["name"]
    by_prefix = {s["name"].split(":")[0]: s for s in steps}
    # the recovery step's own duration: its title says it, its times agree
    rec = next(s for s in steps if s["name"].startswith("recovery 1/2: "))
    seconds = float(rec["name"].split(" — ")[1].split()[0])
    assert abs((rec["stop"] - rec["start"]) / 1000 - seconds) < 0.01
    recovered = by_prefix["recovered"]
    assert (recovered["stop"] - recovered["start"]) / 1000 == pytest.approx(2.13, abs=0.01)
    checklist = next(s for s in steps if s["name"].startswith("validation checklist"))
    assert len(checklist["steps"]) == 9
    assert {c["status"] for c in checklist["steps"]} == {"passed"}
    # nothing was put under the fixture's set-up
    containers = list(Path(record["_dir"]).glob("*-container.json"))
    for path in containers:
        for before in json.loads(path.read_text()).get("befores", []):
            assert not before.get("steps"), before["name"]
    names = [a["name"] for a in record["attachments"]]
    assert names[:3] == ["timeline", "objectives vs measured", "validation checklist"]


def test_labels_once_and_links_as_urls(record: dict[str, Any]) -> None:
    pairs = [(label["name"], label["value"]) for label in record["labels"]]
    assert len(pairs) == len(set(pairs)), sorted(pairs)
    names = [name for name, _ in pairs]
    for single in ("epic", "feature", "story", "severity"):
        assert names.count(single) == 1, single
    assert ("tag", "nightly") in pairs
    assert record["links"] == [
        {
            "type": "link",
            "url": "https://wiki.example.org/runbooks/000#p1",
            "name": "runbook 000: Procedure 1: Complete System Outage",
        }
    ]


def test_categories_separate_the_failure_kinds(record: dict[str, Any]) -> None:
    categories = json.loads((Path(record["_dir"]) / "categories.json").read_text())
    names = [c["name"] for c in categories]
    for want in (
        "RTO breach",
        "RPO breach",
        "Checklist failure",
        "Missed detection",
        "Environment broken",
    ):
        assert want in names
