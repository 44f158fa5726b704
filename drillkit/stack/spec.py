"""The stack file: which images make the stack under drill and how the app receives its settings."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drillkit.paths import IMAGES_DIR, REFERENCE_STACK
from drillkit.validate import Problems, check_keys, excerpt, load_yaml, typed

REFERENCE = REFERENCE_STACK
SERVICES = ("primary", "replica", "app")
IMAGE_REF = re.compile(
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)
"""An image: a folder of images/ or an image reference (Docker's grammar, without a registry
port). No '..', no absolute path: a stack file cannot point a build outside the images folder."""
CONTAINER_PATH = re.compile(r"(/[A-Za-z0-9_.-]+)+")
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")


def check_image(p: Problems, path: str, ref: Any, images: Path = IMAGES_DIR) -> None:
    """A stack file's image stays inside the images folder (or is a plain image reference)."""
    if not typed(p, path, ref, str, "an image name"):
        return
    if not IMAGE_REF.fullmatch(ref) or ".." in ref:
        p.add(path, f"expected a folder of images/ or an image reference, got {excerpt(ref)}")
        return
    folder = images / ref.split(":")[0].split("@")[0]
    if folder.exists() and not folder.resolve().is_relative_to(images.resolve()):
        p.add(path, f"the images folder entry {excerpt(ref)} leads outside {images}")


def check_container_path(p: Problems, path: str, value: Any) -> None:
    if typed(p, path, value, str, "an absolute path in the container") and (
        not CONTAINER_PATH.fullmatch(value) or "/.." in value or "/./" in value
    ):
        p.add(path, f"expected an absolute path without '..', got {excerpt(value)}")


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
        check_image(p, "database.image", db_raw.get("image", db.image))
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
        if typed(p, "app.health", health, str, "a URL path") and (
            not health.startswith("/") or len(health) > 200 or any(c.isspace() for c in health)
        ):
            p.add(
                "app.health", f"must start with '/' (a URL path, no spaces), got {excerpt(health)}"
            )
        check_image(p, "app.image", app_raw.get("image", app.image))
        for key in ("secrets_dir", "config_dir"):
            check_container_path(p, f"app.{key}", app_raw.get(key, getattr(app, key)))
        env = app_raw.get("env", {})
        if typed(p, "app.env", env, dict, "a mapping of names to strings"):
            for k, v in env.items():
                if not isinstance(k, str) or not ENV_NAME.fullmatch(k):
                    p.add(f"app.env.{str(k)[:40]}", "expected an environment variable name")
                    continue
                typed(p, f"app.env.{k}", v, str, "a string (quote numbers)")
    p.raise_if_any()
    return StackSpec(
        name=name,
        database=DatabaseSpec(**db_raw),
        app=AppSpec(**app_raw),
        source=str(source),
    )
