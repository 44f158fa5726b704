"""A scenario cannot fake its verdict: tags are not outcome marks, `expect` only for the suite's
sabotaged twins, a drill below its class's evidence minimum is refused (or never passes), and
host-exec is refused unless the operator opted in. No container is started here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from drillkit.core.scenario import (
    DEFAULT_CHECKLIST,
    SABOTAGE_DIR,
    discover,
    load_scenario,
    parse_scenario,
    parse_scenario_text,
)
from drillkit.core.trust import EVIDENCE_BASE, EVIDENCE_BY_CLASS, evidence_gap
from drillkit.errors import ValidationError
from drillkit.paths import ROOT, SCENARIOS_DIR
from drillkit.plugin import assert_verdict

GOOD = """\
id: t
title: test
source: {runbook: "000", section: "Procedure 1"}
severity: P0
failure_class: database-failure
tags: [nightly]
objectives: {rto: 10s, rpo: 0s}
fault: {action: kill-postmaster, with: {service: primary}}
recovery:
  - {action: restart-service, with: {service: primary}}
"""


def scenario_file(tmp_path: Path, name: str = "t", **changes: object) -> Path:
    data = yaml.safe_load(GOOD)
    data["id"] = name
    data.update(changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def problems_of(path: Path, **kwargs: object) -> list[str]:
    with pytest.raises(ValidationError) as exc:
        load_scenario(path, **kwargs)  # type: ignore[arg-type]
    return exc.value.problems


@pytest.mark.parametrize("tag", ["xfail", "skip", "skipif", "usefixtures", "flaky", "timeout"])
def test_outcome_marks_are_refused_as_tags(tmp_path: Path, tag: str) -> None:
    path = scenario_file(tmp_path, tags=["nightly", tag])
    found = problems_of(path)
    assert any(p.startswith(f"{path}: tags[1]: '{tag}' is a pytest mark") for p in found), found


def test_expect_is_refused_outside_the_sabotage_folder(tmp_path: Path) -> None:
    path = scenario_file(tmp_path, expect={"outcome": "fail", "breach": "rto"})
    found = problems_of(path)
    assert any(
        p.startswith(f"{path}: expect: an expected outcome is honoured only") for p in found
    ), found
    with pytest.raises(ValidationError, match="expect: an expected outcome"):
        parse_scenario_text(GOOD + "expect: {outcome: fail}\n")


def test_a_projects_own_sabotage_folder_is_honoured_only_when_the_operator_names_it(
    tmp_path: Path,
) -> None:
    twins = tmp_path / "scenarios" / "sabotage"
    twins.mkdir(parents=True)
    path = scenario_file(twins, expect={"outcome": "fail", "breach": "rto"})
    assert any(": expect: " in p for p in problems_of(path))  # not named: refused
    twin = load_scenario(path, sabotage_dir=twins)  # the ini's drill_sabotage names it
    assert twin.expect == {"outcome": "fail", "breach": "rto"}
    other = scenario_file(tmp_path, name="u", expect={"outcome": "fail"})
    assert any(": expect: " in p for p in problems_of(other, sabotage_dir=twins))


def test_expect_is_honoured_in_the_sabotage_folder_only_by_its_real_path(tmp_path: Path) -> None:
    twin = load_scenario(SABOTAGE_DIR / "db-kill-restart-no-restart.yaml")
    assert twin.expect["outcome"] == "fail"
    fake = tmp_path / "sabotage"  # a folder of the same name elsewhere is not the suite's
    fake.mkdir()
    path = scenario_file(fake, expect={"outcome": "fail"})
    assert any(": expect: " in p for p in problems_of(path))
    data = yaml.safe_load(GOOD) | {
        "expect": {"outcome": "fail"},
        "checklist": ["all-systems-responding"],
    }
    sc = parse_scenario(data, fake / "t.yaml", sabotage_dir=fake)
    assert sc.expect == {"outcome": "fail"}


@pytest.mark.parametrize(
    "checklist",
    [[], ["all-systems-responding"], list(EVIDENCE_BASE), [*EVIDENCE_BASE, "authentication"]],
    ids=str,
)
def test_a_checklist_below_the_evidence_minimum_is_refused(
    tmp_path: Path, checklist: list[str]
) -> None:
    path = scenario_file(tmp_path, checklist=checklist)
    found = problems_of(path)
    assert any(p.startswith(f"{path}: checklist: not evidence: ") for p in found), found


def test_the_minimum_is_per_failure_class(tmp_path: Path) -> None:
    leak = [*EVIDENCE_BASE, "database-healthy"]
    assert "security-breach drill verifies at least one of" in evidence_gap("security-breach", leak)
    assert evidence_gap("security-breach", [*EVIDENCE_BASE, "old-db-password-rejected"]) == ""
    assert "nothing specific" in evidence_gap("team-class", list(EVIDENCE_BASE))
    assert evidence_gap("team-class", [*EVIDENCE_BASE, "team-queue-drained"]) == ""
    team = ["all-systems-responding", "recovered-within-rto", "team-app-answers"]
    assert evidence_gap("team-class", team) == ""  # a team's app: its own check, not our journeys
    assert "lacks recovered-within-rto" in evidence_gap("team-class", team[::2])
    assert evidence_gap("database-failure", list(DEFAULT_CHECKLIST)) == ""
    assert "lacks all-systems-responding" in evidence_gap("network", [], twin=True)
    # the default checklist is not enough for a class whose damage it does not look at
    path = scenario_file(tmp_path, failure_class="security-breach")
    assert any("not evidence" in p for p in problems_of(path))


def test_every_built_in_scenario_and_twin_meets_the_minimum() -> None:
    files = discover(SCENARIOS_DIR) + discover(SABOTAGE_DIR)
    assert len(files) >= 42
    classes = set()
    for path in files:
        sc = load_scenario(path)
        assert sc.not_evidence == ""
        classes.add(sc.failure_class)
    assert classes <= set(EVIDENCE_BY_CLASS), classes - set(EVIDENCE_BY_CLASS)


def test_a_scenario_built_in_code_below_the_minimum_never_passes() -> None:
    sc = parse_scenario_text(GOOD + "checklist: []\n")
    assert sc.not_evidence.startswith("the checklist lacks all-systems-responding")

    class Passed:  # the record of a drill whose every (zero) check passed
        status = "passed"
        measurement = None
        breaches = ()
        category = ""

    with pytest.raises(AssertionError, match="not evidence"):
        assert_verdict(Passed(), sc)  # type: ignore[arg-type]


def test_host_exec_is_refused_without_the_opt_in(tmp_path: Path) -> None:
    step = {"name": "wipe", "action": "host-exec", "with": {"command": "true"}}
    path = scenario_file(tmp_path, recovery=[step, {"action": "reload-app"}])
    found = problems_of(path)
    assert any(
        p.startswith(f"{path}: recovery[0].action: step 'wipe' runs a shell on the host")
        for p in found
    ), found
    assert load_scenario(path, allow_host_exec=True).host_exec_allowed


# ----- through pytest's collection (a subprocess: the plugin as an operator runs it) --------------


def collect(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:randomly",
            str(ROOT / "drills"),
            "--collect-only",
            "-q",
            f"--drill-scenarios={tmp_path / 'scenarios'}",
            f"--drill-results={tmp_path / 'reports'}",
            "--rootdir",
            str(ROOT),
            "-c",
            str(ROOT / "pyproject.toml"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )


def test_collection_refuses_xfail_tags_and_host_exec_before_anything_starts(
    tmp_path: Path,
) -> None:
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    scenario_file(scenarios, "tagged", tags=["nightly", "xfail"])
    step = {"name": "root shell", "action": "host-exec", "with": {"command": "id"}}
    scenario_file(scenarios, "shell", fault=step)
    proc = collect(tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out  # a usage error at collection: no drill ran
    assert "tagged.yaml: tags[1]: 'xfail' is a pytest mark" in out, out
    assert "shell.yaml: fault.action: step 'root shell' runs a shell on the host" in out, out


def test_tags_become_only_selection_marks(tmp_path: Path) -> None:
    """`-m nightly` selects; a tag naming another plugin's marker (slowrun) is not applied."""
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    scenario_file(scenarios, "plain", tags=["nightly", "database", "slowrun"])
    (tmp_path / "conftest.py").write_text(
        "def pytest_configure(config):\n"
        "    config.addinivalue_line('markers', 'slowrun(n): another plugin reruns these')\n"
        "def pytest_collection_modifyitems(items):\n"
        "    for item in items:\n"
        "        print('MARKS', item.name, sorted(m.name for m in item.iter_markers()))\n"
    )
    proc = collect(tmp_path, "-p", "conftest", "-m", "nightly", "-s")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "MARKS test_drill[plain] ['database', 'nightly']" in out, out
