"""`drillkit catalog`: every fault, recovery step, probe and check from the registries, with its
parameters (type names, defaults) and the first paragraph of its docstring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drillkit.cli import first_paragraph, main
from drillkit.core import registry

TEAM = Path(__file__).resolve().parents[1] / "team_project"


def listing(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["catalog", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_lists_every_registered_entry_by_kind(capsys: pytest.CaptureFixture[str]) -> None:
    data = listing(capsys)
    for attr in ("FAULTS", "RECOVERY", "PROBES", "CHECKS"):
        reg = getattr(registry, attr, None)
        if reg is not None:
            assert [row["name"] for row in data[reg.kind]] == sorted(reg.entries)
    assert {"fault", "recovery", "check"} <= set(data)


def test_an_entry_carries_its_parameters_and_docstring(capsys: pytest.CaptureFixture[str]) -> None:
    faults = {row["name"]: row for row in listing(capsys)["fault"]}
    kill = faults["kill-postmaster"]
    assert kill["params"] == [
        {"name": "service", "type": "service", "required": False, "default": "primary"}
    ]
    assert kill["summary"] == first_paragraph(registry.FAULTS.get("kill-postmaster").doc)
    assert kill["summary"]
    block = faults["block-port"]
    assert {p["name"]: (p["type"], p["required"]) for p in block["params"]} == {
        "service": ("service", True),
        "port": ("integer", True),
        "duration": ("duration", True),
    }


def test_text_output_is_grouped_by_kind(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog"]) == 0
    out = capsys.readouterr().out
    headings = [
        line.split(" (")[0] for line in out.splitlines() if line and not line.startswith(" ")
    ]
    assert headings[:2] == ["faults", "recovery steps"] and headings[-1] == "checks"
    assert "  kill-postmaster\n" in out
    assert "      - service: service = 'primary'" in out


def test_a_team_module_is_included(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(TEAM)
    data = listing(capsys, "--catalog", "team_catalog.py")
    assert "team-stop-app" in {row["name"] for row in data["fault"]}
    assert "team-start-app" in {row["name"] for row in data["recovery"]}
    (check,) = [row for row in data["check"] if row["name"] == "team-app-answers"]
    assert check["params"] == [
        {"name": "path", "type": "string", "required": False, "default": "/api/health"}
    ]
    assert check["summary"] == "The app answers `path` with 200."


def test_a_missing_team_module_is_an_error_not_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert (
        main(["catalog", "--catalog", "nowhere.py"]) == 4
    )  # bad input (reporting/ci.py exit codes)
    assert "catalogue module 'nowhere.py': no such file" in capsys.readouterr().err


def test_first_paragraph() -> None:
    assert first_paragraph("One line\nwrapped.\n\nSecond paragraph.") == "One line wrapped."
    assert first_paragraph("") == ""
