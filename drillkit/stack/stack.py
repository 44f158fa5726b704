"""The disposable stack under drill: networks, volumes and the primary, replica and app containers.

Everything created carries the drillkit label and the run id (engine.LABEL, engine.RUN_LABEL) and is
named `dk-<run>-<service>`. The harness reaches a service only through a port published on
127.0.0.1; services reach each other by name on the run's internal network. A second network
("edge", no masquerading, no inter-container traffic) exists only to carry the published ports.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import docker.errors
import psycopg
import requests
from docker.models.containers import Container

from drillkit.errors import BlastRadiusError, EnvironmentBroken
from drillkit.stack import engine, hostfs, images
from drillkit.stack.secrets import Secrets
from drillkit.stack.services import payments as payledger
from drillkit.stack.services import web as webfront
from drillkit.stack.spec import StackSpec
from drillkit.wait import wait_for

PG_PORT = 5432
PROXY_IMAGE = "toxiproxy"
PROXY_API_PORT = 8474
PROXY_NAME = "postgres"
WEB_IMAGE = "web"
PAYMENTS_IMAGE = "payments"
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
    proxy: bool = False
    """Put a Toxiproxy-compatible fault proxy ('proxy') between the app and the primary."""
    web: bool = False
    """Start a web front ('web': nginx serving a static site, /api/ proxied to the app) and back
    its content up (tarball + SHA-256 manifest in the run dir) once it serves."""
    payments: bool = False
    """Start two stub payment providers ('provider', the primary, and 'provider-backup') and
    configure the app to charge orders at the primary."""
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
        self.client = engine.client()
        self.secrets = Secrets(run_dir)
        self.config_dir = run_dir / "app-config"
        self.containers: dict[str, Container] = {}
        self.image_tags: dict[str, str] = {}
        self.loopfs: hostfs.LoopFs | None = None
        """The primary's data filesystem (stack option data_fs)."""
        self.walfs: hostfs.LoopFs | None = None
        """The primary's pg_wal filesystem (stack option wal_fs)."""
        self.web_backups: list[webfront.WebBackup] = []
        self.synchronous = (
            self.options.synchronous
            if self.options.synchronous is not None
            else spec.database.synchronous
        )

    # ----- names and labels -------------------------------------------------------------------
    def name(self, part: str) -> str:
        return f"dk-{self.run_id}-{part}"

    def labels(self, service: str | None = None) -> dict[str, str]:
        labels = {
            engine.LABEL: "true",
            engine.RUN_LABEL: self.run_id,
            engine.OWNER_LABEL: str(os.getpid()),
        }
        if service:
            labels[engine.SERVICE_LABEL] = service
        return labels

    @property
    def services(self) -> tuple[str, ...]:
        return (
            self.spec.services
            + (("proxy",) if self.options.proxy else ())
            + (("web",) if self.options.web else ())
            + (payledger.PROVIDERS if self.options.payments else ())
        )

    @property
    def databases(self) -> tuple[str, ...]:
        """The PostgreSQL services: the primary, and the replica when the stack has one (never
        the app or a service a stack option adds: proxy, web, payment providers)."""
        return tuple(s for s in self.spec.services if s != "app")

    # ----- bring-up -----------------------------------------------------------------------------
    def up(self) -> None:
        """Create networks and volumes, start primary, then replica and app; wait until healthy."""
        t0 = time.monotonic()
        self.image_tags = {
            "postgres": images.resolve(self.spec.database.image, self.progress),
            "app": images.resolve(self.spec.app.image, self.progress),
        }
        if self.options.proxy:
            self.image_tags["toxiproxy"] = images.resolve(PROXY_IMAGE, self.progress)
        if self.options.web:
            self.image_tags["web"] = images.resolve(WEB_IMAGE, self.progress)
        if self.options.payments:
            self.image_tags["payments"] = images.resolve(PAYMENTS_IMAGE, self.progress)
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
        self.config_dir.mkdir(parents=True, exist_ok=True)
        first = "proxy" if self.options.proxy else "primary"
        self.set_db_hosts([first, "replica"] if "replica" in self.services else [first])
        if self.options.data_fs_mib:
            self.loopfs = hostfs.LoopFs.create(
                self.run_dir / "primary-data.img",
                self.run_dir / "primary-data",
                self.options.data_fs_mib,
            )
        if self.options.wal_fs_mib:
            self.walfs = hostfs.LoopFs.create(
                self.run_dir / "primary-wal.img",
                self.run_dir / "primary-wal",
                self.options.wal_fs_mib,
            )
        # All three start at once: the standby's entrypoint copies the template the primary starts
        # from and waits for the primary before streaming from it, and the app retries its
        # database until one answers.
        self._start_primary()
        if "replica" in self.services:
            self._start_replica(seed="template")
        if self.options.proxy:
            self._start_proxy()
        if self.options.payments:
            self.set_payment_provider(payledger.PROVIDERS[0])
            for provider in payledger.PROVIDERS:
                self._start_provider(provider)
        self._start_app()
        if self.options.web:
            self._start_web()
        self.wait_pg("primary")
        if "replica" in self.services:
            self.wait_streaming()
            if self.synchronous:
                self.sql(
                    "primary",
                    "ALTER SYSTEM SET synchronous_standby_names = 'replica'",
                    "SELECT pg_reload_conf()",
                )
        self.wait_app()
        if self.options.payments:
            for provider in payledger.PROVIDERS:
                self.wait_provider(provider)
        if self.options.web:
            self.wait_web()
            self.web_backups.append(
                webfront.take_backup(self.container("web"), self.run_dir / "web-backup")
            )
        self.progress(f"stack {self.run_id} ready in {time.monotonic() - t0:.1f} s")

    def _create(
        self,
        service: str,
        image: str,
        *,
        env: dict[str, str],
        mounts: dict[str, dict[str, str]],
        ports: dict[str, tuple[str, None]],
        command: list[str] | None = None,
        cap_add: list[str] | None = None,
    ) -> Container:
        # Created on the internal network (the only one with the service's name as an alias), then
        # joined to the edge network, which carries its published port.
        c = self.client.containers.create(
            image,
            command=command,
            name=self.name(service),
            labels=self.labels(service),
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
        )
        self.edge.connect(c)
        c.start()
        self.containers[service] = c
        return c

    def _pg_mounts(self, service: str) -> dict[str, dict[str, str]]:
        if service == "primary" and self.loopfs is not None:
            # a subdirectory: the filesystem's root holds lost+found, which pg_basebackup cannot read
            pgdata = self.loopfs.mountpoint / "pgdata"
            pgdata.mkdir(exist_ok=True)
            data = {str(pgdata): {"bind": "/pgdata", "mode": "rw"}}
        else:
            vol = self.client.volumes.create(
                self.name(f"{service}-data"), labels=self.labels(service)
            )
            data = {vol.name: {"bind": "/pgdata", "mode": "rw"}}
        if service == "primary" and self.walfs is not None:
            # pg_wal on its own filesystem, bound over the data directory's pg_wal (the
            # entrypoint hands the mount point to postgres and the template's copy fills it)
            wal = self.walfs.mountpoint / "wal"
            wal.mkdir(exist_ok=True)
            data[str(wal)] = {"bind": "/pgdata/pg_wal", "mode": "rw"}
        repo = self.client.volumes.create(self.name("pgbackrest"), labels=self.labels("pgbackrest"))
        return {
            **data,
            repo.name: {"bind": "/var/lib/pgbackrest", "mode": "rw"},
            str(self.secrets.db_dir): {"bind": "/run/drillkit/secrets", "mode": "ro"},
        }

    def _start_primary(self) -> None:
        self._create(
            "primary",
            self.image_tags["postgres"],
            env={"DRILLKIT_ROLE": "primary"},
            mounts=self._pg_mounts("primary"),
            ports={f"{PG_PORT}/tcp": ("127.0.0.1", None)},
        )

    def _start_replica(self, seed: Literal["template", "basebackup"] = "basebackup") -> None:
        """`seed` "template": a new stack's standby, copied from the template the primary starts
        from (no base backup); "basebackup": cloned from the running primary (any later clone)."""
        self._create(
            "replica",
            self.image_tags["postgres"],
            env={
                "DRILLKIT_ROLE": "replica",
                "PRIMARY_HOST": "primary",
                "REPLICA_NAME": "replica",
                "REPLICA_SEED": seed,
            },
            mounts=self._pg_mounts("replica"),
            ports={f"{PG_PORT}/tcp": ("127.0.0.1", None)},
        )

    def _start_app(self) -> None:
        app = self.spec.app
        log = self.client.volumes.create(self.name("app-log"), labels=self.labels("app"))
        self._create(
            "app",
            self.image_tags["app"],
            env=dict(app.env),
            mounts={
                str(self.secrets.app_dir): {"bind": app.secrets_dir, "mode": "ro"},
                str(self.config_dir): {"bind": app.config_dir, "mode": "ro"},
                log.name: {"bind": "/var/log/app", "mode": "rw"},
            },
            ports={f"{app.port}/tcp": ("127.0.0.1", None)},
        )

    def _start_proxy(self) -> None:
        """The fault proxy, then its one proxy: 'postgres', listening on proxy:5432 for primary."""
        self._create(
            "proxy",
            self.image_tags["toxiproxy"],
            env={},
            mounts={},
            ports={f"{PROXY_API_PORT}/tcp": ("127.0.0.1", None)},
        )

        def api_up() -> bool:
            # a real answer: docker-proxy accepts TCP connections before the server listens
            self.toxiproxy().proxies()
            return True

        wait_for(
            api_up,
            what="the fault proxy's API",
            timeout_s=self.options.ready_timeout_s,
            context=self.log_context("proxy"),
        )
        self.toxiproxy().create(upstream="primary:5432", name=PROXY_NAME, listen="0.0.0.0:5432")

    def _start_web(self) -> None:
        """The web front: the public site on port 80, a staff preview of the same content (never
        behind the maintenance page) on 8081; the content in a labelled volume that the image's
        site fills on first mount."""
        content = self.client.volumes.create(self.name("web-content"), labels=self.labels("web"))
        self._create(
            "web",
            self.image_tags["web"],
            env={},
            mounts={content.name: {"bind": webfront.WEB_ROOT, "mode": "rw"}},
            ports={
                f"{webfront.WEB_PORT}/tcp": ("127.0.0.1", None),
                f"{webfront.WEB_PREVIEW_PORT}/tcp": ("127.0.0.1", None),
            },
        )

    def _start_provider(self, service: str) -> None:
        """A stub payment provider (images/payments): its charge API, ledger, status page and
        fault control on port 8090; webhooks go to the app by name on the internal network."""
        self._create(
            service,
            self.image_tags["payments"],
            env={
                "PROVIDER_NAME": service,
                "PORT": str(payledger.PROVIDER_PORT),
                "WEBHOOK_URL": f"http://app:{self.spec.app.port}{payledger.WEBHOOK_PATH}",
            },
            mounts={
                str(self.secrets.payments_dir): {"bind": "/run/drillkit/secrets", "mode": "ro"}
            },
            ports={f"{payledger.PROVIDER_PORT}/tcp": ("127.0.0.1", None)},
        )

    def toxiproxy(self) -> Any:
        """A toxiproxy-python client for this stack's proxy (the client's address is global to the
        process, so it is set on every call)."""
        from toxiproxy import Toxiproxy

        client = Toxiproxy()
        client.update_api_consumer("127.0.0.1", self.port("proxy", PROXY_API_PORT))
        return client

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

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.port('web', webfront.WEB_PORT)}"

    def provider_url(self, service: str) -> str:
        """A stub payment provider's API, through its port published on 127.0.0.1."""
        return f"http://127.0.0.1:{self.port(service, payledger.PROVIDER_PORT)}"

    @property
    def app_url(self) -> str:
        return f"http://127.0.0.1:{self.port('app', self.spec.app.port)}"

    def connect(
        self,
        service: str,
        dbname: str = "app",
        user: str = "postgres",
        password: str | None = None,
        timeout_s: int = 2,
    ) -> psycopg.Connection[Any]:
        pw = (
            password
            if password is not None
            else (
                self.secrets["pg_superuser_password"]
                if user == "postgres"
                else self.secrets["app_db_password"]
            )
        )
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port(service, PG_PORT),
            dbname=dbname,
            user=user,
            password=pw,
            connect_timeout=timeout_s,
            autocommit=True,
        )

    def sql(self, service: str, *statements: str, dbname: str = "app") -> list[tuple[Any, ...]]:
        """Run statements in autocommit as the superuser; returns the last one's rows (or [])."""
        rows: list[tuple[Any, ...]] = []
        with self.connect(service, dbname=dbname) as conn:
            for stmt in statements:
                cur = conn.execute(stmt)  # type: ignore[arg-type]
                rows = cur.fetchall() if cur.description else []
        return rows

    def exec(
        self, service: str, cmd: list[str] | str, *, user: str = "postgres", timeout_s: float = 60.0
    ) -> ExecResult:
        """Run a command inside a service, killed after timeout_s (exit code 124 / 137)."""
        c = self.container(service)
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        wrapped = ["timeout", "-s", "KILL", f"{timeout_s:g}", *argv]
        code, out = c.exec_run(wrapped, user=user, demux=False)
        return ExecResult(code, (out or b"").decode("utf-8", "replace"))

    def pgbackrest(self, *args: str, service: str = "primary", timeout_s: float = 120.0) -> str:
        cmd = ["pgbackrest", "--stanza=main", *args]
        res = self.exec(service, cmd, timeout_s=timeout_s)
        if res.exit_code != 0:
            raise EnvironmentBroken(
                f"`{shlex.join(cmd)}` in {service} exited {res.exit_code}:\n{res.output}"
            )
        return res.output

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

    # ----- readiness ----------------------------------------------------------------------------
    def wait_pg(
        self, service: str, timeout_s: float | None = None, writable: bool | None = None
    ) -> None:
        def ready() -> bool:
            self.require_running(service)
            with self.connect(service, timeout_s=1) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            return writable is None or (row is not None and row[0] == (not writable))

        wait_for(
            ready,
            what=f"PostgreSQL in {service} to accept connections",
            timeout_s=timeout_s or self.options.ready_timeout_s,
            context=self.log_context(service),
        )

    def wait_streaming(
        self, timeout_s: float | None = None, primary: str = "primary", replica: str = "replica"
    ) -> None:
        def streaming() -> bool:
            self.require_running(replica)
            rows = self.sql(
                primary,
                f"SELECT state FROM pg_stat_replication WHERE application_name = '{replica}'",
            )
            return bool(rows) and rows[0][0] == "streaming"

        wait_for(
            streaming,
            what=f"{replica} to stream from {primary}",
            timeout_s=timeout_s or self.options.ready_timeout_s,
            context=self.log_context(replica),
        )

    def app_health(self, timeout_s: float = 2.0) -> requests.Response:
        return requests.get(self.app_url + self.spec.app.health, timeout=timeout_s)

    def wait_app(self, timeout_s: float | None = None) -> None:
        wait_for(
            lambda: self.app_health(1.0).status_code == 200,
            what="the app's health endpoint",
            timeout_s=timeout_s or self.options.ready_timeout_s,
            context=self.log_context("app"),
        )

    def web_health(self, timeout_s: float = 2.0) -> requests.Response:
        """The web front's home page (200 when it serves the site; 503 in maintenance)."""
        return requests.get(self.web_url + "/", timeout=timeout_s)

    def wait_web(self, timeout_s: float | None = None) -> None:
        """Until nginx answers its own liveness URL (also while the site is in maintenance)."""

        def serving() -> bool:
            self.require_running("web")
            return requests.get(self.web_url + "/healthz", timeout=1.0).status_code == 200

        wait_for(
            serving,
            what="the web front (nginx) to answer",
            timeout_s=timeout_s or self.options.ready_timeout_s,
            context=self.log_context("web"),
        )

    def wait_provider(self, service: str, timeout_s: float | None = None) -> None:
        """Until a stub payment provider answers its status page."""

        def serving() -> bool:
            self.require_running(service)
            url = self.provider_url(service) + payledger.STATUS_PATH
            return requests.get(url, timeout=1.0).status_code == 200

        wait_for(
            serving,
            what=f"the payment provider {service} to answer",
            timeout_s=timeout_s or self.options.ready_timeout_s,
            context=self.log_context(service),
        )

    def run_tool(self, service: str, argv: list[str], timeout_s: float = 300.0) -> str:
        """Run a one-off container of the postgres image with `service`'s volumes (its container may
        be stopped): restores, offline edits of the data directory. No network."""
        source = self.container(service)
        self._tools = getattr(self, "_tools", 0) + 1
        tool = self.client.containers.create(
            self.image_tags["postgres"],
            command=["timeout", "-s", "KILL", f"{timeout_s:g}", *argv],
            name=self.name(f"tool-{self._tools}"),
            labels=self.labels("tool"),
            environment={"DRILLKIT_ROLE": "tool"},
            volumes_from=[source.id],
            network_mode="none",
            init=True,
        )
        try:
            tool.start()
            code = tool.wait(timeout=timeout_s + 10)["StatusCode"]
            out = tool.logs().decode("utf-8", "replace")
        finally:
            tool.remove(force=True)
        if code != 0:
            raise EnvironmentBroken(
                f"`{shlex.join(argv)}` on {service}'s volumes exited {code}:\n{out[-1500:]}"
            )
        return out

    def rebuild_replica(self, service: str = "replica") -> None:
        """Throw the standby away (container and data volume) and clone it again from the primary."""
        old = self.container(service)
        old.remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):
            self.client.volumes.get(self.name(f"{service}-data")).remove(force=True)
        del self.containers[service]
        self._start_replica()
        self.wait_streaming()

    # ----- app configuration --------------------------------------------------------------------
    def set_db_hosts(self, hosts: list[str]) -> None:
        _write_atomic(self.config_dir / "db_hosts", ",".join(hosts) + "\n")

    def set_payment_provider(self, provider: str) -> None:
        """The provider the app charges at (takes effect on the app's next reload)."""
        _write_atomic(self.config_dir / "payment_provider", provider + "\n")

    def set_maintenance(self, on: bool) -> None:
        flag = self.config_dir / "maintenance"
        if on:
            _write_atomic(flag, "on\n")
        else:
            flag.unlink(missing_ok=True)

    def reload_app(self) -> None:
        self.container("app").kill(signal="SIGHUP")

    # ----- teardown -----------------------------------------------------------------------------
    def down(self) -> None:
        """Remove everything this run created. Safe to call twice and after a partial up()."""
        reap(self.run_id)
        for fs in (self.loopfs, self.walfs):
            if fs is not None:
                fs.destroy()
        self.loopfs = self.walfs = None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(path)


def reap(run_id: str | None = None) -> dict[str, int]:
    """Remove containers, networks and volumes labelled as drillkit's (one run's, or every
    run's). Containers go in parallel (each removal is a SIGKILL and a wait); then networks and
    volumes, which containers held."""
    c = engine.client()
    flt = {"label": [f"{engine.RUN_LABEL}={run_id}" if run_id else engine.LABEL]}
    counts = {"containers": 0, "networks": 0, "volumes": 0}

    def remove(obj: Any, kind: str, **kwargs: Any) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            obj.remove(**kwargs)
            counts[kind] += 1

    def in_parallel(objs: list[Any], kind: str, **kwargs: Any) -> None:
        threads = [threading.Thread(target=remove, args=(o, kind), kwargs=kwargs) for o in objs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    in_parallel(c.containers.list(all=True, filters=flt), "containers", force=True, v=True)
    in_parallel(c.networks.list(filters=flt), "networks")
    in_parallel(c.volumes.list(filters=flt), "volumes", force=True)
    return counts


def reap_orphans(run_root: Path | None = None) -> list[str]:
    """Reap the runs whose harness process is gone (killed mid-drill); live runs are left alone.
    With `run_root`, also unmount and detach the loop filesystems those runs left under it."""
    c = engine.client()
    runs: dict[str, str] = {}
    for lister in (c.containers.list, c.networks.list, c.volumes.list):
        kwargs = {"all": True} if lister == c.containers.list else {}
        for obj in lister(filters={"label": [engine.LABEL]}, **kwargs):
            labels = obj.attrs.get("Labels") or obj.attrs.get("Config", {}).get("Labels") or {}
            run = labels.get(engine.RUN_LABEL)
            if run:
                runs[run] = labels.get(engine.OWNER_LABEL, "")
    reaped = []
    for run, owner in runs.items():
        if owner.isdigit() and _alive(int(owner)):
            continue
        reap(run)
        if run_root is not None:
            hostfs.reap_loopfs(run_root / run)
        reaped.append(run)
    return reaped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftovers(run_id: str | None = None) -> list[str]:
    """Names of labelled resources still present (empty after a clean teardown)."""
    c = engine.client()
    flt = {"label": [f"{engine.RUN_LABEL}={run_id}" if run_id else engine.LABEL]}
    names = [f"container {x.name}" for x in c.containers.list(all=True, filters=flt)]
    names += [f"network {x.name}" for x in c.networks.list(filters=flt)]
    names += [f"volume {x.name}" for x in c.volumes.list(filters=flt)]
    return names


def host_pid(c: Container) -> int:
    c.reload()
    pid = int(c.attrs["State"]["Pid"])
    if pid <= 0:
        raise EnvironmentBroken(f"{c.name} is not running (no host pid)")
    return pid


def nsenter(c: Container, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run a host command inside the container's network namespace (iptables needs no capability
    in the container this way)."""
    return subprocess.run(
        ["nsenter", "-t", str(host_pid(c)), "-n", *argv], capture_output=True, text=True, timeout=10
    )
