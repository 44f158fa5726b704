"""`drillkit init`: the files a team project gets, that pytest collects its drills, and that
nothing is overwritten without --force."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from drillkit.cli import main
from drillkit.core.scenario import load_scenario
from drillkit.errors import ValidationError
from drillkit.paths import SCENARIOS_DIR
from drillkit.scaffold import COMPOSE_CHECKLIST, MISSION_DRILLS, init_project
from drillkit.stack.spec import load_stack

REPO = Path(__file__).resolve().parents[2]


def test_init_scaffolds_a_project_whose_drills_pytest_collects(tmp_path):
    project = tmp_path / "Shop API"
    assert main(["init", str(project)]) == 0
    stack = load_stack(project / "stacks" / "shop-api.yaml")
    assert stack.name == "shop-api" and stack.services == ("primary", "replica", "app")
    for sid in MISSION_DRILLS:
        copied = project / "scenarios" / f"{sid}.yaml"
        assert copied.read_text() == (SCENARIOS_DIR / f"{sid}.yaml").read_text()
        assert load_scenario(copied).id == sid
    ini = (project / "pytest.ini").read_text()
    assert "drill_scenarios = scenarios" in ini and "drill_stack = stacks/shop-api.yaml" in ini
    assert (project / "Makefile").read_text() == "include drillkit.mk\n"
    assert "\ndrill: drill-validate\n" in (project / "drillkit.mk").read_text()
    ci = yaml.safe_load((project / "ci" / "drill.github-actions.yml").read_text())
    assert ci["jobs"]["drill"]["steps"][-2] == {"run": "make drill"}
    assert {"reports/", ".run/"} <= set((project / ".gitignore").read_text().splitlines())
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(  # from outside the project: its ini paths are the rootdir's
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:randomly", str(project)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(line for line in out.stdout.splitlines() if "::test_drill[" in line) == sorted(
        f"drills/test_drills.py::test_drill[{sid}]" for sid in MISSION_DRILLS
    )


COMPOSE = """\
services:
  api:
    build: ./api
    ports: ["8000:8000"]
    environment: {DATABASE_PASSWORD: pw, DATABASE_USER: shop}
    depends_on: {postgres: {condition: service_healthy}}
  postgres:
    image: postgres:15
    environment: {POSTGRES_USER: shop, POSTGRES_PASSWORD: pw, POSTGRES_DB: shop}
    volumes: [pgdata:/var/lib/postgresql/data]
    healthcheck: {test: pg_isready}
  redis: {image: redis:7}
volumes: {pgdata: {}}
"""


def test_init_compose_writes_a_compose_stack_overlay_and_its_scenarios(tmp_path):
    project = tmp_path / "team"
    (project / "api").mkdir(parents=True)
    (project / "api" / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    compose = project / "docker-compose.yml"
    compose.write_text(COMPOSE)
    written, notes = init_project(project, compose=compose)
    stack_file = project / "stacks" / "team.yaml"
    assert stack_file in written
    raw = yaml.safe_load(stack_file.read_text())
    assert raw["compose"] == "../docker-compose.yml"
    assert raw["database"] == {
        "service": "postgres",
        "user": {"env": "POSTGRES_USER"},
        "dbname": {"env": "POSTGRES_DB"},
        "password": {"env": "POSTGRES_PASSWORD"},
    }
    assert raw["apps"] == {  # redis publishes no port: not an app
        "api": {
            "port": 8000,
            "health": {"path": "/", "status": 200},
            "credentials": {"role": "shop", "env": "DATABASE_PASSWORD"},
        }
    }
    spec = load_stack(stack_file)  # the scaffolded overlay loads as a compose stack
    assert spec.is_compose and spec.services == ("api", "postgres", "redis")
    scenarios = {p.stem: yaml.safe_load(p.read_text()) for p in (project / "scenarios").iterdir()}
    assert sorted(scenarios) == [
        "credential-leak",
        "db-kill-restart",
        "disk-full",
        "partition-app-db",
    ]
    assert scenarios["db-kill-restart"]["fault"]["with"] == {"service": "postgres"}
    assert scenarios["partition-app-db"]["fault"]["with"] == {"a": "api", "b": "postgres"}
    assert scenarios["credential-leak"]["fault"] == {
        "name": "Leak shop's database password",
        "action": "leak-db-password",
        "with": {"role": "shop"},
    }
    assert raw["ledger"] == {"canary": {"service": "postgres"}}
    assert raw["journey"] == [{"service": "api", "method": "GET", "path": "/", "status": 200}]
    assert spec.ledger is not None
    for scenario in scenarios.values():  # only checks that hold without more declarations
        assert scenario["checklist"] == list(COMPOSE_CHECKLIST)
    assert any("corruption is not scaffolded" in n for n in notes)


def test_init_compose_without_a_postgres_service_is_refused(tmp_path):
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  web: {image: nginx}\n")
    with pytest.raises(ValidationError, match="no service looks like PostgreSQL"):
        init_project(tmp_path, compose=compose)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compose.yaml"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n", "docker-compose.yml: <top>: expected a compose file"),
        ("version: '3'\n", "docker-compose.yml: services: missing or empty"),
        ("services: [a]\n", "docker-compose.yml: services: missing or empty"),
    ],
)
def test_a_bad_compose_file_is_refused_and_nothing_written(tmp_path, text, expected):
    (tmp_path / "docker-compose.yml").write_text(text)
    with pytest.raises(ValidationError) as exc:
        init_project(tmp_path, compose=tmp_path / "docker-compose.yml")
    assert any(p.endswith(expected) or expected in p for p in exc.value.problems), (
        exc.value.problems
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docker-compose.yml"]


def test_existing_files_are_kept_unless_forced(tmp_path, capsys):
    (tmp_path / "pytest.ini").write_text("[pytest]\n# ours\n")
    (tmp_path / "Makefile").write_text("build:\n\ttrue\n")
    assert main(["init", str(tmp_path)]) == 4
    err = capsys.readouterr().err
    assert "pytest.ini: exists (use --force to overwrite)" in err
    assert (tmp_path / "pytest.ini").read_text() == "[pytest]\n# ours\n"
    assert not (tmp_path / "scenarios").exists()  # refused before writing anything
    assert main(["init", str(tmp_path), "--force"]) == 0
    assert "drill_scenarios" in (tmp_path / "pytest.ini").read_text()
    assert (tmp_path / "Makefile").read_text() == "build:\n\ttrue\n"  # never replaced
    assert "add `include drillkit.mk`" in capsys.readouterr().err


def test_a_bad_name_is_refused(tmp_path):
    with pytest.raises(ValidationError, match="--name"):
        init_project(tmp_path, name="Bad Name")


def test_validate_defaults_to_the_projects_scenarios_else_the_built_in_ones(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 0
    builtin = len(list(SCENARIOS_DIR.glob("*.yaml")))
    assert f"{builtin} scenario files, 0 problems" in capsys.readouterr().err
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "bad.yaml").write_text("id: bad\n")
    assert main(["validate"]) == 1
    err = capsys.readouterr().err
    assert "1 scenario files" in err and "bad.yaml" in err
