"""`drillkit init`: scaffold a team project that drills its stack with the installed drillkit.

It writes a stack file (stacks/<name>.yaml), one scenario per mission fault that applies to a
reference-style stack (copied from drillkit's built-in scenarios), a pytest.ini and a
drills/test_drills.py that run them through the plugin (`drill_scenarios`, `drill_stack`), a
`make drill` target (drillkit.mk, included by a new Makefile) and a CI snippet. Nothing is
overwritten unless `force`: every file that exists is named and nothing is written.

With a compose file (`--compose`) the stack file is a compose stack: the compose file's path and
an overlay guessed from it (the PostgreSQL-looking service as the database, its credentials from
POSTGRES_USER / POSTGRES_PASSWORD(_FILE) / POSTGRES_DB; every other service publishing a port as
an app, health-checked on `/`), and the scenarios are written for that stack with the generic
catalogue steps: a killed postmaster, a partition between the first app and the database, a
leaked database password (when an app receives it by env, file or secret) and a full data
filesystem. Corruption is not scaffolded: its recovery is the team's own restore (a run-script or
run-container step naming their restore script), which init cannot guess; a note says so.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from drillkit.errors import ValidationError
from drillkit.paths import REFERENCE_STACK, SCENARIOS_DIR
from drillkit.stack.compose import ComposeFile, Service, load_compose
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


def _relative(target: Path, folder: Path) -> str:
    """`target` relative to `folder` (with ../ steps), or absolute when on another root."""
    try:
        return Path(os.path.relpath(target.resolve(), folder.resolve())).as_posix()
    except ValueError:
        return str(target.resolve())


def guess_database(compose: ComposeFile) -> Service:
    """The PostgreSQL-looking service: POSTGRES_PASSWORD(_FILE) in its environment, else
    'postgres'/'postgis' in its image or name, else a service named db/database."""
    services = list(compose.services.values())
    ranked = [
        *(
            s
            for s in services
            if {"POSTGRES_PASSWORD", "POSTGRES_PASSWORD_FILE"} & set(s.environment)
        ),
        *(s for s in services if re.search(r"postgres|postgis", f"{s.image or ''} {s.name}")),
        *(s for s in services if s.name in ("db", "database", "pg")),
    ]
    if not ranked:
        raise ValidationError(
            [
                f"{compose.path}: services: no service looks like PostgreSQL (POSTGRES_PASSWORD in "
                "its environment, 'postgres' in its image or name); write the stack file's "
                "database section by hand"
            ]
        )
    return ranked[0]


def _cred_of(db: Service, var: str) -> dict[str, str] | None:
    return {"env": var} if var in db.environment else None


def compose_overlay(compose: ComposeFile, compose_ref: str, name: str) -> dict[str, object]:
    """The stack file of a compose stack, guessed from the compose file."""
    db = guess_database(compose)
    database: dict[str, object] = {"service": db.name}
    for key, var in (("user", "POSTGRES_USER"), ("dbname", "POSTGRES_DB")):
        if (cred := _cred_of(db, var)) is not None:
            database[key] = cred
    if "POSTGRES_PASSWORD" in db.environment:
        database["password"] = {"env": "POSTGRES_PASSWORD"}
    elif "POSTGRES_PASSWORD_FILE" in db.environment:
        database["password"] = {"file": db.environment["POSTGRES_PASSWORD_FILE"]}
    else:
        database["password"] = {"env": "POSTGRES_PASSWORD"}  # refused until the file defines it
    role = db.environment.get("POSTGRES_USER", "postgres")
    password = db.environment.get("POSTGRES_PASSWORD")
    apps: dict[str, object] = {}
    for svc in compose.services.values():
        if svc.name == db.name or not svc.ports:
            continue
        app: dict[str, object] = {
            "port": svc.ports[0].container,
            "health": {"path": "/", "status": 200},
        }
        delivery = _delivery(svc, compose, password, db)
        if delivery is not None:
            app["credentials"] = {"role": role, **delivery}
        apps[svc.name] = app
    return {
        "name": name,
        "compose": compose_ref,
        "database": database,
        "apps": apps,
        # drillkit's own canary writes measure what a recovery lost, with no app cooperation
        "ledger": {"canary": {"service": db.name}},
        **({"journey": [journey]} if (journey := _journey(apps)) else {}),
    }


def _journey(apps: dict[str, object]) -> dict[str, object] | None:
    """The guessed journey: the first app's health request (the team replaces it by its real
    critical journey: login, a write, a read back)."""
    for name, app in apps.items():
        if isinstance(app, dict) and isinstance(app.get("health"), dict):
            return {"service": name, "method": "GET", "path": app["health"]["path"], "status": 200}
    return None


def _delivery(
    svc: Service, compose: ComposeFile, password: str | None, db: Service
) -> dict[str, str] | None:
    """How the app receives the database password: an env variable holding the same value as the
    database's, else one named like *DB*PASSWORD*, else a secret the database also mounts."""
    for var, value in svc.environment.items():
        if password and value == password:
            return {"env": var}
    for var in svc.environment:
        if re.search(r"(DB|DATABASE|PG|POSTGRES).*PASS", var):
            return {"env": var}
    shared = {r.source for r in svc.secrets} & {r.source for r in db.secrets}
    if shared:
        return {"secret": sorted(shared)[0]}
    return None


COMPOSE_CHECKLIST = (
    "all-systems-responding",
    "critical-journeys",
    "database-healthy",
    "detected-within-objective",
    "recovered-within-rto",
)
"""The checks that hold on a scaffolded compose stack (its guessed journey included): the default
checklist's others need the reference app, or are judged from what only the team can declare
(performance-baseline from a real journey, no-error-spike from its log patterns)."""
COMPOSE_CHECKLIST_NO_APP = tuple(c for c in COMPOSE_CHECKLIST if c != "critical-journeys")

FAILURE_CLASS = {
    "db-kill-restart": "database-failure",
    "disk-full": "disk-full",
    "partition-app-db": "network-partition",
    "credential-leak": "credential-leak",
}


def _scenario(
    checklist: tuple[str, ...],
    sid: str,
    title: str,
    severity: str,
    fault: dict[str, object],
    recovery: list[dict[str, object]],
    objectives: dict[str, str],
) -> str:
    doc = {
        "id": sid,
        "title": title,
        "severity": severity,
        "source": {"runbook": "team", "section": f"scaffolded for the {fault.get('action')} fault"},
        "failure_class": FAILURE_CLASS[sid],
        "tags": ["nightly"],
        "objectives": objectives,
        "fault": fault,
        "recovery": recovery,
        "checklist": list(checklist),
    }
    head = "# Scaffolded by `drillkit init --compose` for this stack; adjust the runbook steps.\n"
    return head + yaml.safe_dump(doc, sort_keys=False, width=100)


def compose_scenarios(overlay: dict[str, object], project: Path) -> dict[str, str]:
    """One scenario per mission fault the generic catalogue supports on this stack."""
    database = overlay["database"]
    assert isinstance(database, dict)
    db = str(database["service"])
    apps = overlay["apps"]
    assert isinstance(apps, dict)
    first_app = next(iter(apps), None)
    checks = COMPOSE_CHECKLIST if first_app else COMPOSE_CHECKLIST_NO_APP
    healthy = (
        [{"name": "Verify the app", "action": "wait-app-healthy", "timeout": "60s"}]
        if first_app
        else []
    )
    out = {
        "db-kill-restart": _scenario(
            checks,
            "db-kill-restart",
            f"{db}'s postmaster killed; the runbook restarts it",
            "P0",
            {
                "name": f"SIGKILL {db}'s postmaster",
                "action": "kill-postmaster",
                "with": {"service": db},
            },
            [
                {
                    "name": "Restart the database",
                    "action": "restart-service",
                    "with": {"service": db},
                    "timeout": "60s",
                },
                *healthy,
            ],
            {"rto": "60s", "rpo": "0s", "detection": "5s"},
        ),
        "disk-full": _scenario(
            checks,
            "disk-full",
            f"{db}'s data filesystem full",
            "P1",
            {
                "name": "Fill the data filesystem with a ballast file",
                "action": "fill-disk",
                "with": {"service": db},
            },
            [
                {"name": "Free space (delete the ballast)", "action": "free-disk"},
                {
                    "name": "Start PostgreSQL again if it stopped",
                    "action": "ensure-running",
                    "with": {"service": db},
                },
                *healthy,
            ],
            {"rto": "90s", "rpo": "0s", "detection": "10s"},
        ),
    }
    if first_app:
        out["partition-app-db"] = _scenario(
            checks,
            "partition-app-db",
            f"Network partition between {first_app} and {db}",
            "P1",
            {
                "name": f"Drop all packets between {first_app} and {db}",
                "action": "partition",
                "with": {"a": first_app, "b": db},
            },
            [
                {"name": "Partition lasts 4 s", "action": "hold", "with": {"duration": "4s"}},
                {
                    "name": "Heal the partition",
                    "action": "heal-partition",
                    "with": {"a": first_app, "b": db},
                },
                *healthy,
            ],
            {"rto": "30s", "rpo": "0s", "detection": "5s"},
        )
    cred_app = next(
        (n for n, a in apps.items() if isinstance(a, dict) and "credentials" in a), None
    )
    if cred_app is not None:
        role = apps[cred_app]["credentials"]["role"]
        out["credential-leak"] = _scenario(
            checks,
            "credential-leak",
            f"The database password of {role} leaks",
            "P0",
            {
                "name": f"Leak {role}'s database password",
                "action": "leak-db-password",
                "with": {"role": role},
            },
            [
                {
                    "name": f"Rotate {role}'s password (delivered to {cred_app} as declared)",
                    "action": "rotate-db-password",
                    "with": {"role": role},
                    "timeout": "60s",
                },
                *healthy,
            ],
            {"rto": "90s", "rpo": "0s", "detection": "5s"},
        )
    return out


def plan(project: Path, name: str, compose: Path | None, requirement: str) -> list[Planned]:
    """Every file `init` writes, with its text."""
    if compose is not None and _is_compose_stack(compose):
        files = _compose_plan(project, name, compose)
    else:
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


def _is_compose_stack(compose: Path) -> bool:
    compose_services(compose)  # the plain shape first: its refusals name the file
    return True


def _compose_plan(project: Path, name: str, compose: Path) -> list[Planned]:
    parsed = load_compose(compose)
    stacks = project / "stacks"
    overlay = compose_overlay(parsed, _relative(compose, stacks), name)
    text = (
        "# The stack `pytest` drills (drill_stack in pytest.ini), scaffolded by `drillkit init\n"
        "# --compose` from the compose file below. Guessed: the database service and where its\n"
        "# superuser credentials come from, the apps (services publishing a port) and their health\n"
        "# check (GET / answering 200), how each app receives its database password, and the\n"
        "# journey (only the first app's health request: replace it by your critical journey,\n"
        "# e.g. login, a write, reading it back). Check them, then add probes and log patterns\n"
        "# (see README, 'Drill your own stack').\n"
        + yaml.safe_dump(overlay, sort_keys=False, width=100)
    )
    files = [Planned(stacks / f"{name}.yaml", text)]
    for sid, body in compose_scenarios(overlay, project).items():
        files.append(Planned(project / "scenarios" / f"{sid}.yaml", body))
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
    if compose is not None:
        notes.append(
            "check the guessed overlay in the stack file (database, apps, health paths); add "
            "a journey and log patterns to the stack file, then performance-baseline, "
            "critical-journeys and no-error-spike to the scenarios' checklists; "
            "corruption is not scaffolded: write its recovery with your restore script "
            "(run-script or run-container)"
        )
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
