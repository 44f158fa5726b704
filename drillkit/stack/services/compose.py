"""The compose kind: every service of a team's compose file, brought up by drillkit itself.

A compose stack (a stack file with `compose:`) has this kind instead of the reference stack's
database and app kinds. Each service runs from its build context (built once per context hash,
build arg BASE_IMAGE) or a local image (never pulled), with fresh labelled volumes, on the run's
internal network under its service name, ports published on 127.0.0.1 only through the edge
network. Services start in depends_on order, each after its dependencies' conditions hold
(running, healthy by the engine's healthcheck, or exited 0): awaited, never slept for. Ready is
the overlay's database accepting connections with its superuser credentials (resolved after start:
env from the compose environment, a file read inside the container, a compose secret's file) and
every app's health rule holding.
"""

from __future__ import annotations

import contextlib
import shutil
from typing import TYPE_CHECKING, Any

import docker.errors
import psycopg
import requests
from docker.models.containers import Container

from drillkit.errors import EnvironmentBroken
from drillkit.stack import hostfs, images
from drillkit.stack.compose import ComposeFile, Service, start_order
from drillkit.stack.kinds import ServiceKind, last_rows, service_kind
from drillkit.stack.probespec import TcpProbe
from drillkit.stack.spec import Cred, DbOverlay
from drillkit.wait import wait_for

if TYPE_CHECKING:
    from drillkit.stack.stack import Stack

STATEMENT_TIMEOUT_MS = 60_000
"""The server-side bound on every statement of the harness's connections (ms)."""
CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT = "30s"


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


@service_kind
class Compose(ServiceKind):
    name = "compose"
    order = 0
    start_rank = 0
    ready_rank = 0

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack)
        assert stack.spec.compose is not None, "the compose kind needs a compose stack"
        self.compose: ComposeFile = stack.spec.compose
        self.tags: dict[str, str] = {}
        """Service -> the image it runs."""
        self.volumes: dict[str, str] = {}
        """Compose volume name (or '<service>@<target>' for an anonymous one) -> docker volume."""
        self.env: dict[str, dict[str, str]] = {}
        """Service -> its environment as created (the compose one, with recreate's overrides)."""
        self.creds: tuple[str, str, str] | None = None
        self.loopfs: hostfs.LoopFs | None = None
        """The database's data filesystem (stack option data_fs): ext4 on a loop device, bound
        where its data directory's volume would be."""
        self.secret_dir = stack.run_dir / "compose-secrets"

    # ----- the kind protocol ----------------------------------------------------------------------
    def services(self) -> tuple[str, ...]:
        return tuple(self.compose.services)

    def databases(self) -> tuple[str, ...]:
        db = self.stack.spec.db
        return (db.service, *db.replicas) if db is not None else ()

    def configure(self) -> None:
        """Images first (a missing one fails before any container exists), then the run's copies
        of the compose secrets (rotation rewrites the copy, never the team's file) and volumes."""
        for name, svc in self.compose.services.items():
            self.tags[name] = self._image(svc)
        self.secret_dir.mkdir(mode=0o755, exist_ok=True)
        for name, path in self.compose.secrets.items():
            copy = self.secret_dir / name
            shutil.copyfile(path, copy)
            copy.chmod(0o644)  # the run dir is 0700; rotation rewrites it in place
            self.stack.secrets._issued.append(copy.read_text().rstrip("\r\n"))  # redacted
        db, mib = self.stack.spec.db, self.stack.options.data_fs_mib
        if db is not None and mib:
            if self._data_mount() is None:
                raise EnvironmentBroken(
                    f"data_fs: {db.service} mounts no volume holding {db.data} in "
                    f"{self.compose.path.name}: nothing to put on its own filesystem"
                )
            run_dir = self.stack.run_dir
            self.loopfs = hostfs.LoopFs.create(run_dir / "db-data.img", run_dir / "db-data", mib)
        for name, svc in self.compose.services.items():
            for m in svc.volumes:
                if m.kind != "volume":
                    continue
                key = m.source or f"{name}@{m.target}"
                if key not in self.volumes:
                    part = m.source or f"{name}-anon-{len(self.volumes)}"
                    self.volumes[key] = self.stack.volume(part, name).name

    def start(self) -> None:
        for name in start_order(self.compose):
            for dep, condition in self.compose.services[name].depends_on.items():
                self.await_condition(dep, condition, waiter=name)
            self.create(name)

    def wait_ready(self) -> None:
        db = self.stack.spec.db
        if db is not None:
            self.resolve_credentials()
            for service in self.databases():
                self.wait_pg(service)
        self.wait()

    # ----- images and containers ------------------------------------------------------------------
    def _image(self, svc: Service) -> str:
        if svc.build is not None:
            return images.ensure_context(
                svc.build.context,
                f"{self.stack.spec.name}-{svc.name}",
                dockerfile=svc.build.dockerfile,
                buildargs=svc.build.args,
                progress=self.stack.progress,
            )
        assert svc.image is not None
        try:
            self.stack.client.images.get(svc.image)
        except docker.errors.ImageNotFound:
            raise EnvironmentBroken(
                f"{self.compose.path.name}: services.{svc.name}.image: {svc.image} is not on this "
                "engine, and drillkit never pulls (no registry): build or load it first, or give "
                "the service a build context"
            ) from None
        return svc.image

    def published(self, name: str) -> list[int]:
        """Container ports published on 127.0.0.1: the file's, the database's, the app's, and
        those of declared TCP probes."""
        svc = self.compose.services[name]
        ports = [p.container for p in svc.ports]
        db, app = self.stack.spec.db, self.stack.spec.apps.get(name)
        if db is not None and name in self.databases():
            ports.append(db.port)
        if app is not None:
            ports.append(app.port)
        for probe in self.stack.spec.probes:  # a declared TCP probe reaches its port from here
            if isinstance(probe, TcpProbe) and probe.service == name:
                ports.append(probe.port)
        return sorted(set(ports))

    def _data_mount(self) -> Any:
        """The database service's volume that holds its data directory (the deepest one)."""
        db = self._overlay()
        holding = [
            m
            for m in self.compose.services[db.service].volumes
            if m.kind == "volume" and (db.data + "/").startswith(m.target.rstrip("/") + "/")
        ]
        return max(holding, key=lambda m: len(m.target), default=None)

    def mounts(self, name: str) -> dict[str, dict[str, str]]:
        svc = self.compose.services[name]
        out: dict[str, dict[str, str]] = {}
        data = self._data_mount() if self.loopfs is not None else None
        for m in svc.volumes:
            if data is not None and m == data and name == self._overlay().service:
                # a subdirectory: the filesystem's root holds lost+found (initdb wants it empty)
                sub = self.loopfs.mountpoint / "data"  # type: ignore[union-attr]
                sub.mkdir(exist_ok=True)
                out[str(sub)] = {"bind": m.target, "mode": "rw"}
                continue
            source = (
                m.source if m.kind == "bind" else self.volumes[m.source or f"{name}@{m.target}"]
            )
            out[source] = {"bind": m.target, "mode": "ro" if m.read_only else "rw"}
        for ref in svc.secrets:
            out[str(self.secret_dir / ref.source)] = {"bind": ref.target, "mode": "ro"}
        return out

    def create(self, name: str, env: dict[str, str] | None = None) -> Container:
        svc = self.compose.services[name]
        self.env[name] = {**svc.environment, **(env or {})}
        hc = svc.healthcheck
        healthcheck = (
            {
                "test": list(hc.test),
                "interval": _ns(max(hc.interval_s, 0.001)),
                "timeout": _ns(max(hc.timeout_s, 0.001)),
                "retries": hc.retries,
                "start_period": _ns(hc.start_period_s),
            }
            if hc is not None
            else None
        )
        return self.stack.create(
            name,
            self.tags[name],
            env=self.env[name],
            mounts=self.mounts(name),
            ports={f"{p}/tcp": ("127.0.0.1", None) for p in self.published(name)},
            command=list(svc.command) if svc.command is not None else None,
            entrypoint=list(svc.entrypoint) if svc.entrypoint is not None else None,
            user=svc.user,
            working_dir=svc.working_dir,
            healthcheck=healthcheck,
            extra_labels=svc.labels,
            restart=svc.restart,
            stop_signal=svc.stop_signal,
        )

    def await_condition(self, service: str, condition: str, waiter: str = "") -> None:
        """Until `service` meets a depends_on condition: running, healthy, or exited 0."""
        s = self.stack

        def met() -> bool:
            c = s.container(service)  # reloaded
            state = c.attrs["State"]
            if condition == "service_completed_successfully":
                if state.get("Status") == "exited":
                    if state.get("ExitCode") == 0:
                        return True
                    raise EnvironmentBroken(
                        f"{service} exited {state.get('ExitCode')} ({waiter} waits for it to "
                        f"complete successfully); last log lines:\n{s.logs(service, 20)}"
                    )
                return False
            s.require_running(service)
            if condition == "service_healthy":
                health = (state.get("Health") or {}).get("Status")
                if health == "unhealthy":
                    raise EnvironmentBroken(
                        f"{service} is unhealthy by its healthcheck ({waiter} depends on it being "
                        f"healthy); last log lines:\n{s.logs(service, 20)}"
                    )
                return health == "healthy"
            return state.get("Status") == "running"

        wait_for(
            met,
            what=f"{service} to be {condition.removeprefix('service_')} ({waiter} depends on it)",
            timeout_s=s.options.ready_timeout_s,
            interval_s=0.2,
            transient=(docker.errors.APIError,),
            context=s.log_context(service),
        )

    def recreate(self, name: str, env: dict[str, str]) -> None:
        """Remove the container and create it again with `env` over its compose environment (the
        same volumes: named and anonymous volumes outlive the container), then wait for it."""
        s = self.stack
        old = s.container(name)
        old.remove(force=True, v=False)
        del s.containers[name]
        self.create(name, {**self.env.get(name, {}), **env})
        if name in self.databases():
            self.wait_pg(name)
        elif name in s.spec.apps:
            self.wait_app(name)

    def volume_of(self, name: str, target: str) -> str:
        svc = self.compose.services.get(name)
        if svc is None:
            raise EnvironmentBroken(f"no service {name} in {self.compose.path.name}")
        m = svc.mount_at(target)
        if m is None or m.kind != "volume":
            kind = "a bind mount" if m is not None else "nothing"
            raise EnvironmentBroken(
                f"{name} mounts {kind} at {target}, not a volume (give it a named volume in "
                f"{self.compose.path.name})"
            )
        return self.volumes[m.source or f"{name}@{m.target}"]

    # ----- the database -------------------------------------------------------------------------
    def _overlay(self) -> DbOverlay:
        db = self.stack.spec.db
        if db is None:
            raise EnvironmentBroken(f"stack {self.stack.spec.name} declares no database")
        return db

    def _resolve(self, cred: Cred, service: str) -> str:
        if cred.kind == "literal":
            return cred.value
        if cred.kind == "env":
            return self.env.get(service, self.compose.services[service].environment)[cred.value]
        if cred.kind == "secret":
            return (self.secret_dir / cred.value).read_text().rstrip("\r\n")
        stack = self.stack

        def read() -> str | None:
            stack.require_running(service)
            res = stack.exec(service, ["cat", cred.value], user="root", timeout_s=5)
            return res.output.rstrip("\r\n") if res.exit_code == 0 else None

        return wait_for(
            read,
            what=f"{cred.value} to be readable in {service}",
            timeout_s=stack.options.ready_timeout_s,
            interval_s=0.2,
            context=stack.log_context(service),
        )

    def resolve_credentials(self) -> tuple[str, str, str]:
        db = self._overlay()
        user = self._resolve(db.user, db.service)
        password = self._resolve(db.password, db.service)
        dbname = self._resolve(db.dbname, db.service)
        if not (user and password and dbname):
            raise EnvironmentBroken(
                f"the database credentials of {db.service} resolved to an empty value "
                f"(user {db.user.kind}, password {db.password.kind}, dbname {db.dbname.kind})"
            )
        self.stack.secrets._issued.append(password)  # every report is scanned for it
        self.stack.secrets.set("pg_superuser_password", password)
        self.creds = (user, password, dbname)
        return self.creds

    def credentials(self) -> tuple[str, str, str]:
        return self.creds or self.resolve_credentials()

    def connect(
        self,
        service: str,
        *,
        user: str | None = None,
        password: str | None = None,
        dbname: str | None = None,
        timeout_s: int = CONNECT_TIMEOUT_S,
        options: str | None = None,
    ) -> psycopg.Connection[Any]:
        """An autocommit connection through the service's 127.0.0.1 port; the overlay's superuser
        credentials unless given (a password for another user must be given)."""
        db = self._overlay()
        su_user, su_password, su_dbname = self.credentials()
        if password is None and user not in (None, su_user):
            raise EnvironmentBroken(f"connect as {user}: give its password")
        # every statement bounded server-side, like the reference database's connections; a
        # caller's own options (e.g. a longer timeout) come after and win
        return psycopg.connect(
            host="127.0.0.1",
            port=self.stack.port(service, db.port),
            user=user or su_user,
            password=password if password is not None else su_password,
            dbname=dbname or su_dbname,
            connect_timeout=timeout_s,
            autocommit=True,
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS} {options or ''}".strip(),
        )

    def sql(
        self, service: str, *statements: str, dbname: str | None = None
    ) -> list[tuple[Any, ...]]:
        """Statements in autocommit as the superuser (statement_timeout 30 s); the last one's rows."""
        with self.connect(
            service, dbname=dbname, options=f"-c statement_timeout={STATEMENT_TIMEOUT}"
        ) as conn:
            return last_rows(conn, statements)

    def wait_pg(
        self, service: str, timeout_s: float | None = None, writable: bool | None = None
    ) -> None:
        s = self.stack

        self.credentials()

        def ready() -> bool:
            s.require_running(service)
            try:
                conn = self.connect(service, timeout_s=1)
            except EnvironmentBroken:  # no published port while it restarts: not yet
                return False
            with conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            return writable is None or (row is not None and row[0] == (not writable))

        wait_for(
            ready,
            what=f"PostgreSQL in {service} to accept connections with the overlay's credentials",
            timeout_s=timeout_s or s.options.ready_timeout_s,
            interval_s=0.1,
            transient=(psycopg.Error, OSError),
            context=s.log_context(service),
        )

    # ----- the apps -------------------------------------------------------------------------------
    def _first_app(self) -> str:
        apps = self.stack.spec.apps
        if not apps:
            raise EnvironmentBroken(f"stack {self.stack.spec.name} declares no app")
        return next(iter(apps))

    @property
    def url(self) -> str:
        return self.stack.url(self._first_app())

    def health(self, timeout_s: float = 2.0, service: str | None = None) -> requests.Response:
        service = service or self._first_app()
        app = self.stack.spec.apps[service]
        return requests.get(self.stack.url(service) + app.health.path, timeout=timeout_s)

    def wait_app(self, service: str, timeout_s: float | None = None) -> None:
        """Until the app's health rule holds (status, body text, JSON rules)."""
        s = self.stack
        rule = s.spec.apps[service].health
        last: list[str] = []

        def healthy() -> bool:
            s.require_running(service)
            r = self.health(1.0, service)
            why = rule.verdict(r.status_code, r.text)
            last[:] = [why or ""]
            return why is None

        wait_for(
            healthy,
            what=f"{service}'s health rule to hold (GET {rule.path})",
            timeout_s=timeout_s or s.options.ready_timeout_s,
            interval_s=0.1,
            context=lambda: (
                (f"last answer: {last[0]}\n" if last else "") + s.log_context(service)()
            ),
        )

    def wait(self, timeout_s: float | None = None) -> None:
        for service in self.stack.spec.apps:
            self.wait_app(service, timeout_s)

    def teardown(self) -> None:
        if self.loopfs is not None:
            self.loopfs.destroy()
            self.loopfs = None
        with contextlib.suppress(OSError):
            shutil.rmtree(self.secret_dir)
