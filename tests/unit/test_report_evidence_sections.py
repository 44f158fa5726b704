"""The evidence pack's index page holds each section an auditor expects (SOC 2 CC7.5/A1.3,
ISO/IEC 27001:2022 A.5.29/A.5.30/A.8.13/A.8.14, PCI DSS 4.0 12.10.2, HIPAA 164.308(a)(7)(ii)(D),
DORA Art. 11/12), filled from the records, and a scenario may cite its runbook by URL."""

from __future__ import annotations

import dataclasses
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from drillkit.core.results import CheckResult
from drillkit.core.scenario import parse_scenario_text
from drillkit.errors import ValidationError
from drillkit.reporting.allure_report import runbook_link
from drillkit.reporting.evidence import build_pack
from drillkit.reporting.evidence.audit import DRILL_SECTIONS, SECTIONS

sys.path.insert(0, str(Path(__file__).parent))
from test_reporting import make_error_result, make_result

ROOT = Path(__file__).resolve().parents[2]


class Headings(HTMLParser):
    """Every h2/h3 heading's text and id, in page order."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str | None, str]] = []
        self._open: tuple[str, str | None] | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("h2", "h3"):
            self._open, self._text = (tag, dict(attrs).get("id")), ""

    def handle_data(self, data: str) -> None:
        if self._open:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag == self._open[0]:
            self.found.append((tag, self._open[1], self._text.strip()))
            self._open = None


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> str:
    passed = make_result(lost=0)
    passed.evidence = {"pgbackrest backup set": "20261120-140000F", "wal archive range": "0001/3"}
    failed = make_result(scenario_id="corruption-page", lost=2, rpo_objective=0.0)
    failed.checks = [*failed.checks, CheckResult("amcheck", "amcheck clean", False, "exit 2")]
    failed.steps[2] = dataclasses.replace(failed.steps[2], ok=False, error="restore exit 1")
    results = [passed, failed, make_error_result()]
    pack = build_pack(
        results,
        tmp_path_factory.mktemp("sections") / "pack",
        operator="ops",
        run_id="run-7",
        environment={"postgres_version": "15.20", "image_primary": "drillkit/pg:3f2a"},
        pdf=False,
        history=[],
        stale=[("disk-full", "never passed")],
        roles={"executor": "Erin Ops", "verifier": "Vic Check", "approver": "Ada Boss"},
    )
    return (pack / "index.html").read_text()


def test_every_top_level_section_is_there_in_order(index: str) -> None:
    parser = Headings()
    parser.feed(index)
    h2 = [(anchor, text) for tag, anchor, text in parser.found if tag == "h2" and anchor]
    want = [(a, h) for a, h in SECTIONS]
    present = [pair for pair in h2 if pair in want]
    assert present == want, set(want) - set(h2)
    for anchor, _ in SECTIONS:
        assert f'href="#{anchor}"' in index  # listed in the contents


def test_each_drill_has_the_auditor_sections(index: str) -> None:
    parser = Headings()
    parser.feed(index)
    h3 = [text for tag, _, text in parser.found if tag == "h3"]
    for section in DRILL_SECTIONS:
        assert h3.count(section) == 3, section


def test_sections_carry_the_records_facts(index: str) -> None:
    text = re.sub(r"<[^>]+>", " ", index)
    text = re.sub(r"\s+", " ", text)
    assert "UTC window (first drill start to last drill end) 2026-11-20 14:00:00.000 UTC" in text
    assert "Executor (ran the drills) Erin Ops" in text
    assert "Verifier (checked the results) Vic Check" in text
    assert "Approver (accepts the record) Ada Boss" in text
    assert "postgres_version 15.20" in text and "image_primary drillkit/pg:3f2a" in text
    assert "We rehearsed 3 kinds of failure" in text
    assert "1 did not meet the agreed targets" in text
    assert "1 could not be completed because the test environment itself failed" in text
    assert "Recovery time (RTO, fault injection to probes passing again) at most 30.0 s" in text
    assert "no acknowledged write may be lost" in text  # the failed drill's RPO 0
    assert "evidence: pgbackrest backup set" in text and "evidence: wal archive range" in text
    assert "check amcheck: FAIL" in text
    assert "500 acknowledged writes looked up after recovery: 2 lost" in text
    assert "recovery step" in text and "restore exit 1" in text  # deviation with its cause
    assert "Fix and re-run: checklist: amcheck clean failed (cause: exit 2) Ada Boss" in text
    assert "loop device unavailable" in text  # the broken drill's deviation
    assert "Executed by Erin Ops" in text and "Approved by Ada Boss" in text  # sign-off
    assert "A.8.13" in text and "12.10.2" in text and "164.308(a)(7)(ii)(D)" in text
    assert "Risk" in text and "Procedure tested runbook 000" in text


SCENARIO = (ROOT / "scenarios" / "db-kill-restart.yaml").read_text()


def test_a_scenario_may_cite_its_runbook_by_url() -> None:
    text = SCENARIO.replace(
        "source:\n", "source:\n  url: https://wiki.example.org/runbooks/000#procedure-1\n", 1
    )
    assert "url:" in text
    sc = parse_scenario_text(text)
    assert sc.source["url"] == "https://wiki.example.org/runbooks/000#procedure-1"
    link = runbook_link(sc.source)
    assert link is not None and link[0] == "https://wiki.example.org/runbooks/000#procedure-1"


def test_a_source_url_must_be_http() -> None:
    text = SCENARIO.replace("source:\n", "source:\n  url: javascript:alert(1)\n", 1)
    with pytest.raises(ValidationError) as exc:
        parse_scenario_text(text)
    assert any("source.url" in p and "http" in p for p in exc.value.problems)
