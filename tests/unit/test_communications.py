"""Incident communications without containers: the message templates, the stub status page's
incident book, and the evidence pack's Communications section."""

from pathlib import Path
from types import ModuleType

import pytest
from image_modules import load_image_module

from drillkit.catalog.communications import incident_ref, initial_alert, resolution_notice
from drillkit.reporting.evidence.page import communications

SERVER = Path(__file__).resolve().parents[2] / "images" / "statuspage" / "server.py"
WALL = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC


def _server() -> ModuleType:
    return load_image_module("drillkit_statuspage", SERVER)


def test_incident_ref_is_seed_003s_format() -> None:
    assert incident_ref(WALL) == "INC-20270115-080000"


def test_initial_alert_is_filled_from_the_record() -> None:
    text = initial_alert("INC-1", "P1", "Primary down", WALL, 15.0)
    assert text.splitlines()[0] == "INCIDENT: P1 - Primary down"
    assert "Incident ID: INC-1" in text and "Status: Investigating" in text
    assert "Started: 2027-01-15 08:00:00 UTC" in text and "within 15 s" in text


def test_resolution_notice_names_duration_and_steps() -> None:
    text = resolution_notice("INC-1", WALL + 12.34, 12.34, "SIGKILL", ["restart", "verify"])
    assert text.startswith("RESOLVED - INC-1\n")
    assert "Duration: 12.3 s" in text and "Resolution: restart; verify" in text


def test_status_page_book_opens_updates_and_resolves() -> None:
    page = _server().Page()
    assert page.indicator()["indicator"] == "none"
    incident = page.open(
        {"name": "INC-1", "status": "investigating", "impact": "major", "body": "x"}
    )
    assert page.indicator() == {"indicator": "major", "description": "INC-1"}
    updated = page.update(incident["id"], {"status": "resolved", "body": "done"})
    assert updated is not None and [u["status"] for u in updated["updates"]] == [
        "investigating",
        "resolved",
    ]
    assert updated["updates"][0]["received_at"] <= updated["updates"][1]["received_at"]
    assert page.indicator()["indicator"] == "none"
    assert page.update(99, {"status": "resolved", "body": "x"}) is None


@pytest.mark.parametrize(
    "body",
    [
        {"name": "n", "status": "unknown", "body": "b"},
        {"name": "", "status": "investigating", "body": "b"},
        {"name": "n", "status": "investigating", "body": "b", "impact": "apocalyptic"},
    ],
)
def test_status_page_refuses_bad_updates(body: dict) -> None:
    with pytest.raises(ValueError):
        _server().Page().open(body)


def test_evidence_section_carries_both_messages_escaped() -> None:
    from types import SimpleNamespace

    result = SimpleNamespace(
        extra={
            "communications": [
                {"status": "investigating", "posted_at": "t1", "text": "INCIDENT: <P1>"},
                {"status": "resolved", "posted_at": "t2", "text": "RESOLVED - INC-1"},
            ]
        }
    )
    html = communications(result)  # type: ignore[arg-type]
    assert "INCIDENT: &lt;P1&gt;" in html and "RESOLVED - INC-1" in html
    assert html.index("investigating") < html.index("resolved")
