"""The stack file: which images make the stack under drill and how the app receives its settings."""

from __future__ import annotations

import json as _json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
if TYPE_CHECKING:
    from drillkit.stack.probespec import DeclaredProbe, HttpRequest, Ledger, LogPatterns

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


_MISSING = object()


def _same(a: object, b: object) -> bool:
    """JSON equality: true is not 1, 1 is 1.0, "1" is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    numbers = isinstance(a, int | float) and isinstance(b, int | float)
    return a == b and (numbers or type(a) is type(b))


@dataclass(frozen=True)
class JsonRule:
    """One JSON-path rule of a health answer: the value at `path` (dotted keys; a number indexes a
    list) equals `equals`, or (with `negate`) is anything but it, a missing key included."""

    path: str
    value: Any
    negate: bool = False
    reason: str = ""
    """What a failure says instead of the values (e.g. 'maintenance mode on')."""

    def lookup(self, data: object) -> object:
        """The value at the path, or _MISSING."""
        for part in self.path.split("."):
            if isinstance(data, dict) and part in data:
                data = data[part]
            elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
                data = data[int(part)]
            else:
                return _MISSING
        return data

    def problem(self, data: object) -> str | None:
        got = self.lookup(data)
        same = got is not _MISSING and _same(got, self.value)
        holds = not same if self.negate else same
        if holds:
            return None
        if self.reason:
            return self.reason
        shown = "missing" if got is _MISSING else repr(got)[:80]
        want = f"anything but {self.value!r}" if self.negate else repr(self.value)
        return f"{self.path} is {shown}, expected {want}"


@dataclass(frozen=True)
class HealthSpec:
    """How an app's health answer is judged, by stack start-up and by the availability probe: GET
    `path`; a pass is the expected status, and (when declared) the body containing `body_contains`
    and every JSON rule holding."""

    path: str = "/api/health"
    status: int = 200
    body_contains: str | None = None
    json: tuple[JsonRule, ...] = ()

    def verdict(self, status_code: int, body: object) -> str | None:
        """Why an answer is not a pass, or None when it is one. `body` is the answer's text, or
        its JSON already parsed."""
        shown = (body if isinstance(body, str) else _json.dumps(body, default=str))[:120]
        if status_code != self.status:
            return f"health {status_code} (expected {self.status}): {shown}"
        if self.body_contains is not None:
            text = body if isinstance(body, str) else _json.dumps(body, default=str)
            if self.body_contains not in text:
                return f"health {status_code}: body lacks {self.body_contains!r}: {shown}"
        if self.json:
            data = body
            if isinstance(body, str):
                try:
                    data = _json.loads(body)
                except ValueError:
                    return f"health {status_code}: not JSON: {shown}"
            for rule in self.json:
                why = rule.problem(data)
                if why is not None:
                    return f"health {status_code}: {why}" if not rule.reason else f"health: {why}"
        return None


REFERENCE_HEALTH = HealthSpec(
    json=(
        JsonRule("status", "ok"),
        JsonRule(
            "maintenance", True, negate=True, reason="maintenance mode on (writes are refused)"
        ),
    )
)
"""The reference app's rule (also declared in stacks/reference.yaml): 200 with status "ok", and
maintenance mode off (an app in maintenance refuses writes: it is up, not recovered)."""


@dataclass(frozen=True)
class AppSpec:
    """The app under drill. Every default is the reference app's (images/app)."""

    image: str = "app"
    port: int = 8080
    health: HealthSpec = REFERENCE_HEALTH
    secrets_dir: str = "/run/drillkit/secrets"
    config_dir: str = "/run/drillkit/config"
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StackSpec:
    name: str
    database: DatabaseSpec
    app: AppSpec
    source: str = "<default>"
    probes: tuple[DeclaredProbe, ...] = ()
    """Declared probes (stack/probespec.py); none: the built-in availability probe."""
    journey: tuple[HttpRequest, ...] = ()
    """The declared journey; none: the reference app's built-in journey."""
    ledger: Ledger | None = None
    """The declared write ledger; None: the reference app's built-in writer and ledger."""
    logs: dict[str, LogPatterns] = field(default_factory=dict)
    """Declared error patterns per service (no-error-spike)."""

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
    from drillkit.stack.probespec import KEYS as DECLARED_KEYS
    from drillkit.stack.probespec import parse_probes

    check_keys(
        p, "", data, ("name", "database", "app", *DECLARED_KEYS), ("name", "database", "app")
    )
    name = data.get("name", "")
    typed(p, "name", name, str, "a string")
    db_raw = data.get("database") or {}
    app_raw = data.get("app") or {}
    db = DatabaseSpec()
    app = AppSpec()
    health = app.health
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
        health = parse_health(p, app_raw.get("health", app.health))
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
    replica = db_raw.get("replica", True) if isinstance(db_raw, dict) else True
    declared = parse_probes(p, data, set(SERVICES if replica else ("primary", "app")))
    p.raise_if_any()
    return StackSpec(
        name=name,
        database=DatabaseSpec(**db_raw),
        app=AppSpec(**{**app_raw, "health": health}),
        source=str(source),
        probes=declared.probes,
        journey=declared.journey,
        ledger=declared.ledger,
        logs=declared.logs,
    )


HEALTH_KEYS = ("path", "status", "body_contains", "json")
RULE_KEYS = ("path", "equals", "not_equals", "reason")


def parse_health(p: Problems, raw: Any) -> HealthSpec:
    """`app.health`: a URL path (200 is a pass, the body is not looked at), or a mapping
    {path, status (default 200), body_contains, json: a rule or a list of rules}, where a rule is
    {path: dotted.key, equals: V} or {path, not_equals: V}, with an optional `reason`."""
    if isinstance(raw, HealthSpec):
        return raw
    at_path = "app.health.path"
    if isinstance(raw, str):
        raw, at_path = {"path": raw}, "app.health"
    if not isinstance(raw, dict):
        p.add("app.health", f"expected a URL path or a mapping with {', '.join(HEALTH_KEYS)}")
        return REFERENCE_HEALTH
    check_keys(p, "app.health", raw, HEALTH_KEYS, ("path",))
    path = raw.get("path", "/")
    if typed(p, at_path, path, str, "a URL path") and (
        not path.startswith("/") or len(path) > 200 or any(c.isspace() for c in path)
    ):
        p.add(at_path, f"must start with '/' (a URL path, no spaces), got {excerpt(path)}")
    status = raw.get("status", 200)
    if typed(p, "app.health.status", status, int, "an HTTP status") and not 100 <= status <= 599:
        p.add("app.health.status", f"must be an HTTP status 100-599, got {status}")
    contains = raw.get("body_contains")
    if contains is not None and typed(p, "app.health.body_contains", contains, str, "a string"):
        if not contains:
            p.add("app.health.body_contains", "must not be empty (omit it to not check the body)")
    rules_raw = raw.get("json", [])
    rules: list[JsonRule] = []
    if isinstance(rules_raw, dict):
        rules_raw = [rules_raw]
        where = ["app.health.json"]
    else:
        where = (
            [f"app.health.json[{i}]" for i in range(len(rules_raw))]
            if isinstance(rules_raw, list)
            else []
        )
    if not isinstance(rules_raw, list):
        p.add("app.health.json", "expected a rule {path, equals} or a list of rules")
        rules_raw = []
    for at, rule in zip(where, rules_raw, strict=True):
        if not typed(p, at, rule, dict, "a mapping {path, equals} or {path, not_equals}"):
            continue
        check_keys(p, at, rule, RULE_KEYS, ("path",))
        jpath = rule.get("path", "")
        if typed(p, f"{at}.path", jpath, str, "a dotted key path") and (
            not jpath or any(not part for part in jpath.split("."))
        ):
            p.add(
                f"{at}.path", f"must be dotted keys like status or checks.db, got {jpath!r}"[:200]
            )
        has = [k for k in ("equals", "not_equals") if k in rule]
        if len(has) != 1:
            p.add(at, "needs exactly one of equals, not_equals")
            continue
        value = rule[has[0]]
        if not isinstance(value, str | int | float | bool) and value is not None:
            p.add(
                f"{at}.{has[0]}",
                f"expected a scalar (string, number, true/false, null), got {type(value).__name__}",
            )
            continue
        reason = rule.get("reason", "")
        if not typed(p, f"{at}.reason", reason, str, "a string"):
            continue
        if isinstance(jpath, str):
            rules.append(JsonRule(jpath, value, negate=has[0] == "not_equals", reason=reason))
    if p.items:
        return REFERENCE_HEALTH
    return HealthSpec(path=path, status=status, body_contains=contains, json=tuple(rules))
