"""The disposable stack under drill: its networks, and the service kinds that make it.

Everything created carries the drillkit label and the run id (engine.LABEL, engine.RUN_LABEL) and is
named `dk-<run>-<service>`. The harness reaches a service only through a port published on
127.0.0.1; services reach each other by name on the run's internal network. A second network
("edge", no masquerading, no inter-container traffic) exists only to carry the published ports.

Which containers run, and how each is configured, started and proven ready, is the business of
the service kinds (drillkit/stack/kinds.py; one module each under drillkit/stack/services/):
a reference-style stack has the database and app kinds, a compose stack (a stack file naming a
compose file) the compose kind instead, and StackOptions.optional names the others. The
methods below that belong to a kind (wait_pg, set_maintenance, web_url, ...) delegate to it.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors
import psycopg
import requests
from docker.models.containers import Container
from docker.models.volumes import Volume

from drillkit import cancel
from drillkit.errors import BlastRadiusError, EnvironmentBroken
from drillkit.stack import engine, hostfs, images
from drillkit.stack.kinds import BASE_KINDS, COMPOSE_KINDS, SERVICE_KINDS, ServiceKind
from drillkit.stack.reaping import reap
from drillkit.stack.secrets import Secrets
from drillkit.stack.spec import StackSpec

RESOLVER_OPTIONS = ("timeout:1", "attempts:1")
"""Every container's resolver gives a name one try of 1 s (glibc's default: 5 s, twice). The run's
network is internal, and Docker's DNS never answers a name it does not know there, such as a
stopped container's: a standby's WAL receiver looking up its killed primary held a promotion
15 s (could not translate host name "primary")."""

Progress = Callable[[str], None]


def _stderr(line: str) -> None:
    print(f"drillkit: {line}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class StackOptions:
    """What a scenario asks of the stack beyond the stack file."""

    synchronous: bool | None = None
    """Override the stack file's synchronous replication."""
    data_fs_mib: int | None = None
    """Put the primary's data directory on its own ext4 filesystem of this size (disk-full drills)."""
    wal_fs_mib: int | None = None
    """Put the primary's pg_wal on its own ext4 filesystem of this size (WAL-volume-full drills)."""
    data_in_memory: bool = False
    """Put the databases' data directories on a tmpfs of the run's (a local engine, as root; the
    primary's stays on its data_fs when it has one). Falls back to volumes when the mount fails."""
    optional: frozenset[str] = frozenset()
    """The optional service kinds to add, by name: 'proxy' (a Toxiproxy-compatible fault proxy
    between the app and the primary), 'web' (nginx serving a static site, /api/ proxied to the
    app, its content backed up once it serves), 'payments' (two stub payment providers, the app
    charging orders at the first)."""
    ready_timeout_s: float = 60.0


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str


class Stack:
    def __init__(
        self,
        spec: StackSpec,
        run_id: str,
        run_dir: Path,
        options: StackOptions | None = None,
        progress: Progress = _stderr,
    ) -> None:
        self.spec = spec
        self.run_id = run_id
        self.run_dir = run_dir
        self.options = options or StackOptions()
        self.progress = progress
        self.kinds = self._make_kinds()
        """The stack's service kinds, by name, in listing order (ServiceKind.order)."""
        self.client = engine.client()
        self.secrets = Secrets(run_dir)
        self.containers: dict[str, Container] = {}
        self.image_tags: dict[str, str] = {}
        self.oneoffs = 0
        """One-off containers run so far (their names' counter)."""

    def _make_kinds(self) -> dict[str, ServiceKind]:
        """One instance of each base kind and each optional kind the options name; a kind that
        is not registered (or not optional) is refused, naming it."""
        known = ", ".join(sorted(SERVICE_KINDS)) or "none"
        for name in sorted(self.options.optional):
            if name in BASE_KINDS:
                raise EnvironmentBroken(
                    f"service kind '{name}' is part of every stack; it is not an optional one"
                )
            if name not in SERVICE_KINDS:
                raise EnvironmentBroken(
                    f"unknown optional service kind '{name}' (registered: {known})"
                )
        base = COMPOSE_KINDS if self.spec.is_compose else BASE_KINDS
        for name in base:
            if name not in SERVICE_KINDS:
                raise EnvironmentBroken(
                    f"service kind '{name}' is not registered (registered: {known}); "
                    "kinds register when drillkit.stack.services is imported"
                )
        wanted = [SERVICE_KINDS[n] for n in (*base, *self.options.optional)]
        return {k.name: k(self) for k in sorted(wanted, key=lambda k: (k.order, k.name))}

    def _kind(self, name: str) -> Any:
        """The stack's kind of that name (its own methods: see its module in stack/services/)."""
        kind = self.kinds.get(name)
        if kind is None:
            raise KeyError(f"run {self.run_id} has no {name} service kind")
        return kind

    def _in(self, rank: str) -> list[ServiceKind]:
        return sorted(self.kinds.values(), key=lambda k: (getattr(k, rank), k.name))

    # ----- names and labels -------------------------------------------------------------------
    def name(self, part: str) -> str:
        return f"dk-{self.run_id}-{part}"

    def labels(self, service: str | None = None) -> dict[str, str]:
        labels = {
            engine.LABEL: "true",
            engine.RUN_LABEL: self.run_id,
            **engine.owner_labels(),
        }
        if service:
            labels[engine.SERVICE_LABEL] = service
        return labels

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(s for kind in self.kinds.values() for s in kind.services())

    @property
    def databases(self) -> tuple[str, ...]:
        """The PostgreSQL services: the primary, and the replica when the stack has one (never
        the app or a service an optional kind adds: proxy, web, payment providers); for a compose
        stack the overlay's database service and its replicas."""
        if self.spec.is_compose:
            return self._kind("compose").databases()
        return self._kind("database").services()

    def _db(self) -> Any:
        """The kind that serves the database API: 'database', or 'compose' for a compose stack."""
        return self.kinds.get("compose") or self._kind("database")

    # ----- bring-up -----------------------------------------------------------------------------
    def up(self) -> None:
        """Resolve images, create the networks, configure and start every kind, then wait until
        each is ready."""
        t0 = time.monotonic()
        for kind in self.kinds.values():
            for key, image in kind.images().items():
                self.image_tags[key] = images.resolve(image, self.progress)
        self.net = self.client.networks.create(
            self.name("net"),
            driver="bridge",
            internal=True,
            labels=self.labels(),
            check_duplicate=True,
        )
        self.edge = self.client.networks.create(
            self.name("edge"),
            driver="bridge",
            labels=self.labels(),
            check_duplicate=True,
            options={
                "com.docker.network.bridge.enable_ip_masquerade": "false",
                "com.docker.network.bridge.enable_icc": "false",
                "com.docker.network.bridge.host_binding_ipv4": "127.0.0.1",
            },
        )
        for kind in self.kinds.values():
            kind.configure()
        # Every container starts at once, none waits for another: the standby's entrypoint
        # copies the template the primary starts from and waits for the primary before streaming
        # from it, and the app retries its database until one answers.
        for kind in self._in("start_rank"):
            kind.start()
        for kind in self._in("ready_rank"):
            kind.wait_ready()
        self.progress(f"stack {self.run_id} ready in {time.monotonic() - t0:.1f} s")

    def prepare(self) -> None:
        """Write every kind's files into the run dir (secrets exist from the constructor), for
        containers someone else creates and hands to `adopt` (drillkit.fixtures)."""
        for kind in self.kinds.values():
            kind.configure()

    def adopt(self, containers: dict[str, Container], network: Any) -> None:
        """Take over containers created outside drillkit (a test's testcontainers objects), one per
        service, and wait until each kind is ready. Each must already carry this run's labels
        (labels are fixed at creation: `labels(service)`), and so must `network`, the one the
        services reach each other on by name; `down()` reaps them all by those labels."""
        missing = [s for s in self.services if s not in containers]
        unknown = [s for s in containers if s not in self.services]
        if missing or unknown:
            raise EnvironmentBroken(
                f"adopted containers must be exactly the services {', '.join(self.services)}"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; not a service: {', '.join(unknown)}" if unknown else "")
            )
        network.reload()
        if (network.attrs.get("Labels") or {}).get(engine.RUN_LABEL) != self.run_id:
            raise BlastRadiusError(
                f"refusing to adopt network {network.name}: it does not carry label "
                f"{engine.RUN_LABEL}={self.run_id}"
            )
        for service, c in containers.items():
            self.check_owned(c)
            self.containers[service] = c
        self.net = network
        for kind in self._in("ready_rank"):
            kind.wait_ready()

    def volume(self, part: str, service: str) -> Volume:
        """A new volume `dk-<run>-<part>`, labelled as the service's."""
        return self.client.volumes.create(self.name(part), labels=self.labels(service))

    def create(
        self,
        service: str,
        image: str,
        *,
        env: dict[str, str],
        mounts: dict[str, dict[str, str]],
        ports: dict[str, tuple[str, None]],
        command: list[str] | None = None,
        cap_add: list[str] | None = None,
        entrypoint: list[str] | None = None,
        user: str | None = None,
        working_dir: str | None = None,
        healthcheck: dict[str, Any] | None = None,
        extra_labels: dict[str, str] | None = None,
        restart: str = "no",
        stop_signal: str | None = None,
    ) -> Container:
        """Create and start the service's container from `image` (a tag in image_tags), its
        ports published on 127.0.0.1 through the edge network (joined only when it publishes
        one). `extra_labels` never override the run's labels."""
        for spec in ports.values():
            if spec[0] != "127.0.0.1":
                raise BlastRadiusError(f"{service}: refusing to publish a port on {spec[0]}")
        policy: dict[str, Any] | None = None
        if restart != "no":
            name, _, retries = restart.partition(":")
            policy = {"Name": name, **({"MaximumRetryCount": int(retries)} if retries else {})}
        # Created on the internal network (the only one with the service's name as an alias), then
        # joined to the edge network, which carries its published port.
        c = self.client.containers.create(
            image,
            command=command,
            entrypoint=entrypoint,
            user=user or "",
            working_dir=working_dir,
            healthcheck=healthcheck,
            restart_policy=policy,
            stop_signal=stop_signal,
            name=self.name(service),
            labels={**(extra_labels or {}), **self.labels(service)},
            environment=env,
            volumes=mounts,
            ports=ports,
            init=True,
            detach=True,
            network=self.net.name,
            networking_config={
                self.net.name: self.client.api.create_endpoint_config(aliases=[service])
            },
            cap_add=cap_add,
            shm_size="128m",
            dns_opt=list(RESOLVER_OPTIONS),
        )
        if ports:
            self.edge.connect(c)
        c.start()
        self.containers[service] = c
        return c

    # ----- access -------------------------------------------------------------------------------
    def container(self, service: str) -> Container:
        """The service's container, after checking it carries this run's label (blast radius)."""
        c = self.containers.get(service)
        if c is None:
            raise BlastRadiusError(f"service '{service}' is not part of run {self.run_id}")
        self.check_owned(c)
        return c

    def check_owned(self, c: Container) -> None:
        c.reload()
        if c.labels.get(engine.RUN_LABEL) != self.run_id:
            raise BlastRadiusError(
                f"refusing to act on container {c.name}: it does not carry label "
                f"{engine.RUN_LABEL}={self.run_id} (it was not created by this run)"
            )

    def require_running(self, service: str) -> None:
        """Raise EnvironmentBroken at once (no point waiting) when the service's container exited."""
        c = self.containers[service]
        c.reload()
        if c.status in ("exited", "dead"):
            raise EnvironmentBroken(
                f"{c.name} exited (code {c.attrs['State'].get('ExitCode')}); last log lines:\n"
                + self.logs(service, tail=20)
            )

    def port(self, service: str, container_port: int) -> int:
        c = self.containers[service]
        c.reload()
        bindings = (c.attrs["NetworkSettings"]["Ports"] or {}).get(f"{container_port}/tcp")
        if not bindings:
            raise EnvironmentBroken(
                f"{c.name} has no published port {container_port} (is it running?)"
            )
        for b in bindings:
            if b["HostIp"] not in ("127.0.0.1", ""):
                raise BlastRadiusError(f"{c.name} publishes on {b['HostIp']}, not 127.0.0.1")
        return int(bindings[0]["HostPort"])

    def exec(
        self,
        service: str,
        cmd: list[str] | str,
        *,
        user: str | None = None,
        timeout_s: float = 60.0,
    ) -> ExecResult:
        """Run a command inside a service, killed after timeout_s (exit code 124 / 137). `user`
        defaults to postgres on the reference stack, to the image's user on a compose stack."""
        c = self.container(service)
        if user is None:
            user = "" if self.spec.is_compose else "postgres"
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        wrapped = ["timeout", "-s", "KILL", f"{timeout_s:g}", *argv]
        api = c.client.api
        exec_id = api.exec_create(c.id, wrapped, user=user)["Id"]
        with cancel.killable(lambda: engine.kill_exec(api, exec_id)):  # a stopped step's exec dies
            out = api.exec_start(exec_id)
        code = api.exec_inspect(exec_id)["ExitCode"]
        return ExecResult(code, (out or b"").decode("utf-8", "replace"))

    def logs(self, service: str, tail: int = 40) -> str:
        c = self.containers.get(service)
        if c is None:
            return ""
        try:
            return c.logs(tail=tail).decode("utf-8", "replace")
        except docker.errors.APIError as exc:
            return f"(no logs: {exc})"

    def log_context(self, service: str) -> Callable[[], str]:
        return lambda: f"--- last log lines of {service} ---\n{self.logs(service)}"

    # ----- the database kind (services/database.py) ---------------------------------------------
    @property
    def synchronous(self) -> bool:
        return bool(self._kind("database").synchronous)

    @property
    def loopfs(self) -> hostfs.LoopFs | None:
        """The primary's data filesystem (stack option data_fs)."""
        return self._db().loopfs

    @property
    def data_in_memory(self) -> bool:
        """The database data directories are on the run's tmpfs (stack option data_in_memory)."""
        return getattr(self._db(), "memfs", None) is not None

    @property
    def walfs(self) -> hostfs.LoopFs | None:
        """The primary's pg_wal filesystem (stack option wal_fs)."""
        return self._kind("database").walfs

    def connect(
        self,
        service: str,
        dbname: str | None = None,
        user: str | None = None,
        password: str | None = None,
        timeout_s: int | None = None,
    ) -> psycopg.Connection[Any]:
        """An autocommit connection to a PostgreSQL service through its 127.0.0.1 port. Defaults:
        the superuser's credentials (reference: postgres on database app, connect timeout 2 s;
        compose: the overlay's, resolved after start-up, connect timeout 5 s)."""
        kw: dict[str, Any] = {"user": user, "password": password, "dbname": dbname}
        if timeout_s is not None:
            kw["timeout_s"] = timeout_s
        if not self.spec.is_compose:
            kw["user"] = user or "postgres"
            kw["dbname"] = dbname or "app"
        return self._db().connect(service, **kw)

    def db_credentials(self) -> tuple[str, str, str]:
        """(user, password, dbname) of the database superuser drillkit connects as."""
        if self.spec.is_compose:
            return self._db().credentials()
        return ("postgres", self.secrets["pg_superuser_password"], "app")

    def sql(
        self, service: str, *statements: str, dbname: str | None = None
    ) -> list[tuple[Any, ...]]:
        """Run statements in autocommit as the superuser; returns the last one's rows (or [])."""
        if not self.spec.is_compose:
            dbname = dbname or "app"
        return self._db().sql(service, *statements, dbname=dbname)

    def current_primary(self) -> str:
        """The database service that is not in recovery (HA stacks fail over on their own); raises
        EnvironmentBroken when none or more than one is."""
        writable: list[str] = []
        errors: list[str] = []
        for service in self.databases:
            try:
                with self.connect(service, timeout_s=2) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            except (psycopg.Error, EnvironmentBroken, docker.errors.APIError) as exc:
                errors.append(f"{service}: {type(exc).__name__}")
                continue
            if row is not None and row[0] is False:
                writable.append(service)
        if len(writable) != 1:
            raise EnvironmentBroken(
                f"expected one primary among {', '.join(self.databases)}, found "
                f"{', '.join(writable) or 'none'}" + (f" ({'; '.join(errors)})" if errors else "")
            )
        return writable[0]

    def url(self, service: str, port: int | None = None) -> str:
        """http://127.0.0.1:<published port> of a service (port: the app's declared one)."""
        if port is None:
            if self.spec.is_compose:
                app = self.spec.apps.get(service)
                if app is None:
                    raise EnvironmentBroken(f"{service} is not an app of the stack; name a port")
                port = app.port
            elif service == "app":
                port = self.spec.app.port
            else:
                raise EnvironmentBroken(f"name the port of {service}")
        return f"http://127.0.0.1:{self.port(service, port)}"

    def recreate(self, service: str, env: dict[str, str] | None = None) -> None:
        """Stop and remove the service's container and create it again from its definition with
        `env` overriding its environment (same volumes, name, aliases, labels), then wait until it
        answers as at start-up (compose stacks)."""
        if not self.spec.is_compose:
            raise EnvironmentBroken("recreate is for compose stacks (the reference app reloads)")
        self._kind("compose").recreate(service, env or {})

    def volume_of(self, service: str, target: str) -> str:
        """The docker volume mounted at `target` in the service (one this run created)."""
        if self.spec.is_compose:
            return str(self._kind("compose").volume_of(service, target))
        c = self.container(service)
        for m in c.attrs.get("Mounts") or []:
            if m.get("Destination") == target.rstrip("/") and m.get("Type") == "volume":
                return str(m["Name"])
        raise EnvironmentBroken(f"{service} has no volume mounted at {target}")

    def run_oneoff(
        self,
        image_or_service: str,
        command: list[str],
        *,
        volumes_from: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout_s: float = 300.0,
        mounts: dict[str, dict[str, str]] | None = None,
        working_dir: str | None = None,
        network: bool = True,
    ) -> ExecResult:
        """A labelled one-off container on the run's internal network (no published port), with
        the named service's volumes when `volumes_from` (its container may be stopped); removed
        after. The image: a service's (a compose service name, or a reference-stack service), or
        a local image reference (never pulled). Killed after timeout_s (exit code 137)."""
        image = self._image_of(image_or_service)
        self.oneoffs += 1
        name = f"oneoff-{self.oneoffs}"
        source = self.container(volumes_from).id if volumes_from else None
        c = self.client.containers.create(
            image,
            # the image's entrypoint is replaced (`docker run --entrypoint`): the command runs as
            # given, not as arguments of the service's start-up script
            entrypoint=["timeout", "-s", "KILL", f"{timeout_s:g}"],
            command=command,
            name=self.name(name),
            labels=self.labels(name),
            environment=env or {},
            volumes=mounts or {},
            volumes_from=[source] if source else None,
            user=user or "",
            working_dir=working_dir,
            init=True,
            network=self.net.name if network else None,
            network_mode=None if network else "none",
            dns_opt=list(RESOLVER_OPTIONS) if network else None,
        )
        try:
            c.start()
            code = c.wait(timeout=timeout_s + 10)["StatusCode"]
            out = c.logs().decode("utf-8", "replace")
        finally:
            c.remove(force=True)
        return ExecResult(int(code), out)

    def _image_of(self, ref: str) -> str:
        if self.spec.is_compose and ref in self.services:
            return str(self._kind("compose").tags[ref])
        if not self.spec.is_compose and ref in ("primary", "replica"):
            return self.image_tags["postgres"]
        if not self.spec.is_compose and ref == "app":
            return self.image_tags["app"]
        try:
            self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            raise EnvironmentBroken(
                f"{ref!r} is neither a service of the stack nor an image on this engine "
                "(drillkit does not pull: build or load it first)"
            ) from None
        return ref

    def pgbackrest(self, *args: str, service: str = "primary", timeout_s: float = 120.0) -> str:
        cmd = ["pgbackrest", "--stanza=main", *args]
        res = self.exec(service, cmd, timeout_s=timeout_s)
        if res.exit_code != 0:
            raise EnvironmentBroken(
                f"`{shlex.join(cmd)}` in {service} exited {res.exit_code}:\n{res.output}"
            )
        return res.output

    def wait_pg(
        self, service: str, timeout_s: float | None = None, writable: bool | None = None
    ) -> None:
        self._db().wait_pg(service, timeout_s=timeout_s, writable=writable)

    def wait_streaming(
        self, timeout_s: float | None = None, primary: str = "primary", replica: str = "replica"
    ) -> None:
        self._kind("database").wait_streaming(timeout_s=timeout_s, primary=primary, replica=replica)

    def run_tool(self, service: str, argv: list[str], timeout_s: float = 300.0) -> str:
        """Run a one-off container of the postgres image with `service`'s volumes (its container may
        be stopped): restores, offline edits of the data directory. No network."""
        return self._kind("database").run_tool(service, argv, timeout_s=timeout_s)

    def rebuild_replica(self, service: str = "replica") -> None:
        """Throw the standby away (container and data volume) and clone it again from the primary."""
        self._kind("database").rebuild_replica(service)

    # ----- the app kind (services/app.py) -------------------------------------------------------
    def _app(self) -> Any:
        return self.kinds.get("compose") or self._kind("app")

    @property
    def app_url(self) -> str:
        """The app's URL (a compose stack: its first app's)."""
        return self._app().url

    def app_health(self, timeout_s: float = 2.0) -> requests.Response:
        return self._app().health(timeout_s)

    def wait_app(self, timeout_s: float | None = None) -> None:
        """Until the app answers (a compose stack: every app's health rule holds)."""
        self._app().wait(timeout_s)

    def set_db_hosts(self, hosts: list[str]) -> None:
        self._kind("app").set_db_hosts(hosts)

    def set_payment_provider(self, provider: str) -> None:
        """The provider the app charges at (takes effect on the app's next reload)."""
        self._kind("app").set_payment_provider(provider)

    def set_maintenance(self, on: bool) -> None:
        self._kind("app").set_maintenance(on)

    def reload_app(self) -> None:
        self._kind("app").reload()

    # ----- the optional kinds (services/proxy.py, web.py, payments.py) --------------------------
    def toxiproxy(self) -> Any:
        """A toxiproxy-python client for this stack's proxy (the client's address is global to the
        process, so it is set on every call)."""
        return self._kind("proxy").client()

    @property
    def web_url(self) -> str:
        return self._kind("web").url

    @property
    def web_backups(self) -> list[Any]:
        """The web content's known-good backups (services/web.py WebBackup), oldest first."""
        if "web" not in self.kinds:
            return []
        return self._kind("web").backups

    def web_health(self, timeout_s: float = 2.0) -> requests.Response:
        """The web front's home page (200 when it serves the site; 503 in maintenance)."""
        return self._kind("web").health(timeout_s)

    def wait_web(self, timeout_s: float | None = None) -> None:
        """Until nginx answers its own liveness URL (also while the site is in maintenance)."""
        self._kind("web").wait(timeout_s)

    def provider_url(self, service: str) -> str:
        """A stub payment provider's API, through its port published on 127.0.0.1."""
        return self._kind("payments").url(service)

    def wait_provider(self, service: str, timeout_s: float | None = None) -> None:
        """Until a stub payment provider answers its status page."""
        self._kind("payments").wait(service, timeout_s)

    # ----- teardown -----------------------------------------------------------------------------
    def down(self) -> None:
        """Remove everything this run created. Safe to call twice and after a partial up()."""
        reap(self.run_id)
        for kind in reversed(self.kinds.values()):
            kind.teardown()
