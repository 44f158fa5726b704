"""The stack file: which images make the stack under drill and how the app receives its settings."""

from __future__ import annotations

import json as _json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from drillkit.errors import ValidationError
from drillkit.paths import IMAGES_DIR, REFERENCE_STACK, project_root
from drillkit.stack.compose import ComposeFile, load_compose
from drillkit.validate import Problems, check_keys, excerpt, load_yaml, read_text, typed

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


DECLARED_KEYS = ("probes", "journey", "ledger", "logs")
"""The declared probes, journey, ledger and log patterns (stack/probespec.py KEYS)."""
CRED_KINDS = ("env", "file", "secret")
CAPABILITY = re.compile(r"[a-z][a-z0-9-]{0,39}")


@dataclass(frozen=True)
class Cred:
    """Where a credential comes from: a literal string, an environment variable of the service's
    compose environment, a file inside the container (read after start), or a compose secret."""

    kind: Literal["literal", "env", "file", "secret"]
    value: str

    def __repr__(self) -> str:  # a literal is a secret: never shown
        return f"Cred({self.kind}, {'***' if self.kind == 'literal' else self.value})"


@dataclass(frozen=True)
class DbOverlay:
    """Which compose service is PostgreSQL and how drillkit logs in as its superuser."""

    service: str
    user: Cred
    password: Cred
    dbname: Cred
    engine: str = "postgres"
    port: int = 5432
    data: str = "/var/lib/postgresql/data"
    replicas: tuple[str, ...] = ()


@dataclass(frozen=True)
class CredDelivery:
    """How an app receives its database password: env (rotation recreates the container), file
    (drillkit rewrites it inside the container, then `reload`), or secret (the compose secret's
    file, which drillkit's run copy holds)."""

    role: str
    kind: Literal["env", "file", "secret"]
    target: str
    reload: str = "restart"
    """'restart', or a signal name such as 'HUP' (file and secret delivery)."""


@dataclass(frozen=True)
class AppOverlay:
    port: int
    health: HealthSpec
    credentials: CredDelivery | None = None


@dataclass(frozen=True)
class StackSpec:
    name: str
    database: DatabaseSpec = field(default_factory=DatabaseSpec)
    app: AppSpec = field(default_factory=AppSpec)
    source: str = "<default>"
    compose: ComposeFile | None = None
    """The compose file of a compose stack (None: the reference-style stack)."""
    db: DbOverlay | None = None
    apps: dict[str, AppOverlay] = field(default_factory=dict)
    seed: tuple[str, ...] = ()
    """SQL texts run through drillkit's connection after start-up."""
    seed_generator: str | None = None
    """`seed: {generator: reference}`: the reference app's users and orders (stack/seed.py), sized
    by --drill-seed-scale; None: only the `seed` SQL, if any."""
    declared_provides: frozenset[str] = frozenset()
    """The stack file's `provides` list."""
    probes: tuple[DeclaredProbe, ...] = ()
    """Declared probes (stack/probespec.py); none: the availability probe of the app's health."""
    journey: tuple[HttpRequest, ...] = ()
    """The declared journey; none: no journey probe."""
    ledger: Ledger | None = None
    """The declared write ledger; None: no writer (RPO not measured)."""
    logs: dict[str, LogPatterns] = field(default_factory=dict)
    """Declared error patterns per service (no-error-spike)."""

    @property
    def is_compose(self) -> bool:
        return self.compose is not None

    @property
    def services(self) -> tuple[str, ...]:
        if self.compose is not None:
            return tuple(self.compose.services)
        return SERVICES if self.database.replica else ("primary", "app")

    @property
    def provides(self) -> frozenset[str]:
        """The stack's capabilities (a scenario's `needs` are checked against them)."""
        if self.compose is not None:
            base = {"postgres", "compose"} if self.db is not None else {"compose"}
            if self.db is not None and self.db.replicas:
                base.add("replica")
        else:
            base = {"pgbackrest", "postgres"}  # drillkit's database image; the app: `provides`
            if self.database.replica:
                base.add("replica")
        return frozenset(base) | self.declared_provides


def load_stack(path: Path | None = None) -> StackSpec:
    path = path or REFERENCE
    return parse_stack(load_yaml(path), path)


def parse_stack(data: Any, source: str | Path, root: Path | None = None) -> StackSpec:
    """A stack file: the reference-style format (name, database, app) or a compose stack (name,
    compose, database overlay, apps, seed); both may carry provides and B's declared sections.
    `root` is the team's project (default: the working directory); a compose file must lie inside
    it or inside the stack file's folder."""
    p = Problems(source)
    if not isinstance(data, dict):
        p.add("", f"expected a mapping with name, database, app; got {type(data).__name__}")
        p.raise_if_any()
    if "compose" in data:
        return _parse_compose_stack(p, data, Path(source), root)
    common = ("provides", "seed", *DECLARED_KEYS)
    check_keys(p, "", data, ("name", "database", "app", *common), ("name", "database", "app"))
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
    provides = _provides(p, data.get("provides"))
    seed, generator = _seed(p, data.get("seed"), Path(source))
    replica = db_raw.get("replica", True) if isinstance(db_raw, dict) else True
    declared = _declared(p, data, SERVICES if replica else ("primary", "app"))
    p.raise_if_any()
    return StackSpec(
        name=name,
        database=DatabaseSpec(**db_raw),
        app=AppSpec(**{**app_raw, "health": health}),
        source=str(source),
        seed=seed,
        seed_generator=generator,
        declared_provides=provides,
        **declared,
    )


def _provides(p: Problems, raw: Any) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if not typed(p, "provides", raw, list, "a list of capability names"):
        return frozenset()
    out = set()
    for i, item in enumerate(raw):
        if isinstance(item, str) and CAPABILITY.fullmatch(item):
            out.add(item)
        else:
            p.add(
                f"provides[{i}]", f"expected a capability name like pgbackrest, got {excerpt(item)}"
            )
    return frozenset(out)


def _declared(p: Problems, data: dict[str, Any], services: tuple[str, ...]) -> dict[str, Any]:
    """The declared probes, journey, ledger and logs (stack/probespec.py) as StackSpec fields."""
    from drillkit.stack.probespec import parse_probes  # it imports this module's JsonRule

    declared = parse_probes(p, data, set(services))
    return {
        "probes": declared.probes,
        "journey": declared.journey,
        "ledger": declared.ledger,
        "logs": declared.logs,
    }


def _inside_project(stack_file: Path, target: Path, root: Path | None) -> bool:
    homes = [stack_file.absolute().parent.resolve()]
    if homes[0].name == "stacks":
        homes.append(homes[0].parent)
    homes.append((root or project_root()).resolve())
    return any(target == h or target.is_relative_to(h) for h in homes)


def _parse_compose_stack(
    p: Problems, data: dict[str, Any], source: Path, root: Path | None
) -> StackSpec:
    keys = ("name", "compose", "database", "apps", "seed", "provides", *DECLARED_KEYS)
    check_keys(p, "", data, keys, ("name", "compose", "database"))
    name = data.get("name", "")
    if typed(p, "name", name, str, "a string") and not re.fullmatch(
        r"[a-z0-9][a-z0-9-]{0,39}", name
    ):
        p.add("name", "lower-case letters, digits and '-' (it names the run's resources)")
    compose: ComposeFile | None = None
    raw_path = data.get("compose")
    if typed(p, "compose", raw_path, str, "a path to a compose file"):
        path = Path(source).absolute().parent / raw_path
        if not _inside_project(source, path.resolve(), root):
            p.add("compose", f"{excerpt(raw_path)} leads outside the project")
        else:
            try:
                compose = load_compose(path)
            except ValidationError as exc:
                p.items.extend(exc.problems)
    services = compose.services if compose is not None else {}
    db = _db_overlay(p, data.get("database"), compose) if compose is not None else None
    apps: dict[str, AppOverlay] = {}
    raw_apps = data.get("apps") or {}
    if compose is not None and typed(p, "apps", raw_apps, dict, "a mapping of compose services"):
        for svc, raw in raw_apps.items():
            at = f"apps.{svc}"
            if svc not in services:
                p.add(
                    at, f"no service {excerpt(svc)} in {compose.path.name}{_suggest(svc, services)}"
                )
                continue
            if typed(p, at, raw, dict, "a mapping {port, health, credentials}"):
                app = _app_overlay(p, at, raw, compose, svc)
                if app is not None:
                    apps[svc] = app
    seed, generator = _seed(p, data.get("seed"), Path(source))
    provides = _provides(p, data.get("provides"))
    declared = _declared(p, data, tuple(services))
    p.raise_if_any()
    return StackSpec(
        name=name,
        source=str(source),
        compose=compose,
        db=db,
        apps=apps,
        seed=seed,
        seed_generator=generator,
        declared_provides=provides,
        **declared,
    )


def _suggest(name: Any, services: dict[str, Any]) -> str:
    from drillkit.validate import suggest

    return suggest(name, services) if isinstance(name, str) else ""


def _cred(p: Problems, at: str, raw: Any, compose: ComposeFile, service: str) -> Cred | None:
    """A literal string, {env: NAME} (defined in the service's environment), {file: /abs/path}
    or {secret: name} (a compose secret the service mounts)."""
    if isinstance(raw, str):
        return Cred("literal", raw) if raw else None
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in CRED_KINDS:
        p.add(at, "expected a string, {env: NAME}, {file: /path/in/container} or {secret: name}")
        return None
    kind, value = next(iter(raw.items()))
    if not typed(p, f"{at}.{kind}", value, str, "a string"):
        return None
    svc = compose.services[service]
    if kind == "env" and value not in svc.environment:
        p.add(
            f"{at}.env",
            f"{excerpt(value)} is not in service {service}'s environment "
            f"(environment/env_file of {compose.path.name})",
        )
        return None
    if kind == "file":
        check_container_path(p, f"{at}.file", value)
    if kind == "secret" and value not in {r.source for r in svc.secrets}:
        p.add(f"{at}.secret", f"service {service} mounts no compose secret {excerpt(value)}")
        return None
    return Cred(kind, value)


def _db_overlay(p: Problems, raw: Any, compose: ComposeFile) -> DbOverlay | None:
    if not typed(p, "database", raw, dict, "a mapping {service, user, password, dbname, ...}"):
        return None
    keys = ("service", "engine", "port", "user", "password", "dbname", "data", "replicas")
    check_keys(p, "database", raw, keys, ("service",))
    service = raw.get("service")
    if not isinstance(service, str) or service not in compose.services:
        if "service" in raw:
            p.add(
                "database.service",
                f"no service {excerpt(service)} in {compose.path.name}"
                f"{_suggest(service, compose.services)}",
            )
        return None
    engine = raw.get("engine", "postgres")
    if engine != "postgres":
        p.add("database.engine", f"only postgres is supported, got {excerpt(engine)}")
    port = raw.get("port", 5432)
    if typed(p, "database.port", port, int, "a port number") and not 0 < port < 65536:
        p.add("database.port", f"must be 1-65535, got {port}")
    env = compose.services[service].environment
    defaults: dict[str, Any] = {
        "user": {"env": "POSTGRES_USER"} if "POSTGRES_USER" in env else "postgres",
        "password": (
            {"env": "POSTGRES_PASSWORD"}
            if "POSTGRES_PASSWORD" in env
            else {"file": env["POSTGRES_PASSWORD_FILE"]}
            if "POSTGRES_PASSWORD_FILE" in env
            else None
        ),
        "dbname": {"env": "POSTGRES_DB"} if "POSTGRES_DB" in env else None,
    }
    creds: dict[str, Cred | None] = {}
    for key in ("user", "password", "dbname"):
        value = raw.get(key, defaults[key])
        if value is None and key == "password":
            p.add(
                "database.password",
                f"no credentials: service {service} defines neither POSTGRES_PASSWORD nor "
                "POSTGRES_PASSWORD_FILE; name the superuser's password as {env: NAME}, "
                "{file: /path/in/container} or {secret: name}",
            )
            creds[key] = None
        elif value is None:
            creds[key] = creds.get("user")  # the official image's default: dbname = user
        else:
            creds[key] = _cred(p, f"database.{key}", value, compose, service)
    data = raw.get("data", env.get("PGDATA", "/var/lib/postgresql/data"))
    check_container_path(p, "database.data", data)
    replicas = raw.get("replicas", [])
    if typed(p, "database.replicas", replicas, list, "a list of compose services"):
        for i, r in enumerate(replicas):
            if r not in compose.services or r == service:
                p.add(
                    f"database.replicas[{i}]",
                    f"no other service {excerpt(r)} in {compose.path.name}",
                )
    user, password, dbname = creds.get("user"), creds.get("password"), creds.get("dbname")
    if user is None or password is None or dbname is None or p.items:
        return None
    return DbOverlay(
        service=service,
        user=user,
        password=password,
        dbname=dbname,
        engine=str(engine),
        port=port if isinstance(port, int) else 5432,
        data=str(data),
        replicas=tuple(r for r in replicas if isinstance(r, str))
        if isinstance(replicas, list)
        else (),
    )


def _app_overlay(
    p: Problems, at: str, raw: dict[str, Any], compose: ComposeFile, service: str
) -> AppOverlay | None:
    check_keys(p, at, raw, ("port", "health", "credentials"), ("health",))
    svc = compose.services[service]
    port = raw.get("port", svc.ports[0].container if len(svc.ports) == 1 else None)
    if port is None:
        p.add(f"{at}.port", "missing: the container port the app listens on")
    elif typed(p, f"{at}.port", port, int, "a port number") and not 0 < port < 65536:
        p.add(f"{at}.port", f"must be 1-65535, got {port}")
    sub = Problems(p.source)
    health = parse_health(sub, raw.get("health"))
    p.items.extend(i.replace(": app.health", f": {at}.health", 1) for i in sub.items)
    cred: CredDelivery | None = None
    craw = raw.get("credentials")
    if craw is not None and typed(
        p, f"{at}.credentials", craw, dict, "a mapping {role, env|file|secret}"
    ):
        check_keys(
            p, f"{at}.credentials", craw, ("role", "env", "file", "secret", "reload"), ("role",)
        )
        kinds = [k for k in CRED_KINDS if k in craw]
        role = craw.get("role")
        typed(p, f"{at}.credentials.role", role, str, "a PostgreSQL role name")
        if len(kinds) != 1:
            p.add(f"{at}.credentials", "needs exactly one of env, file, secret")
        else:
            kind = kinds[0]
            target = craw[kind]
            where = f"{at}.credentials.{kind}"
            ok = typed(p, where, target, str, "a string")
            if ok and kind == "env" and target not in svc.environment:
                p.add(where, f"{excerpt(target)} is not in service {service}'s environment")
            if ok and kind == "file":
                check_container_path(p, where, target)
            if ok and kind == "secret" and target not in {r.source for r in svc.secrets}:
                p.add(where, f"service {service} mounts no compose secret {excerpt(target)}")
            reload = craw.get("reload", "restart")
            if (
                isinstance(reload, dict)
                and set(reload) == {"signal"}
                and isinstance(reload["signal"], str)
            ):
                reload = reload["signal"].upper().removeprefix("SIG")
            elif reload != "restart":
                p.add(f"{at}.credentials.reload", "expected restart or {signal: HUP}")
                reload = "restart"
            if kind == "env" and "reload" in craw:
                p.add(f"{at}.credentials.reload", "env delivery always recreates the container")
            if ok and isinstance(role, str):
                cred = CredDelivery(role, kind, target, reload)  # type: ignore[arg-type]
    if not isinstance(port, int) or isinstance(port, bool):
        return None
    return AppOverlay(port=port, health=health, credentials=cred)


SEED_GENERATORS = ("reference",)
"""Named seed generators: `reference` is the reference app's users and orders (stack/seed.py)."""


def _seed(p: Problems, raw: Any, source: Path) -> tuple[tuple[str, ...], str | None]:
    """`seed`: a list whose entries are each a .sql file relative to the stack file (inside its
    folder) or inline SQL, or `{generator: NAME}` (SEED_GENERATORS). Returns (SQL texts, generator)."""
    if raw is None:
        return (), None
    if isinstance(raw, dict):
        check_keys(p, "seed", raw, ("generator",), ("generator",))
        name = raw.get("generator")
        if name is not None and name not in SEED_GENERATORS:
            p.add(
                "seed.generator",
                f"unknown generator {excerpt(name)}; known: {', '.join(SEED_GENERATORS)}",
            )
            return (), None
        return (), name
    if not typed(p, "seed", raw, list, "a list of SQL files or statements, or {generator: NAME}"):
        return (), None
    out: list[str] = []
    home = source.absolute().parent
    for i, item in enumerate(raw):
        if not typed(p, f"seed[{i}]", item, str, "a .sql file or SQL text"):
            continue
        if item.endswith(".sql") and "\n" not in item and " " not in item:
            f = (home / item).resolve()
            if not _inside_project(source, f, None):
                p.add(f"seed[{i}]", f"{excerpt(item)} leads outside the project")
                continue
            try:
                out.append(read_text(f, root=home.resolve()))
            except ValidationError as exc:
                p.add(f"seed[{i}]", exc.problems[0])
        else:
            out.append(item)
    return tuple(out), None


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
