"""The compose parser and the stack-file overlay: the subset drillkit supports, and each refusal as
file:path:reason before anything starts (no containers: these run in milliseconds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from drillkit.errors import ValidationError
from drillkit.stack.compose import Mount, load_compose, start_order
from drillkit.stack.spec import Cred, load_stack

DB = {
    "image": "postgres-local",
    "environment": {"POSTGRES_PASSWORD": "pw", "POSTGRES_USER": "shop", "POSTGRES_DB": "shop"},
    "volumes": ["pgdata:/var/lib/postgresql/data"],
}


def project(
    tmp_path: Path, services: dict[str, Any], overlay: dict[str, Any] | None = None, **top: Any
) -> Path:
    """A project folder with compose.yaml and stack.yaml; returns the stack file."""
    (tmp_path / "compose.yaml").write_text(
        yaml.safe_dump({"services": services, "volumes": {"pgdata": None}, **top})
    )
    stack = {"name": "shop", "compose": "compose.yaml", "database": {"service": "db"}}
    stack.update(overlay or {})
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(stack))
    return path


def refusal(stack: Path) -> str:
    with pytest.raises(ValidationError) as exc:
        load_stack(stack)
    return str(exc.value)


def test_a_compose_stack_loads_with_defaults_from_the_official_image_contract(
    tmp_path: Path,
) -> None:
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    api = {
        "build": "./api",
        "ports": ["8000:8000"],
        "depends_on": {"db": {"condition": "service_healthy"}},
        "environment": ["DATABASE_PASSWORD=pw"],
    }
    db = {**DB, "healthcheck": {"test": "pg_isready", "interval": "1s", "retries": 5}}
    stack = project(
        tmp_path,
        {"api": api, "db": db},
        {
            "apps": {
                "api": {
                    "health": "/status",
                    "credentials": {"role": "shop", "env": "DATABASE_PASSWORD"},
                }
            }
        },
    )
    spec = load_stack(stack)
    assert spec.is_compose and spec.services == ("api", "db")
    assert spec.db is not None
    assert (spec.db.user, spec.db.password, spec.db.dbname) == (
        Cred("env", "POSTGRES_USER"),
        Cred("env", "POSTGRES_PASSWORD"),
        Cred("env", "POSTGRES_DB"),
    )
    assert spec.apps["api"].port == 8000  # the service's only port
    assert spec.provides == {"postgres", "compose"}
    assert start_order(spec.compose) == ["db", "api"]  # type: ignore[arg-type]
    assert spec.compose.services["db"].healthcheck.test == ("CMD-SHELL", "pg_isready")  # type: ignore[union-attr]
    assert "pw" not in repr(spec)  # environments and literal credentials are never shown


def test_the_reference_stack_file_is_unchanged() -> None:
    spec = load_stack()
    assert not spec.is_compose and spec.services == ("primary", "replica", "app")
    assert spec.provides == {"reference-app", "pgbackrest", "postgres", "replica"}


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ({"deploy": {"replicas": 2}}, "compose.yaml: services.db.deploy: not supported"),
        ({"privileged": True}, "compose.yaml: services.db.privileged: refused"),
        (
            {"network_mode": "host"},
            "compose.yaml: services.db.network_mode: refused: host networking",
        ),
        ({"cap_add": ["NET_ADMIN"]}, "compose.yaml: services.db.cap_add: refused"),
        (
            {"ports": ["0.0.0.0:5432:5432"]},
            "compose.yaml: services.db.ports[0]: refused: publishes on '0.0.0.0'",
        ),
        ({"ports": [{"target": 5432, "host_ip": "10.0.0.1"}]}, "services.db.ports[0]: refused"),
        (
            {"volumes": ["/etc:/host-etc"]},
            "services.db.volumes[0]: '/etc' leads outside the project",
        ),
        (
            {"volumes": [{"type": "bind", "source": "../..", "target": "/x"}]},
            "leads outside the project",
        ),
        ({"volumes": ["other:/data"]}, "volume 'other' is not declared under top-level volumes"),
        ({"build": "../elsewhere"}, "services.db.build.context: '../elsewhere' leads outside"),
        ({"frobnicate": 1}, "compose.yaml: services.db.frobnicate: unknown key"),
        ({"depends_on": ["cache"]}, "services.db.depends_on.cache: no such service"),
        (
            {"environment": {"X": "${NOT_SET_ANYWHERE_XYZ}"}},
            "services.db.environment.X: variable NOT_SET_ANYWHERE_XYZ is not set",
        ),
        ({"environment": {"X": "${NEED_XYZ:?give it}"}}, "variable NEED_XYZ is required: give it"),
    ],
)
def test_compose_refusals_name_file_path_reason(
    tmp_path: Path, service: dict[str, Any], expected: str
) -> None:
    assert expected in refusal(project(tmp_path, {"db": {**DB, **service}}))


def test_interpolation_from_dotenv_and_defaults(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("# comment\nDB_PW='from-dotenv'\nexport TAG=15\n")
    db = {
        **DB,
        "image": "pg:${TAG}",
        "environment": {
            "POSTGRES_PASSWORD": "${DB_PW}",
            "POSTGRES_DB": "${DB_NAME_XYZ:-shopdb}",
            "COST": "$$5",
        },
    }
    compose = load_compose(Path(project(tmp_path, {"db": db})).parent / "compose.yaml")
    svc = compose.services["db"]
    assert svc.image == "pg:15"
    assert svc.environment["POSTGRES_PASSWORD"] == "from-dotenv"
    assert svc.environment["POSTGRES_DB"] == "shopdb"
    assert svc.environment["COST"] == "$5"


def test_short_and_long_syntax_agree(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    short = {
        **DB,
        "volumes": ["pgdata:/var/lib/postgresql/data", "./conf:/etc/app:ro", "/cache"],
        "ports": ["5432", "127.0.0.1:6000:5432"],
        "depends_on": ["api"],
        "command": "postgres -c fsync=off",
    }
    long = {
        **DB,
        "volumes": [
            {"type": "volume", "source": "pgdata", "target": "/var/lib/postgresql/data"},
            {"type": "bind", "source": "./conf", "target": "/etc/app", "read_only": True},
            {"type": "volume", "target": "/cache"},
        ],
        "ports": [{"target": 5432}, {"target": 5432, "published": 6000, "host_ip": "127.0.0.1"}],
        "depends_on": {"api": {"condition": "service_started"}},
        "command": ["postgres", "-c", "fsync=off"],
    }
    api = {"image": "api"}
    a = load_compose(project(tmp_path, {"db": short, "api": api}).parent / "compose.yaml")
    b = load_compose(project(tmp_path, {"db": long, "api": api}).parent / "compose.yaml")
    assert a.services["db"] == b.services["db"]
    assert a.services["db"].volumes[1] == Mount(
        "bind", str((tmp_path / "conf").resolve()), "/etc/app", True
    )
    assert a.services["db"].volumes[2] == Mount("volume", "", "/cache")


@pytest.mark.parametrize(
    ("services", "overlay", "expected"),
    [
        (
            {"db": {"image": "pg", "environment": {"X": "1"}}},
            {},
            "stack.yaml: database.password: no credentials: service db defines neither "
            "POSTGRES_PASSWORD nor POSTGRES_PASSWORD_FILE",
        ),
        (
            {"db": DB},
            {"apps": {"api": {"health": "/"}}},
            "stack.yaml: apps.api: no service 'api' in compose.yaml",
        ),
        (
            {"db": DB},
            {"database": {"service": "postgres"}},
            "stack.yaml: database.service: no service 'postgres' in compose.yaml",
        ),
        (
            {"db": DB},
            {"database": {"service": "db", "password": {"env": "PG_PASS"}}},
            "stack.yaml: database.password.env: 'PG_PASS' is not in service db's environment",
        ),
        (
            {"db": DB},
            {"database": {"service": "db", "password": {"secret": "pw"}}},
            "database.password.secret: service db mounts no compose secret 'pw'",
        ),
        (
            {"db": DB, "api": {"image": "api", "ports": ["80"]}},
            {"apps": {"api": {"health": "/", "credentials": {"role": "a", "env": "DB_PW"}}}},
            "apps.api.credentials.env: 'DB_PW' is not in service api's environment",
        ),
        (
            {"db": DB, "api": {"image": "api"}},
            {"apps": {"api": {"health": {"path": "nope"}}}},
            "stack.yaml: apps.api.health.path: must start with '/'",
        ),
        (
            {"db": DB},
            {"compose": "../../outside.yaml"},
            "stack.yaml: compose: '../../outside.yaml' leads outside the project",
        ),
        ({"db": DB}, {"seed": ["missing.sql"]}, "stack.yaml: seed[0]:"),
        ({"db": DB}, {"frobs": 1}, "stack.yaml: frobs: unknown key"),
    ],
)
def test_overlay_refusals(
    tmp_path: Path, services: dict[str, Any], overlay: dict[str, Any], expected: str
) -> None:
    (tmp_path / "sub").mkdir()
    assert expected in refusal(project(tmp_path / "sub", services, overlay))


def test_declared_sections_and_provides(tmp_path: Path) -> None:
    probes = [{"name": "db", "tcp": {"service": "db", "port": 5432}}]
    spec = load_stack(project(tmp_path, {"db": DB}, {"probes": probes, "provides": ["redis"]}))
    assert spec.provides == {"postgres", "compose", "redis"}
    assert [p.name for p in spec.probes] == ["db"]
    bad = [{"name": "api", "tcp": {"service": "api", "port": 80}}]
    assert "probes[0]" in refusal(project(tmp_path, {"db": DB}, {"probes": bad}))


def test_file_secret_and_password_file_default(tmp_path: Path) -> None:
    (tmp_path / "pw.txt").write_text("s3cret\n")
    db = {
        "image": "pg",
        "environment": {"POSTGRES_PASSWORD_FILE": "/run/secrets/pw"},
        "secrets": ["pw"],
    }
    stack = project(tmp_path, {"db": db}, secrets={"pw": {"file": "./pw.txt"}})
    spec = load_stack(stack)
    assert spec.db is not None and spec.db.password == Cred("file", "/run/secrets/pw")
    assert spec.db.user == Cred("literal", "postgres") and spec.db.dbname == spec.db.user
    svc = spec.compose.services["db"]  # type: ignore[union-attr]
    assert svc.secrets[0].target == "/run/secrets/pw"


def _stack(spec: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A Stack over `spec` whose engine client is never reached (kinds and names only)."""
    import drillkit.stack.services  # noqa: F401  (registers the kinds)
    from drillkit.stack import stack as stack_module

    monkeypatch.setattr(stack_module.engine, "client", lambda: object())
    return stack_module.Stack(spec, "unit0", tmp_path / "run")


def test_a_compose_stack_runs_the_compose_kind_and_the_reference_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = {"image": "api", "ports": ["8000"]}
    spec = load_stack(project(tmp_path, {"db": DB, "api": api}, {"apps": {"api": {"health": "/"}}}))
    compose = _stack(spec, tmp_path, monkeypatch)
    assert list(compose.kinds) == ["compose"]
    assert compose.services == ("api", "db") and compose.databases == ("db",)
    assert compose.kinds["compose"].published("db") == [5432]
    assert compose.kinds["compose"].published("api") == [8000]
    reference = _stack(load_stack(), tmp_path, monkeypatch)
    assert list(reference.kinds) == ["database", "app"]
    assert reference.services == ("primary", "replica", "app")
    assert reference.databases == ("primary", "replica")
