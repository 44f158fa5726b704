"""A Compose Specification file, parsed into the subset drillkit brings up itself (no compose binary).

Supported: services.<name>.{image, build, environment, env_file, volumes, ports, depends_on,
healthcheck, command, entrypoint, networks, secrets, user, working_dir, restart (mapped to the
engine's restart policy), labels, stop_signal}; accepted and ignored: container_name (drillkit names
every container dk-<run>-<service>), hostname (the service name is the host name), expose, init
(always on), tty, stdin_open, stop_grace_period. Top level: name, version (ignored), volumes,
networks (every service joins the run's one internal network instead), secrets (file secrets). Every other key is refused as `compose.yaml:path: reason`
before anything starts: drillkit's safety rules (run-labelled internal network, fresh labelled
volumes, ports on 127.0.0.1 only, no host access) leave no room for privileged containers, host
networking, devices, or bind mounts outside the project.

Ports: a published port always binds 127.0.0.1 on a host port the engine picks (a fixed host port
would collide between parallel runs); the file's host port is ignored, and a host IP other than
127.0.0.1/localhost is refused (the file asked to expose the service beyond this machine).

Variables: `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`, `$VAR` and `$$` are
interpolated from the process environment, then a `.env` file next to the compose file, as
Compose does; a variable that is unset with no default is refused (never passed through).
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from drillkit.validate import Problems, check_keys, excerpt, load_yaml, read_text, typed

SERVICE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
"""A compose service name drillkit accepts (it becomes a container name's part and a host name)."""
VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CONTAINER_PATH = re.compile(r"(/[^\s:]*)+|/")

SERVICE_KEYS = (
    "image",
    "build",
    "environment",
    "env_file",
    "volumes",
    "ports",
    "expose",
    "depends_on",
    "healthcheck",
    "command",
    "entrypoint",
    "networks",
    "secrets",
    "user",
    "working_dir",
    "restart",
    "labels",
    "container_name",
    "hostname",
    "stop_signal",
    "stop_grace_period",
    "init",
    "tty",
    "stdin_open",
)
REFUSED = {
    "privileged": "refused: a privileged container can reach the host (drillkit never runs one)",
    "cap_add": "refused: drillkit adds no capability to a team's container",
    "devices": "refused: host devices are outside the drill's blast radius",
    "network_mode": "refused: every service runs on the run's internal network",
    "pid": "refused: sharing a PID namespace reaches outside the service",
    "ipc": "refused: sharing an IPC namespace reaches outside the service",
    "userns_mode": "refused: the host user namespace is outside the drill's blast radius",
    "security_opt": "refused: drillkit keeps the engine's default confinement",
    "extra_hosts": "refused: services reach each other by name; no other host is reached",
    "dns": "refused: the run's network resolves only the run's services",
    "volumes_from": "refused: name the volumes each service mounts",
    "links": "not supported: every service reaches the others by name (drop links)",
    "external_links": "refused: a drill reaches only the run's own containers",
    "deploy": "not supported: drillkit runs one container per service, without an orchestrator",
    "scale": "not supported: drillkit runs one container per service",
    "profiles": "not supported: every service in the file is started (split the file instead)",
    "extends": "not supported: write the service out in full",
    "configs": "not supported: mount the file as a bind mount inside the project instead",
    "sysctls": "refused: kernel parameters are outside the drill's blast radius",
    "ulimits": "not supported",
    "cgroup_parent": "refused: drillkit keeps the engine's default cgroup",
}
TOP_KEYS = ("name", "version", "services", "volumes", "networks", "secrets")
CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")
RESTART = re.compile(r"no|always|unless-stopped|on-failure(:[0-9]{1,3})?")


@dataclass(frozen=True)
class Build:
    context: Path
    dockerfile: str = "Dockerfile"
    args: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Mount:
    """A volume of a service: a named volume (`source` its compose name), an anonymous volume
    (`source` ""), or a bind mount (`source` an absolute host path inside the project)."""

    kind: Literal["volume", "bind"]
    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class Port:
    container: int
    protocol: str = "tcp"


@dataclass(frozen=True)
class Healthcheck:
    test: tuple[str, ...]
    """Docker's form: ("CMD", argv...), ("CMD-SHELL", line) or ("NONE",)."""
    interval_s: float = 30.0
    timeout_s: float = 30.0
    retries: int = 3
    start_period_s: float = 0.0


@dataclass(frozen=True)
class SecretRef:
    source: str
    target: str
    """Absolute path inside the container (default /run/secrets/<source>)."""


@dataclass(frozen=True)
class Service:
    name: str
    image: str | None = None
    build: Build | None = None
    environment: dict[str, str] = field(default_factory=dict, repr=False)
    """The service's environment (env_file, then environment): may hold secrets, never shown."""
    volumes: tuple[Mount, ...] = ()
    ports: tuple[Port, ...] = ()
    depends_on: dict[str, str] = field(default_factory=dict)
    """Service -> condition (service_started, service_healthy, service_completed_successfully)."""
    healthcheck: Healthcheck | None = None
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    networks: tuple[str, ...] = ()
    secrets: tuple[SecretRef, ...] = ()
    user: str | None = None
    working_dir: str | None = None
    restart: str = "no"
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str | None = None

    def mount_at(self, target: str) -> Mount | None:
        want = target.rstrip("/") or "/"
        return next((m for m in self.volumes if m.target == want), None)


@dataclass(frozen=True)
class ComposeFile:
    path: Path
    project: Path
    """The compose file's folder: build contexts and bind mounts must stay inside it."""
    services: dict[str, Service]
    volumes: tuple[str, ...] = ()
    """Top-level named volumes (each a fresh labelled volume dk-<run>-<name> per run)."""
    networks: tuple[str, ...] = ()
    secrets: dict[str, Path] = field(default_factory=dict)
    """Compose secret name -> its file on the host (inside the project)."""
    name: str = ""


# ----- interpolation ----------------------------------------------------------------------------
_VAR = re.compile(r"\$(?:(?P<esc>\$)|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.S)


def read_env_file(p: Problems, path: str, file: Path, project: Path) -> dict[str, str]:
    """KEY=VALUE lines (comments, blank lines, `export `, single/double quotes) of an env file."""
    try:
        text = read_text(file, root=project)
    except Exception as exc:  # ValidationError: name it at the compose path
        p.add(path, str(exc).splitlines()[0])
        return {}
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not VAR_NAME.fullmatch(key):
            p.add(f"{path} line {n}", "expected KEY=VALUE")
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        out[key] = value
    return out


def interpolate(p: Problems, path: str, text: str, env: dict[str, str]) -> str:
    """One string with its variables replaced; an unresolvable one is recorded at `path`."""

    def sub(m: re.Match[str]) -> str:
        if m.group("esc"):
            return "$"
        name, op, arg = m.group("plain"), None, ""
        if name is None:
            b = _BRACED.fullmatch(m.group("braced"))
            if b is None:
                p.add(
                    path,
                    f"cannot interpolate {excerpt(m.group(0))}: not ${{NAME}} or ${{NAME:-default}}",
                )
                return ""
            name, op, arg = b.group("name"), b.group("op"), b.group("arg") or ""
        value = env.get(name)
        unset, empty = value is None, not value
        if op in (":-", "-"):
            if unset or (op == ":-" and empty):
                return interpolate(p, path, arg, env)
        elif op in (":?", "?"):
            if unset or (op == ":?" and empty):
                p.add(path, f"variable {name} is required: {arg[:80] or 'unset'}")
                return ""
        elif op in (":+", "+"):
            return interpolate(p, path, arg, env) if not (unset or (op == ":+" and empty)) else ""
        if value is None:
            p.add(
                path,
                f"variable {name} is not set (in the environment or .env) and has no default; "
                f"set it or write ${{{name}:-default}}",
            )
            return ""
        return value

    return _VAR.sub(sub, text)


def _interpolate_tree(p: Problems, path: str, value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, str):
        return interpolate(p, path, value, env) if "$" in value else value
    if isinstance(value, dict):
        return {
            k: _interpolate_tree(p, f"{path}.{k}".lstrip("."), v, env) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate_tree(p, f"{path}[{i}]", v, env) for i, v in enumerate(value)]
    return value


# ----- parsing ----------------------------------------------------------------------------------
def load_compose(path: Path) -> ComposeFile:
    """Parse a compose file (bounded loader, its folder as the project); raises ValidationError."""
    shown = Path(path)
    path = shown.absolute()
    project = path.parent.resolve()
    data = load_yaml(path, root=project)
    p = Problems(shown)
    env: dict[str, str] = {}
    if (project / ".env").is_file():
        env.update(read_env_file(p, ".env", project / ".env", project))
    env.update(os.environ)
    compose = parse_compose(p, data, path, project, env)
    p.raise_if_any()
    return compose


def parse_compose(
    p: Problems, data: Any, path: Path, project: Path, env: dict[str, str] | None = None
) -> ComposeFile:
    """The compose document `data` (already loaded) as a ComposeFile; problems go to `p`."""
    if not isinstance(data, dict):
        p.add("", f"expected a compose mapping with services, got {type(data).__name__}")
        return ComposeFile(path, project, {})
    data = _interpolate_tree(p, "", data, env or {})
    check_keys(p, "", data, TOP_KEYS, ("services",))
    volumes = _names(p, "volumes", data.get("volumes"), ("driver", "labels", "name"))
    networks = _names(p, "networks", data.get("networks"), ("driver", "internal", "labels"))
    secrets: dict[str, Path] = {}
    raw_secrets = data.get("secrets") or {}
    if typed(p, "secrets", raw_secrets, dict, "a mapping of secret names"):
        for name, spec in raw_secrets.items():
            at = f"secrets.{name}"
            if not typed(p, at, spec, dict, "a mapping {file: path}"):
                continue
            if "environment" in spec:
                p.add(f"{at}.environment", "not supported: use a file secret (file: path)")
                continue
            if "external" in spec:
                p.add(f"{at}.external", "refused: a drill uses only secrets the project holds")
                continue
            check_keys(p, at, spec, ("file",), ("file",))
            f = _inside(p, f"{at}.file", spec.get("file"), project)
            if f is not None:
                if not f.is_file():
                    p.add(f"{at}.file", f"no such file {excerpt(str(spec['file']))}")
                secrets[str(name)] = f
    services: dict[str, Service] = {}
    raw_services = data.get("services") or {}
    if typed(p, "services", raw_services, dict, "a mapping of service names"):
        if not raw_services:
            p.add("services", "no services")
        for name, raw in raw_services.items():
            at = f"services.{name}"
            if not isinstance(name, str) or not SERVICE_NAME.fullmatch(name):
                p.add(at[:60], "a service name is lower-case letters, digits, '-' and '_'")
                continue
            if typed(p, at, raw, dict, "a mapping"):
                services[name] = _service(p, at, name, raw, project, volumes, networks, secrets)
        for name, svc in services.items():
            for dep, cond in svc.depends_on.items():
                if dep not in services:
                    p.add(f"services.{name}.depends_on.{dep}", "no such service in the file")
                elif cond == "service_healthy" and services[dep].healthcheck is None:
                    p.add(
                        f"services.{name}.depends_on.{dep}",
                        f"condition service_healthy, but {dep} declares no healthcheck",
                    )
        _check_cycles(p, services)
    name = data.get("name", "")
    return ComposeFile(
        path=path,
        project=project,
        services=services,
        volumes=volumes,
        networks=networks,
        secrets=secrets,
        name=name if isinstance(name, str) else "",
    )


def _names(p: Problems, at: str, raw: Any, keys: tuple[str, ...]) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not typed(p, at, raw, dict, "a mapping of names"):
        return ()
    out: list[str] = []
    for name, spec in raw.items():
        if not isinstance(name, str) or not VOLUME_NAME.fullmatch(name):
            p.add(at, f"bad name {excerpt(name)}")
            continue
        if spec is not None and typed(p, f"{at}.{name}", spec, dict, "a mapping or nothing"):
            if spec.get("external"):
                p.add(f"{at}.{name}.external", "refused: a drill uses only what the run creates")
            elif "driver_opts" in spec:
                p.add(f"{at}.{name}.driver_opts", "not supported: every volume is a local one")
            else:
                check_keys(p, f"{at}.{name}", spec, keys, ())
                if spec.get("driver") not in (None, "local", "bridge"):
                    p.add(f"{at}.{name}.driver", "not supported: only local/bridge")
        out.append(name)
    return tuple(out)


def _inside(p: Problems, at: str, raw: Any, project: Path) -> Path | None:
    """A relative (or absolute) host path that must resolve inside the project folder."""
    if not typed(p, at, raw, str, "a path"):
        return None
    target = (project / os.path.expanduser(raw)).resolve()
    if not (target == project or target.is_relative_to(project)):
        p.add(at, f"{excerpt(raw)} leads outside the project folder {project}")
        return None
    return target


def _argv(p: Problems, at: str, raw: Any) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            return tuple(shlex.split(raw))
        except ValueError as exc:
            p.add(at, f"cannot split the command: {exc}")
            return None
    if typed(p, at, raw, list, "a string or a list of strings"):
        if all(typed(p, f"{at}[{i}]", a, str, "a string") for i, a in enumerate(raw)):
            return tuple(raw)
    return None


def _env(p: Problems, at: str, raw: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if raw is None:
        return out
    if isinstance(raw, list):
        for i, item in enumerate(raw):
            if typed(p, f"{at}[{i}]", item, str, "NAME=value"):
                k, sep, v = item.partition("=")
                if not VAR_NAME.fullmatch(k):
                    p.add(f"{at}[{i}]", "expected NAME=value")
                elif not sep:
                    v2 = os.environ.get(k)
                    if v2 is None:
                        p.add(
                            f"{at}[{i}]", f"{k} has no value here and is not set in the environment"
                        )
                    else:
                        out[k] = v2
                else:
                    out[k] = v
        return out
    if typed(p, at, raw, dict, "a mapping or a list of NAME=value"):
        for k, v in raw.items():
            if not isinstance(k, str) or not VAR_NAME.fullmatch(k):
                p.add(f"{at}.{str(k)[:40]}", "expected an environment variable name")
            elif v is None:
                p.add(f"{at}.{k}", "has no value (drillkit does not pass the host's environment)")
            elif isinstance(v, bool):
                out[k] = "true" if v else "false"
            elif isinstance(v, (str, int, float)):
                out[k] = str(v)
            else:
                p.add(f"{at}.{k}", f"expected a string, got {type(v).__name__}")
    return out


def _duration(p: Problems, at: str, raw: Any, default: float) -> float:
    if raw is None:
        return default
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    m = re.fullmatch(
        r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?",
        str(raw),
    )
    if not isinstance(raw, str) or not raw or m is None:
        p.add(at, f"expected a duration like 10s, 1m30s or 500ms, got {excerpt(raw)}")
        return default
    h, mi, s, ms = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


def _healthcheck(p: Problems, at: str, raw: Any) -> Healthcheck | None:
    if raw is None or not typed(p, at, raw, dict, "a mapping"):
        return None
    check_keys(
        p, at, raw, ("test", "interval", "timeout", "retries", "start_period", "disable"), ()
    )
    if raw.get("disable"):
        return None
    test = raw.get("test")
    argv: tuple[str, ...]
    if isinstance(test, str):
        argv = ("CMD-SHELL", test)
    elif isinstance(test, list) and test and all(isinstance(t, str) for t in test):
        if test[0] not in ("CMD", "CMD-SHELL", "NONE"):
            p.add(f"{at}.test", "a list starts with CMD, CMD-SHELL or NONE")
            return None
        argv = tuple(test)
        if argv[0] == "NONE":
            return None
    else:
        p.add(f"{at}.test", "expected a command line or a list [CMD, ...]")
        return None
    retries = raw.get("retries", 3)
    if not typed(p, f"{at}.retries", retries, int, "a number"):
        retries = 3
    return Healthcheck(
        test=argv,
        interval_s=_duration(p, f"{at}.interval", raw.get("interval"), 30.0),
        timeout_s=_duration(p, f"{at}.timeout", raw.get("timeout"), 30.0),
        retries=retries,
        start_period_s=_duration(p, f"{at}.start_period", raw.get("start_period"), 0.0),
    )


def _ports(p: Problems, at: str, raw: Any) -> tuple[Port, ...]:
    out: list[Port] = []
    if raw is None or not typed(p, at, raw, list, "a list"):
        return ()
    for i, item in enumerate(raw):
        where = f"{at}[{i}]"
        host_ip = ""
        if isinstance(item, dict):  # long syntax
            check_keys(
                p,
                where,
                item,
                ("target", "published", "host_ip", "protocol", "mode", "name", "app_protocol"),
                ("target",),
            )
            target, proto = item.get("target"), str(item.get("protocol", "tcp"))
            host_ip = str(item.get("host_ip") or "")
        elif isinstance(item, (str, int)) and not isinstance(item, bool):
            text = str(item)
            text, _, proto = text.partition("/")
            proto = proto or "tcp"
            if text.startswith("["):
                p.add(where, "refused: an IPv6 host address; drillkit publishes on 127.0.0.1 only")
                continue
            parts = text.split(":")
            if len(parts) == 3:
                host_ip = parts[0]
            if len(parts) > 3 or not parts[-1]:
                p.add(where, f"expected [HOST_IP:][HOST:]CONTAINER[/tcp], got {excerpt(item)}")
                continue
            target = parts[-1]
            if "-" in target:
                p.add(where, "not supported: a port range (list each port)")
                continue
            target = int(target) if target.isdigit() else target
        else:
            p.add(where, f'expected a port like "8000:8000" or a mapping, got {excerpt(item)}')
            continue
        if host_ip not in ("", "127.0.0.1", "localhost"):
            p.add(
                where,
                f"refused: publishes on {excerpt(host_ip)}; drillkit publishes every port on "
                "127.0.0.1 only (drop the host address)",
            )
            continue
        if proto != "tcp":
            p.add(where, f"not supported: protocol {excerpt(proto)} (tcp only)")
            continue
        if not isinstance(target, int) or not 0 < target < 65536:
            p.add(where, f"expected a container port 1-65535, got {excerpt(target)}")
            continue
        out.append(Port(target))
    return tuple(out)


def _volumes(
    p: Problems, at: str, raw: Any, project: Path, named: tuple[str, ...]
) -> tuple[Mount, ...]:
    out: list[Mount] = []
    if raw is None or not typed(p, at, raw, list, "a list"):
        return ()
    for i, item in enumerate(raw):
        where = f"{at}[{i}]"
        ro = False
        if isinstance(item, str):  # short syntax SOURCE:TARGET[:MODE] or TARGET
            parts = item.split(":")
            if len(parts) == 1:
                source, target = "", parts[0]
            elif len(parts) in (2, 3):
                source, target = parts[0], parts[1]
                if len(parts) == 3:
                    modes = set(parts[2].split(","))
                    if not modes <= {"ro", "rw", "z", "Z"}:
                        p.add(where, f"not supported: mode {excerpt(parts[2])} (ro or rw)")
                    ro = "ro" in modes
            else:
                p.add(where, f"expected SOURCE:TARGET[:ro], got {excerpt(item)}")
                continue
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        elif isinstance(item, dict):  # long syntax
            check_keys(
                p,
                where,
                item,
                ("type", "source", "target", "read_only", "volume", "bind"),
                ("target",),
            )
            kind = item.get("type", "volume")
            if kind == "tmpfs":
                p.add(f"{where}.type", "not supported: tmpfs (use a named volume)")
                continue
            if kind not in ("volume", "bind"):
                p.add(f"{where}.type", f"not supported: {excerpt(kind)} (volume or bind)")
                continue
            source, target = str(item.get("source") or ""), item.get("target")
            ro = bool(item.get("read_only", False))
        else:
            p.add(where, f"expected a string or a mapping, got {excerpt(item)}")
            continue
        if not isinstance(target, str) or not CONTAINER_PATH.fullmatch(target) or "/.." in target:
            p.add(where, f"expected an absolute container path, got {excerpt(target)}")
            continue
        target = target.rstrip("/") or "/"
        if kind == "bind":
            if not source:
                p.add(where, "a bind mount needs a source")
                continue
            host = _inside(p, where, source, project)
            if host is None:
                continue
            if not host.exists():
                p.add(where, f"bind mount source {excerpt(source)} does not exist")
                continue
            out.append(Mount("bind", str(host), target, ro))
        else:
            if source and source not in named:
                p.add(where, f"volume {excerpt(source)} is not declared under top-level volumes")
                continue
            out.append(Mount("volume", source, target, ro))
    targets = [m.target for m in out]
    for t in {t for t in targets if targets.count(t) > 1}:
        p.add(at, f"two volumes mounted at {t}")
    return tuple(out)


def _service(
    p: Problems,
    at: str,
    name: str,
    raw: dict[str, Any],
    project: Path,
    named_volumes: tuple[str, ...],
    networks: tuple[str, ...],
    secrets: dict[str, Path],
) -> Service:
    for key in list(raw):
        if key in REFUSED:
            p.add(f"{at}.{key}", REFUSED[key])
            if key == "network_mode" and raw[key] == "host":
                p.items[-1] = p.items[-1].replace("refused:", "refused: host networking:", 1)
    rest = {k: v for k, v in raw.items() if k not in REFUSED}
    check_keys(p, at, rest, SERVICE_KEYS, ())
    image = raw.get("image")
    if image is not None:
        typed(p, f"{at}.image", image, str, "an image reference")
    build: Build | None = None
    braw = raw.get("build")
    if braw is not None:
        if isinstance(braw, str):
            braw = {"context": braw}
        if typed(p, f"{at}.build", braw, dict, "a context path or {context, dockerfile, args}"):
            check_keys(p, f"{at}.build", braw, ("context", "dockerfile", "args", "target"), ())
            if "target" in braw:
                p.add(f"{at}.build.target", "not supported: build the final stage")
            ctx = _inside(p, f"{at}.build.context", braw.get("context", "."), project)
            dockerfile = braw.get("dockerfile", "Dockerfile")
            if ctx is not None and typed(p, f"{at}.build.dockerfile", dockerfile, str, "a path"):
                df = (ctx / dockerfile).resolve()
                if not df.is_relative_to(ctx):
                    p.add(f"{at}.build.dockerfile", "must stay inside the build context")
                elif not df.is_file():
                    p.add(f"{at}.build.dockerfile", f"no {excerpt(dockerfile)} in {ctx}")
                build = Build(ctx, dockerfile, _env(p, f"{at}.build.args", braw.get("args")))
    if image is None and build is None:
        p.add(at, "needs an image or a build")
    env: dict[str, str] = {}
    files = raw.get("env_file")
    for j, f in enumerate([files] if isinstance(files, str) else files or []):
        where = f"{at}.env_file" if isinstance(files, str) else f"{at}.env_file[{j}]"
        if isinstance(f, dict):
            f = f.get("path")
        host = _inside(p, where, f, project)
        if host is not None:
            env.update(read_env_file(p, where, host, project))
    env.update(_env(p, f"{at}.environment", raw.get("environment")))
    depends: dict[str, str] = {}
    draw = raw.get("depends_on")
    if isinstance(draw, list):
        for i, d in enumerate(draw):
            if typed(p, f"{at}.depends_on[{i}]", d, str, "a service name"):
                depends[d] = "service_started"
    elif isinstance(draw, dict):
        for d, spec in draw.items():
            where = f"{at}.depends_on.{d}"
            cond = "service_started"
            if spec is not None and typed(p, where, spec, dict, "a mapping {condition}"):
                check_keys(p, where, spec, ("condition", "restart", "required"), ())
                cond = spec.get("condition", cond)
                if cond not in CONDITIONS:
                    p.add(f"{where}.condition", f"expected one of {', '.join(CONDITIONS)}")
            depends[str(d)] = cond
    elif draw is not None:
        p.add(f"{at}.depends_on", "expected a list of services or a mapping")
    nets: list[str] = []
    nraw = raw.get("networks")
    for n in nraw if isinstance(nraw, list) else list(nraw or {}):
        if n not in networks and n != "default":
            p.add(
                f"{at}.networks", f"network {excerpt(n)} is not declared under top-level networks"
            )
        nets.append(str(n))
    if isinstance(nraw, dict):
        for n, spec in nraw.items():
            if isinstance(spec, dict) and set(spec) - {"aliases"}:
                p.add(f"{at}.networks.{n}", "only aliases are supported (no fixed addresses)")
    refs: list[SecretRef] = []
    for i, s in enumerate(raw.get("secrets") or []):
        where = f"{at}.secrets[{i}]"
        if isinstance(s, dict):
            check_keys(p, where, s, ("source", "target", "mode", "uid", "gid"), ("source",))
            src, tgt = s.get("source"), s.get("target")
        else:
            src, tgt = s, None
        if not isinstance(src, str) or src not in secrets:
            p.add(where, f"secret {excerpt(src)} is not declared under top-level secrets")
            continue
        tgt = tgt or src
        if not isinstance(tgt, str):
            p.add(f"{where}.target", "expected a path")
            continue
        refs.append(SecretRef(src, tgt if tgt.startswith("/") else f"/run/secrets/{tgt}"))
    labels: dict[str, str] = _env_like_labels(p, f"{at}.labels", raw.get("labels"))
    restart = raw.get("restart", "no")
    if not isinstance(restart, str) or not RESTART.fullmatch(restart):
        p.add(f"{at}.restart", "expected no, always, unless-stopped or on-failure[:N]")
        restart = "no"
    for key in ("user", "working_dir", "stop_signal"):
        if raw.get(key) is not None:
            typed(p, f"{at}.{key}", raw[key], (str, int), "a string")
    return Service(
        name=name,
        image=image if isinstance(image, str) else None,
        build=build,
        environment=env,
        volumes=_volumes(p, f"{at}.volumes", raw.get("volumes"), project, named_volumes),
        ports=_ports(p, f"{at}.ports", raw.get("ports")),
        depends_on=depends,
        healthcheck=_healthcheck(p, f"{at}.healthcheck", raw.get("healthcheck")),
        command=_argv(p, f"{at}.command", raw.get("command")),
        entrypoint=_argv(p, f"{at}.entrypoint", raw.get("entrypoint")),
        networks=tuple(nets),
        secrets=tuple(refs),
        user=str(raw["user"]) if raw.get("user") is not None else None,
        working_dir=raw.get("working_dir") if isinstance(raw.get("working_dir"), str) else None,
        restart=restart,
        labels=labels,
        stop_signal=raw.get("stop_signal") if isinstance(raw.get("stop_signal"), str) else None,
    )


def _env_like_labels(p: Problems, at: str, raw: Any) -> dict[str, str]:
    labels = _env(p, at, raw) if isinstance(raw, dict) else {}
    if isinstance(raw, list):
        for i, item in enumerate(raw):
            if typed(p, f"{at}[{i}]", item, str, "NAME=value"):
                k, _, v = item.partition("=")
                labels[k] = v
    for k in labels:
        if k.startswith("io.drillkit"):
            p.add(f"{at}.{k}", "refused: io.drillkit labels are drillkit's own (the run's)")
    return {k: v for k, v in labels.items() if not k.startswith("io.drillkit")}


def _check_cycles(p: Problems, services: dict[str, Service]) -> None:
    state: dict[str, int] = {}

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if state.get(name) == 2 or name not in services:
            return
        if state.get(name) == 1:
            p.add(f"services.{name}.depends_on", "a cycle: " + " -> ".join((*trail, name)))
            return
        state[name] = 1
        for dep in services[name].depends_on:
            visit(dep, (*trail, name))
        state[name] = 2

    for name in services:
        visit(name, ())


def start_order(compose: ComposeFile) -> list[str]:
    """Services in an order where each comes after what it depends on (file order otherwise)."""
    done: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        for dep in compose.services[name].depends_on:
            if dep in compose.services:
                visit(dep)
        done.append(name)

    for name in compose.services:
        visit(name)
    return done
