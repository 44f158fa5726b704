"""`drillkit init`: scaffold a team project that drills its stack with the installed drillkit.

It writes a stack file (stacks/<name>.yaml), one scenario per mission fault that applies to a
reference-style stack (copied from drillkit's built-in scenarios), a pytest.ini and a
drills/test_drills.py that run them through the plugin (`drill_scenarios`, `drill_stack`), a
`make drill` target (drillkit.mk, included by a new Makefile) and a CI snippet. Nothing is
overwritten unless `force`: every file that exists is named and nothing is written.

With a compose file the stack file records its path and lists its services as comments; until
compose stacks land in the stack file format the scaffolded stack is the reference-style stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from drillkit.errors import ValidationError
from drillkit.paths import REFERENCE_STACK, SCENARIOS_DIR
from drillkit.validate import Problems, load_yaml

MISSION_DRILLS = (
    "db-kill-restart",
    "corruption-page",
    "partition-app-db",
    "credential-leak",
    "disk-full",
)
"""The five mission faults (kill, corruption, partition, credential leak, disk full) as drills."""

PYTEST_INI = """\
# drillkit drills are pytest tests: `pytest` (or `make drill`) runs every scenario file of
# scenarios/ against the stack file below. Options: `pytest --help`, section "drillkit".
[pytest]
testpaths = drills
drill_scenarios = scenarios
drill_stack = stacks/{name}.yaml
# drill_objectives = policy.yaml        # objectives policy (rto/rpo/detection per scenario)
# drillkit_catalog = drill_catalog.py   # the team's own faults, steps and checks
"""

TEST_DRILLS = """\
\"\"\"One test per scenario file (the drillkit plugin parametrises `drill_scenario` with the files
of `drill_scenarios`); a breach of an objective or a failed checklist item fails the test.\"\"\"

from drillkit.plugin import assert_verdict


def test_drill(drill_scenario, drill_result):
    assert_verdict(drill_result, drill_scenario)
"""

CONFTEST = """\
# The drillkit pytest plugin is registered by the installed package (its pytest11 entry point);
# nothing is needed here. Override the `drill_run_config` or `drill_bus` fixtures to change a
# run programmatically or to subscribe your own reporter to a drill's events.
"""

DRILLKIT_MK = """\
# drillkit targets (included by the Makefile): `make drill` runs every drill, then writes the
# evidence pack and the history (reports/); `make drill-report` builds the HTML report.
PYTHON ?= python3
DRILL_ARGS ?=

.PHONY: drill drill-validate drill-report drill-clean

drill: drill-validate
\t@session=$$($(PYTHON) -m drillkit.cli session-start); \\
\tDRILLKIT_SESSION=$$session $(PYTHON) -m pytest -v -p no:randomly \\
\t    --alluredir=reports/allure-results $(DRILL_ARGS); status=$$?; \\
\tDRILLKIT_SESSION=$$session $(PYTHON) -m drillkit.cli finish; exit $$status

drill-validate:
\t$(PYTHON) -m drillkit.cli validate

drill-report:
\t$(PYTHON) -m drillkit.cli report

drill-clean:
\t$(PYTHON) -m drillkit.cli clean
"""

MAKEFILE = """\
include drillkit.mk
"""

CI_SNIPPET = """\
# GitHub Actions: copy to .github/workflows/drill.yml. Nightly and on demand, on a runner with a
# Docker engine (drillkit builds its images from Debian packages when no registry answers).
name: drill
on:
  schedule: [{{cron: "17 3 * * *"}}]
  workflow_dispatch: {{}}
jobs:
  drill:
    runs-on: ubuntu-latest
    timeout-minutes: 60
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with: {{python-version: "3.11"}}
      - run: python -m pip install "{requirement}"   # or the path/URL of drillkit's wheel
      - run: make drill
      - if: always()
        uses: actions/upload-artifact@v4
        with: {{name: drill-evidence, path: reports/}}
"""

GITIGNORE_LINES = ("reports/", ".run/", ".tools/")


@dataclass(frozen=True)
class Planned:
    path: Path
    text: str


def stack_name(directory: Path) -> str:
    """A stack name from the project folder's name: lower case, letters, digits and '-'."""
    name = re.sub(r"[^a-z0-9]+", "-", directory.resolve().name.lower()).strip("-")
    return name or "team"


def compose_services(compose: Path) -> list[str]:
    """The service names of a Compose Specification file (file:path:reason when it is not one)."""
    data = load_yaml(compose)
    p = Problems(compose)
    if not isinstance(data, dict):
        p.add("", f"expected a compose file (a mapping with services), got {type(data).__name__}")
    elif not isinstance(data.get("services"), dict) or not data["services"]:
        p.add("services", "missing or empty: a compose file names its services")
    p.raise_if_any()
    return [str(s) for s in data["services"]]


def stack_text(name: str, project: Path, compose: Path | None) -> str:
    """The scaffolded stack file: the reference-style stack, with the compose file recorded."""
    body = REFERENCE_STACK.read_text(encoding="utf-8")
    lines = body.splitlines()
    body = "\n".join(line for line in lines if not line.startswith("#")).strip() + "\n"
    body = re.sub(r"^name: .*$", f"name: {name}", body, count=1, flags=re.M)
    head = [
        "# The stack `pytest` drills (drill_stack in pytest.ini), scaffolded by `drillkit init`."
    ]
    if compose is not None:
        services = compose_services(compose)
        try:
            shown = compose.resolve().relative_to((project / "stacks").resolve()).as_posix()
        except ValueError:
            try:
                shown = "../" + compose.resolve().relative_to(project.resolve()).as_posix()
            except ValueError:
                shown = str(compose.resolve())
        head += [
            f"# compose: {shown}",
            f"# its services: {', '.join(services)}",
            "# drillkit cannot bring a compose file up yet: until it can, this file drills",
            "# drillkit's reference-style stack below (PostgreSQL primary + standby + the reference",
            "# app); the compose file's path and services are kept here for that step.",
        ]
    else:
        head += [
            "# The reference-style stack: a PostgreSQL primary and standby and an app. Change `app`",
            "# (image, port, health check, where it reads its credential files) to drill your own.",
        ]
    return "\n".join(head) + "\n" + body


def plan(project: Path, name: str, compose: Path | None, requirement: str) -> list[Planned]:
    """Every file `init` writes, with its text."""
    files = [Planned(project / "stacks" / f"{name}.yaml", stack_text(name, project, compose))]
    for sid in MISSION_DRILLS:
        src = SCENARIOS_DIR / f"{sid}.yaml"
        files.append(Planned(project / "scenarios" / src.name, src.read_text(encoding="utf-8")))
    files += [
        Planned(project / "pytest.ini", PYTEST_INI.format(name=name)),
        Planned(project / "conftest.py", CONFTEST),
        Planned(project / "drills" / "test_drills.py", TEST_DRILLS),
        Planned(project / "drillkit.mk", DRILLKIT_MK),
        Planned(
            project / "ci" / "drill.github-actions.yml", CI_SNIPPET.format(requirement=requirement)
        ),
    ]
    if not (project / "Makefile").exists():
        files.append(Planned(project / "Makefile", MAKEFILE))
    return files


def init_project(
    project: Path,
    *,
    compose: Path | None = None,
    name: str | None = None,
    force: bool = False,
    requirement: str = "drillkit",
) -> tuple[list[Path], list[str]]:
    """Write the team project's files; returns (the files written, notes for the user).

    Refuses (ValidationError, nothing written) when a file exists and not `force`."""
    name = name or stack_name(project)
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", name):
        raise ValidationError([f"--name: {name!r}: expected lower-case letters, digits and '-'"])
    if compose is not None and not compose.is_file():
        raise ValidationError([f"{compose}: cannot read: no such file"])
    files = plan(project, name, compose, requirement)
    existing = [f.path for f in files if f.path.exists()]
    if existing and not force:
        raise ValidationError([f"{p}: exists (use --force to overwrite)" for p in existing])
    for f in files:
        f.path.parent.mkdir(parents=True, exist_ok=True)
        f.path.write_text(f.text, encoding="utf-8")
    notes = []
    makefile = project / "Makefile"
    if "include drillkit.mk" not in makefile.read_text(encoding="utf-8", errors="replace"):
        notes.append(f"add `include drillkit.mk` to {makefile} for `make drill`")
    written = [f.path for f in files]
    gitignore = project / ".gitignore"
    have = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.is_file() else []
    missing = [line for line in GITIGNORE_LINES if line not in have]
    if missing:
        with gitignore.open("a", encoding="utf-8") as out:
            if have and have[-1].strip():
                out.write("\n")
            out.write("# drillkit output\n" + "".join(f"{line}\n" for line in missing))
        written.append(gitignore)
    return written, notes
