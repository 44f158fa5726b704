"""The stack file: which images make the stack under drill and how the app receives its settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drillkit.paths import REFERENCE_STACK
from drillkit.validate import Problems, check_keys, load_yaml, typed

REFERENCE = REFERENCE_STACK
SERVICES = ("primary", "replica", "app")


@dataclass(frozen=True)
class DatabaseSpec:
    image: str = "postgres"
    replica: bool = True
    synchronous: bool = False


@dataclass(frozen=True)
class AppSpec:
    image: str = "app"
    port: int = 8080
    health: str = "/api/health"
    secrets_dir: str = "/run/drillkit/secrets"
    config_dir: str = "/run/drillkit/config"
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StackSpec:
    name: str
    database: DatabaseSpec
    app: AppSpec
    source: str = "<default>"

    @property
    def services(self) -> tuple[str, ...]:
        return SERVICES if self.database.replica else ("primary", "app")


def load_stack(path: Path | None = None) -> StackSpec:
    path = path or REFERENCE
    return parse_stack(load_yaml(path), path)


def parse_stack(data: Any, source: str | Path) -> StackSpec:
    p = Problems(source)
    if not isinstance(data, dict):
        p.add("", f"expected a mapping with name, database, app; got {type(data).__name__}")
        p.raise_if_any()
    check_keys(p, "", data, ("name", "database", "app"), ("name", "database", "app"))
    name = data.get("name", "")
    typed(p, "name", name, str, "a string")
    db_raw = data.get("database") or {}
    app_raw = data.get("app") or {}
    db = DatabaseSpec()
    app = AppSpec()
    if typed(p, "database", db_raw, dict, "a mapping"):
        check_keys(p, "database", db_raw, ("image", "replica", "synchronous"), ())
        typed(p, "database.image", db_raw.get("image", db.image), str, "an image name")
        typed(p, "database.replica", db_raw.get("replica", db.replica), bool, "true or false")
        typed(p, "database.synchronous", db_raw.get("synchronous", False), bool, "true or false")
        if db_raw.get("synchronous") and db_raw.get("replica") is False:
            p.add("database.synchronous", "synchronous replication needs replica: true")
    if typed(p, "app", app_raw, dict, "a mapping"):
        keys = ("image", "port", "health", "secrets_dir", "config_dir", "env")
        check_keys(p, "app", app_raw, keys, ())
        port = app_raw.get("port", app.port)
        if typed(p, "app.port", port, int, "a port number") and not 0 < port < 65536:
            p.add("app.port", f"must be 1-65535, got {port}")
        health = app_raw.get("health", app.health)
        if typed(p, "app.health", health, str, "a URL path") and not health.startswith("/"):
            p.add("app.health", f"must start with '/', got {health!r}")
        for key in ("image", "secrets_dir", "config_dir"):
            typed(p, f"app.{key}", app_raw.get(key, getattr(app, key)), str, "a string")
        env = app_raw.get("env", {})
        if typed(p, "app.env", env, dict, "a mapping of names to strings"):
            for k, v in env.items():
                typed(p, f"app.env.{k}", v, str, "a string (quote numbers)")
    p.raise_if_any()
    return StackSpec(
        name=name,
        database=DatabaseSpec(**db_raw),
        app=AppSpec(**app_raw),
        source=str(source),
    )
