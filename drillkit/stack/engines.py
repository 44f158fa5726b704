"""Docker endpoints: parsing `--drill-engines` / `drillkit_engines`, which engine an xdist worker
takes, and what an engine can do for a drill (its host's 127.0.0.1 ports, its host's kernel).

An endpoint is written `URL [tls=DIR]`; entries are separated by commas or new lines:

- `unix:///PATH`: an engine on this host (the default socket, or a second local dockerd). Its
  published 127.0.0.1 ports and its host's kernel (nsenter, iptables, loop devices, bind-mounted
  files) are this machine's: every drill can run there.
- `tcp://HOST:PORT`: always TLS (client certificate, key and CA from `tls=DIR`, else
  `$DOCKER_CERT_PATH/HOST`, else `$DOCKER_CERT_PATH`). A tcp endpoint without certificates is
  refused: an unauthenticated engine is root on its host for anyone who reaches it.
- `ssh://USER@HOST[:PORT]`: the ssh transport of the Docker SDK (the operator's own `ssh`, agent
  and known_hosts; drillkit reads no key).

Remote (tcp, ssh) engines are accepted for `drillkit clean` (reaping by label works through the
API), but no drill runs on one yet: its 127.0.0.1 ports are not reachable from here (no tunnel is
built) and the stack bind-mounts files from this host. `refusal()` says so before a stack starts.

Records name the engine by `redact(url)` and `engine_id(url)`: never a password in a URL.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from drillkit.errors import ValidationError

HOST_ACCESS = "host-access"
"""The need of an entry that acts on the engine's host (nsenter/iptables in a container's network
namespace, loop devices, files on the host): only an engine on this host provides it."""
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
TLS_FILES = ("ca.pem", "cert.pem", "key.pem")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$|^\[[0-9A-Fa-f:]+\]$")


@dataclass(frozen=True)
class Endpoint:
    """One Docker engine."""

    url: str
    """As given (may carry credentials: never record it; use `shown`)."""
    scheme: str
    """'unix', 'tcp' or 'ssh'."""
    host: str
    """The engine's host name ('localhost' for a unix socket)."""
    tls_dir: Path | None = field(default=None, compare=False)

    @property
    def local(self) -> bool:
        """An engine on this host: same kernel, same 127.0.0.1."""
        return self.scheme == "unix"

    @property
    def shown(self) -> str:
        """The URL with any password removed."""
        return redact(self.url)

    @property
    def id(self) -> str:
        """A short stable id of the engine (a hash of the redacted URL)."""
        return engine_id(self.url)

    def provides(self) -> frozenset[str]:
        """The needs this engine can meet beyond the stack's own (see HOST_ACCESS)."""
        return frozenset({HOST_ACCESS}) if self.local else frozenset()


def redact(url: str) -> str:
    """`scheme://user:secret@host` -> `scheme://user:***@host`; a query string is dropped."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" not in netloc:
        return url.split("?", 1)[0].split("#", 1)[0]
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}" if ":" in userinfo else f"{user}@{hostport}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def engine_id(url: str) -> str:
    return hashlib.sha256(redact(url).encode()).hexdigest()[:8]


def default_endpoint() -> Endpoint:
    """The engine used without `--drill-engines`: DOCKER_HOST, else the default socket."""
    url = os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET
    try:
        return parse_one(url, cert_env=False)
    except ValidationError:  # DOCKER_HOST as the Docker SDK accepts it (e.g. plain tcp)
        parts = urlsplit(url)
        return Endpoint(url, parts.scheme or "unix", parts.hostname or "localhost")


def parse(value: str | list[str] | tuple[str, ...] | None) -> list[Endpoint]:
    """Endpoints from an option value (commas or new lines) or an ini line list; every problem
    of every entry is reported at once. Duplicates are refused (two workers on one engine would
    not be what the list says)."""
    if value is None:
        return []
    lines = [value] if isinstance(value, str) else list(value)
    items = [i.strip() for line in lines for i in re.split(r"[,\n]", line) if i.strip()]
    problems: list[str] = []
    out: list[Endpoint] = []
    for item in items:
        try:
            ep = parse_one(item)
        except ValidationError as exc:
            problems.extend(exc.problems)
            continue
        if any(o.shown == ep.shown for o in out):
            problems.append(f"{ep.shown}: listed twice")
            continue
        out.append(ep)
    if problems:
        raise ValidationError([f"--drill-engines: {p}" for p in problems])
    return out


def parse_one(item: str, cert_env: bool = True) -> Endpoint:
    """One `URL [tls=DIR]` entry."""
    words = item.split()
    if not words:
        raise ValidationError(["an empty engine entry"])
    url, extra = words[0], words[1:]
    tls: Path | None = None
    for word in extra:
        key, eq, val = word.partition("=")
        if key != "tls" or not eq or not val:
            raise ValidationError([f"{redact(url)}: unknown setting {word!r} (only tls=DIR)"])
        tls = Path(val).expanduser()
    parts = urlsplit(url)
    shown = redact(url)
    if parts.scheme == "unix":
        if parts.netloc or not parts.path.startswith("/"):
            raise ValidationError([f"{shown}: a unix endpoint is unix:///ABSOLUTE/PATH"])
        if tls is not None:
            raise ValidationError([f"{shown}: tls= applies to tcp endpoints only"])
        return Endpoint(url, "unix", os.uname().nodename)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        raise ValidationError([f"{shown}: the port is not a number"]) from None
    if not host or not _HOST.match(host if ":" not in host else f"[{host}]"):
        raise ValidationError([f"{shown}: no valid host name"])
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValidationError([f"{shown}: expected {parts.scheme}://HOST[:PORT] and nothing more"])
    if parts.scheme == "ssh":
        if parts.password:
            raise ValidationError(
                [f"{shown}: no password in an ssh URL (use the ssh agent or a key in ~/.ssh)"]
            )
        if tls is not None:
            raise ValidationError([f"{shown}: tls= applies to tcp endpoints only"])
        return Endpoint(url, "ssh", host)
    if parts.scheme == "tcp":
        if port is None:
            raise ValidationError([f"{shown}: a tcp endpoint needs its port (TLS: 2376)"])
        if parts.username or parts.password:
            raise ValidationError([f"{shown}: tcp endpoints authenticate by TLS certificate"])
        tls = tls or (_cert_dir(host) if cert_env else None)
        if tls is None or not all((tls / f).is_file() for f in TLS_FILES):
            where = str(tls) if tls else f"tls=DIR, $DOCKER_CERT_PATH/{host} or $DOCKER_CERT_PATH"
            raise ValidationError(
                [
                    f"{shown}: a tcp engine is used only over TLS: no {'/'.join(TLS_FILES)} in "
                    f"{where} (an engine without TLS is root on its host for anyone who reaches it)"
                ]
            )
        return Endpoint(url, "tcp", host, tls)
    raise ValidationError([f"{shown}: unknown scheme (unix://, tcp:// with TLS, ssh://)"])


def _cert_dir(host: str) -> Path | None:
    base = os.environ.get("DOCKER_CERT_PATH")
    if not base:
        return None
    per_host = Path(base) / host
    return per_host if per_host.is_dir() else Path(base)


def worker_index(worker: str | None = None) -> int | None:
    """The xdist worker's number (PYTEST_XDIST_WORKER 'gw3' -> 3); None outside a worker."""
    worker = os.environ.get("PYTEST_XDIST_WORKER") if worker is None else worker
    if not worker:
        return None
    m = re.fullmatch(r"gw(\d+)", worker)
    if m is None:
        raise ValidationError([f"PYTEST_XDIST_WORKER={worker!r}: expected gw<number>"])
    return int(m.group(1))


def for_worker(endpoints: list[Endpoint], worker: str | None = None) -> Endpoint | None:
    """The engine this process's drills run on: worker i takes endpoints[i % n]. One engine is
    everyone's; several without xdist is refused (it would silently use only the first)."""
    if not endpoints:
        return None
    index = worker_index(worker)
    if index is None:
        if len(endpoints) > 1:
            raise ValidationError(
                [
                    f"--drill-engines lists {len(endpoints)} engines but this is not a "
                    f"pytest-xdist worker: run with -n {len(endpoints)} (one worker per engine)"
                ]
            )
        return endpoints[0]
    return endpoints[index % len(endpoints)]


def refusal(endpoint: Endpoint, host_actions: list[str]) -> str | None:
    """Why no drill can start on `endpoint` (None: it can). `host_actions` names the drill's
    entries that declare the host-access need."""
    if endpoint.local:
        return None
    if host_actions:
        return (
            f"{', '.join(host_actions)} act(s) on the engine's host ({HOST_ACCESS}: nsenter, "
            f"iptables, loop devices, host files); engine {endpoint.shown} ({endpoint.scheme}) is "
            "not on this host: run the drill on a local (unix://) engine"
        )
    return (
        f"engine {endpoint.shown} ({endpoint.scheme}) is not on this host: the stack publishes its "
        "ports on that host's 127.0.0.1, which is not reachable from here (no tunnel is built), "
        "and bind-mounts files from this host; drills run on unix:// engines only (a remote "
        "engine is reaped by `drillkit clean`)"
    )


def record(endpoint: Endpoint) -> dict[str, str]:
    """What a drill record says about its engine (no credential), and the xdist worker that
    placed it there."""
    out = {
        "docker_endpoint": endpoint.shown,
        "docker_engine_id": endpoint.id,
        "docker_engine_host": endpoint.host,
        "docker_engine_local": "true" if endpoint.local else "false",
    }
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        out["xdist_worker"] = worker
    return out


REMEMBERED = "engines.txt"
"""In the run root (.run/): the engines the last sessions used, for `drillkit clean`."""


def entry_text(endpoint: Endpoint) -> str:
    """The endpoint as an entry `parse` reads back (URLs carry no password: parse refuses one)."""
    return endpoint.url + (f" tls={endpoint.tls_dir}" if endpoint.tls_dir else "")


def remember(run_root: Path, endpoints: list[Endpoint]) -> None:
    """Add `endpoints` to the run root's list, so `drillkit clean` reaps them all later."""
    known = remembered(run_root)
    new = [e for e in endpoints if e not in known]
    if not new:
        return
    run_root.mkdir(parents=True, exist_ok=True)
    with (run_root / REMEMBERED).open("a", encoding="utf-8") as f:
        f.writelines(entry_text(e) + "\n" for e in new)


def remembered(run_root: Path) -> list[Endpoint]:
    """The engines noted by `remember` (entries no longer valid are skipped)."""
    path = run_root / REMEMBERED
    if not path.is_file():
        return []
    out: list[Endpoint] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            ep = parse_one(line)
        except ValidationError:
            continue
        if line.strip() and ep not in out:
            out.append(ep)
    return out


def to_clean(run_root: Path, given: str | None = None) -> list[Endpoint]:
    """Every engine `drillkit clean` reaps: the default one (DOCKER_HOST or the socket), those in
    $DRILLKIT_ENGINES and `given`, and those the run root remembers."""
    out = [default_endpoint()]
    for ep in [
        *parse(os.environ.get("DRILLKIT_ENGINES")),
        *parse(given),
        *remembered(run_root),
    ]:
        if ep not in out:
            out.append(ep)
    return out


def merged_environment(environments: list[dict[str, str]]) -> dict[str, str]:
    """A run's environment from its drills' records: the first record's, with every engine the
    drills ran on listed when there was more than one."""
    if not environments:
        return {}
    env = dict(environments[0])
    shown = sorted({e["docker_endpoint"] for e in environments if e.get("docker_endpoint")})
    if len(shown) > 1:
        env["docker_endpoint"] = ", ".join(shown)
        env["docker_engine_id"] = ", ".join(
            sorted({e["docker_engine_id"] for e in environments if e.get("docker_engine_id")})
        )
        for key in ("docker_engine_host", "docker_engine_local", "xdist_worker"):
            env.pop(key, None)
    return env
